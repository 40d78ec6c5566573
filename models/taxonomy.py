"""hotline's label vocabulary: the one place dialects, emotions, intents and slots are declared.

Everything else (corpus synthesis, training, evaluation, routing, the service) reads labels from here.
The default taxonomy is the contract of ``../shared/EVALUATION.md``; a project may load another one from
YAML with :func:`load_taxonomy`, but the default labels and formats must keep working.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping


class UnknownLabelError(ValueError):
    """A label that the taxonomy does not know. The message lists the labels it does know."""


@dataclass(frozen=True)
class Intent:
    name: str  # machine label, e.g. "logistics_delay"
    description: str  # what callers with this intent want, in English
    zh: str  # the label as a Chinese agent reads it on a ticket
    is_complaint: bool  # True for the complaint intents (they skip the IVR menu)


@dataclass(frozen=True)
class Dialect:
    name: str  # machine label, e.g. "cantonese"
    zh: str  # Chinese name shown to agents
    description: str  # which varieties it covers


@dataclass(frozen=True)
class Slot:
    name: str  # machine label, e.g. "order_id"
    zh: str  # Chinese name shown on the ticket
    description: str  # what a value looks like after normalisation


@dataclass(frozen=True)
class Taxonomy:
    dialects: tuple[Dialect, ...]  # ordered: the index is the class id of dialect models
    emotions: tuple[str, ...]  # ordered: the index is the class id of emotion models
    intents: tuple[Intent, ...]  # ordered: the index is the class id of intent models
    slots: tuple[Slot, ...]  # ordered: BIO tag ids are derived from this order
    emotion_zh: Mapping[str, str] = field(default_factory=dict)  # emotion label -> Chinese name

    # -- names -------------------------------------------------------------------------------------
    @property
    def dialect_names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dialects)

    @property
    def intent_names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.intents)

    @property
    def slot_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.slots)

    @property
    def complaint_intents(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.intents if i.is_complaint)

    def intent(self, name: str) -> Intent:
        for i in self.intents:
            if i.name == name:
                return i
        raise UnknownLabelError(_unknown("intent", name, self.intent_names))

    def is_complaint(self, intent: str) -> bool:
        return self.intent(intent).is_complaint

    # -- BIO tags for slot tagging -----------------------------------------------------------------
    @property
    def bio_tags(self) -> tuple[str, ...]:
        """``("O", "B-order_id", "I-order_id", ...)``: tag id = index."""
        tags = ["O"]
        for s in self.slot_names:
            tags += [f"B-{s}", f"I-{s}"]
        return tuple(tags)

    # -- validation --------------------------------------------------------------------------------
    def check(self, kind: str, value: str) -> str:
        """Return ``value`` if it is a known label of ``kind`` (dialect, emotion, intent, slot)."""
        known = {
            "dialect": self.dialect_names,
            "emotion": self.emotions,
            "intent": self.intent_names,
            "slot": self.slot_names,
        }
        if kind not in known:
            raise ValueError(f"unknown label kind {kind!r}; expected one of {sorted(known)}")
        if value not in known[kind]:
            raise UnknownLabelError(_unknown(kind, value, known[kind]))
        return value


def _unknown(kind: str, value: object, known: Iterable[str]) -> str:
    return (
        f"unknown {kind} label {value!r}; the taxonomy knows {', '.join(known)}. "
        f"Fix the label, or load a taxonomy that declares it (HOTLINE_TAXONOMY=path/to/taxonomy.yaml)."
    )


DEFAULT_TAXONOMY = Taxonomy(
    dialects=(
        Dialect("mandarin", "普通话", "Standard Mandarin (Putonghua)"),
        Dialect("cantonese", "粤语", "Cantonese (Yue), as in Guangdong and Hong Kong"),
        Dialect("southwestern", "西南官话", "Sichuanese and other Southwestern Mandarin"),
        Dialect("wu", "吴语", "Shanghainese and other Wu"),
        Dialect("min", "闽语", "Minnan/Hokkien and other Min"),
    ),
    emotions=("neutral", "angry", "anxious", "sad", "happy"),
    intents=(
        Intent("logistics_delay", "parcel late or lost", "物流延误", True),
        Intent("product_quality", "faulty or damaged product", "产品质量", True),
        Intent("refund_dispute", "refund or return refused or late", "退款纠纷", True),
        Intent("billing_error", "wrong charge, double deduction", "计费错误", True),
        Intent("service_attitude", "rude or careless staff, broken promises", "服务态度", True),
        Intent("repair_aftersales", "repair, installation, spare parts", "维修售后", True),
        Intent("network_outage", "no signal, broadband or service down", "网络故障", True),
        Intent("booking_issue", "reservation not honoured: no room, cancelled flight or seat", "预订问题", True),
        Intent("order_inquiry", "where is my order", "订单查询", False),
        Intent("consultation", "how do I / what is the policy", "业务咨询", False),
        Intent("praise", "thanks, compliments", "表扬", False),
    ),
    slots=(
        Slot("order_id", "订单号", "a string of digits"),
        Slot("phone", "手机号", "an 11-digit mobile number"),
        Slot("amount", "金额", "yuan, digits with an optional decimal point, no unit"),
        Slot("product", "产品", "the product or model as the caller named it"),
    ),
    emotion_zh={"neutral": "平静", "angry": "愤怒", "anxious": "焦急", "sad": "难过", "happy": "高兴"},
)

# Module-level shorthands for the default taxonomy (read-only tuples).
DIALECTS = DEFAULT_TAXONOMY.dialect_names
EMOTIONS = DEFAULT_TAXONOMY.emotions
INTENTS = DEFAULT_TAXONOMY.intent_names
COMPLAINT_INTENTS = DEFAULT_TAXONOMY.complaint_intents
SLOTS = DEFAULT_TAXONOMY.slot_names


def load_taxonomy(path: str | Path | None = None) -> Taxonomy:
    """The default taxonomy, or one read from a YAML file with the same fields.

    YAML layout::

        dialects: [{name: mandarin, zh: 普通话, description: ...}, ...]
        emotions: [neutral, angry, ...]
        intents: [{name: ..., description: ..., zh: ..., is_complaint: true}, ...]
        slots: [{name: order_id, zh: 订单号, description: ...}, ...]
    """
    if path is None:
        return DEFAULT_TAXONOMY
    import yaml

    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    missing = {"dialects", "emotions", "intents", "slots"} - set(raw)
    if missing:
        raise ValueError(f"taxonomy file {path} lacks {sorted(missing)}; see models/taxonomy.py for the layout")
    return Taxonomy(
        dialects=tuple(Dialect(**d) for d in raw["dialects"]),
        emotions=tuple(raw["emotions"]),
        intents=tuple(Intent(**i) for i in raw["intents"]),
        slots=tuple(Slot(**s) for s in raw["slots"]),
        emotion_zh=dict(raw.get("emotion_zh", {})),
    )
