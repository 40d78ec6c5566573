"""The one path for a call or a message: speech (optional) -> understanding -> decisions -> a prediction.

``hotline predict``, ``hotline evaluate``, the service and the notebooks all run :class:`Pipeline`, so a
record gets the same answer everywhere. Steps, in order (DESIGN.md "One path for a call"):

1. audio records: load at 16 kHz (mono mix), dialect ID (whole call), recognition (dialect-aware when the
   recogniser accepts a ``dialect`` keyword), emotion (given the text and the ``caller`` too when the classifier
   accepts ``text``/``caller`` keywords: fused with the wording, normalised per caller). Each speech component is
   optional: without a
   recogniser the reference ``text`` of the record is understood instead (``text_source: "reference"``),
   so intent and slots can be scored on audio manifests before any recogniser exists.
2. understanding of the text (intent, complaint, slots) by the intent model, in batches.
3. decisions (``models/decisions.py``): route, review, missing slots, under a versioned policy.

A record that fails (unreadable audio, a model error) gets ``{"id", "error"}`` and the others go on.
The prediction dict is the EVALUATION.md prediction line (JSON-ready).
"""

from __future__ import annotations

import inspect
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
    """Speech to text. ``audio``: float32 (samples,) at data.audio.SAMPLE_RATE. May also accept a
    ``dialect`` keyword (the detected dialect label) to pick a dialect-specific decoder.
    Returns a :class:`Transcription` or a plain string."""

    def transcribe(self, audio: Any) -> Transcription | str: ...


@runtime_checkable
class AudioClassifier(Protocol):
    """Audio to one label (dialect ID, speech emotion). ``audio`` as for :class:`Recognizer`. Returns a
    :class:`Classification`, a ``(label, confidence)`` pair, a label string, or a dict of label -> probability."""

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


# -- the pipeline ----------------------------------------------------------------------------------
class Pipeline:
    """Runs records (manifest dicts: ``id``, ``audio_path`` or ``audio``, ``text``, ``caller``) end to end.

    ``intent_model``: has ``predict(texts) -> list[Understanding]`` (``models/intent/understand.py``);
    without one, intent, slots and decisions are null. ``asr``: a :class:`Recognizer`; ``emotion`` and
    ``dialect``: :class:`AudioClassifier`. ``policy``: a :class:`~models.decisions.Policy` (default:
    ``models/policies/default.yaml``). ``customer_lookup``: caller phone number -> customer profile
    (``vip``, ``recent_complaints``) or None.
    """

    def __init__(
        self,
        intent_model: Any = None,
        asr: Recognizer | None = None,
        emotion: AudioClassifier | None = None,
        dialect: AudioClassifier | None = None,
        policy: Policy | None = None,
        customer_lookup: Callable[[str], Mapping[str, Any] | None] | None = None,
    ):
        self.intent_model = intent_model
        self.asr = asr
        self.emotion = emotion
        self.dialect = dialect
        self.policy = policy if policy is not None else load_policy()
        self.customer_lookup = customer_lookup
        self._asr_dialect = asr is not None and _accepts_dialect(asr.transcribe)
        self._emotion_kwargs = _keywords(emotion.classify, ("text", "caller")) if emotion is not None else set()

    @property
    def has_speech(self) -> bool:
        """Whether any speech component is plugged in (otherwise audio is never decoded)."""
        return any(c is not None for c in (self.asr, self.emotion, self.dialect))

    # -- stage 1: speech -------------------------------------------------------------------------
    def _speech(self, record: Mapping[str, Any]) -> dict:
        """Prediction fields from the audio (if any) and the text to understand (key ``_text``)."""
        out: dict[str, Any] = {"id": record["id"], "text_source": None, "transcript": None,
                               "dialect": None, "dialect_confidence": None,
                               "emotion": None, "emotion_confidence": None}
        audio_ref = record.get("audio_path") or record.get("audio")
        tax = self.policy.taxonomy
        if not audio_ref:
            if record.get("text") is None:
                raise ValueError("record has neither 'audio' nor 'text'")
            out["text_source"] = "message"
            out["_text"] = str(record["text"])
            return out
        if self.has_speech:
            from data.audio import SAMPLE_RATE, load_audio

            audio = load_audio(audio_ref, sample_rate=SAMPLE_RATE)
            if self.dialect is not None:
                c = as_classification(self.dialect.classify(audio))
                out["dialect"], out["dialect_confidence"] = tax.check("dialect", c.label), c.confidence
            if self.asr is not None:
                floor = float(getattr(self.dialect, "min_confidence", 0.0) or 0.0)  # unsure -> no dialect prompt
                sure = out["dialect"] is not None and (out["dialect_confidence"] is None or out["dialect_confidence"] >= floor)
                kwargs = {"dialect": out["dialect"] if sure else None} if self._asr_dialect else {}
                t = as_transcription(self.asr.transcribe(audio, **kwargs))
                out["transcript"], out["text_source"], out["_text"] = t.text, "asr", t.text
                if t.confidence is not None:
                    out["transcript_confidence"] = t.confidence
        if "_text" not in out:
            if record.get("text") is None:
                raise ValueError(
                    "audio record without reference 'text' and no speech recogniser: train and promote an ASR "
                    "model, or add the transcript as 'text'"
                )
            out["text_source"], out["_text"] = "reference", str(record["text"])
        if self.emotion is not None:  # after recognition: a fusing classifier also reads the words and the caller
            kwargs: dict[str, Any] = {}
            if "text" in self._emotion_kwargs:
                kwargs["text"] = out["_text"]
            who = record.get("caller") or record.get("speaker")  # the caller's number, else a corpus speaker id
            if "caller" in self._emotion_kwargs and who:
                kwargs["caller"] = str(who)
            c = as_classification(self.emotion.classify(audio, **kwargs))
            out["emotion"], out["emotion_confidence"] = tax.check("emotion", c.label), c.confidence
        return out

    # -- stage 3: decisions ----------------------------------------------------------------------
    def _decide(self, out: dict, u: Any, record: Mapping[str, Any]) -> dict:
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
        customer = None
        if self.customer_lookup is not None and record.get("caller"):
            customer = self.customer_lookup(str(record["caller"]))
        r = route(u, out["emotion"], out["dialect"], policy, customer)
        review, why = needs_review(
            out["intent_confidence"], out["complaint_confidence"], out["emotion"], out["emotion_confidence"], policy
        )
        out.update(
            missing_slots=list(missing_slots(intent, slots, policy)),
            queue=r.queue,
            priority=r.priority,
            skill=r.skill,
            dialect_group=r.dialect_group,
            route_reasons=list(r.reasons),
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

    # -- public ----------------------------------------------------------------------------------
    def process(self, record: Mapping[str, Any]) -> dict:
        """The prediction for one record (``{"id", "error"}`` if it fails)."""
        return self.process_many([record], progress=False)[0]

    def process_many(
        self, records: Iterable[Mapping[str, Any]], batch_size: int = DEFAULT_BATCH_SIZE, progress: bool | None = None
    ) -> list[dict]:
        """Predictions for ``records``, in their order; texts go through the intent model ``batch_size`` at a time.

        ``progress``: show tqdm bars (None: only on a terminal).
        """
        from tqdm.auto import tqdm

        records = list(records)
        disable = None if progress is None else not progress
        outs: list[dict] = []
        it = tqdm(records, desc="speech", unit="rec", disable=True if not self.has_speech else disable)
        for rec in it:
            try:
                outs.append(self._speech(rec))
            except Exception as exc:  # noqa: BLE001 - one bad record never stops the run
                outs.append(_error(rec, exc))

        todo = [i for i, o in enumerate(outs) if "error" not in o]
        understandings: dict[int, Any] = {}
        if self.intent_model is not None and todo:
            batches = [todo[i : i + batch_size] for i in range(0, len(todo), max(1, batch_size))]
            for batch in tqdm(batches, desc="understand", unit="batch", disable=disable):
                texts = [outs[i]["_text"] for i in batch]
                try:
                    results = list(self.intent_model.predict(texts))
                    if len(results) != len(texts):
                        raise RuntimeError(f"intent model returned {len(results)} results for {len(texts)} texts")
                    understandings.update(zip(batch, results))
                except Exception:  # noqa: BLE001 - retry one by one to isolate the failing text
                    for i in batch:
                        try:
                            understandings[i] = self.intent_model.predict([outs[i]["_text"]])[0]
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
                    self._decide(outs[i], understandings[i], records[i])
                outs[i] = _plain(outs[i])
            except Exception as exc:  # noqa: BLE001
                outs[i] = _error(records[i], exc, stage="decisions")
        return outs


def _error(record: Mapping[str, Any], exc: BaseException, stage: str | None = None) -> dict:
    where = f"{stage}: " if stage else ""
    return {"id": record.get("id"), "error": f"{where}{type(exc).__name__}: {exc}"}

