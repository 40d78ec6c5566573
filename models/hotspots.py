"""Complaint hotspots: complaint counts by intent, product and region in the latest window, and spike alerts against the
previous windows by a stated statistical test.

The test (one-sided Poisson, Bonferroni-corrected):

- windows: the current one is ``[now - w, now)``; the ``history`` windows before it are ``[now - (i+1)w, now - iw)``,
  ``i = 1..history``;
- for each key (e.g. product "空调") the baseline rate is ``λ = max(mean count over the previous windows, floor)``;
  the floor (default 0.5) keeps a key with no history from alerting on its first ticket or two;
- ``p = P(X >= count | X ~ Poisson(λ)) = scipy.stats.poisson.sf(count - 1, λ)``;
- a key alerts when ``p < α / m`` and ``count >= min_count``, where ``m`` is the number of (dimension, key) pairs
  tested: every key seen in the current window or in the history (keys absent now have p = 1 and never alert, but
  they are part of the family, so the correction is not chosen after looking at the counts).

Only complaints are counted (``is_complaint``). Repeat complainants: callers with ``repeat_min`` or more complaints
in the whole span (current and previous windows). Pure Python + scipy; no models, torch, bentoml or SQL.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping, Sequence

DIMENSIONS: tuple[str, ...] = ("intent", "product", "region")
_UNITS = {"m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(min|m|h|d|w)\s*$", re.IGNORECASE)


def parse_window(window: str | timedelta) -> timedelta:
    """"15m" / "30min" / "1h" / "1d" / "1w" (or a timedelta) -> timedelta; ValueError saying what is accepted."""
    if isinstance(window, timedelta):
        td = window
    else:
        m = _WINDOW.match(str(window))
        if not m:
            raise ValueError(f"window {window!r}: write a number and a unit, m (minutes), h, d or w, e.g. '1h', '1d'")
        td = timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2).lower()])
    if td <= timedelta(0):
        raise ValueError(f"window {window!r} must be longer than 0")
    return td


def format_window(td: timedelta) -> str:
    s = int(td.total_seconds())
    for unit, n in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if s % n == 0:
            return f"{s // n}{unit}"
    return f"{td.total_seconds():g}s"


@dataclass(frozen=True)
class Alert:
    dimension: str  # intent | product | region
    key: str  # the intent label, product or region
    count: int  # complaints in the current window
    baseline: float  # λ: mean count over the previous windows (floored)
    p_value: float  # P(X >= count | Poisson(λ))
    test: str  # the test in words, with α and m


@dataclass(frozen=True)
class HotspotReport:
    window: str  # e.g. "1h"
    start: datetime  # the current window's start (inclusive)
    end: datetime  # its end (exclusive): ``now``
    counts: Mapping[str, Mapping[str, int]]  # dimension -> key -> complaints in the current window, most first
    alerts: tuple[Alert, ...]  # spikes, smallest p first
    repeat_complainants: tuple[tuple[str, int], ...]  # (caller, complaints in the span), most first
    history: int = 0  # previous windows compared against
    alpha: float = 0.01  # family-wise error rate
    tested: int = 0  # m: (dimension, key) pairs tested
    baselines: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # dimension -> key -> λ (floored)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (for ``GET /analytics/hotspots`` and notifications); datetimes as ISO 8601."""
        return {
            "window": self.window, "start": self.start.isoformat(), "end": self.end.isoformat(),
            "counts": {d: dict(c) for d, c in self.counts.items()},
            "alerts": [a.__dict__.copy() for a in self.alerts],
            "repeat_complainants": [{"caller": c, "complaints": n} for c, n in self.repeat_complainants],
            "history": self.history, "alpha": self.alpha, "tested": self.tested,
            "baselines": {d: dict(b) for d, b in self.baselines.items()},
        }


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)


def _value(item: Any, dimension: str) -> str | None:
    """The key of ``item`` in ``dimension``: the field itself, else the product slot (``slots.product``) or the
    customer's region (``customer.region``)."""
    v = _get(item, dimension)
    if v in (None, "") and dimension == "product":
        slots = _get(item, "slots") or {}
        v = slots.get("product") if isinstance(slots, Mapping) else None
    if v in (None, "") and dimension == "region":
        customer = _get(item, "customer")
        v = _get(customer, "region") if customer is not None else None
    return None if v in (None, "") else str(v)


def hotspots(
    tickets: Iterable[Any],
    *,
    now: datetime,
    window: str | timedelta = "1h",
    history: int = 6,
    alpha: float = 0.01,
    min_count: int = 3,
    baseline_floor: float = 0.5,
    repeat_min: int = 2,
    dimensions: Sequence[str] = DIMENSIONS,
) -> HotspotReport:
    """The hotspot report of the window ending at ``now`` (see the module docstring for the test).

    ``tickets``: dicts (or objects) with ``created_at`` (an aware datetime), ``is_complaint``, ``intent``, ``product``
    (or ``slots.product``), ``region`` (or ``customer.region``) and ``caller``. Tickets outside the span
    ``[now - (history+1)·w, now)`` and non-complaints are ignored; a missing product/region is not counted as a key."""
    from scipy.stats import poisson

    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime (e.g. datetime.now(timezone.utc))")
    w = parse_window(window)
    if int(history) < 1:
        raise ValueError(f"history must be >= 1 previous window, got {history}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if baseline_floor <= 0:
        raise ValueError(f"baseline_floor must be > 0, got {baseline_floor}")
    bad = [d for d in dimensions if d not in DIMENSIONS]
    if bad:
        raise ValueError(f"dimensions {bad}: use some of {', '.join(DIMENSIONS)}")
    history = int(history)
    span_start = now - w * (history + 1)

    current: dict[str, Counter] = {d: Counter() for d in dimensions}
    past: dict[str, list[Counter]] = {d: [Counter() for _ in range(history)] for d in dimensions}
    callers: Counter = Counter()
    for i, t in enumerate(tickets):
        if not _get(t, "is_complaint"):
            continue
        at = _get(t, "created_at")
        if not isinstance(at, datetime) or at.tzinfo is None or at.utcoffset() is None:
            raise ValueError(f"ticket {i}: created_at must be an aware datetime, got {at!r}")
        if not span_start <= at < now:
            continue
        age = -((at - now) // w) - 1  # ceil((now - at) / w) - 1 exactly: 0 the current window, 1..history the previous
        caller = _get(t, "caller")
        if caller:
            callers[str(caller)] += 1
        for d in dimensions:
            key = _value(t, d)
            if key is None:
                continue
            if age == 0:
                current[d][key] += 1
            else:
                past[d][age - 1][key] += 1

    keys = {d: set(current[d]) | {k for c in past[d] for k in c} for d in dimensions}
    m = sum(len(k) for k in keys.values())
    test = f"poisson one-sided, Bonferroni m={m}, alpha={alpha:g}, baseline floor={baseline_floor:g}"
    alerts: list[Alert] = []
    baselines: dict[str, dict[str, float]] = {}
    for d in dimensions:
        baselines[d] = {}
        for key in sorted(keys[d]):
            lam = max(sum(c[key] for c in past[d]) / history, baseline_floor)
            baselines[d][key] = round(lam, 4)
            count = current[d][key]
            if count == 0:
                continue
            p = float(poisson.sf(count - 1, lam))
            if count >= min_count and p < alpha / m:
                alerts.append(Alert(dimension=d, key=key, count=count, baseline=round(lam, 4), p_value=p, test=test))
    alerts.sort(key=lambda a: (a.p_value, a.dimension, a.key))
    repeat = tuple(sorted(((c, n) for c, n in callers.items() if n >= repeat_min), key=lambda x: (-x[1], x[0])))
    return HotspotReport(
        window=format_window(w), start=now - w, end=now,
        counts={d: dict(sorted(current[d].items(), key=lambda kv: (-kv[1], kv[0]))) for d in dimensions},
        alerts=tuple(alerts), repeat_complainants=repeat, history=history, alpha=alpha, tested=m,
        baselines=baselines,
    )
