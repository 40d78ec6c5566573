"""Speaker (caller) normalisation of the emotion head's input features.

Emotional prosody is relative to a voice: a calm high-pitched speaker and an angry low-pitched one give the same
absolute pitch. A call centre hears a caller over several segments (and often several calls), so each feature
row can be taken relative to that caller's own statistics:

    mode "mean":     x - mu_caller
    mode "meanstd":  (x - mu_caller) / sigma_caller

with ``mu_caller``/``sigma_caller`` shrunk towards the training population's moments by ``prior`` pseudo-rows,
so that a caller heard once or twice is normalised mostly by the population (no statistics at all = the
population itself). Three ways to get the caller's statistics:

- :func:`normalise_groups`: every row of a group (speaker) normalised with the statistics of all the group's rows,
  the row itself included (transductive: unlabelled recordings of the same speaker, as after a caller's first
  calls);
- :func:`normalise_causal`: rows in time order, row ``i`` normalised with the statistics of rows ``0..i`` (a live
  call: the segments heard so far), optionally on top of a caller's earlier history (:class:`SpeakerStats`);
- :meth:`SpeakerStats.normalise`: explicit running statistics kept by the caller of the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Sequence

import numpy as np

NORM_MODES = ("none", "mean", "meanstd")  # model.speaker_norm values
MIN_STD = 1e-3  # floor of a normalising standard deviation (feature units)


@dataclass(frozen=True)
class PopulationPrior:
    """The training population's feature moments: what a caller's statistics are shrunk towards."""

    mean: np.ndarray  # (dim,) mean of the raw head-input rows of the training set
    var: np.ndarray  # (dim,) their variance within speakers (mean over speakers), or overall without speakers
    weight: float  # pseudo-rows of the population in every caller's statistics (>= 0)

    @classmethod
    def fit(cls, rows: np.ndarray, weight: float, groups: Sequence[Hashable] | None = None) -> "PopulationPrior":
        """Moments of training ``rows``; with ``groups`` (speakers) the variance is the within-speaker one."""
        x = np.asarray(rows, dtype=np.float64)
        if x.ndim != 2 or len(x) == 0:
            raise ValueError(f"PopulationPrior.fit needs a non-empty (rows, dim) array, got shape {x.shape}")
        if weight < 0:
            raise ValueError(f"model.speaker_norm_prior must be >= 0 (pseudo-rows), got {weight}")
        var = x.var(0)
        if groups is not None:
            g = np.asarray([str(k) for k in groups])
            within = [x[g == k].var(0) for k in np.unique(g) if np.sum(g == k) > 1]
            if within:
                var = np.mean(within, axis=0)
        return cls(x.mean(0).astype(np.float32), var.astype(np.float32), float(weight))


class SpeakerStats:
    """Running sums of one caller's raw feature rows (add segments as they are heard)."""

    def __init__(self, dim: int) -> None:
        self.n = 0
        self.total = np.zeros(dim, dtype=np.float64)
        self.total_sq = np.zeros(dim, dtype=np.float64)

    def add(self, rows: np.ndarray) -> "SpeakerStats":
        x = np.atleast_2d(np.asarray(rows, dtype=np.float64))
        if x.shape[1] != self.total.shape[0]:
            raise ValueError(f"SpeakerStats of dim {self.total.shape[0]} got rows of dim {x.shape[1]}")
        self.n += len(x)
        self.total += x.sum(0)
        self.total_sq += (x**2).sum(0)
        return self

    def copy(self) -> "SpeakerStats":
        out = SpeakerStats(len(self.total))
        out.n, out.total, out.total_sq = self.n, self.total.copy(), self.total_sq.copy()
        return out

    def moments(self, prior: PopulationPrior) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) of the rows added so far, shrunk towards ``prior`` by its weight."""
        w = prior.weight
        n = self.n + w
        if n <= 0:
            return prior.mean.astype(np.float64), np.sqrt(np.maximum(prior.var, MIN_STD**2))
        mean = (self.total + w * prior.mean) / n
        # pooled second moment about the mean: own scatter + the prior's variance on its pseudo-rows
        own = self.total_sq - 2 * mean * self.total + self.n * mean**2
        prior_part = w * (prior.var + (prior.mean - mean) ** 2)
        var = (own + prior_part) / n
        return mean, np.sqrt(np.maximum(var, MIN_STD**2))

    def normalise(self, rows: np.ndarray, prior: PopulationPrior, mode: str) -> np.ndarray:
        """``rows`` relative to these statistics (``mode`` one of :data:`NORM_MODES`)."""
        return _apply(np.asarray(rows, dtype=np.float64), *self.moments(prior), mode)


def _check(mode: str) -> None:
    if mode not in NORM_MODES:
        raise ValueError(f"model.speaker_norm '{mode}' is not one of {', '.join(NORM_MODES)}")


def _apply(x: np.ndarray, mean: np.ndarray, std: np.ndarray, mode: str) -> np.ndarray:
    _check(mode)
    if mode == "none":
        return x.astype(np.float32)
    out = x - mean
    if mode == "meanstd":
        out = out / std
    return out.astype(np.float32)


def normalise_groups(rows: np.ndarray, groups: Sequence[Hashable], prior: PopulationPrior, mode: str) -> np.ndarray:
    """Each row relative to the statistics of all rows of its group (transductive: the row itself included)."""
    _check(mode)
    x = np.asarray(rows, dtype=np.float64)
    if len(groups) != len(x):
        raise ValueError(f"normalise_groups: {len(x)} rows but {len(groups)} group keys")
    out = np.empty(x.shape, dtype=np.float32)
    keys = np.asarray([str(k) for k in groups])
    for k in np.unique(keys):
        m = keys == k
        out[m] = SpeakerStats(x.shape[1]).add(x[m]).normalise(x[m], prior, mode)
    return out


def normalise_causal(rows: np.ndarray, prior: PopulationPrior, mode: str, history: SpeakerStats | None = None) -> np.ndarray:
    """Rows of one caller in time order: row ``i`` relative to ``history`` plus rows ``0..i`` (never later ones)."""
    _check(mode)
    x = np.asarray(rows, dtype=np.float64)
    stats = history.copy() if history is not None else SpeakerStats(x.shape[1])
    out = np.empty(x.shape, dtype=np.float32)
    for i in range(len(x)):
        stats.add(x[i])
        out[i] = stats.normalise(x[i : i + 1], prior, mode)[0]
    return out


def normalise_partial(rows: np.ndarray, groups: Sequence[Hashable], prior: PopulationPrior, mode: str,
                      sizes: Sequence[int], seed: int = 0) -> np.ndarray:
    """Each row relative to a random few rows of its group, itself included (``k`` drawn from ``sizes``, capped
    at the group's size): training rows that look like a caller heard only a few times (early in a call)."""
    _check(mode)
    x = np.asarray(rows, dtype=np.float64)
    rng = np.random.default_rng(seed)
    keys = np.asarray([str(k) for k in groups])
    out = np.empty(x.shape, dtype=np.float32)
    members = {k: np.flatnonzero(keys == k) for k in np.unique(keys)}
    for i in range(len(x)):
        own = members[keys[i]]
        k = min(int(rng.choice(sizes)), len(own))
        others = rng.choice(own[own != i], size=k - 1, replace=False) if k > 1 else np.zeros(0, int)
        stats = SpeakerStats(x.shape[1]).add(x[np.r_[i, others]])
        out[i] = stats.normalise(x[i : i + 1], prior, mode)[0]
    return out
