"""The ticket schema and the pure decisions behind it: SLA deadlines, waits, links, masking, the event state machine."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from models.decisions import (
    PolicyError,
    estimated_wait,
    link_earlier,
    load_policy,
    policy_from_dict,
    refers_to_earlier_contact,
    route,
    sla_deadlines,
)
from models.ticket import (
    Ticket,
    build_ticket,
    content_hash,
    mask_phone,
    mask_text,
    masked,
    next_status,
    summary_text,
)

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def policy():
    return load_policy()


def _prediction(**over):
    pred = {"intent": "logistics_delay", "intent_confidence": 0.9, "is_complaint": True, "complaint_confidence": 0.95,
            "complaint_evidence": ["intent:logistics_delay", "cue:投诉"], "slots": {"order_id": "20240518001",
            "phone": "13812345678"}, "missing_slots": [], "priority": "P2", "queue": "complaint", "skill": "logistics",
            "dialect_group": "cantonese", "dialect": "cantonese", "dialect_confidence": 0.8, "emotion": "angry",
            "emotion_peak": "angry", "emotion_trajectory": [{"start": 1.0, "end": 3.0, "label": "angry",
                                                             "confidence": 0.7}],
            "segments": [{"channel": "agent", "start": 0.0, "end": 0.9, "text": "您好"},
                         {"channel": "customer", "start": 1.0, "end": 3.0, "text": "我电话13812345678，快递还没到",
                          "emotion": "angry", "emotion_confidence": 0.7}],
            "needs_review": True, "review_reasons": ["high-arousal emotion angry (0.70)"],
            "route_reasons": ["intent logistics_delay: queue complaint"], "policy_version": "x"}
    pred.update(over)
    return pred


def test_default_sla_escalates_to_supervisor_at_2h_and_director_at_4h(policy):
    due, steps = sla_deadlines("P2", T0, policy)
    assert due == T0 + timedelta(hours=24)
    assert steps == ((T0 + timedelta(hours=2), "supervisor"), (T0 + timedelta(hours=4), "director"))
    _, p1 = sla_deadlines("P1", T0, policy)
    assert p1[0][0] - T0 < timedelta(hours=2), "P1 escalates sooner"


def test_policy_rejects_a_bad_escalation_chain():
    import yaml

    from models.decisions import DEFAULT_POLICY_PATH

    raw = yaml.safe_load(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    raw["sla"]["escalations"]["default"] = [{"after_hours": 4, "to": "director"}, {"after_hours": 2, "to": "boss"}]
    with pytest.raises(PolicyError, match="increasing"):
        policy_from_dict(raw)
    raw["sla"]["escalations"]["default"] = [{"to": "director"}]
    with pytest.raises(PolicyError, match="after_hours"):
        policy_from_dict(raw)
    raw["sla"]["escalations"] = {"P9": []}
    with pytest.raises(PolicyError, match="P9"):
        policy_from_dict(raw)


def test_estimated_wait_and_callback(policy):
    state = {"complaint": {"waiting": 5, "free_agents": 0, "agents": 2}, "general": {"waiting": 0, "free_agents": 1}}
    wait, offer, why = estimated_wait("complaint", state, policy)
    assert wait == pytest.approx(6 * policy.wait.handle_seconds / 2) and offer and "call back" in why
    assert estimated_wait("general", state, policy) == (0.0, False, None)
    assert estimated_wait("feedback", state, policy) == (None, False, None), "no state: nothing guessed"
    vip_wait, _, _ = estimated_wait("complaint", state, policy, vip=True)
    assert vip_wait < wait, "VIPs go first"
    with pytest.raises(ValueError, match="whole numbers"):
        estimated_wait("complaint", {"complaint": {"waiting": "many"}}, policy)


def test_route_skips_ivr_for_complaints_and_raises_vips_and_repeat_callers(policy):
    u = {"intent": "logistics_delay", "is_complaint": True, "complaint_evidence": []}
    base = route(u, None, "cantonese", policy)
    assert base.skip_ivr and base.dialect_group == "cantonese" and base.queue == "complaint"
    vip = route(u, None, None, policy, {"vip_level": 2, "complaint_count": 0})
    assert vip.priority < base.priority  # "P2" < "P3": more urgent
    repeat = route(u, None, None, policy, {"vip_level": 0, "complaint_count": policy.priority.repeat_complaints})
    assert repeat.priority < base.priority
    assert not route({"intent": "praise", "is_complaint": False}, None, None, policy).skip_ivr


def test_link_earlier_same_order_same_intent_and_last_time():
    earlier = [{"id": "T3", "intent": "billing_error", "order_id": None},
               {"id": "T2", "intent": "logistics_delay", "order_id": "9"},
               {"id": "T1", "intent": "product_quality", "order_id": "42"}]
    ids, why = link_earlier(earlier, "logistics_delay", "42", "快递还没到")
    assert ids == ["T2", "T1"] and "same order 42" in why[1]
    ids, why = link_earlier(earlier, "logistics_delay", None, "跟上次一样的问题，快递还没到")
    assert ids[0] == "T3" and "上次" in why[0], "the words say 'last time': the latest ticket first"
    assert refers_to_earlier_contact("我第一次打电话") is None


def test_build_ticket_and_masking(policy):
    t = build_ticket(_prediction(), ticket_id="T-1", call_id="c-1", caller="13812345678", created_at=T0,
                     policy=policy, model_versions={"intent": {"version": "3"}}, absent_models=["emotion"])
    assert t.sla.escalations[0].to == "supervisor" and t.sla.escalations[0].at == T0 + timedelta(hours=2)
    assert t.skill_group == "logistics" and t.emotion.peak == "angry" and len(t.emotion.trajectory) == 1
    assert [s.channel for s in t.transcript] == ["agent", "customer"]
    assert "物流" in t.summary and "订单号" in t.summary
    m = masked(t)
    assert m.caller == "138****5678" and m.slots["phone"] == "138****5678"
    assert "13812345678" not in m.model_dump_json() and "13812345678" in t.model_dump_json()
    assert Ticket.model_validate_json(t.model_dump_json()) == t
    with pytest.raises(ValueError, match="failed call"):
        build_ticket({"error": "boom"}, ticket_id="x", call_id="y", policy=policy)
    with pytest.raises(ValueError, match="channel"):
        build_ticket(_prediction(), ticket_id="x", call_id="y", channel="fax", policy=policy)


def test_mask_helpers():
    assert mask_phone("13812345678") == "138****5678" and mask_phone(None) is None and mask_phone("123") == "****"
    assert mask_text("号码13812345678，订单20240518001") == "号码138****5678，订单20240518001"


def test_content_hash_tells_content_apart():
    a = content_hash(text="你好", caller="1", channel="chat")
    assert a == content_hash(text="你好", caller="1", channel="chat")
    assert a != content_hash(text="你好", caller="2", channel="chat")
    assert a != content_hash(text="你好", caller="1", channel="email")
    assert content_hash(audio=b"RIFF") != content_hash(text="RIFF")


def test_event_state_machine():
    assert next_status("open", "assign") == "assigned"
    assert next_status("assigned", "resolve") == "resolved"
    assert next_status("resolved", "satisfaction") == "resolved"
    assert next_status("closed", "reopen") == "open"
    with pytest.raises(ValueError, match="allows"):
        next_status("closed", "resolve")
    with pytest.raises(ValueError, match="unknown ticket status"):
        next_status("lost", "close")


def test_summary_lists_what_is_missing(policy):
    text = summary_text("refund_dispute", {"amount": "128.5"}, "anxious", policy, missing=["order_id"])
    assert text.startswith("退款") or "退" in text
    assert "128.5" in text and "待补充" in text and "订单号" in text
