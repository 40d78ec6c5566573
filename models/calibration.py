"""Confidence calibration: temperature scaling and expected calibration error.

A classifier's softmax is usually over-confident. Temperature scaling (Guo et al., 2017) divides the logits
by one scalar ``T`` fitted on held-out data by minimising the negative log-likelihood; it changes the
confidences but never the predicted class. ``expected_calibration_error`` measures how far confidences
are from accuracies.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

DEFAULT_ECE_BINS = 15  # equal-width confidence bins over [0, 1]
TEMPERATURE_RANGE = (0.05, 20.0)  # the fitted temperature is clipped to this range
_GRID = np.exp(np.linspace(math.log(TEMPERATURE_RANGE[0]), math.log(TEMPERATURE_RANGE[1]), 200))


def _as_logits_labels(logits: Sequence, labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if z.ndim != 2:
        raise ValueError(f"logits must be a 2-D array (examples x classes), got shape {z.shape}")
    if y.shape != (z.shape[0],):
        raise ValueError(f"labels must be one class id per example: {z.shape[0]} rows of logits, labels shape {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= z.shape[1]):
        raise ValueError(f"labels must lie in [0, {z.shape[1]}); got {y.min()}..{y.max()}")
    return z, y


def softmax(logits: Sequence, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature``."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(logits: Sequence, temperature: float = 1.0) -> np.ndarray:
    """Row-wise log of :func:`softmax` (``logits / temperature``), computed without underflow."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def negative_log_likelihood(logits: Sequence, labels: Sequence[int], temperature: float = 1.0) -> float:
    """Mean negative log-likelihood (nats) of ``labels`` under ``softmax(logits / temperature)``."""
    z, y = _as_logits_labels(logits, labels)
    if len(y) == 0:
        return 0.0
    z = z / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(len(y)), y]))


def fit_temperature(logits: Sequence, labels: Sequence[int], method: str = "lbfgs") -> float:
    """The temperature that minimises the validation NLL (``method``: "lbfgs" or "grid").

    LBFGS optimises ``log T`` (so ``T`` stays positive) starting from the best point of a coarse grid;
    the grid alone is the fallback. An empty validation set gives ``T = 1``.
    """
    z, y = _as_logits_labels(logits, labels)
    if len(y) == 0:
        return 1.0
    if method not in ("lbfgs", "grid"):
        raise ValueError(f"unknown calibration method {method!r}; use 'lbfgs' or 'grid'")
    grid_nll = [negative_log_likelihood(z, y, t) for t in _GRID]
    best = float(_GRID[int(np.argmin(grid_nll))])
    if method == "grid":
        return best
    import torch

    zt = torch.as_tensor(z, dtype=torch.float64)
    yt = torch.as_tensor(y)
    log_t = torch.tensor([math.log(best)], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(zt / log_t.exp(), yt)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    if not math.isfinite(t) or negative_log_likelihood(z, y, t) > negative_log_likelihood(z, y, best):
        t = best
    return float(min(max(t, TEMPERATURE_RANGE[0]), TEMPERATURE_RANGE[1]))


def expected_calibration_error(probs: Sequence, labels: Sequence[int], n_bins: int = DEFAULT_ECE_BINS) -> float:
    """ECE: sum over equal-width confidence bins of (bin share) x |accuracy - mean confidence|.

    ``probs`` are per-class probabilities (examples x classes); the confidence of an example is its top
    probability and it is correct when the top class equals its label. A confidence of exactly 1 falls in the
    last bin; bins are right-closed, ``(lo, hi]``, except the first which also holds 0.
    """
    p, y = _as_logits_labels(probs, labels)
    if len(y) == 0:
        return 0.0
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - conf[mask].mean())
    return float(ece)


def calibrate(logits: Sequence, labels: Sequence[int], method: str = "lbfgs", n_bins: int = DEFAULT_ECE_BINS,
              prefix: str = "val_") -> tuple[float, dict[str, float]]:
    """Fit a temperature on held-out ``logits`` and say what it did: ``(T, {"temperature", "<prefix>nll_before",
    "<prefix>nll_after", "<prefix>ece_before", "<prefix>ece_after"})``."""
    t = fit_temperature(logits, labels, method)
    return t, {
        "temperature": t,
        f"{prefix}nll_before": negative_log_likelihood(logits, labels, 1.0),
        f"{prefix}nll_after": negative_log_likelihood(logits, labels, t),
        f"{prefix}ece_before": expected_calibration_error(softmax(logits), labels, n_bins),
        f"{prefix}ece_after": expected_calibration_error(softmax(logits, t), labels, n_bins),
    }
