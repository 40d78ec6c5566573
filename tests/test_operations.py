"""Ticket operations (issue 12): quality checks stored with every call ticket, complaint hotspots with one spike
notification per spike, satisfaction requests and CSAT, email/chat/WeChat tickets, recordings and transcripts
encrypted at rest with a retention purge, and no phone number or order id unmasked in the logs.

Store-level tests run on SQLite and PostgreSQL (the ``store`` fixture); HTTP tests drive serving/api.py's FastAPI app
with a small fake runtime (a real Store, the real Runtime.create_ticket, a canned pipeline) so no model is loaded.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from sqlalchemy import text as sql

from models.decisions import load_policy
from models.ticket import build_ticket, content_hash
from serving.crypto import Cipher, generate_key, purge_due
from serving.operations import (
    OperationsConfig,
    OperationsScheduler,
    check_hotspots,
    csat_report,
    qa_analytics,
    qa_record,
    with_qa,
)
from serving.store import Claim, Store, new_ticket_id

POLICY = load_policy()
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)
PHONE = "13812345678"
ORDER = "20240518001"
CLEAN_CALL = [
    {"channel": "agent", "start": 0.0, "end": 2.0, "text": "您好，很高兴为您服务，请问有什么可以帮您？"},
    {"channel": "customer", "start": 2.5, "end": 6.0, "text": "我的洗衣机坏了，用了两天就坏了，我要投诉"},
    {"channel": "agent", "start": 6.5, "end": 9.0, "text": "好的，已经为您登记了，我们会尽快处理。"},
    {"channel": "agent", "start": 9.5, "end": 11.0, "text": "感谢您的来电，祝您生活愉快，再见！"},
]
RUDE_CALL = [
    {"channel": "agent", "start": 0.0, "end": 1.0, "text": "喂，说吧。"},
    {"channel": "customer", "start": 1.5, "end": 5.0, "text": "我的洗衣机坏了，用了两天就坏了，我要投诉"},
    {"channel": "agent", "start": 5.5, "end": 7.0, "text": "这个我不知道，你问别人去。"},
    {"channel": "agent", "start": 7.5, "end": 8.5, "text": "行了，挂了。"},
]


def prediction(segments=CLEAN_CALL, **kw) -> dict:
    pred = {"intent": "product_quality", "is_complaint": True, "priority": "P2", "queue": "complaint",
            "skill": "product", "slots": {"product": "洗衣机", "order_id": ORDER},
            "segments": [dict(s) for s in segments], "emotion": "neutral"}
    pred.update(kw)
    return pred


def create(store: Store, call_id: str, *, created_at: datetime = T0, caller: str | None = PHONE, agent=None,
           recording: bytes | None = None, channel: str = "phone", **kw):
    pred = prediction(**kw)
    got = store.claim(call_id, content_hash(text=call_id))
    assert isinstance(got, Claim)
    ticket = build_ticket(pred, ticket_id=new_ticket_id(), call_id=call_id, caller=caller, channel=channel,
                          created_at=created_at, policy=POLICY)
    qa = qa_record(ticket, agent)
    return store.finish(got, with_qa(ticket, qa), actor="platform-1", qa=qa, recording=recording)


@pytest.fixture
def key(monkeypatch):
    k = generate_key()
    monkeypatch.setenv("HOTLINE_ENCRYPTION_KEY", k)
    return k


def raw_bytes(store: Store) -> bytes:
    """Everything the database holds, as bytes: the SQLite file (and its WAL), or a PostgreSQL dump of our tables."""
    if store.backend == "sqlite":
        p = store.sqlite_path
        return b"".join(f.read_bytes() for f in (p, p.with_name(p.name + "-wal")) if f.exists())
    out = []
    with store.engine.connect() as conn:
        for table in ("tickets", "ticket_events", "qa_results", "recordings", "outbox"):
            for row in conn.execute(sql(f"SELECT * FROM {table}")):
                out.append(repr(tuple(row)).encode("utf-8"))
                out += [bytes(v) for v in row if isinstance(v, (bytes, memoryview))]
                out += [str(v).encode("utf-8") for v in row]
    return b"\n".join(out)


# -- quality checks ------------------------------------------------------------------------------------------------
def test_every_call_ticket_gets_its_quality_check_stored_in_the_same_transaction(store):
    good = create(store, "call-good", agent="agent-7")
    bad = create(store, "call-bad", agent="agent-9", segments=RUDE_CALL)
    assert good.qa["passed"] is True and good.qa["violations"] == [] and good.qa["agent"] == "agent-7"
    assert bad.qa["passed"] is False
    rules = {v["rule"] for v in bad.qa["violations"]}
    assert {"greeting", "closing", "forbidden"} <= rules
    forbidden = [v for v in bad.qa["violations"] if v["rule"] == "forbidden"]
    assert forbidden[0]["start"] == 5.5 and "text" not in forbidden[0]  # evidence and time, no turn text
    stored = store.qa_result(bad.id)
    assert stored["agent"] == "agent-9" and stored["score"] == bad.qa["score"] and not stored["passed"]
    assert any(v["text"] == "这个我不知道，你问别人去。" for v in stored["result"]["violations"])
    assert store.get_ticket(bad.id).qa == bad.qa  # the summary is part of the ticket
    # a message is not checked
    msg = create(store, "msg-1", channel="chat", segments=[], message="洗衣机坏了")
    assert msg.qa is None and store.qa_result(msg.id) is None
    report = qa_analytics(store)
    assert report["calls_checked"] == 2
    by_agent = {a["agent"]: a for a in report["agents"]}
    assert by_agent["agent-7"]["passed"] == 1 and by_agent["agent-9"]["failed"] == 1
    assert by_agent["agent-9"]["violations"]["forbidden"] == 1
    assert {c["ticket_id"] for c in report["calls"]} == {good.id, bad.id}


def test_a_failed_ticket_transaction_stores_no_quality_check(store):
    t = create(store, "call-once", agent="a")
    got = store.claim("call-twice", content_hash(text="call-twice"))
    ticket = build_ticket(prediction(), ticket_id=t.id, call_id="call-twice", created_at=T0, policy=POLICY)
    qa = qa_record(ticket, "b")
    with pytest.raises(ValueError, match="is taken"):
        store.finish(got, ticket, actor="p", qa=qa)  # the ticket id collides: nothing of it is written
    assert [r["agent"] for r in store.qa_results()] == ["a"]


# -- hotspots ------------------------------------------------------------------------------------------------------
def _complaint(store: Store, i: int, at: datetime, product: str) -> None:
    create(store, f"hot-{product}-{i}", created_at=at, caller=f"139{i:08d}", slots={"product": product},
           segments=[])


def test_a_burst_of_one_products_complaints_raises_one_spike_notification(store):
    now = T0 + timedelta(days=7)
    for i in range(6):  # a quiet history: one 空调 complaint a day
        _complaint(store, i, now - timedelta(days=i + 1, hours=3), "空调")
    for i in range(8):  # the burst: eight 洗衣机 complaints in the last hour
        _complaint(store, 100 + i, now - timedelta(minutes=50 - 5 * i), "洗衣机")
    rep = check_hotspots(store, now, "1h", 6)
    assert any(a["dimension"] == "product" and a["key"] == "洗衣机" for a in rep["alerts"])
    assert {(n["dimension"], n["key"]) for n in rep["notified"]} >= {("product", "洗衣机")}
    spikes = store.list_outbox("all", kind="hotspot.spike")
    assert sum(1 for o in spikes if o.payload["key"] == "洗衣机") == 1
    # the same request again, and the scheduler a minute later: no second notification
    again = check_hotspots(store, now, "1h", 6)
    assert again["alerts"] and again["notified"] == []
    sched = OperationsScheduler(store, SimpleNamespace(now=lambda: now + timedelta(minutes=1)),
                                OperationsConfig(hotspot_window="1h", hotspot_history=6, retention_days=None))
    assert sched.tick()["alerts"] == 0
    assert len(store.list_outbox("all", kind="hotspot.spike")) == len(spikes)
    assert len(store.hotspot_alerts()) == len(spikes)
    payload = [o for o in spikes if o.payload["key"] == "洗衣机"][0].payload
    assert payload["dimension"] == "product" and payload["count"] == 8 and payload["p_value"] < 0.01


def test_the_same_volume_spread_evenly_raises_no_spike(store):
    now = T0 + timedelta(days=7)
    n = 0
    for w in range(7):  # two 洗衣机 complaints in each of the seven hourly windows: 14 in all, none a burst
        for k in range(2):
            _complaint(store, n, now - timedelta(hours=w, minutes=10 + 20 * k), "洗衣机")
            n += 1
    rep = check_hotspots(store, now, "1h", 6)
    assert rep["alerts"] == [] and rep["notified"] == []
    assert rep["counts"]["product"] == {"洗衣机": 2}
    assert store.list_outbox("all", kind="hotspot.spike") == []


def test_two_workers_announce_a_spike_once(store_url):
    import threading

    s0 = Store(store_url)
    s0.upgrade()
    now = T0 + timedelta(days=1)
    for i in range(8):
        _complaint(s0, i, now - timedelta(minutes=40 - i), "冰箱")
    barrier = threading.Barrier(2)
    results, errors = [], []

    def work() -> None:
        s = Store(store_url)
        try:
            barrier.wait(timeout=30)
            results.append(check_hotspots(s, now, "1h", 6))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        finally:
            s.close()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    fridge = [o for o in s0.list_outbox("all", kind="hotspot.spike") if o.payload["key"] == "冰箱"]
    assert len(fridge) == 1
    s0.close()


# -- satisfaction --------------------------------------------------------------------------------------------------
def test_resolving_asks_for_satisfaction_and_csat_groups_the_scores(store):
    a = create(store, "csat-a", agent="agent-1")
    b = create(store, "csat-b", agent="agent-2", intent="logistics", queue="general")
    store.add_event(a.id, "resolve", "agent-1", {"resolution": "换新"})
    reqs = store.list_outbox("all", kind="ticket.satisfaction_request")
    assert len(reqs) == 1 and reqs[0].ticket_id == a.id
    p = reqs[0].payload
    assert p["callback"]["path"] == f"/tickets/{a.id}/events" and p["callback"]["body"]["type"] == "satisfaction"
    assert p["call_id"] == "csat-a" and PHONE not in str(p) and p["ticket"]["caller"] == "138****5678"
    store.add_event(a.id, "satisfaction", "platform-1", {"score": 5})
    store.add_event(b.id, "assign", "sup", {"assignee": "agent-3"})
    store.add_event(b.id, "resolve", "agent-3", {})
    store.add_event(b.id, "satisfaction", "platform-1", {"score": 2})
    store.add_event(b.id, "reopen", "agent-3", {})
    store.add_event(b.id, "resolve", "agent-3", {})  # scored already: not asked again
    assert len(store.list_outbox("all", kind="ticket.satisfaction_request")) == 2
    rep = csat_report(store)
    assert rep["overall"] == {"responses": 2, "mean": 3.5, "satisfied_share": 0.5}
    assert rep["by_agent"] == {"agent-1": {"responses": 1, "mean": 5.0, "satisfied_share": 1.0},
                               "agent-3": {"responses": 1, "mean": 2.0, "satisfied_share": 0.0}}
    assert set(rep["by_queue"]) == {a.queue, b.queue} and set(rep["by_intent"]) == {"product_quality", "logistics"}


# -- encryption at rest and retention ------------------------------------------------------------------------------
AUDIO = b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(range(256)) * 8


def test_recordings_and_transcripts_are_encrypted_at_rest(store_url, key):
    store = Store(store_url, cipher=Cipher.from_env(required=False))
    store.upgrade()
    t = create(store, "enc-1", recording=AUDIO, segments=RUDE_CALL, agent="agent-9")
    m = create(store, "enc-2", channel="chat", segments=[], message="我的洗衣机坏了，快给我处理")
    assert store.get_ticket(t.id).transcript[2].text == "这个我不知道，你问别人去。"
    assert store.get_ticket(m.id).text == "我的洗衣机坏了，快给我处理"
    assert store.recording(t.id) == AUDIO
    assert store.qa_result(t.id)["result"]["violations"][1]["text"] in {s["text"] for s in RUDE_CALL}
    raw = raw_bytes(store)
    assert AUDIO[20:200] not in raw
    for s in RUDE_CALL + [{"text": "我的洗衣机坏了，快给我处理"}]:
        for form in (s["text"].encode("utf-8"), s["text"].encode("unicode_escape")):
            assert form not in raw, s["text"]
    # without the key the ticket reads, its texts say they are encrypted
    blind = Store(store_url)
    assert blind.get_ticket(t.id).transcript[0].text.startswith("[encrypted")
    store.close()
    blind.close()


def test_without_a_key_no_recording_is_kept(store):
    t = create(store, "plain-1", recording=AUDIO)
    assert store.recordings() == [] and store.recording(t.id) is None
    assert store.get_ticket(t.id).transcript[0].text == CLEAN_CALL[0]["text"]


def test_purge_deletes_only_due_recordings(store_url, key):
    store = Store(store_url, cipher=Cipher(key))
    store.upgrade()
    old = create(store, "rec-old", created_at=T0 - timedelta(days=91), recording=AUDIO)
    edge = create(store, "rec-edge", created_at=T0 - timedelta(days=90), recording=AUDIO)
    new = create(store, "rec-new", created_at=T0 - timedelta(days=89, hours=23), recording=AUDIO)
    done = store.purge_recordings(T0, 90)
    assert sorted(done) == sorted([old.id, edge.id])
    for r in store.recordings():
        assert r["stored"] == (not purge_due(r["created_at"], 90, T0))
    assert store.recording(old.id) is None and store.recording(new.id) == AUDIO
    assert store.purge_recordings(T0, 90) == []  # idempotent
    assert store.get_ticket(old.id) is not None  # the ticket stays
    store.close()


def test_cli_purge(store_url, key, capsys):
    from training.cli import main

    store = Store(store_url, cipher=Cipher(key))
    store.upgrade()
    old = create(store, "cli-old", created_at=T0 - timedelta(days=40), recording=AUDIO)
    create(store, "cli-new", created_at=T0 - timedelta(days=10), recording=AUDIO)
    rc = main(["purge", "--now", T0.isoformat(), "--retention-days", "30", "--database-url", store_url])
    assert rc == 0
    assert "purged 1 recording" in capsys.readouterr().out
    assert [r["ticket_id"] for r in store.recordings() if not r["stored"]] == [old.id]
    store.close()


# -- logs ----------------------------------------------------------------------------------------------------------
def test_the_masking_filter_masks_phones_and_order_ids():
    from serving.logs import MaskingFilter, mask_digits

    assert mask_digits(f"caller {PHONE} order {ORDER} id 1234567") == "caller 138****5678 order 202******01 id 1234567"
    rec = logging.LogRecord("hotline.x", logging.INFO, __file__, 1, "a %s b %s", (PHONE, ORDER), None)
    MaskingFilter().filter(rec)
    assert rec.getMessage() == "a 138****5678 b 202******01"


# -- over HTTP (serving/api.py with a fake runtime: the real store and Runtime.create_ticket, a canned pipeline) ---
EMAIL = (
    "From: =?utf-8?b?5p2O6Zu3?= <li.lei@example.com>\r\n"
    "To: service@example.com\r\n"
    "Subject: =?utf-8?b?5rSX6KGj5py65Z2P5LqG77yM6KaB5oqV6K+J?=\r\n"  # 洗衣机坏了，要投诉
    "Date: Tue, 01 Dec 2026 09:30:00 +0800\r\n"
    "Message-ID: <m1@example.com>\r\n"
    "MIME-Version: 1.0\r\n"
    'Content-Type: multipart/alternative; boundary="b1"\r\n'
    "\r\n"
    "--b1\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "5rSX6KGj5py655So5LqG5Lik5aSp5bCx5Z2P5LqG77yM6K+35bC95b+r5aSE55CG44CC\r\n"  # 洗衣机用了两天就坏了，请尽快处理。
    "--b1\r\n"
    "Content-Type: text/html; charset=utf-8\r\n"
    "\r\n"
    "<p>HTML version</p>\r\n"
    "--b1--\r\n"
)


def wav(seconds: float = 1.5, rate: int = 16000) -> bytes:
    import io

    import numpy as np
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    a = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 330 * t)]).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, a.T, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


class FakeRuntime:
    """What serving/api.py needs of serving.runtime.Runtime, with Runtime.create_ticket itself over a canned
    pipeline: calls are heard as CLEAN_CALL (or ``self.segments``), messages are read as sent."""

    def __init__(self, store: Store):
        from serving.escalation import Clock
        from serving.runtime import Runtime
        from serving.settings import Settings

        self.store, self.policy, self.settings, self.clock = store, POLICY, Settings(), Clock()
        self._absent: list[str] = []
        self.segments = CLEAN_CALL
        self.seen: list[dict] = []
        self.create_ticket = Runtime.create_ticket.__get__(self)
        self.customer_profile = Runtime.customer_profile.__get__(self)

    def model_versions(self) -> dict:
        return {}

    async def process(self, record: dict) -> dict:
        self.seen.append(dict(record))
        if record.get("text") is not None:
            return prediction(segments=[], message=record["text"], transcript=record["text"])
        return prediction(segments=self.segments, transcript=" ".join(s["text"] for s in self.segments))


@pytest.fixture
def http(tmp_path, monkeypatch, key):
    from fastapi.testclient import TestClient

    import serving.api as api

    store = Store(f"sqlite:///{tmp_path / 'hotline.db'}", cipher=Cipher.from_env(required=False))
    store.upgrade()
    rt = FakeRuntime(store)
    monkeypatch.setattr(api, "runtime", lambda: rt)
    keys = {role: store.create_key(role, f"{role}-1") for role in ("platform", "agent", "supervisor", "admin")}
    h = {role: {"Authorization": f"Bearer {secret}"} for role, (_, secret) in keys.items()}
    yield SimpleNamespace(client=TestClient(api.app), rt=rt, store=store, h=h, keys=keys)
    store.close()


def test_a_call_over_http_gets_its_qa_an_encrypted_recording_and_masked_logs(http, caplog):
    from serving import logs

    logs.install()
    caplog.set_level(logging.INFO)
    audio = wav()
    form = {"call_id": "c-http-1", "caller": PHONE, "agent": "agent-7"}
    r = http.client.post("/tickets", headers=http.h["platform"], data=form,
                         files={"audio": ("call.wav", audio, "audio/wav")})
    assert r.status_code == 201, r.text
    t = r.json()
    assert t["qa"]["passed"] is True and t["qa"]["agent"] == "agent-7" and t["qa"]["score"] == 100.0
    assert http.store.qa_result(t["id"])["agent"] == "agent-7"
    assert http.store.recording(t["id"]) == audio
    raw = raw_bytes(http.store)
    assert audio[100:400] not in raw and CLEAN_CALL[1]["text"].encode("utf-8") not in raw
    # the same call again: the same ticket with its check
    again = http.client.post("/tickets", headers=http.h["platform"], data=form,
                             files={"audio": ("call.wav", audio, "audio/wav")})
    assert again.status_code == 200 and again.json()["id"] == t["id"] and again.json()["qa"] == t["qa"]
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    assert f"ticket {t['id']} created" in logged
    assert PHONE not in logged and ORDER not in logged
    assert "138****5678" in logged and "202******01" in logged


def test_an_email_with_an_encoded_word_subject_becomes_a_ticket_with_its_sender_as_caller(http):
    r = http.client.post("/tickets", headers=http.h["platform"],
                         data={"call_id": "mail-1", "channel": "email", "text": EMAIL})
    assert r.status_code == 201, r.text
    t = http.store.get_ticket(r.json()["id"])
    assert t.caller == "li.lei@example.com" and t.channel == "email"
    assert t.text == "洗衣机坏了，要投诉\n洗衣机用了两天就坏了，请尽快处理。"
    assert http.rt.seen[-1]["text"] == t.text and t.qa is None
    assert "HTML" not in t.text
    again = http.client.post("/tickets", headers=http.h["platform"],
                             data={"call_id": "mail-1", "channel": "email", "text": EMAIL})
    assert again.status_code == 200 and again.json()["id"] == t.id
    other = http.client.post("/tickets", headers=http.h["platform"],
                             data={"call_id": "mail-1", "channel": "email", "text": EMAIL.replace("09:30", "09:31")})
    assert other.status_code == 422
    # chat and WeChat are read as text (WeChat's emoticon codes dropped)
    w = http.client.post("/tickets", headers=http.h["platform"],
                         data={"call_id": "wx-1", "channel": "wechat", "text": "[微笑]洗衣机坏了[捂脸]", "caller": PHONE})
    assert w.status_code == 201 and http.store.get_ticket(w.json()["id"]).text == "洗衣机坏了"
    empty = http.client.post("/tickets", headers=http.h["platform"],
                             data={"call_id": "wx-2", "channel": "wechat", "text": "[微笑]"})
    assert empty.status_code == 422 and "no text" in empty.json()["error"]


def test_satisfaction_from_the_platform_and_the_analytics_endpoints(http):
    c = http.client
    tid = c.post("/tickets", headers=http.h["platform"], data={"call_id": "s-1", "caller": PHONE, "agent": "agent-7"},
                 files={"audio": ("call.wav", wav(), "audio/wav")}).json()["id"]
    assert c.post(f"/tickets/{tid}/events", headers=http.h["platform"],
                  json={"type": "comment", "text": "x"}).status_code == 403
    assert c.post(f"/tickets/{tid}/events", headers=http.h["admin"],
                  json={"type": "satisfaction", "score": 5}).status_code == 403
    assert c.post(f"/tickets/{tid}/events", headers=http.h["agent"], json={"type": "resolve"}).status_code == 200
    req = http.store.list_outbox("all", kind="ticket.satisfaction_request")
    assert [o.ticket_id for o in req] == [tid] and PHONE not in str(req[0].payload)
    assert c.post(f"/tickets/{tid}/events", headers=http.h["platform"],
                  json={"type": "satisfaction", "score": 9}).status_code == 422
    r = c.post(f"/tickets/{tid}/events", headers=http.h["platform"], json={"type": "satisfaction", "score": 4})
    assert r.status_code == 200 and r.json()["satisfaction"] == 4
    # another platform's key does not see the ticket
    _, other = http.store.create_key("platform", "other")
    assert c.post(f"/tickets/{tid}/events", headers={"Authorization": f"Bearer {other}"},
                  json={"type": "satisfaction", "score": 1}).status_code == 404
    csat = c.get("/analytics/csat", headers=http.h["supervisor"])
    assert csat.status_code == 200, csat.text
    assert csat.json()["by_agent"] == {"agent-7": {"responses": 1, "mean": 4.0, "satisfied_share": 1.0}}
    assert c.get("/analytics/csat", headers=http.h["agent"]).status_code == 403
    qa = c.get("/analytics/qa?by=agent", headers=http.h["supervisor"]).json()
    assert qa["agents"][0]["agent"] == "agent-7" and qa["calls"][0]["ticket_id"] == tid
    assert "agents" not in c.get("/analytics/qa?by=call", headers=http.h["supervisor"]).json()
    assert c.get("/analytics/qa?by=queue", headers=http.h["supervisor"]).status_code == 422
    hot = c.get("/analytics/hotspots?window=1d&history=6", headers=http.h["supervisor"])
    assert hot.status_code == 200, hot.text
    assert hot.json()["window"] == "1d" and hot.json()["counts"]["product"] == {"洗衣机": 1}
    assert c.get("/analytics/hotspots?window=soon", headers=http.h["supervisor"]).status_code == 422
    assert c.get("/analytics/hotspots", headers=http.h["platform"]).status_code == 403


def test_post_qa_checks_one_call_without_storing_it(http):
    c = http.client
    r = c.post("/qa", headers=http.h["agent"], json={"segments": RUDE_CALL + [
        {"channel": "agent", "start": 9.0, "end": 10.0, "text": f"回拨号码{PHONE}"}]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["passed"] is False and body["stored"] is False
    assert {v["rule"] for v in body["violations"]} >= {"greeting", "forbidden"}
    assert PHONE not in r.text  # turn texts masked for an agent
    assert http.store.qa_results() == []
    r = c.post("/qa", headers=http.h["platform"], files={"audio": ("call.wav", wav(), "audio/wav")})
    assert r.status_code == 200 and r.json()["passed"] is True
    assert c.post("/qa", headers=http.h["agent"], json={"segments": []}).status_code == 422
    assert c.post("/qa", headers=http.h["admin"], json={"segments": CLEAN_CALL}).status_code == 403


def test_the_service_says_when_it_stores_plaintext(tmp_path):
    from serving.operations import encryption_status

    with Store(f"sqlite:///{tmp_path / 'a.db'}") as plain:
        assert encryption_status(plain)["at_rest"] is False
        assert "not stored" in encryption_status(plain)["recordings"]
    with Store(f"sqlite:///{tmp_path / 'b.db'}", cipher=Cipher(generate_key())) as enc:
        assert encryption_status(enc) == {"at_rest": True, "recordings": "stored encrypted",
                                          "transcripts": "stored encrypted"}


def test_ticket_ids_and_uuids_are_not_masked_but_prefixed_order_ids_are():
    from serving.logs import mask_digits

    assert mask_digits("T-01a23af034558613a61cd8974633b9be") == "T-01a23af034558613a61cd8974633b9be"
    assert mask_digits("订单JD2024051800123已退款") == "订单JD202********23已退款"


def test_the_operations_scheduler_purges_and_reads_regions_from_profiles(store_url, key, monkeypatch):
    from serving.operations import start_background

    store = Store(store_url, cipher=Cipher(key))
    store.upgrade()
    store.upsert_customer(PHONE, "李雷", 0, "华东")
    old = create(store, "sch-old", created_at=T0 - timedelta(days=3), recording=AUDIO)
    create(store, "sch-new", created_at=T0 - timedelta(minutes=5), recording=AUDIO)
    sched = OperationsScheduler(store, SimpleNamespace(now=lambda: T0),
                                OperationsConfig(retention_days=2, hotspot_window="1h", hotspot_history=6))
    assert sched.tick() == {"alerts": 0, "purged": 1}
    assert sched.tick() == {"alerts": 0, "purged": 0}  # neither is due again within its period
    assert [r["ticket_id"] for r in store.recordings() if not r["stored"]] == [old.id]
    assert sched.status()["purged"] == 1 and sched.status()["retention_days"] == 2
    rep = check_hotspots(store, T0, "1h", 6, notify=False)
    assert rep["counts"]["region"] == {"华东": 1} and rep["counts"]["product"] == {"洗衣机": 1}
    monkeypatch.setenv("HOTLINE_SCHEDULER_INTERVAL_S", "0")
    assert start_background(store, SimpleNamespace(now=lambda: T0)) is None
    monkeypatch.setenv("HOTLINE_RECORDING_RETENTION_DAYS", "forever")
    monkeypatch.setenv("HOTLINE_HOTSPOT_WINDOW", "1d")
    cfg = OperationsConfig.from_env()
    assert cfg.retention_days is None and cfg.hotspot_window == "1d"
    monkeypatch.setenv("HOTLINE_HOTSPOT_WINDOW", "soon")
    with pytest.raises(ValueError, match="HOTLINE_HOTSPOT_WINDOW"):
        OperationsConfig.from_env()
    store.close()
