"""Business rules (models/decisions.py) over the default policy file, as pure functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from models.decisions import (
    DEFAULT_POLICY_PATH,
    PRIORITIES,
    PolicyError,
    load_policy,
    missing_slots,
    needs_review,
    policy_from_dict,
    route,
)
from models.taxonomy import COMPLAINT_INTENTS, DIALECTS, INTENTS, UnknownLabelError


@pytest.fixture(scope="module")
def policy():
    return load_policy()


def test_policy_file_loads_and_covers_every_intent(policy):
    assert policy.version
    assert set(policy.intents) == set(INTENTS)
    assert set(policy.dialect_groups) == set(DIALECTS)
    for name, rule in policy.intents.items():
        assert rule.queue in policy.queues, name
        assert rule.priority in PRIORITIES
    # every complaint intent goes to the complaint queue by its own rule
    assert {policy.intents[i].queue for i in COMPLAINT_INTENTS} == {policy.complaint_queue}


def test_decisions_import_no_heavy_frameworks():
    tree = ast.parse(Path("models/decisions.py").read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"torch", "bentoml", "mlflow", "transformers"}


def test_complaint_goes_to_complaint_queue(policy):
    r = route({"intent": "logistics_delay", "is_complaint": True}, "neutral", "mandarin", policy)
    assert r.queue == "complaint"
    assert r.skill == "logistics"
    assert r.priority == policy.intents["logistics_delay"].priority == "P3"
    assert r.dialect_group == "mandarin"


def test_angry_caller_citing_12315_is_p1(policy):
    u = {"intent": "logistics_delay", "is_complaint": True, "complaint_evidence": ("intent:logistics_delay", "cue:12315")}
    r = route(u, "angry", "cantonese", policy)
    assert (r.queue, r.priority, r.dialect_group) == ("complaint", "P1", "cantonese")
    assert any("12315" in why for why in r.reasons)
    # the same call without the cue: anger alone raises P3 one level
    assert route({"intent": "logistics_delay"}, "angry", None, policy).priority == "P2"
    assert route({"intent": "logistics_delay"}, "anxious", None, policy).priority == "P2"


def test_media_cue_escalates_even_a_calm_caller(policy):
    u = {"intent": "service_attitude", "complaint_evidence": ["cue:媒体"]}
    assert route(u, None, None, policy).priority == "P1"


def test_praise_goes_to_feedback_and_stays_low(policy):
    r = route({"intent": "praise", "is_complaint": False}, "happy", None, policy)
    assert (r.queue, r.priority) == ("feedback", "P4")
    assert r.dialect_group == policy.default_dialect_group
    # a non-complaint from an anxious VIP is raised but capped
    r = route({"intent": "order_inquiry"}, "anxious", None, policy, customer={"vip": True})
    assert r.queue == "general"
    assert r.priority == policy.priority.non_complaint_max_priority == "P3"


def test_complaint_cue_on_a_question_routes_to_complaint_queue(policy):
    u = {"intent": "consultation", "is_complaint": True, "complaint_evidence": ["cue:投诉"]}
    r = route(u, None, None, policy)
    assert r.queue == "complaint"
    assert r.priority == policy.complaint_min_priority


def test_vip_and_repeat_callers_go_first(policy):
    base = route({"intent": "logistics_delay"}, None, None, policy).priority
    vip = route({"intent": "logistics_delay"}, None, None, policy, customer={"vip": True}).priority
    both = route({"intent": "logistics_delay"}, None, None, policy, customer={"vip": True, "recent_complaints": 3}).priority
    assert PRIORITIES.index(vip) == PRIORITIES.index(base) - 1
    assert PRIORITIES.index(both) == PRIORITIES.index(base) - 2


def test_route_accepts_an_object_with_attributes(policy):
    class U:
        intent = "billing_error"
        is_complaint = True
        complaint_evidence = ("cue:消协",)

    assert route(U(), None, "southwestern", policy).priority == "P1"
    assert route(U(), None, "southwestern", policy).dialect_group == "mandarin"


def test_review_dual_threshold(policy):
    rv = policy.review
    confident = (0.95, 0.95)
    assert needs_review(*confident, "neutral", 0.9, policy) == (False, ())
    assert needs_review(*confident, None, None, policy) == (False, ())
    # low confidence alone
    flag, why = needs_review(rv.min_intent_confidence - 0.01, 0.95, "neutral", 0.9, policy)
    assert flag and "intent confidence" in why[0]
    flag, why = needs_review(0.95, rv.min_complaint_confidence - 0.01, None, None, policy)
    assert flag and "complaint confidence" in why[0]
    # exactly at the threshold is confident enough
    assert not needs_review(rv.min_intent_confidence, rv.min_complaint_confidence, None, None, policy)[0]
    # high arousal alone, confidently read
    flag, why = needs_review(*confident, "angry", 0.9, policy)
    assert flag and "angry" in why[0]
    # ... but a weak emotion reading does not trigger review
    assert not needs_review(*confident, "angry", rv.min_emotion_confidence - 0.01, policy)[0]
    # both at once: two reasons
    assert len(needs_review(0.1, 0.95, "angry", 0.9, policy)[1]) == 2


def test_missing_slots(policy):
    assert missing_slots("logistics_delay", {}, policy) == ("order_id", "phone")
    assert missing_slots("logistics_delay", {"order_id": "20240518001"}, policy) == ("phone",)
    assert missing_slots("logistics_delay", {"order_id": "20240518001", "phone": "13800123456"}, policy) == ()
    assert missing_slots("logistics_delay", {"order_id": "", "phone": "13800123456"}, policy) == ("order_id",)
    assert missing_slots("praise", None, policy) == ()


def test_unknown_labels_are_errors(policy):
    with pytest.raises(UnknownLabelError, match="weather_report"):
        route({"intent": "weather_report"}, None, None, policy)
    with pytest.raises(UnknownLabelError):
        missing_slots("weather_report", {}, policy)
    with pytest.raises(UnknownLabelError):
        route({"intent": "praise"}, "furious", None, policy)
    with pytest.raises(UnknownLabelError):
        route({"intent": "praise"}, None, "klingon", policy)


def test_bad_policy_files_name_the_field(tmp_path):
    raw = yaml.safe_load(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    del raw["intents"]["praise"]
    with pytest.raises(PolicyError, match="praise"):
        policy_from_dict(raw, source="x.yaml")
    raw = yaml.safe_load(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    raw["intents"]["praise"]["priority"] = "P9"
    with pytest.raises(PolicyError, match=r"intents\.praise.*P9"):
        policy_from_dict(raw, source="x.yaml")
    raw = yaml.safe_load(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    raw["intents"]["praise"]["queue"] = "nowhere"
    with pytest.raises(PolicyError, match="nowhere"):
        policy_from_dict(raw)
    with pytest.raises(PolicyError, match="not found"):
        load_policy(tmp_path / "missing.yaml")
    # a copied and edited policy file loads
    raw = yaml.safe_load(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    raw["version"] = "test.1"
    raw["review"]["min_intent_confidence"] = 0.9
    path = tmp_path / "strict.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    strict = load_policy(path)
    assert strict.version == "test.1"
    assert needs_review(0.85, 0.99, None, None, strict)[0]
