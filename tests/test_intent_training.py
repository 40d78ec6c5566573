"""`hotline train intent` end to end on tiny settings: both experiment configs train, log and register."""

from __future__ import annotations

import json
import os
import random

import pytest

from training.config import CONFIG_ROOT

TINY = ["data.n_train=48", "data.n_validation=16", "data.n_test=16", "data.n_heldout=22", "trainer.max_steps=2",
        "trainer.progress_bar=false"]
REFIT = ["refit.enabled=true", "data.selection_templates=1", "data.n_selection=22"]


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
    for split in ("test", "test_noisy", "heldout", "heldout_noisy"):
        for m in ("intent_accuracy", "intent_macro_f1", "slot_f1", "ticket_completeness", "complaint_f1", "ece"):
            assert 0.0 <= metrics[f"{split}_{m}"] <= 1.0, (split, m)
    for m in ("temperature", "val_ece_before", "val_ece_after", "val_score", "train_loss"):
        assert m in metrics
    tags = runs[0].data.tags
    from data.synth.heldout import FINGERPRINT

    assert tags["heldout_fingerprint"] == FINGERPRINT  # the run says which held-out set it reports
    saved = json.loads((out / "metrics.json").read_text(encoding="utf-8"))  # the saved model's final scores
    if "refit.enabled=true" in argv:  # the tested and registered model was trained again on train + validation,
        # so it is compared on the selection split it never saw, and stage one's selection score sits beside it
        assert metrics["refit_train_size"] == 48 + 16 and metrics["refit_seconds"] > 0 and "refit_train_loss" in metrics
        assert tags["promotion.metric"] == "sel_score" and float(tags["promotion.value"]) == saved["sel_score"]
        assert "stage1_sel_score" in metrics
    else:  # the registered model is stage one's, compared on its own validation score
        assert "refit_seconds" not in metrics
        assert tags["promotion.metric"] == "val_score" and float(tags["promotion.value"]) == saved["val_score"]
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert {"config.yaml", "plots", "worst_errors.json"} <= artifacts
    plots = {a.path for a in client.list_artifacts(runs[0].info.run_id, "plots")}
    assert "plots/val_confusion.png" in plots and "plots/val_per_class_f1.png" in plots
    assert not any("test" in p for p in plots), "no training run shows test errors"
    worst = json.loads(mlflow.artifacts.load_text(f"runs:/{runs[0].info.run_id}/worst_errors.json"))
    split_col = worst["columns"].index("split") if "columns" in worst else None
    rows = worst["data"] if split_col is not None else [[x] for x in worst.get("split", [])]
    assert all(r[split_col or 0] == "validation" for r in rows)
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


def test_refit_sees_validation_and_keeps_calibration(tmp_path):
    """refit(): a fresh model whose vocabulary and gazetteer come from train + validation, trained for the
    scaled step count, with the stage-one expert weights and temperature."""
    from training.config import load_config, to_dataclass
    from training.intent import IntentDataConfig, Labelled, RefitConfig, build_model, generate_split, refit
    from training.loop import OptimConfig, TrainerConfig
    from models.intent.understand import LabelMaps

    cfg = load_config(CONFIG_ROOT / "intent.yaml", TINY)
    data_cfg, labels = to_dataclass(IntentDataConfig, cfg["data"]), LabelMaps.from_taxonomy()
    train = generate_split("train", 22, seed=0)
    extra = Labelled("鑫淼犇的龘被扣了两次钱", "billing_error", {"product": "龘"}, (("product", 4, 5),), True)
    first = build_model(cfg["model"], [u.text for u in train], labels)
    first.set_expert_weights((0.5, 0.25, 2.0))
    first.temperature = 1.7
    new = refit(first, [*train, extra], kept_steps=2, steps_per_epoch=1, model_cfg=cfg["model"], labels=labels,
                data_cfg=data_cfg, optim_cfg=to_dataclass(OptimConfig, cfg["optim"]),
                trainer_cfg=to_dataclass(TrainerConfig, cfg["trainer"]), refit_cfg=RefitConfig(enabled=True))
    assert new is not first and new.temperature == 1.7 and new.config.expert_weights == (0.5, 0.25, 2.0)
    assert "龘" in new.vocab.chars and "龘" not in first.vocab.chars and "龘" in new.gazetteer["product"]
    assert new.predict(["鑫淼犇的龘被扣了两次钱"])[0].intent in labels.intents


def test_refit_members_train_an_averaged_ensemble(tmp_path):
    """refit.members=2: two refit models (seeds 0 and 1) are averaged; the ensemble is tested, saved, registered."""
    from models.intent.ensemble import EnsembleIntentModel
    from models.intent.understand import load_intent_model

    config = _run_and_check([str(CONFIG_ROOT / "intent.yaml"), *TINY, *REFIT, "refit.members=2"], tmp_path)
    assert config["backend"] == "ensemble" and config["members"] == ["member-0", "member-1"]
    model = load_intent_model(tmp_path / "model_out")
    assert isinstance(model, EnsembleIntentModel) and len(model.members) == 2
    a, b = (m.net.state_dict() for m in model.members)
    assert any(not (a[k] == b[k]).all() for k in a), "the members must differ (their seeds do)"
    assert len({m.temperature for m in model.members}) == 1 and model.temperature == 1.0  # stage one's, on each


def test_refit_members_need_refit(tmp_path):
    from training.config import ConfigError
    from training.intent import main

    with pytest.raises(ConfigError, match="refit.members=2"):
        main(["--config", str(CONFIG_ROOT / "intent.yaml"), *TINY, "refit.enabled=false", "refit.members=2"])
    with pytest.raises(ConfigError, match="refit.members=0"):
        main(["--config", str(CONFIG_ROOT / "intent.yaml"), *TINY, "refit.members=0"])
    with pytest.raises(ConfigError, match="data.selection_templates=1"):  # refit is never compared on validation
        main(["--config", str(CONFIG_ROOT / "intent.yaml"), *TINY, "refit.enabled=true"])


def test_selection_split_is_carved_from_training_templates_only():
    from data.synth.text import TextGenerator, split_templates
    from training.intent import generate_split, promote_metric_for, template_splits

    gen = TextGenerator()
    base, carved = split_templates(gen, 0), template_splits(gen, 0, selection_templates=1)
    moved = {t for t in carved if carved[t] != base[t]}
    assert len(moved) == 11 and all(base[t] == "train" and carved[t] == "selection" for t in moved)
    assert all(int(t.rsplit("/", 1)[1]) < len(gen.template_ids(t.rsplit("/", 1)[0])) for t in moved)  # core only
    sel = generate_split("selection", 22, seed=0, selection_templates=1)
    assert {u.template_id for u in sel} <= moved
    train = generate_split("train", 220, seed=0, extra_templates=True, selection_templates=1)
    assert not {u.template_id for u in train} & moved
    assert promote_metric_for("val_score", refit=True) == "sel_score" and promote_metric_for("val_score", False) == "val_score"


def test_refit_refuses_multi_process_runs(tmp_path, monkeypatch):
    from training.config import ConfigError
    from training.intent import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="refit.enabled=false"):
        main(["--config", str(CONFIG_ROOT / "intent.yaml"), *TINY, *REFIT])


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


def test_extra_templates_join_training_only():
    from data.synth.text import TextGenerator
    from training.intent import generate_split

    gen = TextGenerator()
    core = {t for i in gen.taxonomy.intent_names for t in gen.template_ids(i)}
    for name in ("validation", "test"):  # the held-out phrasings are the same with or without the extras
        assert generate_split(name, 44, seed=0, extra_templates=True) == generate_split(name, 44, seed=0)
    train = generate_split("train", 440, seed=0, extra_templates=True)
    extra = {u.template_id for u in train} - core
    assert len(extra) >= 11 and all(gen.template(t) for t in extra)
    assert {u.template_id for u in generate_split("train", 440, seed=0)} <= core
