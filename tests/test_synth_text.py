"""The text side of the synthetic corpus: templates, spoken slot values and their spans, dialects, calls."""

from __future__ import annotations

import random
import re

import pytest

from data.synth import lexicon as L
from data.synth.text import (
    Amount,
    CallScript,
    TemplateError,
    TextGenerator,
    Utterance,
    cardinal,
    parse_template,
    random_amount,
    read_digits,
    speak_amount,
    split_templates,
)
from models.taxonomy import (
    COMPLAINT_INTENTS,
    DEFAULT_TAXONOMY,
    DIALECTS,
    EMOTIONS,
    INTENTS,
    Intent,
    Taxonomy,
    UnknownLabelError,
)

PHONE_RE = re.compile(r"^1[3-9]\d{9}$")
ORDER_RE = re.compile(r"^\d{8,14}$")
AMOUNT_RE = re.compile(r"^\d+(\.\d+)?$")
HAN_RE = re.compile(r"^[\u4e00-\u9fff]+$")
LATIN_OR_DIGIT = re.compile(r"[A-Za-z0-9]")
DIGIT_CHARS = {"零": "0", "洞": "0", "一": "1", "幺": "1", "二": "2", "三": "3", "四": "4", "五": "5", "六": "6",
               "七": "7", "八": "8", "九": "9"}
# characters that only written Cantonese / Wu / Min use: never in Mandarin output
NON_MANDARIN = ("嘅", "唔", "咗", "冇", "係", "哋", "嗰", "佢", "睇", "喺", "啲", "嘢", "侬", "阿拉", "覅", "阮", "汝",
                "毋", "歹势", "蚊")


# -- a reference reading of spoken numbers (independent of the generator's code) ----------------------------
_NUM = {"零": 0, "一": 1, "幺": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_UNIT = {"十": 10, "百": 100, "千": 1000}


def cn_int(s: str) -> int:
    total = section = num = 0
    for ch in s:
        if ch in _NUM:
            num = _NUM[ch]
        elif ch in _UNIT:
            section += (num or 1) * _UNIT[ch]
            num = 0
        elif ch == "万":
            total += (section + num) * 10000
            section = num = 0
        else:
            raise ValueError(f"not a numeral: {ch!r} in {s!r}")
    return total + section + num


def parse_amount(s: str) -> str:
    """Spoken sum -> EVALUATION.md value: 一百二十八块五 -> 128.5, 九十九块九毛九 -> 99.99, 五十蚊 -> 50."""
    d = "零一二三四五六七八九"
    m = re.fullmatch(f"(.*?)点([{d}]+)(元|块|蚊)", s)
    if m:
        return f"{cn_int(m[1])}.{''.join(str(_NUM[c]) for c in m[2])}"
    m = re.fullmatch("(.*?)(块钱|元钱|块|元|蚊)(.*)", s)
    yuan, rest = (cn_int(m[1]), m[3]) if m else (0, s)
    m = re.fullmatch(f"零([{d}])分|([{d}两])(?:毛|角|毫)?钱?(?:([{d}])分?)?|([{d}])仙|", rest)
    assert m is not None, f"cannot read the decimals of {s!r}"
    jiao = _NUM[m[2]] if m[2] else 0
    fen = _NUM[m[1] or m[3] or m[4]] if (m[1] or m[3] or m[4]) else 0
    return Amount(yuan, jiao, fen).normalised


def spoken_digits(s: str) -> str:
    return "".join(DIGIT_CHARS[c] for c in s)


# -- fixtures -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gen() -> TextGenerator:
    return TextGenerator()


@pytest.fixture(scope="module")
def grid(gen) -> list[Utterance]:
    """Two utterances for every intent x emotion x dialect, 1500 random ones, and every training-only template
    (data/synth/extra_templates.py) once per dialect."""
    rng = random.Random(11)
    out = [gen.utterance(rng, i, e, d) for i in INTENTS for e in EMOTIONS for d in DIALECTS for _ in range(2)]
    out += [gen.utterance(rng, rng.choice(INTENTS), rng.choice(EMOTIONS), rng.choice(DIALECTS)) for _ in range(1500)]
    extra = [t for i in INTENTS for t in gen.extra_template_ids(i)]
    out += [gen.utterance(rng, t.split("/")[0], rng.choice(EMOTIONS), d, t) for t in extra for d in DIALECTS]
    return out


@pytest.fixture(scope="module")
def calls(gen) -> list[CallScript]:
    rng = random.Random(12)
    return [gen.call(rng, i, e, d) for i in INTENTS for e in EMOTIONS for d in DIALECTS]


def all_pieces(grid, calls):
    """(text, slots, spans) of every utterance and every call turn."""
    pieces = [(u.text, u.slots, u.slot_spans) for u in grid]
    pieces += [(t.text, t.slots, t.slot_spans) for c in calls for t in c.turns]
    return pieces


# -- generation over the whole label grid ------------------------------------------------------------------
def test_every_intent_emotion_dialect_generates(gen, grid, calls):
    seen = {(u.intent, u.emotion, u.dialect) for u in grid}
    assert seen == {(i, e, d) for i in INTENTS for e in EMOTIONS for d in DIALECTS}
    for u in grid:
        assert u.text and u.text[-1] in "。！？", u.text
        assert u.template_id in gen.template_ids(u.intent, extra=True)
        assert not LATIN_OR_DIGIT.search(u.text), u.text
    assert len(calls) == len(INTENTS) * len(EMOTIONS) * len(DIALECTS)
    for c in calls:
        assert c.template_id in gen.template_ids(c.intent)
        for t in c.turns:
            assert t.speaker in ("agent", "customer")
            assert t.text and not LATIN_OR_DIGIT.search(t.text), t.text


def test_at_least_twelve_templates_per_intent(gen):
    for intent in INTENTS:
        ids = gen.template_ids(intent)
        assert len(ids) >= 12, intent
        assert ids[0] == f"{intent}/00" and len(set(ids)) == len(ids)


# -- slots and spans -------------------------------------------------------------------------------------------
def test_spans_round_trip_to_the_normalised_values(grid, calls):
    counts = {s: 0 for s in ("order_id", "phone", "amount", "product")}
    for text, slots, spans in all_pieces(grid, calls):
        assert {s for s, _, _ in spans} == set(slots), (text, slots, spans)
        ends = sorted((a, b) for _, a, b in spans)
        assert all(b1 <= a2 for (_, b1), (a2, _) in zip(ends, ends[1:])), f"overlapping spans in {text}"
        for slot, a, b in spans:
            said = text[a:b]
            assert said, (text, slot)
            counts[slot] += 1
            if slot in ("phone", "order_id"):
                assert spoken_digits(said) == slots[slot], (said, slots[slot])
            elif slot == "amount":
                assert re.search("[块元毛角蚊毫仙]", said), said
                assert parse_amount(said) == slots[slot], (said, slots[slot], text)
            else:
                assert said == slots[slot]
            # cue words stay outside the span
            assert "订单" not in said and "号" not in said and "是" not in said and "係" not in said
            # a number ends where its span ends: no numeral or unit right beside it, so ITN reads it unambiguously
            if slot != "product":
                beside = text[a - 1 : a] + text[b : b + 1]
                assert not re.search("[零洞一幺二两三四五六七八九十百千万点块元毛角蚊毫仙分钱]", beside), (text, said)
    assert all(n > 50 for n in counts.values()), counts


def test_slot_values_are_valid_per_evaluation_md(grid, calls):
    for _, slots, _ in all_pieces(grid, calls):
        if "phone" in slots:
            assert PHONE_RE.match(slots["phone"]), slots
        if "order_id" in slots:
            assert ORDER_RE.match(slots["order_id"]), slots
        if "amount" in slots:
            assert AMOUNT_RE.match(slots["amount"]), slots
            assert "." not in slots["amount"] or not slots["amount"].endswith("0"), slots
        if "product" in slots:
            assert HAN_RE.match(slots["product"]), slots


def test_slots_are_optional_and_spoken_in_several_ways(gen, grid):
    rng = random.Random(5)
    draws = [gen.utterance(rng, "logistics_delay", "neutral", "mandarin") for _ in range(300)]
    assert any(not u.slots for u in draws), "some utterances name no slot"
    assert any(len(u.slots) >= 2 for u in draws)
    assert not all("order_id" in u.slots for u in draws)
    said = lambda slot: [u.text[a:b] for u in grid for s, a, b in u.slot_spans if s == slot]  # noqa: E731
    phones, orders, amounts = said("phone"), said("order_id"), said("amount")
    assert any("幺" in p for p in phones) and any("一" in p for p in phones)
    assert any("洞" in p for p in phones + orders) and any("零" in p for p in phones + orders)
    assert {len(v) for v in orders} >= {8, 14}
    for unit in ("块", "元", "毛", "蚊", "块钱"):
        assert any(unit in a for a in amounts), unit
    cantonese_amounts = [
        u.text[a:b] for u in grid if u.dialect == "cantonese" for s, a, b in u.slot_spans if s == "amount"
    ]
    assert cantonese_amounts and not any("块" in a and "块钱" not in a for a in cantonese_amounts)


def test_products_fit_the_intent(gen):
    rng = random.Random(9)
    for intent in ("booking_issue", "network_outage", "billing_error"):
        allowed = {name for cat in L.INTENT_PRODUCTS[intent] for name, _ in L.PRODUCTS[cat]}
        for _ in range(100):
            u = gen.utterance(rng, intent, "neutral", "mandarin")
            if "product" in u.slots:
                assert u.slots["product"] in allowed, (intent, u.text)


# -- spoken numbers ---------------------------------------------------------------------------------------------
def test_cardinals_and_digit_readings():
    assert [cardinal(n) for n in (12, 50, 110, 128, 1050, 2000, 10050, 20000, 399)] == [
        "十二", "五十", "一百一十", "一百二十八", "一千零五十", "两千", "一万零五十", "两万", "三百九十九"]
    assert read_digits("13800123456", yao=True) == "幺三八零零幺二三四五六"
    assert read_digits("1080", dong=True) == "一洞八洞"
    rng = random.Random(0)
    for n in list(range(0, 2100)) + [rng.randrange(10**8) for _ in range(2000)]:
        assert cn_int(cardinal(n, rng)) == n, (n, cardinal(n, rng))
    with pytest.raises(ValueError):
        cardinal(10**8)
    with pytest.raises(ValueError):
        read_digits("12a4")


def test_spoken_amounts_round_trip():
    rng = random.Random(1)
    examples = {Amount(50, 0, 0): "50", Amount(128, 5, 0): "128.5", Amount(12, 8, 0): "12.8", Amount(99, 9, 9): "99.99",
                Amount(1050, 0, 0): "1050", Amount(12, 0, 5): "12.05", Amount(0, 8, 5): "0.85"}
    for amount, norm in examples.items():
        assert amount.normalised == norm
        for dialect in ("mandarin", "cantonese"):
            for _ in range(20):
                assert parse_amount(speak_amount(amount, rng, dialect)) == norm
    for kind, (lo, hi) in [(None, (0, 30000)), *L.AMOUNT_RANGES.items()]:
        for _ in range(300):
            a = random_amount(rng, kind)
            assert lo <= a.yuan <= hi or (a.yuan == 0 and kind in (None, "small")), (kind, a)
            assert a.yuan or a.jiao or a.fen
            assert parse_amount(speak_amount(a, rng, rng.choice(DIALECTS))) == a.normalised


# -- determinism and the held-out split ------------------------------------------------------------------------
def test_same_rng_state_gives_the_same_text(gen):
    def draw(seed: int):
        rng = random.Random(seed)
        utts = [gen.utterance(rng, i, e, d) for i, e, d in zip(INTENTS, EMOTIONS * 3, DIALECTS * 3)]
        cs = [gen.call(rng, i, "angry", "cantonese") for i in INTENTS[:4]]
        return utts, cs

    assert draw(3) == draw(3)
    assert draw(3) != draw(4)
    state = random.getstate()
    gen.utterance(random.Random(1), "praise", "happy", "mandarin")
    assert random.getstate() == state, "the global random state must not be touched"


def test_split_templates_is_disjoint_covering_and_deterministic(gen):
    split = split_templates(gen, seed=0)
    every = {t for i in INTENTS for t in gen.template_ids(i, extra=True)}
    assert set(split) == every
    assert set(split.values()) == {"train", "validation", "test"}
    for intent in INTENTS:
        by = {s: [t for t in gen.template_ids(intent) if split[t] == s] for s in ("train", "validation", "test")}
        assert all(len(v) >= 1 for v in by.values()), (intent, by)
        assert len(by["train"]) > len(by["test"])
    assert split_templates(gen, seed=0) == split
    assert split_templates(gen, seed=1) != split
    with pytest.raises(ValueError):
        split_templates(gen, seed=0, fractions=(0.8, 0.2, 0.0))


def test_extra_templates_are_training_only_and_leave_the_held_out_split_alone(gen, monkeypatch):
    import data.synth.text as text_module

    with_extra = split_templates(gen, seed=0)
    monkeypatch.setattr(text_module, "EXTRA_TEMPLATES", {})
    core = split_templates(gen, seed=0)
    assert {t: s for t, s in with_extra.items() if t in core} == core  # validation and test phrasings unchanged
    extra = set(with_extra) - set(core)
    assert len(extra) >= 5 * len(INTENTS)
    assert {with_extra[t] for t in extra} == {"train"}


def test_extra_templates_do_not_restate_core_templates(gen):
    """A training-only phrasing that copies a core template (which may be a held-out one) would leak it into
    training: no extra template shares more than a third of its character trigrams with any core template."""

    def trigrams(wording: str) -> set[str]:
        bare = re.sub(r"\{[^}]*\}|[\[\]，。？！、…]", "", wording)
        return {bare[i : i + 3] for i in range(len(bare) - 2)}

    core = {t: trigrams(gen.template(t)["mandarin"]) for i in INTENTS for t in gen.template_ids(i)}
    for intent in INTENTS:
        for tid in gen.extra_template_ids(intent):
            mine = trigrams(gen.template(tid)["mandarin"])
            closest, jaccard = max(((c, len(mine & g) / len(mine | g)) for c, g in core.items()), key=lambda x: x[1])
            assert jaccard < 0.35, f"{tid} restates {closest} (trigram Jaccard {jaccard:.2f})"


def test_core_and_extra_templates_are_distinct_wordings(gen):
    for intent in INTENTS:
        wordings = [gen.template(t)["mandarin"] for t in gen.template_ids(intent, extra=True)]
        assert len(set(wordings)) == len(wordings), intent
    with pytest.raises(ValueError, match="unknown template id"):
        gen.template("praise/999")


def test_template_id_is_honoured_in_every_dialect(gen):
    rng = random.Random(2)
    for d in DIALECTS:
        assert gen.utterance(rng, "billing_error", "angry", d, "billing_error/03").template_id == "billing_error/03"
        assert gen.call(rng, "praise", "happy", d, "praise/05").template_id == "praise/05"
    with pytest.raises(ValueError, match="not a template of intent"):
        gen.utterance(rng, "praise", "happy", "mandarin", "billing_error/03")
    with pytest.raises(UnknownLabelError):
        gen.utterance(rng, "weather", "happy", "mandarin")
    with pytest.raises(UnknownLabelError):
        gen.utterance(rng, "praise", "bored", "mandarin")
    with pytest.raises(UnknownLabelError):
        gen.utterance(rng, "praise", "happy", "hakka")


# -- variety, dialects and emotions -----------------------------------------------------------------------------
def test_variety_per_intent(gen):
    rng = random.Random(4)
    for intent in INTENTS:
        texts = {gen.utterance(rng, intent, rng.choice(EMOTIONS), "mandarin").text for _ in range(300)}
        assert len(texts) >= 200, (intent, len(texts))


def test_dialects_have_their_written_forms(gen):
    rng = random.Random(6)
    rates = {}
    for d in DIALECTS:
        texts = [gen.utterance(rng, rng.choice(INTENTS), rng.choice(EMOTIONS), d).text for _ in range(400)]
        rates[d] = sum(any(m in t for m in L.DIALECT_MARKERS.get(d, ())) for t in texts) / len(texts)
        if d == "mandarin":
            assert not [t for t in texts if any(m in t for m in NON_MANDARIN)]
    assert rates["cantonese"] >= 0.95, rates
    assert rates["southwestern"] >= 0.6, rates
    assert rates["wu"] >= 0.5 and rates["min"] >= 0.5, rates
    # Cantonese has its own phrasings, not only converted Mandarin
    own = [t for t in L.TEMPLATES.values() for t in t if "cantonese" in t]
    assert len(own) >= 60


EMOTION_CUES = {
    "angry": ("幺二三幺五", "一二三一五", "曝光", "领导", "经理", "投诉", "过分", "受够", "受不了", "忍唔住", "怎么回事",
              "搞咩", "搞乜", "咋个搞", "哪能搞", "按怎啦", "到底", "必须", "一定要", "赶紧", "说法", "交代", "解释", "！"),
    "anxious": ("快", "急", "马上", "即刻", "紧一点", "赶时间"),
    "sad": ("唉", "失望", "难过", "怎么办", "点算", "咋个办", "按怎办", "哪能办", "唔开心", "算了", "算啦"),
    "happy": ("谢", "唔该", "太好了", "好嘢", "辛苦", "麻烦你", "巴适", "赞"),
}


@pytest.mark.parametrize("emotion", sorted(EMOTION_CUES))
def test_emotion_shows_in_the_wording(gen, emotion):
    rng = random.Random(8)
    texts = [gen.utterance(rng, rng.choice(INTENTS), emotion, rng.choice(DIALECTS)).text for _ in range(400)]
    rate = sum(any(c in t for c in EMOTION_CUES[emotion]) for t in texts) / len(texts)
    assert rate >= 0.8, (emotion, rate)
    neutral = [gen.utterance(rng, rng.choice(COMPLAINT_INTENTS), "neutral", "mandarin").text for _ in range(200)]
    assert not [t for t in neutral if "幺二三幺五" in t or "曝光" in t or "唉" in t]


def test_emotion_weights(gen):
    for intent in INTENTS:
        w = gen.emotion_weights(intent)
        assert list(w) == list(EMOTIONS)
        assert sum(w.values()) == pytest.approx(1.0)
        assert all(v >= 0 for v in w.values())
        if intent in COMPLAINT_INTENTS:
            assert all(v > 0 for v in w.values()), intent
    praise = gen.emotion_weights("praise")
    assert max(praise, key=praise.get) == "happy" and praise["happy"] + praise["neutral"] > 0.9
    assert gen.emotion_weights("service_attitude")["angry"] > gen.emotion_weights("consultation")["angry"]


# -- calls ---------------------------------------------------------------------------------------------------------
def test_call_structure_and_consistent_slots(calls):
    for c in calls:
        assert c.turns[0].speaker == "agent" and c.turns[-1].speaker == "agent"
        assert c.turns[1].speaker == "customer"
        union: dict[str, str] = {}
        for t in c.turns:
            if t.speaker == "customer":
                for k, v in t.slots.items():
                    assert union.setdefault(k, v) == v, "a slot changes value within one call"
        assert c.slots == union
        for t in c.turns:  # an agent reading a number back reads the caller's number
            if t.speaker == "agent":
                assert all(c.slots.get(k) == v for k, v in t.slots.items()), (t.text, c.slots)
        assert c.customer_text == "".join(t.text for t in c.turns if t.speaker == "customer")
        for slot, a, b in c.customer_slot_spans:
            piece = c.customer_text[a:b]
            if slot in ("phone", "order_id"):
                assert spoken_digits(piece) == c.slots[slot]
            elif slot == "amount":
                assert parse_amount(piece) == c.slots[slot]
            else:
                assert piece == c.slots[slot]


def test_agent_asks_for_what_a_complaint_lacks(calls):
    for c in calls:
        wanted = L.WANTED_SLOTS[c.intent]
        if c.intent in COMPLAINT_INTENTS and wanted:
            assert any(s in c.slots for s in wanted) or "phone" in c.slots, (c.intent, c.customer_text)


def test_agents_speak_cantonese_to_cantonese_callers(calls):
    marks = L.DIALECT_MARKERS["cantonese"]
    for c in calls:
        greeting = c.turns[0].text
        if c.dialect == "cantonese":
            assert any(m in greeting for m in marks), greeting
        else:
            assert not any(m in greeting for m in ("嘅", "咩", "係", "呢度")), greeting
            assert "您好" in greeting or "你好" in greeting


# -- configuration errors -------------------------------------------------------------------------------------------
def test_template_syntax_errors_are_reported():
    assert parse_template("a[b{phone}](c|d)")
    for bad in ("{phone", "[abc", "(a|b", "a]b", "{}"):
        with pytest.raises(TemplateError):
            parse_template(bad)


def test_unknown_intent_in_taxonomy_is_refused():
    tax = Taxonomy(
        dialects=DEFAULT_TAXONOMY.dialects,
        emotions=DEFAULT_TAXONOMY.emotions,
        intents=DEFAULT_TAXONOMY.intents + (Intent("weather", "asks about weather", "天气", False),),
        slots=DEFAULT_TAXONOMY.slots,
    )
    with pytest.raises(ValueError, match="no templates for intent"):
        TextGenerator(tax)
