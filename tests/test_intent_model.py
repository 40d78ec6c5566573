"""Intent + slot models: BIO decoding, slot filling with ITN and rules, both backends, save/load round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.intent.charmodel import CharIntentModel, CharModelConfig, CharVocab
from models.intent.understand import (
    Example,
    IntentModel,
    LabelMaps,
    Understanding,
    char_tags,
    decode_bio,
    fill_slots,
    load_intent_model,
    understand,
    viterbi_bio,
)

LABELS = LabelMaps.from_taxonomy()


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small models on a shared CPU: one torch thread avoids OpenMP spin-waiting (much faster)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
DATA = [
    ("我要投诉，订单号幺三八零零一二三四五六还没到", "logistics_delay", [("order_id", 8, 19)]),
    ("请问怎么开发票", "consultation", []),
    ("退款一百二十八块五一直没到账", "refund_dispute", [("amount", 2, 9)]),
    ("手机是13912345678，谢谢你们的华为手机", "praise", [("phone", 3, 14), ("product", 20, 24)]),
]


def _examples():
    return [Example(t, LABELS.intent_id(i), tuple(char_tags(t, s, LABELS.bio_tags))) for t, i, s in DATA]


def _train(model, steps: int, lr: float) -> None:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.net.parameters(), lr)
    model.net.train()
    for _ in range(steps):
        loss = model.net(**model.collate(_examples()))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()


# -- BIO -------------------------------------------------------------------------------------------
def test_char_tags_and_decode_bio_round_trip():
    text, _, spans = DATA[3]
    tags = [LABELS.bio_tags[t] for t in char_tags(text, spans, LABELS.bio_tags)]
    assert tags[3] == "B-phone" and tags[4:14] == ["I-phone"] * 10 and tags[14] == "O"
    assert [s[:3] for s in decode_bio(tags)] == [("phone", 3, 14), ("product", 20, 24)]


def test_decode_bio_edge_cases():
    # I- after O opens a span (lenient); B- right after a span closes it; a slot change splits
    tags = ["O", "I-amount", "I-amount", "B-amount", "I-phone", "O", "B-product"]
    assert [s[:3] for s in decode_bio(tags)] == [("amount", 1, 3), ("amount", 3, 4), ("phone", 4, 5), ("product", 6, 7)]
    conf = decode_bio(["B-phone", "I-phone", "O"], [0.9, 0.5, 1.0])
    assert conf == [("phone", 0, 2, pytest.approx(0.7))]
    assert decode_bio([]) == []


def test_viterbi_never_emits_orphan_inside_tags():
    tags = LABELS.bio_tags
    lp = np.log(np.full((3, len(tags)), 1e-3))
    i_phone, b_phone, o = tags.index("I-phone"), tags.index("B-phone"), tags.index("O")
    lp[:, i_phone] = np.log(0.6)  # argmax alone would give I I I
    lp[0, b_phone] = np.log(0.3)
    lp[:, o] = np.log(0.35)
    best = [tags[t] for t in viterbi_bio(lp, tags)]
    assert best == ["B-phone", "I-phone", "I-phone"]


# -- slots -----------------------------------------------------------------------------------------
def test_fill_slots_normalises_drops_implausible_and_uses_rules():
    text = "我的电话是一三九一二三四五六七，订单号幺三八零零一二三四五六，退了五十块"
    phone = text.index("一三九")
    order = text.index("幺三八")
    spans = [("phone", phone, phone + 10, 0.9)]  # ten digits: not a phone, dropped
    values, surfaces, conf = fill_slots(text, spans, LABELS.slots)
    assert "phone" not in values
    assert values["order_id"] == "13800123456" and conf["order_id"] == 0.5  # filled by the number rules
    assert values["amount"] == "50"
    assert ("order_id", order, order + 11, "幺三八零零一二三四五六") in surfaces


def test_fill_slots_prefers_confident_plausible_span():
    text = "产品是小米手机还是华为手机"
    spans = [("product", 3, 7, 0.6), ("product", 9, 13, 0.8)]
    values, surfaces, conf = fill_slots(text, spans, LABELS.slots)
    assert values == {"product": "华为手机"} and conf == {"product": 0.8}


def test_understand_combines_intent_cues_and_slots():
    text = "我打幺二三幺五投诉，电话幺三八零零一二三四五六"
    logits = np.zeros(len(LABELS.intents))
    logits[LABELS.intent_id("consultation")] = 3.0
    o = LABELS.bio_tags.index("O")
    lp = np.full((len(text), len(LABELS.bio_tags)), -20.0)
    lp[:, o] = 0.0
    start = text.index("幺三八")
    lp[start, :], lp[start, LABELS.bio_tags.index("B-phone")] = -20.0, 0.0
    lp[start + 1 : start + 11, :] = -20.0
    lp[start + 1 : start + 11, LABELS.bio_tags.index("I-phone")] = 0.0
    u = understand(text, logits, lp, LABELS, temperature=2.0)
    assert u.intent == "consultation" and u.is_complaint
    assert u.complaint_evidence == ("cue:12315", "cue:投诉")
    assert u.slots == {"phone": "13800123456"} and u.slot_spans == (("phone", start, start + 11, "幺三八零零一二三四五六"),)
    assert u.slot_confidence["phone"] == pytest.approx(1.0)
    assert sum(u.intent_probs.values()) == pytest.approx(1.0)
    # temperature 2 spreads the probability: e^(3/2) / (e^(3/2) + 10)
    assert u.intent_confidence == pytest.approx(np.exp(1.5) / (np.exp(1.5) + 10))


# -- char backend ----------------------------------------------------------------------------------
def test_vocab_always_has_numerals_and_maps_unknown():
    v = CharVocab.build(["你好"])
    ids = v.encode("你好１３八元龘")
    assert ids[-1] == 1  # unknown
    assert all(i > 1 for i in ids[:-1])  # fullwidth digits fold onto ASCII, numerals always known
    assert v.chars[:2] == ("<pad>", "<unk>")


def test_char_model_learns_and_round_trips(tmp_path):
    torch.manual_seed(0)
    model = CharIntentModel.create([t for t, _, _ in DATA], LABELS, CharModelConfig(embed_dim=32, conv_channels=32, hidden=32, dropout=0.0, unk_dropout=0.0, ngram_buckets=1000, ngram_dim=16))
    _train(model, steps=120, lr=1e-2)
    model.temperature = 1.7
    texts = [t for t, _, _ in DATA] + ["", "我要投诉"]
    preds = model.predict(texts)
    assert isinstance(model, IntentModel)
    assert [p.intent for p in preds[:4]] == [i for _, i, _ in DATA]
    assert preds[0].slots == {"order_id": "13800123456"}
    assert preds[2].slots == {"amount": "128.5"}
    assert preds[3].slots == {"phone": "13912345678", "product": "华为手机"}
    assert preds[0].is_complaint and "intent:logistics_delay" in preds[0].complaint_evidence
    assert preds[4].slots == {} and isinstance(preds[4], Understanding)
    model.save(tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} == {"config.json", "vocab.json", "weights.safetensors"}
    loaded = load_intent_model(tmp_path / "m")
    assert type(loaded) is CharIntentModel and loaded.temperature == 1.7
    assert loaded.predict(texts) == preds


def _tiny_char(seed: int, steps: int) -> CharIntentModel:
    torch.manual_seed(seed)
    model = CharIntentModel.create([t for t, _, _ in DATA], LABELS, CharModelConfig(
        embed_dim=16, conv_channels=16, hidden=16, dropout=0.0, unk_dropout=0.0, ngram_buckets=100, ngram_dim=8))
    _train(model, steps=steps, lr=1e-2)
    return model


def test_ensemble_averages_members_and_round_trips(tmp_path):
    from models.intent.ensemble import EnsembleIntentModel

    a, b = _tiny_char(0, 40), _tiny_char(1, 5)
    a.temperature, b.temperature = 1.3, 0.7
    a.gazetteer, b.gazetteer = {"product": ("华为手机",)}, {"product": ("小米电视", "华为手机")}
    ens = EnsembleIntentModel([a, b])
    texts = [t for t, _, _ in DATA] + [""]
    (za, ta), (zb, tb) = a.scores(texts), b.scores(texts)
    z, tags = ens.scores(texts)
    def p(z, t):
        e = np.exp((z - z.max(-1, keepdims=True)) / t)
        return e / e.sum(-1, keepdims=True)

    np.testing.assert_allclose(np.exp(z), (p(za, 1.3) + p(zb, 0.7)) / 2, rtol=1e-5)  # calibrated probabilities
    for k in range(len(texts)):  # the log of the mean tag probability, still a distribution per character
        np.testing.assert_allclose(np.exp(tags[k]), (np.exp(ta[k]) + np.exp(tb[k])) / 2, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(np.exp(tags[k]).sum(-1), 1.0, rtol=1e-5)
    assert ens.temperature == 1.0 and ens.gazetteer == {"product": ("华为手机", "小米电视")}
    assert isinstance(ens, IntentModel)
    preds = ens.predict(texts)
    ens.save(tmp_path / "e")
    assert {p.name for p in (tmp_path / "e").iterdir()} == {"config.json", "member-0", "member-1"}
    loaded = load_intent_model(tmp_path / "e")
    assert type(loaded) is EnsembleIntentModel and len(loaded.members) == 2 and loaded.predict(texts) == preds


def test_ensemble_refuses_bad_members(tmp_path):
    import shutil

    from models.intent.ensemble import EnsembleIntentModel

    with pytest.raises(ValueError, match="at least one member"):
        EnsembleIntentModel([])
    other = CharIntentModel.create(["谢谢"], LabelMaps(("praise", "consultation"), (), LABELS.bio_tags),
                                   CharModelConfig(embed_dim=8, conv_channels=8, hidden=8))
    with pytest.raises(ValueError, match="other labels"):
        EnsembleIntentModel([_tiny_char(0, 1), other])
    EnsembleIntentModel([_tiny_char(0, 1), _tiny_char(1, 1)]).save(tmp_path / "e")
    shutil.rmtree(tmp_path / "e" / "member-1")
    with pytest.raises(FileNotFoundError, match="member-1"):
        load_intent_model(tmp_path / "e")


def test_load_explains_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a saved intent model directory"):
        load_intent_model(tmp_path)
    (tmp_path / "config.json").write_text('{"backend": "svm"}')
    with pytest.raises(ValueError, match="unknown backend 'svm'"):
        load_intent_model(tmp_path)


# -- hf backend ------------------------------------------------------------------------------------
def make_tiny_bert(directory, texts) -> str:
    """A random 2-layer BERT with a character vocabulary built from ``texts``, saved like a pretrained model."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    chars = sorted(set("".join(texts)) | set("0123456789"))
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]), encoding="utf-8")
    tok = BertTokenizerFast(vocab=str(vocab))
    tok.save_pretrained(directory)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=256)
    BertModel(cfg).save_pretrained(directory)
    return str(directory)


def test_hf_backend_aligns_tags_learns_and_round_trips(tmp_path):
    from models.intent.hf_backend import HFIntentModel, HFModelConfig

    path = make_tiny_bert(tmp_path / "bert", [t for t, _, _ in DATA])
    model = HFIntentModel.create(LABELS, HFModelConfig(pretrained=path, dropout=0.0))
    batch = model.collate(_examples())
    # char tags land on the tokens: [CLS] is ignored, the phone's first digit token is B-phone
    tags = batch["tag_labels"][3].tolist()
    assert tags[0] == -100
    assert LABELS.bio_tags[tags[4]] == "B-phone"  # "13912345678" is one token (a word the vocab lacks)
    assert LABELS.bio_tags[tags[5]] == "O"
    _train(model, steps=80, lr=3e-3)
    texts = [t for t, _, _ in DATA]
    preds = model.predict(texts)
    assert [p.intent for p in preds] == [i for _, i, _ in DATA]
    assert preds[3].slots["phone"] == "13912345678"
    model.save(tmp_path / "saved")
    loaded = load_intent_model(tmp_path / "saved")
    assert type(loaded) is HFIntentModel
    assert loaded.predict(texts) == preds


def test_hf_char_log_probs_move_b_inside_a_token(tmp_path):
    from models.intent.hf_backend import HFIntentModel, HFModelConfig

    path = make_tiny_bert(tmp_path / "bert", ["手机"])
    model = HFIntentModel.create(LABELS, HFModelConfig(pretrained=path))
    tags = LABELS.bio_tags
    token_lp = np.log(np.full((3, len(tags)), 1e-6))
    token_lp[1, tags.index("B-phone")] = 0.0  # one token covering characters 0..3
    out = model._char_log_probs("138x", token_lp, [(0, 0), (0, 3), (0, 0)])
    assert out[0].argmax() == tags.index("B-phone")
    assert out[1].argmax() == tags.index("I-phone") and out[2].argmax() == tags.index("I-phone")
    assert out[3].argmax() == tags.index("O")  # no token covers it


def test_snap_to_known_fixes_misheard_products():
    from models.intent.understand import snap_to_known

    known = ("冰柜", "美的热水器", "小天鹅洗衣机", "景区门票", "奥克斯空调", "华为手机", "小米手机")
    assert snap_to_known("小天鹅饿洗衣机", known)[0] == "小天鹅洗衣机"  # an inserted character
    assert snap_to_known("美的热水器仲", known)[0] == "美的热水器"  # a word caught at the span's end
    assert snap_to_known("奥克斯孔调", known)[0] == "奥克斯空调"  # a homophone (kong)
    assert snap_to_known("景区票", known)[0] == "景区门票"  # a dropped character
    assert snap_to_known("华为手机", known) == ("华为手机", 1.0)
    assert snap_to_known("演", known) == ("演", 1.0)  # nothing close: kept as heard
    assert snap_to_known("为手机", known)[0] == "华为手机"  # one edit from 华为手机, two from 小米手机
    assert snap_to_known("华为手", ("华为手机", "华为手表")) == ("华为手", 1.0)  # ambiguous: kept
    value, sim = snap_to_known("台冰柜", known)
    assert value == "冰柜" and 0 < sim < 1


# -- open-vocabulary products and dialect numbers in fill_slots (issue 15) --------------------------
GAZ = {"product": ("美的热水器", "油烟机", "小天鹅洗衣机", "华为手机", "扫地机器人")}


@pytest.mark.parametrize("text, product", [
    ("我家的方太热水器坏了", "方太热水器"),
    ("老板油烟机一直响", "老板油烟机"),
    ("科沃斯扫地机器人不充电", "科沃斯扫地机器人"),
])
def test_fill_slots_keeps_a_product_of_another_brand(text, product):
    start = text.index(product)
    for conf in (1.0, 0.6):
        values, spans, _ = fill_slots(text, [("product", start, start + len(product), conf)], LABELS.slots, GAZ)
        assert values["product"] == product and spans[0][3] == product


def test_fill_slots_repairs_a_misheard_product_of_the_same_brand():
    text = "我的美得热水器坏了"
    values, _, _ = fill_slots(text, [("product", 2, 7, 0.9)], LABELS.slots, GAZ)
    assert values["product"] == "美的热水器"
    values, _, _ = fill_slots("小天鹅饿洗衣机漏水", [("product", 0, 7, 0.9)], LABELS.slots, GAZ)
    assert values["product"] == "小天鹅洗衣机"


def test_understand_reports_product_details():
    text = "方太热水器坏了"
    lp = np.full((len(text), len(LABELS.bio_tags)), np.log(1e-6))
    b, i, o = (LABELS.bio_tags.index(t) for t in ("B-product", "I-product", "O"))
    for k in range(len(text)):
        lp[k, b if k == 0 else i if k < 5 else o] = 0.0
    u = understand(text, np.zeros(len(LABELS.intents)), lp, LABELS, gazetteer=GAZ)
    assert u.slots == {"product": "方太热水器"}
    d = u.slot_details["product"]
    assert (d["value"], d["brand"], d["category"], d["catalogue_id"]) == ("方太热水器", "方太", "small", None)
    assert u.to_dict()["slot_details"]["product"]["brand"] == "方太"
    known = understand("美的热水器坏了", np.zeros(len(LABELS.intents)), lp, LABELS, gazetteer=GAZ)
    assert known.slot_details["product"]["catalogue_id"] == "midea-heater"


def test_fill_slots_extends_a_short_amount_span_to_the_whole_amount():
    text = "我使咗五百四十六蚊半。"
    values, spans, _ = fill_slots(text, [("amount", 3, 9, 0.9)], LABELS.slots)  # the tagger stopped before 半
    assert values == {"amount": "546.5"} and spans[0][1:3] == (3, 10)


def test_fill_slots_finds_cantonese_phone_numbers_without_a_tagger():
    values, _, _ = fill_slots("我電話係一三八零零一二三四五六，單號係一二三四五六七八九", [], LABELS.slots)
    assert values == {"phone": "13800123456", "order_id": "123456789"}
