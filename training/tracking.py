"""MLflow tracking for hotline runs: where runs live, what every run records, and evaluation plots.

Runs go to ``MLFLOW_TRACKING_URI`` when set, else to ``sqlite:///<repo>/mlruns/mlflow.db`` with artifacts
in ``<repo>/mlruns/artifacts`` (MLflow 3's plain ./mlruns file store is in maintenance mode). For a
``sqlite:///DIR/x.db`` URI artifacts go to ``DIR/artifacts``; ``HOTLINE_ARTIFACT_ROOT`` overrides that.

Every run started with :func:`start_run` carries the flattened config as params, the resolved config
as ``config.yaml``, and tags: git commit and dirty flag, dataset hash, hostname, torch version, device.
Under DDP only rank 0 talks to MLflow; the logging functions are no-ops elsewhere and when no run is active.
mlflow is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from models.champions import DB_NAME, DEFAULT_DIR, REPO_ROOT, tracking_uri  # noqa: F401 - one home for the URI
from training.config import flatten, resolved_yaml

ARTIFACT_ROOT_ENV = "HOTLINE_ARTIFACT_ROOT"  # optional folder for artifacts, overriding the default
HASH_CHARS = 16  # hex characters kept of a dataset manifest's sha256
PLOTS_DIR = "plots"  # artifact folder for figures
MAX_PARAM_CHARS = 6000  # MLflow's limit on one param value

# Quieter MLflow: no progress bars for artifact uploads, no alembic migration chatter on a new database.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
for _name in ("alembic", "alembic.runtime.migration", "mlflow.store.db.utils"):
    logging.getLogger(_name).setLevel(logging.WARNING)


def _is_main() -> bool:
    from training.distributed import is_main_process

    return is_main_process()


def artifact_root() -> Path | None:
    """Folder for run artifacts: HOTLINE_ARTIFACT_ROOT, else ``artifacts/`` next to a sqlite database.

    None for other tracking servers (they choose their own artifact store).
    """
    if os.environ.get(ARTIFACT_ROOT_ENV):
        return Path(os.environ[ARTIFACT_ROOT_ENV]).resolve()
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):]).resolve().parent / "artifacts"
    return None


def experiment(name: str) -> str:
    """Point MLflow at :func:`tracking_uri` and make ``name`` the active experiment (created if new,
    with artifacts under :func:`artifact_root`). Returns the experiment id."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    found = mlflow.get_experiment_by_name(name)
    if found is None:
        root = artifact_root()
        location = None
        if root is not None:
            (root / name).mkdir(parents=True, exist_ok=True)
            location = (root / name).as_uri()
        try:
            exp_id = mlflow.create_experiment(name, artifact_location=location)
        except Exception:  # created meanwhile by another process
            found = mlflow.get_experiment_by_name(name)
            if found is None:
                raise
            exp_id = found.experiment_id
    else:
        exp_id = found.experiment_id
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


# -- provenance ------------------------------------------------------------------------------------
def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state() -> dict[str, str]:
    """``{"git_commit": sha or "unknown", "git_dirty": "true"|"false"|"unknown"}`` for the repository."""
    commit = _git("rev-parse", "HEAD")
    if not commit:
        return {"git_commit": "unknown", "git_dirty": "unknown"}
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": "unknown" if status is None else str(bool(status)).lower()}


def dataset_hash(manifest: str | Path) -> str:
    """First 16 hex characters of the sha256 of a dataset manifest (``data.manifest.manifest_hash`` when present)."""
    path = Path(manifest)
    if not path.is_file():
        raise FileNotFoundError(f"dataset manifest not found: {path} (build the dataset first, or pass the right path)")
    try:
        from data.manifest import manifest_hash  # type: ignore[import-not-found]
    except ImportError:
        manifest_hash = None
    if manifest_hash is not None:
        return str(manifest_hash(path))
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:HASH_CHARS]


def device_description(device: str | None = None) -> str:
    """``"cpu"`` or ``"cuda (NVIDIA H100 ...)"``: ``device`` resolved like trainer.device ("auto" by default)."""
    import torch

    name = device or "auto"
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name()})"
    return name


def _params(cfg: Any) -> dict[str, str]:
    out = {}
    for k, v in flatten(cfg).items():
        text = "null" if v is None else str(v)
        out[k] = text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - 3] + "..."
    return out


@contextlib.contextmanager
def start_run(
    model_name: str,
    cfg: Mapping[str, Any],
    dataset_manifest: str | Path | None = None,
    run_name: str | None = None,
) -> Iterator[Any]:
    """Start an MLflow run in experiment ``model_name`` and record the config and provenance.

    Yields the active ``mlflow.ActiveRun`` (``None`` on non-zero DDP ranks, where nothing is logged).
    The run ends FAILED if the block raises.
    """
    if not _is_main():
        yield None
        return
    import mlflow
    import torch

    experiment(model_name)
    trainer = cfg.get("trainer") if isinstance(cfg, Mapping) else None
    device = trainer.get("device") if isinstance(trainer, Mapping) else None
    tags = {
        "model_name": model_name,
        **git_state(),
        "dataset_hash": dataset_hash(dataset_manifest) if dataset_manifest is not None else "none",
        "hostname": socket.gethostname(),
        "torch_version": torch.__version__,
        "device": device_description(device),
    }
    if dataset_manifest is not None:
        tags["dataset_manifest"] = str(dataset_manifest)
    with mlflow.start_run(run_name=run_name, tags=tags) as run:
        params = _params(cfg)
        if params:
            mlflow.log_params(params)
        mlflow.log_text(resolved_yaml(cfg), "config.yaml")
        yield run


def _active():
    """The active run when this process should log (rank 0 with a run started), else None."""
    mlflow = sys.modules.get("mlflow")  # never imported -> no run can be active
    if mlflow is None or not _is_main():
        return None
    return mlflow.active_run()


def log_metrics(metrics: Mapping[str, Any], step: int | None = None) -> None:
    """Log the numeric entries of ``metrics`` to the active run (no-op without one or off rank 0)."""
    if _active() is None:
        return
    import mlflow

    from training.distributed import as_float

    numeric = {k: x for k, x in ((k, as_float(v)) for k, v in metrics.items()) if x is not None}
    if numeric:
        mlflow.log_metrics(numeric, step=step)


def log_figure(fig, path: str) -> None:
    """Save a matplotlib figure as artifact ``path`` (e.g. ``plots/loss.png``) and close it."""
    import matplotlib.pyplot as plt

    try:
        if _active() is not None:
            import mlflow

            mlflow.log_figure(fig, path)
    finally:
        plt.close(fig)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _indices(values: Sequence[Any], labels: Sequence[str], what: str) -> np.ndarray:
    index = {lab: i for i, lab in enumerate(labels)}
    out = []
    for v in values:
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            if not 0 <= int(v) < len(labels):
                raise ValueError(f"{what}: class id {v} is outside 0..{len(labels) - 1} for {len(labels)} labels")
            out.append(int(v))
        elif v in index:
            out.append(index[v])
        else:
            raise ValueError(f"{what}: label {v!r} is not one of the labels given ({', '.join(map(str, labels))})")
    return np.asarray(out, dtype=np.int64)


def confusion_matrix(y_true: Sequence[Any], y_pred: Sequence[Any], labels: Sequence[str]) -> np.ndarray:
    """Counts ``[true, predicted]`` over ``labels`` (values may be label names or class ids)."""
    t = _indices(y_true, labels, "y_true")
    p = _indices(y_pred, labels, "y_pred")
    if len(t) != len(p):
        raise ValueError(f"y_true has {len(t)} items but y_pred has {len(p)}")
    cm = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def per_class_f1(y_true: Sequence[Any], y_pred: Sequence[Any], labels: Sequence[str]) -> dict[str, float]:
    """F1 per label (0.0 for a label neither true nor predicted)."""
    cm = confusion_matrix(y_true, y_pred, labels)
    tp = np.diag(cm).astype(float)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    denom = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return {str(lab): float(v) for lab, v in zip(labels, f1)}


def log_confusion_matrix(y_true: Sequence[Any], y_pred: Sequence[Any], labels: Sequence[str], name: str) -> np.ndarray:
    """Plot counts and row-normalised confusion matrices side by side; log ``plots/<name>.png`` (and
    the counts as ``plots/<name>.json``). Returns the count matrix."""
    cm = confusion_matrix(y_true, y_pred, labels)
    if _active() is None:
        return cm
    import mlflow

    plt = _pyplot()
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    n = len(labels)
    size = max(4.0, 0.45 * n + 2.5)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1, size), constrained_layout=True)
    for ax, data, title, fmt in ((axes[0], cm, "counts", "d"), (axes[1], norm, "normalised by true label", ".2f")):
        im = ax.imshow(data, cmap="Blues", vmin=0, vmax=(1.0 if fmt != "d" else max(1, data.max())))
        ax.set_title(f"{name}: {title}")
        ax.set_xticks(range(n), labels=list(labels), rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(n), labels=list(labels), fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if n <= 30:
            thresh = (data.max() or 1) / 2
            for i in range(n):
                for j in range(n):
                    ax.text(j, i, format(data[i, j], fmt), ha="center", va="center", fontsize=7,
                            color="white" if data[i, j] > thresh else "black")
        fig.colorbar(im, ax=ax, shrink=0.8)
    log_figure(fig, f"{PLOTS_DIR}/{name}.png")
    mlflow.log_dict({"labels": list(map(str, labels)), "counts": cm.tolist()}, f"{PLOTS_DIR}/{name}.json")
    return cm


def log_per_class_f1(
    y_true: Sequence[Any], y_pred: Sequence[Any], labels: Sequence[str], name: str, metric_prefix: str = ""
) -> dict[str, float]:
    """Log metrics ``<metric_prefix>f1_<label>`` and a bar chart ``plots/<name>.png``; returns the F1s."""
    f1 = per_class_f1(y_true, y_pred, labels)
    if _active() is None:
        return f1
    plt = _pyplot()
    log_metrics({f"{metric_prefix}f1_{lab}": v for lab, v in f1.items()})
    fig, ax = plt.subplots(figsize=(max(5.0, 0.4 * len(labels) + 2), 4), constrained_layout=True)
    ax.bar(range(len(labels)), list(f1.values()), color="tab:blue")
    ax.set_xticks(range(len(labels)), labels=list(labels), rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1")
    ax.set_title(f"{name}: per-class F1 (macro {np.mean(list(f1.values())):.3f})")
    log_figure(fig, f"{PLOTS_DIR}/{name}.png")
    return f1


def log_reliability(probs: np.ndarray, gold: Sequence[int], bins: int, name: str = "test_reliability") -> None:
    """Reliability diagram of calibrated probabilities (accuracy against confidence per bin), ``plots/<name>.png``."""
    if _active() is None:
        return
    from models.calibration import expected_calibration_error

    plt = _pyplot()
    conf = probs.max(axis=1)
    correct = np.argmax(probs, axis=1) == np.asarray(gold)
    edges = np.linspace(0, 1, bins + 1)
    mids, accs = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            mids.append(conf[m].mean())
            accs.append(correct[m].mean())
    fig, ax = plt.subplots(figsize=(4, 4), constrained_layout=True)
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.plot(mids, accs, "o-")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{name.replace('_', ' ')} (ECE {expected_calibration_error(probs, list(gold), bins):.3f})")
    log_figure(fig, f"{PLOTS_DIR}/{name}.png")


def pinned_requirements(packages: Sequence[str]) -> list[str]:
    """``pkg==version`` for each of ``packages`` that is installed (a logged model's pip requirements)."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for pkg in packages:
        try:
            pins.append(f"{pkg}=={version(pkg)}")
        except PackageNotFoundError:
            pass
    return pins
