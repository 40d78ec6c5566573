"""Notifications: what goes into the outbox, and the relay that delivers it to webhooks.

Every notification is an ``outbox`` row written in the same transaction as the change it reports (a new P1 ticket,
an escalation, a tiered alert, a hotspot spike, a satisfaction request; :class:`serving.store.Notification`). The
relay (:class:`Relay`) claims due rows with a lease (``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, a
conditional UPDATE on SQLite; rows held by a dead process of this host are taken over at once), POSTs each to every
configured webhook that wants its kind, and records the outcome: delivered, or retried with exponential backoff and
jitter, and parked after ``max_attempts`` (``GET /admin/outbox?state=parked``, ``POST /admin/outbox/{id}/retry``).
Delivery is at least once: a receiver de-duplicates by ``X-Hotline-Event-Id``.

Each POST carries ``X-Hotline-Event-Id`` (uuid), ``X-Hotline-Timestamp`` (unix seconds) and ``X-Hotline-Signature:
sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" with the webhook's secret>``; receivers check it with
:func:`verify_signature`. Body formats: ``json`` (the event with the masked ticket summary), ``wecom`` (WeCom group bot
markdown) and ``dingtalk`` (DingTalk robot markdown). No phone number leaves in clear.

Environment:
  HOTLINE_WEBHOOKS                 a JSON/YAML list, or the path of a JSON/YAML file holding it, of
                                   ``{name, url, secret, format: json|wecom|dingtalk, kinds: [...]}`` (kinds absent:
                                   every kind). No webhook: rows wait in the outbox until one is configured.
  HOTLINE_OUTBOX_BACKOFF_BASE_S    first retry delay, s (default 10)
  HOTLINE_OUTBOX_BACKOFF_FACTOR    growth per attempt (default 2)
  HOTLINE_OUTBOX_BACKOFF_CAP_S     longest delay, s (default 3600)
  HOTLINE_OUTBOX_BACKOFF_JITTER    +- fraction of each delay, 0..1 (default 0.2)
  HOTLINE_OUTBOX_MAX_ATTEMPTS      failed attempts before a row is parked (default 12)
  HOTLINE_OUTBOX_LEASE_S           how long a claimed row is held before others take it over, s (default 60)
  HOTLINE_OUTBOX_TIMEOUT_S         HTTP time-out per POST, s (default 10)
  HOTLINE_OUTBOX_BATCH             rows claimed per round (default 20)

``python -m serving.outbox --database-url URL [--once]`` (or ``hotline outbox relay``) runs the relay on its own.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import logging
import os
import random
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from models.ticket import Ticket, mask_phone, mask_text, masked
from serving.store import Notification, OutboxItem

log = logging.getLogger("hotline.outbox")
FORMATS = ("json", "wecom", "dingtalk")
KINDS = ("ticket.p1", "ticket.escalated", "ticket.tiered_alert", "hotspot.spike", "ticket.satisfaction_request")
TITLES = {  # what a chat message says first, per kind
    "ticket.p1": "P1 紧急工单",
    "ticket.escalated": "工单升级",
    "ticket.tiered_alert": "重大投诉提醒",
    "hotspot.spike": "投诉热点预警",
    "ticket.satisfaction_request": "满意度回访",
}
_LONG_DIGITS = re.compile(r"(?<!\d)(\d{3})\d{4,}(\d{4})(?!\d)")


# -- what is written to the outbox ------------------------------------------------------------------
def ticket_brief(ticket: Ticket) -> dict[str, Any]:
    """The masked summary of a ticket that notifications carry (no transcript, phone numbers masked)."""
    t = masked(ticket)
    return {
        "id": t.id, "priority": t.priority, "status": t.status, "intent": t.intent, "queue": t.queue,
        "tier": t.tier, "tier_rule": t.tier_rule, "is_complaint": t.is_complaint, "summary": t.summary,
        "caller": t.caller, "region": t.customer.region if t.customer else None, "channel": t.channel,
        "created_at": t.created_at.isoformat(), "due_at": t.sla.due_at.isoformat(),
    }


def ticket_notification(kind: str, ticket: Ticket, now: datetime, target: str | None = None,
                        **extra: Any) -> Notification:
    """One outbox row about ``ticket``; ``extra`` goes into the payload (e.g. ``escalation={...}``)."""
    note = Notification(kind=kind, payload={}, ticket_id=ticket.id, target=target)
    payload = {"event_id": note.event_id, "kind": kind, "occurred_at": now.isoformat(), "target": target,
               "ticket": ticket_brief(ticket), **extra}
    return Notification(kind=kind, payload=payload, ticket_id=ticket.id, target=target, event_id=note.event_id)


def new_ticket_notifications(ticket: Ticket, policy: Any, now: datetime) -> list[Notification]:
    """What a new ticket announces: "ticket.p1" for a P1 ticket (to the ticket's queue) and "ticket.tiered_alert"
    for a major complaint (to the regional manager of the caller's region, models.decisions.regional_manager)."""
    from models.decisions import regional_manager

    out = []
    if ticket.priority == "P1":
        out.append(ticket_notification("ticket.p1", ticket, now, target=ticket.queue))
    if ticket.tier == "specialist":
        out.append(ticket_notification("ticket.tiered_alert", ticket, now,
                                       target=regional_manager(ticket.customer, policy), rule=ticket.tier_rule))
    return out


def event_notification(kind: str, payload: Mapping[str, Any], now: datetime, target: str | None = None) -> Notification:
    """An outbox row that is not about one ticket (e.g. "hotspot.spike"); numbers in the payload are masked."""
    note = Notification(kind=kind, payload={}, target=target)
    body = {"event_id": note.event_id, "kind": kind, "occurred_at": now.isoformat(), "target": target,
            **_mask_all(dict(payload))}
    return Notification(kind=kind, payload=body, target=target, event_id=note.event_id)


def _mask_all(value: Any) -> Any:
    """Every string inside masked: mobile numbers, and any other run of 11+ digits (a phone in another form)."""
    if isinstance(value, str):
        return _LONG_DIGITS.sub(lambda m: m.group(1) + "****" + m.group(2), mask_text(value)) \
            if len(re.sub(r"\D", "", value)) >= 11 else value
    if isinstance(value, Mapping):
        return {k: _mask_all(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mask_all(v) for v in value]
    return value


# -- webhooks --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Webhook:
    name: str  # recorded in outbox.delivered_to once it acknowledged a row
    url: str
    secret: str  # HMAC key of X-Hotline-Signature
    format: str = "json"  # json | wecom | dingtalk
    kinds: tuple[str, ...] = ()  # kinds it wants (empty: all)

    def wants(self, kind: str) -> bool:
        return not self.kinds or kind in self.kinds


def load_webhooks(raw: str | None = None) -> list[Webhook]:
    """Webhooks from ``raw`` (default ``$HOTLINE_WEBHOOKS``): a JSON or YAML list, or a path to a file holding one."""
    import yaml

    raw = os.environ.get("HOTLINE_WEBHOOKS", "") if raw is None else raw
    if not raw.strip():
        return []
    text = raw
    if not raw.lstrip().startswith(("[", "-", "{")):
        p = Path(raw).expanduser()
        if not p.is_file():
            raise ValueError(f"HOTLINE_WEBHOOKS={raw!r} is neither a JSON/YAML list nor an existing file")
        text = p.read_text(encoding="utf-8")
    try:
        items = yaml.safe_load(text)  # JSON is YAML
    except yaml.YAMLError as e:
        raise ValueError(f"HOTLINE_WEBHOOKS is not valid JSON or YAML: {e}") from None
    if not isinstance(items, list):
        raise ValueError("HOTLINE_WEBHOOKS must be a list of {name, url, secret, format, kinds}")
    out, names = [], set()
    for i, w in enumerate(items):
        if not isinstance(w, Mapping) or not w.get("url") or not w.get("secret"):
            raise ValueError(f"HOTLINE_WEBHOOKS[{i}]: needs `url` and `secret` (and optionally name, format, kinds)")
        fmt = str(w.get("format", "json"))
        if fmt not in FORMATS:
            raise ValueError(f"HOTLINE_WEBHOOKS[{i}]: format {fmt!r}: use one of {', '.join(FORMATS)}")
        name = str(w.get("name") or f"webhook-{i}")
        if name in names:
            raise ValueError(f"HOTLINE_WEBHOOKS[{i}]: the name {name!r} is used twice; names must be unique")
        names.add(name)
        kinds = w.get("kinds") or ()
        out.append(Webhook(name=name, url=str(w["url"]), secret=str(w["secret"]), format=fmt,
                           kinds=tuple(str(k) for k in ([kinds] if isinstance(kinds, str) else kinds))))
    return out


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">``."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(secret: str, timestamp: str, body: bytes, header: str | None, *,
                     max_age_s: float | None = None, now: float | None = None) -> bool:
    """Whether ``header`` (X-Hotline-Signature) signs ``timestamp`` (X-Hotline-Timestamp) and ``body`` with
    ``secret``; with ``max_age_s``, also that the timestamp is at most that old (replays refused)."""
    if not header or not timestamp:
        return False
    if max_age_s is not None:
        try:
            age = (time.time() if now is None else now) - int(timestamp)
        except ValueError:
            return False
        if abs(age) > max_age_s:
            return False
    return hmac.compare_digest(sign(secret, timestamp, body), header.strip())


def render(payload: Mapping[str, Any], fmt: str) -> bytes:
    """The POST body of a notification in ``fmt`` (json, wecom, dingtalk); strings are masked again on the way."""
    payload = _mask_all(dict(payload))
    if fmt == "json":
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    title = TITLES.get(str(payload.get("kind")), str(payload.get("kind")))
    lines = [f"**【{title}】**"]
    t = payload.get("ticket") or {}
    if t:
        lines.append(f"> 工单: {t.get('id')}  优先级: {t.get('priority')}  队列: {t.get('queue')}")
        lines.append(f"> 摘要: {t.get('summary')}")
        if t.get("caller"):
            lines.append(f"> 来电: {mask_phone(str(t['caller'])) if str(t['caller']).isdigit() else t['caller']}")
        if t.get("region"):
            lines.append(f"> 区域: {t.get('region')}")
        lines.append(f"> 处理时限: {t.get('due_at')}")
    esc = payload.get("escalation")
    if esc:
        lines.append(f"> 升级至: {esc.get('to')}（第 {int(esc.get('level', 0)) + 1} 级，自动）")
    if payload.get("rule"):
        lines.append(f"> 判定规则: {payload['rule']}")
    if payload.get("target"):
        lines.append(f"> 通知对象: {payload['target']}")
    for k in ("message", "detail"):
        if payload.get(k):
            lines.append(f"> {payload[k]}")
    lines.append(f"> 事件: {payload.get('event_id')}")
    text = "\n".join(lines)
    if fmt == "wecom":
        body = {"msgtype": "markdown", "markdown": {"content": text}}
    elif fmt == "dingtalk":
        body = {"msgtype": "markdown", "markdown": {"title": title, "text": text}}
    else:
        raise ValueError(f"format {fmt!r}: use one of {', '.join(FORMATS)}")
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# -- the relay -------------------------------------------------------------------------------------
def _envf(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        return float(raw) if raw.strip() else default
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected a number") from None


@dataclass(frozen=True)
class RelayConfig:
    backoff_base_s: float = 10.0
    backoff_factor: float = 2.0
    backoff_cap_s: float = 3600.0
    jitter: float = 0.2  # each delay is multiplied by a uniform factor in [1 - jitter, 1 + jitter]
    max_attempts: int = 12  # failed attempts before parking
    lease_s: float = 60.0
    timeout_s: float = 10.0
    batch: int = 20

    @classmethod
    def from_env(cls) -> "RelayConfig":
        c = cls(
            backoff_base_s=_envf("HOTLINE_OUTBOX_BACKOFF_BASE_S", cls.backoff_base_s),
            backoff_factor=_envf("HOTLINE_OUTBOX_BACKOFF_FACTOR", cls.backoff_factor),
            backoff_cap_s=_envf("HOTLINE_OUTBOX_BACKOFF_CAP_S", cls.backoff_cap_s),
            jitter=_envf("HOTLINE_OUTBOX_BACKOFF_JITTER", cls.jitter),
            max_attempts=int(_envf("HOTLINE_OUTBOX_MAX_ATTEMPTS", cls.max_attempts)),
            lease_s=_envf("HOTLINE_OUTBOX_LEASE_S", cls.lease_s),
            timeout_s=_envf("HOTLINE_OUTBOX_TIMEOUT_S", cls.timeout_s),
            batch=int(_envf("HOTLINE_OUTBOX_BATCH", cls.batch)),
        )
        c.check()
        return c

    def check(self) -> None:
        if self.backoff_base_s < 0 or self.backoff_factor < 1 or self.backoff_cap_s < self.backoff_base_s:
            raise ValueError("outbox backoff: need base >= 0, factor >= 1 and cap >= base (HOTLINE_OUTBOX_BACKOFF_*)")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"HOTLINE_OUTBOX_BACKOFF_JITTER={self.jitter}: must lie in [0, 1]")
        if self.max_attempts < 1 or self.lease_s <= 0 or self.timeout_s <= 0 or self.batch < 1:
            raise ValueError("outbox: max_attempts and batch must be >= 1, lease_s and timeout_s > 0")


def backoff_delay(attempts: int, config: RelayConfig, rng: random.Random | None = None) -> float:
    """Seconds before the next try after ``attempts`` failed ones: base * factor^(attempts-1), capped, jittered."""
    raw = min(config.backoff_cap_s, config.backoff_base_s * config.backoff_factor ** max(0, attempts - 1))
    j = (rng or random).uniform(1 - config.jitter, 1 + config.jitter) if config.jitter else 1.0
    return max(0.0, min(config.backoff_cap_s, raw * j))


@dataclass
class RelayReport:
    delivered: list[str] = field(default_factory=list)  # event ids delivered to every target this round
    failed: list[str] = field(default_factory=list)  # event ids that will be retried
    parked: list[str] = field(default_factory=list)  # event ids given up on (admins retry them)

    @property
    def claimed(self) -> int:
        return len(self.delivered) + len(self.failed) + len(self.parked)


class Relay:
    """Delivers due outbox rows to the webhooks. Several relays (threads, processes, hosts) may run at once."""

    def __init__(self, store: Any, webhooks: Sequence[Webhook] | None = None, config: RelayConfig | None = None,
                 client: Any = None):
        import httpx

        self.store = store
        self.webhooks = list(load_webhooks() if webhooks is None else webhooks)
        self.config = config or RelayConfig.from_env()
        self.config.check()
        self.client = client or httpx.Client(timeout=self.config.timeout_s, follow_redirects=False)
        self._rng = random.Random()

    def close(self) -> None:
        self.client.close()

    def _post(self, hook: Webhook, item: OutboxItem) -> None:
        body = render(item.payload, hook.format)
        ts = str(int(time.time()))
        headers = {"Content-Type": "application/json; charset=utf-8", "X-Hotline-Event-Id": item.event_id,
                   "X-Hotline-Timestamp": ts, "X-Hotline-Signature": sign(hook.secret, ts, body),
                   "X-Hotline-Kind": item.kind}
        resp = self.client.post(hook.url, content=body, headers=headers)
        if not 200 <= resp.status_code < 300:
            raise RuntimeError(f"HTTP {resp.status_code}: {resp.text[:200]}")
        if hook.format in ("wecom", "dingtalk"):  # the bots answer 200 with an errcode
            try:
                err = resp.json().get("errcode", 0)
            except ValueError:
                err = 0
            if err:
                raise RuntimeError(f"{hook.format} errcode {err}: {resp.text[:200]}")

    def deliver(self, item: OutboxItem, now: datetime, report: RelayReport) -> None:
        done = list(item.delivered_to)
        errors = []
        for hook in self.webhooks:
            if not hook.wants(item.kind) or hook.name in done:
                continue
            try:
                self._post(hook, item)
                done.append(hook.name)
            except Exception as e:  # noqa: BLE001 - any failure is a failed attempt, retried later
                errors.append(f"{hook.name}: {type(e).__name__}: {e}")
        if not errors:
            self.store.record_delivery(item, now, done, done=True)
            report.delivered.append(item.event_id)
            return
        attempts = item.attempts + 1
        park = attempts >= self.config.max_attempts
        nxt = now + timedelta(seconds=backoff_delay(attempts, self.config, self._rng))
        self.store.record_delivery(item, now, done, done=False, error="; ".join(errors), next_attempt_at=nxt,
                                   park=park)
        (report.parked if park else report.failed).append(item.event_id)
        log.warning("outbox %s (%s) attempt %d failed%s: %s", item.event_id, item.kind, attempts,
                    " - parked" if park else "", "; ".join(errors))

    def run_once(self, now: datetime | None = None) -> RelayReport:
        """One round: claim up to ``batch`` due rows and deliver them. No webhook configured: nothing is claimed."""
        now = now or datetime.now(timezone.utc)
        report = RelayReport()
        if not self.webhooks:
            return report
        for item in self.store.claim_outbox(now, limit=self.config.batch, lease_s=self.config.lease_s):
            self.deliver(item, now, report)
        return report

    def drain(self, clock: Any = None, rounds: int = 100) -> RelayReport:
        """Rounds until a round claims nothing (for the command line and tests)."""
        total = RelayReport()
        for _ in range(rounds):
            r = self.run_once(clock.now() if clock is not None else None)
            total.delivered += r.delivered
            total.failed += r.failed
            total.parked += r.parked
            if not r.claimed:
                break
        return total


def main(argv: Iterable[str] | None = None) -> int:
    """``python -m serving.outbox [--database-url URL] [--once] [--interval S]``: run the relay on its own."""
    from serving.escalation import Clock
    from serving.store import Store

    ap = argparse.ArgumentParser(prog="python -m serving.outbox", description="deliver the outbox to the webhooks")
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--once", action="store_true", help="deliver what is due now and exit")
    ap.add_argument("--interval", type=float, default=None, help="s between rounds (default "
                    "$HOTLINE_SCHEDULER_INTERVAL_S or 30)")
    args = ap.parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    store = Store(args.database_url)
    store.upgrade()
    relay = Relay(store)
    clock = Clock.from_env()
    if not relay.webhooks:
        print("no webhooks configured (HOTLINE_WEBHOOKS): nothing to deliver to", file=sys.stderr)
        return 1
    interval = args.interval if args.interval is not None else _envf("HOTLINE_SCHEDULER_INTERVAL_S", 30.0)
    try:
        while True:
            r = relay.drain(clock)
            print(f"delivered {len(r.delivered)} failed {len(r.failed)} parked {len(r.parked)}", flush=True)
            if args.once:
                return 0
            time.sleep(interval)
    finally:
        relay.close()
        store.close()


if __name__ == "__main__":
    sys.exit(main())
