"""SLA escalation (issue 12): steps stored with the ticket, carried out exactly once by any number of workers across
restarts with a moved clock, never for a resolved ticket; overdue lists; reprioritize; tiered response."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from models.decisions import load_policy, policy_from_dict, tier
from models.ticket import Customer, build_ticket, content_hash
from serving.escalation import Clock, Scheduler, run_due
from serving.outbox import new_ticket_notifications
from serving.store import Claim, Store, new_ticket_id

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)
POLICY = load_policy()


def prediction(**kw) -> dict:
    pred = {"intent": "product_quality", "is_complaint": True, "priority": "P2", "queue": "complaint",
            "skill": "product", "slots": {"product": "洗衣机", "phone": "13812345678"},
            "transcript": "洗衣机坏了，电话13812345678", "emotion": "neutral", "emotion_confidence": 0.9}
    pred.update(kw)
    return pred


def create(store: Store, call_id: str, *, created_at: datetime = T0, customer: Customer | None = None,
           **kw):
    pred = prediction(**kw)
    got = store.claim(call_id, content_hash(text=call_id))
    assert isinstance(got, Claim)
    level, rule = tier(pred, customer, POLICY)
    ticket = build_ticket(pred, ticket_id=new_ticket_id(), call_id=call_id, caller="13812345678",
                          created_at=created_at, customer=customer, policy=POLICY, tier=level, tier_rule=rule)
    return store.finish(got, ticket, actor="platform-1",
                        notifications=new_ticket_notifications(ticket, POLICY, created_at))


def escalate_events(store: Store, ticket_id: str) -> list:
    return [e for e in store.get_ticket(ticket_id).events if e.type == "escalate"]


def run_concurrently(url: str, now: datetime, workers: int = 2) -> list:
    """``workers`` threads, each with its own Store (its own connections), call run_due at the same moment."""
    barrier = threading.Barrier(workers)
    results: list = [None] * workers
    errors: list = []

    def work(i: int) -> None:
        s = Store(url)
        try:
            barrier.wait(timeout=30)
            results[i] = run_due(s, now)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        finally:
            s.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return [d for r in results for d in r]


def test_a_p2_complaint_escalates_once_at_2h_and_once_at_4h_across_a_restart_with_two_workers(store_url):
    store = Store(store_url)
    store.upgrade()
    t = create(store, "call-esc")
    assert [(e.to, e.at - T0) for e in t.sla.escalations] == [("supervisor", timedelta(hours=2)),
                                                                ("director", timedelta(hours=4))]
    steps = store.escalation_steps(t.id)
    assert [(s["level"], s["to"], s["done_at"]) for s in steps] == [(0, "supervisor", None), (1, "director", None)]
    clock = Clock()
    clock.set(T0 + timedelta(hours=1, minutes=59))
    assert run_due(store, clock.now()) == []

    clock.advance(minutes=1, seconds=1)  # 2 h: two workers at once
    done = run_concurrently(store_url, clock.now())
    assert [(d.ticket_id, d.level, d.to, d.outcome) for d in done] == [(t.id, 0, "supervisor", "escalated")]
    assert run_concurrently(store_url, clock.now() + timedelta(minutes=5)) == []  # a later tick: nothing again
    store.close()

    store = Store(store_url)  # "service restart": new objects on the same database, nothing kept in memory
    store.upgrade()
    clock.advance(hours=2)  # 4 h
    done = run_concurrently(store_url, clock.now())
    assert [(d.level, d.to, d.outcome) for d in done] == [(1, "director", "escalated")]
    clock.advance(hours=30)
    assert run_concurrently(store_url, clock.now()) == []

    events = escalate_events(store, t.id)
    assert [(e.data["level"], e.data["to"], e.data["automatic"], e.actor) for e in events] == [
        (0, "supervisor", True, "system"), (1, "director", True, "system")]
    got = store.get_ticket(t.id)
    assert got.status == "escalated"
    assert [s["outcome"] for s in store.escalation_steps(t.id)] == ["escalated", "escalated"]
    notes = store.list_outbox("all", kind="ticket.escalated")
    assert sorted(n.target for n in notes) == ["director", "supervisor"]
    assert all(n.ticket_id == t.id and "13812345678" not in str(n.payload) for n in notes)
    store.close()


def test_a_resolved_ticket_never_escalates(store):
    t = create(store, "call-resolved")
    store.add_event(t.id, "resolve", "agent-1", {})
    done = run_due(store, T0 + timedelta(hours=5))
    assert [(d.level, d.outcome) for d in done] == [(0, "cancelled"), (1, "cancelled")]
    assert escalate_events(store, t.id) == []
    assert store.get_ticket(t.id).status == "resolved"
    assert store.list_outbox("all", kind="ticket.escalated") == []
    store.add_event(t.id, "reopen", "agent-1", {})  # cancelled steps stay cancelled
    assert run_due(store, T0 + timedelta(hours=6)) == []


def test_overdue_lists_unfinished_tickets_past_due_or_escalated(store):
    late = create(store, "call-late")
    fine = create(store, "call-fine", created_at=T0 + timedelta(hours=3))
    done = create(store, "call-done")
    store.add_event(done.id, "resolve", "agent-1", {})
    at = T0 + timedelta(hours=2, minutes=1)
    assert store.list_tickets(overdue=True, now=at)[0] == []
    run_due(store, at)
    ids = {x.id for x in store.list_tickets(overdue=True, now=at)[0]}
    assert ids == {late.id}
    after_due = T0 + timedelta(hours=28)  # P2: due 24 h after creation (3 h + 24 h for "fine")
    ids = {x.id for x in store.list_tickets(overdue=True, now=after_due)[0]}
    assert ids == {late.id, fine.id}
    assert {x.id for x in store.list_tickets(overdue=False, now=at)[0]} == {fine.id, done.id}


def test_reprioritize_recomputes_the_deadlines_and_announces_p1(store):
    t = create(store, "call-repri")
    got = store.add_event(t.id, "reprioritize", "supervisor-1", {"priority": "P1"})
    assert got.priority == "P1" and got.status == "open"
    assert got.sla.due_at == T0 + timedelta(hours=4)
    assert [(e.to, e.at - T0) for e in got.sla.escalations] == [("supervisor", timedelta(minutes=30)),
                                                                  ("director", timedelta(hours=1))]
    assert [s["due_at"] - T0 for s in store.escalation_steps(t.id)] == [timedelta(minutes=30), timedelta(hours=1)]
    assert got.events[-1].data == {"priority": "P1", "from": "P2"}
    assert [n.ticket_id for n in store.list_outbox("all", kind="ticket.p1")] == [t.id]
    assert [d.to for d in run_due(store, T0 + timedelta(hours=1))] == ["supervisor", "director"]
    with pytest.raises(ValueError, match="priority"):
        store.add_event(t.id, "reprioritize", "supervisor-1", {"priority": "P9"})


def test_the_scheduler_object_ticks_with_its_clock(store):
    t = create(store, "call-tick")
    clock = Clock()
    clock.set(T0 + timedelta(hours=2))
    sched = Scheduler(store, clock, interval_s=3600)
    assert [d.to for d in sched.tick()] == ["supervisor"]
    sched.start()
    sched.stop()
    assert sched.status()["ticks"] >= 1 and sched.status()["running"] is False
    assert len(escalate_events(store, t.id)) == 1


def test_cli_escalations_run(store_url, capsys):
    from serving.cli import add_parsers
    import argparse

    s = Store(store_url)
    s.upgrade()
    t = create(s, "call-cli")
    ap = argparse.ArgumentParser()
    add_parsers(ap.add_subparsers(dest="cmd"))
    args = ap.parse_args(["escalations", "run", "--now", (T0 + timedelta(hours=4)).isoformat(),
                          "--database-url", store_url])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "2 escalation steps" in out and t.id in out
    assert len(escalate_events(s, t.id)) == 2
    s.close()


# -- tiered response ----------------------------------------------------------------------------------------------
def test_tier_rules_fire_in_order_and_ordinary_complaints_stay_first_line():
    assert tier(prediction(), None, POLICY) == ("first_line", None)
    assert tier(prediction(is_complaint=False, intent="consultation", slots={"amount": "9999"}), None,
                POLICY) == ("first_line", None)
    assert tier(prediction(slots={"amount": "5000"}), None, POLICY)[1] == "amount 5000 >= 5000"
    assert tier(prediction(slots={"amount": "4999.5"}), None, POLICY)[0] == "first_line"
    assert tier(prediction(emotion="angry", emotion_confidence=0.9), None, POLICY)[0] == "specialist"
    assert tier(prediction(emotion="angry", emotion_confidence=0.5), None, POLICY)[0] == "first_line"
    assert tier(prediction(), {"complaint_count": 3}, POLICY)[1].startswith("repeat complainant")
    assert tier(prediction(), Customer(phone="1", vip_level=3), POLICY)[1] == "VIP level 3 >= 3"
    assert tier(prediction(transcript="再不处理我就找媒体曝光"), None, POLICY)[1] == "regulator or media threat: 曝光"
    assert tier(prediction(complaint_evidence=["cue:12315"], transcript=""), None, POLICY)[1].endswith("12315")
    # a hotline number counts only as a whole number, never inside a phone number (13812345678 holds "12345")
    assert tier(prediction(transcript="我的电话13812345678"), None, POLICY) == ("first_line", None)
    assert tier(prediction(transcript="我要打12345热线"), None, POLICY)[1] == "regulator or media threat: 12345"
    raw = {k: v for k, v in __import__("yaml").safe_load(open(POLICY.source, encoding="utf-8")).items()}
    raw["tiers"]["major"]["intents"] = ["network_outage"]
    p2 = policy_from_dict(raw)
    assert tier(prediction(intent="network_outage"), None, p2) == ("specialist", "intent network_outage is always major")
    raw.pop("tiers")
    assert tier(prediction(slots={"amount": "99999"}), None, policy_from_dict(raw)) == ("first_line", None)


def test_a_major_complaint_goes_to_the_specialists_and_alerts_the_regional_manager(store):
    vip = Customer(phone="13812345678", vip_level=4, region="华东")
    t = create(store, "call-major", customer=vip)
    assert (t.tier, t.tier_rule, t.queue) == ("specialist", "VIP level 4 >= 3", "specialist")
    assert any("major complaint" in r for r in t.route_reasons)
    alerts = store.list_outbox("all", kind="ticket.tiered_alert")
    assert [(a.ticket_id, a.target) for a in alerts] == [(t.id, "east-manager")]
    assert alerts[0].payload["rule"] == "VIP level 4 >= 3"
    assert "13812345678" not in str(alerts[0].payload) and "138****5678" in str(alerts[0].payload)
    other = create(store, "call-major-2", customer=Customer(phone="13812345678", vip_level=5, region="火星"))
    assert store.list_outbox("all", kind="ticket.tiered_alert")[0].ticket_id == other.id
    assert store.list_outbox("all", kind="ticket.tiered_alert")[0].target == "regional-manager"
    plain = create(store, "call-plain")
    assert (plain.tier, plain.tier_rule, plain.queue) == ("first_line", None, "complaint")
    p1 = create(store, "call-p1", priority="P1")
    assert [n.ticket_id for n in store.list_outbox("all", kind="ticket.p1")] == [p1.id]


def test_outbox_rows_roll_back_with_the_ticket(store):
    """A creation that loses the race (the call_id got a ticket meanwhile) writes no outbox rows."""
    t = create(store, "call-race", priority="P1")
    stale = Claim(t.call_id, content_hash(text="call-race"), "h:1:1", T0, T0)
    pred = prediction(priority="P1")
    twin = build_ticket(pred, ticket_id=new_ticket_id(), call_id=t.call_id, created_at=T0, policy=POLICY)
    got = store.finish(stale, twin, actor="p", notifications=new_ticket_notifications(twin, POLICY, T0))
    assert got.id == t.id
    assert len(store.list_outbox("all", kind="ticket.p1")) == 1
    assert len(store.escalation_steps(t.id)) == 2


def test_get_tickets_overdue_over_http_with_the_moved_clock(store, monkeypatch):
    from types import SimpleNamespace

    from fastapi.testclient import TestClient

    import serving.api as api

    clock = Clock()
    from serving.settings import Settings

    monkeypatch.setattr(api, "runtime", lambda: SimpleNamespace(store=store, clock=clock, policy=POLICY,
                                                                settings=Settings()))
    client = TestClient(api.app)
    agent = {"Authorization": f"Bearer {store.create_key('agent')[1]}"}
    late = create(store, "call-http-late")
    clock.set(T0 + timedelta(hours=1))
    assert client.get("/tickets?overdue=true", headers=agent).json()["tickets"] == []
    clock.set(T0 + timedelta(hours=2, seconds=1))
    run_due(store, clock.now())
    r = client.get("/tickets?overdue=true", headers=agent)
    assert r.status_code == 200, r.text
    assert [t["id"] for t in r.json()["tickets"]] == [late.id]
    assert r.json()["tickets"][0]["status"] == "escalated"
    assert client.get("/tickets?overdue=false", headers=agent).json()["tickets"] == []
    ev = client.get(f"/tickets/{late.id}", headers=agent).json()["events"]
    assert [(e["type"], e["data"].get("to")) for e in ev] == [("created", None), ("escalate", "supervisor")]
    r = client.post(f"/tickets/{late.id}/events", headers=agent, json={"type": "reprioritize", "priority": "P1"})
    assert r.status_code == 200 and r.json()["priority"] == "P1"
    assert client.post(f"/tickets/{late.id}/events", headers=agent,
                       json={"type": "reprioritize", "priority": "P0"}).status_code == 422
