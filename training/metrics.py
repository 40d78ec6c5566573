"""Evaluation metrics of EVALUATION.md, as pure functions over labels and predictions.

:func:`score` takes manifest records (with whatever labels they carry) and prediction dicts (the
``hotline predict`` lines) and computes only what the labels present allow: a metric with no labelled
item, or whose field no prediction fills (e.g. emotion without an emotion model), is left out and the
reason is listed under ``skipped``. Every metric reports ``n``, the number of items it scored.

A failed prediction (a line with ``error``) counts against the system: its labels score as wrong, its
slots as unfilled and its transcript as empty, so failures never improve a score.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Hashable, Iterable, Mapping, Sequence

from models.taxonomy import DEFAULT_TAXONOMY, Taxonomy
from models.textnorm import char_errors, normalize_slot_value

UNKNOWN_DIALECT = "unknown"  # per-dialect CER key for records without a dialect label


# -- classification --------------------------------------------------------------------------------
def accuracy(refs: Sequence[Hashable], hyps: Sequence[Hashable]) -> float:
    """Share of items where ``hyp == ref`` (0.0 for no items)."""
    _same_length(refs, hyps)
    return sum(r == h for r, h in zip(refs, hyps)) / len(refs) if refs else 0.0


def per_label_prf(refs: Sequence[Hashable], hyps: Sequence[Hashable], labels: Iterable[Hashable] | None = None) -> dict:
    """``{label: {"precision", "recall", "f1", "support"}}`` for ``labels`` (default: labels present in refs)."""
    _same_length(refs, hyps)
    labels = list(dict.fromkeys(refs)) if labels is None else list(labels)
    out = {}
    for lab in labels:
        tp = sum(r == lab and h == lab for r, h in zip(refs, hyps))
        fp = sum(r != lab and h == lab for r, h in zip(refs, hyps))
        fn = sum(r == lab and h != lab for r, h in zip(refs, hyps))
        p, r, f = _prf(tp, fp, fn)
        out[lab] = {"precision": p, "recall": r, "f1": f, "support": tp + fn}
    return out


def macro_f1(refs: Sequence[Hashable], hyps: Sequence[Hashable]) -> float:
    """Unweighted mean F1 over the labels present in ``refs`` (a wrong prediction of a label absent from
    refs is not averaged in, but lowers the recall of the true label)."""
    prf = per_label_prf(refs, hyps)
    return sum(v["f1"] for v in prf.values()) / len(prf) if prf else 0.0


def binary_f1(refs: Sequence[bool], hyps: Sequence[bool | None]) -> dict:
    """Precision, recall and F1 of the positive class (True); ``None`` predictions count as negative."""
    _same_length(refs, hyps)
    tp = sum(bool(r) and h is True for r, h in zip(refs, hyps))
    fp = sum(not r and h is True for r, h in zip(refs, hyps))
    fn = sum(bool(r) and h is not True for r, h in zip(refs, hyps))
    p, r, f = _prf(tp, fp, fn)
    return {"precision": p, "recall": r, "f1": f, "tp": tp, "fp": fp, "fn": fn}


def confusion_counts(refs: Sequence[Hashable], hyps: Sequence[Hashable]) -> dict:
    """``{ref: {hyp: count}}`` (None predictions appear as "null")."""
    _same_length(refs, hyps)
    out: dict = {}
    for r, h in zip(refs, hyps):
        row = out.setdefault(str(r), {})
        key = "null" if h is None else str(h)
        row[key] = row.get(key, 0) + 1
    return out


# -- slots -----------------------------------------------------------------------------------------
def slot_triples(items: Iterable[tuple[str, Mapping[str, Any] | None]]) -> set[tuple[str, str, str]]:
    """``{(id, slot, normalised value)}`` from ``(id, slots)`` pairs; empty values are left out."""
    out = set()
    for rid, slots in items:
        for name, value in (slots or {}).items():
            v = normalize_slot_value(name, value)
            if v:
                out.add((str(rid), str(name), v))
    return out


def slot_f1(ref_slots: Mapping[str, Mapping[str, Any]], hyp_slots: Mapping[str, Mapping[str, Any] | None]) -> dict:
    """Micro precision/recall/F1 over (id, slot, value) triples, exact value match after normalisation.

    ``ref_slots``: id -> labelled slots; ``hyp_slots``: id -> predicted slots (only ids in ``ref_slots``
    are scored, so a record without slot labels never adds false positives).
    """
    ref = slot_triples(ref_slots.items())
    hyp = slot_triples((rid, hyp_slots.get(rid)) for rid in ref_slots)
    tp = len(ref & hyp)
    p, r, f = _prf(tp, len(hyp) - tp, len(ref) - tp)
    return {"precision": p, "recall": r, "f1": f, "n_ref_slots": len(ref), "n_pred_slots": len(hyp), "tp": tp}


def ticket_completeness(ref_slots: Mapping[str, Mapping[str, Any]], hyp_slots: Mapping[str, Mapping[str, Any] | None]) -> dict:
    """The share of labelled slots filled with the right value (``completeness``), and the share of records
    whose labelled slots are all right (``complete_tickets``, over records with at least one labelled slot)."""
    filled = total = complete = tickets = 0
    for rid, slots in ref_slots.items():
        ref = slot_triples([(rid, slots)])
        if not ref:
            continue
        hyp = slot_triples([(rid, hyp_slots.get(rid))])
        right = len(ref & hyp)
        filled, total = filled + right, total + len(ref)
        tickets += 1
        complete += right == len(ref)
    return {
        "completeness": filled / total if total else 0.0,
        "complete_tickets": complete / tickets if tickets else 0.0,
        "n_slots": total,
        "n_tickets": tickets,
    }


# -- transcripts -----------------------------------------------------------------------------------
def cer_by_group(items: Iterable[tuple[str, str | None, str | None]]) -> dict:
    """Corpus CER overall and per group from ``(group, reference, hypothesis)`` triples, two ways: ``cer`` as
    EVALUATION.md defines it (normalised text) and ``cer_numnorm`` after writing Chinese numerals as Arabic digits
    on both sides (``models.textnorm.normalize_numbers``, cn2an: 二十九 and 29 count as equal).

    Returns ``{"cer", "cer_numnorm", "n", "edits", "chars", "edits_numnorm", "chars_numnorm",
    "per_group": {group: the same keys}}``.
    """
    groups: dict[str, list[int]] = {}
    for group, ref, hyp in items:
        e, n = char_errors(ref, hyp)
        e2, n2 = char_errors(ref, hyp, numbers=True)
        g = groups.setdefault(str(group), [0, 0, 0, 0, 0])
        for k, v in enumerate((e, n, 1, e2, n2)):
            g[k] += v

    def rate(edits: int, chars: int) -> float:
        return edits / chars if chars else (0.0 if edits == 0 else 1.0)

    def entry(g: Sequence[int]) -> dict:
        return {"cer": rate(g[0], g[1]), "cer_numnorm": rate(g[3], g[4]), "n": g[2], "edits": g[0], "chars": g[1],
                "edits_numnorm": g[3], "chars_numnorm": g[4]}

    total = [sum(g[k] for g in groups.values()) for k in range(5)]
    return {**entry(total), "per_group": {k: entry(g) for k, g in sorted(groups.items())}}


# -- the report ------------------------------------------------------------------------------------
def score(records: Sequence[Mapping[str, Any]], predictions: Sequence[Mapping[str, Any]], taxonomy: Taxonomy = DEFAULT_TAXONOMY) -> dict:
    """The EVALUATION.md report of ``predictions`` against the labels of ``records`` (matched by ``id``).

    Keys (each present only when its labels are): ``intent`` (accuracy, macro_f1, per_label, confusion),
    ``complaint`` (precision, recall, f1), ``slots`` (precision, recall, f1, completeness, complete_tickets),
    ``cer`` (cer, cer_numnorm: numbers written one way on both sides, per_dialect with both), ``dialect`` and ``emotion`` (accuracy, macro_f1); plus ``n_records``,
    ``n_predictions``, ``n_errors``, ``decisions`` (queue/priority counts, review rate) and ``skipped``.
    """
    by_id = {str(p.get("id")): p for p in predictions}
    failed = {rid for rid, p in by_id.items() if p.get("error")}
    report: dict[str, Any] = {
        "n_records": len(records),
        "n_predictions": sum(str(r.get("id")) in by_id for r in records),
        "n_errors": sum(str(r.get("id")) in failed for r in records),
    }
    skipped: dict[str, str] = {}

    def pred(rec: Mapping[str, Any]) -> Mapping[str, Any]:
        p = by_id.get(str(rec.get("id")))
        return {} if p is None or p.get("error") else p

    missing = [r.get("id") for r in records if str(r.get("id")) not in by_id]
    if missing:
        report["n_missing_predictions"] = len(missing)

    def label_metric(key: str, labels_of: str, audio_only: bool = False) -> None:
        items = [(r[key], pred(r).get(key)) for r in records if r.get(key) is not None and (not audio_only or _has_audio(r))]
        if not items:
            skipped[key] = f"no {'audio ' if audio_only else ''}record has a '{key}' label"
            return
        if all(p.get(key) is None for p in by_id.values() if not p.get("error")):
            skipped[key] = f"no prediction has '{key}' (no {labels_of} model)"
            return
        refs, hyps = [a for a, _ in items], [b for _, b in items]
        report[key] = {
            "n": len(items),
            "accuracy": accuracy(refs, hyps),
            "macro_f1": macro_f1(refs, hyps),
            "per_label": per_label_prf(refs, hyps),
            "confusion": confusion_counts(refs, hyps),
        }

    label_metric("intent", "intent")
    label_metric("dialect", "dialect ID", audio_only=True)  # read from speech: text messages have none
    label_metric("emotion", "emotion", audio_only=True)

    # complaint: the label is the record's is_complaint, else derived from its intent
    comp = []
    for r in records:
        ref = r.get("is_complaint")
        if ref is None and r.get("intent") is not None:
            ref = taxonomy.is_complaint(r["intent"])
        if ref is not None:
            comp.append((bool(ref), pred(r).get("is_complaint")))
    if comp:
        report["complaint"] = {"n": len(comp), **binary_f1([a for a, _ in comp], [b for _, b in comp])}
    else:
        skipped["complaint"] = "no record has an 'intent' or 'is_complaint' label"

    ref_slots = {str(r["id"]): r["slots"] for r in records if isinstance(r.get("slots"), Mapping)}
    if ref_slots:
        hyp_slots = {rid: pred({"id": rid}).get("slots") for rid in ref_slots}
        f1 = slot_f1(ref_slots, hyp_slots)
        comp_ = ticket_completeness(ref_slots, hyp_slots)
        report["slots"] = {"n": len(ref_slots), **f1, **comp_}
    else:
        skipped["slots"] = "no record has a 'slots' label"

    # CER: audio records with a reference text, scored where the system produced transcripts at all
    audio_refs = [r for r in records if _has_audio(r) and r.get("text") is not None]
    has_asr = any(p.get("transcript") is not None for p in by_id.values() if not p.get("error"))
    if not audio_refs:
        skipped["cer"] = "no audio record with a reference 'text'"
    elif not has_asr:
        skipped["cer"] = "no prediction has a 'transcript' (no speech recogniser)"
    else:
        cer = cer_by_group((r.get("dialect") or UNKNOWN_DIALECT, r["text"], pred(r).get("transcript") or "") for r in audio_refs)
        report["cer"] = {
            "n": cer["n"], "cer": cer["cer"], "cer_numnorm": cer["cer_numnorm"], "edits": cer["edits"],
            "chars": cer["chars"], "edits_numnorm": cer["edits_numnorm"], "chars_numnorm": cer["chars_numnorm"],
            "per_dialect": cer["per_group"],
        }

    ok = [pred(r) for r in records if pred(r).get("queue") is not None]
    if ok:
        report["decisions"] = {
            "n": len(ok),
            "queues": dict(sorted(Counter(p["queue"] for p in ok).items())),
            "priorities": dict(sorted(Counter(p["priority"] for p in ok).items())),
            "review_rate": sum(bool(p.get("needs_review")) for p in ok) / len(ok),
            "missing_slot_rate": sum(bool(p.get("missing_slots")) for p in ok) / len(ok),
        }
    report["skipped"] = skipped
    return report


def format_table(report: Mapping[str, Any]) -> str:
    """The report as a plain-text table: metric, value, items scored."""
    rows: list[tuple[str, str, str]] = []

    def add(name: str, value: float, n: Any) -> None:
        rows.append((name, f"{value:.4f}", str(n)))

    if "cer" in report:
        c = report["cer"]
        add("CER", c["cer"], c["n"])
        for d, v in c["per_dialect"].items():
            add(f"  CER {d}", v["cer"], v["n"])
        if "cer_numnorm" in c:
            add("CER, numbers normalised", c["cer_numnorm"], c["n"])
            for d, v in c["per_dialect"].items():
                add(f"  CER {d}, numbers normalised", v["cer_numnorm"], v["n"])
    for key, title in (("dialect", "dialect"), ("emotion", "emotion"), ("intent", "intent")):
        if key in report:
            add(f"{title} accuracy", report[key]["accuracy"], report[key]["n"])
            add(f"{title} macro-F1", report[key]["macro_f1"], report[key]["n"])
    if "complaint" in report:
        c = report["complaint"]
        add("complaint F1", c["f1"], c["n"])
        add("  complaint precision", c["precision"], c["n"])
        add("  complaint recall", c["recall"], c["n"])
    if "slots" in report:
        s = report["slots"]
        add("slot F1", s["f1"], f"{s['n_ref_slots']} slots")
        add("ticket completeness", s["completeness"], f"{s['n_slots']} slots")
        add("  complete tickets", s["complete_tickets"], f"{s['n_tickets']} tickets")
    if "decisions" in report:
        d = report["decisions"]
        add("needs-review rate", d["review_rate"], d["n"])
    width = max([len(r[0]) for r in rows] + [len("metric")])
    lines = [f"{'metric':<{width}}  {'value':>8}  n", f"{'-' * width}  {'-' * 8}  {'-' * 6}"]
    lines += [f"{a:<{width}}  {b:>8}  {c}" for a, b, c in rows]
    tail = f"records {report.get('n_records', 0)}, errors {report.get('n_errors', 0)}"
    if report.get("bad_lines"):
        tail += f", bad manifest lines {len(report['bad_lines'])}"
    lines.append(tail)
    for key, why in (report.get("skipped") or {}).items():
        lines.append(f"not scored: {key} ({why})")
    return "\n".join(lines)


# -- helpers ---------------------------------------------------------------------------------------
def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def _has_audio(rec: Mapping[str, Any]) -> bool:
    return bool(rec.get("audio") or rec.get("audio_path"))


def _same_length(refs: Sequence, hyps: Sequence) -> None:
    if len(refs) != len(hyps):
        raise ValueError(f"need one prediction per reference: {len(refs)} references, {len(hyps)} predictions")


def flat_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """The headline numbers of a report as one flat ``{name: value}`` dict (e.g. for MLflow ``log_metrics``)."""
    out: dict[str, float] = {}
    if "cer" in report:
        out["cer"] = report["cer"]["cer"]
        out.update({f"cer_{d}": v["cer"] for d, v in report["cer"]["per_dialect"].items()})
        if "cer_numnorm" in report["cer"]:
            out["cer_numnorm"] = report["cer"]["cer_numnorm"]
            out.update({f"cer_numnorm_{d}": v["cer_numnorm"] for d, v in report["cer"]["per_dialect"].items()})
    for key in ("dialect", "emotion", "intent"):
        if key in report:
            out[f"{key}_accuracy"] = report[key]["accuracy"]
            out[f"{key}_macro_f1"] = report[key]["macro_f1"]
    if "complaint" in report:
        out["complaint_f1"] = report["complaint"]["f1"]
    if "slots" in report:
        out["slot_f1"] = report["slots"]["f1"]
        out["ticket_completeness"] = report["slots"]["completeness"]
    if "decisions" in report:
        out["review_rate"] = report["decisions"]["review_rate"]
    return {k: float(v) for k, v in out.items()}
