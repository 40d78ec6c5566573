"""`hotline train emotion` end to end, 2 steps per config file, on the tiny corpus and the test's MLflow store:
the embedded Whisper-head default (tiny random Whisper), the Hugging Face backend (tiny random wav2vec2),
and a CASIA-style emotion-folder corpus fed through data/adapters.py unchanged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from test_emotion_model import tiny_whisper  # tests/ is on sys.path (rootdir conftest)
from training.emotion import balanced_subsample, main, split_by_speaker
from training.features import cached_rows

CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs"


def _runs(experiment: str):
    import mlflow

    exp = mlflow.get_experiment_by_name(experiment)
    return mlflow.search_runs([exp.experiment_id], output_format="list") if exp else []


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory) -> Path:
    return tiny_whisper(tmp_path_factory.mktemp("tiny_whisper"))


def _common(tmp_path: Path) -> list[str]:
    return ["trainer.max_steps=2", f"data.cache_dir={tmp_path / 'cache'}", "data.batch_size=8", "threads=2"]


def test_default_config_two_steps(tiny_corpus, whisper_dir, tmp_path):
    out = tmp_path / "model"
    args = ["--config", str(CONFIGS / "emotion.yaml"), "--out", str(out), f"data.corpus_dir={tiny_corpus}",
            f"model.encoder={whisper_dir}", "model.layers=[1,2]", "model.max_seconds=1.5", "model.hidden=16",
            "evaluation.max_calls=1", *_common(tmp_path)]
    assert main(args) == 0
    run = _runs("emotion")[-1]
    m = run.data.metrics
    for key in ("test_macro_f1", "test_accuracy", "test_ece", "test_f1_angry", "val_ece_after", "temperature",
                "ablation_encoder_only_test_macro_f1", "ablation_encoder_prosody_test_macro_f1",
                "ablation_prosody_only_test_macro_f1", "fusion_test_audio_macro_f1", "fusion_test_text_macro_f1",
                "fusion_test_fused_macro_f1", "fusion_text_weight", "weibo_lexicon_macro_f1",
                # speaker normalisation in the ablation; text and fusion per transcript source
                "ablation_encoder_only_spknorm_test_macro_f1", "ablation_prosody_only_spknorm_test_macro_f1",
                "fusion_reference_test_text_macro_f1", "fusion_asr_noise_test_text_macro_f1",
                "fusion_asr_noise_test_fused_macro_f1", "operating_asr_noise_test_macro_f1",
                "text_lexicon_asr_noise_val_macro_f1"):
        assert key in m, key
        assert np.isfinite(m[key]), key
    assert 0.0 <= m["test_macro_f1"] <= 1.0 and 0.0 <= m["fusion_text_weight"] <= 1.0
    calls = [json.loads(x) for x in (tiny_corpus / "calls.jsonl").read_text(encoding="utf-8").splitlines()]
    if any(c.get("split") == "test" for c in calls):  # the tiny corpus' 3 calls may all fall in train
        assert m["calls_scored"] == 1 and 0 <= m["calls_emotion_accuracy"] <= 1
        # plain heads score segments alone; normalising heads causally, on the caller's history, and alone
        for key in ("calls_encoder_only_segment_macro_f1", "calls_encoder_only_spknorm_causal_segment_macro_f1",
                    "calls_encoder_only_spknorm_alone_segment_macro_f1"):
            assert 0.0 <= m[key] <= 1.0, key
    assert m["weibo_lexicon_macro_f1"] > 0.3  # the real-text check runs on the shared Weibo file
    # the saved model loads and classifies; it is registered as "emotion"
    from models.emotion.model import load_emotion_model
    from data.audio import load_audio

    model = load_emotion_model(out)
    wav = next((tiny_corpus / "audio").rglob("*.wav"))
    r = model.classify(load_audio(wav, 16000))
    assert r.emotion in model.labels and 0 <= r.arousal <= 1
    fusion = json.loads((out / "fusion.json").read_text())
    assert fusion["text_signal"] in ("lexicon", "ngram", "lexicon_ngram") and fusion["transcripts"] == "asr_noise"
    assert model.normalises == (run.data.params["model.speaker_norm"] != "none")
    from mlflow import MlflowClient

    assert MlflowClient().get_registered_model("emotion").name == "emotion"
    assert list((tmp_path / "cache").rglob("chunk_*.npy"))  # features were cached


def test_feature_cache_resumes_and_reads_back(tmp_path):
    calls = []

    def compute(idx):
        calls.append(list(idx))
        return np.asarray(idx, dtype=np.float32)[:, None] * 2

    first = cached_rows(tmp_path / "c", 600, compute, "test")
    assert first[:, 0].tolist() == [2.0 * i for i in range(600)] and len(calls) == 3  # chunks of CHUNK=256
    (tmp_path / "c" / "chunk_0000256.npy").unlink()  # an interrupted run: the missing chunk only is recomputed
    calls.clear()
    again = cached_rows(tmp_path / "c", 600, compute, "test")
    np.testing.assert_array_equal(again, first)
    assert calls == [list(range(256, 512))]


def test_hf_backend_config_two_steps(tiny_corpus, tmp_path):
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

    torch.manual_seed(0)
    cfg = Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                         conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_feat_extract_layers=2,
                         num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2, classifier_proj_size=8,
                         vocab_size=8, do_stable_layer_norm=False, feat_extract_norm="group")
    pretrained = tmp_path / "w2v"
    Wav2Vec2ForSequenceClassification(cfg).save_pretrained(pretrained)
    Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(pretrained)
    out = tmp_path / "model"
    args = ["--config", str(CONFIGS / "emotion_hf.yaml"), "--out", str(out), f"data.corpus_dir={tiny_corpus}",
            f"model.pretrained={pretrained}", "model.max_seconds=1.0", "evaluation.max_calls=0", *_common(tmp_path)]
    assert main(args) == 0
    m = _runs("emotion")[-1].data.metrics
    assert "test_macro_f1" in m and "fusion_test_fused_macro_f1" in m
    assert not any(k.startswith("ablation_") for k in m)
    from models.emotion.hf_backend import HFEmotionModel
    from models.emotion.model import load_emotion_model

    model = load_emotion_model(out)
    assert isinstance(model, HFEmotionModel)
    r = model.classify(np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32))
    assert r.emotion in model.labels and sum(r.probs.values()) == pytest.approx(1.0, abs=1e-5)


def test_emotion_folder_corpus_feeds_training(tiny_corpus, whisper_dir, tmp_path):
    """A CASIA-style tree SPEAKER/<emotion>/*.wav, read by data.adapters.emotion_folders, split by speaker."""
    root = tmp_path / "casia"
    for split in ("train", "validation", "test"):
        for line in (tiny_corpus / f"{split}.jsonl").read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            dst = root / rec["speaker"] / rec["emotion"] / Path(rec["audio"]).name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(tiny_corpus / rec["audio"], dst)
    args = ["--config", str(CONFIGS / "emotion.yaml"), "data=emotion_folders", f"data.emotion_folders={root}",
            f"model.encoder={whisper_dir}", "model.layers=[2]", "model.max_seconds=1.0", "model.hidden=16",
            "evaluation.ablation=false", "evaluation.weibo_path=null", *_common(tmp_path)]
    assert main(args) == 0
    run = _runs("emotion")[-1]
    assert run.data.params["data.emotion_folders"] == str(root)
    assert run.data.params["data.telephone"] == "True"
    assert "test_macro_f1" in run.data.metrics


def test_speaker_split_and_balanced_subsample():
    recs = [{"id": f"u{i}", "speaker": f"s{i % 10}", "emotion": ["angry", "sad"][i % 3 == 0]} for i in range(100)]
    parts = split_by_speaker(recs, seed=0)
    spk = {s: {r["speaker"] for r in v} for s, v in parts.items()}
    assert all(spk.values())
    assert not (spk["train"] & spk["test"]) and not (spk["train"] & spk["validation"]) and not (spk["validation"] & spk["test"])
    assert sum(len(v) for v in parts.values()) == 100
    sub = balanced_subsample(recs, 20, seed=0)
    assert len(sub) == 20 and sum(r["emotion"] == "sad" for r in sub) == 10
    with pytest.raises(ValueError, match="at least 3"):
        split_by_speaker(recs[:2], seed=0)


def test_emotion_champion_feeds_predict_and_evaluate(tiny_corpus, whisper_dir, tmp_path, capsys):
    """A registered emotion champion is plugged into `hotline predict/evaluate` through the one pipeline."""
    from training.cli import main as cli
    from training.intent import main as train_intent

    assert train_intent(["data.n_train=44", "data.n_validation=22", "data.n_test=22", "trainer.max_steps=2",
                         "trainer.progress_bar=false", "model.hidden=16", "evaluation.worst_errors=5"]) == 0
    assert main(["--config", str(CONFIGS / "emotion.yaml"), "--out", str(tmp_path / "emo"),
                 f"data.corpus_dir={tiny_corpus}", f"model.encoder={whisper_dir}", "model.layers=[1,2]",
                 "model.max_seconds=1.5", "model.hidden=16", "evaluation.max_calls=1", *_common(tmp_path)]) == 0
    capsys.readouterr()
    report = tmp_path / "r.json"
    assert cli(["evaluate", "--manifest", str(tiny_corpus / "test.jsonl"), "--out", str(report),
                "--recogniser", "none"]) == 0  # the emotion champion is under test, not the recogniser
    out = capsys.readouterr().out
    assert "emotion v" in out
    rep = json.loads(report.read_text(encoding="utf-8"))
    preds = [json.loads(line) for line in (tmp_path / "r.predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert preds and all(p["emotion"] in ("neutral", "angry", "anxious", "sad", "happy") for p in preds)
    assert all(0.0 <= p["emotion_confidence"] <= 1.0 for p in preds)
    assert rep["emotion"]["n"] == len(preds)
