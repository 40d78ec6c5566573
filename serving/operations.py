"""Ticket operations wired into the store and the service (issue 12): quality checks on every call, complaint
hotspots with spike notifications, satisfaction requests and CSAT, and the retention of recordings.

- Quality checks: :func:`qa_record` runs :func:`models.qa.check_call` over a new call ticket's transcript (the
  ``agent`` channel against ``models/policies/qa.yaml``); ``Runtime.create_ticket`` passes the result to
  ``Store.finish``, so it is stored in the ticket's own transaction (a ticket is never without its check, and a retry
  returns both). :func:`qa_summary` is what the ticket response carries (``Ticket.qa``).
- Hotspots: :func:`check_hotspots` reads the stored complaints of the span, runs :func:`models.hotspots.hotspots`
  and announces each spike once (``Store.record_hotspot_alerts``: a ``hotspot_alerts`` row, UNIQUE per (dimension,
  key, window, window start), and a "hotspot.spike" outbox row with a deterministic event id).
- Satisfaction: :func:`satisfaction_request` is the "ticket.satisfaction_request" outbox row ``Store.add_event``
  writes when a ticket is resolved; the score comes back as a ``satisfaction`` event; :func:`csat_report`.
- Retention: :func:`purge` deletes the audio of recordings older than the retention period.
- :class:`OperationsScheduler`: a daemon thread that runs :func:`check_hotspots` every ``HOTLINE_HOTSPOT_CHECK_S`` and
  :func:`purge` once a day (``hotline purge`` for cron).

Environment:
  HOTLINE_RECORDING_RETENTION_DAYS  days a recording is kept (default 90; "forever" keeps them)
  HOTLINE_HOTSPOT_WINDOW            the window the scheduler checks hotspots over (default 1h; 15m, 1d, ...)
  HOTLINE_HOTSPOT_HISTORY           previous windows compared against (default 6)
  HOTLINE_HOTSPOT_CHECK_S           how often the scheduler checks, s (default 300)
  HOTLINE_PURGE_EVERY_S             how often the scheduler purges, s (default 86400)
  HOTLINE_PUBLIC_URL                the service's public base URL, for the satisfaction callback's ``url``
  HOTLINE_SCHEDULER_INTERVAL_S      the loop's tick (serving/escalation.py; 0 turns the loop off)
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

from models.ticket import Ticket
from serving.escalation import PeriodicThread
from serving.store import Notification, QaRecord

log = logging.getLogger("hotline.operations")
NAMESPACE = uuid.UUID("5b0b6c39-8f3e-4e0e-9d34-2f6c6e7a1c12")  # hotspot.spike event ids (uuid5)


# -- configuration ----------------------------------------------------------------------------------------------
def _float_env(name: str, default: float, minimum: float = 0.0) -> float:
    raw = (os.environ.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected a number") from None
    if value < minimum:
        raise ValueError(f"{name}={raw!r}: must be >= {minimum:g}")
    return value


@dataclass(frozen=True)
class OperationsConfig:
    retention_days: float | None = 90.0  # None: recordings are kept for ever
    hotspot_window: str = "1h"
    hotspot_history: int = 6
    hotspot_check_s: float = 300.0
    purge_every_s: float = 86400.0
    public_url: str | None = None

    @classmethod
    def from_env(cls) -> "OperationsConfig":
        from models.hotspots import format_window, parse_window

        raw = (os.environ.get("HOTLINE_RECORDING_RETENTION_DAYS") or "").strip().lower()
        retention: float | None
        if raw in ("forever", "never", "none"):
            retention = None
        else:
            retention = _float_env("HOTLINE_RECORDING_RETENTION_DAYS", 90.0)
        window_raw = os.environ.get("HOTLINE_HOTSPOT_WINDOW") or "1h"
        try:
            window = format_window(parse_window(window_raw))
        except ValueError as e:
            raise ValueError(f"HOTLINE_HOTSPOT_WINDOW: {e}") from None
        history = int(_float_env("HOTLINE_HOTSPOT_HISTORY", 6, minimum=1))
        return cls(retention_days=retention, hotspot_window=window, hotspot_history=history,
                   hotspot_check_s=_float_env("HOTLINE_HOTSPOT_CHECK_S", 300.0, minimum=1.0),
                   purge_every_s=_float_env("HOTLINE_PURGE_EVERY_S", 86400.0, minimum=1.0),
                   public_url=(os.environ.get("HOTLINE_PUBLIC_URL") or "").strip().rstrip("/") or None)


def encryption_status(store: Any) -> dict[str, Any]:
    """What ``/readyz`` says about encryption at rest."""
    if getattr(store, "cipher", None) is not None:
        return {"at_rest": True, "recordings": "stored encrypted", "transcripts": "stored encrypted"}
    return {"at_rest": False, "recordings": "not stored (no HOTLINE_ENCRYPTION_KEY)",
            "transcripts": "stored in plaintext (set HOTLINE_ENCRYPTION_KEY to encrypt them)"}


# -- quality checks ---------------------------------------------------------------------------------------------
def qa_record(ticket: Ticket, agent: str | None = None, rules: Any = None) -> QaRecord | None:
    """The quality check of a call ticket (its transcript segments), or None for a text message or a call with no
    transcript. ``agent``: the agent on the call (the platform's ``agent`` field, else the ticket's assignee)."""
    from models.qa import check_call

    if ticket.channel != "phone" or not ticket.transcript:
        return None
    try:
        result = check_call(ticket.transcript, rules)
    except ValueError as e:  # no usable segments
        log.info("ticket %s: no quality check (%s)", ticket.id, e)
        return None
    return QaRecord(result=result.to_dict(), agent=(agent or ticket.assignee or None))


def qa_summary(result: Mapping[str, Any], agent: str | None = None) -> dict[str, Any]:
    """What a ticket carries of its check: score, passed, and each violation's rule, evidence and time (no turn
    text: the evidence is the phrase or measure found)."""
    return {"score": result["score"], "passed": result["passed"], "agent": agent,
            "rules_version": result.get("rules_version"),
            "violations": [{k: v.get(k) for k in ("rule", "severity", "evidence", "start", "end")}
                           for v in result.get("violations") or ()]}


def with_qa(ticket: Ticket, record: QaRecord | None) -> Ticket:
    if record is None:
        return ticket
    return ticket.model_copy(update={"qa": qa_summary(record.result, record.agent)})


def check_segments(segments: Any, rules: Any = None) -> dict[str, Any]:
    """``POST /qa``: one call's check on its own (nothing stored). ValueError for unusable segments."""
    from models.qa import check_call

    if not isinstance(segments, list) or not segments:
        raise ValueError('send "segments": a non-empty list of {"channel": "agent"|"customer"|"mono", "start": s, '
                         '"end": s, "text": "..."}')
    return check_call(segments, rules).to_dict()


def qa_analytics(store: Any, *, since: datetime | None = None, until: datetime | None = None,
                 agent: str | None = None, limit: int = 500) -> dict[str, Any]:
    """Per-agent (``models.qa.agent_scores``) and per-call scores of the stored checks."""
    from models.qa import agent_scores

    rows = store.qa_results(since=since, until=until, agent=agent)
    by_agent: dict[str, list] = {}
    for r in rows:
        by_agent.setdefault(r["agent"] or "(unknown)", []).append(r["result"])
    scores = agent_scores(by_agent)
    agents = sorted(({"agent": a.agent, "calls": a.calls, "mean_score": a.mean_score, "passed": a.passed,
                      "failed": a.failed, "violations": dict(a.violations)} for a in scores.values()),
                    key=lambda a: (a["mean_score"], a["agent"]))
    calls = [{"ticket_id": r["ticket_id"], "agent": r["agent"], "score": r["score"], "passed": r["passed"],
              "rules_version": r["rules_version"], "created_at": r["created_at"].isoformat(),
              "violations": qa_summary(r["result"])["violations"]} for r in rows[:limit]]
    return {"calls_checked": len(rows), "agents": agents, "calls": calls}


# -- text channels ----------------------------------------------------------------------------------------------
def message_record(channel: str, raw: str, caller: str | None) -> tuple[str, str | None]:
    """(the text the pipeline reads, the caller) of a message sent as ``raw`` on ``channel``: an email's raw RFC 822
    is parsed (subject and body without quoted replies; its sender is the caller when none is given), chat and
    WeChat are read as text (``models.messages.message_text``). A phone call's text is returned as it is.
    ValueError when the message has no text left."""
    from models.messages import TEXT_CHANNELS, message_text, parse_email

    if channel not in TEXT_CHANNELS:
        return raw, caller
    if channel == "email" and caller is None:
        try:
            sender = parse_email(raw).sender
        except ValueError:  # not raw RFC 822: the body as typed, no sender
            sender = None
        caller = sender.strip().lower() if sender else None
    return message_text(channel, raw), caller


# -- satisfaction -----------------------------------------------------------------------------------------------
def satisfaction_request(ticket: Ticket, now: datetime, public_url: str | None = None) -> Notification:
    """The "ticket.satisfaction_request" outbox row of a resolved ticket: what an SMS or chat platform needs to ask
    the customer (the ticket id, the platform's call id, the channel, the masked caller) and where the score goes
    back (a ``satisfaction`` event, 1..5, on ``POST /tickets/{id}/events``; a platform key may post it)."""
    from serving.outbox import ticket_notification

    base = public_url if public_url is not None else (os.environ.get("HOTLINE_PUBLIC_URL") or "").strip().rstrip("/")
    path = f"/tickets/{ticket.id}/events"
    callback = {"method": "POST", "path": path, "url": f"{base}{path}" if base else None,
                "body": {"type": "satisfaction", "score": "<1..5>"}, "scale": [1, 5]}
    return ticket_notification("ticket.satisfaction_request", ticket, now, target="customer",
                               call_id=ticket.call_id, callback=callback)


def _csat(scores: list[int]) -> dict[str, Any]:
    return {"responses": len(scores), "mean": round(sum(scores) / len(scores), 3),
            "satisfied_share": round(sum(1 for s in scores if s >= 4) / len(scores), 3)}


def csat_report(store: Any, *, since: datetime | None = None, until: datetime | None = None) -> dict[str, Any]:
    """CSAT: the mean score (1..5) and the share of 4-5 scores, overall and by queue, intent and agent."""
    rows = store.csat_rows(since=since, until=until)
    out: dict[str, Any] = {"overall": _csat([r["score"] for r in rows]) if rows else {"responses": 0}}
    for dim in ("queue", "intent", "agent"):
        groups: dict[str, list[int]] = {}
        for r in rows:
            groups.setdefault(r[dim] or "(unknown)", []).append(r["score"])
        out[f"by_{dim}"] = {k: _csat(v) for k, v in sorted(groups.items())}
    return out


# -- hotspots ---------------------------------------------------------------------------------------------------
def spike_notification(alert: Any, window_start: datetime, window: str, now: datetime) -> Notification:
    """A "hotspot.spike" outbox row to supervisors; its event id is a uuid5 of (dimension, key, window, window
    start), so receivers de-duplicate it too."""
    from serving.outbox import event_notification

    eid = str(uuid.uuid5(NAMESPACE, f"{alert.dimension}|{alert.key}|{window}|{window_start.isoformat()}"))
    note = event_notification("hotspot.spike", {
        "dimension": alert.dimension, "key": alert.key, "count": alert.count, "baseline": alert.baseline,
        "p_value": alert.p_value, "test": alert.test, "window": window, "window_start": window_start.isoformat(),
    }, now, target="supervisor")
    return Notification(kind=note.kind, payload={**note.payload, "event_id": eid}, target=note.target, event_id=eid)


def check_hotspots(store: Any, now: datetime, window: str = "1h", history: int = 6, *, alpha: float = 0.01,
                   notify: bool = True) -> dict[str, Any]:
    """The hotspot report (``HotspotReport.to_dict()``, callers in clear: mask by role) of the window ending at
    ``now`` over the stored complaints, with ``notified``: the spikes announced by this call (each spike once)."""
    from models.hotspots import hotspots, parse_window

    w = parse_window(window)
    tickets = store.hotspot_tickets(now - w * (int(history) + 1), now)
    report = hotspots(tickets, now=now, window=w, history=history, alpha=alpha)
    notes: list[Notification] = []
    if notify and report.alerts:
        notes = store.record_hotspot_alerts(report, now,
                                            lambda a, start: spike_notification(a, start, report.window, now))
        for n in notes:
            log.info("hotspot spike: %s %s (%s complaints in %s)", n.payload["dimension"], n.payload["key"],
                     n.payload["count"], report.window)
    out = report.to_dict()
    out["notified"] = [{"dimension": n.payload["dimension"], "key": n.payload["key"], "event_id": n.event_id}
                       for n in notes]
    return out


def mask_report(report: dict[str, Any]) -> dict[str, Any]:
    from models.ticket import mask_phone

    return {**report, "repeat_complainants": [{**r, "caller": mask_phone(r["caller"])}
                                              for r in report.get("repeat_complainants") or ()]}


# -- retention --------------------------------------------------------------------------------------------------
def purge(store: Any, now: datetime, retention_days: float | None) -> list[str]:
    """Delete the audio of recordings due at ``now``; returns their tickets."""
    done = store.purge_recordings(now, retention_days)
    if done:
        log.info("purged %d recordings older than %s days", len(done), retention_days)
    return done


# -- the scheduler ----------------------------------------------------------------------------------------------
class OperationsScheduler(PeriodicThread):
    """Hotspot checks every ``hotspot_check_s`` and purges every ``purge_every_s`` (the first of each at start), on
    a daemon thread ticking every ``interval_s``. Several may run (one per worker): alerts are announced once by the
    database's unique constraint, and a purge is an idempotent UPDATE."""

    thread_name = "hotline-operations"

    def __init__(self, store: Any, clock: Any, config: OperationsConfig | None = None, interval_s: float = 30.0):
        super().__init__(interval_s)
        self.store, self.clock = store, clock
        self.config = config or OperationsConfig.from_env()
        self.last_hotspots: datetime | None = None
        self.last_purge: datetime | None = None
        self.alerts = 0
        self.purged = 0

    def tick(self) -> dict[str, int]:
        now = self.clock.now()
        done = {"alerts": 0, "purged": 0}
        if self.last_hotspots is None or (now - self.last_hotspots).total_seconds() >= self.config.hotspot_check_s:
            rep = check_hotspots(self.store, now, self.config.hotspot_window, self.config.hotspot_history)
            done["alerts"] = len(rep["notified"])
            self.last_hotspots = now
        if self.last_purge is None or (now - self.last_purge).total_seconds() >= self.config.purge_every_s:
            done["purged"] = len(purge(self.store, now, self.config.retention_days))
            self.last_purge = now
        self.alerts += done["alerts"]
        self.purged += done["purged"]
        return done

    def status(self) -> dict[str, Any]:
        c = self.config
        return {"running": self.running, "hotspot_window": c.hotspot_window,
                "hotspot_check_s": c.hotspot_check_s, "retention_days": c.retention_days,
                "last_hotspots": self.last_hotspots.isoformat() if self.last_hotspots else None,
                "last_purge": self.last_purge.isoformat() if self.last_purge else None,
                "alerts": self.alerts, "purged": self.purged, "last_error": self.last_error}


def start_background(store: Any, clock: Any) -> OperationsScheduler | None:
    """The service's operations thread, or None when ``HOTLINE_SCHEDULER_INTERVAL_S=0`` (cron runs ``hotline
    purge``; hotspots are then checked when ``GET /analytics/hotspots`` is asked)."""
    from serving.escalation import scheduler_interval

    interval = scheduler_interval()
    if interval == 0:
        return None
    return OperationsScheduler(store, clock, OperationsConfig.from_env(), interval).start()


def parse_when(value: str | None, name: str = "--now") -> datetime | None:
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} {value!r} is not an ISO-8601 time (e.g. 2026-12-01T10:00:00+00:00)") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


__all__ = ["OperationsConfig", "OperationsScheduler", "check_hotspots", "check_segments", "csat_report",
           "encryption_status", "mask_report", "purge", "qa_analytics", "qa_record", "qa_summary",
           "satisfaction_request", "spike_notification", "start_background", "with_qa", "parse_when"]
