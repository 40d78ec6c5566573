"""MLflow tracking (training/tracking.py) and champion promotion (training/registry.py) on a tmp sqlite store."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from training import registry, tracking
from training.config import load_config
from training.registry import should_promote


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One sqlite store for this file (creating MLflow's tables takes seconds); tests use distinct names."""
    return tmp_path_factory.mktemp("store")


@pytest.fixture
def store(store_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store_dir}/mlflow.db")
    monkeypatch.delenv(tracking.ARTIFACT_ROOT_ENV, raising=False)  # artifacts next to the db
    return store_dir


def test_tracking_uri_default_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(tracking.ARTIFACT_ROOT_ENV, raising=False)
    repo = Path(tracking.__file__).resolve().parent.parent
    assert tracking.tracking_uri() == f"sqlite:///{repo}/mlruns/mlflow.db"
    assert tracking.artifact_root() == repo / "mlruns" / "artifacts"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/sub/x.db")
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path}/sub/x.db" and (tmp_path / "sub").is_dir()
    assert tracking.artifact_root() == tmp_path / "sub" / "artifacts"


def test_start_run_records_config_provenance_and_plots(store: Path):
    import mlflow

    manifest = store / "manifest.jsonl"
    manifest.write_text('{"id": "c1", "text": "我的快递三天了还没到"}\n', encoding="utf-8")
    exp = store / "exp.yaml"
    exp.write_text("defaults: [{optim: adamw}, {trainer: cpu}]\nmodel: {hidden: 8, labels: [a, b]}\n")
    cfg = load_config(exp, ["optim.lr=0.002"])
    labels = ["logistics_delay", "refund", "other"]
    y_true = ["logistics_delay", "refund", "refund", "other", "other"]
    y_pred = ["logistics_delay", "refund", "other", "other", "other"]
    with tracking.start_run("intent", cfg, dataset_manifest=manifest, run_name="t") as run:
        tracking.log_metrics({"val_loss": torch.tensor(0.5), "acc": 0.8, "note": "skip me"}, step=3)
        cm = tracking.log_confusion_matrix(y_true, y_pred, labels, "val_confusion")
        f1 = tracking.log_per_class_f1(y_true, y_pred, labels, "val_f1")
        import numpy as np

        tracking.log_reliability(np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]]), [0, 1, 1], bins=5, name="val_reliability")
    assert cm.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 2]]
    assert f1["refund"] == pytest.approx(2 / 3) and f1["other"] == pytest.approx(0.8) and f1["logistics_delay"] == 1.0

    data = mlflow.get_run(run.info.run_id).data
    assert data.params["optim.lr"] == "0.002" and data.params["model.hidden"] == "8"
    assert data.params["trainer.early_stopping.metric"] == "null"
    assert data.metrics["val_loss"] == 0.5 and data.metrics["acc"] == 0.8 and "note" not in data.metrics
    assert data.metrics["f1_refund"] == pytest.approx(2 / 3)
    import hashlib

    assert data.tags["dataset_hash"] == hashlib.sha256(manifest.read_bytes()).hexdigest()[:16]
    assert data.tags["torch_version"] == torch.__version__ and data.tags["device"] == "cpu"
    assert data.tags["git_commit"] and data.tags["git_dirty"] in ("true", "false", "unknown") and data.tags["hostname"]

    artifacts = store / "artifacts" / "intent" / run.info.run_id / "artifacts"
    assert yaml.safe_load((artifacts / "config.yaml").read_text()) == yaml.safe_load(
        yaml.safe_dump(dict(cfg), allow_unicode=True))
    for png in ("plots/val_confusion.png", "plots/val_f1.png", "plots/val_reliability.png"):
        assert (artifacts / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert '"counts"' in (artifacts / "plots" / "val_confusion.json").read_text()


def test_nothing_logged_off_rank_zero_or_without_run(store: Path, monkeypatch: pytest.MonkeyPatch):
    import mlflow

    tracking.log_metrics({"x": 1.0})  # no active run: no-op, and no run gets auto-started
    assert mlflow.active_run() is None
    monkeypatch.setenv("RANK", "1")
    with tracking.start_run("rank1", {"a": 1}) as run:
        assert run is None
        tracking.log_metrics({"x": 1.0}, step=0)
    assert mlflow.active_run() is None


def test_should_promote_pure():
    assert should_promote(0.8, None)
    assert should_promote(0.8, 0.7) and not should_promote(0.7, 0.8)
    assert not should_promote(0.8, 0.8)  # ties keep the champion
    assert should_promote(0.2, 0.3, higher_is_better=False) and not should_promote(0.3, 0.2, higher_is_better=False)
    assert not should_promote(0.3, 0.3, higher_is_better=False)
    assert not should_promote(math.nan, 0.1) and should_promote(0.1, math.nan)


def _train_and_register(value: float, weight: float):
    import mlflow
    import mlflow.pytorch

    model = torch.nn.Linear(2, 1)
    torch.nn.init.constant_(model.weight, weight)
    with tracking.start_run("intent_reg", {"trainer": {"device": "cpu"}}) as run:
        tracking.log_metrics({"test_macro_f1": value})
        mlflow.pytorch.log_model(model, name="model", serialization_format="pickle", pip_requirements=["torch"])
    return run.info.run_id, registry.register_and_maybe_promote(run.info.run_id, "model", "intent_reg", "test_macro_f1", value)


def test_registry_promotes_only_better_models(store: Path):
    import mlflow

    with pytest.raises(registry.NoChampionError, match="no champion for intent_reg: run `hotline train intent_reg` first"):
        registry.load_champion("intent_reg", flavor="pytorch")

    _, first = _train_and_register(0.60, 1.0)
    assert first.promoted and first.previous_champion_version is None and "no champion" in first.reason
    assert str(registry.champion_version("intent_reg").version) == first.version

    worse_run, worse = _train_and_register(0.55, 2.0)
    assert not worse.promoted and worse.previous_champion_version == first.version
    assert worse.previous_champion_value == pytest.approx(0.60)
    assert "0.55 does not beat champion version 1 (0.6" in worse.reason
    assert str(registry.champion_version("intent_reg").version) == first.version
    tags = mlflow.get_run(worse_run).data.tags
    assert tags["promotion.promoted"] == "false" and tags["promotion.reason"] == worse.reason

    _, tie = _train_and_register(0.60, 3.0)
    assert not tie.promoted and "ties" in tie.reason

    better_run, better = _train_and_register(0.70, 4.0)
    assert better.promoted and better.previous_champion_version == first.version and "beats" in better.reason
    assert str(registry.champion_version("intent_reg").version) == better.version == "4"
    assert mlflow.get_run(better_run).data.tags["promotion.previous_champion_version"] == "1"
    assert registry.champion_uri("intent_reg") == "models:/intent_reg@champion"
    champion = registry.load_champion("intent_reg", flavor="pytorch")
    assert torch.all(champion.weight == 4.0)  # the alias moved to the better model's weights


def test_a_guard_keeps_failing_versions_out_and_replaces_a_failing_champion(store: Path):
    """ASR's rule: never worse than zero-shot on real speech (real_cer <= real_zero_shot_cer)."""
    import mlflow
    import mlflow.pytorch

    guard = ("real_cer", "real_zero_shot_cer")

    def register(val_cer: float, real_cer: float):
        with tracking.start_run("asr_reg", {"trainer": {"device": "cpu"}}) as run:
            tracking.log_metrics({"val_cer": val_cer, "real_cer": real_cer, "real_zero_shot_cer": 0.36})
            mlflow.pytorch.log_model(torch.nn.Linear(2, 1), name="model", serialization_format="pickle",
                                     pip_requirements=["torch"])
        return registry.register_and_maybe_promote(run.info.run_id, "model", "asr_reg", "val_cer", val_cer,
                                                   higher_is_better=False, guard=guard)

    first = register(0.58, 0.52)  # best synthetic CER, worse than zero-shot on real speech
    assert not first.promoted and "fails the guard real_cer <= real_zero_shot_cer" in first.reason
    assert registry.champion_version("asr_reg") is None
    second = register(0.77, 0.35)
    assert second.promoted and "no champion" in second.reason
    third = register(0.50, 0.40)  # better synthetic CER, but fails the guard: the champion stays
    assert not third.promoted and str(registry.champion_version("asr_reg").version) == second.version
    # a champion promoted before the guard existed, failing it, is replaced by the next version that passes
    registry._client().set_registered_model_alias("asr_reg", registry.CHAMPION, third.version)
    fourth = register(0.80, 0.30)
    assert fourth.promoted and f"version {third.version} fails the guard" in fourth.reason


def test_pinned_requirements_pin_installed_packages_and_skip_missing_ones():
    from importlib.metadata import version

    assert tracking.pinned_requirements(("numpy", "no-such-package-hotline")) == [f"numpy=={version('numpy')}"]


def _register_asr_like(name: str, metrics: dict, value, blocked: str | None = None):
    import mlflow
    import mlflow.pytorch

    with tracking.start_run(name, {"trainer": {"device": "cpu"}}) as run:
        tracking.log_metrics(metrics)
        mlflow.pytorch.log_model(torch.nn.Linear(2, 1), name="model", serialization_format="pickle",
                                 pip_requirements=["torch"])
    decision = registry.register_and_maybe_promote(run.info.run_id, "model", name, "val_cer", value,
                                                   higher_is_better=False, guard=("real_cer", "real_zero_shot_cer"),
                                                   blocked=blocked)
    return decision, mlflow.get_run(run.info.run_id).data.tags


def test_guards_fail_closed_on_missing_metrics_missing_values_and_errors(store: Path):
    """A skipped real-speech check (no manifest), a None value and an exception while scoring each block promotion,
    with the reason in the run's tags; nothing becomes champion."""
    name = "asr_closed"
    no_real, tags = _register_asr_like(name, {"val_cer": 0.3}, 0.3)  # the real-speech check never ran
    assert not no_real.promoted and no_real.blocked == "guard_metric_missing"
    assert tags["promotion.blocked"] == "guard_metric_missing" and "real_cer or real_zero_shot_cer" in tags["promotion.reason"]
    half, _ = _register_asr_like(name, {"val_cer": 0.3, "real_cer": 0.2}, 0.3)  # one side of the guard only
    assert not half.promoted and "no real_zero_shot_cer recorded" in half.reason
    nan, _ = _register_asr_like(name, {"val_cer": 0.3, "real_cer": 0.2, "real_zero_shot_cer": math.nan}, 0.3)
    assert not nan.promoted and nan.blocked == "guard_metric_missing"
    none_value, tags = _register_asr_like(name, {"real_cer": 0.2, "real_zero_shot_cer": 0.3}, None)
    assert not none_value.promoted and tags["promotion.blocked"] == "metric_missing"
    err, tags = _register_asr_like(name, {"val_cer": 0.3, "real_cer": 0.2, "real_zero_shot_cer": 0.3}, 0.3,
                                   blocked="the real-speech check raised OSError: no such file")
    assert not err.promoted and tags["promotion.blocked"] == "caller" and "OSError" in tags["promotion.reason"]
    assert registry.champion_version(name) is None
    ok, tags = _register_asr_like(name, {"val_cer": 0.3, "real_cer": 0.2, "real_zero_shot_cer": 0.3}, 0.3)
    assert ok.promoted and tags["promotion.blocked"] == "false"


def test_a_champion_without_the_metrics_is_replaced_only_by_a_version_that_passes_the_guard(store: Path):
    name = "asr_legacy"
    legacy, _ = _register_asr_like(name, {"real_cer": 0.2, "real_zero_shot_cer": 0.3}, 0.5)
    assert legacy.promoted
    client = registry._client()
    import mlflow

    with tracking.start_run(name, {"trainer": {"device": "cpu"}}) as run:
        mlflow.pytorch.log_model(torch.nn.Linear(2, 1), name="model", serialization_format="pickle",
                                 pip_requirements=["torch"])
    no_metrics = registry.register_and_maybe_promote(run.info.run_id, "model", name, "val_cer", 0.4,
                                                     higher_is_better=False, guard=("real_cer", "real_zero_shot_cer"))
    assert not no_metrics.promoted and no_metrics.blocked == "guard_metric_missing"  # the old champion stays
    # a champion whose run lacks what later versions are compared on (registered before the metric or guard existed)
    client.set_registered_model_alias(name, registry.CHAMPION, no_metrics.version)
    failing, _ = _register_asr_like(name, {"val_cer": 0.1, "real_cer": 0.5, "real_zero_shot_cer": 0.3}, 0.1)
    assert not failing.promoted and "fails the guard" in failing.reason
    assert str(registry.champion_version(name).version) == no_metrics.version
    passing, _ = _register_asr_like(name, {"val_cer": 0.9, "real_cer": 0.25, "real_zero_shot_cer": 0.3}, 0.9)
    assert passing.promoted and f"version {no_metrics.version} has no real_cer or real_zero_shot_cer" in passing.reason


def test_the_champion_is_compared_on_the_value_it_was_registered_with(store: Path):
    """A run logs val_score at every evaluation and then once for the final model: the registry compares against the
    registered value (the model-version tag), not the run's latest logged one."""
    import mlflow
    import mlflow.pytorch

    with tracking.start_run("intent_tagged", {"trainer": {"device": "cpu"}}) as run:
        tracking.log_metrics({"val_score": 0.9}, step=50)  # an evaluation during training (latest step)
        tracking.log_metrics({"val_score": 0.6})  # the final model's score, logged at step 0
        mlflow.pytorch.log_model(torch.nn.Linear(2, 1), name="model", serialization_format="pickle",
                                 pip_requirements=["torch"])
    first = registry.register_and_maybe_promote(run.info.run_id, "model", "intent_tagged", "val_score", 0.6)
    assert first.promoted
    with tracking.start_run("intent_tagged", {"trainer": {"device": "cpu"}}) as run2:
        mlflow.pytorch.log_model(torch.nn.Linear(2, 1), name="model", serialization_format="pickle",
                                 pip_requirements=["torch"])
    second = registry.register_and_maybe_promote(run2.info.run_id, "model", "intent_tagged", "val_score", 0.7)
    assert second.previous_champion_value == pytest.approx(0.6) and second.promoted  # 0.7 beats 0.6 (not 0.9)


def test_promote_on_names_an_unknown_promote_metric(store: Path):
    """The trainers' one promotion step: a metric the run did not compute is a config error listing the ones it did,
    and nothing is registered."""
    from training.config import ConfigError

    with pytest.raises(ConfigError, match=r"evaluation.promote_metric 'val_f1' is not one of \['val_accuracy'\]"):
        registry.promote_on("no-run", "model", "dialect_reg", "val_f1", {"val_accuracy": 0.5})
    assert registry.champion_version("dialect_reg") is None
