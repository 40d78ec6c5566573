"""Config composition, overrides and typed dataclasses (training/config.py) over the real config tree."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from training.config import (
    CONFIG_ROOT,
    ConfigError,
    config_files,
    flatten,
    load_config,
    parse_value,
    resolved_yaml,
    to_dataclass,
)
from training.loop import OptimConfig, TrainerConfig


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    """An experiment file (outside the repo) composed from the repo's real optim/trainer files."""
    return write(
        tmp_path / "exp.yaml",
        "defaults: [{optim: adamw}, {trainer: cpu}]\n"
        "optim: {lr: 3e-4}\n"
        "trainer: {early_stopping: {metric: macro_f1}}\n"
        "seed: 7\n",
    )


def test_generic_files_exist_and_type_check(tmp_path: Path):
    for concern, name in [("optim", "adamw"), ("trainer", "cpu"), ("trainer", "gpu"), ("trainer", "ddp_cpu")]:
        assert (CONFIG_ROOT / concern / f"{name}.yaml").is_file()
    exp = write(tmp_path / "exp.yaml", "defaults: [{optim: adamw}, {trainer: gpu}]\n")
    gpu = to_dataclass(TrainerConfig, load_config(exp)["trainer"])
    assert (gpu.device, gpu.precision, gpu.max_epochs) == ("cuda", "bf16", 10)  # the rest comes from cpu.yaml
    ddp = to_dataclass(TrainerConfig, load_config(exp, ["trainer=ddp_cpu"])["trainer"])
    assert (ddp.device, ddp.backend, ddp.num_processes, ddp.precision) == ("cpu", "gloo", 2, "fp32")
    assert to_dataclass(OptimConfig, load_config(exp)["optim"]).name == "adamw"


def test_composition_overrides_only_what_differs(experiment: Path):
    cfg = load_config(experiment)
    base = yaml.safe_load((CONFIG_ROOT / "optim" / "adamw.yaml").read_text())
    assert cfg["optim"]["lr"] == pytest.approx(3e-4)  # `3e-4` (no dot) is a float, not a string
    assert {k: v for k, v in cfg["optim"].items() if k != "lr"} == {k: v for k, v in base.items() if k != "lr"}
    assert cfg["trainer"]["early_stopping"] == {"metric": "macro_f1", "mode": "max", "patience": 3, "min_delta": 0.0}
    assert cfg["seed"] == 7 and "defaults" not in cfg
    optim = to_dataclass(OptimConfig, cfg["optim"])
    trainer = to_dataclass(TrainerConfig, cfg["trainer"])
    assert optim.betas == (0.9, 0.999) and isinstance(optim.betas, tuple)
    assert trainer.early_stopping.metric == "macro_f1" and trainer.device == "cpu"
    # the experiment's text shows up in the resolved YAML, which round-trips
    assert yaml.safe_load(resolved_yaml(cfg)) == yaml.safe_load(resolved_yaml(dict(cfg)))
    assert flatten(cfg)["trainer.early_stopping.metric"] == "macro_f1"


def test_cli_overrides(experiment: Path):
    cfg = load_config(experiment, ["optim.lr=1e-2", "trainer.max_steps=2", "+trainer.notes.owner=ops", "seed=null"])
    assert cfg["optim"]["lr"] == 0.01 and cfg["trainer"]["max_steps"] == 2
    assert cfg["trainer"]["notes"] == {"owner": "ops"} and cfg["seed"] is None
    assert parse_value("[1, 2]") == [1, 2] and parse_value("hello world") == "hello world"


def test_unknown_override_key_lists_valid_keys(experiment: Path):
    with pytest.raises(ConfigError) as e:
        load_config(experiment, ["optim.learning_rate=1"])
    msg = str(e.value)
    assert "learning_rate" in msg and "'optim'" in msg
    for valid in ("lr", "weight_decay", "warmup_ratio"):
        assert valid in msg
    assert "+optim.learning_rate=1" in msg
    with pytest.raises(ConfigError, match="unknown key 'nope' at the top level.*optim, seed, trainer"):
        load_config(experiment, ["nope=1"])
    with pytest.raises(ConfigError, match="must look like key.sub=value"):
        load_config(experiment, ["optim.lr"])


def test_group_swap_on_command_line_keeps_experiment_keys(experiment: Path):
    cfg = load_config(experiment, ["trainer=gpu"])
    assert cfg["trainer"]["device"] == "cuda" and cfg["trainer"]["precision"] == "bf16"
    assert cfg["trainer"]["early_stopping"]["metric"] == "macro_f1"  # the experiment's own key still applies


def test_missing_file_names_file_and_options(experiment: Path, tmp_path: Path):
    with pytest.raises(ConfigError) as e:
        load_config(experiment, ["trainer=tpu"])
    msg = str(e.value)
    assert "tpu.yaml" in msg and "cpu" in msg and "ddp_cpu" in msg and "gpu" in msg
    bad = write(tmp_path / "bad.yaml", "defaults: [{optim: sgd}]\n")
    with pytest.raises(ConfigError, match=r"optim/sgd\.yaml.*Options in .*optim: adamw"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")


def test_experiment_inheritance_and_rechoice(tmp_path: Path):
    root = tmp_path / "configs"
    write(root / "optim" / "adamw.yaml", "lr: 0.001\nweight_decay: 0.01\n")
    write(root / "optim" / "fast.yaml", "defaults: [adamw]\nlr: 0.01\n")
    write(root / "trainer" / "cpu.yaml", "device: cpu\nmax_epochs: 10\n")
    write(root / "trainer" / "gpu.yaml", "device: cuda\nmax_epochs: 10\n")
    write(root / "intent.yaml", "defaults: [{optim: adamw}, {trainer: cpu}]\ntrainer: {max_epochs: 5}\nname: intent\n")
    write(root / "experiment" / "intent_gpu.yaml",
          "defaults: [{experiment: intent}, {trainer: gpu}, {optim: fast}]\noptim: {weight_decay: 0.0}\n")
    write(root / "experiment" / "intent_gpu_long.yaml",
          "defaults: [{experiment: intent_gpu}]\ntrainer: {max_epochs: 50}\n")
    base = load_config("intent", root=root)
    assert base == {"optim": {"lr": 0.001, "weight_decay": 0.01}, "trainer": {"device": "cpu", "max_epochs": 5},
                    "name": "intent"}
    child = load_config("intent_gpu", root=root)
    # trainer file re-chosen, the parent's own trainer key kept; optim from a concern file that inherits a sibling
    assert child == {"optim": {"lr": 0.01, "weight_decay": 0.0}, "trainer": {"device": "cuda", "max_epochs": 5},
                     "name": "intent"}
    grandchild = load_config(root / "experiment" / "intent_gpu_long.yaml", ["trainer=cpu"], root=root)
    assert grandchild["trainer"] == {"device": "cpu", "max_epochs": 50}
    write(root / "experiment" / "loop_a.yaml", "defaults: [{experiment: loop_b}]\n")
    write(root / "experiment" / "loop_b.yaml", "defaults: [{experiment: loop_a}]\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config("loop_a", root=root)
    with pytest.raises(ConfigError, match="experiment 'nothere' not found.*intent, intent_gpu"):
        load_config("nothere", root=root)


@dataclass(frozen=True)
class Inner:
    size: int = 4  # a nested field
    names: tuple[str, ...] = ()  # a list in YAML


@dataclass(frozen=True)
class Outer:
    lr: float  # required
    inner: Inner = field(default_factory=Inner)  # nested section


def test_to_dataclass_errors_name_field_and_source(tmp_path: Path):
    write(tmp_path / "model" / "tiny.yaml", "lr: 0.1\ninner: {size: 8, names: [a, b], colour: red}\n")
    exp = write(tmp_path / "exp.yaml", "defaults: [{model: tiny}]\n")
    cfg = load_config(exp, root=tmp_path)
    with pytest.raises(ConfigError) as e:
        to_dataclass(Outer, cfg["model"])
    msg = str(e.value)
    assert "unknown field 'colour'" in msg and "model.inner.colour" in msg and "model/tiny.yaml" in msg
    assert "size, names" in msg

    cfg = load_config(exp, ["model.inner.size=big"], root=tmp_path)
    del cfg["model"]["inner"]["colour"]
    with pytest.raises(ConfigError, match=r"expected an integer, got 'big'.*override 'model.inner.size=big'"):
        to_dataclass(Outer, cfg["model"])

    ok = load_config(exp, ["model.inner.size=16"], root=tmp_path)
    del ok["model"]["inner"]["colour"]
    outer = to_dataclass(Outer, ok["model"])
    assert outer == Outer(lr=0.1, inner=Inner(size=16, names=("a", "b")))
    with pytest.raises(ConfigError, match="missing field 'lr' for Outer"):
        to_dataclass(Outer, {"inner": {}})
    with pytest.raises(ConfigError, match="not one of 'fp32', 'bf16', 'fp16'"):
        to_dataclass(TrainerConfig, {"precision": "int8"})


@pytest.mark.parametrize("name", config_files()["experiment"])
def test_every_repo_experiment_composes(name: str):
    """Each experiment under training/configs composes, and its optim/trainer nodes fit the loop's dataclasses."""
    cfg = load_config(name)
    assert "defaults" not in cfg
    if "optim" in cfg:
        to_dataclass(OptimConfig, cfg["optim"])
    if "trainer" in cfg:
        to_dataclass(TrainerConfig, cfg["trainer"])


# -- one source of defaults: the YAML files; the dataclasses mirror the default files --------------------------
def _default_of(f):
    import dataclasses

    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _disagreements(dc: type, node, where: str) -> list[str]:
    """Keys of ``node`` whose value differs from ``dc``'s default (nested dataclasses recursed)."""
    import dataclasses

    out: list[str] = []
    if not isinstance(node, dict):
        return out
    fields = {f.name: f for f in dataclasses.fields(dc)}
    for key, value in node.items():
        if key not in fields or (default := _default_of(fields[key])) is dataclasses.MISSING:
            continue
        if dataclasses.is_dataclass(default):
            out += _disagreements(type(default), value, f"{where}.{key}")
            continue
        if default is None and isinstance(value, dict):  # an optional sub-config the file spells out
            continue
        d = list(default) if isinstance(default, tuple) else default
        v = list(value) if isinstance(value, tuple) else value
        if isinstance(d, float) and isinstance(v, (int, float)) and not isinstance(v, bool):
            same = float(v) == d
        else:
            same = d == v
        if not same:
            out.append(f"{where}.{key}: YAML {value!r}, dataclass {default!r}")
    return out


def _own_yaml(rel: str) -> dict:
    data = yaml.safe_load((CONFIG_ROOT / rel).read_text(encoding="utf-8")) or {}
    data.pop("defaults", None)
    return data


def test_yaml_and_dataclass_defaults_agree():
    """The default file of every typed node and the experiment-only nodes (calibration, evaluation, refit) carry the
    same values as the dataclass defaults. Not checked, by design: variant files (data/intent_corpus.yaml,
    data/emotion_folders.yaml, trainer/*.yaml: alternatives of one dataclass; an experiment's own overrides of a
    concern file, which sit in plain sight in the experiment), and model-architecture dataclasses
    (models.intent.charmodel.CharModelConfig, models.emotion.model.EmotionModelConfig, the HF backends), whose
    defaults are what a model saved before a field existed loads with (feature off)."""
    from models.asr.dialect_id import DialectIdConfig
    from training import asr, dialect, emotion, intent
    from training.loop import OptimConfig

    concern_files = {
        "data/intent_synth.yaml": intent.IntentDataConfig,
        "data/asr_corpus.yaml": asr.AsrDataConfig,
        "model/asr_whisper.yaml": asr.AsrModelConfig,
        "data/dialect_corpus.yaml": dialect.DialectDataConfig,
        "model/dialect_head.yaml": DialectIdConfig,
        "data/emotion_corpus.yaml": emotion.EmotionDataConfig,
    }
    experiment_nodes = {
        "intent.yaml": {"calibration": intent.CalibrationConfig, "evaluation": intent.EvaluationConfig,
                        "refit": intent.RefitConfig},
        "asr.yaml": {"evaluation": asr.AsrEvaluationConfig},
        "dialect.yaml": {"evaluation": dialect.EvaluationConfig},
        "emotion.yaml": {"calibration": emotion.CalibrationConfig, "evaluation": emotion.EvaluationConfig},
    }
    problems: list[str] = []
    for rel, dc in concern_files.items():
        problems += _disagreements(dc, _own_yaml(rel), rel)
    for rel, nodes in experiment_nodes.items():
        own = _own_yaml(rel)
        for node, dc in nodes.items():
            problems += _disagreements(dc, own.get(node, {}), f"{rel}:{node}")
    # optim: one file, the only source of OptimConfig's values apart from the learning rate experiments set
    problems += [p for p in _disagreements(OptimConfig, _own_yaml("optim/adamw.yaml"), "optim/adamw.yaml")
                 if "warmup_ratio" not in p]  # warmup: every experiment sets its own (intent 0.05, asr 0.1, ...)
    assert not problems, "YAML and dataclass defaults disagree (the YAML is the source):\n" + "\n".join(problems)


def test_the_defaults_check_catches_a_disagreement():
    from training.intent import IntentDataConfig

    assert _disagreements(IntentDataConfig, {"n_train": 3, "seed": 0}, "x") == ["x.n_train: YAML 3, dataclass 10000"]
