"""The ticket: one typed record shared by ``hotline predict``, the service's responses, the store and the notebooks.

``API.md`` fixes the field names; :func:`build_ticket` turns the pipeline's prediction for a call (or message) plus
the customer profile and the policy into a :class:`Ticket`. The ticket's life after creation (assign, comment,
escalate, resolve, close, reopen, satisfaction) is a small state machine (:func:`next_status`), a business rule like
the routing ones, so it lives here and not in the store. No torch, bentoml or SQL here.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

from models.decisions import PRIORITIES, Policy, sla_deadlines

Priority = Literal["P1", "P2", "P3", "P4"]
Channel = Literal["phone", "chat", "email", "wechat"]
Status = Literal["open", "assigned", "escalated", "resolved", "closed"]
Speaker = Literal["agent", "customer", "mono"]  # "mono": a one-channel recording, speakers not separated
EventType = Literal["created", "assign", "comment", "escalate", "reprioritize", "resolve", "close", "reopen",
                    "satisfaction"]
CHANNELS: tuple[str, ...] = ("phone", "chat", "email", "wechat")
EVENT_TYPES: tuple[str, ...] = ("assign", "comment", "escalate", "reprioritize", "resolve", "close", "reopen",
                                "satisfaction")
MASK = "****"  # what replaces the middle digits of a phone number

# Which events each status allows, and the status they lead to (None: the status stays). "reprioritize"
# ({"priority": "P1"}) changes the priority of an unfinished ticket and recomputes its SLA deadlines.
TRANSITIONS: dict[str, dict[str, str | None]] = {
    "open": {"assign": "assigned", "comment": None, "escalate": "escalated", "reprioritize": None,
             "resolve": "resolved", "close": "closed"},
    "assigned": {"assign": "assigned", "comment": None, "escalate": "escalated", "reprioritize": None,
                 "resolve": "resolved", "close": "closed"},
    "escalated": {"assign": "escalated", "comment": None, "escalate": "escalated", "reprioritize": None,
                  "resolve": "resolved", "close": "closed"},
    "resolved": {"comment": None, "close": "closed", "reopen": "open", "satisfaction": None},
    "closed": {"comment": None, "reopen": "open", "satisfaction": None},
}


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TranscriptSegment(Model):
    channel: Speaker  # who spoke: the agent's or the customer's channel of a stereo call, or "mono"
    start: float  # s from the start of the call
    end: float  # s from the start of the call
    text: str  # what was recognised (as spoken; slots carry the normalised values)
    emotion: str | None = None  # the customer's emotion in this segment (customer and mono segments), if read
    emotion_confidence: float | None = None  # probability of ``emotion``


class EmotionPoint(Model):
    start: float  # s
    end: float  # s
    label: str  # taxonomy emotion
    confidence: float | None = None  # probability of ``label``


class EmotionSummary(Model):
    peak: str | None = None  # the most aroused emotion read with confidence over the call (None: no audio / no model)
    trajectory: list[EmotionPoint] = Field(default_factory=list)  # per customer segment, in time order


class Escalation(Model):
    at: datetime  # when the ticket escalates if it is still unhandled
    to: str  # who it goes to (policy role, e.g. "supervisor")


class Sla(Model):
    due_at: datetime  # when the ticket must be resolved
    escalations: list[Escalation] = Field(default_factory=list)  # in time order


class Customer(Model):
    phone: str  # the customer's number (masked for every role but supervisor)
    name: str | None = None
    vip_level: int = 0  # 0: not a VIP; higher is more important
    region: str | None = None
    ticket_count: int = 0  # earlier tickets of this caller
    complaint_count: int = 0  # earlier complaint tickets of this caller
    recent_ticket_ids: list[str] = Field(default_factory=list)  # newest first


class TicketEvent(Model):
    id: int | None = None
    type: str  # "created" or one of EVENT_TYPES
    at: datetime
    actor: str | None = None  # key name (or "system") that caused it
    data: dict[str, Any] = Field(default_factory=dict)  # what the event carried (assignee, comment, score...)


class RouteDecision(Model):
    queue: str
    skill_group: str
    dialect_group: str
    priority: Priority
    skip_ivr: bool  # complaint callers go straight to an agent, not through the IVR menu
    estimated_wait_s: float | None = None  # from queue_state (None: no queue state given)
    offer_callback: bool = False  # the wait is over the policy's limit: offer a call back instead
    rule: str  # the rule that decided, in words (the first routing reason)
    reasons: list[str] = Field(default_factory=list)  # every rule that applied, in order


class Ticket(Model):
    id: str
    call_id: str  # the platform's id of the call or message: the idempotency key
    caller: str | None = None
    channel: Channel = "phone"
    status: Status = "open"
    created_at: datetime
    updated_at: datetime | None = None
    intent: str
    intent_confidence: float | None = None
    is_complaint: bool
    complaint_confidence: float | None = None
    evidence: list[str] = Field(default_factory=list)  # complaint cues and intent that fired
    slots: dict[str, str] = Field(default_factory=dict)  # EVALUATION.md values
    missing_slots: list[str] = Field(default_factory=list)  # still to ask the caller for
    priority: Priority
    queue: str
    skill_group: str
    tier: Literal["first_line", "specialist"] = "first_line"  # decisions.tier: major complaints go to specialists
    tier_rule: str | None = None  # the tier rule that sent it to the specialists (None: first line)
    dialect_group: str | None = None
    dialect: str | None = None
    dialect_confidence: float | None = None
    emotion: EmotionSummary = Field(default_factory=EmotionSummary)
    transcript: list[TranscriptSegment] = Field(default_factory=list)
    text: str | None = None  # a text message's body (chat, email, WeChat); None for calls
    summary: str
    needs_review: bool
    review_reasons: list[str] = Field(default_factory=list)
    route_reasons: list[str] = Field(default_factory=list)
    sla: Sla
    linked_tickets: list[str] = Field(default_factory=list)  # earlier tickets of the same caller or order
    link_reasons: list[str] = Field(default_factory=list)  # why each was linked (decisions.link_earlier)
    customer: Customer | None = None
    policy_version: str
    model_versions: dict[str, Any] = Field(default_factory=dict)  # model name -> version info, or "absent"
    absent_models: list[str] = Field(default_factory=list)  # models the call could not use (never guessed)
    assignee: str | None = None
    satisfaction: int | None = None  # the customer's score, 1..5, once given
    qa: dict[str, Any] | None = None  # the call's quality check: {score, passed, agent, rules_version, violations:
    #   [{rule, severity, evidence, start, end}]} (serving/operations.py; None: a message, or not checked)
    events: list[TicketEvent] | None = None  # the history (GET /tickets/{id}); None in lists


# -- helpers ---------------------------------------------------------------------------------------
_PHONE = re.compile(r"(?<![0-9a-f])(1\d{2})\d{4}(\d{4})(?![0-9a-f])")  # not inside hex ids (ticket ids, uuids)


def mask_phone(value: str | None) -> str | None:
    """``13812345678`` -> ``138****5678``; other numbers keep their first 3 and last 4 digits; None stays None."""
    if value is None:
        return None
    s = str(value)
    if len(s) <= 7:
        return MASK
    return s[:3] + MASK + s[-4:]


def mask_text(text: str) -> str:
    """Mobile numbers inside free text masked (transcripts, summaries, logs)."""
    return _PHONE.sub(lambda m: m.group(1) + MASK + m.group(2), text)


def masked(ticket: Ticket) -> Ticket:
    """A copy with the caller, the phone slot, the customer's number and numbers in the words masked."""
    t = ticket.model_copy(deep=True)
    t.caller = mask_phone(t.caller)
    if "phone" in t.slots:
        t.slots["phone"] = mask_phone(t.slots["phone"])
    if t.customer is not None:
        t.customer.phone = mask_phone(t.customer.phone)
    for seg in t.transcript:
        seg.text = mask_text(seg.text)
    t.summary = mask_text(t.summary)
    if t.text is not None:
        t.text = mask_text(t.text)
    return t


def content_hash(*, audio: bytes | None = None, text: str | None = None, caller: str | None = None,
                 channel: str = "phone") -> str:
    """What makes two submissions of one ``call_id`` the same: the audio bytes or the text, the caller and the
    channel. A retry with the same content gets the same ticket; other content with the same id is a 422."""
    h = hashlib.sha256()
    for part in (channel, caller or "", "audio" if audio is not None else "text"):
        h.update(part.encode("utf-8") + b"\0")
    h.update(audio if audio is not None else (text or "").encode("utf-8"))
    return h.hexdigest()


def next_status(status: str, event_type: str) -> str:
    """The status after ``event_type``; ValueError naming the allowed events when ``status`` does not allow it."""
    allowed = TRANSITIONS.get(status)
    if allowed is None:
        raise ValueError(f"unknown ticket status {status!r}")
    if event_type not in allowed:
        raise ValueError(
            f"a {status} ticket does not allow {event_type!r}; it allows: {', '.join(sorted(allowed))}"
        )
    nxt = allowed[event_type]
    return status if nxt is None else nxt


def summary_text(intent: str, slots: Mapping[str, str], emotion_peak: str | None, policy: Policy,
                 missing: Sequence[str] = ()) -> str:
    """A one-line Chinese summary an agent reads first, built from the fields (no model writes free text)."""
    tax = policy.taxonomy
    names = {i.name: i for i in tax.intents}
    slot_zh = {s.name: s.zh for s in tax.slots}
    head = names[intent].zh if intent in names else intent
    parts = [f"{slot_zh.get(k, k)}{v}" for k, v in slots.items() if v]
    text = head + ("：" + "，".join(parts) if parts else "")
    if emotion_peak and emotion_peak != "neutral":
        text += f"；客户情绪{tax.emotion_zh.get(emotion_peak, emotion_peak)}"
    if missing:
        text += "；待补充" + "、".join(slot_zh.get(m, m) for m in missing)
    return text


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def build_ticket(
    prediction: Mapping[str, Any],
    *,
    ticket_id: str,
    call_id: str,
    channel: str = "phone",
    caller: str | None = None,
    created_at: datetime | None = None,
    customer: Customer | None = None,
    linked_tickets: Sequence[str] = (),
    link_reasons: Sequence[str] = (),
    policy: Policy,
    model_versions: Mapping[str, Any] | None = None,
    absent_models: Sequence[str] = (),
    tier: str = "first_line",
    tier_rule: str | None = None,
) -> Ticket:
    """The ticket of one processed call or message. ``prediction`` is :meth:`models.pipeline.Pipeline.process`'s
    output (it already holds the routing decision, review and missing slots under ``policy``)."""
    if prediction.get("error"):
        raise ValueError(f"cannot make a ticket of a failed call: {prediction['error']}")
    if channel not in CHANNELS:
        raise ValueError(f"channel {channel!r}: use one of {', '.join(CHANNELS)}")
    created = created_at or now_utc()
    priority = str(prediction["priority"])
    if priority not in PRIORITIES:
        raise ValueError(f"priority {priority!r} is not one of {PRIORITIES}")
    due, escalations = sla_deadlines(priority, created, policy)
    segments = [TranscriptSegment(**s) for s in prediction.get("segments") or ()]
    trajectory = [EmotionPoint(**p) for p in prediction.get("emotion_trajectory") or ()]
    peak = prediction.get("emotion_peak", prediction.get("emotion"))
    slots = {k: str(v) for k, v in (prediction.get("slots") or {}).items() if v not in (None, "")}
    missing = list(prediction.get("missing_slots") or ())
    reasons = list(prediction.get("route_reasons") or ())
    queue = str(prediction["queue"])
    if tier == "specialist":  # decisions.tier: a major complaint goes to the specialist team at once
        queue = policy.tiers.specialist_queue
        reasons.append(f"major complaint ({tier_rule}): queue {queue}")
    return Ticket(
        id=ticket_id,
        call_id=call_id,
        caller=caller,
        channel=channel,  # type: ignore[arg-type]
        status="open",
        created_at=created,
        updated_at=created,
        intent=str(prediction["intent"]),
        intent_confidence=prediction.get("intent_confidence"),
        is_complaint=bool(prediction.get("is_complaint")),
        complaint_confidence=prediction.get("complaint_confidence"),
        evidence=list(prediction.get("complaint_evidence") or ()),
        slots=slots,
        missing_slots=missing,
        priority=priority,  # type: ignore[arg-type]
        queue=queue,
        tier=tier,  # type: ignore[arg-type]
        tier_rule=tier_rule,
        skill_group=str(prediction.get("skill") or prediction["queue"]),
        dialect_group=prediction.get("dialect_group"),
        dialect=prediction.get("dialect"),
        dialect_confidence=prediction.get("dialect_confidence"),
        emotion=EmotionSummary(peak=peak, trajectory=trajectory),
        transcript=segments,
        text=prediction.get("message"),
        summary=summary_text(str(prediction["intent"]), slots, peak, policy, missing),
        needs_review=bool(prediction.get("needs_review")),
        review_reasons=list(prediction.get("review_reasons") or ()),
        route_reasons=reasons,
        sla=Sla(due_at=due, escalations=[Escalation(at=at, to=to) for at, to in escalations]),
        linked_tickets=list(linked_tickets),
        link_reasons=list(link_reasons),
        customer=customer,
        policy_version=str(prediction.get("policy_version") or policy.version),
        model_versions=dict(model_versions or {}),
        absent_models=list(absent_models),
    )


def deadline_after(start: datetime, hours: float) -> datetime:
    return start + timedelta(hours=float(hours))
