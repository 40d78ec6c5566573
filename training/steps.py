"""Step 1 of every trainer's ``main()``: parse the command line and compose the config into its dataclasses.

    args = parse_args("intent", DEFAULT_CONFIG, __doc__, "data.n_train=64 trainer.max_steps=2", argv)
    setup = compose(args, IntentDataConfig, CalibrationConfig, EvaluationConfig, default_name="intent")
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from training.config import ConfigDict, load_config, to_dataclass


def parse_args(
    model: str,
    default_config: Path,
    doc: str | None,
    example: str,
    argv: Sequence[str] | None,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    """``hotline train <model> [--config FILE] [--out DIR] [key=value ...]``; ``extra`` adds a trainer's own flags."""
    p = argparse.ArgumentParser(prog=f"hotline train {model}", description=(doc or "").split("\n")[0])
    p.add_argument("--config", default=str(default_config),
                   help=f"experiment YAML (default: training/configs/{Path(default_config).name})")
    p.add_argument("--out", default=None, help="also keep the saved model folder here")
    if extra is not None:
        extra(p)
    p.add_argument("overrides", nargs="*", help=f"config overrides like {example}")
    return p.parse_args(list(argv) if argv is not None else None)


@dataclass(frozen=True)
class Setup:
    args: argparse.Namespace  # the parsed command line
    cfg: ConfigDict  # the composed config (the run logs it resolved)
    data: Any  # the trainer's data dataclass, from cfg["data"]
    optim: Any  # training.loop.OptimConfig, from cfg["optim"]
    trainer: Any  # training.loop.TrainerConfig, from cfg["trainer"]
    calibration: Any  # the trainer's calibration dataclass, from cfg["calibration"] (defaults when absent)
    evaluation: Any  # the trainer's evaluation dataclass, from cfg["evaluation"] (defaults when absent)
    name: str  # MLflow experiment and registered model name (cfg "name", else the default)


def compose(args: argparse.Namespace, data_cls: type, calibration_cls: type, evaluation_cls: type,
            default_name: str) -> Setup:
    """Load ``args.config`` with ``args.overrides`` and build the dataclasses."""
    from training.loop import OptimConfig, TrainerConfig

    cfg = load_config(args.config, list(args.overrides))
    return Setup(
        args=args,
        cfg=cfg,
        data=to_dataclass(data_cls, cfg["data"]),
        optim=to_dataclass(OptimConfig, cfg["optim"]),
        trainer=to_dataclass(TrainerConfig, cfg["trainer"]),
        calibration=to_dataclass(calibration_cls, cfg.get("calibration", {})),
        evaluation=to_dataclass(evaluation_cls, cfg.get("evaluation", {})),
        name=str(cfg.get("name", default_name)),
    )
