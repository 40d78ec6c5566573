"""Reports on a trained intent model: its MLflow run, errors on the test split, behaviour on real texts.

The notebooks call these (``notebooks/02-intent-and-slots.ipynb``); they return plain rows (lists of dicts)
that a notebook shows as tables, and matplotlib figures. Nothing here trains: training is
``training.intent.main``.

Real texts (``../shared/realtext``, evaluation only, never copied into the repository):

- ``car_complaints.csv``: car owners' complaints from a complaint site. ``问题简述`` is the short
  description, ``典型问题`` the problem codes such as ``"A24,D154,H103,"``: letters A to H are product faults,
  I to Q service and sales complaints (:data:`PRODUCT_LETTERS`, :data:`SERVICE_LETTERS`).
- ``waimai_reviews.csv``: food-delivery reviews, ``label`` 1 positive / 0 negative, ``review`` the text.
"""

from __future__ import annotations

import csv
import random
import re
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

PRODUCT_LETTERS = frozenset("ABCDEFGH")  # problem-code letters of product faults (car_complaints.csv)
SERVICE_LETTERS = frozenset("IJKLMNOPQ")  # problem-code letters of service and sales complaints
CODE_GROUPS = ("product", "service", "mixed")  # a complaint's group: its codes are all product, all service, or both
ALL = "all"  # the group name of the overall row in per-group tables
CAR_TEXT_COLUMN = "问题简述"  # car_complaints.csv: the short description
CAR_CODES_COLUMN = "典型问题"  # car_complaints.csv: comma-separated problem codes
WAIMAI_TEXT_COLUMN = "review"  # waimai_reviews.csv: the review
WAIMAI_LABEL_COLUMN = "label"  # waimai_reviews.csv: 1 positive, 0 negative
WAIMAI_LABELS = {0: "negative", 1: "positive"}  # waimai label -> group name
_CODE_RE = re.compile(r"[A-Z]\d+")


# -- the training run ------------------------------------------------------------------------------
def latest_run(experiment_name: str):
    """The most recently started MLflow run of ``experiment_name`` (at :func:`training.tracking.tracking_uri`)."""
    from mlflow import MlflowClient

    from training.tracking import tracking_uri

    client = MlflowClient(tracking_uri())
    exp = client.get_experiment_by_name(experiment_name)
    runs = client.search_runs([exp.experiment_id], order_by=["attribute.start_time DESC"], max_results=1) if exp else []
    if not runs:
        raise LookupError(
            f"no MLflow run in experiment '{experiment_name}' at {tracking_uri()}: train one first "
            f"(`hotline train {experiment_name}`), or point MLFLOW_TRACKING_URI at the store that has it"
        )
    return runs[0]


def promotion_summary(tags: Mapping[str, str]) -> str:
    """One line saying whether the run's model version became ``@champion`` and why, from the run's
    ``promotion.*`` tags (``training.registry.register_and_maybe_promote`` writes them)."""
    from training.registry import CHAMPION, TAG_PREFIX

    if f"{TAG_PREFIX}promoted" not in tags:
        return "not registered: the run has no promotion.* tags (was it logged without a registry?)"
    name = tags.get(f"{TAG_PREFIX}model_name", "?")
    version = tags.get(f"{TAG_PREFIX}version", "?")
    verdict = f"promoted to @{CHAMPION}" if tags[f"{TAG_PREFIX}promoted"] == "true" else f"not promoted to @{CHAMPION}"
    return f"{name} v{version} {verdict}: {tags.get(f'{TAG_PREFIX}reason', 'no reason recorded')}"


def logged_confusion(run_id: str, name: str) -> tuple[list[str], np.ndarray]:
    """(labels, counts[true, predicted]) of the confusion matrix a run logged as ``plots/<name>.json``
    (``training.tracking.log_confusion_matrix``)."""
    import mlflow

    from training.tracking import PLOTS_DIR, tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    d = mlflow.artifacts.load_dict(f"runs:/{run_id}/{PLOTS_DIR}/{name}.json")
    return list(d["labels"]), np.asarray(d["counts"], dtype=np.int64)


def intent_test_splits(config: str | Path, overrides: Sequence[str] = ()) -> dict[str, list]:
    """The test split a ``training.intent`` run with this config scored, clean (``"test"``) and ASR-noised
    (``"test_noisy"``): the same utterances, built by the same functions with the same seeds."""
    from training.config import load_config, to_dataclass
    from training.intent import EvaluationConfig, IntentDataConfig, generate_split, mix_noise, read_split

    cfg = load_config(config, list(overrides))
    data_cfg = to_dataclass(IntentDataConfig, cfg["data"])
    eval_cfg = to_dataclass(EvaluationConfig, cfg.get("evaluation", {}))
    if data_cfg.corpus_dir:
        clean = read_split(data_cfg.corpus_dir, "test")
    else:
        clean = generate_split("test", data_cfg.n_test, data_cfg.seed)
    return {"test": clean, "test_noisy": mix_noise(clean, 1.0, data_cfg.noise, seed=eval_cfg.noise_seed)}


def intent_validation_split(config: str | Path, overrides: Sequence[str] = ()) -> dict[str, list]:
    """The validation utterances a ``training.intent`` run with this config chose on (``"val"``: the clean draw with
    the same share of simulated ASR errors, the same seeds): where error analysis belongs (never the test sets)."""
    from training.config import load_config, to_dataclass
    from training.intent import IntentDataConfig, generate_split, mix_noise, read_split

    cfg = load_config(config, list(overrides))
    data_cfg = to_dataclass(IntentDataConfig, cfg["data"])
    if data_cfg.corpus_dir:
        clean = read_split(data_cfg.corpus_dir, "validation")
    else:
        clean = generate_split("validation", data_cfg.n_validation, data_cfg.seed,
                               extra_templates=data_cfg.extra_templates,
                               selection_templates=data_cfg.selection_templates)
    return {"val": mix_noise(clean, data_cfg.noise_prob, data_cfg.noise, seed=data_cfg.seed + 2)}


# -- errors on labelled text -----------------------------------------------------------------------
def _check_lengths(**seqs: Sequence) -> None:
    lengths = {k: len(v) for k, v in seqs.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"these must have one item per text, but their lengths differ: {lengths}")


def worst_errors(
    texts: Sequence[str],
    gold: Sequence[str],
    preds: Sequence[Any],
    k: int = 10,
    gold_slots: Sequence[Mapping[str, str]] | None = None,
    most_confident: bool = False,
) -> list[dict]:
    """The ``k`` wrong intent predictions with the lowest confidence (``most_confident=True``: the highest),
    one row each: text, true and predicted intent, confidence, predicted slots (and true slots when given).

    ``preds`` are ``models.intent.understand.Understanding`` (anything with ``intent``,
    ``intent_confidence`` and ``slots``). Ties keep input order.
    """
    _check_lengths(texts=texts, gold=gold, preds=preds, **({"gold_slots": gold_slots} if gold_slots is not None else {}))
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    wrong = [i for i, (g, p) in enumerate(zip(gold, preds)) if p.intent != g]
    wrong.sort(key=lambda i: -preds[i].intent_confidence if most_confident else preds[i].intent_confidence)
    rows = []
    for i in wrong[:k]:
        p = preds[i]
        row = {"text": texts[i], "true_intent": gold[i], "pred_intent": p.intent,
               "confidence": round(float(p.intent_confidence), 4), "pred_slots": dict(p.slots)}
        if gold_slots is not None:
            row["true_slots"] = dict(gold_slots[i])
        rows.append(row)
    return rows


def confusion_pairs(gold: Sequence[str], pred: Sequence[str], k: int = 10) -> list[dict]:
    """The ``k`` most frequent (true, predicted) confusions with their counts and their share of the true
    intent's utterances; correct predictions are not listed."""
    _check_lengths(gold=gold, pred=pred)
    from collections import Counter

    support = Counter(gold)
    pairs = Counter((g, p) for g, p in zip(gold, pred) if g != p)
    return [{"true_intent": g, "pred_intent": p, "count": n, "share_of_true": round(n / support[g], 4)}
            for (g, p), n in pairs.most_common(k)]


def plot_confusion(
    gold: Sequence[str],
    pred: Sequence[str],
    labels: Sequence[str],
    ax=None,
    title: str = "",
    normalize: bool = True,
):
    """Confusion matrix of intents (rows true, columns predicted), each row normalised to shares of the
    true intent (``normalize=False``: counts); cells hold the numbers. Returns the figure."""
    import matplotlib.pyplot as plt

    from training.tracking import confusion_matrix

    cm = confusion_matrix(gold, pred, labels)
    rows = cm.sum(axis=1, keepdims=True)
    data = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0) if normalize else cm
    n = len(labels)
    if ax is None:
        size = max(4.0, 0.45 * n + 2.5)
        fig, ax = plt.subplots(figsize=(size + 1, size), layout="constrained")
    else:
        fig = ax.figure
    im = ax.imshow(data, cmap="Blues", vmin=0, vmax=1.0 if normalize else max(1, int(data.max())))
    ax.set_xticks(range(n), labels=list(labels), rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels=list(labels), fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = np.trace(cm) / max(1, cm.sum())
    ax.set_title(f"{title + ': ' if title else ''}accuracy {accuracy:.3f} (n={cm.sum()})", fontsize=10)
    fmt = ".2f" if normalize else "d"
    thresh = (data.max() or 1) / 2
    for i in range(n):
        for j in range(n):
            if data[i, j]:
                ax.text(j, i, format(data[i, j], fmt), ha="center", va="center", fontsize=6,
                        color="white" if data[i, j] > thresh else "black")
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


# -- real texts ------------------------------------------------------------------------------------
class CarComplaint(NamedTuple):
    text: str  # the short description (问题简述)
    group: str  # "product" (codes A-H only), "service" (I-Q only) or "mixed" (both)
    codes: tuple[str, ...]  # the problem codes, e.g. ("A24", "D154")


def code_group(codes: str | Sequence[str]) -> str:
    """``"product"``, ``"service"`` or ``"mixed"`` for problem codes such as ``"A24,D154,"`` (A-H product
    faults, I-Q service and sales). Raises ValueError for no codes or a code outside A-Q."""
    items = [c.strip() for c in codes.split(",")] if isinstance(codes, str) else [str(c).strip() for c in codes]
    items = [c for c in items if c]
    if not items:
        raise ValueError("no problem codes: expected codes such as 'A24,D154,'")
    bad = [c for c in items if not _CODE_RE.fullmatch(c) or c[0] not in PRODUCT_LETTERS | SERVICE_LETTERS]
    if bad:
        raise ValueError(f"problem codes {bad} are not a letter A-Q followed by digits (e.g. 'A24', 'J300')")
    letters = {c[0] for c in items}
    if letters <= PRODUCT_LETTERS:
        return "product"
    if letters <= SERVICE_LETTERS:
        return "service"
    return "mixed"


def _read_csv(path: str | Path, columns: Sequence[str]) -> list[dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (the shared real texts live in ../shared/realtext)")
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing columns {missing}; it has {reader.fieldnames}")
        return list(reader)


def load_car_complaints(path: str | Path) -> list[CarComplaint]:
    """The complaints of ``car_complaints.csv`` as (text, group, codes), in file order; rows with an empty
    description are skipped, a row with malformed codes raises ValueError naming the line."""
    out = []
    for line, row in enumerate(_read_csv(path, (CAR_TEXT_COLUMN, CAR_CODES_COLUMN)), start=2):
        text = (row[CAR_TEXT_COLUMN] or "").strip()
        if not text:
            continue
        try:
            group = code_group(row[CAR_CODES_COLUMN] or "")
        except ValueError as e:
            raise ValueError(f"{path}, line {line}, column {CAR_CODES_COLUMN}: {e}") from None
        codes = tuple(c.strip() for c in row[CAR_CODES_COLUMN].split(",") if c.strip())
        out.append(CarComplaint(text, group, codes))
    return out


def load_waimai_reviews(path: str | Path, per_label: int | None = None, seed: int = 0) -> list[tuple[str, str]]:
    """The reviews of ``waimai_reviews.csv`` as (text, "positive" | "negative"), in file order; with
    ``per_label``, a random sample (fixed by ``seed``) of at most that many of each label."""
    rows: list[tuple[str, str]] = []
    for line, row in enumerate(_read_csv(path, (WAIMAI_LABEL_COLUMN, WAIMAI_TEXT_COLUMN)), start=2):
        text = (row[WAIMAI_TEXT_COLUMN] or "").strip()
        try:
            label = WAIMAI_LABELS[int(row[WAIMAI_LABEL_COLUMN])]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}, line {line}: label {row[WAIMAI_LABEL_COLUMN]!r} is not 0 or 1") from None
        if text:
            rows.append((text, label))
    if per_label is None:
        return rows
    rng = random.Random(seed)
    keep: list[int] = []
    for label in WAIMAI_LABELS.values():
        idx = [i for i, r in enumerate(rows) if r[1] == label]
        keep += rng.sample(idx, min(per_label, len(idx)))
    return [rows[i] for i in sorted(keep)]


def complaint_rate_by_group(groups: Sequence[str], preds: Sequence[Any], order: Sequence[str] | None = None) -> list[dict]:
    """Per group, how many texts the model calls complaints: rows ``{group, n, complaints, rate,
    by_intent, by_cue_only, median_confidence}`` (``by_cue_only``: complaints whose intent is not a complaint
    intent, so a strong cue alone decided; ``median_confidence``: of the predicted intent, over the group),
    then an ``"all"`` row. ``order`` fixes the group order (default: first seen)."""
    _check_lengths(groups=groups, preds=preds)
    names = list(order) if order is not None else list(dict.fromkeys(groups))
    rows = []
    for name in [*names, ALL]:
        idx = [i for i, g in enumerate(groups) if name == ALL or g == name]
        called = [preds[i] for i in idx if preds[i].is_complaint]
        cue_only = sum(not any(e.startswith("intent:") for e in p.complaint_evidence) for p in called)
        rows.append({"group": name, "n": len(idx), "complaints": len(called),
                     "rate": round(len(called) / len(idx), 4) if idx else float("nan"),
                     "by_intent": len(called) - cue_only, "by_cue_only": cue_only,
                     "median_confidence": round(float(np.median([preds[i].intent_confidence for i in idx])), 4)
                     if idx else float("nan")})
    return rows


def intent_distribution(
    groups: Sequence[str], intents: Sequence[str], labels: Sequence[str], order: Sequence[str] | None = None
) -> list[dict]:
    """Per group (then ``"all"``), the share of texts given each intent: rows ``{group, n, <intent>: share}``
    with one key per label in ``labels``; shares of a row sum to 1."""
    _check_lengths(groups=groups, intents=intents)
    unknown = sorted(set(intents) - set(labels))
    if unknown:
        raise ValueError(f"intents {unknown} are not among the labels given ({', '.join(labels)})")
    names = list(order) if order is not None else list(dict.fromkeys(groups))
    rows = []
    for name in [*names, ALL]:
        picked = [t for g, t in zip(groups, intents) if name == ALL or g == name]
        n = len(picked)
        rows.append({"group": name, "n": n,
                     **{lab: round(picked.count(lab) / n, 4) if n else 0.0 for lab in labels}})
    return rows


def examples_by_group(
    texts: Sequence[str], groups: Sequence[str], preds: Sequence[Any], per_group: int = 3, seed: int = 0
) -> list[dict]:
    """A few texts per group (a random sample fixed by ``seed``) with what the model made of them: intent,
    confidence, complaint decision and its evidence, slots."""
    _check_lengths(texts=texts, groups=groups, preds=preds)
    rng = random.Random(seed)
    rows = []
    for name in dict.fromkeys(groups):
        idx = [i for i, g in enumerate(groups) if g == name]
        for i in sorted(rng.sample(idx, min(per_group, len(idx)))):
            p = preds[i]
            rows.append({"group": name, "text": texts[i], "intent": p.intent,
                         "confidence": round(float(p.intent_confidence), 3), "is_complaint": p.is_complaint,
                         "evidence": ", ".join(p.complaint_evidence), "slots": dict(p.slots)})
    return rows
