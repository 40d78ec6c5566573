"""Fusing the audio and text emotion signals, with the rule chosen on validation data, not assumed.

The rule is log-linear: ``p ∝ p_audio^(1 - w) * p_text^w``. ``w = 0`` is audio only, ``w = 1`` text only.
:func:`fit_fusion` picks ``w`` on a grid by validation macro-F1; :func:`compare` scores audio-only, text-only
and fused probabilities on the same examples. :func:`fit_recall_bias` then sets an escalation operating point:
the smallest log-bias on one class (angry) that reaches a target recall on validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from models.taxonomy import EMOTIONS

BIAS_GRID = tuple(round(x, 2) for x in np.arange(0.0, 4.01, 0.1))  # candidate log-biases of the operating point
WEIGHT_GRID = tuple(round(x, 2) for x in np.linspace(0.0, 1.0, 21))  # candidate text weights
PROB_FLOOR = 1e-6  # probabilities are clipped to this before the log


@dataclass(frozen=True)
class FusionRule:
    text_weight: float  # w: 0 = audio only, 1 = text only
    val_macro_f1: float  # validation macro-F1 of the fused prediction at this weight


def fuse(p_audio: np.ndarray, p_text: np.ndarray, text_weight: float) -> np.ndarray:
    """Log-linear fusion of two (n, classes) probability arrays."""
    if p_audio.shape != p_text.shape:
        raise ValueError(f"fuse: audio probabilities {p_audio.shape} and text probabilities {p_text.shape} differ in shape")
    if not 0.0 <= text_weight <= 1.0:
        raise ValueError(f"fuse: text_weight must be in [0, 1], got {text_weight}")
    z = (1 - text_weight) * np.log(np.clip(p_audio, PROB_FLOOR, 1)) + text_weight * np.log(np.clip(p_text, PROB_FLOOR, 1))
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def macro_f1(probs: np.ndarray, gold: Sequence[int], n_classes: int) -> float:
    """Mean F1 over classes present in ``gold`` or predicted."""
    pred = np.argmax(probs, axis=1)
    gold = np.asarray(gold)
    f1s = []
    for c in range(n_classes):
        tp = int(np.sum((pred == c) & (gold == c)))
        fp = int(np.sum((pred == c) & (gold != c)))
        fn = int(np.sum((pred != c) & (gold == c)))
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else 0.0


def fit_fusion(p_audio: np.ndarray, p_text: np.ndarray, gold: Sequence[int], grid: Sequence[float] = WEIGHT_GRID) -> FusionRule:
    """The text weight of ``grid`` with the best macro-F1 on (validation) ``gold``; ties go to less text."""
    best = None
    for w in grid:
        f1 = macro_f1(fuse(p_audio, p_text, float(w)), gold, p_audio.shape[1])
        if best is None or f1 > best.val_macro_f1 + 1e-12:
            best = FusionRule(float(w), f1)
    assert best is not None, "fit_fusion needs a non-empty grid"
    return best


def compare(p_audio: np.ndarray, p_text: np.ndarray, gold: Sequence[int], rule: FusionRule,
            labels: Sequence[str] = EMOTIONS) -> dict[str, float]:
    """Macro-F1, accuracy and angry recall of audio-only, text-only and fused predictions."""
    gold = np.asarray(gold)
    angry = labels.index("angry") if "angry" in labels else None
    out = {}
    for name, p in (("audio", p_audio), ("text", p_text), ("fused", fuse(p_audio, p_text, rule.text_weight))):
        pred = np.argmax(p, axis=1)
        out[f"{name}_macro_f1"] = macro_f1(p, gold, len(labels))
        out[f"{name}_accuracy"] = float(np.mean(pred == gold)) if len(gold) else 0.0
        if angry is not None and np.any(gold == angry):
            out[f"{name}_angry_recall"] = float(np.mean(pred[gold == angry] == angry))
    return out


def with_bias(probs: np.ndarray, class_index: int, bias: float) -> np.ndarray:
    """``probs`` with ``exp(bias)`` times more mass on ``class_index``, renormalised."""
    p = np.array(probs, dtype=np.float64, copy=True)
    p[:, class_index] *= np.exp(bias)
    return p / p.sum(axis=1, keepdims=True)


def fit_recall_bias(probs: np.ndarray, gold: Sequence[int], class_index: int, target_recall: float,
                    grid: Sequence[float] = BIAS_GRID) -> float:
    """The smallest log-bias of ``grid`` on ``class_index`` whose (validation) recall reaches ``target_recall``
    (the largest of the grid when none does; 0 when the class is absent)."""
    gold = np.asarray(gold)
    mask = gold == class_index
    if not mask.any():
        return 0.0
    for b in grid:
        if np.mean(np.argmax(with_bias(probs[mask], class_index, b), axis=1) == class_index) >= target_recall:
            return float(b)
    return float(grid[-1])
