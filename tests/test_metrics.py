"""Text normalisation, CER and the evaluation metrics on hand-computed examples."""

from __future__ import annotations

import pytest

from models.textnorm import HAS_T2S, cer, cer_corpus, normalize_slot_value, normalize_text
from training.metrics import (
    accuracy,
    binary_f1,
    flat_metrics,
    format_table,
    macro_f1,
    score,
    slot_f1,
    ticket_completeness,
)


def test_normalisation_removes_punctuation_space_and_maps_traditional():
    assert HAS_T2S, "opencc-python-reimplemented is not installed: traditional characters are not mapped"
    assert normalize_text("您好，這個訂單！") == "您好这个订单"
    assert normalize_text(" Hello, ＷＯＲＬＤ 123。") == "helloworld123"
    assert normalize_text("「退款」……還沒到?") == "退款还没到"
    assert normalize_text(None) == ""


def test_cer_per_character():
    assert cer("您好，這個訂單", "您好这个订单") == 0.0
    assert cer("我要投诉", "我要投") == pytest.approx(1 / 4)  # one deletion
    assert cer("我要投诉", "我要头诉啊") == pytest.approx(2 / 4)  # one substitution, one insertion
    assert cer("", "") == 0.0 and cer("，", "啊") == 1.0
    # corpus CER weighs by reference length: (1 + 0) / (4 + 2); a traditional hypothesis matches
    assert cer_corpus(["我要投诉", "网络"], ["我要投", "網絡"]) == pytest.approx(1 / 6)
    with pytest.raises(ValueError, match="one hypothesis per reference"):
        cer_corpus(["a"], [])


def test_slot_value_normalisation():
    assert normalize_slot_value("amount", "50.00") == normalize_slot_value("amount", "50") == "50"
    assert normalize_slot_value("amount", "12.50") == "12.5"
    assert normalize_slot_value("product", "iPhone 15") == normalize_slot_value("product", "IPHONE15")
    assert normalize_slot_value("product", "電視機") == "电视机"


def test_accuracy_and_macro_f1():
    refs = ["a", "a", "b", "c"]
    hyps = ["a", "b", "b", "b"]
    assert accuracy(refs, hyps) == 0.5
    # a: p=1 r=1/2 f=2/3; b: p=1/3 r=1 f=1/2; c: f=0  -> (2/3 + 1/2 + 0) / 3
    assert macro_f1(refs, hyps) == pytest.approx((2 / 3 + 1 / 2) / 3)
    # labels only predicted (never in refs) are not averaged in
    assert macro_f1(["a", "a"], ["a", "z"]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="one prediction per reference"):
        accuracy(["a"], [])


def test_binary_f1():
    r = binary_f1([True, True, False, False], [True, None, True, False])
    assert (r["tp"], r["fp"], r["fn"]) == (1, 1, 1)
    assert r["f1"] == pytest.approx(0.5)


def test_slot_f1_and_completeness():
    ref = {"1": {"order_id": "123456", "phone": "13800123456"}, "2": {"amount": "50"}, "3": {}}
    hyp = {"1": {"order_id": "123456", "phone": "13800000000"}, "2": {"amount": "50.0"}, "3": {"product": "电视"}}
    # triples: ref 3; hyp 4 (1 order_id ok, 1 phone wrong, 2 amount ok, 3 product spurious)
    f = slot_f1(ref, hyp)
    assert (f["tp"], f["n_ref_slots"], f["n_pred_slots"]) == (2, 3, 4)
    assert f["precision"] == pytest.approx(2 / 4) and f["recall"] == pytest.approx(2 / 3)
    assert f["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    c = ticket_completeness(ref, hyp)
    assert c["completeness"] == pytest.approx(2 / 3)
    assert c["complete_tickets"] == pytest.approx(1 / 2)  # record 2 complete, record 1 not; record 3 has no slots
    assert (c["n_slots"], c["n_tickets"]) == (3, 2)


def _pred(rid, **kw):
    base = {"id": rid, "transcript": None, "dialect": None, "emotion": None, "slots": {}, "queue": "general",
            "priority": "P4", "needs_review": False}
    return {**base, **kw}


def test_score_only_what_labels_allow():
    records = [
        {"id": "t1", "text": "我的快递还没到", "intent": "logistics_delay", "slots": {"order_id": "123456"}},
        {"id": "t2", "text": "谢谢你们", "intent": "praise"},
        {"id": "t3", "text": "怎么退货", "intent": "consultation"},
        {"id": "t4", "text": "没有标签"},
    ]
    preds = [
        _pred("t1", intent="logistics_delay", is_complaint=True, slots={"order_id": "123456"}, queue="complaint", priority="P3"),
        _pred("t2", intent="praise", is_complaint=False, queue="feedback"),
        {"id": "t3", "error": "intent model: RuntimeError: boom"},
        _pred("t4", intent="consultation", is_complaint=False),
    ]
    rep = score(records, preds)
    assert rep["n_records"] == 4 and rep["n_errors"] == 1
    assert rep["intent"]["n"] == 3
    assert rep["intent"]["accuracy"] == pytest.approx(2 / 3)  # the failed record counts as wrong
    assert rep["intent"]["confusion"]["consultation"] == {"null": 1}
    assert rep["complaint"]["n"] == 3 and rep["complaint"]["f1"] == 1.0
    assert rep["slots"]["n"] == 1 and rep["slots"]["f1"] == 1.0
    for absent in ("cer", "dialect", "emotion"):
        assert absent not in rep and absent in rep["skipped"]
    assert rep["decisions"]["queues"] == {"complaint": 1, "feedback": 1, "general": 1}
    table = format_table(rep)
    assert "intent accuracy" in table and "0.6667" in table and "not scored: cer" in table
    assert flat_metrics(rep)["intent_accuracy"] == pytest.approx(2 / 3)


def test_score_cer_per_dialect_and_speech_labels():
    records = [
        {"id": "a1", "audio": "a1.wav", "text": "我要投诉", "dialect": "mandarin", "emotion": "angry"},
        {"id": "a2", "audio": "a2.wav", "text": "您好，這個訂單", "dialect": "cantonese", "emotion": "neutral"},
        {"id": "a3", "audio": "a3.wav", "text": "快递", "dialect": "cantonese", "emotion": "neutral"},
        {"id": "m1", "text": "文字消息", "dialect": "mandarin", "emotion": "sad"},  # text: no speech scoring
    ]
    preds = [
        _pred("a1", transcript="我要投", dialect="mandarin", emotion="angry"),
        _pred("a2", transcript="您好这个订单", dialect="mandarin", emotion="neutral"),
        {"id": "a3", "error": "AudioError: a3.wav: file not found"},
        _pred("m1"),
    ]
    rep = score(records, preds)
    c = rep["cer"]
    # mandarin 1/4; cantonese: a2 0/6 edits, a3 failed -> empty transcript, 2/2 -> 2/8
    assert c["per_dialect"]["mandarin"]["cer"] == pytest.approx(1 / 4)
    assert c["per_dialect"]["cantonese"]["cer"] == pytest.approx(2 / 8)
    assert c["cer"] == pytest.approx(3 / 12) and c["n"] == 3
    assert rep["dialect"]["n"] == 3 and rep["dialect"]["accuracy"] == pytest.approx(1 / 3)
    assert rep["emotion"]["accuracy"] == pytest.approx(2 / 3)
    assert rep["emotion"]["macro_f1"] == pytest.approx((1 + 2 / 3) / 2)  # angry 1; neutral p=1 r=1/2


def test_score_skips_speech_metrics_without_speech_models():
    records = [{"id": "a1", "audio": "a1.wav", "text": "我要投诉", "dialect": "wu", "emotion": "angry"}]
    rep = score(records, [_pred("a1", text_source="reference", intent="praise")])
    assert "no speech recogniser" in rep["skipped"]["cer"]
    assert "dialect" in rep["skipped"] and "emotion" in rep["skipped"]


def test_calibrate_reports_what_temperature_scaling_did():
    import numpy as np

    from models.calibration import calibrate, negative_log_likelihood

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    logits = rng.normal(0, 1, (300, 3))
    logits[np.arange(300), y] += 1.0
    t, report = calibrate(logits * 4, y.tolist(), "lbfgs", 10)  # overconfident logits: T > 1 cools them
    assert t > 1 and report["temperature"] == t
    assert report["val_nll_after"] <= report["val_nll_before"]
    assert report["val_nll_after"] == negative_log_likelihood(logits * 4, y.tolist(), t)
    assert set(report) == {"temperature", "val_nll_before", "val_nll_after", "val_ece_before", "val_ece_after"}


def test_number_normalised_cer_writes_numerals_as_digits_on_both_sides():
    from models.textnorm import cer_numnorm, normalize_numbers

    assert cer("二十九", "29") == 1.0 and cer_numnorm("二十九", "29") == 0.0  # EVALUATION.md's CER charges it
    assert normalize_numbers("我的电话是幺三八零零一二三四五六") == "我的电话是13800123456"
    assert normalize_numbers("退款兩百元，一点五折") == normalize_numbers("退款200元 1.5折") == "退款200元15折"
    assert normalize_numbers("百分之五十") == normalize_numbers("50%") == "50"
    assert normalize_numbers("１２３") == "123"  # full-width digits
    # odd inputs: a numeral run cn2an cannot parse stays as written (it warns; the warning is silenced)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert normalize_numbers("千千万万") == "千千万万" and normalize_numbers("万一不行") == "万一不行"
    assert normalize_numbers(None) == "" == normalize_numbers("")
    assert cer_numnorm("退款二十九块", "退款三十块") == pytest.approx(2 / 5)  # 29 vs 30: still two errors
    assert cer_corpus(["二十九", "我要投诉"], ["29", "我要投"], numbers=True) == pytest.approx(1 / 6)


def test_every_cer_is_reported_two_ways():
    from training.metrics import cer_by_group

    res = cer_by_group([("mandarin", "订单二十九号", "订单29号"), ("wu", "谢谢", "谢")])
    assert res["cer"] == pytest.approx((3 + 1) / 8) and res["cer_numnorm"] == pytest.approx(1 / 7)  # 订单29号: 5 chars
    assert res["per_group"]["mandarin"]["cer_numnorm"] == 0.0 and res["per_group"]["mandarin"]["cer"] == 0.5
    records = [{"id": "a1", "audio": "a1.wav", "text": "退款二十九元", "dialect": "mandarin"}]
    rep = score(records, [_pred("a1", transcript="退款29元")])
    assert rep["cer"]["cer"] == pytest.approx(3 / 6) and rep["cer"]["cer_numnorm"] == 0.0
    assert rep["cer"]["per_dialect"]["mandarin"]["cer_numnorm"] == 0.0
    flat = flat_metrics(rep)
    assert flat["cer"] == pytest.approx(0.5) and flat["cer_numnorm"] == 0.0 and flat["cer_numnorm_mandarin"] == 0.0
    assert "CER, numbers normalised" in format_table(rep)


def test_opencc_is_required_not_optional():
    """Without OpenCC, traditional-to-simplified would silently do nothing; importing textnorm must fail instead."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['opencc'] = None\n"
            "try:\n    import models.textnorm\nexcept ImportError as e:\n    print('ERR', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(
        __import__("pathlib").Path(__file__).resolve().parents[1]), timeout=60).stdout
    assert out.startswith("ERR") and "opencc-python-reimplemented" in out
