"""Intent keyword evidence: matching, hit vectors, per-character tags, and the char model's use of them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models.intent.charmodel import KEYWORDS_FILE, CharIntentModel, CharModelConfig
from models.intent.keywords import DEFAULT_KEYWORDS_FILE, IntentKeywords
from models.intent.understand import Example, LabelMaps, load_intent_model
from models.taxonomy import INTENTS

LABELS = LabelMaps.from_taxonomy()
SMALL = dict(embed_dim=16, conv_channels=16, hidden=16, dropout=0.0, unk_dropout=0.0, keyword_dim=4)
TEXTS = ["我的快递还没收到", "宽带断网了", "我想查一下订单状态", "谢谢你们"]


def test_default_file_covers_every_intent_with_known_labels():
    kw = IntentKeywords.load()
    kw.check_intents(INTENTS)
    assert set(kw.keywords) == set(INTENTS)
    assert all(len(words) >= 20 for words in kw.keywords.values())
    assert DEFAULT_KEYWORDS_FILE.name == "keywords.yaml"


def test_longest_match_wins_and_matches_do_not_overlap():
    kw = IntentKeywords.from_mapping({"order_inquiry": ["订单", "订单状态"], "consultation": ["状态好"]})
    m = kw.matches("查订单状态好吗")
    assert [(x.start, x.end, x.keyword, x.intents) for x in m] == [(1, 5, "订单状态", ("order_inquiry",))]


def test_text_is_folded_traditional_fullwidth_and_case():
    kw = IntentKeywords.from_mapping({"network_outage": ["wifi", "没信号"]})
    assert [x.keyword for x in kw.matches("ＷｉＦｉ連不上，沒信號")] == ["wifi", "没信号"]


def test_hit_vector_counts_log1p_and_splits_shared_keywords():
    kw = IntentKeywords.from_mapping({"logistics_delay": ["快递", "延误"], "booking_issue": ["延误", "航班"]})
    v = kw.hit_vector("快递快递延误", INTENTS)
    assert v.shape == (len(INTENTS),) and v.dtype == np.float32
    assert v[INTENTS.index("logistics_delay")] == pytest.approx(np.log1p(2.5))
    assert v[INTENTS.index("booking_issue")] == pytest.approx(np.log1p(0.5))
    assert v[INTENTS.index("praise")] == 0.0


def test_char_tags_mark_keyword_characters_with_intent_index():
    kw = IntentKeywords.from_mapping({"network_outage": ["断网"], "praise": ["谢谢"]})
    tags = kw.char_tags("又断网了谢谢", INTENTS)
    net, praise = 1 + INTENTS.index("network_outage"), 1 + INTENTS.index("praise")
    assert tags == [0, net, net, 0, praise, praise]


def test_dialect_variants_are_evidence():
    kw = IntentKeywords.load()
    hits = kw.hit_vector("屋企冇信号，上唔到网", INTENTS)
    assert int(np.argmax(hits)) == INTENTS.index("network_outage")
    hits = kw.hit_vector("快啲退钱畀我", INTENTS)
    assert int(np.argmax(hits)) == INTENTS.index("refund_dispute")


def test_bad_files_and_labels_are_explained(tmp_path):
    bad = tmp_path / "kw.yaml"
    bad.write_text("logistics_delay: [快递]\n", encoding="utf-8")
    with pytest.raises(ValueError, match="top-level 'intents:'"):
        IntentKeywords.load(bad)
    with pytest.raises(ValueError, match="must be a list"):
        IntentKeywords.from_mapping({"praise": "谢谢"})
    with pytest.raises(ValueError, match="unknown intents \\['complain'\\]"):
        IntentKeywords.from_mapping({"complain": ["投诉"]}).check_intents(INTENTS)
    with pytest.raises(FileNotFoundError, match="not found"):
        IntentKeywords.load(tmp_path / "missing.yaml")


def test_collate_adds_hits_and_tags_only_with_keywords():
    on = CharIntentModel.create(TEXTS, LABELS, CharModelConfig(keywords=True, **SMALL))
    off = CharIntentModel.create(TEXTS, LABELS, CharModelConfig(keywords=False, **SMALL))
    batch = on.collate([Example(t, 0, None) for t in TEXTS])
    assert batch["keyword_hits"].shape == (4, len(INTENTS))
    assert batch["keyword_tags"].shape == batch["input_ids"].shape
    assert batch["keyword_hits"][1, INTENTS.index("network_outage")] > 0
    assert batch["keyword_tags"][1, :4].tolist() == [1 + INTENTS.index("network_outage")] * 4
    assert "keyword_hits" not in off.collate([Example(t, 0, None) for t in TEXTS])
    assert off.keywords is None and on.keywords is not None


def test_keyword_scale_moves_the_logits_of_the_hit_intent():
    torch.manual_seed(0)
    model = CharIntentModel.create(TEXTS, LABELS, CharModelConfig(keywords=True, **SMALL))
    k = INTENTS.index("network_outage")
    before, _ = model.scores(["宽带断网了"])
    with torch.no_grad():
        model.net.kw_scale.add_(5.0)
    after, _ = model.scores(["宽带断网了"])
    delta = after[0] - before[0]
    # the keyword expert adds 5 * log1p(2) to network_outage only; log-softmax shifts every logit by a constant
    assert delta[k] - np.delete(delta, k).mean() == pytest.approx(5.0 * np.log1p(2.0), rel=1e-4)
    assert np.allclose(np.delete(delta, k), np.delete(delta, k)[0], atol=1e-5)


def test_keyword_expert_learns_to_trust_hits():
    torch.manual_seed(0)
    model = CharIntentModel.create(TEXTS, LABELS, CharModelConfig(keywords=True, **SMALL))
    gold = ["logistics_delay", "network_outage", "order_inquiry", "praise"]
    examples = [Example(t, LABELS.intent_id(i), None) for t, i in zip(TEXTS, gold)]
    opt = torch.optim.Adam(model.net.parameters(), 3e-2)
    a0 = model.net.kw_scale.item()
    model.net.train()
    for _ in range(30):
        loss = model.net(**model.collate(examples, train=True))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert model.net.kw_scale.item() > a0
    # an unseen phrasing whose only evidence is a keyword of the intent
    assert model.predict(["家里光猫一直闪红灯"])[0].intent == "network_outage"


def test_save_load_keeps_keywords_and_predictions(tmp_path):
    torch.manual_seed(0)
    custom = IntentKeywords.from_mapping({"praise": ["谢谢", "太棒了"], "network_outage": ["断网"]})
    model = CharIntentModel.create(TEXTS, LABELS, CharModelConfig(keywords=True, **SMALL), keywords=custom)
    with torch.no_grad():
        model.net.kw_scale.fill_(3.0)
    model.save(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / KEYWORDS_FILE).read_text(encoding="utf-8"))
    assert saved["intents"]["praise"] == ["太棒了", "谢谢"]
    loaded = load_intent_model(tmp_path / "m")
    assert type(loaded) is CharIntentModel and loaded.config.keywords
    assert loaded.keywords.keywords == custom.keywords
    assert loaded.predict(TEXTS + ["太棒了"]) == model.predict(TEXTS + ["太棒了"])
    (tmp_path / "m" / KEYWORDS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="keywords: true"):
        load_intent_model(tmp_path / "m")


def test_model_saved_without_the_keywords_field_loads_with_keywords_off(tmp_path):
    model = CharIntentModel.create(TEXTS, LABELS, CharModelConfig(keywords=False, **SMALL))
    model.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text(encoding="utf-8"))
    for key in ("keywords", "keyword_dim", "keyword_scale", "nonkeyword_unk_dropout"):
        del config["model"][key]
    (tmp_path / "m" / "config.json").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    loaded = load_intent_model(tmp_path / "m")
    assert loaded.keywords is None and not loaded.config.keywords
    assert loaded.predict(TEXTS) == model.predict(TEXTS)


def test_keywords_on_without_lists_is_an_error():
    model = CharIntentModel.create(TEXTS, LABELS, CharModelConfig(keywords=False, **SMALL))
    with pytest.raises(ValueError, match="keywords: true"):
        CharIntentModel(model.net, model.vocab, LABELS, CharModelConfig(keywords=True, **SMALL))


def test_register_cues_separate_asking_from_complaining():
    kw = IntentKeywords.load()
    assert set(kw.register) == {"question", "complaint"} and all(len(v) >= 20 for v in kw.register.values())
    ask = kw.register_vector("我刚买了空调，想问一下保修期多久？")
    moan = kw.register_vector("售后一直拖着不给换，这是怎么回事？")
    assert ask[0] > 0 and ask[1] == 0 and ask[2] == 1.0
    assert moan[1] > 0 and moan[2] == 0.0
    # longest match over both groups: 怎么回事 is one complaint cue, not the question cue 怎么
    assert kw.register_counts("这是怎么回事") == {"question": 0, "complaint": 1}
    with pytest.raises(ValueError, match="register groups \\['praise'\\]"):
        IntentKeywords.from_mapping({"praise": ["谢谢"]}, register={"praise": ["好"]})


def test_register_cues_feed_the_keyword_expert_and_survive_save_load(tmp_path):
    torch.manual_seed(0)
    custom = IntentKeywords.from_mapping(
        {"consultation": ["咨询"], "repair_aftersales": ["保修"]},
        register={"question": ["多久", "请问"], "complaint": ["一直"]},
    )
    cfg = CharModelConfig(keywords=True, register_cues=True, **SMALL)
    model = CharIntentModel.create(TEXTS, LABELS, cfg, keywords=custom)
    batch = model.collate([Example("请问保修期多久", 0, None), Example("保修一直没人管", 0, None)])
    assert batch["register"].shape == (2, 3)
    assert batch["register"][0].tolist() == pytest.approx([np.log1p(2), 0.0, 1.0])
    assert batch["register"][1].tolist() == pytest.approx([0.0, np.log1p(1), 0.0])
    # a weight from "asks without complaining" to consultation moves only the asking text towards it
    k = INTENTS.index("consultation")
    before, _ = model.scores(["请问保修期多久", "保修一直没人管"])
    with torch.no_grad():
        model.net.kw_mix.weight[k, len(INTENTS) + 2] = 4.0
    after, _ = model.scores(["请问保修期多久", "保修一直没人管"])
    delta = after - before
    assert delta[0, k] - np.delete(delta[0], k).mean() == pytest.approx(4.0, rel=1e-4)
    assert np.allclose(delta[1], 0.0, atol=1e-5)
    model.save(tmp_path / "m")
    loaded = load_intent_model(tmp_path / "m")
    assert loaded.config.register_cues and loaded.keywords.register == custom.register
    assert loaded.predict(["请问保修期多久"]) == model.predict(["请问保修期多久"])


def test_register_cues_need_keywords_and_cue_lists():
    with pytest.raises(ValueError, match="needs keywords: true"):
        CharIntentModel.create(TEXTS, LABELS, CharModelConfig(keywords=False, register_cues=True, **SMALL))
    plain = IntentKeywords.from_mapping({"praise": ["谢谢"]})
    with pytest.raises(ValueError, match="no 'register:'"):
        CharIntentModel.create(TEXTS, LABELS, CharModelConfig(keywords=True, register_cues=True, **SMALL), keywords=plain)
