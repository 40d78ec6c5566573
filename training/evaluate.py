"""``hotline predict`` and ``hotline evaluate`` (EVALUATION.md).

Both read a manifest (bad lines are reported with their line numbers and skipped), load the champion
models from the MLflow registry (``--recogniser``: "auto" = the ``asr`` champion, else the pretrained
whisper-base; "pretrained"; "none" = the labelled oracle, audio understood from its reference ``text``; the one
used is printed), run every record through :class:`models.pipeline.Pipeline` and write the predictions as JSON
Lines in input order. ``evaluate`` then scores them (``training/metrics.py``), writes
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

from models.folders import find_model_dir  # noqa: F401 - notebooks import it from here

ERRORS_SHOWN = 10  # failed records whose reasons the summary prints
# The read side of the registry lives in models/champions.py (the service loads champions through it too).
from models.champions import (  # noqa: E402,F401 - re-exported for callers of training.evaluate
    INTENT_MODEL, PRETRAINED_ASR, SPEECH_COMPONENTS, TRAIN_HINT, Components, SetupError, download_champion,
    load_components,
)


# -- running ---------------------------------------------------------------------------------------
@dataclass
class Run:
    records: list[dict]  # valid manifest records, input order (after --limit)
    predictions: list[dict]  # one per record, same order
    bad_lines: list[dict]  # {"line", "message"} per manifest line that was skipped
    components: Components
    policy_version: str
    seconds: float  # wall-clock seconds of the pipeline


def recogniser_used(comps: Components) -> str:
    """Which recogniser a run used, in words (printed by predict/evaluate and kept in the report)."""
    asr = comps.speech.get("asr")
    if asr is None:
        return "none: audio records are understood from the manifest's reference 'text' (an oracle, not the product)"
    info = comps.versions.get("asr")
    if info is None:
        return f"{type(asr).__name__} (given by the caller)"
    if info.get("version") == PRETRAINED_ASR:
        return PRETRAINED_ASR
    return f"asr champion v{info['version']} (run {str(info.get('run_id', ''))[:8]})"


def run_manifest(manifest: str | Path, limit: int | None = None, components: Components | None = None,
                 recogniser: str = "auto") -> Run:
    """Read ``manifest``, load the champions (unless ``components`` is given; ``recogniser``: "auto" = the ``asr``
    champion, else the pretrained whisper-base; "pretrained"; "none" = understand the reference text) and predict
    every record."""
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
    comps = components if components is not None else load_components(recogniser=recogniser)
    for note in comps.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"recogniser: {recogniser_used(comps)}", file=sys.stderr)
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
        f"recogniser: {recogniser_used(run.components)}",
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
    """``hotline predict --manifest M --out P [--limit N] [--recogniser auto|pretrained|none]``: predictions as
    JSON Lines, in input order."""
    run = run_manifest(args.manifest, getattr(args, "limit", None), recogniser=getattr(args, "recogniser", "auto"))
    attach_tickets(run)
    out = write_jsonl(run.predictions, args.out)
    print(summary(run))
    print(f"wrote {len(run.predictions)} predictions to {out}")
    return 0 if run.records or not run.bad_lines else 1


def attach_tickets(run: Run) -> None:
    """Each successful prediction gets ``ticket``: the ticket the service would file for it (models.ticket, the one
    schema of predict output, the service, the store and the notebooks), with the record's id as call_id."""
    from models.decisions import load_policy
    from models.ticket import CHANNELS, build_ticket

    policy = load_policy()
    versions = {name: {k: v for k, v in info.items() if k in ("version", "run_id")}
                for name, info in run.components.versions.items()}
    for record, pred in zip(run.records, run.predictions):
        if pred.get("error") or pred.get("intent") is None:
            continue
        channel = record.get("channel") if record.get("channel") in CHANNELS else (
            "phone" if pred.get("channel_layout") != "text" else "chat")
        ticket = build_ticket(pred, ticket_id=f"P-{pred['id']}", call_id=str(pred["id"]), channel=channel,
                              caller=record.get("caller"), policy=policy, model_versions=versions,
                              absent_models=sorted(run.components.absent))
        pred["ticket"] = ticket.model_dump(mode="json")


@_guarded
def evaluate_main(args: Any) -> int:
    """``hotline evaluate --manifest M --out R.json [--limit N] [--recogniser auto|pretrained|none]``: score the
    champions, write the report."""
    from training.metrics import flat_metrics, format_table, score

    run = run_manifest(args.manifest, getattr(args, "limit", None), recogniser=getattr(args, "recogniser", "auto"))
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
        "recogniser": recogniser_used(run.components),
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
