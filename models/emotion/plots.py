"""Figures for the emotion model: confusion matrix, a call's emotion trajectory, and a synthetic escalating call
assembled from labelled utterances (for demonstrations and notebooks)."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from data.audio import SAMPLE_RATE
from models.emotion.trajectory import AlertOptions, CallEmotion

COLORS = {"neutral": "tab:gray", "angry": "tab:red", "anxious": "tab:orange", "sad": "tab:blue", "happy": "tab:green"}


def plot_confusion(cm: np.ndarray, labels: Sequence[str], title: str = "confusion (row-normalised)", ax=None):
    """Row-normalised confusion matrix with counts in the cells; returns the axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4.2), constrained_layout=True)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    n = len(labels)
    ax.set_xticks(range(n), labels=list(labels), rotation=45, ha="right")
    ax.set_yticks(range(n), labels=list(labels))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{norm[i, j]:.2f}\n({cm[i, j]})", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(title)
    return ax


def plot_trajectory(ce: CallEmotion, options: AlertOptions = AlertOptions(), truth: Sequence[tuple[float, float, str]] = (), ax=None):
    """Per-segment emotion probabilities over the call, the alert threshold, alert spans, the first angry
    moment and the peak; ``truth`` (start_s, end_s, emotion) spans are drawn as a band under the plot."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(10, 3.6), constrained_layout=True)
    t = ce.trajectory.get("t", [])
    for emo, color in COLORS.items():
        if emo in ce.trajectory:
            ax.plot(t, ce.trajectory[emo], "o-", color=color, label=emo, lw=1.5, ms=4)
    if "arousal" in ce.trajectory:
        ax.plot(t, ce.trajectory["arousal"], ":", color="black", label="arousal", lw=1)
    ax.axhline(options.threshold, color="tab:red", ls="--", lw=0.8)
    for a in ce.alerts:
        ax.axvspan(a.start_s, a.end_s, color=COLORS.get(a.emotion, "tab:red"), alpha=0.12)
        ax.text(a.start_s, 1.02, f"ALERT {a.emotion} {a.duration_s:.0f}s", color=COLORS.get(a.emotion, "tab:red"), fontsize=8)
    if ce.first_angry_s is not None:
        ax.axvline(ce.first_angry_s, color="tab:red", lw=1)
        ax.text(ce.first_angry_s, -0.12, f"first angry {ce.first_angry_s:.1f}s", color="tab:red", fontsize=8)
    if ce.peak is not None:
        ax.plot([(ce.peak.start_s + ce.peak.end_s) / 2], [max(ce.peak.probs.get(e, 0) for e in options.emotions)],
                "*", ms=14, color="black", label="peak")
    for a, b, emo in truth:
        ax.axvspan(a, b, ymin=0, ymax=0.03, color=COLORS.get(emo, "k"))
    ax.set_ylim(-0.15, 1.1)
    ax.set_xlabel("time in call (s)")
    ax.set_ylabel("probability")
    ax.legend(loc="upper left", fontsize=7, ncol=4)
    return ax


def escalating_call(records: Sequence[Mapping], audios: Sequence[np.ndarray], plan: Sequence[str], gap_s: float = 1.5,
                    seed: int = 0) -> tuple[np.ndarray, list[dict]]:
    """A customer channel (16 kHz) made of labelled utterances in the emotion order of ``plan`` (e.g. neutral,
    anxious, angry, angry), ``gap_s`` of silence between them, and its turns (``speaker``, ``start_s``, ``end_s``,
    ``emotion``). Utterances are drawn without replacement from ``records``/``audios`` with each emotion."""
    rng = np.random.default_rng(seed)
    pools: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        pools.setdefault(r["emotion"], []).append(i)
    for v in pools.values():
        rng.shuffle(v)
    pieces, turns, t = [], [], 0.0
    gap = np.zeros(int(gap_s * SAMPLE_RATE), np.float32)
    for emo in plan:
        if not pools.get(emo):
            raise ValueError(f"escalating_call: no (more) utterances labelled {emo!r} to build the call from")
        i = pools[emo].pop()
        a = np.asarray(audios[i], dtype=np.float32)
        pieces += [gap, a]
        start = t + gap_s
        turns.append({"speaker": "customer", "start_s": round(start, 3), "end_s": round(start + len(a) / SAMPLE_RATE, 3),
                      "emotion": emo, "text": records[i].get("text", "")})
        t = start + len(a) / SAMPLE_RATE
    return np.concatenate(pieces + [gap]), turns
