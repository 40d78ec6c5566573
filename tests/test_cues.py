"""Strong complaint cues fire in Mandarin, spoken-digit and dialect forms; negated cues do not."""

from __future__ import annotations

import pytest

from models.intent.cues import decide_complaint, find_cues
from models.taxonomy import COMPLAINT_INTENTS, INTENTS


def _names(text: str) -> list[str]:
    return [c.cue for c in find_cues(text)]


@pytest.mark.parametrize(
    "text, cue",
    [
        ("我要投诉你们的快递员", "投诉"),
        ("我要投訴你哋", "投诉"),
        ("我对处理结果很不满意", "不满意"),
        ("我真系唔满意", "不满意"),
        ("再不处理我就打12315", "12315"),
        ("我打幺二三幺五举报你们", "12315"),
        ("我要打一二三一五", "12315"),
        ("我要找你们领导", "找你们领导"),
        ("我要搵你哋經理", "找你们领导"),
        ("我去消协告你们", "消协"),
        ("我要找媒体曝光", "曝光"),
        ("赶紧退钱", "退钱"),
        ("你们服务太差劲了", "太差劲"),
    ],
)
def test_cue_fires(text, cue):
    assert cue in _names(text)


def test_no_cue_in_ordinary_questions():
    assert find_cues("请问我的快递到哪里了") == ()
    assert find_cues("谢谢你们，服务很好") == ()
    assert find_cues("我的手机号是幺三八一二三四五六七八") == ()  # digits, but not 12315


def test_negation_blocks_cue():
    assert "投诉" not in _names("我不是要投诉，就是问一下")
    assert "投诉" not in _names("唔使投诉啦")
    # 不满意 already carries its negation and still fires
    assert "不满意" in _names("我不满意")


def test_match_positions_and_evidence():
    text = "我要投诉，不然打12315"
    found = find_cues(text)
    assert [(c.cue, text[c.start : c.end]) for c in found] == [("投诉", "投诉"), ("12315", "12315")]
    assert found[0].evidence == "cue:投诉"


def test_decision_cue_overrides_non_complaint_intent():
    probs = {i: 0.0 for i in INTENTS}
    probs["consultation"] = 0.95
    probs["logistics_delay"] = 0.05
    d = decide_complaint("consultation", probs, COMPLAINT_INTENTS, find_cues("我要投诉"))
    assert d.is_complaint
    assert d.evidence == ("cue:投诉",)
    assert d.probability == pytest.approx(1 - 0.95 * (1 - 0.9))
    assert d.confidence == pytest.approx(d.probability)


def test_decision_intent_and_cues_both_listed():
    probs = {i: 0.0 for i in INTENTS}
    probs["logistics_delay"] = 0.8
    probs["order_inquiry"] = 0.2
    d = decide_complaint("logistics_delay", probs, COMPLAINT_INTENTS, find_cues("再不到我就打幺二三幺五投诉"))
    assert d.is_complaint
    assert d.evidence == ("intent:logistics_delay", "cue:12315", "cue:投诉")
    assert d.confidence > 0.95


def test_decision_not_a_complaint():
    probs = {i: 0.0 for i in INTENTS}
    probs["praise"] = 0.9
    probs["service_attitude"] = 0.1
    d = decide_complaint("praise", probs, COMPLAINT_INTENTS, find_cues("谢谢你们的耐心"))
    assert not d.is_complaint
    assert d.evidence == ()
    assert d.probability == pytest.approx(0.1)
    assert d.confidence == pytest.approx(0.9)
