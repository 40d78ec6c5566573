"""``hotline predict`` and ``hotline evaluate`` (EVALUATION.md).

Both read a manifest (bad lines are reported with their line numbers and skipped), load the champion
models from the MLflow registry, run every record through :class:`models.pipeline.Pipeline` and write the
predictions as JSON Lines in input order. ``evaluate`` then scores them (``training/metrics.py``), writes
the JSON report to ``--out`` and the predictions next to it (``<out stem>.predictions.jsonl``), and prints
the table.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from models.folders import find_model_dir

INTENT_MODEL = "intent"  # registered model name of the intent/slot model
TRAIN_HINT = "hotline train intent --config training/configs/intent.yaml"
# Speech components the pipeline can use: registered model name -> (pipeline argument, "module:loader"),
# the loader taking the downloaded model directory. A
# component without a champion is skipped (audio records are then understood from their reference text).
SPEECH_COMPONENTS: dict[str, tuple[str, str]] = {
    "dialect": ("dialect", "training.evaluate:load_dialect_component"),
    "asr": ("asr", "training.evaluate:load_asr_component"),
    "emotion": ("emotion", "training.evaluate:load_emotion_component"),
}
ERRORS_SHOWN = 10  # failed records whose reasons the summary prints


class SetupError(RuntimeError):
    """Something the command needs is missing (no champion, no manifest); the message says what to do."""


@dataclass
class Components:
    intent_model: Any = None  # models.intent.understand.IntentModel
    speech: dict[str, Any] = field(default_factory=dict)  # pipeline argument -> component
    versions: dict[str, dict[str, str]] = field(default_factory=dict)  # registered name -> {version, run_id, source}
    notes: list[str] = field(default_factory=list)  # what was skipped and why


# -- loading ---------------------------------------------------------------------------------------
def download_champion(name: str) -> tuple[Path, dict[str, str]]:
    """Download ``models:/<name>@champion`` to a local folder; returns (folder, version info). The folder is
    what the model was logged as (for a pyfunc model: ``MLmodel`` and ``artifacts/``); loaders resolve it.

    Raises :class:`SetupError` naming the command to run when the registry has no champion.
    """
    import mlflow

    from training.registry import champion_uri, champion_version
    from training.tracking import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    mv = champion_version(name)
    if mv is None:
        hint = TRAIN_HINT if name == INTENT_MODEL else f"hotline train {name}"
        raise SetupError(f"no champion '{name}' model in the MLflow registry ({tracking_uri()}): run `{hint}` first")
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=champion_uri(name))
    except Exception as e:  # noqa: BLE001 - say which version could not be fetched, and from where
        raise SetupError(
            f"could not download champion '{name}' version {mv.version} (source {mv.source}) from {tracking_uri()}: "
            f"{e}. Are its artifacts still there? Retrain with `hotline train {name}`"
        ) from e
    info = {"version": str(mv.version), "run_id": str(mv.run_id), "source": str(mv.source)}
    return Path(local), info


def _import(spec: str) -> Callable:
    import importlib

    module, func = spec.split(":")
    return getattr(importlib.import_module(module), func)


def load_components() -> Components:
    """The champions that exist: the intent model (required), speech components (optional)."""
    from models.intent.understand import load_intent_model
    from training.registry import champion_version

    comps = Components()
    directory, info = download_champion(INTENT_MODEL)
    try:
        comps.intent_model = load_intent_model(directory)
    except FileNotFoundError:  # the saved directory sits deeper inside the logged model than the loader looks
        comps.intent_model = load_intent_model(find_model_dir(directory))
    comps.versions[INTENT_MODEL] = info
    for name, (arg, loader) in SPEECH_COMPONENTS.items():
        if champion_version(name) is None:
            comps.notes.append(f"no champion '{name}': {arg} skipped")
            continue
        directory, info = download_champion(name)
        comps.speech[arg] = _import(loader)(directory)
        comps.versions[name] = info
    if "asr" not in comps.speech:
        comps.notes.append("no speech recogniser: audio records are understood from their reference 'text'")
    return comps


class DialectComponent:
    """The dialect-ID champion as the pipeline's ``dialect`` classifier. Below ``min_confidence`` it answers the
    most likely dialect with its low confidence; the recogniser then gets no dialect (``dialect=None``)."""

    def __init__(self, model, min_confidence: float):
        self.model = model
        self.min_confidence = min_confidence

    def classify(self, audio):
        return self.model.identify(audio)


def load_dialect_component(directory: Path):
    """The dialect-ID champion (``classify(audio) -> DialectResult``)."""
    from models.asr.dialect_id import CONFIG_FILE, DEFAULT_MIN_CONFIDENCE, DialectIdModel

    return DialectComponent(DialectIdModel.load(find_model_dir(Path(directory), marker=CONFIG_FILE)), DEFAULT_MIN_CONFIDENCE)


def load_asr_component(directory: Path):
    """The fine-tuned Whisper champion behind the one recogniser (CTranslate2 int8 on CPU when exported); the
    pipeline calls ``transcribe(audio, dialect=...) -> Transcript``."""
    from models.asr.dialects import ASR_CONFIG_FILE
    from models.asr.recognizer import Recognizer

    return Recognizer.load(find_model_dir(Path(directory), marker=ASR_CONFIG_FILE))


def load_emotion_component(directory: Path):
    """The speech-emotion champion as the pipeline's ``emotion`` classifier: audio fused with the transcript's
    wording and normalised per caller, as the champion was tuned (``classify(audio, text, caller) -> .label``)."""
    from models.emotion.fused import load_fused_emotion
    from models.emotion.model import CONFIG_FILE

    return load_fused_emotion(find_model_dir(Path(directory), marker=CONFIG_FILE))


# -- running ---------------------------------------------------------------------------------------
@dataclass
class Run:
    records: list[dict]  # valid manifest records, input order (after --limit)
    predictions: list[dict]  # one per record, same order
    bad_lines: list[dict]  # {"line", "message"} per manifest line that was skipped
    components: Components
    policy_version: str
    seconds: float  # wall-clock seconds of the pipeline


def run_manifest(manifest: str | Path, limit: int | None = None, components: Components | None = None) -> Run:
    """Read ``manifest``, load the champions (unless ``components`` is given) and predict every record."""
    from data.manifest import format_errors, read_manifest
    from models.pipeline import Pipeline

    path = Path(manifest)
    try:
        m = read_manifest(path, check_audio=False)  # a missing audio file is a failed record, not a bad line
    except FileNotFoundError as e:
        raise SetupError(str(e)) from None
    if m.errors:
        print(f"{path}: {len(m.errors)} bad lines skipped:", file=sys.stderr)
        print(format_errors(m.errors), file=sys.stderr)
    records = m.records if limit is None else m.records[: max(0, int(limit))]
    comps = components if components is not None else load_components()
    for note in comps.notes:
        print(f"note: {note}", file=sys.stderr)
    pipe = Pipeline(intent_model=comps.intent_model, **comps.speech)
    start = time.perf_counter()
    preds = pipe.process_many(records)
    seconds = time.perf_counter() - start
    bad = [{"line": e.line, "message": e.message} for e in m.errors]
    return Run(records, preds, bad, comps, pipe.policy.version, seconds)


def write_jsonl(rows: list[dict], path: str | Path) -> Path:
    """Write ``rows`` as JSON Lines (UTF-8, non-ASCII as is); parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def predictions_path(report_path: str | Path) -> Path:
    """Where ``evaluate`` writes its predictions: ``R.json`` -> ``R.predictions.jsonl``."""
    p = Path(report_path)
    return p.with_name((p.stem if p.suffix else p.name) + ".predictions.jsonl")


def summary(run: Run) -> str:
    """A few lines on what a run did."""
    preds = run.predictions
    errors = [p for p in preds if p.get("error")]
    ok = [p for p in preds if not p.get("error")]
    rate = len(preds) / run.seconds if run.seconds > 0 else float("inf")
    lines = [
        f"records {len(run.records)}, predicted {len(ok)}, failed {len(errors)}, bad manifest lines {len(run.bad_lines)}"
        f" ({run.seconds:.1f} s, {rate:.1f} records/s)",
        "models: " + ", ".join(f"{k} v{v['version']} (run {v['run_id'][:8]})" for k, v in run.components.versions.items())
        + f"; policy {run.policy_version}",
    ]
    if ok:
        sources = Counter(p.get("text_source") for p in ok)
        queues = Counter(p.get("queue") for p in ok)
        prios = Counter(p.get("priority") for p in ok)
        lines.append("text from: " + ", ".join(f"{k} {v}" for k, v in sorted(sources.items(), key=str)))
        lines.append("queues: " + ", ".join(f"{k} {v}" for k, v in sorted(queues.items(), key=str))
                     + "; priorities: " + ", ".join(f"{k} {v}" for k, v in sorted(prios.items(), key=str))
                     + f"; needs review {sum(bool(p.get('needs_review')) for p in ok)}")
    for p in errors[:ERRORS_SHOWN]:
        lines.append(f"  failed {p['id']}: {p['error']}")
    if len(errors) > ERRORS_SHOWN:
        lines.append(f"  ... and {len(errors) - ERRORS_SHOWN} more failed records")
    return "\n".join(lines)


def _guarded(fn: Callable[[Any], int]) -> Callable[[Any], int]:
    def wrapper(args: Any) -> int:
        try:
            return fn(args)
        except SetupError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2

    wrapper.__doc__ = fn.__doc__
    wrapper.__name__ = fn.__name__
    return wrapper


# -- commands --------------------------------------------------------------------------------------
@_guarded
def predict_main(args: Any) -> int:
    """``hotline predict --manifest M --out P [--limit N]``: predictions as JSON Lines, in input order."""
    run = run_manifest(args.manifest, getattr(args, "limit", None))
    out = write_jsonl(run.predictions, args.out)
    print(summary(run))
    print(f"wrote {len(run.predictions)} predictions to {out}")
    return 0 if run.records or not run.bad_lines else 1


@_guarded
def evaluate_main(args: Any) -> int:
    """``hotline evaluate --manifest M --out R.json [--limit N]``: score the champions, write the report."""
    from training.metrics import flat_metrics, format_table, score

    run = run_manifest(args.manifest, getattr(args, "limit", None))
    preds_out = write_jsonl(run.predictions, predictions_path(args.out))
    report = score(run.records, run.predictions)
    report = {
        "manifest": str(Path(args.manifest).resolve()),
        "n_records": report.pop("n_records"),
        "n_errors": report.pop("n_errors"),
        "bad_lines": run.bad_lines,
        "metrics": flat_metrics(report),
        **report,
        "models": run.components.versions,
        "policy_version": run.policy_version,
        "predictions": str(preds_out),
        "seconds": round(run.seconds, 3),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(summary(run))
    print(format_table(report))
    print(f"wrote the report to {out} and the predictions to {preds_out}")
    return 0 if run.records or not run.bad_lines else 1
