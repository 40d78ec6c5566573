"""Notifications (issue 12): signed webhook delivery from the outbox with retries, backoff, parking and admin retry;
a receiver that is down then up gets every event; a relay killed mid-delivery loses nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from models.decisions import load_policy
from models.ticket import Customer, build_ticket
from serving.devserver import free_port
from serving.outbox import (
    Relay,
    RelayConfig,
    Webhook,
    backoff_delay,
    event_notification,
    load_webhooks,
    render,
    sign,
    ticket_notification,
    verify_signature,
)
from serving.store import Store, new_ticket_id

REPO = Path(__file__).resolve().parents[1]
POLICY = load_policy()
FAST = RelayConfig(backoff_base_s=0.02, backoff_factor=2.0, backoff_cap_s=0.1, jitter=0.5, max_attempts=100,
                   lease_s=30.0, timeout_s=2.0, batch=10)
PHONE = "13812345678"


def a_ticket(**kw):
    pred = {"intent": "refund_dispute", "is_complaint": True, "priority": "P1", "queue": "complaint",
            "slots": {"phone": PHONE, "amount": "300"}, "transcript": f"退款，电话{PHONE}"}
    return build_ticket(pred, ticket_id=new_ticket_id(), call_id=f"c-{new_ticket_id()}", caller=PHONE,
                        customer=Customer(phone=PHONE, region="华东"), policy=POLICY, **kw)


def notes(n: int) -> list:
    now = datetime.now(timezone.utc)
    out = [ticket_notification("ticket.p1", a_ticket(), now, target="complaint") for _ in range(n - 1)]
    out.append(event_notification("hotspot.spike", {"product": "洗衣机", "message": f"回拨 {PHONE}"}, now))
    return out


class Receiver:
    """A webhook receiver on 127.0.0.1: checks each signature with the secret of its path and records the events."""

    def __init__(self, port: int, secrets: dict[str, str], delay_s: float = 0.0):
        self.port, self.secrets, self.delay_s = port, secrets, delay_s
        self.got: list[dict] = []
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> "Receiver":
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(rec.delay_s)
                ok = verify_signature(rec.secrets[self.path], self.headers["X-Hotline-Timestamp"], body,
                                      self.headers["X-Hotline-Signature"], max_age_s=300)
                with rec.lock:
                    rec.got.append({"path": self.path, "id": self.headers["X-Hotline-Event-Id"], "ok": ok,
                                    "body": json.loads(body)})
                self.send_response(200 if ok else 401)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"errcode":0}')

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def ids(self, path: str | None = None) -> set[str]:
        with self.lock:
            return {g["id"] for g in self.got if path is None or g["path"] == path}


def hooks(port: int) -> list[Webhook]:
    return [Webhook("ops-json", f"http://127.0.0.1:{port}/json", "s3cret-a", "json"),
            Webhook("wecom-bot", f"http://127.0.0.1:{port}/wecom", "s3cret-b", "wecom", ("ticket.p1",))]


SECRETS = {"/json": "s3cret-a", "/wecom": "s3cret-b"}


# -- pure parts ---------------------------------------------------------------------------------------------------
def test_signatures_check_and_reject_tampering_other_secrets_and_old_timestamps():
    body = b'{"a":1}'
    ts = str(int(time.time()))
    sig = sign("k", ts, body)
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    assert verify_signature("k", ts, body, sig, max_age_s=60)
    assert not verify_signature("other", ts, body, sig)
    assert not verify_signature("k", ts, b'{"a":2}', sig)
    assert not verify_signature("k", str(int(ts) + 1), body, sig)
    assert not verify_signature("k", ts, body, None)
    old = str(int(time.time()) - 3600)
    assert verify_signature("k", old, body, sign("k", old, body))
    assert not verify_signature("k", old, body, sign("k", old, body), max_age_s=300)


def test_payload_formats_and_no_phone_number_in_clear():
    n = ticket_notification("ticket.escalated", a_ticket(), datetime.now(timezone.utc), target="director",
                            escalation={"level": 1, "to": "director", "automatic": True})
    spike = event_notification("hotspot.spike", {"message": f"call back {PHONE} or 0571-88889999123"},
                               datetime.now(timezone.utc))
    for note in (n, spike):
        for fmt in ("json", "wecom", "dingtalk"):
            body = render(note.payload, fmt).decode("utf-8")
            assert PHONE not in body and "88889999123" not in body, (fmt, body)
    j = json.loads(render(n.payload, "json"))
    assert j["event_id"] == n.event_id and j["kind"] == "ticket.escalated" and j["ticket"]["caller"] == "138****5678"
    assert j["ticket"]["region"] == "华东" and j["escalation"]["to"] == "director"
    w = json.loads(render(n.payload, "wecom"))
    assert w["msgtype"] == "markdown" and "工单升级" in w["markdown"]["content"] and "director" in w["markdown"]["content"]
    d = json.loads(render(n.payload, "dingtalk"))
    assert d["msgtype"] == "markdown" and d["markdown"]["title"] == "工单升级" and n.event_id in d["markdown"]["text"]


def test_backoff_grows_is_capped_and_jittered():
    c = RelayConfig(backoff_base_s=10, backoff_factor=2, backoff_cap_s=60, jitter=0.0)
    assert [backoff_delay(a, c) for a in (1, 2, 3, 4, 5)] == [10, 20, 40, 60, 60]
    cj = RelayConfig(backoff_base_s=10, backoff_factor=2, backoff_cap_s=1000, jitter=0.2)
    ds = [backoff_delay(2, cj) for _ in range(200)]
    assert 16 <= min(ds) < max(ds) <= 24
    with pytest.raises(ValueError):
        RelayConfig(backoff_factor=0.5).check()


def test_webhooks_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HOTLINE_WEBHOOKS", '[{"url": "http://x/h", "secret": "s", "format": "dingtalk", '
                                           '"kinds": ["ticket.p1"]}]')
    (w,) = load_webhooks()
    assert (w.name, w.format, w.wants("ticket.p1"), w.wants("hotspot.spike")) == ("webhook-0", "dingtalk", True, False)
    f = tmp_path / "hooks.yaml"
    f.write_text("- {name: a, url: 'http://x', secret: s}\n- {name: b, url: 'http://y', secret: t, format: wecom}\n")
    assert [h.name for h in load_webhooks(str(f))] == ["a", "b"]
    for bad in ('[{"url": "http://x"}]', '[{"url": "u", "secret": "s", "format": "xml"}]', "/no/such/file.yaml"):
        with pytest.raises(ValueError):
            load_webhooks(bad)


# -- delivery -----------------------------------------------------------------------------------------------------
def test_a_receiver_down_then_up_gets_every_event_signed(store):
    port = free_port()
    sent = notes(5)
    store.add_notifications(sent)
    relay = Relay(store, hooks(port), FAST)
    r = relay.run_once()  # nobody listens: connection refused
    assert len(r.failed) == 5 and not r.delivered
    pending = store.list_outbox("pending")
    assert all(i.attempts == 1 and "ConnectError" in (i.last_error or "") for i in pending)
    assert all(i.next_attempt_at > i.created_at for i in pending)
    receiver = Receiver(port, SECRETS).start()
    try:
        deadline = time.time() + 20
        while store.list_outbox("pending") and time.time() < deadline:
            relay.run_once()
            time.sleep(0.02)
    finally:
        receiver.stop()
        relay.close()
    assert store.list_outbox("pending") == []
    ids = {n.event_id for n in sent}
    assert receiver.ids("/json") == ids  # every event, each id at least once
    assert receiver.ids("/wecom") == {n.event_id for n in sent if n.kind == "ticket.p1"}  # the kinds it wants
    assert all(g["ok"] for g in receiver.got)
    assert all(PHONE not in json.dumps(g["body"], ensure_ascii=False) for g in receiver.got)
    delivered = store.list_outbox("delivered")
    assert {i.event_id for i in delivered} == ids
    assert all(set(i.delivered_to) == ({"ops-json", "wecom-bot"} if i.kind == "ticket.p1" else {"ops-json"})
               for i in delivered)


def test_rows_park_after_max_attempts_and_an_admin_retry_delivers_them(store):
    port = free_port()
    store.add_notifications(notes(2))
    cfg = RelayConfig(backoff_base_s=60, backoff_factor=2, backoff_cap_s=600, jitter=0, max_attempts=3,
                      lease_s=30, timeout_s=2, batch=10)
    relay = Relay(store, hooks(port)[:1], cfg)
    now = datetime.now(timezone.utc)
    assert len(relay.run_once(now).failed) == 2
    assert relay.run_once(now + timedelta(seconds=30)).claimed == 0  # backoff: not due before 60 s
    assert len(relay.run_once(now + timedelta(seconds=61)).failed) == 2  # 2nd attempt; next after 120 s more
    assert len(relay.run_once(now + timedelta(seconds=200)).parked) == 2
    assert relay.run_once(now + timedelta(days=1)).claimed == 0  # parked rows wait for an admin
    parked = store.list_outbox("parked")
    assert len(parked) == 2 and all(p.attempts == 3 and p.state == "parked" for p in parked)
    again = store.retry_outbox(parked[0].id)
    assert again.state == "pending" and again.attempts == 0
    receiver = Receiver(port, SECRETS).start()
    try:
        assert relay.run_once().delivered == [parked[0].event_id]
    finally:
        receiver.stop()
        relay.close()
    assert [p.id for p in store.list_outbox("parked")] == [parked[1].id]
    with pytest.raises(ValueError, match="delivered"):
        store.retry_outbox(parked[0].id)


def test_two_relays_claim_disjoint_rows(store_url):
    a, b = Store(store_url), Store(store_url)
    a.upgrade()
    a.add_notifications(notes(12))
    now = datetime.now(timezone.utc)
    barrier = threading.Barrier(2)
    got: dict[str, list] = {}

    def claim(name: str, s: Store) -> None:
        barrier.wait(10)
        got[name] = s.claim_outbox(now, limit=8, lease_s=30)

    ts = [threading.Thread(target=claim, args=(n, s)) for n, s in (("a", a), ("b", b))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    ids_a, ids_b = {i.id for i in got["a"]}, {i.id for i in got["b"]}
    assert not ids_a & ids_b and len(ids_a | ids_b) == 12
    assert a.claim_outbox(now, limit=8) == []  # all leased, owners alive
    stale = got["a"][0]
    assert not b.record_delivery(stale.__class__(**{**stale.__dict__, "lease_token": "not-mine"}), now, [],
                                 done=True)  # a lost lease records nothing
    assert a.claim_outbox(now + timedelta(seconds=31), limit=20).__len__() == 12  # expired leases: taken over
    a.close()
    b.close()


def test_a_relay_killed_mid_delivery_loses_nothing(store_url):
    port = free_port()
    store = Store(store_url)
    store.upgrade()
    sent = notes(8)
    store.add_notifications(sent)
    receiver = Receiver(port, SECRETS, delay_s=0.15).start()
    env = {**os.environ, "HOTLINE_WEBHOOKS": json.dumps([{"name": "ops-json", "url": f"http://127.0.0.1:{port}/json",
                                                          "secret": "s3cret-a"}]),
           "HOTLINE_OUTBOX_BATCH": "3", "HOTLINE_OUTBOX_LEASE_S": "600", "HOTLINE_OUTBOX_BACKOFF_BASE_S": "0.05",
           "HOTLINE_OUTBOX_BACKOFF_CAP_S": "0.2", "HOTLINE_SCHEDULER_INTERVAL_S": "0.05"}
    cmd = [sys.executable, "-m", "serving.outbox", "--database-url", store_url]

    def start():
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    ids = {n.event_id for n in sent}
    try:
        proc = start()
        deadline = time.time() + 60
        while len(receiver.got) < 2 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.01)
        assert proc.poll() is None, proc.stderr.read().decode()
        proc.send_signal(signal.SIGKILL)  # mid-delivery: rows claimed (leased for 600 s), some not recorded
        proc.wait(10)
        assert receiver.ids() != ids, "the relay finished before it was killed; the test proves nothing"
        assert store.list_outbox("pending"), "nothing left to deliver after the kill"
        proc = start()  # the restart takes the dead process's leases over at once
        deadline = time.time() + 60
        while (receiver.ids() != ids or store.list_outbox("pending")) and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    finally:
        receiver.stop()
    assert receiver.ids() == ids  # every event arrived, each id at least once
    assert all(g["ok"] for g in receiver.got)
    assert store.list_outbox("pending") == [] and {i.event_id for i in store.list_outbox("delivered")} == ids
    store.close()


def test_admin_sees_parked_rows_and_retries_them_over_http(store, monkeypatch):
    from types import SimpleNamespace

    from fastapi.testclient import TestClient

    import serving.api as api
    from serving.escalation import Clock

    monkeypatch.setattr(api, "runtime", lambda: SimpleNamespace(store=store, clock=Clock(), policy=POLICY))
    client = TestClient(api.app)
    admin = {"Authorization": f"Bearer {store.create_key('admin')[1]}"}
    agent = {"Authorization": f"Bearer {store.create_key('agent')[1]}"}
    store.add_notifications(notes(2))
    now = datetime.now(timezone.utc)
    first = store.claim_outbox(now, limit=1)[0]
    assert store.record_delivery(first, now, [], done=False, error="HTTP 500", park=True)
    r = client.get("/admin/outbox?state=parked", headers=admin)
    assert r.status_code == 200, r.text
    (row,) = r.json()["outbox"]
    assert (row["id"], row["state"], row["attempts"], row["last_error"]) == (first.id, "parked", 1, "HTTP 500")
    assert PHONE not in r.text
    assert client.get("/admin/outbox?state=pending", headers=admin).json()["outbox"].__len__() == 1
    assert client.get("/admin/outbox?state=parked", headers=agent).status_code == 403
    assert client.get("/admin/outbox?state=lost", headers=admin).status_code == 422
    r = client.post(f"/admin/outbox/{first.id}/retry", headers=admin)
    assert r.status_code == 200 and r.json()["state"] == "pending" and r.json()["attempts"] == 0
    assert client.post("/admin/outbox/999999/retry", headers=admin).status_code == 404
    assert client.post(f"/admin/outbox/{first.id}/retry", headers=agent).status_code == 403
    assert [e.action for e in store.audit_entries()][:2] == ["outbox.retry", "outbox.list"]
