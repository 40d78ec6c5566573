"""The SLA scheduler: escalation steps carried out exactly once, and the loop that runs it with the outbox relay.

Each ticket gets one ``escalations`` row per step of its SLA chain when it is created (``Store.finish``, same
transaction), moved when its priority changes (the "reprioritize" event). :func:`run_due` carries out the steps due
at ``now``: per step one transaction marks it done with ``UPDATE ... WHERE done_at IS NULL`` (the row count decides
which worker did it; UNIQUE(ticket_id, level) keeps one row per step), adds an "escalate" event (to whom, level,
``automatic: true``) to the ticket's history, sets it escalated and writes a "ticket.escalated" outbox row. A
resolved or closed ticket never escalates: its due steps are marked "cancelled". Nothing lives only in memory, so
any number of workers may run this concurrently and a restart resumes from the database.

Time is always passed in (``now``); the background loop reads a :class:`Clock` (real UTC time plus
``HOTLINE_CLOCK_OFFSET_S``; tests move it with :meth:`Clock.advance`).

Environment: ``HOTLINE_SCHEDULER_INTERVAL_S`` (default 30; 0 turns the in-service loop off, e.g. when cron runs
``hotline escalations run``), ``HOTLINE_CLOCK_OFFSET_S`` (default 0).
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

from models.ticket import Ticket
from serving.store import EscalationDone, Notification

log = logging.getLogger("hotline.scheduler")
DEFAULT_INTERVAL_S = 30.0


class Clock:
    """The scheduler's time: the real UTC time plus an offset (``HOTLINE_CLOCK_OFFSET_S``), movable in tests."""

    def __init__(self, offset_s: float = 0.0):
        self.offset = timedelta(seconds=float(offset_s))
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls) -> "Clock":
        raw = os.environ.get("HOTLINE_CLOCK_OFFSET_S", "").strip()
        try:
            return cls(float(raw) if raw else 0.0)
        except ValueError:
            raise ValueError(f"HOTLINE_CLOCK_OFFSET_S={raw!r}: expected seconds (a number)") from None

    def now(self) -> datetime:
        with self._lock:
            return datetime.now(timezone.utc) + self.offset

    def advance(self, seconds: float = 0.0, **kw: float) -> datetime:
        """Move the clock forward (``advance(hours=2)`` works too); returns the new now."""
        with self._lock:
            self.offset += timedelta(seconds=seconds, **kw)
        return self.now()

    def set(self, when: datetime) -> None:
        """Make ``now()`` return ``when`` at this moment (and run on from there)."""
        if when.tzinfo is None:
            raise ValueError("Clock.set needs a timezone-aware datetime")
        with self._lock:
            self.offset = when - datetime.now(timezone.utc)


def escalation_notifications(ticket: Ticket, step: dict[str, Any]) -> list[Notification]:
    """The outbox row of one automatic escalation: "ticket.escalated" addressed to whom it climbed to."""
    from serving.outbox import ticket_notification

    now = ticket.updated_at or datetime.now(timezone.utc)
    return [ticket_notification("ticket.escalated", ticket, now, target=step["to"],
                                escalation={"level": step["level"], "to": step["to"], "automatic": True,
                                            "due_at": step["due_at"]})]


def run_due(store: Any, now: datetime, *, limit: int = 500, actor: str = "system") -> list[EscalationDone]:
    """Carry out every escalation step due at ``now`` (see the module docstring); returns what this call did
    (steps another worker did at the same moment are not in the list)."""
    if now.tzinfo is None:
        raise ValueError("run_due needs a timezone-aware now (UTC)")
    done = []
    for esc_id in store.pending_escalations(now, limit=limit):
        got = store.apply_escalation(esc_id, now, actor=actor, notify=escalation_notifications)
        if got is not None:
            done.append(got)
            log.info("ticket %s: escalation level %d to %s %s", got.ticket_id, got.level, got.to, got.outcome)
    return done


class PeriodicThread:
    """``tick()`` every ``interval_s`` on a daemon thread named ``thread_name``; an exception is logged and kept in
    ``last_error`` and the next tick retries (a database hiccup must not end the loop). Subclasses define ``tick``."""

    thread_name = "hotline-periodic"

    def __init__(self, interval_s: float):
        self.interval_s = float(interval_s)
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> Any:  # pragma: no cover - subclasses define it
        raise NotImplementedError

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
                self.last_error = None
            except Exception as e:  # noqa: BLE001 - a database hiccup must not end the loop; the next tick retries
                self.last_error = f"{type(e).__name__}: {e}"
                log.exception("%s tick failed", self.thread_name)
            self._stop.wait(self.interval_s)

    def start(self):
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return bool(self._thread and self._thread.is_alive())


class Scheduler(PeriodicThread):
    """Every ``interval_s``: :func:`run_due` then the outbox relay, on a daemon thread. Start one per worker
    process; correctness comes from the database, so several may run at once."""

    thread_name = "hotline-scheduler"

    def __init__(self, store: Any, clock: Clock | None = None, interval_s: float | None = None, relay: Any = None):
        super().__init__(scheduler_interval() if interval_s is None else float(interval_s))
        self.store = store
        self.clock = clock or Clock.from_env()
        self.relay = relay
        self.last_run: datetime | None = None
        self.ticks = 0

    def tick(self) -> list[EscalationDone]:
        """One round (also what tests and ``hotline escalations run`` call)."""
        done = run_due(self.store, self.clock.now())
        if self.relay is not None:
            self.relay.run_once(self.clock.now())
        self.last_run = self.clock.now()
        self.ticks += 1
        return done

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        if self.relay is not None:
            self.relay.close()

    def status(self) -> dict[str, Any]:
        return {"running": self.running, "interval_s": self.interval_s,
                "ticks": self.ticks, "last_run": self.last_run.isoformat() if self.last_run else None,
                "last_error": self.last_error, "webhooks": len(self.relay.webhooks) if self.relay else 0}


def scheduler_interval() -> float:
    raw = os.environ.get("HOTLINE_SCHEDULER_INTERVAL_S", "").strip()
    try:
        value = float(raw) if raw else DEFAULT_INTERVAL_S
    except ValueError:
        raise ValueError(f"HOTLINE_SCHEDULER_INTERVAL_S={raw!r}: expected seconds (0 turns the loop off)") from None
    if value < 0:
        raise ValueError(f"HOTLINE_SCHEDULER_INTERVAL_S={raw!r}: must be >= 0 (0 turns the loop off)")
    return value


def start_background(store: Any, clock: Clock | None = None) -> Scheduler | None:
    """The service's scheduler thread (escalations and the outbox relay), or None when
    ``HOTLINE_SCHEDULER_INTERVAL_S=0`` (cron runs ``hotline escalations run`` and ``hotline outbox relay``)."""
    interval = scheduler_interval()
    if interval == 0:
        log.info("scheduler off (HOTLINE_SCHEDULER_INTERVAL_S=0)")
        return None
    from serving.outbox import Relay

    return Scheduler(store, clock or Clock.from_env(), interval, relay=Relay(store)).start()
