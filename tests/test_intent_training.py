"""`hotline train intent` end to end on tiny settings: both experiment configs train, log and register."""

from __future__ import annotations

import json
import os
import random

import pytest

from training.config import CONFIG_ROOT

TINY = ["data.n_train=48", "data.n_validation=16", "data.n_test=16", "trainer.max_steps=2", "trainer.progress_bar=false"]


@pytest.fixture(autouse=True)
def _restore_threads():
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _run_and_check(argv: list[str], tmp_path) -> dict:
    import mlflow
    from mlflow import MlflowClient

    from training.intent import main

    out = tmp_path / "model_out"
    assert main(["--config", *argv[:1], "--out", str(out), *argv[1:]]) == 0
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("intent")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    metrics = runs[0].data.metrics
    for split in ("test", "test_noisy"):
        for m in ("intent_accuracy", "intent_macro_f1", "slot_f1", "ticket_completeness", "complaint_f1", "ece"):
            assert 0.0 <= metrics[f"{split}_{m}"] <= 1.0, (split, m)
    for m in ("temperature", "val_ece_before", "val_ece_after", "val_score", "train_loss"):
        assert m in metrics
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert {"config.yaml", "plots", "worst_errors.json"} <= artifacts
    plots = {a.path for a in client.list_artifacts(runs[0].info.run_id, "plots")}
    assert "plots/test_confusion.png" in plots and "plots/test_noisy_per_class_f1.png" in plots
    versions = client.search_model_versions("name='intent'")
    assert len(versions) == 1 and versions[0].run_id == runs[0].info.run_id
    assert client.get_model_version_by_alias("intent", "champion").version == versions[0].version
    # the registered model loads back as our model and as an MLflow pyfunc
    from models.intent.understand import load_intent_model

    local = mlflow.artifacts.download_artifacts(f"models:/intent/{versions[0].version}", dst_path=str(tmp_path / "dl"))
    text = "我要投诉，订单号幺三八零零一二三四五六还没到"
    registered = load_intent_model(local).predict([text])
    assert registered == load_intent_model(out).predict([text])
    pyfunc = mlflow.pyfunc.load_model(f"models:/intent@champion")
    assert pyfunc.predict([text])[0]["intent"] == registered[0].intent
    return json.loads((out / "config.json").read_text(encoding="utf-8"))


def test_train_intent_char_config(tmp_path):
    config = _run_and_check([str(CONFIG_ROOT / "intent.yaml"), *TINY], tmp_path)
    assert config["backend"] == "char" and config["temperature"] > 0


def test_train_intent_hf_config(tmp_path):
    from data.synth.text import TextGenerator
    from test_intent_model import make_tiny_bert

    gen = TextGenerator()
    rng = random.Random(0)
    texts = [gen.utterance(rng, i, "neutral", "mandarin").text for i in gen.taxonomy.intent_names for _ in range(10)]
    bert = make_tiny_bert(tmp_path / "bert", texts)
    config = _run_and_check([str(CONFIG_ROOT / "intent_hf.yaml"), *TINY, f"model.pretrained={bert}"], tmp_path)
    assert config["backend"] == "hf" and config["model"]["pretrained"] == bert


def test_corpus_dir_is_read(tmp_path):
    """data.corpus_dir reads {train,validation,test}.jsonl; records without spans still train the intent head."""
    from training.intent import load_data, IntentDataConfig

    from data.manifest import write_manifest

    rows = {
        "train": [{"id": "a", "text": "订单号幺三八零零一二三四五六还没到", "intent": "logistics_delay",
                   "slots": {"order_id": "13800123456"}, "slot_spans": [["order_id", 3, 14]]},
                  {"id": "b", "text": "谢谢你们", "intent": "praise"}],
        "validation": [{"id": "c", "text": "请问怎么开发票", "intent": "consultation"}],
        "test": [{"id": "d", "text": "退款一直没到", "intent": "refund_dispute"}, {"id": "e", "text": "no intent"}],
    }
    for split, recs in rows.items():
        write_manifest(recs, tmp_path / f"{split}.jsonl")
    data = load_data(IntentDataConfig(corpus_dir=str(tmp_path)))
    assert [u.text for u in data["train"]] == ["订单号幺三八零零一二三四五六还没到", "谢谢你们"]
    assert data["train"][0].spans == (("order_id", 3, 14),) and data["train"][1].spans is None
    assert data["train"][0].is_complaint and not data["train"][1].is_complaint
    assert len(data["test"]) == 1
    with pytest.raises(FileNotFoundError, match="data.corpus_dir"):
        load_data(IntentDataConfig(corpus_dir=str(tmp_path / "missing")))


def test_generated_splits_use_held_out_templates():
    from data.synth.text import TextGenerator, split_templates
    from training.intent import generate_split

    split = split_templates(TextGenerator(), seed=3)
    for name in ("train", "test"):
        data = generate_split(name, 33, seed=3)
        assert len(data) == 33 and len({u.intent for u in data}) == 11  # evenly over intents
        assert {split[u.template_id] for u in data} == {name}
