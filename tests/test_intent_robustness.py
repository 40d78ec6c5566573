"""Robustness of the intent model to unseen phrasings and recognition errors: misheard digits, product
values snapped in context, keyword-swap augmentation, expert weights and label smoothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.intent.charmodel import CharIntentModel, CharModelConfig
from models.intent.keywords import IntentKeywords
from models.intent.understand import (
    Example,
    LabelMaps,
    SlotRules,
    char_tags,
    fill_slots,
    load_intent_model,
    misheard_digit,
    repair_digits,
    snap_in_context,
)
from models.taxonomy import DEFAULT_TAXONOMY
from training.intent import Labelled, swap_keywords, weigh_experts

LABELS = LabelMaps.from_taxonomy(DEFAULT_TAXONOMY)
SMALL = dict(embed_dim=16, conv_channels=16, hidden=16, dropout=0.0, unk_dropout=0.0, keyword_dim=4, ngram_buckets=97, ngram_dim=8)


def test_misheard_digit_maps_homophones_only():
    assert misheard_digit("饲") == "四"  # si
    assert misheard_digit("纽") == "六"  # niu ~ liu (n/l merge)
    assert misheard_digit("药") == "幺"
    assert misheard_digit("四") is None  # already a digit
    assert misheard_digit("订") is None and misheard_digit("a") is None


def test_repair_digits_inside_and_at_the_start_of_a_reading():
    assert repair_digits("订单号码二六三五四一饲零八") == "订单号码二六三五四一四零八"
    assert repair_digits("号码药三零五零六五五七四七") == "号码幺三零五零六五五七四七"
    assert repair_digits("单号是一三八零零九") == "单号是一三八零零九"  # 是 before a number stays
    assert repair_digits("我要退货，谢谢") == "我要退货，谢谢"
    text = "号码是幺三八八二四纽五幺九幺"
    assert len(repair_digits(text)) == len(text)


def test_fill_slots_reads_a_phone_with_a_misheard_digit():
    text = "我的号码是幺三八八二四纽五幺九幺"
    start = text.index("幺")
    slots, spans, _ = fill_slots(text, [("phone", start, len(text), 0.9)], LABELS.slots)
    assert slots == {"phone": "13882465191"}
    assert spans[0][3] == text[start:]  # the surface is what was heard


def test_snap_in_context_fixes_short_and_long_product_spans():
    known = ("蓝牙耳机", "华为手机", "平板电脑", "真皮沙发套", "沙发")
    text = "蓝牙耳寂陡摔坏了"
    assert snap_in_context(text, 0, 6, known)[:1] == ("蓝牙耳机",)  # tagger ran past the value
    text = "师傅讲平板电姥的零件没货"
    value, sim, a, b = snap_in_context(text, 3, 4, known)  # tagger stopped at the misheard character
    assert (value, text[a:b], sim) == ("平板电脑", "平板电姥", 1.0)
    assert snap_in_context("我的皮沙发套到了", 2, 6, known)[0] == "真皮沙发套"  # the longer value covering the span
    assert snap_in_context("我要投诉你们", 2, 4, known) is None


def test_fill_slots_snaps_a_truncated_product_span():
    text = "订好的船漂被取消了"
    slots, spans, _ = fill_slots(text, [("product", 3, 4, 0.8)], LABELS.slots, {"product": ("船票", "机票")})
    assert slots == {"product": "船票"}
    assert spans[0][1:3] == (3, 5)


def test_swap_keywords_adds_copies_with_other_keywords_and_keeps_spans():
    kw = IntentKeywords.from_mapping({"refund_dispute": ["退款", "退钱", "拒绝退款申请"], "billing_error": ["扣费"]})
    text = "我申请退款，订单号一二三四五六七八，退款一直没到"
    start = text.index("一二")
    u = Labelled(text, "refund_dispute", {"order_id": "12345678"}, (("order_id", start, start + 8),), True)
    out = swap_keywords([u] * 20, 1.0, seed=0, keywords=kw)
    copies = out[20:]
    assert copies and all(c.intent == "refund_dispute" and c.slots == u.slots for c in copies)
    assert any("拒绝退款申请" in c.text or "退钱" in c.text for c in copies)
    for c in copies:
        (_, a, b), = c.spans
        assert c.text[a:b] == "一二三四五六七八"


def test_weigh_experts_prefers_the_expert_that_is_right():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    right = np.log(np.full((200, 4), 0.1) + np.eye(4)[y] * 0.6)
    wrong = np.log(np.full((200, 4), 0.1) + np.eye(4)[(y + 1) % 4] * 0.65)
    weights, acc = weigh_experts(np.stack([wrong, right], axis=1), y, (0.25, 1.0))
    assert weights == (0.25, 1.0) and acc == 1.0


def _model(**kw) -> CharIntentModel:
    texts = ["我的快递一直没到", "宽带断网了", "我要退款", "请问保修多久"]
    return CharIntentModel.create(texts, LABELS, CharModelConfig(keywords=True, **SMALL, **kw))


def test_expert_weights_scale_the_experts_and_survive_save_load(tmp_path):
    torch.manual_seed(0)
    model = _model()
    texts = ["我的快递一直没到", "请问保修多久"]
    lp = model.expert_log_probs(texts)
    assert lp.shape == (2, 3, len(LABELS.intents))
    model.set_expert_weights((0.0, 0.5, 2.0))
    logits, _ = model.scores(texts)
    np.testing.assert_allclose(logits, 0.5 * lp[:, 1] + 2.0 * lp[:, 2], rtol=1e-5, atol=1e-5)
    model.save(tmp_path / "m")
    loaded = load_intent_model(tmp_path / "m")
    assert loaded.config.expert_weights == (0.0, 0.5, 2.0)
    np.testing.assert_allclose(loaded.scores(texts)[0], logits, rtol=1e-5, atol=1e-5)


def test_label_smoothing_changes_only_the_neural_experts_loss():
    torch.manual_seed(0)
    plain = _model()
    torch.manual_seed(0)
    smooth = _model(label_smoothing=0.2)
    texts = ["我的快递一直没到", "宽带断网了"]
    ex = [Example(t, LABELS.intent_id(i), tuple(char_tags(t, (), LABELS.bio_tags)))
          for t, i in zip(texts, ("logistics_delay", "network_outage"))]
    a = plain.net(**plain.collate(ex))
    b = smooth.net(**smooth.collate(ex))
    torch.testing.assert_close(a["intent_logits"], b["intent_logits"])  # same weights, same scores
    assert not torch.isclose(a["loss"], b["loss"])
    with pytest.raises(TypeError):
        CharModelConfig(label_smoothing=0.1, unknown_field=1)  # type: ignore[call-arg]


def test_a_word_that_only_sounds_near_a_product_is_not_made_one():
    known = ("床垫", "船票", "羽绒服", "沙发")
    text = "停电恢复以后网就一直连不上"  # ting-dian: one syllable from chuang-dian, no character of 床垫
    assert snap_in_context(text, 0, 2, known) is None
    slots, spans, _ = fill_slots(text, [("product", 0, 2, 0.4)], LABELS.slots, {"product": known})
    assert slots == {} and spans == ()  # not snapped, and unknown at low confidence: no product
    sure = fill_slots(text, [("product", 0, 2, 0.97)], LABELS.slots, {"product": known},
                      SlotRules(min_shared_chars=1, unknown_min_confidence=0.95))[0]
    assert sure == {"product": "停电"}  # a very confident span outside the gazetteer is kept as heard
    loose = fill_slots(text, [("product", 0, 2, 0.4)], LABELS.slots, {"product": known}, SlotRules(0, 0.0))[0]
    assert loose == {"product": "停电"}  # whatever the rules, never snapped to a different product (issue 15)


def test_a_misheard_real_product_still_snaps_under_the_rules():
    known = ("床垫", "船票", "羽绒服", "沙发")
    gaz = {"product": known}
    homophone = fill_slots("订好的船漂被取消了", [("product", 3, 4, 0.3)], LABELS.slots, gaz)[0]
    assert homophone == {"product": "船票"}  # same sound: snaps even at low confidence
    text = "我买的羽绒穿了两天就坏了"  # 服 dropped: one edit, two characters kept
    assert fill_slots(text, [("product", 3, 5, 0.6)], LABELS.slots, gaz)[0] == {"product": "羽绒服"}
    # a low-confidence non-product span is dropped and the next span of the slot is used
    text = "停电以后我的床垫也泡水了"
    spans = [("product", 0, 2, 0.5), ("product", 6, 8, 0.45)]
    slots, chosen, _ = fill_slots(text, spans, LABELS.slots, gaz)
    assert slots == {"product": "床垫"} and chosen[0][1:3] == (6, 8)
