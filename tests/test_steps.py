"""training/steps.py: the shared step 1 of the trainers (command line, composed config, dataclasses)."""

from __future__ import annotations

import pytest

from training.config import CONFIG_ROOT, ConfigError
from training.intent import CalibrationConfig, EvaluationConfig, IntentDataConfig
from training.steps import compose, parse_args


def test_parse_and_compose_build_the_trainer_dataclasses():
    args = parse_args("intent", CONFIG_ROOT / "intent.yaml", "doc", "data.n_train=64", ["--out", "o", "data.n_train=64",
                                                                                       "trainer.max_steps=3"])
    setup = compose(args, IntentDataConfig, CalibrationConfig, EvaluationConfig, default_name="x")
    assert args.out == "o" and args.config.endswith("intent.yaml")
    assert setup.data.n_train == 64 and setup.trainer.max_steps == 3 and setup.name == "intent"  # the config's name
    assert setup.calibration.expert_weights == "grid" and setup.evaluation.promote_metric == "val_score"
    assert setup.optim.lr == pytest.approx(3e-3)


def test_extra_flags_and_bad_overrides():
    args = parse_args("asr", CONFIG_ROOT / "asr.yaml", None, "x=1", ["--no_export", "trainer.max_steps=1"],
                      extra=lambda p: p.add_argument("--no_export", action="store_true"))
    assert args.no_export and args.overrides == ["trainer.max_steps=1"]
    bad = parse_args("intent", CONFIG_ROOT / "intent.yaml", None, "x=1", ["data.no_such_field=1"])
    with pytest.raises(ConfigError, match="no_such_field"):
        compose(bad, IntentDataConfig, CalibrationConfig, EvaluationConfig, default_name="intent")
