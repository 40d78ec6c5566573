"""The one path for a call or a message: speech (optional) -> understanding -> decisions -> a prediction.

``hotline predict``, ``hotline evaluate``, the service and the notebooks all run :class:`Pipeline`, so a
record gets the same answer everywhere. Steps, in order (DESIGN.md "One path for a call"):

1. speech, for audio records (:meth:`Pipeline._speech`): the audio (a path, raw file bytes under ``audio_bytes``
   or an array) is loaded at 16 kHz with its channels kept apart.

   - stereo (2+ channels): channel 0 is the agent, channel 1 the customer (``agent_channel`` /
     ``customer_channel`` in the record override). Each channel is cut into speech segments by VAD
     (``models.asr.vad``); a channel where VAD finds nothing but which is not silent and shorter than 30 s is one
     segment. Dialect ID reads the customer's speech (all of the customer channel's segments, once per call).
   - mono: one channel labelled ``"mono"``. Audio up to ``mono_segment_seconds`` (30 s) is one utterance, one
     segment, read whole as before; a longer recording is cut by VAD. Dialect ID reads all of it.

   Every segment of both sides is recognised (the customer's dialect prompt for both) in one
   ``transcribe_batch(audios, dialects)`` call when the recogniser has it, else ``transcribe`` per segment. A
   recogniser that takes ``hotwords`` gets the call's hotwords (:meth:`Pipeline.hotwords_for`): the products of the
   caller's earlier tickets first, then the product catalogue's brands and names (``models.catalogue``,
   only with ``HOTLINE_HOTWORDS=on``: off by default); the live stream (``serving/stream.py``) asks for the same list. Emotion
   is read per customer (or mono) segment, given that segment's words and the caller, giving
   ``emotion_trajectory`` and ``emotion_peak`` (the most aroused label read with at least the policy's
   ``review.min_emotion_confidence``; else the most confident). Understanding reads the customer's words only
   (their segments joined in time order); the agent's segments stay in ``segments`` for the transcript.
   Each speech component is optional: without a recogniser the reference ``text`` of the record is understood
   instead (``text_source: "reference"``, the oracle of ``--recogniser none``).
2. understanding of the text (intent, complaint, slots) by the intent model, in batches.
3. decisions (``models/decisions.py``): route (with the caller's profile from ``customer_lookup``), review,
   missing slots, under a versioned policy.

One orchestration, sync or async: the steps are ``async`` functions that await a component's answer when it is
awaitable, so the service can plug in adapters whose methods are ``async`` (remote model services).
:meth:`Pipeline.aprocess` runs them on the caller's event loop (synchronous components, audio loading and VAD go
to worker threads, so the loop is never blocked); :meth:`Pipeline.process_many` (the CLI) runs the same coroutine
to completion with ``asyncio.run``, components called in place, texts understood in batches across records.

A record that fails (unreadable audio, a model error) gets ``{"id", "error"}`` and the others go on.
The prediction dict is the EVALUATION.md prediction line (JSON-ready) plus the keys ``models/ticket.py`` reads:
``segments``, ``emotion_trajectory``, ``emotion_peak``, ``channel_layout``, ``message``.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Protocol, runtime_checkable

from models.decisions import Policy, load_policy, missing_slots, needs_review, route

DEFAULT_BATCH_SIZE = 32  # texts per intent-model call
TEXT_SOURCES = ("message", "asr", "reference")  # where the understood text came from


# -- speech component seams ----------------------------------------------------------------------
@dataclass(frozen=True)
class Transcription:
    text: str  # the recognised text
    confidence: float | None = None  # the recogniser's confidence in [0, 1], if it gives one


@dataclass(frozen=True)
class Classification:
    label: str  # taxonomy label (a dialect or an emotion)
    confidence: float | None = None  # probability of ``label``
    probs: Mapping[str, float] | None = None  # probability of every label, if the model gives them


@runtime_checkable
class Recognizer(Protocol):
    """Speech to text. ``audio``: float32 (samples,) at data.audio.SAMPLE_RATE (one speech segment). May also
    accept a ``dialect`` keyword (the detected dialect label) to pick a dialect-specific decoder.
    Returns a :class:`Transcription`, an object with ``.text`` or a plain string. When the recogniser also has
    ``transcribe_batch(audios, dialects)`` (one answer per audio, in order), a call's segments go through it in one
    call. Either method may be ``async``. A method that accepts a ``hotwords`` keyword gets the call's hotwords
    (a tuple of strings, the same for every segment of the call)."""

    def transcribe(self, audio: Any) -> Transcription | str: ...


@runtime_checkable
class AudioClassifier(Protocol):
    """Audio to one label (dialect ID, speech emotion). ``audio`` as for :class:`Recognizer`. Returns a
    :class:`Classification`, a ``(label, confidence)`` pair, a label string, or a dict of label -> probability.
    An emotion classifier may accept ``text`` (the segment's words) and ``caller`` keywords; a dialect classifier
    may have ``min_confidence`` (below it the recogniser gets no dialect). ``classify`` may be ``async``."""

    def classify(self, audio: Any) -> Classification | tuple[str, float] | str | Mapping[str, float]: ...


def as_transcription(result: Any) -> Transcription:
    """A recogniser's answer as a :class:`Transcription`."""
    if isinstance(result, Transcription):
        return result
    if isinstance(result, str):
        return Transcription(result)
    text = getattr(result, "text", None)
    if text is None and isinstance(result, Mapping):
        text = result.get("text")
    if text is None:
        raise TypeError(f"a recogniser returned {type(result).__name__}; expected a string or an object with .text")
    conf = getattr(result, "confidence", None) if not isinstance(result, Mapping) else result.get("confidence")
    return Transcription(str(text), None if conf is None else float(conf))


def as_classification(result: Any) -> Classification:
    """A classifier's answer as a :class:`Classification`."""
    if isinstance(result, Classification):
        return result
    if isinstance(result, str):
        return Classification(result)
    if isinstance(result, tuple) and len(result) == 2:
        return Classification(str(result[0]), float(result[1]))
    if isinstance(result, Mapping):
        if "label" in result:
            conf = result.get("confidence")
            return Classification(str(result["label"]), None if conf is None else float(conf), result.get("probs"))
        if not result:
            raise ValueError("a classifier returned an empty dict of probabilities")
        label = max(result, key=lambda k: result[k])
        return Classification(str(label), float(result[label]), {str(k): float(v) for k, v in result.items()})
    label = getattr(result, "label", None)
    if label is None:
        raise TypeError(f"a classifier returned {type(result).__name__}; expected a label, (label, confidence) or .label")
    conf = getattr(result, "confidence", None)
    return Classification(str(label), None if conf is None else float(conf), getattr(result, "probs", None))


def _keywords(fn: Callable, names: Iterable[str]) -> set[str]:
    """Which of ``names`` ``fn`` accepts as keywords (all of them when it takes ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return set()
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return set(names)
    return {n for n in names if n in params}


def _accepts_dialect(fn: Callable) -> bool:
    return "dialect" in _keywords(fn, ("dialect",))


def _plain(value: Any) -> Any:
    """JSON-ready copy: tuples become lists, numpy scalars become Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


# -- audio of a record -----------------------------------------------------------------------------
SHORT_SEGMENT_SECONDS = 30.0  # s: a channel VAD finds no speech in is still one segment if shorter than this (and not silent)
AROUSAL_ORDER = ("angry", "anxious", "sad", "happy", "neutral")  # most aroused first: how emotion_peak is chosen
CHANNEL_LAYOUTS = ("stereo", "mono", "text")


def _has_audio(record: Mapping[str, Any]) -> bool:
    for key in ("audio_bytes", "audio_path", "audio"):
        value = record.get(key)
        if value is not None and not (isinstance(value, (str, bytes)) and not value):
            return True
    return False


def load_record_audio(record: Mapping[str, Any]) -> "Any":
    """The audio of ``record`` as float32 (channels, samples) at 16 kHz: raw file bytes under ``audio_bytes``, a
    file path under ``audio_path`` (a manifest's resolved path) or ``audio``, or an array under ``audio``
    ((samples,) or (channels, samples) at ``sample_rate`` Hz, default 16 kHz). Raises ``data.audio.AudioError``
    naming the record for unreadable, empty, too short, non-finite or wholly silent audio."""
    import numpy as np

    from data.audio import (
        MAX_CHANNELS, MIN_AUDIO_SECONDS, SAMPLE_RATE, AudioError, is_silent, load_audio_bytes, load_audio_channels,
        resample,
    )

    name = str(record.get("id", "record"))
    if record.get("audio_bytes") is not None:
        data = record["audio_bytes"]
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise AudioError(f"{name}: 'audio_bytes' holds {type(data).__name__}; send the bytes of a WAV/FLAC/MP3 file")
        return load_audio_bytes(bytes(data), SAMPLE_RATE, mono=False, name=f"{name} (upload)")
    path = record.get("audio_path")  # a manifest's resolved path wins over its relative "audio"
    if not path and isinstance(record.get("audio"), (str, os.PathLike)):
        path = record["audio"]
    if path:
        return load_audio_channels(path, SAMPLE_RATE)
    audio = np.asarray(record["audio"], dtype=np.float32)
    rate = int(record.get("sample_rate") or SAMPLE_RATE)
    if audio.ndim == 1:
        audio = audio[None, :]
    if audio.ndim != 2 or audio.shape[-1] == 0:
        raise AudioError(f"{name}: expected audio samples (samples,) or (channels, samples), got shape {audio.shape}")
    if audio.shape[0] > MAX_CHANNELS:
        raise AudioError(f"{name}: audio of shape {audio.shape} has {audio.shape[0]} channels; pass "
                         "(channels, samples), e.g. audio.T for a (samples, channels) array")
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"{name}: the audio holds NaN or infinite samples")
    if audio.shape[-1] / rate < MIN_AUDIO_SECONDS:
        raise AudioError(f"{name}: too short ({audio.shape[-1] / rate * 1000:.0f} ms at {rate} Hz; at least "
                         f"{MIN_AUDIO_SECONDS * 1000:.0f} ms is needed)")
    if is_silent(audio):
        raise AudioError(f"{name}: silent audio; check the recording channel and microphone")
    return resample(np.clip(audio, -1.0, 1.0), rate, SAMPLE_RATE)


@dataclass(frozen=True)
class _Piece:
    """One stretch of speech of one channel."""

    channel: str  # "agent", "customer" or "mono"
    start: float  # s from the start of the call
    end: float  # s
    audio: Any  # float32 (samples,) at 16 kHz


def _segments_of(mono: Any, vad: Any, whole_up_to: float | None) -> list[tuple[float, float]]:
    """(start, end) s of the speech in one channel. ``whole_up_to``: a channel at most this long is one segment
    (a mono utterance, read whole); None: VAD always, with the whole channel as one segment when VAD finds nothing
    in a channel that is not silent and shorter than SHORT_SEGMENT_SECONDS."""
    from data.audio import MIN_AUDIO_SECONDS, SAMPLE_RATE, is_silent
    from models.asr.vad import VadConfig, speech_segments

    duration = len(mono) / SAMPLE_RATE
    if is_silent(mono):
        return []
    if whole_up_to is not None and duration <= whole_up_to:
        return [(0.0, round(duration, 3))]
    spans = [(round(s, 3), round(e, 3)) for s, e in speech_segments(mono, vad or VadConfig())
             if e - s >= MIN_AUDIO_SECONDS]
    if not spans and duration < SHORT_SEGMENT_SECONDS:
        spans = [(0.0, round(duration, 3))]
    return spans


def _split_channels(audio: Any, record: Mapping[str, Any], mono_segment_seconds: float, vad: Any
                    ) -> tuple[str, list[_Piece]]:
    """(channel_layout, speech pieces in time order) of a loaded (channels, samples) call. CPU work: VAD."""
    import numpy as np

    from data.audio import SAMPLE_RATE, AudioError

    name = str(record.get("id", "record"))
    if audio.shape[0] >= 2 and not np.array_equal(audio[0], audio[1]):
        layout = "stereo"
        agent, customer = int(record.get("agent_channel", 0)), int(record.get("customer_channel", 1))
        for key, ch in (("agent_channel", agent), ("customer_channel", customer)):
            if not 0 <= ch < audio.shape[0]:
                raise AudioError(f"{name}: {key}={ch} but the audio has {audio.shape[0]} channels")
        if agent == customer:
            raise AudioError(f"{name}: agent_channel and customer_channel are both {agent}; give two channels")
        channels = [("agent", audio[agent], None), ("customer", audio[customer], None)]
    else:  # one channel, or a mono recording saved as identical channels
        layout = "mono"
        channels = [("mono", audio[0], mono_segment_seconds)]
    pieces = []
    for label, mono, whole_up_to in channels:
        for start, end in _segments_of(mono, vad, whole_up_to):
            piece = mono[int(round(start * SAMPLE_RATE)) : int(round(end * SAMPLE_RATE))]
            pieces.append(_Piece(label, start, end, np.ascontiguousarray(piece, dtype=np.float32)))
    pieces.sort(key=lambda p: (p.start, p.channel != "agent"))
    return layout, pieces


def emotion_peak(trajectory: list[Mapping[str, Any]], min_confidence: float) -> tuple[str | None, float | None]:
    """(label, confidence) of the call's emotion: the most aroused label (AROUSAL_ORDER) read with confidence at
    least ``min_confidence`` (a reading without a confidence counts), its most confident reading; when no reading
    is that sure, the most confident one. (None, None) for an empty trajectory."""
    if not trajectory:
        return None, None
    sure = [p for p in trajectory if p.get("confidence") is None or p["confidence"] >= min_confidence]
    rank = {label: i for i, label in enumerate(AROUSAL_ORDER)}

    def conf(p: Mapping[str, Any]) -> float:
        return -1.0 if p.get("confidence") is None else float(p["confidence"])

    if sure:
        top = min(rank.get(p["label"], len(rank)) for p in sure)
        best = max((p for p in sure if rank.get(p["label"], len(rank)) == top), key=conf)
    else:
        best = max(trajectory, key=conf)
    return best["label"], best.get("confidence")


def _join(texts: Iterable[str]) -> str:
    from models.asr.recognizer import join_texts

    return join_texts(texts)


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


# -- the pipeline ----------------------------------------------------------------------------------
class Pipeline:
    """Runs records end to end: manifest dicts (``id``, ``audio_path`` or ``audio``, ``text``, ``caller``) or service
    requests (``audio_bytes``, ``agent_channel``, ``customer_channel``, ``caller``).

    ``intent_model``: has ``predict(texts) -> list[Understanding]`` (``models/intent/understand.py``);
    without one, intent, slots and decisions are null. ``asr``: a :class:`Recognizer` (``transcribe_batch(audios,
    dialects)`` is used when present); ``emotion`` and ``dialect``: :class:`AudioClassifier`. Any of these methods
    may be ``async`` (or return an awaitable). ``policy``: a :class:`~models.decisions.Policy` (default:
    ``models/policies/default.yaml``). ``customer_lookup``: caller phone number -> customer profile
    (``vip``/``vip_level``, ``recent_complaints``/``complaint_count``) or None; may be async.
    ``mono_segment_seconds``: a mono recording up to this long is one utterance (read whole); longer is cut by
    VAD. ``vad``: a :class:`models.asr.vad.VadConfig` (None: its defaults).
    ``hotwords``: the catalogue hotwords given to a recogniser that takes them: None (default) for those of
    ``models.catalogue.default_hotwords`` (none unless ``HOTLINE_HOTWORDS=on``), False for none at all, or a list.
    ``customer_products``: caller phone number -> the products of the caller's earlier tickets, newest first (may
    be async); they go before the catalogue's (:meth:`hotwords_for`).
    """

    def __init__(
        self,
        intent_model: Any = None,
        asr: Recognizer | None = None,
        emotion: AudioClassifier | None = None,
        dialect: AudioClassifier | None = None,
        policy: Policy | None = None,
        customer_lookup: Callable[[str], Mapping[str, Any] | None] | None = None,
        mono_segment_seconds: float = SHORT_SEGMENT_SECONDS,
        vad: Any = None,
        hotwords: Iterable[str] | bool | None = None,
        customer_products: Callable[[str], Iterable[str] | None] | None = None,
    ):
        self.intent_model = intent_model
        self.asr = asr
        self.emotion = emotion
        self.dialect = dialect
        self.policy = policy if policy is not None else load_policy()
        self.customer_lookup = customer_lookup
        self.mono_segment_seconds = float(mono_segment_seconds)
        self.vad = vad
        self._asr_batch = asr is not None and callable(getattr(asr, "transcribe_batch", None))
        self._asr_dialect = asr is not None and (
            "dialects" in _keywords(asr.transcribe_batch, ("dialects",)) if self._asr_batch
            else _accepts_dialect(asr.transcribe)
        )
        # None: the catalogue's, read on first use; False: hotwords off; else the given list
        self._hotwords: tuple[str, ...] | None | bool = (
            None if hotwords is None or hotwords is True else False if hotwords is False
            else tuple(str(w) for w in hotwords))
        self.customer_products = customer_products
        self._emotion_kwargs = _keywords(emotion.classify, ("text", "caller")) if emotion is not None else set()

    @property
    def has_speech(self) -> bool:
        """Whether any speech component is plugged in (otherwise audio is never decoded)."""
        return any(c is not None for c in (self.asr, self.emotion, self.dialect))

    # -- calling components ------------------------------------------------------------------------
    @staticmethod
    async def _call(offload: bool, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, awaited when it gives an awaitable. ``offload`` (the async entry point): a
        synchronous ``fn`` runs in a worker thread so the event loop is never blocked by model work."""
        if offload and not inspect.iscoroutinefunction(fn):
            result = await asyncio.to_thread(fn, *args, **kwargs)
        else:
            result = fn(*args, **kwargs)
        return await _maybe_await(result)

    async def _model(self, stage: str, offload: bool, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """:meth:`_call` for a model; an exception it raises is marked with ``stage`` (e.g. "emotion model"), which
        the record's ``error`` then names, so a failure says which model failed."""
        try:
            return await self._call(offload, fn, *args, **kwargs)
        except Exception as exc:
            from data.audio import AudioError

            if not isinstance(exc, AudioError) and not hasattr(exc, "pipeline_stage"):
                exc.pipeline_stage = stage  # type: ignore[attr-defined]
            raise

    @property
    def _asr_hotwords(self) -> bool:
        """Whether the recogniser takes ``hotwords`` (read from the current ``asr``, so a swapped one is seen)."""
        asr = self.asr
        if asr is None:
            return False
        fn = asr.transcribe_batch if self._asr_batch else asr.transcribe  # the method _recognise calls
        return "hotwords" in _keywords(fn, ("hotwords",))

    @property
    def catalogue_hotwords(self) -> tuple[str, ...] | None:
        """The catalogue part of every call's hotwords (None: hotwords are off), read once."""
        if self._hotwords is None:
            from models.catalogue import default_hotwords

            self._hotwords = default_hotwords()
            if self._hotwords is None:
                self._hotwords = False
        return None if self._hotwords is False else self._hotwords

    async def hotwords_for(self, caller: str | None, offload: bool = False) -> tuple[str, ...]:
        """The hotwords of a call from ``caller``: the products of the caller's earlier tickets
        (``customer_products``) first, then the catalogue's, within ``models.catalogue.HOTWORD_BUDGET_BYTES``.
        Empty when the recogniser takes no hotwords or hotwords are off. A failing product lookup costs the
        caller's products only (logged), never the call."""
        if not self._asr_hotwords:
            return ()
        base = self.catalogue_hotwords
        if base is None:
            return ()
        from models.catalogue import call_hotwords

        products: list[str] = []
        if caller and self.customer_products is not None:
            try:
                got = await self._call(offload, self.customer_products, str(caller))
                products = [str(p) for p in (got or ()) if p]
            except Exception:  # noqa: BLE001 - hotwords help recognition; their lookup never fails a call
                import logging

                logging.getLogger("hotline.pipeline").warning("customer products lookup failed; catalogue hotwords "
                                                              "only", exc_info=True)
        return call_hotwords(base, products)

    async def _recognise(self, pieces: list[_Piece], dialect: str | None, offload: bool,
                         hotwords: Iterable[str] = ()) -> list[Transcription]:
        """One transcription per piece: one ``transcribe_batch`` call for them all when the recogniser has it.
        ``hotwords`` go to a recogniser that takes them (the same for every piece)."""
        if not pieces:
            return []
        audios = [p.audio for p in pieces]
        extra = {"hotwords": tuple(hotwords)} if self._asr_hotwords and hotwords else {}
        if self._asr_batch:
            args = (audios, [dialect] * len(audios)) if self._asr_dialect else (audios,)
            results = list(await self._model("recogniser", offload, self.asr.transcribe_batch, *args, **extra))
            if len(results) != len(audios):
                raise RuntimeError(f"the recogniser returned {len(results)} transcripts for {len(audios)} segments")
        else:
            kwargs = {"dialect": dialect} if self._asr_dialect else {}
            results = [await self._model("recogniser", offload, self.asr.transcribe, a, **kwargs, **extra)
                       for a in audios]
        return [as_transcription(r) for r in results]

    # -- stage 1: speech ---------------------------------------------------------------------------
    async def _speech(self, record: Mapping[str, Any], offload: bool = False) -> dict:
        """Prediction fields from the audio (if any) and the text to understand (key ``_text``)."""
        if "id" not in record:
            raise ValueError("record has no 'id'")
        out: dict[str, Any] = {"id": record["id"], "text_source": None, "transcript": None,
                               "dialect": None, "dialect_confidence": None,
                               "emotion": None, "emotion_confidence": None, "emotion_peak": None,
                               "channel_layout": None, "message": None, "segments": [], "emotion_trajectory": []}
        tax = self.policy.taxonomy
        if not _has_audio(record):
            if record.get("text") is None:
                raise ValueError("record has neither 'audio' nor 'text'")
            out.update(text_source="message", channel_layout="text", message=str(record["text"]),
                       _text=str(record["text"]))
            return out
        reference = record.get("text")
        if self.asr is None and reference is None:
            raise ValueError(
                "audio record without reference 'text' and no speech recogniser: train and promote an ASR "
                "model (or use the pretrained one: --recogniser auto), or add the transcript as 'text'"
            )
        if not self.has_speech:  # nothing reads the audio: it is never decoded
            out["text_source"], out["_text"] = "reference", str(reference)
            return out

        def load() -> tuple[str, list[_Piece]]:
            return _split_channels(load_record_audio(record), record, self.mono_segment_seconds, self.vad)

        layout, pieces = await asyncio.to_thread(load) if offload else load()
        out["channel_layout"] = layout
        listener = [p for p in pieces if p.channel != "agent"]  # the customer's (or the mono) segments

        if self.dialect is not None and listener:
            import numpy as np

            speech = np.concatenate([p.audio for p in listener]) if len(listener) > 1 else listener[0].audio
            c = as_classification(await self._model("dialect model", offload, self.dialect.classify, speech))
            out["dialect"], out["dialect_confidence"] = tax.check("dialect", c.label), c.confidence
        # Unsure means the Mandarin (default) group and no dialect prompt: a low-confidence dialect guess never routes.
        floor = float(getattr(self.dialect, "min_confidence", 0.0) or 0.0)
        out["dialect_sure"] = out["dialect"] is not None and (
            out["dialect_confidence"] is None or out["dialect_confidence"] >= floor)

        words: list[str | None]
        if self.asr is not None:
            hotwords = await self.hotwords_for(record.get("caller"), offload)
            heard = await self._recognise(pieces, out["dialect"] if out["dialect_sure"] else None, offload, hotwords)
            words = [t.text for t in heard]
            text = _join(w for p, w in zip(pieces, words) if p.channel != "agent")
            out["transcript"], out["text_source"], out["_text"] = text, "asr", text
            confs = [t.confidence for p, t in zip(pieces, heard) if p.channel != "agent" and t.confidence is not None]
            if confs:
                out["transcript_confidence"] = min(confs)
        else:  # the oracle: the reference is what the customer said; one listener segment can carry it
            out["text_source"], out["_text"] = "reference", str(reference)
            words = [str(reference) if (p.channel != "agent" and len(listener) == 1) else None for p in pieces]

        readings: list[Classification | None] = [None] * len(pieces)
        if self.emotion is not None:  # after recognition: a fusing classifier also reads the words and the caller
            who = record.get("caller") or record.get("speaker")  # the caller's number, else a corpus speaker id
            for k, p in enumerate(pieces):
                if p.channel == "agent":
                    continue
                kwargs: dict[str, Any] = {}
                if "text" in self._emotion_kwargs:
                    kwargs["text"] = words[k]
                if "caller" in self._emotion_kwargs and who:
                    kwargs["caller"] = str(who)
                c = as_classification(
                    await self._model("emotion model", offload, self.emotion.classify, p.audio, **kwargs))
                readings[k] = Classification(tax.check("emotion", c.label), c.confidence, c.probs)
        out["segments"] = [
            {"channel": p.channel, "start": p.start, "end": p.end, "text": words[k] or "",
             "emotion": readings[k].label if readings[k] else None,
             "emotion_confidence": readings[k].confidence if readings[k] else None}
            for k, p in enumerate(pieces)
        ]
        out["emotion_trajectory"] = [
            {"start": p.start, "end": p.end, "label": readings[k].label, "confidence": readings[k].confidence}
            for k, p in enumerate(pieces) if readings[k] is not None
        ]
        peak, conf = emotion_peak(out["emotion_trajectory"], self.policy.review.min_emotion_confidence)
        out["emotion_peak"], out["emotion"], out["emotion_confidence"] = peak, peak, conf
        return out

    # -- stage 2: understanding --------------------------------------------------------------------
    async def _understand(self, texts: list[str], offload: bool) -> list[Any]:
        results = list(await self._call(offload, self.intent_model.predict, texts))
        if len(results) != len(texts):
            raise RuntimeError(f"intent model returned {len(results)} results for {len(texts)} texts")
        return results

    # -- stage 3: decisions ------------------------------------------------------------------------
    async def _customer(self, record: Mapping[str, Any], offload: bool) -> Any:
        if self.customer_lookup is None or not record.get("caller"):
            return None
        return await self._call(offload, self.customer_lookup, str(record["caller"]))

    def _decide(self, out: dict, u: Any, record: Mapping[str, Any], customer: Any = None) -> dict:
        policy = self.policy
        intent = _get(u, "intent")
        slots = dict(_get(u, "slots", {}) or {})
        out.update(
            intent=intent,
            intent_confidence=_get(u, "intent_confidence"),
            is_complaint=bool(_get(u, "is_complaint")) if _get(u, "is_complaint") is not None else None,
            complaint_confidence=_get(u, "complaint_confidence"),
            complaint_evidence=list(_get(u, "complaint_evidence", ()) or ()),
            slots=slots,
            slot_confidence=dict(_get(u, "slot_confidence", {}) or {}),
        )
        sure = out.get("dialect_sure", out.get("dialect") is not None)
        r = route(u, out["emotion"], out["dialect"] if sure else None, policy, customer)
        review, why = needs_review(
            out["intent_confidence"], out["complaint_confidence"], out["emotion"], out["emotion_confidence"], policy
        )
        out.update(
            missing_slots=list(missing_slots(intent, slots, policy)),
            queue=r.queue,
            priority=r.priority,
            skill=r.skill,
            dialect_group=r.dialect_group,
            skip_ivr=r.skip_ivr,
            route_reasons=list(r.reasons) + ([] if sure or out.get("dialect") is None else [
                f"dialect {out['dialect']} unsure ({out.get('dialect_confidence') or 0:.2f}): "
                f"{policy.default_dialect_group} group, no dialect prompt"]),
            needs_review=review,
            review_reasons=list(why),
            policy_version=policy.version,
        )
        return out

    def _no_understanding(self, out: dict) -> dict:
        out.update(intent=None, intent_confidence=None, is_complaint=None, complaint_confidence=None,
                   complaint_evidence=[], slots={}, slot_confidence={}, missing_slots=[], queue=None,
                   priority=None, skill=None, dialect_group=None, route_reasons=[], needs_review=None,
                   review_reasons=[], policy_version=self.policy.version)
        return out

    # -- the one orchestration ---------------------------------------------------------------------
    async def _run(self, records: list[Mapping[str, Any]], batch_size: int, offload: bool,
                   progress: bool | None) -> list[dict]:
        """speech per record -> understanding in batches of ``batch_size`` texts -> decisions, in input order."""
        from tqdm.auto import tqdm

        disable = None if progress is None else not progress
        outs: list[dict] = []
        for rec in tqdm(records, desc="speech", unit="rec", disable=True if not self.has_speech else disable):
            try:
                outs.append(await self._speech(rec, offload))
            except Exception as exc:  # noqa: BLE001 - one bad record never stops the run
                outs.append(_error(rec, exc, stage=getattr(exc, "pipeline_stage", None)))

        todo = [i for i, o in enumerate(outs) if "error" not in o]
        understandings: dict[int, Any] = {}
        if self.intent_model is not None and todo:
            batches = [todo[i : i + batch_size] for i in range(0, len(todo), max(1, batch_size))]
            for batch in tqdm(batches, desc="understand", unit="batch", disable=disable):
                try:
                    understandings.update(zip(batch, await self._understand([outs[i]["_text"] for i in batch], offload)))
                except Exception:  # noqa: BLE001 - retry one by one to isolate the failing text
                    for i in batch:
                        try:
                            understandings[i] = (await self._understand([outs[i]["_text"]], offload))[0]
                        except Exception as exc:  # noqa: BLE001
                            outs[i] = _error(records[i], exc, stage="intent model")

        for i in todo:
            if "error" in outs[i]:
                continue
            outs[i].pop("_text", None)
            try:
                if self.intent_model is None:
                    self._no_understanding(outs[i])
                else:
                    customer = await self._customer(records[i], offload)
                    self._decide(outs[i], understandings[i], records[i], customer)
                outs[i] = _plain(outs[i])
            except Exception as exc:  # noqa: BLE001
                outs[i] = _error(records[i], exc, stage="decisions")
        return outs

    # -- public ------------------------------------------------------------------------------------
    async def aprocess(self, record: Mapping[str, Any]) -> dict:
        """The prediction for one record on the caller's event loop (``{"id", "error"}`` if it fails). Async
        components are awaited; synchronous ones, audio loading and VAD run in worker threads."""
        return (await self._run([record], 1, offload=True, progress=False))[0]

    def process(self, record: Mapping[str, Any]) -> dict:
        """The prediction for one record (``{"id", "error"}`` if it fails)."""
        return self.process_many([record], progress=False)[0]

    def process_many(
        self, records: Iterable[Mapping[str, Any]], batch_size: int = DEFAULT_BATCH_SIZE, progress: bool | None = None
    ) -> list[dict]:
        """Predictions for ``records``, in their order; texts go through the intent model ``batch_size`` at a time.
        Synchronous (the CLI, notebooks): the same steps as :meth:`aprocess`, components called in place.

        ``progress``: show tqdm bars (None: only on a terminal).
        """
        return _run_sync(self._run(list(records), batch_size, offload=False, progress=progress))


def _run_sync(coro: Any) -> Any:
    """Run ``coro`` to completion; from inside a running event loop (a notebook, an async server) in a fresh
    loop on a worker thread, since ``asyncio.run`` cannot nest."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _error(record: Mapping[str, Any], exc: BaseException, stage: str | None = None) -> dict:
    where = f"{stage}: " if stage else ""
    return {"id": record.get("id"), "error": f"{where}{type(exc).__name__}: {exc}"}
