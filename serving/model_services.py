"""The model services, one per model family, each a BentoML service with its own workers and resources.

- :class:`Recognition`: speech segments -> text (adaptive batching; a GPU per worker where one is present).
- :class:`AudioAnalysis`: dialect ID of a caller's channel, and the emotion of a customer segment.
- :class:`Understanding`: texts -> intent, complaint, slots (adaptive batching).

The entry service (``serving/service.py``) depends on all three with ``bentoml.depends``; under ``bentoml serve``
each runs in its own processes and calls go over local sockets (pickled arguments), in tests they are built in the
same process. Models come from the MLflow registry's champions (``models/champions.py``); a model that is absent is
reported as absent (``info()``, ``/readyz``), never replaced by a guess.
"""

from __future__ import annotations

from typing import Any, Optional

import bentoml
from pydantic import BaseModel, ConfigDict

with bentoml.importing():
    import numpy as np

from serving.settings import Settings

SETTINGS = Settings.from_env()
RECOGNITION_BATCH = 16  # segments per recogniser call at most (adaptive batching)
RECOGNITION_LATENCY_MS = 300_000  # ms a batch may wait and run before the batcher answers 503 (a loaded CPU is slow)
UNDERSTANDING_BATCH = 32  # texts per intent-model call at most
UNDERSTANDING_LATENCY_MS = 10_000  # ms, as above
MODEL_TRAFFIC = {"timeout": SETTINGS.timeout_s, "max_concurrency": 256}  # model services sit behind the entry


class SegmentJob(BaseModel):
    """One stretch of speech to recognise."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    audio: Any  # float32 samples at 16 kHz (a numpy array; pickled between services)
    dialect: Optional[str] = None  # the caller's dialect when sure (the recogniser's prompt), else None
    hotwords: list[str] = []  # the call's hotwords (the recogniser's prompt after the dialect), models.catalogue


class SegmentText(BaseModel):
    text: str  # what was heard
    confidence: Optional[float] = None  # exp(mean token log-probability), in [0, 1]


class BatchStats:
    """How many items each call of a batched API received: the evidence that adaptive batching forms batches under
    concurrent load (reported by ``info()`` and so by ``/readyz`` details)."""

    def __init__(self) -> None:
        self.calls = 0  # batched calls so far
        self.items = 0  # items over all calls
        self.max_size = 0  # the largest batch seen
        self.sizes: dict[int, int] = {}  # batch size -> calls of that size

    def record(self, n: int) -> None:
        self.calls += 1
        self.items += n
        self.max_size = max(self.max_size, n)
        self.sizes[n] = self.sizes.get(n, 0) + 1

    def as_dict(self) -> dict:
        return {"calls": self.calls, "items": self.items, "max_size": self.max_size,
                "sizes": {str(k): v for k, v in sorted(self.sizes.items())}}


def _resources(cpu: str, gpus: int = 0) -> dict:
    res: dict[str, Any] = {"cpu": cpu}
    if gpus > 0:
        res["gpu"] = gpus
    return res


@bentoml.service(
    name="hotline-recognition",
    workers=SETTINGS.recognition_workers,
    resources=_resources("2", SETTINGS.recognition_gpus),
    traffic=MODEL_TRAFFIC,
)
class Recognition:
    """Speech to text: the ``asr`` champion, else the pretrained whisper-base (never reference text)."""

    def __init__(self) -> None:
        from models.champions import load_components

        comps = load_components(names=("asr",))
        self.recognizer = comps.speech["asr"]
        self.version = comps.versions["asr"]
        self.batches = BatchStats()
        # Warm up: one decode (past the no-speech gate) and one VAD check, so the first caller does not pay for lazy
        # initialisation.
        self.recognizer.warm_up()

    @bentoml.api
    def info(self) -> dict:
        r = self.recognizer
        return {"asr": {**self.version, "engine": r.engine, "device": r.device, "compute_type": r.compute_type,
                        "batches": self.batches.as_dict()}}

    @bentoml.api(batchable=True, max_batch_size=RECOGNITION_BATCH, max_latency_ms=RECOGNITION_LATENCY_MS)
    def transcribe_segments(self, jobs: list[SegmentJob]) -> list[SegmentText]:
        """Decode every segment; segments of one dialect and hotwords are decoded together (one prompt per decoder
        batch)."""
        import math

        self.batches.record(len(jobs))
        out: list[SegmentText | None] = [None] * len(jobs)
        by_prompt: dict[tuple[Optional[str], tuple[str, ...]], list[int]] = {}
        for i, job in enumerate(jobs):
            by_prompt.setdefault((job.dialect, tuple(job.hotwords or ())), []).append(i)
        for (dialect, hotwords), idx in by_prompt.items():
            results = self.recognizer.transcribe_batch([np.asarray(jobs[i].audio, dtype=np.float32) for i in idx],
                                                       dialect, hotwords)
            for i, t in zip(idx, results):
                logp = [s.avg_logprob for s in t.segments]
                conf = math.exp(sum(logp) / len(logp)) if logp else None
                out[i] = SegmentText(text=t.text, confidence=None if conf is None else round(min(conf, 1.0), 4))
        return out  # type: ignore[return-value]


@bentoml.service(name="hotline-audio-analysis", workers=1, resources=_resources("1"), traffic=MODEL_TRAFFIC)
class AudioAnalysis:
    """Dialect ID and speech emotion; either may be absent (then it answers None and ``info`` says why)."""

    def __init__(self) -> None:
        from models.champions import load_components

        comps = load_components(names=("dialect", "emotion"))
        self.dialect_model = comps.speech.get("dialect")
        self.emotion_model = comps.speech.get("emotion")
        self.versions = comps.versions
        self.absent = comps.absent

    @bentoml.api
    def info(self) -> dict:
        out = {name: self.versions.get(name, {"absent": self.absent.get(name, "absent")})
               for name in ("dialect", "emotion")}
        if self.dialect_model is not None:  # the floor under which the recogniser gets no dialect prompt
            out["dialect"] = {**out["dialect"],
                              "min_confidence": float(getattr(self.dialect_model, "min_confidence", 0.0) or 0.0)}
        return out

    @bentoml.api
    def dialect(self, audio: Any) -> Optional[dict]:
        """{label, confidence, probs, min_confidence} of the whole channel, or None without a dialect model."""
        if self.dialect_model is None:
            return None
        from models.pipeline import as_classification

        c = as_classification(self.dialect_model.classify(np.asarray(audio, dtype=np.float32)))
        return {"label": c.label, "confidence": c.confidence, "probs": dict(c.probs or {}),
                "min_confidence": float(getattr(self.dialect_model, "min_confidence", 0.0) or 0.0)}

    @bentoml.api
    def emotion(self, audio: Any, text: Optional[str] = None, caller: Optional[str] = None) -> Optional[dict]:
        """{label, confidence, probs} of one segment (fused with its words, normalised per caller), or None."""
        if self.emotion_model is None:
            return None
        from models.pipeline import _keywords, as_classification

        accepted = _keywords(self.emotion_model.classify, ("text", "caller"))
        kwargs = {k: v for k, v in (("text", text), ("caller", caller)) if k in accepted and v is not None}
        c = as_classification(self.emotion_model.classify(np.asarray(audio, dtype=np.float32), **kwargs))
        return {"label": c.label, "confidence": c.confidence, "probs": dict(c.probs or {})}


@bentoml.service(name="hotline-understanding", workers=1, resources=_resources("1"), traffic=MODEL_TRAFFIC)
class Understanding:
    """Intent, complaint and slots of texts: the ``intent`` champion (required)."""

    def __init__(self) -> None:
        from models.champions import load_components

        comps = load_components(names=("intent",))
        self.model = comps.intent_model
        self.version = comps.versions["intent"]
        self.batches = BatchStats()

    @bentoml.api
    def info(self) -> dict:
        return {"intent": {**self.version, "batches": self.batches.as_dict()}}

    @bentoml.api(batchable=True, max_batch_size=UNDERSTANDING_BATCH, max_latency_ms=UNDERSTANDING_LATENCY_MS)
    def understand(self, texts: list[str]) -> list[dict]:
        self.batches.record(len(texts))
        return [u.to_dict() for u in self.model.predict([str(t) for t in texts])]
