"""Emotion over a whole call: per-segment scores of the customer, the trajectory, its peak, the first angry
moment, and escalation alerts when anger or anxiety stays high for a while.

Segments come from the call's turns (``start_s``/``end_s`` of the customer's turns) or, without turns, from
fixed windows over the customer channel (silent windows skipped). The alert logic works on any sequence of
(start_s, end_s, probabilities) so it can be checked on hand-made scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from data.audio import SAMPLE_RATE, is_silent

WINDOW_S = 4.0  # s: window length when a call has no turn timings
WINDOW_HOP_S = 2.0  # s: hop between windows
MIN_SEGMENT_S = 0.3  # s: shorter customer segments are not scored


@dataclass(frozen=True)
class AlertOptions:
    emotions: tuple[str, ...] = ("angry", "anxious")  # emotions that escalate
    threshold: float = 0.6  # probability (of any of ``emotions``, summed per emotion separately) that counts as high
    min_span_s: float = 8.0  # s: how long the emotion must stay high (first high segment start to last one's end)
    max_gap_s: float = 15.0  # s: silence/agent time allowed between two high customer segments of one span


@dataclass(frozen=True)
class SegmentScore:
    start_s: float
    end_s: float
    emotion: str  # most likely emotion
    probs: dict[str, float]  # emotion -> probability
    arousal: float  # 0..1


@dataclass(frozen=True)
class Alert:
    emotion: str  # which emotion stayed high
    start_s: float  # start of the first high segment
    end_s: float  # end of the last high segment
    peak: float  # highest probability of ``emotion`` in the span

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class CallEmotion:
    segments: tuple[SegmentScore, ...]  # customer segments in time order
    peak: SegmentScore | None  # segment with the highest escalation score (max over AlertOptions.emotions)
    peak_emotion: str | None  # the dominant emotion at the peak
    first_angry_s: float | None  # start of the first segment classified angry (None: never)
    alerts: tuple[Alert, ...]  # spans of sustained anger/anxiety
    call_emotion: str | None  # duration-weighted mean probability's argmax over the call
    trajectory: dict[str, list[float]] = field(default_factory=dict)  # "t" (segment midpoints) and one list per emotion

    @property
    def alert(self) -> bool:
        return bool(self.alerts)


def find_alerts(segments: Sequence[SegmentScore], options: AlertOptions = AlertOptions()) -> list[Alert]:
    """Spans where one of ``options.emotions`` stays at or above ``options.threshold`` for ``min_span_s``.

    Consecutive high segments (gaps of at most ``max_gap_s``) form one span; a segment below threshold ends it."""
    alerts = []
    for emo in options.emotions:
        span: list[SegmentScore] = []

        def close() -> None:
            if span and span[-1].end_s - span[0].start_s >= options.min_span_s:
                alerts.append(Alert(emo, span[0].start_s, span[-1].end_s, max(s.probs.get(emo, 0.0) for s in span)))

        for seg in sorted(segments, key=lambda s: s.start_s):
            high = seg.probs.get(emo, 0.0) >= options.threshold
            if high and span and seg.start_s - span[-1].end_s > options.max_gap_s:
                close()
                span = []
            if high:
                span.append(seg)
            else:
                close()
                span = []
        close()
    return sorted(alerts, key=lambda a: a.start_s)


def summarize(segments: Sequence[SegmentScore], options: AlertOptions = AlertOptions()) -> CallEmotion:
    """The call-level view of scored customer segments."""
    segs = tuple(sorted(segments, key=lambda s: s.start_s))
    if not segs:
        return CallEmotion((), None, None, None, (), None, {"t": []})
    labels = list(segs[0].probs)
    escalation = [max(s.probs.get(e, 0.0) for e in options.emotions) for s in segs]
    peak = segs[int(np.argmax(escalation))]
    first_angry = next((s.start_s for s in segs if s.emotion == "angry"), None)
    dur = np.array([max(s.end_s - s.start_s, 1e-3) for s in segs])
    mean = np.array([[s.probs[e] for e in labels] for s in segs]).T @ dur / dur.sum()
    traj = {"t": [round((s.start_s + s.end_s) / 2, 3) for s in segs]}
    traj.update({e: [s.probs[e] for s in segs] for e in labels})
    traj["arousal"] = [s.arousal for s in segs]
    return CallEmotion(segs, peak, peak.emotion, first_angry, tuple(find_alerts(segs, options)),
                       labels[int(np.argmax(mean))], traj)


def customer_segments(turns: Sequence[Mapping] | None, duration_s: float, speaker: str = "customer") -> list[tuple[float, float]]:
    """(start_s, end_s) of the customer's turns, or fixed windows over ``duration_s`` when ``turns`` is None."""
    if turns is not None:
        out = [(float(t["start_s"]), float(t["end_s"])) for t in turns if t.get("speaker") == speaker]
        return [(a, min(b, duration_s)) for a, b in out if min(b, duration_s) - a >= MIN_SEGMENT_S]
    starts = np.arange(0.0, max(duration_s - MIN_SEGMENT_S, 0.0), WINDOW_HOP_S)
    return [(float(s), float(min(s + WINDOW_S, duration_s))) for s in starts]


def score_call(model, customer_audio_16k: np.ndarray, turns: Sequence[Mapping] | None = None,
               options: AlertOptions = AlertOptions(), history=None) -> CallEmotion:
    """Score every customer segment of a call with ``model`` (anything with ``classify_many``) and summarise.

    ``customer_audio_16k`` is the customer channel (ch1 of a stereo call) at 16 kHz; ``turns`` the call's turns
    (``speaker``, ``start_s``, ``end_s``), or None for fixed windows. A speaker-normalising model (``normalises``)
    scores the segments causally: each one relative to the caller's segments so far, on top of ``history`` (the
    caller's earlier statistics, :meth:`EmotionModel.new_caller`) when given."""
    audio = np.asarray(customer_audio_16k, dtype=np.float32)
    spans = customer_segments(turns, len(audio) / SAMPLE_RATE)
    clips, kept = [], []
    for a, b in spans:
        clip = audio[int(a * SAMPLE_RATE) : int(b * SAMPLE_RATE)]
        if clip.size < MIN_SEGMENT_S * SAMPLE_RATE or is_silent(clip):
            continue
        clips.append(clip)
        kept.append((a, b))
    if not clips:
        results = []
    elif getattr(model, "normalises", False):
        results = model.classify_many(clips, causal=True, history=history)
    else:
        results = model.classify_many(clips)
    segs = [SegmentScore(a, b, r.emotion, dict(r.probs), r.arousal) for (a, b), r in zip(kept, results)]
    return summarize(segs, options)
