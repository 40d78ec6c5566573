"""Service-quality checks (models/qa.py, models/policies/qa.yaml): each rule on hand-made calls, the rules loader's
errors, per-agent scores, and precision/recall per rule on the labelled synthetic set (printed; run with -s)."""

from __future__ import annotations

import copy

import pytest
import yaml

from models import qa
from models.qa import (RULES, QaResult, QaRulesError, agent_scores, check_call, evaluate_qa, format_table,
                       load_qa_rules, qa_rules_from_dict, synthetic_qa_set)


@pytest.fixture(scope="module")
def rules():
    return load_qa_rules()


def seg(channel, start, end, text):
    return {"channel": channel, "start": start, "end": end, "text": text}


CLEAN = [
    seg("agent", 0.5, 3.0, "您好，很高兴为您服务，请问有什么可以帮您？"),
    seg("customer", 3.5, 7.0, "我的快递一个星期了还没到。"),
    seg("agent", 7.5, 10.0, "请您提供一下订单号。"),
    seg("customer", 10.5, 13.0, "订单号是一二三四五六七八。"),
    seg("agent", 13.2, 16.0, "好的，已经为您登记了，我们无法保证具体时间，但会尽快催促。"),
    seg("agent", 16.5, 19.0, "感谢您的来电，祝您生活愉快，再见！"),
]


def test_a_clean_call_passes_every_rule(rules):
    r = check_call(CLEAN, rules)
    assert r.score == 100.0 and r.passed and not r.violations
    assert set(r.checks) == set(RULES) and all(r.checks.values())
    assert r.rules_version == rules.version


def test_the_rules_file_loads_with_its_version_and_weights(rules):
    assert rules.version and rules.source.endswith("qa.yaml")
    assert rules.forbidden.severity == "critical" and rules.interruption.min_overlap_s == 1.0
    assert "您好" in rules.greeting.phrases


def test_missing_greeting_and_closing(rules):
    call = [seg("agent", 0.0, 1.0, "喂，说吧。"), *CLEAN[1:5], seg("agent", 16.5, 18.0, "行了，挂了。")]
    r = check_call(call, rules)
    assert r.violated_rules == {"greeting", "closing"}
    assert r.score == pytest.approx(100 * (100 - 15 - 15) / 100)
    assert r.passed is False  # 70 < 80
    g = next(v for v in r.violations if v.rule == "greeting")
    assert g.channel == "agent" and g.start == 0.0 and "10 s" in g.evidence


def test_a_greeting_after_the_first_seconds_does_not_count(rules):
    call = [seg("agent", 0.0, 1.0, "喂。"), seg("customer", 1.5, 14.0, "我要投诉你们的物流太慢了。"),
            seg("agent", 14.5, 16.0, "您好，请讲。"), seg("agent", 16.5, 18.0, "再见。")]
    assert check_call(call, rules).checks["greeting"] is False


def test_forbidden_phrase_found_through_traditional_characters_spaces_and_punctuation(rules):
    call = copy.deepcopy(CLEAN)
    call[2]["text"] = "這 不 歸 我 管 ！"
    r = check_call(call, rules)
    assert r.violated_rules == {"forbidden"}
    v = r.violations[0]
    assert (v.rule, v.evidence, v.start, v.end, v.channel, v.severity) == ("forbidden", "不归我管", 7.5, 10.0,
                                                                            "agent", "critical")
    assert v.text == "這 不 歸 我 管 ！"
    assert r.passed is False
    assert r.score == 70.0


def test_a_critical_violation_fails_a_call_whatever_its_score(rules):
    raw = yaml.safe_load(open(qa.DEFAULT_QA_PATH, encoding="utf-8"))
    raw["pass_score"] = 50
    lenient = qa_rules_from_dict(raw)
    call = copy.deepcopy(CLEAN)
    call[2]["text"] = "没办法，规定就是这样。"
    r = check_call(call, lenient)
    assert r.score == 70.0 and r.passed is False


def test_exceptions_excuse_a_listed_phrase_inside_a_harmless_one(rules):
    call = copy.deepcopy(CLEAN)
    call[2]["text"] = "请问您知不知道订单号？押金保证金会原路退回，我们不能保证时间。"
    assert check_call(call, rules).violations == ()
    call[2]["text"] = "我保证明天一定给您送到。"
    r = check_call(call, rules)
    assert r.violated_rules == {"promises"} and [v.evidence for v in r.violations] == ["保证", "一定给您"]
    assert r.score == 80.0 and r.passed  # promises are "major", not critical


def test_a_rephrased_rudeness_is_not_found_phrase_rules_are_lists():
    call = copy.deepcopy(CLEAN)
    call[2]["text"] = "这事跟我没关系。"  # rude, but not in the list: missed (documented)
    assert check_call(call).checks["forbidden"] is True


def test_interruption_needs_the_threshold_and_ignores_acknowledgements(rules):
    base = [CLEAN[0], seg("customer", 3.5, 9.0, "我的快递一个星期了还没到，你们到底怎么回事。"),
            seg("agent", 6.0, 9.5, "您先别说了，听我讲。"), CLEAN[5]]
    r = check_call(base, rules)
    assert r.violated_rules == {"interruption"}
    v = r.violations[0]
    assert v.evidence == "overlap 3.0 s" and (v.start, v.end) == (6.0, 9.0)
    small = copy.deepcopy(base)
    small[2].update(start=8.5, end=11.0)  # 0.5 s overlap: below 1.0 s
    assert check_call(small, rules).checks["interruption"] is True
    ack = copy.deepcopy(base)
    ack[2].update(text="嗯嗯。")
    assert check_call(ack, rules).checks["interruption"] is True


def test_silence_inside_the_call_and_an_announced_hold(rules):
    call = [CLEAN[0], CLEAN[1], seg("agent", 7.5, 9.0, "好的。"), seg("agent", 21.0, 23.0, "感谢您的来电，再见。")]
    r = check_call(call, rules)
    assert r.violated_rules == {"silence"}
    v = r.violations[0]
    assert (v.evidence, v.start, v.end, v.channel) == ("silence 12.0 s", 9.0, 21.0, None)
    held = copy.deepcopy(call)
    held[2]["text"] = "请您稍等，我帮您查询一下。"
    assert check_call(held, rules).checks["silence"] is True
    too_long = copy.deepcopy(held)
    too_long[3].update(start=80.0, end=82.0)  # 71 s: longer than max_hold_s
    assert check_call(too_long, rules).checks["silence"] is False


def test_a_mono_call_is_checked_for_silence_only_and_says_why(rules):
    mono = [seg("mono", 0.0, 3.0, "您好"), seg("mono", 3.5, 5.0, "再见")]
    r = check_call(mono, rules)
    assert set(r.checks) == {"silence"}
    assert set(r.not_checked) == {"greeting", "closing", "forbidden", "promises", "interruption"}
    with pytest.raises(ValueError, match="no transcript segments"):
        check_call([], rules)
    with pytest.raises(ValueError, match="channel 'robot'"):
        check_call([seg("robot", 0, 1, "x")], rules)


def test_transcript_segment_objects_are_accepted(rules):
    from models.ticket import TranscriptSegment

    assert check_call([TranscriptSegment(**s) for s in CLEAN], rules).passed


def test_the_loader_names_the_field_to_fix(tmp_path):
    raw = yaml.safe_load(open(qa.DEFAULT_QA_PATH, encoding="utf-8"))
    bad = copy.deepcopy(raw)
    bad["greeting"]["severity"] = "fatal"
    with pytest.raises(QaRulesError, match=r"greeting\.severity 'fatal'"):
        qa_rules_from_dict(bad)
    bad = copy.deepcopy(raw)
    del bad["silence"]["min_gap_s"]
    with pytest.raises(QaRulesError, match=r"silence\.min_gap_s is missing"):
        qa_rules_from_dict(bad)
    bad = copy.deepcopy(raw)
    bad["forbidden"]["phrases"] = "不知道"
    with pytest.raises(QaRulesError, match=r"forbidden\.phrases must be a list"):
        qa_rules_from_dict(bad)
    bad = copy.deepcopy(raw)
    del bad["closing"]
    with pytest.raises(QaRulesError, match=r"lack \['closing'\]"):
        qa_rules_from_dict(bad)
    p = tmp_path / "qa.yaml"
    p.write_text("version: [", encoding="utf-8")
    with pytest.raises(QaRulesError, match="not valid YAML"):
        load_qa_rules(p)
    with pytest.raises(QaRulesError, match="not found"):
        load_qa_rules(tmp_path / "absent.yaml")


def test_a_disabled_rule_is_not_checked_nor_weighed():
    raw = yaml.safe_load(open(qa.DEFAULT_QA_PATH, encoding="utf-8"))
    raw["closing"]["enabled"] = False
    rules = qa_rules_from_dict(raw)
    call = [*CLEAN[:5], seg("agent", 16.5, 18.0, "行了，挂了。")]
    r = check_call(call, rules)
    assert "closing" not in r.checks and r.not_checked["closing"] == "disabled in the rules" and r.score == 100.0


def test_results_round_trip_and_agent_scores(rules):
    bad = copy.deepcopy(CLEAN)
    bad[2]["text"] = "你自己看着办吧。"
    good, worse = check_call(CLEAN, rules), check_call(bad, rules)
    assert QaResult.from_dict(worse.to_dict()) == worse
    scores = agent_scores({"a1": [good, worse.to_dict()], "a2": [good], "idle": []})
    assert set(scores) == {"a1", "a2"}
    a1 = scores["a1"]
    assert (a1.calls, a1.mean_score, a1.passed, a1.failed, dict(a1.violations)) == (2, 85.0, 1, 1, {"forbidden": 1})
    assert scores["a2"].mean_score == 100.0


def test_the_synthetic_set_is_labelled_reproducible_and_varied():
    a, b = synthetic_qa_set(200, seed=3), synthetic_qa_set(200, seed=3)
    assert a == b
    assert any(not s.labels for s in a) and all(s.labels <= set(RULES) for s in a)
    for rule in RULES:
        assert sum(rule in s.labels for s in a) > 10
    notes = " ".join(n for s in a for n in s.notes)
    assert "unlisted" in notes and "tricky" in notes and "hold" in notes


def test_precision_and_recall_per_rule_on_the_labelled_synthetic_set(rules):
    """Default mix: 25% of planted rude turns and promises worded off-list (missed), 3% of calls with a polite but
    unlisted greeting / closing / a harmless unexcused listed phrase (false alarms). Floors: precision >= 0.8 for the
    phrase rules, 0.95 for the timing rules; recall >= 0.65 for forbidden/promises (phrase lists miss rephrasings),
    0.95 otherwise. With no unlisted clean wordings precision is >= 0.95 for every rule (the mechanics: normalisation,
    traditional characters, exceptions)."""
    m = evaluate_qa(synthetic_qa_set(1000, seed=0), rules)
    print("\n" + format_table(m))
    for rule in ("greeting", "closing", "forbidden", "promises"):
        assert m[rule]["precision"] >= 0.8, (rule, m[rule])
    for rule in ("interruption", "silence"):
        assert m[rule]["precision"] >= 0.95, (rule, m[rule])
    for rule in ("forbidden", "promises"):
        assert 0.65 <= m[rule]["recall"] < 0.95, (rule, m[rule])  # rephrasings are missed: honest, not perfect
    for rule in ("greeting", "closing", "interruption", "silence"):
        assert m[rule]["recall"] >= 0.95, (rule, m[rule])
    clean = evaluate_qa(synthetic_qa_set(500, seed=1, unlisted_clean=0.0), rules)
    print(format_table(clean))
    assert all(v["precision"] >= 0.95 for v in clean.values()), clean
