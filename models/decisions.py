"""Business decisions over a call's understanding: route (queue, priority), human review, missing slots.

Pure functions of plain values (labels, confidences, dicts) and a :class:`Policy` read from a versioned
YAML file (``models/policies/default.yaml``). No models and no torch/bentoml/mlflow imports here: the
service, ``hotline predict`` and the notebooks all call these same functions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from models.taxonomy import DEFAULT_TAXONOMY, Taxonomy, UnknownLabelError

POLICY_DIR = Path(__file__).resolve().parent / "policies"
DEFAULT_POLICY_PATH = POLICY_DIR / "default.yaml"
PRIORITIES = ("P1", "P2", "P3", "P4")  # P1 is the most urgent


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the file and the field to fix."""


@dataclass(frozen=True)
class IntentRule:
    queue: str  # queue a call of this intent goes to
    skill: str  # skill group inside the queue
    priority: str  # starting priority, P1..P4
    required_slots: tuple[str, ...]  # slots a ticket of this intent needs before work can start


@dataclass(frozen=True)
class PriorityRules:
    emotion_raise: Mapping[str, int]  # emotion label -> levels the priority is raised by
    escalation_cues: tuple[str, ...]  # complaint cue names (models/intent/cues.py) that force escalation_priority
    escalation_priority: str  # priority of a call with an escalation cue
    vip_raise: int  # levels a VIP customer is raised by
    repeat_complaints: int  # recent complaints in the customer profile from which a caller is raised one level
    non_complaint_max_priority: str  # the most urgent priority a non-complaint call can get


@dataclass(frozen=True)
class ReviewRules:
    min_intent_confidence: float  # below this the intent reading goes to a person
    min_complaint_confidence: float  # below this the complaint/non-complaint reading goes to a person
    high_arousal_emotions: tuple[str, ...]  # emotions that send a call to review whatever the confidences
    min_emotion_confidence: float  # an emotion reading below this does not trigger review on its own


@dataclass(frozen=True)
class SlaRules:
    resolve_hours: Mapping[str, float]  # priority -> hours from creation until the ticket is due
    escalations: Mapping[str, tuple[tuple[float, str], ...]]  # priority -> ((hours after creation, to whom), ...)


@dataclass(frozen=True)
class WaitRules:
    handle_seconds: float  # s an agent spends on one call on average (estimates the wait from queue_state)
    callback_after_seconds: float  # offer a call back when the estimated wait is over this


@dataclass(frozen=True)
class TierRules:
    """When a complaint is "major" and goes to the specialist team at once (any rule fires; the first one is kept)."""

    specialist_queue: str  # the specialist team's queue (declared under `queues`)
    intents: tuple[str, ...] = ()  # intents that are always major
    min_amount: float | None = None  # slot `amount` (yuan) at or above this
    emotions: tuple[str, ...] = ()  # the caller's emotion is one of these ...
    min_emotion_confidence: float = 0.0  # ... read with at least this confidence
    repeat_complaints: int | None = None  # the customer's complaint_count at or above this
    vip_level: int | None = None  # the customer's vip_level at or above this
    threat_cues: tuple[str, ...] = ()  # regulator or media threats in the words or the complaint evidence
    complaints_only: bool = True  # non-complaint calls always stay first-line


DEFAULT_SLA = SlaRules(
    resolve_hours={"P1": 4.0, "P2": 24.0, "P3": 48.0, "P4": 72.0},
    escalations={p: ((2.0, "supervisor"), (4.0, "director")) for p in PRIORITIES},
)
DEFAULT_WAIT = WaitRules(handle_seconds=300.0, callback_after_seconds=180.0)


@dataclass(frozen=True)
class Policy:
    version: str  # bumped on every change; recorded on each ticket
    name: str  # short name, e.g. "default"
    description: str  # what the policy is for, in words
    queues: Mapping[str, str]  # queue name -> what it is for
    intents: Mapping[str, IntentRule]  # one rule per taxonomy intent
    complaint_queue: str  # where a call flagged as a complaint goes, whatever its intent
    complaint_min_priority: str  # a complaint is never less urgent than this
    priority: PriorityRules
    review: ReviewRules
    dialect_groups: Mapping[str, str]  # dialect label -> agent language group
    default_dialect_group: str  # group for calls without a dialect reading (text messages)
    sla: SlaRules = DEFAULT_SLA  # deadlines and the escalation chain
    wait: WaitRules = DEFAULT_WAIT  # estimated waits and call-back offers
    skip_ivr_for_complaints: bool = True  # complaint callers skip the IVR menu
    tiers: TierRules = TierRules(specialist_queue="complaint")  # no rule: every ticket stays first-line
    regional_managers: Mapping[str, str] = field(default_factory=dict)  # region -> who gets tiered alerts
    default_regional_manager: str = "regional-manager"  # for a region the map does not name (or no region)
    source: str = ""  # the file the policy was read from
    taxonomy: Taxonomy = field(default=DEFAULT_TAXONOMY, repr=False, compare=False)  # labels it was checked against

    def rule(self, intent: str) -> IntentRule:
        """The rule of ``intent``; :class:`UnknownLabelError` for an intent the taxonomy does not know."""
        self.taxonomy.check("intent", intent)
        if intent not in self.intents:  # pragma: no cover - load_policy checks every intent has a rule
            raise PolicyError(f"policy {self.source or self.name} has no rule for intent {intent!r}")
        return self.intents[intent]


@dataclass(frozen=True)
class Route:
    queue: str  # queue name from the policy
    priority: str  # P1..P4
    skill: str  # skill group inside the queue
    dialect_group: str  # agent language group
    reasons: tuple[str, ...]  # why, one line per rule that fired, in the order applied
    skip_ivr: bool = False  # the caller goes straight to an agent (complaints, by the policy)


# -- loading ---------------------------------------------------------------------------------------------
def _level(value: Any, where: str) -> str:
    value = str(value)
    if value not in PRIORITIES:
        raise PolicyError(f"{where}: priority {value!r} is not one of {', '.join(PRIORITIES)}")
    return value


def _labels(values: Iterable[Any], kind: str, taxonomy: Taxonomy, where: str) -> tuple[str, ...]:
    out = []
    for v in values or ():
        try:
            out.append(taxonomy.check(kind, str(v)))
        except UnknownLabelError as e:
            raise PolicyError(f"{where}: {e}") from None
    return tuple(out)


def policy_from_dict(raw: Mapping[str, Any], source: str = "<dict>", taxonomy: Taxonomy = DEFAULT_TAXONOMY) -> Policy:
    """Build and check a :class:`Policy` from the YAML layout of ``models/policies/default.yaml``."""
    need = {"version", "queues", "intents", "priority", "review", "dialect_groups"}
    missing = sorted(need - set(raw))
    if missing:
        raise PolicyError(f"policy {source} lacks {missing}; see models/policies/default.yaml for the layout")
    queues = {str(k): str(v) for k, v in raw["queues"].items()}

    intents: dict[str, IntentRule] = {}
    for name, r in raw["intents"].items():
        where = f"policy {source}, intents.{name}"
        try:
            taxonomy.check("intent", name)
        except UnknownLabelError as e:
            raise PolicyError(f"{where}: {e}") from None
        if r.get("queue") not in queues:
            raise PolicyError(f"{where}: queue {r.get('queue')!r} is not declared under `queues` ({', '.join(queues)})")
        intents[name] = IntentRule(
            queue=str(r["queue"]),
            skill=str(r.get("skill", r["queue"])),
            priority=_level(r.get("priority", "P4"), where),
            required_slots=_labels(r.get("required_slots", ()), "slot", taxonomy, where),
        )
    lacking = [i for i in taxonomy.intent_names if i not in intents]
    if lacking:
        raise PolicyError(f"policy {source}: no rule for intents {lacking}; add them under `intents`")

    p = raw["priority"]
    wp = f"policy {source}, priority"
    emotion_raise = {}
    for emo, n in (p.get("emotion_raise") or {}).items():
        _labels([emo], "emotion", taxonomy, f"{wp}.emotion_raise")
        emotion_raise[str(emo)] = int(n)
    priority = PriorityRules(
        emotion_raise=emotion_raise,
        escalation_cues=tuple(str(c) for c in p.get("escalation_cues", ())),
        escalation_priority=_level(p.get("escalation_priority", "P1"), wp),
        vip_raise=int(p.get("vip_raise", 0)),
        repeat_complaints=int(p.get("repeat_complaints", 0)),
        non_complaint_max_priority=_level(p.get("non_complaint_max_priority", "P1"), wp),
    )

    r = raw["review"]
    wr = f"policy {source}, review"
    review = ReviewRules(
        min_intent_confidence=float(r.get("min_intent_confidence", 0.0)),
        min_complaint_confidence=float(r.get("min_complaint_confidence", 0.0)),
        high_arousal_emotions=_labels(r.get("high_arousal_emotions", ()), "emotion", taxonomy, wr),
        min_emotion_confidence=float(r.get("min_emotion_confidence", 0.0)),
    )
    for key in ("min_intent_confidence", "min_complaint_confidence", "min_emotion_confidence"):
        if not 0.0 <= getattr(review, key) <= 1.0:
            raise PolicyError(f"{wr}.{key} must lie in [0, 1], got {getattr(review, key)}")

    groups = {}
    for d, g in raw["dialect_groups"].items():
        _labels([d], "dialect", taxonomy, f"policy {source}, dialect_groups")
        groups[str(d)] = str(g)
    lacking = [d for d in taxonomy.dialect_names if d not in groups]
    if lacking:
        raise PolicyError(f"policy {source}: no dialect group for {lacking}; add them under `dialect_groups`")

    sla = _sla_rules(raw.get("sla"), f"policy {source}, sla")
    w = raw.get("wait") or {}
    wait = WaitRules(
        handle_seconds=float(w.get("handle_seconds", DEFAULT_WAIT.handle_seconds)),
        callback_after_seconds=float(w.get("callback_after_seconds", DEFAULT_WAIT.callback_after_seconds)),
    )
    if wait.handle_seconds <= 0 or wait.callback_after_seconds < 0:
        raise PolicyError(f"policy {source}, wait: handle_seconds must be > 0 and callback_after_seconds >= 0")

    complaint_queue = str(raw.get("complaint_queue", "complaint"))
    if complaint_queue not in queues:
        raise PolicyError(f"policy {source}: complaint_queue {complaint_queue!r} is not declared under `queues`")
    tiers = _tier_rules(raw.get("tiers"), complaint_queue, queues, taxonomy, f"policy {source}, tiers")
    managers_raw = raw.get("regional_managers") or {}
    if not isinstance(managers_raw, Mapping):
        raise PolicyError(f"policy {source}, regional_managers: a map region -> contact, with an optional `default`")
    managers = {str(k): str(v) for k, v in managers_raw.items() if k != "default"}
    default_manager = str(managers_raw.get("default", "regional-manager"))
    return Policy(
        version=str(raw["version"]),
        name=str(raw.get("name", Path(source).stem)),
        description=str(raw.get("description", "")).strip(),
        queues=queues,
        intents=intents,
        complaint_queue=complaint_queue,
        complaint_min_priority=_level(raw.get("complaint_min_priority", "P4"), f"policy {source}"),
        priority=priority,
        review=review,
        dialect_groups=groups,
        default_dialect_group=str(raw.get("default_dialect_group", next(iter(groups.values())))),
        sla=sla,
        wait=wait,
        skip_ivr_for_complaints=bool(raw.get("skip_ivr_for_complaints", True)),
        tiers=tiers,
        regional_managers=managers,
        default_regional_manager=default_manager,
        source=source,
        taxonomy=taxonomy,
    )


def _sla_rules(raw: Mapping[str, Any] | None, where: str) -> SlaRules:
    """The ``sla`` section: ``resolve_hours`` per priority and an escalation chain (``default`` plus overrides per
    priority), each step ``{after_hours, to}``; absent parts keep :data:`DEFAULT_SLA`."""
    raw = raw or {}
    hours = dict(DEFAULT_SLA.resolve_hours)
    for p, h in (raw.get("resolve_hours") or {}).items():
        hours[_level(p, f"{where}.resolve_hours")] = float(h)
    chains_raw = raw.get("escalations") or {}
    default = DEFAULT_SLA.escalations["P4"]
    if "default" in chains_raw:
        default = _chain(chains_raw["default"], f"{where}.escalations.default")
    chains = {p: default for p in PRIORITIES}
    for p, steps in chains_raw.items():
        if p != "default":
            chains[_level(p, f"{where}.escalations")] = _chain(steps, f"{where}.escalations.{p}")
    for p, h in hours.items():
        if h <= 0:
            raise PolicyError(f"{where}.resolve_hours.{p} must be > 0 hours, got {h}")
    return SlaRules(resolve_hours=hours, escalations=chains)


def _tier_rules(raw: Mapping[str, Any] | None, complaint_queue: str, queues: Mapping[str, str], taxonomy: Taxonomy,
                where: str) -> TierRules:
    """The ``tiers`` section (absent: nothing is major). Each rule is optional; see models/policies/default.yaml."""
    if not raw:
        return TierRules(specialist_queue=complaint_queue)
    q = str(raw.get("specialist_queue", complaint_queue))
    if q not in queues:
        raise PolicyError(f"{where}.specialist_queue {q!r} is not declared under `queues` ({', '.join(queues)})")
    major = raw.get("major") or {}
    emo = major.get("emotion") or {}

    def opt(v: Any, kind: type) -> Any:
        return None if v is None else kind(v)

    rules = TierRules(
        specialist_queue=q,
        intents=_labels(major.get("intents", ()), "intent", taxonomy, f"{where}.major.intents"),
        min_amount=opt(major.get("min_amount"), float),
        emotions=_labels(emo.get("labels", ()), "emotion", taxonomy, f"{where}.major.emotion"),
        min_emotion_confidence=float(emo.get("min_confidence", 0.0)),
        repeat_complaints=opt(major.get("repeat_complaints"), int),
        vip_level=opt(major.get("vip_level"), int),
        threat_cues=tuple(str(c) for c in major.get("threat_cues", ())),
        complaints_only=bool(raw.get("complaints_only", True)),
    )
    if not 0.0 <= rules.min_emotion_confidence <= 1.0:
        raise PolicyError(f"{where}.major.emotion.min_confidence must lie in [0, 1]")
    return rules


def _chain(steps: Any, where: str) -> tuple[tuple[float, str], ...]:
    out = []
    for i, step in enumerate(steps or ()):
        if not isinstance(step, Mapping) or "after_hours" not in step or "to" not in step:
            raise PolicyError(f"{where}[{i}]: each step needs `after_hours` and `to`, e.g. {{after_hours: 2, to: supervisor}}")
        out.append((float(step["after_hours"]), str(step["to"])))
    hours = [h for h, _ in out]
    if any(h <= 0 for h in hours) or hours != sorted(hours):
        raise PolicyError(f"{where}: after_hours must be > 0 and increasing, got {hours}")
    return tuple(out)


def load_policy(path: str | Path | None = None, taxonomy: Taxonomy = DEFAULT_TAXONOMY) -> Policy:
    """The policy in ``path`` (default: ``models/policies/default.yaml``), checked against ``taxonomy``."""
    import yaml

    path = Path(path) if path is not None else DEFAULT_POLICY_PATH
    if not path.is_file():
        raise PolicyError(f"policy file {path} not found; the default is {DEFAULT_POLICY_PATH}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise PolicyError(f"policy file {path} is not valid YAML: {e}") from None
    return policy_from_dict(raw, source=str(path), taxonomy=taxonomy)


# -- decisions -------------------------------------------------------------------------------------------
def _get(obj: Any, key: str, default: Any = None) -> Any:
    """``obj[key]`` for mappings, ``obj.key`` otherwise (an Understanding, a pydantic model, a dict)."""
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _raise(priority: str, levels: int) -> str:
    i = PRIORITIES.index(priority) - int(levels)
    return PRIORITIES[min(max(i, 0), len(PRIORITIES) - 1)]


def _more_urgent(a: str, b: str) -> str:
    return a if PRIORITIES.index(a) <= PRIORITIES.index(b) else b


def _cue_names(evidence: Iterable[str]) -> list[str]:
    """Cue names from complaint evidence ("cue:12315" -> "12315"; bare names are kept)."""
    out = []
    for e in evidence or ():
        e = str(e)
        if e.startswith("cue:"):
            out.append(e[4:])
        elif ":" not in e:
            out.append(e)
    return out


def route(
    understanding: Any,
    emotion: str | None,
    dialect: str | None,
    policy: Policy,
    customer: Mapping[str, Any] | None = None,
) -> Route:
    """Queue, priority, skill and dialect group of a call.

    ``understanding`` is anything with ``intent`` and optionally ``is_complaint`` and ``complaint_evidence``
    (an ``Understanding``, a dict, a ticket). ``customer`` is an optional profile with ``vip`` (bool) or
    ``vip_level`` (int) and ``recent_complaints`` or ``complaint_count`` (int). Rules, in order: the intent's rule sets queue, skill and starting priority;
    a complaint goes to the complaint queue at least at ``complaint_min_priority``; emotions raise the
    priority; an escalation cue (12315, 曝光, 媒体 ...) makes it P1; VIP and repeat callers are raised;
    a non-complaint is capped at ``non_complaint_max_priority``.
    """
    tax = policy.taxonomy
    intent = _get(understanding, "intent")
    if intent is None:
        raise ValueError("route() needs an understanding with an `intent`")
    rule = policy.rule(str(intent))
    if emotion is not None:
        tax.check("emotion", emotion)
    if dialect is not None:
        tax.check("dialect", dialect)
    is_complaint = _get(understanding, "is_complaint")
    if is_complaint is None:
        is_complaint = tax.is_complaint(intent)
    is_complaint = bool(is_complaint)
    reasons: list[str] = []

    queue, skill, priority = rule.queue, rule.skill, rule.priority
    reasons.append(f"intent {intent}: queue {queue}, skill {skill}, {priority}")
    if is_complaint:
        if queue != policy.complaint_queue:
            reasons.append(f"complaint cue on a {intent} call: queue {policy.complaint_queue}")
            queue = policy.complaint_queue
        floor = _more_urgent(priority, policy.complaint_min_priority)
        if floor != priority:
            reasons.append(f"complaint: at least {policy.complaint_min_priority}")
            priority = floor

    raise_by = policy.priority.emotion_raise.get(emotion or "", 0)
    if raise_by:
        new = _raise(priority, raise_by)
        reasons.append(f"emotion {emotion}: +{raise_by} -> {new}")
        priority = new

    cues = [c for c in _cue_names(_get(understanding, "complaint_evidence", ()) or ()) if c in policy.priority.escalation_cues]
    if cues:
        new = _more_urgent(priority, policy.priority.escalation_priority)
        reasons.append(f"escalation cue {', '.join(dict.fromkeys(cues))}: {new}")
        priority = new

    if customer:
        if (_get(customer, "vip") or (_get(customer, "vip_level", 0) or 0) > 0) and policy.priority.vip_raise:
            new = _raise(priority, policy.priority.vip_raise)
            reasons.append(f"VIP customer: +{policy.priority.vip_raise} -> {new}")
            priority = new
        recent = int(_get(customer, "recent_complaints", None) or _get(customer, "complaint_count", 0) or 0)
        if policy.priority.repeat_complaints and recent >= policy.priority.repeat_complaints:
            new = _raise(priority, 1)
            reasons.append(f"repeat caller ({recent} recent complaints): +1 -> {new}")
            priority = new

    if not is_complaint:
        cap = policy.priority.non_complaint_max_priority
        if PRIORITIES.index(priority) < PRIORITIES.index(cap):
            reasons.append(f"not a complaint: capped at {cap}")
            priority = cap

    group = policy.dialect_groups[dialect] if dialect is not None else policy.default_dialect_group
    if dialect is not None and group != policy.default_dialect_group:
        reasons.append(f"dialect {dialect}: {group} agents")
    skip = bool(is_complaint and policy.skip_ivr_for_complaints)
    if skip:
        reasons.append("complaint: skips the IVR menu")
    return Route(queue=queue, priority=priority, skill=skill, dialect_group=group, reasons=tuple(reasons), skip_ivr=skip)


def sla_deadlines(priority: str, created_at: Any, policy: Policy) -> tuple[Any, tuple[tuple[Any, str], ...]]:
    """(due time, ((escalation time, to whom), ...)) of a ticket of ``priority`` created at ``created_at`` (a
    datetime), under the policy's ``sla`` rules."""
    from datetime import timedelta

    _level(priority, "sla_deadlines")
    due = created_at + timedelta(hours=policy.sla.resolve_hours[priority])
    steps = tuple((created_at + timedelta(hours=h), to) for h, to in policy.sla.escalations[priority])
    return due, steps


_AMOUNT = re.compile(r"\d+(?:\.\d+)?")


def _amount(value: Any) -> float | None:
    """Yuan from a slot value ("2999", "2999.5", "2,999元"); None when there is no number."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    m = _AMOUNT.search(str(value).replace(",", "").replace("，", ""))
    return float(m.group()) if m else None


def _says(words: str, cue: str) -> bool:
    """``cue`` in ``words``; a cue of digits (a hotline number such as 12315) only as a whole number, never inside
    a phone or order number."""
    if not cue:
        return False
    if cue.isdigit():
        return re.search(rf"(?<!\d){cue}(?!\d)", words) is not None
    return cue in words


def tier(prediction: Any, customer: Any, policy: Policy) -> tuple[str, str | None]:
    """("first_line" | "specialist", the rule that decided) of a call under the policy's ``tiers`` section.

    ``prediction`` is the pipeline's output (or any mapping/object with ``intent``, ``is_complaint``, ``slots``,
    ``emotion``/``emotion_peak`` and ``emotion_confidence``, ``complaint_evidence``, ``transcript``/``message``);
    ``customer`` an optional profile (``vip_level``, ``complaint_count``). Ordinary complaints, and every
    non-complaint when ``complaints_only``, stay first-line. Rules in order: intent, amount, emotion, repeat
    count, VIP level, regulator or media threat; the first that fires is returned."""
    t = policy.tiers
    intent = _get(prediction, "intent")
    is_complaint = _get(prediction, "is_complaint")
    if is_complaint is None and intent is not None:
        is_complaint = policy.taxonomy.is_complaint(str(intent))
    if t.complaints_only and not is_complaint:
        return "first_line", None
    if intent is not None and str(intent) in t.intents:
        return "specialist", f"intent {intent} is always major"
    if t.min_amount is not None:
        amount = _amount((_get(prediction, "slots") or {}).get("amount"))
        if amount is not None and amount >= t.min_amount:
            return "specialist", f"amount {amount:g} >= {t.min_amount:g}"
    if t.emotions:
        emotion = _get(prediction, "emotion") or _get(prediction, "emotion_peak")
        conf = _get(prediction, "emotion_confidence")
        if emotion in t.emotions and (conf is None or float(conf) >= t.min_emotion_confidence):
            shown = "" if conf is None else f" {float(conf):.2f}"
            return "specialist", f"emotion {emotion}{shown} >= {t.min_emotion_confidence:.2f}"
    if customer:
        complaints = int(_get(customer, "complaint_count", 0) or 0)
        if t.repeat_complaints is not None and complaints >= t.repeat_complaints:
            return "specialist", f"repeat complainant: {complaints} complaints >= {t.repeat_complaints}"
        vip = int(_get(customer, "vip_level", 0) or 0)
        if t.vip_level is not None and vip >= t.vip_level:
            return "specialist", f"VIP level {vip} >= {t.vip_level}"
    if t.threat_cues:
        words = " ".join(str(_get(prediction, k) or "") for k in ("transcript", "message", "text"))
        cues = set(_cue_names(_get(prediction, "complaint_evidence", ()) or ()))
        for cue in t.threat_cues:
            if cue in cues or _says(words, cue):
                return "specialist", f"regulator or media threat: {cue}"
    return "first_line", None


def regional_manager(customer: Any, policy: Policy) -> str:
    """Who gets the tiered alert of a caller: the manager of the customer's region, else the policy's default."""
    region = _get(customer, "region") if customer else None
    return policy.regional_managers.get(str(region), policy.default_regional_manager) if region else \
        policy.default_regional_manager


def estimated_wait(queue: str, queue_state: Mapping[str, Any] | None, policy: Policy, vip: bool = False
                   ) -> tuple[float | None, bool, str | None]:
    """(estimated wait in s, offer a call back?, why) for a caller joining ``queue``.

    ``queue_state`` (from the call platform): ``{queue: {"waiting": n, "free_agents": m, "agents": k}}``. The wait
    is the callers ahead divided by the agents serving, times the policy's ``handle_seconds``; a free agent with no
    one waiting means no wait. No state for the queue: (None, False, None): nothing is guessed.
    """
    if not queue_state or queue not in queue_state:
        return None, False, None
    q = queue_state[queue]
    if not isinstance(q, Mapping):
        raise ValueError(f"queue_state[{queue!r}] must be an object like {{\"waiting\": 3, \"free_agents\": 0, \"agents\": 4}}")
    try:
        waiting = max(0, int(q.get("waiting", 0)))
        free = max(0, int(q.get("free_agents", 0)))
        agents = max(free, int(q.get("agents", free) or free))
    except (TypeError, ValueError):
        raise ValueError(f"queue_state[{queue!r}]: waiting, free_agents and agents must be whole numbers") from None
    if free > waiting:
        return 0.0, False, None
    if agents == 0:
        return None, True, f"queue {queue} has no agents: offer a call back"
    ahead = 0 if vip else waiting - free
    wait = round((ahead + 1) * policy.wait.handle_seconds / agents, 1)
    offer = wait > policy.wait.callback_after_seconds
    why = f"estimated wait {wait:.0f} s > {policy.wait.callback_after_seconds:.0f} s: offer a call back" if offer else None
    return wait, offer, why


def needs_review(
    intent_confidence: float | None,
    complaint_confidence: float | None,
    emotion: str | None,
    emotion_confidence: float | None,
    policy: Policy,
) -> tuple[bool, tuple[str, ...]]:
    """Whether a person should check this call, and why (dual threshold).

    Review when the intent or complaint confidence is below its threshold, OR the caller's emotion is a
    high-arousal one read with at least ``min_emotion_confidence`` (an emotion without a confidence
    counts). A confidence of ``None`` (no model gave one) triggers nothing.
    """
    r = policy.review
    reasons: list[str] = []
    if intent_confidence is not None and intent_confidence < r.min_intent_confidence:
        reasons.append(f"intent confidence {intent_confidence:.2f} < {r.min_intent_confidence:.2f}")
    if complaint_confidence is not None and complaint_confidence < r.min_complaint_confidence:
        reasons.append(f"complaint confidence {complaint_confidence:.2f} < {r.min_complaint_confidence:.2f}")
    if emotion is not None:
        policy.taxonomy.check("emotion", emotion)
        if emotion in r.high_arousal_emotions and (emotion_confidence is None or emotion_confidence >= r.min_emotion_confidence):
            conf = "" if emotion_confidence is None else f" ({emotion_confidence:.2f})"
            reasons.append(f"high-arousal emotion {emotion}{conf}")
    return bool(reasons), tuple(reasons)


EARLIER_CONTACT_CUES = ("上次", "上回", "之前投诉", "之前反映", "又出", "又是", "还是同样", "同样的问题", "一样的问题",
                        "第二次", "再次", "几次了", "好几次", "上個", "又係", "同上次")  # "same problem as last time"


def refers_to_earlier_contact(text: str | None, cues: Iterable[str] = EARLIER_CONTACT_CUES) -> str | None:
    """The cue in ``text`` by which a caller says this is the same problem as last time (None: no such words)."""
    for cue in cues:
        if text and cue in text:
            return cue
    return None


def link_earlier(earlier: Iterable[Mapping[str, Any]], intent: str, order_id: str | None, text: str | None,
                 limit: int = 10) -> tuple[list[str], list[str]]:
    """(ticket ids to link, why) among a caller's or an order's ``earlier`` tickets (dicts with ``id``, ``intent``,
    ``order_id``; newest first): the same order, or the same intent from the same caller; and when the words say
    it is the same problem as last time, the caller's latest ticket whatever its intent."""
    earlier = list(earlier)
    ids: list[str] = []
    why: list[str] = []
    cue = refers_to_earlier_contact(text)
    if cue and earlier:
        ids.append(str(earlier[0]["id"]))
        why.append(f"the caller says {cue!r}: linked to the latest ticket {earlier[0]['id']}")
    for t in earlier:
        tid = str(t["id"])
        if tid in ids:
            continue
        if order_id and t.get("order_id") == order_id:
            ids.append(tid)
            why.append(f"same order {order_id}: {tid}")
        elif t.get("intent") == intent:
            ids.append(tid)
            why.append(f"same caller, same intent {intent}: {tid}")
    return ids[:limit], why[:limit]


def missing_slots(intent: str, slots: Mapping[str, Any] | None, policy: Policy) -> tuple[str, ...]:
    """The slots a ticket of ``intent`` needs (policy ``required_slots``) that ``slots`` lacks or leaves empty."""
    rule = policy.rule(intent)
    slots = slots or {}
    return tuple(s for s in rule.required_slots if slots.get(s) in (None, "", [], {}))
