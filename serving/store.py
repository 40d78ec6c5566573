"""The service's store: tickets, their events, in-flight creations, customers, API keys and the audit log.

SQLAlchemy 2 ORM over SQLite (default, ``var/hotline.db``) or PostgreSQL (``postgresql+psycopg://``). All SQL of
the service lives here; the schema changes only through the Alembic migrations in ``serving/migrations``
(:meth:`Store.upgrade`). One session and one transaction per operation.

Idempotent ticket creation (``POST /tickets``) is a claim on the ``call_id`` held in the database, never in memory:

    got = store.claim(call_id, content_hash)      # Ticket: a retry (200); raises IdempotencyConflict (422),
    if isinstance(got, Ticket): ...               #   CreationInFlight (409: another request is processing it)
    try: ticket = process(...)                    # the slow part (models)
    except BaseException: store.abandon(got); raise
    ticket = store.finish(got, ticket, actor=key.name, created_by_key=key.id)   # one transaction

A claim whose lease expired, or whose owner process on this host is dead (pid plus its start time, so a recycled
pid is not mistaken for the owner), is taken over: after a crash and restart a retry succeeds at once.

``finish`` also writes one ``escalations`` row per step of the ticket's SLA chain, the ticket's outbox rows
(``notifications``), its quality-check result (``qa_results``, :class:`QaRecord`) and its recording (``recordings``,
encrypted) in the ticket's transaction. ``pending_escalations``/``apply_escalation`` carry the steps out
exactly once (``serving/escalation.py``); ``claim_outbox``/``record_delivery`` lease outbox rows to the webhook relay
(``serving/outbox.py``); ``list_outbox``/``retry_outbox`` serve admins. ``list_tickets(overdue=True, now=...)``.

Operations (issue 12; ``serving/operations.py`` drives them): ``qa_results``/``qa_result`` (quality checks),
``hotspot_tickets``/``record_hotspot_alerts`` (complaints for :func:`models.hotspots.hotspots`; one alert row and one
"hotspot.spike" outbox row per spike), ``csat_rows`` (satisfaction scores with queue, intent and agent), and
``purge_recordings``. Resolving a ticket writes a "ticket.satisfaction_request" outbox row in the resolve's transaction.

Encryption at rest: with a :class:`serving.crypto.Cipher` (``Store(cipher=...)``; the service passes
``Cipher.from_env(required=False)``), recordings are stored as Fernet tokens, and the transcript's texts, a message's
``text`` and the quoted turns of quality-check evidence are stored as Fernet tokens inside the JSON; reads decrypt
them. Without a cipher no recording is stored at all and transcripts are stored as plaintext (the service says so at
start-up and in ``/readyz``).

Environment: ``HOTLINE_DATABASE_URL`` (default ``sqlite:///<repo>/var/hotline.db``).
"""

from __future__ import annotations

import base64
import binascii
import csv
import fcntl
import json
import math
import os
import re
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from sqlalchemy import (
    JSON,
    MetaData,
    Boolean,
    DateTime,
    Float,
    LargeBinary,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    update,
    delete,
    event,
    func,
    or_,
    and_,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.types import TypeDecorator

from models.decisions import PRIORITIES
from models.ticket import EVENT_TYPES, Customer, Ticket, TicketEvent, next_status
from serving.auth import PREFIX_LEN, check_role, hash_secret, new_secret

REPO = Path(__file__).resolve().parents[1]
DEFAULT_URL = f"sqlite:///{REPO / 'var' / 'hotline.db'}"
ENV_URL = "HOTLINE_DATABASE_URL"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MAX_LIMIT = 200  # the most tickets one list page holds
MAX_LINKED = 10  # the most linked tickets a new ticket lists
RECENT_TICKETS = 5  # recent ticket ids on a customer profile
SQLITE_BUSY_MS = 30_000  # how long a SQLite writer waits for the lock before "database is locked"
PG_UPGRADE_LOCK = 0x686F746C696E65  # pg_advisory_lock key held around migrations ("hotline")
PHONE_RE = re.compile(r"^\d{5,20}$")
FINISHED = ("resolved", "closed")  # statuses that never escalate and are never overdue
OUTBOX_STATES = ("pending", "parked", "delivered", "all")
CUSTOMER_COLUMNS = ("phone", "name", "vip_level", "region")


# -- errors ------------------------------------------------------------------------------------------

class StoreError(Exception):
    """Base of the store's own errors (the service maps each to an HTTP status)."""


class IdempotencyConflict(StoreError):
    """The call_id already has a ticket made from other content (HTTP 422)."""


class CreationInFlight(StoreError):
    """Another request is creating the ticket of this call_id right now (HTTP 409 with Retry-After)."""

    def __init__(self, call_id: str, retry_after_s: int):
        super().__init__(f"call_id {call_id!r} is being processed by another request; retry in {retry_after_s} s")
        self.call_id = call_id
        self.retry_after_s = retry_after_s


class InvalidTransition(StoreError):
    """The ticket's status does not allow this event (HTTP 409)."""


class NotFound(StoreError, LookupError):
    """No ticket (or key) with that id (HTTP 404)."""


class _Undo(Exception):
    """Rolls a transaction back and carries what the operation answers instead."""

    def __init__(self, outcome: Any):
        super().__init__("rolled back")
        self.outcome = outcome


# -- records returned to callers --------------------------------------------------------------------
@dataclass(frozen=True)
class Claim:
    """This process's claim on a call_id while it turns the call into a ticket."""

    call_id: str  # the idempotency key
    content_hash: str  # models.ticket.content_hash of the submission
    owner: str  # "<hostname>:<pid>:<process start time>" of the claiming process
    claimed_at: datetime  # UTC
    expires_at: datetime  # UTC; after this anyone may take the claim over


@dataclass(frozen=True)
class KeyInfo:
    """An API key as the service sees it (never the secret)."""

    id: str  # "k_" + 16 hex
    name: str  # who or what holds it (shown in events and the audit log)
    role: str  # one of serving.auth.ROLES
    prefix: str  # the secret's first characters, to recognise it in listings
    created_at: datetime  # UTC
    revoked_at: datetime | None  # UTC; None while the key works


@dataclass(frozen=True)
class AuditEntry:
    """One line of the audit log."""

    id: int
    at: datetime  # UTC
    key_id: str | None  # None: no key (e.g. a rejected request) or the system
    key_name: str | None
    role: str | None
    action: str  # what was done or tried ("create_ticket", "read_unmasked", "keys.revoke", ...)
    ticket_id: str | None  # the ticket it concerned, if any
    detail: str  # free text


@dataclass(frozen=True)
class Notification:
    """An outbox row to write in the same transaction as the change it reports (serving/outbox.py builds them)."""

    kind: str  # "ticket.p1", "ticket.escalated", "ticket.tiered_alert", "hotspot.spike", ...
    payload: dict  # the event as receivers get it in JSON format (masked)
    ticket_id: str | None = None
    target: str | None = None  # who it is addressed to (role or contact)
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass(frozen=True)
class OutboxItem:
    """One outbox row as the relay and admins see it."""

    id: int
    event_id: str
    kind: str
    ticket_id: str | None
    target: str | None
    payload: dict
    created_at: datetime
    next_attempt_at: datetime
    attempts: int
    delivered_at: datetime | None
    parked_at: datetime | None
    last_error: str | None
    delivered_to: tuple[str, ...]  # webhook names that acknowledged it already (skipped on a retry)
    lease_token: str | None = None  # set on items the relay claimed

    @property
    def state(self) -> str:
        return "delivered" if self.delivered_at else "parked" if self.parked_at else "pending"

    def as_dict(self) -> dict:
        return {"id": self.id, "event_id": self.event_id, "kind": self.kind, "ticket_id": self.ticket_id,
                "target": self.target, "state": self.state, "attempts": self.attempts,
                "created_at": self.created_at.isoformat(), "next_attempt_at": self.next_attempt_at.isoformat(),
                "delivered_at": self.delivered_at.isoformat() if self.delivered_at else None,
                "parked_at": self.parked_at.isoformat() if self.parked_at else None,
                "last_error": self.last_error, "delivered_to": list(self.delivered_to), "payload": self.payload}


@dataclass(frozen=True)
class EscalationDone:
    """One escalation step the scheduler carried out (or cancelled: the ticket was resolved or closed)."""

    ticket_id: str
    level: int  # index in the SLA chain
    to: str
    due_at: datetime
    done_at: datetime
    outcome: str  # "escalated" or "cancelled"
    event_id: int | None = None  # the ticket event written (None when cancelled)


@dataclass(frozen=True)
class CsvRowError:
    """One bad line of a customers CSV."""

    line: int  # 1-based line number in the file (the header is line 1)
    message: str  # what is wrong and what to do


# -- column types -----------------------------------------------------------------------------------
class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps naive UTC text; it sorts correctly)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime (UTC)")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


JSONType = JSON().with_variant(JSONB(), "postgresql")


# -- the schema -------------------------------------------------------------------------------------
class Base(DeclarativeBase):
    # constraint names the migrations spell out too, so autogenerate finds no difference
    metadata = MetaData(naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    })


class TicketRow(Base):
    __tablename__ = "tickets"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # "T-" + 32 hex (time-ordered)
    call_id: Mapped[str] = mapped_column(String(200), unique=True)  # the idempotency key
    content_hash: Mapped[str] = mapped_column(String(64))  # of the submission that made the ticket
    # phone number in clear (an email's sender address for email tickets: 320 wide on PostgreSQL; SQLite does not
    # enforce lengths)
    caller: Mapped[str | None] = mapped_column(String(32).with_variant(String(320), "postgresql"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True)
    priority: Mapped[str] = mapped_column(String(4))
    intent: Mapped[str] = mapped_column(String(64))
    queue: Mapped[str] = mapped_column(String(64))
    is_complaint: Mapped[bool] = mapped_column(Boolean)
    order_id: Mapped[str | None] = mapped_column(String(64), index=True)  # slots["order_id"], to link tickets
    assignee: Mapped[str | None] = mapped_column(String(200))
    created_by_key: Mapped[str | None] = mapped_column(String(32), index=True)  # api_keys.id that created it
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # sla.due_at
    data: Mapped[dict[str, Any]] = mapped_column(JSONType)  # the full Ticket JSON (events excluded)

    __table_args__ = (Index("ix_tickets_created_id", "created_at", "id"),)


class EventRow(Base):
    __tablename__ = "ticket_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[str] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(16))  # "created" or models.ticket.EVENT_TYPES
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str | None] = mapped_column(String(200))  # key name or "system"
    data: Mapped[dict[str, Any]] = mapped_column(JSONType)


class ClaimRow(Base):
    __tablename__ = "ticket_claims"
    call_id: Mapped[str] = mapped_column(String(200), primary_key=True)  # the primary key settles races
    content_hash: Mapped[str] = mapped_column(String(64))
    owner: Mapped[str] = mapped_column(String(300))  # "<hostname>:<pid>:<start time>"
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CustomerRow(Base):
    __tablename__ = "customers"
    phone: Mapped[str] = mapped_column(String(32), primary_key=True)  # digits only
    name: Mapped[str | None] = mapped_column(String(200))
    vip_level: Mapped[int] = mapped_column(Integer, default=0)  # 0: not a VIP
    region: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApiKeyRow(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # "k_" + 16 hex
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the secret; never the secret
    prefix: Mapped[str] = mapped_column(String(PREFIX_LEN))  # first characters of the secret, for listings
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditRow(Base):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    key_id: Mapped[str | None] = mapped_column(String(32))
    key_name: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str | None] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    ticket_id: Mapped[str | None] = mapped_column(String(64), index=True)  # no FK: audit outlives tickets
    detail: Mapped[str] = mapped_column(Text, default="")


class EscalationRow(Base):
    """One step of a ticket's escalation chain (``Ticket.sla.escalations[level]``). UNIQUE(ticket_id, level) and a
    conditional ``UPDATE ... WHERE done_at IS NULL`` make each step happen exactly once across processes."""
    __tablename__ = "escalations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[str] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    level: Mapped[int] = mapped_column(Integer)  # index in the SLA chain (0: first step)
    to: Mapped[str] = mapped_column(String(200))  # policy role, e.g. "supervisor"
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # None: pending
    outcome: Mapped[str | None] = mapped_column(String(16))  # "escalated", "cancelled" (resolved/closed), "superseded"

    __table_args__ = (UniqueConstraint("ticket_id", "level", name="uq_escalations_ticket_id_level"),
                      Index("ix_escalations_pending", "done_at", "due_at"))


class OutboxRow(Base):
    """A notification written in the same transaction as the change it reports; ``serving/outbox.py`` delivers it."""
    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)  # uuid4: receivers de-duplicate by it
    kind: Mapped[str] = mapped_column(String(64))  # "ticket.p1", "ticket.escalated", "ticket.tiered_alert", ...
    ticket_id: Mapped[str | None] = mapped_column(String(64), index=True)  # no FK: notifications outlive tickets
    target: Mapped[str | None] = mapped_column(String(200))  # who it is addressed to (role or contact)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)  # the event (masked: no phone numbers in clear)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    parked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # gave up after max_attempts (admins retry)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_to: Mapped[list[str]] = mapped_column(JSONType, default=list)  # webhook names that acknowledged it
    locked_by: Mapped[str | None] = mapped_column(String(300))  # process_owner() of the relay delivering it now
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)  # its lease; after this others take over
    lease_token: Mapped[str | None] = mapped_column(String(32))  # which claim may record the outcome

    __table_args__ = (Index("ix_outbox_due", "delivered_at", "parked_at", "next_attempt_at"),)


class QaRow(Base):
    """The quality check of one ticketed call (``models.qa.check_call``), with the evidence."""
    __tablename__ = "qa_results"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[str] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), unique=True)
    agent: Mapped[str | None] = mapped_column(String(200), index=True)  # the agent on the call (None: not given)
    score: Mapped[float] = mapped_column(Float)  # 0..100
    passed: Mapped[bool] = mapped_column(Boolean)
    rules_version: Mapped[str] = mapped_column(String(64))
    result: Mapped[dict[str, Any]] = mapped_column(JSONType)  # QaResult.to_dict() (turn texts encrypted with a key)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class RecordingRow(Base):
    """A call's uploaded audio, encrypted; ``audio`` emptied and ``purged_at`` set after the retention period."""
    __tablename__ = "recordings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[str] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    audio: Mapped[bytes | None] = mapped_column(LargeBinary)  # a Fernet token of the upload; None once purged
    size_bytes: Mapped[int] = mapped_column(Integer)  # of the upload (plaintext)
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_recordings_due", "purged_at", "created_at"),)


class HotspotAlertRow(Base):
    """One complaint spike announced: UNIQUE(dimension, key, window, window_start) keeps it to one notification."""
    __tablename__ = "hotspot_alerts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dimension: Mapped[str] = mapped_column(String(16))  # intent | product | region
    key: Mapped[str] = mapped_column(String(200))
    window: Mapped[str] = mapped_column(String(16))  # e.g. "1h"
    window_start: Mapped[datetime] = mapped_column(UTCDateTime)  # the window's start, aligned down to its length
    window_end: Mapped[datetime] = mapped_column(UTCDateTime)  # the report's end (now)
    count: Mapped[int] = mapped_column(Integer)
    p_value: Mapped[float] = mapped_column(Float)
    event_id: Mapped[str] = mapped_column(String(36))  # the outbox row's event id
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("dimension", "key", "window", "window_start",
                                       name="uq_hotspot_alerts_dimension_key_window_start"),)


@dataclass(frozen=True)
class QaRecord:
    """A quality-check result to store with its ticket (``Store.finish(qa=...)``)."""

    result: dict  # models.qa.QaResult.to_dict()
    agent: str | None = None  # the agent on the call


ENCRYPTED_PLACEHOLDER = "[encrypted: set HOTLINE_ENCRYPTION_KEY to read]"


# -- helpers ----------------------------------------------------------------------------------------
def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_ticket_id() -> str:
    """``T-`` + 32 hex: 48 bits of milliseconds then 80 random bits, so ids sort by creation time (ULID-like)."""
    ms = int(time.time() * 1000) & ((1 << 48) - 1)
    return f"T-{ms:012x}{uuid.uuid4().hex[:20]}"


def _process_start(pid: int) -> str | None:
    """The start time (clock ticks since boot) of ``pid`` from /proc, None if there is no such live process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw[raw.rindex(")") + 2:].split()  # after "pid (comm) ": state is fields[0], starttime fields[19]
    if fields[0] in ("Z", "X"):  # a zombie has exited
        return None
    return fields[19]


def process_owner(pid: int | None = None) -> str:
    """``<hostname>:<pid>:<start time>`` of a process (this one by default): who holds a claim."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_process_start(pid) or '?'}"


def owner_is_dead(owner: str) -> bool:
    """True when ``owner`` is a process on this host that no longer runs (or whose pid now belongs to another
    process). Owners on other hosts are never declared dead here: their claims end when the lease expires."""
    try:
        host, pid_s, start = owner.rsplit(":", 2)
        pid = int(pid_s)
    except ValueError:
        return False
    if host != socket.gethostname():
        return False
    now_start = _process_start(pid)
    if now_start is None:
        # no /proc entry: dead, unless this system has no /proc at all (then ask the kernel about the pid)
        return True if Path("/proc/self/stat").exists() else not _pid_alive(pid)
    return start != "?" and now_start != start


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _encode_cursor(created_at: datetime, ticket_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), ticket_id]).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, ticket_id = json.loads(raw)
        when = datetime.fromisoformat(at)
        if when.tzinfo is None or not isinstance(ticket_id, str):
            raise ValueError
        return when, ticket_id
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError(f"cursor {cursor!r} is not one this service made: pass the next_cursor of the previous page "
                         "unchanged, or leave it out for the first page") from None


def resolve_url(url: str | None = None) -> str:
    """The database URL: ``url``, else ``$HOTLINE_DATABASE_URL``, else SQLite at ``<repo>/var/hotline.db``.
    ``postgresql://`` means psycopg 3 (``postgresql+psycopg://``), the driver this project installs."""
    chosen = url or os.environ.get(ENV_URL) or DEFAULT_URL
    if chosen.startswith(("postgresql://", "postgres://")):
        chosen = "postgresql+psycopg://" + chosen.split("://", 1)[1]
    return chosen


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError(f"{name}={value.isoformat()} has no timezone: pass an aware datetime (e.g. ...+00:00)")
    return value


# -- the store --------------------------------------------------------------------------------------
def _same_caller_or_order(caller: str | None, order_id: str | None, exclude_call_id: str | None) -> list | None:
    """WHERE clauses for tickets of ``caller`` or about ``order_id`` (not the call ``exclude_call_id``); None when
    there is neither a caller nor an order id to match."""
    conds = ([TicketRow.caller == caller] if caller else []) + ([TicketRow.order_id == order_id] if order_id else [])
    if not conds:
        return None
    return [or_(*conds)] + ([TicketRow.call_id != exclude_call_id] if exclude_call_id is not None else [])


class Store:
    """All persistence of the service. Thread-safe (one session per call); several processes may share a database."""

    def __init__(self, url: str | None = None, *, echo: bool = False, policy: Any = None, cipher: Any = None):
        self.url = resolve_url(url)
        self.policy = policy  # models.decisions.Policy for recomputed deadlines (None: the default policy file)
        self.cipher = cipher  # serving.crypto.Cipher: recordings and transcripts encrypted at rest (None: plaintext)
        try:
            parsed = make_url(self.url)
        except ArgumentError as e:
            raise ValueError(f"database URL {self.url!r} cannot be parsed ({e}): use sqlite:///PATH or "
                             f"postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB (argument or ${ENV_URL})") from None
        self.backend = parsed.get_backend_name()
        if self.backend not in ("sqlite", "postgresql"):
            raise ValueError(f"database URL {parsed.render_as_string()!r}: the store supports sqlite:///PATH and "
                             "postgresql+psycopg://..., not " + self.backend)
        self.sqlite_path: Path | None = None
        if self.backend == "sqlite":
            if not parsed.database or parsed.database == ":memory:":
                raise ValueError("an in-memory SQLite database is not shared between connections or processes: "
                                 "use sqlite:///PATH/TO/FILE.db")
            self.sqlite_path = Path(parsed.database).expanduser().resolve()
            self.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(
                parsed.set(database=str(self.sqlite_path)), echo=echo,
                connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_MS / 1000},
            )
            _sqlite_listeners(self.engine)
        else:
            self.engine = create_engine(parsed, echo=echo, pool_pre_ping=True)
        # transactions that write: BEGIN IMMEDIATE on SQLite (no read-then-upgrade deadlocks); plain on PostgreSQL
        self._writer = self.engine.execution_options(hotline_write=True)

    # -- lifecycle
    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _read(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def _write(self) -> Session:
        return Session(self._writer, expire_on_commit=False)

    # -- schema
    def alembic_config(self):
        """An Alembic Config for this database that works from any working directory."""
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.set_main_option("sqlalchemy.url", self.engine.url.render_as_string(hide_password=False)
                            .replace("%", "%%"))
        return cfg

    def upgrade(self, revision: str = "head") -> None:
        """``alembic upgrade head``. Safe when several processes start at once: PostgreSQL takes an advisory lock
        around it; SQLite takes a file lock beside the database and retries while the database is locked."""
        from alembic import command

        cfg = self.alembic_config()
        if self.backend == "postgresql":
            with self.engine.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": PG_UPGRADE_LOCK})
                conn.commit()
                try:
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, revision)
                    conn.commit()
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PG_UPGRADE_LOCK})
                    conn.commit()
            return
        assert self.sqlite_path is not None
        lock_path = self.sqlite_path.with_name(self.sqlite_path.name + ".migrate.lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                for attempt in range(20):
                    try:
                        with self.engine.connect() as conn:
                            cfg.attributes["connection"] = conn
                            command.upgrade(cfg, revision)
                            conn.commit()
                        return
                    except OperationalError as e:
                        if "locked" not in str(e) or attempt == 19:
                            raise
                        time.sleep(0.1 * (attempt + 1))
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def current_revision(self) -> str | None:
        """The Alembic revision the database is at (None: never upgraded)."""
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def head_revision(self) -> str:
        """The newest revision in serving/migrations."""
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(self.alembic_config()).get_current_head()

    # -- idempotent ticket creation
    def claim(self, call_id: str, content_hash: str, lease_s: float = 120.0) -> Claim | Ticket:
        """Claim ``call_id`` for creating its ticket, or return the ticket a same-content retry already has.

        Raises IdempotencyConflict (a ticket from other content exists) or CreationInFlight (another live
        request holds the claim). A claim past its lease, or held by a dead process of this host, is taken over."""
        if not call_id or not isinstance(call_id, str):
            raise ValueError("call_id is required: the platform's id of the call or message")
        if lease_s <= 0:
            raise ValueError(f"lease_s={lease_s}: must be positive (seconds a claim holds before others take over)")
        owner = process_owner()
        for _ in range(5):
            now = utcnow()
            mine = Claim(call_id, content_hash, owner, now, now + timedelta(seconds=lease_s))
            try:
                with self._write() as s, s.begin():
                    s.add(ClaimRow(call_id=call_id, content_hash=content_hash, owner=owner, claimed_at=now,
                                   expires_at=mine.expires_at))
                    s.flush()
                    row = s.scalar(select(TicketRow).where(TicketRow.call_id == call_id))
                    if row is not None:  # finished meanwhile (or long ago): no claim; roll the insert back
                        try:
                            outcome: Ticket | StoreError = self._same_content(row, content_hash)
                        except IdempotencyConflict as e:
                            outcome = e
                        raise _Undo(outcome)
                return mine
            except _Undo as undo:
                if isinstance(undo.outcome, StoreError):
                    raise undo.outcome from None
                return undo.outcome
            except IntegrityError:
                pass
            with self._write() as s, s.begin():  # the claim exists: live, stale, or finished just now
                row = s.scalar(select(TicketRow).where(TicketRow.call_id == call_id))
                if row is not None:
                    return self._same_content(row, content_hash)
                held = s.get(ClaimRow, call_id)
                if held is None:
                    continue  # released between our insert and this look: try again
                if held.expires_at > now and not owner_is_dead(held.owner):
                    left = (held.expires_at - now).total_seconds()
                    raise CreationInFlight(call_id, max(1, min(10, math.ceil(left))))
                s.execute(delete(ClaimRow).where(ClaimRow.call_id == call_id, ClaimRow.owner == held.owner,
                                                 ClaimRow.claimed_at == held.claimed_at))
        raise CreationInFlight(call_id, 1)

    def _same_content(self, row: TicketRow, content_hash: str) -> Ticket:
        if row.content_hash != content_hash:
            raise IdempotencyConflict(
                f"call_id {row.call_id!r} already made ticket {row.id} from other content: send the same audio or "
                "text, caller and channel to get that ticket again, or use a new call_id for a new call")
        return self._ticket(row, events=None)

    def finish(self, claim: Claim, ticket: Ticket, actor: str, *, created_by_key: str | None = None,
               notifications: Sequence[Notification] = (), qa: QaRecord | None = None,
               recording: bytes | None = None) -> Ticket:
        """Store ``ticket`` (with its "created" event, one ``escalations`` row per step of ``ticket.sla``, the
        outbox rows of ``notifications``, its quality check ``qa`` and its ``recording``) and release ``claim``, in one
        transaction. The recording is stored encrypted, and only when the store has a cipher (without one it is not
        kept at all). If the call_id got a ticket meanwhile (a takeover raced us), the stored one is returned (same
        content) or IdempotencyConflict."""
        if ticket.call_id != claim.call_id:
            raise ValueError(f"ticket.call_id {ticket.call_id!r} is not the claimed call_id {claim.call_id!r}")
        data = self._seal_ticket(ticket.model_copy(update={"events": None}).model_dump(mode="json"))
        created = ticket.created_at
        try:
            with self._write() as s, s.begin():
                s.add(TicketRow(
                    id=ticket.id, call_id=ticket.call_id, content_hash=claim.content_hash, caller=ticket.caller,
                    channel=ticket.channel, status=ticket.status, priority=ticket.priority, intent=ticket.intent,
                    queue=ticket.queue, is_complaint=ticket.is_complaint, order_id=ticket.slots.get("order_id"),
                    assignee=ticket.assignee, created_by_key=created_by_key, created_at=created,
                    updated_at=ticket.updated_at or created, due_at=ticket.sla.due_at, data=data,
                ))
                s.flush()
                s.add(EventRow(ticket_id=ticket.id, type="created", at=created, actor=actor,
                               data={"call_id": ticket.call_id}))
                for level, step in enumerate(ticket.sla.escalations):
                    s.add(EscalationRow(ticket_id=ticket.id, level=level, to=step.to, due_at=step.at))
                self._add_notifications(s, notifications, created)
                if qa is not None:
                    r = qa.result
                    s.add(QaRow(ticket_id=ticket.id, agent=(qa.agent or None), score=float(r["score"]),
                                passed=bool(r["passed"]), rules_version=str(r.get("rules_version") or "")[:64],
                                result=self._seal_qa(r), created_at=created))
                if recording is not None and self.cipher is not None:
                    s.add(RecordingRow(ticket_id=ticket.id, created_at=created, audio=self.cipher.encrypt(recording),
                                       size_bytes=len(recording), purged_at=None))
                s.execute(delete(ClaimRow).where(ClaimRow.call_id == claim.call_id, ClaimRow.owner == claim.owner))
        except IntegrityError:
            with self._write() as s, s.begin():
                s.execute(delete(ClaimRow).where(ClaimRow.call_id == claim.call_id, ClaimRow.owner == claim.owner))
                row = s.scalar(select(TicketRow).where(TicketRow.call_id == claim.call_id))
                if row is None:  # not the call_id: the ticket id itself collided
                    raise ValueError(f"ticket id {ticket.id!r} is taken: make ids with new_ticket_id()") from None
                return self._same_content(row, claim.content_hash)
        got = self.get_ticket(ticket.id)
        assert got is not None
        return got

    def abandon(self, claim: Claim) -> None:
        """Release ``claim`` without a ticket (processing failed): a retry may start over at once."""
        with self._write() as s, s.begin():
            s.execute(delete(ClaimRow).where(ClaimRow.call_id == claim.call_id, ClaimRow.owner == claim.owner))

    # -- encryption at rest
    def _seal(self, value: Any) -> Any:
        if self.cipher is None or not isinstance(value, str) or not value:
            return value
        return self.cipher.encrypt_text(value).decode("ascii")

    def _open(self, value: Any) -> Any:
        from serving.crypto import DecryptionError, looks_encrypted

        if not isinstance(value, str) or not looks_encrypted(value):
            return value
        if self.cipher is None:
            return ENCRYPTED_PLACEHOLDER
        try:
            return self.cipher.decrypt_text(value.encode("ascii"))
        except DecryptionError as e:  # a wrong or rotated-out key: the rest of the ticket is still readable
            import logging

            logging.getLogger("hotline.store").warning("a stored text could not be decrypted: %s", e)
            return ENCRYPTED_PLACEHOLDER

    def _seal_ticket(self, data: dict) -> dict:
        """The ticket JSON as stored: the transcript's texts and a message's text encrypted (with a cipher)."""
        if self.cipher is None:
            return data
        data = dict(data)
        data["transcript"] = [{**seg, "text": self._seal(seg.get("text"))} for seg in data.get("transcript") or ()]
        data["text"] = self._seal(data.get("text"))
        return data

    def _open_ticket(self, data: dict) -> dict:
        data = dict(data)
        data["transcript"] = [{**seg, "text": self._open(seg.get("text"))} for seg in data.get("transcript") or ()]
        data["text"] = self._open(data.get("text"))
        return data

    def _seal_qa(self, result: dict) -> dict:
        if self.cipher is None:
            return dict(result)
        return {**result, "violations": [{**v, "text": self._seal(v.get("text"))}
                                         for v in result.get("violations") or ()]}

    def _open_qa(self, result: dict) -> dict:
        return {**result, "violations": [{**v, "text": self._open(v.get("text"))}
                                         for v in result.get("violations") or ()]}

    # -- tickets
    def _ticket(self, row: TicketRow, events: Sequence[EventRow] | None) -> Ticket:
        t = Ticket.model_validate(self._open_ticket(row.data))
        upd: dict[str, Any] = {"status": row.status, "assignee": row.assignee, "updated_at": row.updated_at}
        if events is not None:
            upd["events"] = [TicketEvent(id=e.id, type=e.type, at=e.at, actor=e.actor, data=e.data or {})
                             for e in events]
        return t.model_copy(update=upd)

    def _events(self, s: Session, ticket_id: str) -> list[EventRow]:
        return list(s.scalars(select(EventRow).where(EventRow.ticket_id == ticket_id).order_by(EventRow.id)))

    def get_ticket(self, ticket_id: str, with_events: bool = True) -> Ticket | None:
        with self._read() as s:
            row = s.get(TicketRow, ticket_id)
            if row is None:
                return None
            return self._ticket(row, self._events(s, ticket_id) if with_events else None)

    def ticket_owner(self, ticket_id: str) -> str | None:
        """The api_keys.id that created the ticket (None: unknown ticket or made without a key)."""
        with self._read() as s:
            return s.scalar(select(TicketRow.created_by_key).where(TicketRow.id == ticket_id))

    def list_tickets(self, *, status: str | None = None, priority: str | None = None, intent: str | None = None,
                     caller: str | None = None, since: datetime | None = None, until: datetime | None = None,
                     created_by_key: str | None = None, limit: int = 50,
                     cursor: str | None = None, overdue: bool | None = None,
                     now: datetime | None = None) -> tuple[list[Ticket], str | None]:
        """Tickets newest first (created_at, then id), ``limit`` (1..200) a page; the second value is the cursor of
        the next page (None: last page). ``since`` is inclusive, ``until`` exclusive; ``created_by_key`` limits
        the list to one key's tickets (a platform key reads only its own). ``overdue=True``: unfinished tickets
        (not resolved or closed) past ``sla.due_at`` at ``now`` (default: the current time) or with an escalation
        done; ``overdue=False``: the others."""
        if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit={limit!r}: must be an integer from 1 to {MAX_LIMIT}")
        _aware(since, "since")
        _aware(until, "until")
        q = select(TicketRow)
        for col, value in ((TicketRow.status, status), (TicketRow.priority, priority), (TicketRow.intent, intent),
                           (TicketRow.caller, caller), (TicketRow.created_by_key, created_by_key)):
            if value is not None:
                q = q.where(col == value)
        if since is not None:
            q = q.where(TicketRow.created_at >= since)
        if until is not None:
            q = q.where(TicketRow.created_at < until)
        if overdue is not None:
            at = _aware(now, "now") or utcnow()
            escalated = select(EscalationRow.id).where(EscalationRow.ticket_id == TicketRow.id,
                                                       EscalationRow.outcome == "escalated").exists()
            cond = and_(TicketRow.status.not_in(FINISHED), or_(TicketRow.due_at < at, escalated))
            q = q.where(cond if overdue else ~cond)
        if cursor:
            at, last_id = _decode_cursor(cursor)
            q = q.where(or_(TicketRow.created_at < at, and_(TicketRow.created_at == at, TicketRow.id < last_id)))
        q = q.order_by(TicketRow.created_at.desc(), TicketRow.id.desc()).limit(limit + 1)
        with self._read() as s:
            rows = list(s.scalars(q))
        page = rows[:limit]
        nxt = _encode_cursor(page[-1].created_at, page[-1].id) if len(rows) > limit else None
        return [self._ticket(r, None) for r in page], nxt

    def add_event(self, ticket_id: str, type: str, actor: str | None, data: dict[str, Any] | None = None) -> Ticket:
        """Apply one event (API.md ``POST /tickets/{id}/events``) in one transaction and return the updated ticket
        with its history. NotFound (404), InvalidTransition (409) or ValueError for bad event data (422)."""
        data = dict(data or {})
        if type not in EVENT_TYPES:
            raise ValueError(f"event type {type!r}: use one of {', '.join(EVENT_TYPES)}")
        if type == "assign":
            assignee = data.get("assignee")
            if not isinstance(assignee, str) or not assignee.strip():
                raise ValueError('an "assign" event needs "assignee": the agent\'s name or id (a non-empty string)')
        if type == "satisfaction":
            score = data.get("score")
            if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
                raise ValueError(f'a "satisfaction" event needs "score": an integer from 1 to 5 (got {score!r})')
        if type == "escalate" and "to" in data and not isinstance(data["to"], str):
            raise ValueError('"to" of an "escalate" event must be a string (the role or person escalated to)')
        if type == "reprioritize" and data.get("priority") not in PRIORITIES:
            raise ValueError(f'a "reprioritize" event needs "priority": one of {", ".join(PRIORITIES)} '
                             f'(got {data.get("priority")!r}); the SLA deadlines are recomputed from it')
        now = utcnow()
        with self._write() as s, s.begin():
            q = select(TicketRow).where(TicketRow.id == ticket_id)
            if self.backend == "postgresql":
                q = q.with_for_update()
            row = s.scalar(q)
            if row is None:
                raise NotFound(f"no ticket {ticket_id!r}: list tickets with GET /tickets")
            try:
                status = next_status(row.status, type)
            except ValueError as e:
                raise InvalidTransition(str(e)) from None
            ticket_data = dict(row.data)
            ticket_data["status"] = status
            ticket_data["updated_at"] = now.isoformat()
            if type == "assign":
                row.assignee = ticket_data["assignee"] = data["assignee"].strip()
            if type == "satisfaction":
                ticket_data["satisfaction"] = data["score"]
            if type == "reprioritize":
                data["from"] = row.priority
                self._reprioritize(s, row, ticket_data, data["priority"], now)
            row.status, row.updated_at, row.data = status, now, ticket_data
            s.add(EventRow(ticket_id=ticket_id, type=type, at=now, actor=actor, data=data))
            s.flush()
            ticket = self._ticket(row, self._events(s, ticket_id))
            if type == "resolve" and ticket_data.get("satisfaction") is None:
                # the customer is asked how satisfied they were: an outbox row in the resolve's own transaction
                from serving.operations import satisfaction_request

                self._add_notifications(s, [satisfaction_request(ticket, now)], now)
            return ticket

    def linked_tickets(self, caller: str | None, order_id: str | None, exclude_call_id: str | None = None) -> list[str]:
        """Ids of earlier tickets of the same caller or the same order id, newest first (at most 10)."""
        where = _same_caller_or_order(caller, order_id, exclude_call_id)
        if where is None:
            return []
        q = select(TicketRow.id).where(*where)
        q = q.order_by(TicketRow.created_at.desc(), TicketRow.id.desc()).limit(MAX_LINKED)
        with self._read() as s:
            return list(s.scalars(q))

    def earlier_tickets(self, caller: str | None, order_id: str | None, exclude_call_id: str | None = None,
                        limit: int = 50) -> list[dict[str, Any]]:
        """Earlier tickets of the same caller or the same order id, newest first, as ``{id, intent, order_id,
        created_at}`` (what ``models.decisions.link_earlier`` chooses from)."""
        where = _same_caller_or_order(caller, order_id, exclude_call_id)
        if where is None:
            return []
        q = select(TicketRow.id, TicketRow.intent, TicketRow.order_id, TicketRow.created_at).where(*where)
        q = q.order_by(TicketRow.created_at.desc(), TicketRow.id.desc()).limit(limit)
        with self._read() as s:
            return [{"id": r.id, "intent": r.intent, "order_id": r.order_id, "created_at": r.created_at}
                    for r in s.execute(q)]

    def _reprioritize(self, s: Session, row: TicketRow, ticket_data: dict, priority: str, now: datetime) -> None:
        """New priority: new ``sla`` (from the creation time, under the store's policy), pending escalation steps
        moved (done ones stay done; steps the new chain lacks are marked "superseded"), and a "ticket.p1"
        notification when the ticket becomes P1 — all in the caller's transaction."""
        from models.decisions import load_policy, sla_deadlines
        from models.ticket import Escalation, Sla

        policy = self.policy or load_policy()
        old = row.priority
        due, steps = sla_deadlines(priority, row.created_at, policy)
        sla = Sla(due_at=due, escalations=[Escalation(at=at, to=to) for at, to in steps])
        ticket_data["priority"] = priority
        ticket_data["sla"] = sla.model_dump(mode="json")
        row.priority, row.due_at = priority, due
        have = {e.level: e for e in s.scalars(select(EscalationRow).where(EscalationRow.ticket_id == row.id))}
        for level, (at, to) in enumerate(steps):
            e = have.pop(level, None)
            if e is None:
                s.add(EscalationRow(ticket_id=row.id, level=level, to=to, due_at=at))
            elif e.done_at is None:
                e.due_at, e.to = at, to
        for e in have.values():
            if e.done_at is None:
                e.done_at, e.outcome = now, "superseded"
        if priority == "P1" and old != "P1":
            from serving.outbox import ticket_notification

            ticket = Ticket.model_validate({**ticket_data, "status": row.status})
            self._add_notifications(s, [ticket_notification("ticket.p1", ticket, now, reason=f"priority {old} -> P1")],
                                    now)

    # -- escalations (serving/escalation.py runs them)
    def pending_escalations(self, now: datetime, limit: int = 100) -> list[int]:
        """Ids of escalation steps due at ``now`` and not done yet, oldest due first."""
        _aware(now, "now")
        q = (select(EscalationRow.id).where(EscalationRow.done_at.is_(None), EscalationRow.due_at <= now)
             .order_by(EscalationRow.due_at, EscalationRow.id).limit(limit))
        with self._read() as s:
            return list(s.scalars(q))

    def apply_escalation(self, escalation_id: int, now: datetime, actor: str = "system",
                         notify: Callable[[Ticket, dict], Sequence[Notification]] | None = None
                         ) -> EscalationDone | None:
        """Carry out one due step in one transaction: mark it done (a conditional UPDATE: the row count decides
        which worker did it), add an "escalate" event, set the status to escalated and write ``notify``'s outbox
        rows. A resolved or closed ticket is not escalated: the step is marked "cancelled". None when the step was
        done already (by another worker) or is not due."""
        with self._write() as s, s.begin():
            esc = s.get(EscalationRow, escalation_id)
            if esc is None or esc.done_at is not None:
                return None
            q = select(TicketRow).where(TicketRow.id == esc.ticket_id)
            if self.backend == "postgresql":
                q = q.with_for_update()  # lock the ticket first, as add_event does (no lock-order deadlock)
            row = s.scalar(q)
            if row is None:
                return None
            outcome = "cancelled" if row.status in FINISHED else "escalated"
            done = s.execute(update(EscalationRow)
                             .where(EscalationRow.id == escalation_id, EscalationRow.done_at.is_(None),
                                    EscalationRow.due_at <= now)
                             .values(done_at=now, outcome=outcome)
                             .execution_options(synchronize_session=False))
            if done.rowcount != 1:
                return None  # another worker did it (or it moved): nothing written
            s.refresh(esc)
            result = EscalationDone(ticket_id=row.id, level=esc.level, to=esc.to, due_at=esc.due_at, done_at=now,
                                    outcome=outcome)
            if outcome == "cancelled":
                return result
            status = next_status(row.status, "escalate")
            data = {"to": esc.to, "level": esc.level, "automatic": True, "due_at": esc.due_at.isoformat(),
                    "priority": row.priority}
            ev = EventRow(ticket_id=row.id, type="escalate", at=now, actor=actor, data=data)
            s.add(ev)
            ticket_data = dict(row.data)
            ticket_data["status"] = status
            ticket_data["updated_at"] = now.isoformat()
            row.status, row.updated_at, row.data = status, now, ticket_data
            s.flush()
            if notify is not None:
                self._add_notifications(s, notify(self._ticket(row, None), data), now)
            return EscalationDone(ticket_id=row.id, level=esc.level, to=esc.to, due_at=esc.due_at, done_at=now,
                                  outcome=outcome, event_id=ev.id)

    def escalation_steps(self, ticket_id: str) -> list[dict[str, Any]]:
        """The escalation rows of one ticket, by level (for tests and admins)."""
        with self._read() as s:
            return [{"level": e.level, "to": e.to, "due_at": e.due_at, "done_at": e.done_at, "outcome": e.outcome}
                    for e in s.scalars(select(EscalationRow).where(EscalationRow.ticket_id == ticket_id)
                                       .order_by(EscalationRow.level))]

    # -- outbox (serving/outbox.py delivers it)
    @staticmethod
    def _add_notifications(s: Session, notes: Sequence[Notification], now: datetime) -> None:
        for n in notes:
            s.add(OutboxRow(event_id=n.event_id, kind=n.kind, ticket_id=n.ticket_id, target=n.target,
                            payload=n.payload, created_at=now, next_attempt_at=now, attempts=0, delivered_to=[]))

    def add_notifications(self, notes: Sequence[Notification], now: datetime | None = None) -> None:
        """Outbox rows on their own (changes with no ticket row, e.g. a hotspot spike)."""
        with self._write() as s, s.begin():
            self._add_notifications(s, notes, _aware(now, "now") or utcnow())

    @staticmethod
    def _item(r: OutboxRow, token: str | None = None) -> OutboxItem:
        return OutboxItem(id=r.id, event_id=r.event_id, kind=r.kind, ticket_id=r.ticket_id, target=r.target,
                          payload=dict(r.payload or {}), created_at=r.created_at, next_attempt_at=r.next_attempt_at,
                          attempts=r.attempts, delivered_at=r.delivered_at, parked_at=r.parked_at,
                          last_error=r.last_error, delivered_to=tuple(r.delivered_to or ()), lease_token=token)

    def claim_outbox(self, now: datetime, limit: int = 20, lease_s: float = 60.0) -> list[OutboxItem]:
        """Claim up to ``limit`` due, undelivered, unparked rows for delivery with a lease of ``lease_s``.

        A row is free when it has no lease, its lease expired, or the process holding it on this host is dead.
        PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED`` then the lease; SQLite: a conditional UPDATE per row on
        the lease token seen (a compare-and-set: of two relays only one gets each row)."""
        _aware(now, "now")
        me = process_owner()
        base = (select(OutboxRow).where(OutboxRow.delivered_at.is_(None), OutboxRow.parked_at.is_(None),
                                        OutboxRow.next_attempt_at <= now)
                .order_by(OutboxRow.next_attempt_at, OutboxRow.id).limit(limit * 4))

        def free(r: OutboxRow) -> bool:
            return r.lease_token is None or r.locked_until is None or r.locked_until <= now or \
                (r.locked_by != me and owner_is_dead(r.locked_by or ""))

        out: list[OutboxItem] = []
        until = now + timedelta(seconds=lease_s)
        if self.backend == "postgresql":
            with self._write() as s, s.begin():
                for r in s.scalars(base.with_for_update(skip_locked=True)):
                    if len(out) >= limit or not free(r):
                        continue
                    token = uuid.uuid4().hex
                    r.locked_by, r.locked_until, r.lease_token = me, until, token
                    out.append(self._item(r, token))
            return out
        with self._read() as s:
            seen = [(r.id, r.lease_token) for r in s.scalars(base) if free(r)]
        for rid, old in seen[:limit * 2]:
            if len(out) >= limit:
                break
            token = uuid.uuid4().hex
            with self._write() as s, s.begin():
                cond = OutboxRow.lease_token.is_(None) if old is None else OutboxRow.lease_token == old
                got = s.execute(update(OutboxRow).where(OutboxRow.id == rid, cond, OutboxRow.delivered_at.is_(None),
                                                        OutboxRow.parked_at.is_(None))
                                .values(locked_by=me, locked_until=until, lease_token=token)
                                .execution_options(synchronize_session=False))
                if got.rowcount == 1:
                    out.append(self._item(s.get(OutboxRow, rid), token))
        return out

    def record_delivery(self, item: OutboxItem, now: datetime, delivered_to: Sequence[str], *, done: bool,
                        error: str | None = None, next_attempt_at: datetime | None = None,
                        park: bool = False) -> bool:
        """The outcome of one claimed row: ``done`` (every target acknowledged), or a failed attempt (attempts + 1,
        ``error``, retried at ``next_attempt_at``, or parked). False when the lease was lost meanwhile (another
        relay took the row over; its outcome counts)."""
        values: dict[str, Any] = {"delivered_to": sorted(set(delivered_to)), "locked_by": None, "locked_until": None,
                                  "lease_token": None}
        if done:
            values.update(delivered_at=now, last_error=None)
        else:
            values.update(attempts=OutboxRow.attempts + 1, last_error=(error or "")[:2000],
                          next_attempt_at=next_attempt_at or now, parked_at=now if park else None)
        with self._write() as s, s.begin():
            got = s.execute(update(OutboxRow).where(OutboxRow.id == item.id, OutboxRow.lease_token == item.lease_token)
                            .values(**values).execution_options(synchronize_session=False))
            return got.rowcount == 1

    def list_outbox(self, state: str = "pending", limit: int = 100, kind: str | None = None) -> list[OutboxItem]:
        """Outbox rows newest first: ``state`` pending, parked, delivered or all."""
        if state not in OUTBOX_STATES:
            raise ValueError(f"state {state!r}: use one of {', '.join(OUTBOX_STATES)}")
        if not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise ValueError(f"limit={limit!r}: must be an integer from 1 to 1000")
        q = select(OutboxRow)
        if state == "pending":
            q = q.where(OutboxRow.delivered_at.is_(None), OutboxRow.parked_at.is_(None))
        elif state == "parked":
            q = q.where(OutboxRow.parked_at.is_not(None), OutboxRow.delivered_at.is_(None))
        elif state == "delivered":
            q = q.where(OutboxRow.delivered_at.is_not(None))
        if kind is not None:
            q = q.where(OutboxRow.kind == kind)
        with self._read() as s:
            return [self._item(r) for r in s.scalars(q.order_by(OutboxRow.id.desc()).limit(limit))]

    def retry_outbox(self, outbox_id: int, now: datetime | None = None) -> OutboxItem:
        """Put a parked row back in the queue (attempts start again); NotFound, or ValueError when delivered."""
        now = _aware(now, "now") or utcnow()
        with self._write() as s, s.begin():
            r = s.get(OutboxRow, outbox_id)
            if r is None:
                raise NotFound(f"no outbox row {outbox_id}: list them with GET /admin/outbox?state=parked")
            if r.delivered_at is not None:
                raise ValueError(f"outbox row {outbox_id} was delivered at {r.delivered_at.isoformat()}: nothing to retry")
            r.parked_at, r.attempts, r.next_attempt_at, r.last_error = None, 0, now, None
            r.locked_by = r.locked_until = r.lease_token = None
            s.flush()
            return self._item(r)

    # -- quality checks (serving/operations.py runs models.qa.check_call)
    def _qa(self, r: QaRow) -> dict[str, Any]:
        return {"ticket_id": r.ticket_id, "agent": r.agent, "score": r.score, "passed": r.passed,
                "rules_version": r.rules_version, "created_at": r.created_at, "result": self._open_qa(r.result or {})}

    def qa_result(self, ticket_id: str) -> dict[str, Any] | None:
        """The stored quality check of one ticket (``result`` with its evidence, decrypted), or None."""
        with self._read() as s:
            r = s.scalar(select(QaRow).where(QaRow.ticket_id == ticket_id))
            return self._qa(r) if r is not None else None

    def qa_results(self, *, since: datetime | None = None, until: datetime | None = None,
                   agent: str | None = None, limit: int = 10_000) -> list[dict[str, Any]]:
        """Stored quality checks, newest first (``since`` inclusive, ``until`` exclusive, by ``created_at``)."""
        _aware(since, "since")
        _aware(until, "until")
        if not isinstance(limit, int) or not 1 <= limit <= 100_000:
            raise ValueError(f"limit={limit!r}: must be an integer from 1 to 100000")
        q = select(QaRow)
        if since is not None:
            q = q.where(QaRow.created_at >= since)
        if until is not None:
            q = q.where(QaRow.created_at < until)
        if agent is not None:
            q = q.where(QaRow.agent == agent)
        with self._read() as s:
            return [self._qa(r) for r in s.scalars(q.order_by(QaRow.created_at.desc(), QaRow.id.desc()).limit(limit))]

    # -- recordings (encrypted at rest; purged after the retention period)
    def recording(self, ticket_id: str) -> bytes | None:
        """The decrypted audio of a ticket's call; None when none was stored or it was purged."""
        with self._read() as s:
            r = s.scalar(select(RecordingRow).where(RecordingRow.ticket_id == ticket_id))
            if r is None or r.audio is None:
                return None
        if self.cipher is None:
            from serving.crypto import EncryptionKeyError, HOW_TO_MAKE_A_KEY

            raise EncryptionKeyError(f"the recording of {ticket_id} is encrypted and no key is configured; "
                                     f"{HOW_TO_MAKE_A_KEY}")
        return self.cipher.decrypt(r.audio)

    def recordings(self) -> list[dict[str, Any]]:
        """Every recording row without its audio: ticket_id, created_at, size_bytes, purged_at, stored (bool)."""
        q = select(RecordingRow.ticket_id, RecordingRow.created_at, RecordingRow.size_bytes, RecordingRow.purged_at,
                   RecordingRow.audio.is_not(None)).order_by(RecordingRow.created_at, RecordingRow.id)
        with self._read() as s:
            return [{"ticket_id": t, "created_at": c, "size_bytes": n, "purged_at": p, "stored": bool(st)}
                    for t, c, n, p, st in s.execute(q)]

    def purge_recordings(self, now: datetime, retention_days: float | None) -> list[str]:
        """Delete the audio of every recording ``retention_days`` old or older at ``now`` (the rule of
        ``serving.crypto.purge_due``); the row stays with ``purged_at`` set. Returns the tickets purged. None keeps
        recordings for ever."""
        from serving.crypto import purge_due

        _aware(now, "now")
        if retention_days is None:
            return []
        purge_due(now, retention_days, now)  # validates retention_days
        cutoff = now - timedelta(days=float(retention_days))
        with self._write() as s, s.begin():
            ids = list(s.scalars(select(RecordingRow.id).where(RecordingRow.purged_at.is_(None),
                                                               RecordingRow.created_at <= cutoff)))
            if not ids:
                return []
            tickets = list(s.scalars(select(RecordingRow.ticket_id).where(RecordingRow.id.in_(ids))))
            s.execute(update(RecordingRow).where(RecordingRow.id.in_(ids), RecordingRow.purged_at.is_(None))
                      .values(audio=None, purged_at=now).execution_options(synchronize_session=False))
        return tickets

    # -- hotspots (models.hotspots over stored complaints)
    def hotspot_tickets(self, since: datetime, until: datetime) -> list[dict[str, Any]]:
        """Complaint tickets created in ``[since, until)`` as ``{created_at, is_complaint, intent, product, region,
        caller}``: product from the ``product`` slot, region from the caller's customer profile (else the profile
        as it was when the ticket was made)."""
        _aware(since, "since")
        _aware(until, "until")
        product = TicketRow.data[("slots", "product")].as_string()
        old_region = TicketRow.data[("customer", "region")].as_string()
        q = (select(TicketRow.created_at, TicketRow.intent, TicketRow.caller, product, CustomerRow.region, old_region)
             .outerjoin(CustomerRow, CustomerRow.phone == TicketRow.caller)
             .where(TicketRow.is_complaint.is_(True), TicketRow.created_at >= since, TicketRow.created_at < until))
        with self._read() as s:
            return [{"created_at": at, "is_complaint": True, "intent": intent, "caller": caller, "product": prod,
                     "region": region or old} for at, intent, caller, prod, region, old in s.execute(q)]

    def record_hotspot_alerts(self, report: Any, now: datetime,
                              notification: Callable[[Any, datetime], Notification]) -> list[Notification]:
        """Announce the spikes of a :class:`models.hotspots.HotspotReport` once each: per alert, one transaction
        writes a ``hotspot_alerts`` row and its outbox row (``notification(alert, window_start)``), unless an alert
        of the same (dimension, key, window) was announced for a window that overlaps this one, or another worker
        wrote the same (dimension, key, window, window start) first (the unique constraint decides). The window
        start is the report's start aligned down to a multiple of the window since the epoch, so workers looking at
        the same moment agree on it. Returns the notifications written now."""
        from models.hotspots import parse_window

        _aware(now, "now")
        w = parse_window(report.window)
        epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
        aligned = epoch + ((report.start - epoch) // w) * w
        out: list[Notification] = []
        for a in report.alerts:
            try:
                with self._write() as s, s.begin():
                    seen = s.scalar(select(HotspotAlertRow.id).where(
                        HotspotAlertRow.dimension == a.dimension, HotspotAlertRow.key == a.key,
                        HotspotAlertRow.window == report.window, HotspotAlertRow.window_end > report.start).limit(1))
                    if seen is not None:
                        continue
                    note = notification(a, aligned)
                    s.add(HotspotAlertRow(dimension=a.dimension, key=str(a.key)[:200], window=report.window,
                                          window_start=aligned, window_end=report.end, count=int(a.count),
                                          p_value=float(a.p_value), event_id=note.event_id, created_at=now))
                    s.flush()
                    self._add_notifications(s, [note], now)
                out.append(note)
            except IntegrityError:
                continue  # another worker announced it at the same moment
        return out

    def hotspot_alerts(self) -> list[dict[str, Any]]:
        """Every announced spike, oldest first."""
        with self._read() as s:
            return [{"dimension": r.dimension, "key": r.key, "window": r.window, "window_start": r.window_start,
                     "window_end": r.window_end, "count": r.count, "p_value": r.p_value, "event_id": r.event_id,
                     "created_at": r.created_at}
                    for r in s.scalars(select(HotspotAlertRow).order_by(HotspotAlertRow.id))]

    # -- satisfaction
    def csat_rows(self, *, since: datetime | None = None, until: datetime | None = None) -> list[dict[str, Any]]:
        """Tickets with a satisfaction score, created in ``[since, until)``: ``{ticket_id, queue, intent, agent,
        score}``; the agent is the ticket's assignee, else the agent its quality check names."""
        _aware(since, "since")
        _aware(until, "until")
        score = TicketRow.data["satisfaction"].as_integer()
        q = (select(TicketRow.id, TicketRow.queue, TicketRow.intent, TicketRow.assignee, QaRow.agent, score)
             .outerjoin(QaRow, QaRow.ticket_id == TicketRow.id).where(score.is_not(None)))
        if since is not None:
            q = q.where(TicketRow.created_at >= since)
        if until is not None:
            q = q.where(TicketRow.created_at < until)
        with self._read() as s:
            return [{"ticket_id": tid, "queue": queue, "intent": intent, "agent": assignee or qa_agent,
                     "score": int(sc)} for tid, queue, intent, assignee, qa_agent, sc in s.execute(q)]

    # -- customers
    @staticmethod
    def _check_customer(phone: Any, name: Any, vip_level: Any, region: Any) -> tuple[str, str | None, int, str | None]:
        phone = str(phone or "").strip()
        if not PHONE_RE.match(phone):
            raise ValueError(f"phone {phone!r}: must be 5 to 20 digits, no spaces or signs (e.g. 13812345678)")
        if isinstance(vip_level, str):
            vip_level = vip_level.strip() or "0"
            if not re.fullmatch(r"\d+", vip_level):
                raise ValueError(f"vip_level {vip_level!r}: must be a whole number >= 0 (0: not a VIP)")
            vip_level = int(vip_level)
        if isinstance(vip_level, bool) or not isinstance(vip_level, int) or vip_level < 0:
            raise ValueError(f"vip_level {vip_level!r}: must be a whole number >= 0 (0: not a VIP)")
        name = (str(name).strip() or None) if name is not None else None
        region = (str(region).strip() or None) if region is not None else None
        return phone, name, vip_level, region

    def upsert_customer(self, phone: str, name: str | None = None, vip_level: int = 0,
                        region: str | None = None) -> Customer:
        """Create or replace one customer profile; returns it with its ticket counts."""
        phone, name, vip_level, region = self._check_customer(phone, name, vip_level, region)
        with self._write() as s, s.begin():
            self._upsert(s, phone, name, vip_level, region, utcnow())
        got = self.get_customer(phone)
        assert got is not None
        return got

    @staticmethod
    def _upsert(s: Session, phone: str, name: str | None, vip_level: int, region: str | None, now: datetime) -> None:
        row = s.get(CustomerRow, phone)
        if row is None:
            s.add(CustomerRow(phone=phone, name=name, vip_level=vip_level, region=region, created_at=now,
                              updated_at=now))
        else:
            row.name, row.vip_level, row.region, row.updated_at = name, vip_level, region, now

    def get_customer(self, phone: str) -> Customer | None:
        """The profile with ticket_count, complaint_count and recent_ticket_ids (newest first) computed from the
        tickets. A caller without a profile but with tickets gets a bare profile; None when neither exists."""
        with self._read() as s:
            row = s.get(CustomerRow, phone)
            count, complaints = s.execute(
                select(func.count(TicketRow.id),
                       func.coalesce(func.sum(func.cast(TicketRow.is_complaint, Integer)), 0))
                .where(TicketRow.caller == phone)).one()
            if row is None and not count:
                return None
            recent = list(s.scalars(select(TicketRow.id).where(TicketRow.caller == phone)
                                    .order_by(TicketRow.created_at.desc(), TicketRow.id.desc())
                                    .limit(RECENT_TICKETS)))
        return Customer(phone=phone, name=row.name if row else None, vip_level=row.vip_level if row else 0,
                        region=row.region if row else None, ticket_count=int(count),
                        complaint_count=int(complaints), recent_ticket_ids=recent)

    def import_customers_csv(self, path: str | os.PathLike) -> tuple[int, list[CsvRowError]]:
        """Import (upsert) customers from a UTF-8 CSV with the header ``phone,name,vip_level,region``.

        All or nothing: if any row is bad, nothing is imported and every bad row is reported with its line number
        (fix them and import the whole file again). Returns (rows imported, errors)."""
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such CSV file (columns {','.join(CUSTOMER_COLUMNS)})")
        errors: list[CsvRowError] = []
        rows: list[tuple[str, str | None, int, str | None]] = []
        seen: dict[str, int] = {}
        with p.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip().lower() for h in next(reader, [])]
            if sorted(header) != sorted(CUSTOMER_COLUMNS):
                return 0, [CsvRowError(1, f"header {','.join(header) or '(empty file)'}: the first line must name "
                                           f"the columns {','.join(CUSTOMER_COLUMNS)} (any order)")]
            for cells in reader:
                line = reader.line_num
                if not any(c.strip() for c in cells):
                    continue
                if len(cells) != len(header):
                    errors.append(CsvRowError(line, f"{len(cells)} fields, expected {len(header)} "
                                                     f"({','.join(header)}); quote names that hold commas"))
                    continue
                rec = dict(zip(header, cells))
                try:
                    row = self._check_customer(rec["phone"], rec["name"], rec["vip_level"], rec["region"])
                except ValueError as e:
                    errors.append(CsvRowError(line, str(e)))
                    continue
                if row[0] in seen:
                    errors.append(CsvRowError(line, f"phone {row[0]} is already on line {seen[row[0]]}: keep one"))
                    continue
                seen[row[0]] = line
                rows.append(row)
        if errors:
            return 0, errors
        now = utcnow()
        with self._write() as s, s.begin():
            for phone, name, vip, region in rows:
                self._upsert(s, phone, name, vip, region, now)
        return len(rows), []

    # -- API keys
    @staticmethod
    def _key(row: ApiKeyRow) -> KeyInfo:
        return KeyInfo(id=row.id, name=row.name, role=row.role, prefix=row.prefix, created_at=row.created_at,
                       revoked_at=row.revoked_at)

    def create_key(self, role: str, name: str | None = None) -> tuple[KeyInfo, str]:
        """A new key of ``role``; returns its info and the secret, which is shown once and never stored."""
        check_role(role)
        secret = new_secret()
        key_id = "k_" + uuid.uuid4().hex[:16]
        row = ApiKeyRow(id=key_id, name=(name or "").strip() or f"{role}-{key_id[2:8]}", role=role,
                        key_hash=hash_secret(secret), prefix=secret[:PREFIX_LEN], created_at=utcnow(),
                        revoked_at=None)
        with self._write() as s, s.begin():
            s.add(row)
        return self._key(row), secret

    def verify_key(self, secret: str | None) -> KeyInfo | None:
        """The key of ``secret``, or None when it is unknown or revoked."""
        if not secret or not isinstance(secret, str):
            return None
        with self._read() as s:
            row = s.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == hash_secret(secret.strip())))
            if row is None or row.revoked_at is not None:
                return None
            return self._key(row)

    def list_keys(self, include_revoked: bool = True) -> list[KeyInfo]:
        q = select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.id)
        if not include_revoked:
            q = q.where(ApiKeyRow.revoked_at.is_(None))
        with self._read() as s:
            return [self._key(r) for r in s.scalars(q)]

    def revoke_key(self, id_or_prefix: str) -> KeyInfo:
        """Revoke a key by its id or the prefix shown by ``keys list``; revoking twice keeps the first time."""
        with self._write() as s, s.begin():
            rows = list(s.scalars(select(ApiKeyRow).where(
                or_(ApiKeyRow.id == id_or_prefix, ApiKeyRow.prefix == id_or_prefix))))
            if not rows:
                raise NotFound(f"no API key with id or prefix {id_or_prefix!r}: see `hotline keys list`")
            if len(rows) > 1:
                raise ValueError(f"prefix {id_or_prefix!r} matches {len(rows)} keys "
                                 f"({', '.join(r.id for r in rows)}): revoke by id")
            row = rows[0]
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            return self._key(row)

    # -- audit
    def audit(self, key: KeyInfo | None, action: str, ticket_id: str | None = None, detail: str = "") -> None:
        with self._write() as s, s.begin():
            s.add(AuditRow(at=utcnow(), key_id=key.id if key else None, key_name=key.name if key else None,
                           role=key.role if key else None, action=action, ticket_id=ticket_id, detail=detail))

    def audit_entries(self, ticket_id: str | None = None, limit: int = 100) -> list[AuditEntry]:
        """Newest first."""
        if not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise ValueError(f"limit={limit!r}: must be an integer from 1 to 10000")
        q = select(AuditRow)
        if ticket_id is not None:
            q = q.where(AuditRow.ticket_id == ticket_id)
        q = q.order_by(AuditRow.id.desc()).limit(limit)
        with self._read() as s:
            return [AuditEntry(id=r.id, at=r.at, key_id=r.key_id, key_name=r.key_name, role=r.role, action=r.action,
                               ticket_id=r.ticket_id, detail=r.detail or "") for r in s.scalars(q)]


def _sqlite_listeners(engine: Engine) -> None:
    """WAL and a busy timeout on every connection; our own BEGIN (IMMEDIATE for writers) instead of pysqlite's."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None  # pysqlite must not emit its own BEGIN; the "begin" hook below does
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("hotline_write") else "BEGIN")

