"""`hotline train asr` on a tiny random Whisper (built from a config) with the real whisper-base tokenizer."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

import torch  # noqa: E402 - required (pyproject); a broken install fails, never skips
import transformers  # noqa: E402

from models.asr.dialects import ASR_CONFIG_FILE, DIALECT_PROMPTS, decoder_prefix_ids  # noqa: E402
from models.asr.encoder_cache import EncoderStateCache, encode, log_mel  # noqa: E402
from training import asr  # noqa: E402
from training.config import CONFIG_ROOT, load_config  # noqa: E402

TINY = dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
            encoder_ffn_dim=128, decoder_ffn_dim=128)


def _tiny_whisper(seed: int = 0):
    from transformers import WhisperConfig, WhisperForConditionalGeneration, WhisperProcessor

    from models.asr.bootstrap import whisper_base_hf

    base = whisper_base_hf()
    cfg = WhisperConfig.from_pretrained(base)
    for k, v in TINY.items():
        setattr(cfg, k, v)
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(cfg).eval()
    model.generation_config = transformers.GenerationConfig.from_pretrained(base)
    return model, WhisperProcessor.from_pretrained(base)


@pytest.fixture(scope="module")
def tiny_whisper_dir(tmp_path_factory) -> Path:
    """A tiny random Whisper (d_model 64, 2+2 layers, vocab 51865) saved with whisper-base's processor."""
    out = tmp_path_factory.mktemp("tiny_whisper")
    model, processor = _tiny_whisper()
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def _common(tiny_corpus: Path, model_dir: Path, tmp_path: Path) -> list[str]:
    return [
        f"model.base={model_dir}", f"data.corpus_dir={tiny_corpus}", f"data.cache_dir={tmp_path / 'cache'}",
        "data.max_train=12", "data.max_validation=10", "data.batch_size=4", "threads=1",
        "trainer.progress_bar=false", "trainer.eval_every_n_steps=2", "trainer.log_every_n_steps=1",
        "evaluation.max_new_tokens=6", "evaluation.batch_size=8",
        f"evaluation.realspeech_manifest={tiny_corpus / 'validation.jsonl'}",
        "evaluation.realspeech_dialects=[mandarin, cantonese, southwestern, wu, min]", "evaluation.realspeech_max=3",
    ]


def _run_data(name: str = "asr"):
    import mlflow

    from training.tracking import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    exp = mlflow.get_experiment_by_name(name)
    runs = mlflow.search_runs([exp.experiment_id], output_format="list")
    assert len(runs) == 1
    return mlflow.MlflowClient().get_run(runs[0].info.run_id)


def test_cached_encoder_recipe_trains_scores_saves_and_registers(tiny_corpus, tiny_whisper_dir, tmp_path):
    out = tmp_path / "model"
    args = ["--config", str(CONFIG_ROOT / "asr.yaml"), "--out", str(out), "--max_steps", "3",
            *_common(tiny_corpus, tiny_whisper_dir, tmp_path)]
    assert asr.main(args) == 0

    run = _run_data()
    m = run.data.metrics
    dialects = {json.loads(x)["dialect"] for x in (tiny_corpus / "validation.jsonl").read_text(encoding="utf-8").splitlines()}
    for d in dialects:  # per-dialect CER of the zero-shot baseline and of each evaluation
        assert 0.0 <= m[f"val_cer_{d}"] and f"zero_shot_val_cer_{d}" in m
    assert {"val_cer", "zero_shot_val_cer", "real_cer", "real_zero_shot_cer", "cache_seconds", "steps"} <= set(m)
    assert {"val_cer_numnorm", "zero_shot_val_cer_numnorm", "real_cer_numnorm", "real_zero_shot_cer_numnorm"} <= set(m)
    assert m["steps"] == 3
    assert "tuned_val_cer" in m and "interpolated_val_cer" in m  # the default config interpolates (WiSE-FT 0.5)
    # first version: champion unless it is worse than zero-shot on the "real" clips (the registry's guard, on the
    # number-normalised CER)
    passes = m["real_cer_numnorm"] <= m["real_zero_shot_cer_numnorm"]
    assert run.data.tags["promotion.promoted"] == str(passes).lower()
    from mlflow import MlflowClient

    arts = {a.path for a in MlflowClient().list_artifacts(run.info.run_id, "samples")}
    assert "samples/zero_shot.txt" in arts and any(a.startswith("samples/eval_") for a in arts)
    assert ASR_CONFIG_FILE in {Path(a.path).name for a in MlflowClient().list_artifacts(run.info.run_id, "model")}

    # the folder format of dialects.py, loadable by transformers
    cfg = json.loads((out / ASR_CONFIG_FILE).read_text(encoding="utf-8"))
    assert cfg["format"] == 1 and cfg["language"] == "zh" and cfg["dialect_prompts"] == DIALECT_PROMPTS
    assert "val_cer" in cfg["metrics"]
    assert (out / "ct2" / "model.bin").is_file()  # the CTranslate2 export (models/asr/export.py)
    from transformers import WhisperForConditionalGeneration

    assert WhisperForConditionalGeneration.from_pretrained(out).config.d_model == 64

    # the encoder caches are complete (train, validation, real-speech clips): a second run reads them back
    metas = {p.parent: json.loads(p.read_text(encoding="utf-8")) for p in (tmp_path / "cache").glob("*/meta.json")}
    assert sorted(m["records"] for m in metas.values()) == [3, 10, 12]
    assert all(m["frames"] == 1500 and m["d_model"] == 64 for m in metas.values())
    assert all(EncoderStateCache(folder, m["n"]).complete for folder, m in metas.items())
    from training.registry import champion_version

    assert (champion_version("asr") is not None) == passes


def test_a_missing_real_speech_manifest_is_an_error_not_a_pass(tmp_path):
    """The caller turns it into a blocked promotion (registry tests: a missing guard metric blocks too)."""
    ec = asr.AsrEvaluationConfig(realspeech_manifest=str(tmp_path / "absent.jsonl"))
    with pytest.raises(asr.RealSpeechUnavailable, match="not found"):
        asr._realspeech(None, None, ec, tmp_path, None, None, None)
    with pytest.raises(asr.RealSpeechUnavailable, match="is null"):
        asr._realspeech(None, None, asr.AsrEvaluationConfig(realspeech_manifest=None), tmp_path, None, None, None)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(asr.RealSpeechUnavailable, match="no records"):
        asr._realspeech(None, None, asr.AsrEvaluationConfig(realspeech_manifest=str(empty)), tmp_path, None, None, None)
    assert asr.REAL_SPEECH_GUARD == ("real_cer_numnorm", "real_zero_shot_cer_numnorm")
    assert asr.AsrEvaluationConfig().promote_metric == "val_cer_numnorm"


def test_interpolation_moves_every_weight_once_towards_the_base():
    tuned, _ = _tiny_whisper(seed=1)
    base, _ = _tiny_whisper(seed=2)
    before = {k: v.clone() for k, v in tuned.state_dict().items()}
    asr.interpolate_weights(tuned, base, 0.25)
    after, b = tuned.state_dict(), base.state_dict()
    for k, v in after.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, b[k] + 0.25 * (before[k] - b[k]))  # tied weights moved once, not twice
    with pytest.raises(asr.ConfigError, match="model.interpolate"):
        asr.interpolate_weights(tuned, base, 1.5)


def test_encoder_in_the_loop_with_lora_specaugment_checkpointing_bf16(tiny_corpus, tiny_whisper_dir, tmp_path):
    args = ["--config", str(CONFIG_ROOT / "asr_gpu.yaml"), "--no_export", *_common(tiny_corpus, tiny_whisper_dir, tmp_path),
            "trainer.device=cpu", "trainer.max_steps=2", "model.decoder=lora", "model.lora_rank=4",
            "data.num_workers=0", "evaluation.realspeech_max=2", "evaluation.decode_threads=null"]
    assert asr.main(args) == 0
    run = _run_data()
    p = run.data.params
    assert (p["model.encoder"], p["model.gradient_checkpointing"], p["model.spec_augment.apply"], p["trainer.precision"]) \
        == ("trained", "True", "True", "bf16")
    assert run.data.metrics["steps"] == 2 and "val_cer" in run.data.metrics and "real_cer" in run.data.metrics
    # LoRA on the decoder plus the whole encoder are trainable; the embeddings are not
    assert run.data.metrics["params_trainable"] < run.data.metrics["params_total"]


def _fixed_batch(tiny_corpus: Path, model, processor, n: int = 4):
    recs = asr.read_split(tiny_corpus, "train")[:n]
    feats = log_mel(processor.feature_extractor, [asr.load_utterance(r) for r in recs], 16000)
    states = encode(model, feats).float()
    toks = [asr.tokenize(processor.tokenizer, r, 64) for r in recs]
    batch = asr.collate_tokens(toks, processor.tokenizer.eos_token_id)
    batch["encoder_states"] = states
    return recs, toks, batch


@pytest.mark.parametrize("decoder", ["full", "lora"])
def test_loss_goes_down_overfitting_four_utterances(tiny_corpus, decoder):
    """20 steps on one fixed batch of 4 real utterances (cached-state path, with state masking on)."""
    model, processor = _tiny_whisper(seed=1)
    recs, toks, batch = _fixed_batch(tiny_corpus, model, processor)
    # embeddings trained too: a tiny random model's frozen (tied) output projection leaves little to fit otherwise
    cfg = asr.AsrModelConfig(decoder=decoder, train_embeddings=True, lora_rank=8, lora_dropout=0.0,
                             state_mask=asr.StateMaskConfig(time_prob=0.05, feature_prob=0.05))
    module = asr.prepare_model(model, cfg).train()
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(20):
        loss = module(**batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[:3]), losses
    if decoder == "lora":  # the adapters moved away from their zero start; the wrapped weights did not change
        assert all(float(p.abs().sum()) > 0 for n, p in module.named_parameters() if "lora_b" in n)
        assert not any(p.requires_grad for n, p in module.named_parameters() if n.endswith("base.weight"))
    # the context (prompt + prefix) is never a target: the loss only covers text and <|endoftext|>
    tok = processor.tokenizer
    for t, r in zip(toks, recs):
        ctx = t.ids[: t.n_context]
        assert ctx[0] == tok.convert_tokens_to_ids("<|startofprev|>")
        assert ctx[-4:] == decoder_prefix_ids(tok, "zh")
        assert tok.decode(ctx[1:-4]).strip() == DIALECT_PROMPTS[r["dialect"]]
        assert t.ids[-1] == tok.eos_token_id


def test_lora_merge_keeps_the_function(tiny_corpus):
    model, processor = _tiny_whisper(seed=2)
    _, _, batch = _fixed_batch(tiny_corpus, model, processor, n=2)
    module = asr.prepare_model(model, asr.AsrModelConfig(decoder="lora", lora_rank=4, lora_dropout=0.0))
    for name, p in module.named_parameters():
        if "lora_b" in name:
            torch.nn.init.normal_(p, std=0.05)  # a non-trivial adapter
    module.eval()
    with torch.no_grad():
        before = module(**batch)["loss"]
        assert asr.merge_lora(model.model.decoder) == 2 * 2 * 4  # layers x (self, cross) x projections
        after = module(**batch)["loss"]
    assert not any("lora" in n for n, _ in model.named_parameters())
    assert torch.allclose(before, after, atol=1e-5)


def test_greedy_decode_stops_and_matches_a_full_forward(tiny_corpus):
    model, processor = _tiny_whisper(seed=3)
    _, toks, batch = _fixed_batch(tiny_corpus, model, processor, n=2)
    tok = processor.tokenizer
    ctx = asr.context_ids(tok, "mandarin")
    ids = asr.greedy_decode(model, batch["encoder_states"], ctx, tok.eos_token_id, 5)
    assert len(ids) == 2 and all(len(x) <= 5 for x in ids)
    # the cached step-by-step decoding equals argmax of one forward over the same tokens
    seq = torch.tensor([ctx + ids[0]])
    with torch.no_grad():
        logits = model.proj_out(model.model.decoder(input_ids=seq, encoder_hidden_states=batch["encoder_states"][:1]).last_hidden_state)
    suppress, begin = asr.suppressed_ids(model)
    for k, t in enumerate(ids[0]):
        row = logits[0, len(ctx) - 1 + k].clone()
        row[suppress] = -float("inf")
        if k == 0:
            row[begin] = -float("inf")
        assert int(row.argmax()) == t


def test_balanced_subsample_is_even_and_nested():
    recs = [{"id": f"u{i:03d}", "dialect": d} for i, d in enumerate(["mandarin"] * 50 + ["wu"] * 10 + ["min"] * 30)]
    sub = asr.balanced_subsample(recs, 24, seed=0)
    counts = {d: sum(r["dialect"] == d for r in sub) for d in ("mandarin", "wu", "min")}
    assert counts == {"mandarin": 8, "wu": 8, "min": 8}
    assert len(asr.balanced_subsample(recs, 60, seed=0)) == 60  # wu runs out: the others fill up
    assert asr.balanced_subsample(recs, None, seed=0) == sorted(recs, key=lambda r: r["id"])


def test_deadline_sampler_stops_when_the_budget_is_spent():
    s = asr.DeadlineSampler(50, seed=0)
    assert sorted(s) == list(range(50)) and not s.expired
    s.deadline = time.monotonic() - 1.0
    assert list(s) == [] and s.expired


def test_encoder_cache_resumes_and_reads_back(tmp_path):
    calls = []

    def compute(idx):
        calls.append(list(idx))
        return np.stack([np.full((3, 2), i, dtype=np.float32) for i in idx])

    cache = EncoderStateCache(tmp_path / "k", 5, chunk=2)
    (tmp_path / "k").mkdir()
    np.save(tmp_path / "k" / "chunk_0000002.npy", np.stack([np.full((3, 2), i, np.float16) for i in (2, 3)]))
    cache.build(compute, progress=False)
    assert calls == [[0, 1], [4]]  # the chunk already on disk is not recomputed
    assert cache.complete
    assert cache.batch([4, 0, 3]).shape == (3, 3, 2) and float(cache.batch([3])[0, 0, 0]) == 3.0
    assert cache.states(4).dtype == np.float16


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIG_ROOT.glob("asr*.yaml")))
def test_every_asr_config_loads_and_builds(name):
    run = asr.parse_config(load_config(name))
    model, _ = _tiny_whisper()
    module = asr.prepare_model(model, run.model)
    trainable, total = asr.count_parameters(module)
    assert 0 < trainable < total
    encoder_trainable = any(p.requires_grad for p in model.model.encoder.parameters())
    assert encoder_trainable == (run.model.encoder == "trained")


def test_cross_attention_mode_leaves_the_decoder_language_model_frozen():
    model, _ = _tiny_whisper()
    asr.prepare_model(model, asr.AsrModelConfig(decoder="cross_attention"))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".encoder_attn" in n for n in trainable)
    assert not any(p.requires_grad for p in model.model.encoder.parameters())
