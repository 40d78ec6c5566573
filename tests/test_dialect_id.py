"""Dialect identification: `hotline train dialect` end to end on the tiny corpus with a tiny random Whisper
(train, calibrate, real-speech check, log, register, load back), the config tree, decoder options from the
result, and unknown labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from data.audio import SAMPLE_RATE, load_audio
from models.asr.dialect_id import (
    DialectIdConfig,
    DialectIdModel,
    DialectResult,
    confident_dialect,
    decode_options_for,
    label_ids,
)
from models.taxonomy import DIALECTS, UnknownLabelError
from test_emotion_model import tiny_whisper, voice  # tests/ is on sys.path (rootdir conftest)
from training.config import load_config, to_dataclass
from training.dialect import DialectDataConfig, EvaluationConfig, main, read_split, stratified_subsample

CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs"


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory) -> Path:
    return tiny_whisper(tmp_path_factory.mktemp("tiny_whisper"))


def _result(probs: dict[str, float]) -> DialectResult:
    best = max(probs, key=probs.get)
    return DialectResult(best, probs[best], probs)


def test_train_register_and_load(tiny_corpus, whisper_dir, tmp_path):
    import mlflow
    from mlflow import MlflowClient

    out = tmp_path / "model"
    args = ["--config", str(CONFIGS / "dialect.yaml"), "--out", str(out), f"data.corpus_dir={tiny_corpus}",
            f"model.encoder={whisper_dir}", "model.layers=[1,2]", "model.max_seconds=1.5", "model.hidden=16",
            "trainer.max_steps=2", f"data.cache_dir={tmp_path / 'cache'}", "data.batch_size=8", "threads=1",
            f"evaluation.realspeech={tiny_corpus / 'test.jsonl'}", "evaluation.max_real=4"]
    assert main(args) == 0

    exp = mlflow.get_experiment_by_name("dialect")
    run = mlflow.search_runs([exp.experiment_id], output_format="list")[-1]
    m = run.data.metrics
    for key in ("test_accuracy", "test_macro_f1", "test_ece", "val_accuracy", "val_ece_after", "temperature",
                "real_accuracy", "test_confident_coverage", "fit_seconds"):
        assert key in m and np.isfinite(m[key]), key
    assert 0.0 <= m["test_accuracy"] <= 1.0 and m["temperature"] > 0
    assert any(k.startswith("real_acc_") for k in m) and any(k.startswith("test_f1_") for k in m)
    assert MlflowClient().get_registered_model("dialect").aliases.get("champion") in (1, "1")
    report = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert report["test_confusion"]["labels"] == list(DIALECTS)
    assert list((tmp_path / "cache").rglob("chunk_*.npy"))  # features were cached

    # the saved folder is all inference needs: config json + head + the (non-default) encoder
    meta = json.loads((out / "dialect_id.json").read_text(encoding="utf-8"))
    assert meta["labels"] == list(DIALECTS) and meta["sample_rate"] == SAMPLE_RATE and meta["config"]["layers"] == [1, 2]
    model = DialectIdModel.load(out)
    wavs = sorted((tiny_corpus / "audio").rglob("*.wav"))[:3]
    audios = [load_audio(w, SAMPLE_RATE) for w in wavs]
    p = model.predict_proba(audios[0])
    assert p.shape == (len(DIALECTS),) and p.sum() == pytest.approx(1.0, abs=1e-6) and (p >= 0).all()
    many = model.predict_proba(audios)
    assert many.shape == (3, len(DIALECTS))
    np.testing.assert_allclose(many.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(many[0], p, atol=1e-5)  # batching does not change an utterance's result
    r = model.identify(audios[1])
    assert r.dialect in DIALECTS and r.confidence == pytest.approx(max(r.probs.values()))
    assert list(r.probs) == list(DIALECTS)

    # the registered champion loads through MLflow's pyfunc flavour and takes file paths
    pyfunc = mlflow.pyfunc.load_model("models:/dialect@champion")
    rows = pyfunc.predict([str(w) for w in wavs[:2]])
    assert [row["dialect"] in DIALECTS for row in rows] == [True, True]
    assert rows[0]["probs"] == pytest.approx(dict(zip(DIALECTS, map(float, many[0]))), abs=1e-5)


@pytest.mark.parametrize("combine", ["weighted", "concat"])
def test_save_load_roundtrip(whisper_dir, tmp_path, combine):
    torch.manual_seed(0)
    cfg = DialectIdConfig(encoder=str(whisper_dir), layers=(0, 2), max_seconds=1.0, combine=combine, hidden=8)
    model = DialectIdModel.create(cfg)
    model.temperature = 1.7
    audio = voice(180.0, 1.4, syllables_per_s=4.0)
    before = model.predict_proba(audio)
    loaded = DialectIdModel.load(model.save(tmp_path / combine))
    np.testing.assert_allclose(loaded.predict_proba(audio), before, atol=1e-6)
    assert loaded.temperature == pytest.approx(1.7) and loaded.cfg == DialectIdConfig(
        encoder=str(tmp_path / combine / "encoder"), layers=(0, 2), max_seconds=1.0, combine=combine, hidden=8)
    with pytest.raises(ValueError, match="mono 16 kHz"):
        loaded.identify(np.zeros((2, 100), np.float32))
    with pytest.raises(ValueError, match="list of them"):
        loaded.predict_proba(np.zeros((2, 100), np.float32))


def test_config_loads_and_builds():
    cfg = load_config(CONFIGS / "dialect.yaml")
    data = to_dataclass(DialectDataConfig, cfg["data"])
    mcfg = to_dataclass(DialectIdConfig, cfg["model"])
    ev = to_dataclass(EvaluationConfig, cfg["evaluation"])
    assert data.max_train is None and data.max_test is None and ev.promote_metric == "val_accuracy"
    assert cfg["name"] == "dialect" and cfg["trainer"]["early_stopping"]["metric"] == "val_head_accuracy"
    model = DialectIdModel.create(mcfg, d_model=512)  # whisper-base width: the head builds without the encoder
    x = np.random.default_rng(0).normal(size=(4, len(mcfg.layers) * 2 * 512)).astype(np.float32)
    p = model.probs(x)
    assert p.shape == (4, len(DIALECTS))
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="model.combine"):
        DialectIdModel.create(DialectIdConfig(combine="sum"), d_model=8)
    with pytest.raises(ValueError, match="model.layers"):
        DialectIdModel.create(DialectIdConfig(layers=()), d_model=8)


def test_decode_options_fall_back_when_unsure():
    sure = _result({"mandarin": 0.05, "cantonese": 0.85, "southwestern": 0.04, "wu": 0.03, "min": 0.03})
    unsure = _result({"mandarin": 0.3, "cantonese": 0.35, "southwestern": 0.15, "wu": 0.1, "min": 0.1})
    opts = decode_options_for(sure, vocabulary=["<|zh|>", "<|yue|>"], min_confidence=0.6)
    assert (opts.language, opts.prompt) == ("yue", "粤语")
    assert decode_options_for(sure, vocabulary=["<|zh|>"]).language == "zh"  # whisper-base has no <|yue|>
    low = decode_options_for(unsure, vocabulary=["<|zh|>", "<|yue|>"], min_confidence=0.6, hotwords=["小米"])
    assert (low.language, low.prompt) == ("zh", "小米")  # no dialect name, hotwords kept
    assert decode_options_for(None).prompt == "" and confident_dialect(unsure, 0.3) == "cantonese"
    with pytest.raises(ValueError, match="min_confidence"):
        confident_dialect(sure, 1.5)


def test_unknown_dialect_label_is_a_clear_error(tmp_path, tiny_corpus):
    with pytest.raises(UnknownLabelError, match="'hakka'.*mandarin, cantonese"):
        label_ids(["mandarin", "hakka"], where="x.jsonl")
    lines = (tiny_corpus / "train.jsonl").read_text(encoding="utf-8").splitlines()[:3]
    bad = json.loads(lines[1])
    bad["dialect"] = "hakka"
    bad["audio"] = str(tiny_corpus / bad["audio"])
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join([lines[0], json.dumps(bad, ensure_ascii=False)]) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"train.jsonl: 1 lines have an unknown dialect label[\s\S]*line 2.*'hakka'"):
        read_split(path)


def test_stratified_subsample_is_even_over_dialects():
    recs = [{"id": f"u{i:03d}", "dialect": DIALECTS[0] if i < 70 else DIALECTS[1 + i % 4]} for i in range(100)]
    sub = stratified_subsample(recs, 25, seed=0)
    counts = {d: sum(r["dialect"] == d for r in sub) for d in DIALECTS}
    assert len(sub) == 25 and set(counts.values()) == {5}
    assert [r["id"] for r in sub] == sorted(r["id"] for r in sub)
    assert stratified_subsample(recs, None, 0) == recs
