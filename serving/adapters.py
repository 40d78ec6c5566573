"""The model services as the pipeline's components.

:class:`models.pipeline.Pipeline` runs the one path for a call with components that have ``transcribe_batch``,
``classify`` and ``predict``; here those methods are ``async`` and call the BentoML model services through
``.to_async`` (the pipeline awaits them), so many calls in flight reach the batchers of the model services at once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Sequence

from models.pipeline import Classification, Transcription

log = logging.getLogger("hotline.adapters")
RETRY_PAUSE_S = 0.2  # s before the one retry of a model call whose connection broke before any answer


async def _remote(method: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
    """``await method(*args, **kwargs)`` on a model service, retried once when the connection broke before an answer
    came (httpx's RemoteProtocolError, ReadError, WriteError, ConnectError). A pooled keep-alive connection that the
    model service's server closes just as the entry service reuses it fails this way from time to time
    (bentoml/BentoML#4971, encode/httpx#2056); model calls have no side effects, so a second try is safe. Errors the
    model service answered (a 4xx/5xx) and timeouts are not retried."""
    import httpx

    broken = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.ConnectError)
    try:
        return await method(*args, **kwargs)
    except broken as exc:
        log.warning("a model call's connection broke (%s: %s); retrying once", type(exc).__name__, exc)
        await asyncio.sleep(RETRY_PAUSE_S)
        return await method(*args, **kwargs)


def _per_item(dialects: Sequence[str | None] | str | None, n: int) -> list[str | None]:
    if dialects is None or isinstance(dialects, str):
        return [dialects] * n
    return list(dialects)


class RemoteRecognizer:
    """``transcribe_batch(audios, dialects, hotwords)`` over the :class:`~serving.model_services.Recognition`
    service."""

    def __init__(self, service: Any):
        self.service = service

    async def transcribe_batch(self, audios: Sequence[Any], dialects: Sequence[str | None] | str | None = None,
                               hotwords: Sequence[str] = ()):
        from serving.model_services import RECOGNITION_BATCH, SegmentJob

        if not len(audios):
            return []
        words = [str(w) for w in hotwords]
        jobs = [SegmentJob(audio=a, dialect=d, hotwords=words)
                for a, d in zip(audios, _per_item(dialects, len(audios)))]
        # A long call's segments go as several requests of at most one batch each: the service's batcher then mixes
        # them with other calls' segments instead of taking one huge request past its latency budget.
        chunks = [jobs[i: i + RECOGNITION_BATCH] for i in range(0, len(jobs), RECOGNITION_BATCH)]
        parts = await asyncio.gather(*(_remote(self.service.to_async.transcribe_segments, c) for c in chunks))
        return [Transcription(_field(r, "text"), _field(r, "confidence")) for part in parts for r in part]

    async def transcribe(self, audio: Any, dialect: str | None = None, hotwords: Sequence[str] = ()):
        return (await self.transcribe_batch([audio], [dialect], hotwords))[0]


class RemoteDialect:
    """``classify(audio)`` over :meth:`AudioAnalysis.dialect`; ``min_confidence`` is the model's own floor."""

    def __init__(self, service: Any, min_confidence: float = 0.0):
        self.service = service
        self.min_confidence = min_confidence

    async def classify(self, audio: Any) -> Classification:
        r = await _remote(self.service.to_async.dialect, audio=audio)
        if r is None:
            raise RuntimeError("the dialect model went absent in the audio-analysis service; restart the service")
        self.min_confidence = float(r.get("min_confidence") or 0.0)
        return Classification(r["label"], r.get("confidence"), r.get("probs"))


class RemoteEmotion:
    """``classify(audio, text=, caller=)`` over :meth:`AudioAnalysis.emotion`."""

    def __init__(self, service: Any):
        self.service = service

    async def classify(self, audio: Any, text: str | None = None, caller: str | None = None) -> Classification:
        r = await _remote(self.service.to_async.emotion, audio=audio, text=text, caller=caller)
        if r is None:
            raise RuntimeError("the emotion model went absent in the audio-analysis service; restart the service")
        return Classification(r["label"], r.get("confidence"), r.get("probs"))


class RemoteUnderstanding:
    """``predict(texts)`` over :meth:`Understanding.understand` (dicts with the ``Understanding`` fields)."""

    def __init__(self, service: Any):
        self.service = service

    async def predict(self, texts: Sequence[str]) -> list[dict]:
        if not len(texts):
            return []
        return list(await _remote(self.service.to_async.understand, list(texts)))


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
