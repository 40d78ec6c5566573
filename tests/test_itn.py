"""Inverse text normalisation of spoken Chinese numbers (models/intent/itn.py)."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from models.intent.itn import (
    amount,
    cardinal,
    digits,
    find_number_spans,
    normalize_slot,
    normalize_text,
    order_id,
    parse_amount,
    phone,
    scan_numbers,
)


# -- digits ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spoken, expected",
    [
        ("幺三八零零一二三四五六", "13800123456"),
        ("一三八零零一二三四五六", "13800123456"),
        ("洞洞七", "007"),
        ("〇一二", "012"),
        ("幺两三", "123"),
        ("二两", "22"),
        ("幺三八 零零一二 三四五六", "13800123456"),
        ("幺三八-零零一二-三四五六", "13800123456"),
        ("幺三八，嗯，零零一二，呃，三四五六", "13800123456"),
        ("幺三八那个零零一二", "1380012"),
        ("138 零零一二 3456", "13800123456"),
        ("１３８００１２３４５６", "13800123456"),
        ("幺八八四个零", "1880000"),
        ("洞幺拐勾", "0179"),
        ("九 九 九", "999"),
        ("幺三八abc", None),
        ("一百二十", None),
        ("我的手机", None),
        ("", None),
        ("嗯 呃", None),
    ],
)
def test_digits(spoken, expected):
    assert digits(spoken) == expected


# -- cardinals -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spoken, expected",
    [
        ("零", "0"),
        ("五", "5"),
        ("两", "2"),
        ("十", "10"),
        ("十二", "12"),
        ("十五", "15"),
        ("二十", "20"),
        ("二十五", "25"),
        ("一百", "100"),
        ("两百", "200"),
        ("二百五", "250"),
        ("一百零五", "105"),
        ("一百一十", "110"),
        ("一百二", "120"),
        ("三百九十九", "399"),
        ("一千零五十", "1050"),
        ("一千零五", "1005"),
        ("两千三", "2300"),
        ("两千零三", "2003"),
        ("三万五千", "35000"),
        ("三万五", "35000"),
        ("一万二", "12000"),
        ("一万零五百", "10500"),
        ("十万", "100000"),
        ("二十万", "200000"),
        ("十二万三", "123000"),
        ("三千五百万", "35000000"),
        ("一亿", "100000000"),
        ("一亿五", "150000000"),
        ("两亿三千万", "230000000"),
        ("一千二百三十四万五千六百七十八", "12345678"),
        ("三点五", "3.5"),
        ("零点五", "0.5"),
        ("三点一四", "3.14"),
        ("三点五万", "35000"),
        ("一个半", "1.5"),
        ("两个半", "2.5"),
        ("半", "0.5"),
        ("3千", "3000"),
        ("1万2", "12000"),
        ("1.5万", "15000"),
        ("3万500", "30500"),
        ("1299", "1299"),
        ("三九九", "399"),
        ("廿五", "25"),
        ("百二", "120"),
        ("百万", "1000000"),
        ("负三", "-3"),
        ("兩萬", "20000"),
        ("壹佰贰拾", "120"),
    ],
)
def test_cardinal(spoken, expected):
    value = cardinal(spoken)
    assert value is not None, spoken
    assert value == Decimal(expected)


@pytest.mark.parametrize(
    "spoken",
    ["", "万", "万五", "三四百", "一两", "五百三千", "三万五万", "八百多", "一百块", "一下", "abc", "十二点", "三点"],
)
def test_cardinal_rejects(spoken):
    assert cardinal(spoken) is None


# -- amounts ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spoken, expected",
    [
        ("五十块", "50"),
        ("五十块钱", "50"),
        ("一百二十八块五", "128.5"),
        ("十二块八毛", "12.8"),
        ("十二块八毛钱", "12.8"),
        ("九十九块九毛九", "99.99"),
        ("九十九块九毛九分", "99.99"),
        ("三块零五分", "3.05"),
        ("三块零五", "3.05"),
        ("三块五分", "3.05"),
        ("三元五角", "3.5"),
        ("一块半", "1.5"),
        ("两毛五", "0.25"),
        ("五毛钱", "0.5"),
        ("八分钱", "0.08"),
        ("两千块钱", "2000"),
        ("一千零五十元", "1050"),
        ("三百九十九", "399"),
        ("一万二", "12000"),
        ("三万元", "30000"),
        ("1.5万元", "15000"),
        ("1299元", "1299"),
        ("¥1,299.00", "1299"),
        ("人民币五十元", "50"),
        ("一共三百块", "300"),
        ("三点五元", "3.5"),
        ("五十蚊", "50"),
        ("一百蚊", "100"),
        ("八蚊半", "8.5"),
        ("三蚊五", "3.5"),
        ("廿蚊", "20"),
        ("百二蚊", "120"),
        ("五毫子", "0.5"),
        ("一百塊", "100"),
        ("八百多块", "800"),
        ("五十块整", "50"),
        ("五", "5"),
    ],
)
def test_amount(spoken, expected):
    assert amount(spoken) == expected


@pytest.mark.parametrize(
    "spoken, approximate",
    [("八百多块", True), ("三十多万", True), ("大概五十块", True), ("五十块左右", True), ("五十块", False)],
)
def test_amount_flags_rough_figures(spoken, approximate):
    reading = parse_amount(spoken)
    assert reading is not None
    assert reading.approximate is approximate


@pytest.mark.parametrize(
    "spoken", ["", "块", "十分", "三四百块", "一百多块五", "五块五毛五毛", "负五十块", "abc元", "五十块钱abc"]
)
def test_amount_rejects(spoken):
    assert amount(spoken) is None


# -- phone and order numbers -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "spoken, expected",
    [
        ("幺三八零零一二三四五六", "13800123456"),
        ("幺五九 幺幺幺二 三三三三", "15911123333"),
        ("一九八，零零零零，一二三四", "19800001234"),
        ("+86 138 0012 3456", "13800123456"),
        ("八六幺三八零零一二三四五六", "13800123456"),
        ("幺三八零零一二三四五", None),  # 10 digits
        ("幺三八零零一二三四五六七", None),  # 12 digits
        ("幺二八零零一二三四五六", None),  # starts 12
        ("二三八零零一二三四五六", None),  # starts 2
        ("幺三八零零一二三四五x", None),  # a letter
        ("一百三十八", None),
    ],
)
def test_phone(spoken, expected):
    assert phone(spoken) == expected


@pytest.mark.parametrize(
    "spoken, expected",
    [
        ("一二三四五六", "123456"),
        ("二零二四零五一二零零八八", "202405120088"),
        ("一二三四五", None),
        ("一" * 21, None),
        ("订单一二三四五六", None),
    ],
)
def test_order_id(spoken, expected):
    assert order_id(spoken) == expected


@pytest.mark.parametrize(
    "name, spoken, expected",
    [
        ("phone", "幺三八零零一二三四五六", "13800123456"),
        ("phone", "幺三八", None),
        ("order_id", "一二三四五六七八", "12345678"),
        ("amount", "一百二十八块五", "128.5"),
        ("product", "  华为 Mate60 ", "华为 Mate60"),
        ("product", "小米十四。", "小米十四"),
    ],
)
def test_normalize_slot(name, spoken, expected):
    assert normalize_slot(name, spoken) == expected


def test_normalize_slot_needs_a_name():
    with pytest.raises(ValueError, match="slot name"):
        normalize_slot("", "五十块")


# -- free text -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, expected",
    [
        ("我的手机是幺三八零零一二三四五六", "我的手机是13800123456"),
        ("我的手机是幺三八 零零一二 三四五六，谢谢", "我的手机是13800123456，谢谢"),
        ("手机幺三八零零一二三四五六一直打不通", "手机13800123456一直打不通"),
        ("你帮我查一下", "你帮我查一下"),
        ("我一直在等，一样没人理", "我一直在等，一样没人理"),
        ("万一又丢了怎么办", "万一又丢了怎么办"),
        ("我十分生气", "我十分生气"),
        ("买了一些东西，统一处理，唯一的要求，一定要退", "买了一些东西，统一处理，唯一的要求，一定要退"),
        ("退款一百二十八块五还没到", "退款128.5元还没到"),
        ("花了两千块钱", "花了2000元"),
        ("扣了我九十九块九毛九", "扣了我99.99元"),
        ("八百多块买的", "800多元买的"),
        ("才五块吧", "才5元吧"),
        ("五十蚊一个", "50元一个"),
        ("三块蛋糕", "三块蛋糕"),
        ("我们一块去", "我们一块去"),
        ("我们一块儿去", "我们一块儿去"),
        ("等了三十天", "等了30天"),
        ("等了一个半小时", "等了一个半小时"),
        ("第十二次打电话", "第12次打电话"),
        ("两三天就到", "两三天就到"),
        ("三四百块", "三四百块"),
        ("下午三点半打的", "下午三点半打的"),
        ("三点五十分到", "三点五十分到"),
        ("一百万一定要赔", "1000000一定要赔"),
        ("统一三百块", "统一300元"),
        ("二零二三年买的", "2023年买的"),
        ("涨了百分之五十", "涨了50%"),
        ("iPhone 15 才 5999元", "iPhone 15 才 5999元"),
        ("说得一五一十，三三两两", "说得一五一十，三三两两"),
    ],
)
def test_normalize_text(text, expected):
    assert normalize_text(text) == expected


def test_normalize_text_leaves_text_without_numbers_alone():
    text = "你们的服务态度太差了，我要投诉！"
    assert normalize_text(text) == text
    assert scan_numbers(text) == []


def _spans(text):
    return [(kind, text[start:end], value) for kind, start, end, value in find_number_spans(text)]


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "我的订单号是二零二四零五一二零零八八，手机幺三八零零一二三四五六，到现在还没发货",
            [("order_id", "二零二四零五一二零零八八", "202405120088"), ("phone", "幺三八零零一二三四五六", "13800123456")],
        ),
        (
            "你们重复扣了我一百二十八块五，订单一二三四五六七八九，赶紧退钱",
            [("amount", "一百二十八块五", "128.5"), ("order_id", "一二三四五六七八九", "123456789")],
        ),
        (
            "电话是幺五九 幺幺幺二 三三三三，那个空调花了三千九百九十九元，十分不满意",
            [("phone", "幺五九 幺幺幺二 三三三三", "15911123333"), ("amount", "三千九百九十九元", "3999")],
        ),
        ("我買咗部手機，俾咗五千蚊，壞咗", [("amount", "五千蚊", "5000")]),
        ("退款三块零五分一直没到", [("amount", "三块零五分", "3.05")]),
        ("快递等了十二天，一下都没动", []),
        ("幺二三四五六七八九零一", [("order_id", "幺二三四五六七八九零一", "12345678901")]),  # 11 digits, not a mobile
    ],
)
def test_find_number_spans(text, expected):
    assert _spans(text) == expected


# -- property: invert a reference verbaliser -------------------------------------------------------
DIGIT_WORDS = "零一二三四五六七八九"
PLACES = ((1000, "千"), (100, "百"), (10, "十"), (1, ""))


def _say_section(n: int, rng: random.Random, leading: bool) -> str:
    """1..9999 in the standard reading; ``leading``: the number starts here (十五, not 一十五)."""
    parts: list[str] = []
    started = gap = False
    for place, unit in PLACES:
        d = n // place % 10
        if d == 0:
            gap = gap or started
            continue
        if gap:
            parts.append("零")
            gap = False
        if place == 10 and d == 1 and leading and not started:
            parts.append("十")
        else:
            word = "两" if d == 2 and place in (1000, 100) and rng.random() < 0.5 else DIGIT_WORDS[d]
            parts.append(word + unit)
        started = True
    return "".join(parts)


def say_integer(n: int, rng: random.Random) -> str:
    """0..99_999_999 as a Chinese speaker reads it, with colloquial variants picked at random."""
    if n == 0:
        return "零"
    for place, unit in ((10**4, "万"), (1000, "千"), (100, "百")):
        a, rest = divmod(n, place)
        b, tail = divmod(rest, place // 10)
        if 1 <= a <= 9 and 1 <= b <= 9 and tail == 0 and rng.random() < 0.4:
            head = "两" if a == 2 and rng.random() < 0.5 else DIGIT_WORDS[a]
            return f"{head}{unit}{DIGIT_WORDS[b]}"  # 两千三, 三万五, 一百二
    if rng.random() < 0.05:
        return str(n)  # the recogniser wrote digits
    high, low = divmod(n, 10**4)
    if high == 0:
        return _say_section(low, rng, leading=True)
    head = "两" if high == 2 and rng.random() < 0.5 else _say_section(high, rng, leading=True)
    if low == 0:
        return head + "万"
    link = "零" if low < 1000 else ""
    return head + "万" + link + _say_section(low, rng, leading=False)


def say_amount(cents: int, rng: random.Random) -> str:
    """An amount in fen as a caller says it in yuan, 毛 and 分 (or 点, or digits)."""
    yuan, rest = divmod(cents, 100)
    jiao, fen = divmod(rest, 10)
    style = rng.random()
    if style < 0.1:
        return f"{Decimal(cents) / 100}元"
    if style < 0.2:
        decimals = f"{jiao}{fen}".rstrip("0")
        point = "点" + "".join(DIGIT_WORDS[int(c)] for c in decimals) if decimals else ""
        return f"{say_integer(yuan, rng)}{point}元"
    unit = rng.choice(["块", "元", "块钱", "蚊"])
    jiao_unit = rng.choice(["毛", "角"])

    def small(d: int) -> str:
        return "两" if d == 2 and rng.random() < 0.5 else DIGIT_WORDS[d]

    if yuan == 0 and (jiao or fen):
        words = f"{small(jiao)}{jiao_unit}" if jiao else ""
        if fen:
            words += DIGIT_WORDS[fen] + ("分" if not jiao or rng.random() < 0.5 else "")
        return words
    if jiao == 0 and fen == 0:
        return say_integer(yuan, rng) + unit
    unit = unit.removesuffix("钱")
    head = say_integer(yuan, rng) + unit
    if fen == 0:
        if jiao == 5 and unit in ("块", "蚊") and rng.random() < 0.3:
            return head + "半"
        return head + (DIGIT_WORDS[jiao] if rng.random() < 0.5 else small(jiao) + jiao_unit)
    if jiao == 0:
        return head + "零" + DIGIT_WORDS[fen] + rng.choice(["", "分"])
    return head + small(jiao) + jiao_unit + DIGIT_WORDS[fen] + rng.choice(["", "分"])


def test_reference_verbaliser_examples():
    rng = random.Random(0)
    assert _say_section(1050, rng, leading=True) == "一千零五十"
    assert _say_section(15, rng, leading=True) == "十五"
    assert _say_section(15, rng, leading=False) == "一十五"
    assert say_integer(10_010, random.Random(1)) == "一万零一十"
    assert say_integer(120_000, random.Random(1)) == "十二万"


@pytest.mark.parametrize("seed", range(4))
def test_cardinal_inverts_reference_verbaliser(seed):
    rng = random.Random(seed)
    numbers = [rng.randrange(0, 100_000_000) for _ in range(300)]
    numbers += [rng.randrange(0, 10 ** rng.randint(1, 6)) for _ in range(300)]
    for n in numbers:
        spoken = say_integer(n, rng)
        assert cardinal(spoken) == n, f"{spoken} should read {n}, got {cardinal(spoken)}"


@pytest.mark.parametrize("seed", range(4))
def test_amount_inverts_reference_verbaliser(seed):
    rng = random.Random(100 + seed)
    for _ in range(400):
        cents = rng.randrange(1, 10 ** rng.randint(2, 10))
        spoken = say_amount(cents, rng)
        expected = format((Decimal(cents) / 100).normalize(), "f")
        assert amount(spoken) == expected, f"{spoken} should read {expected}, got {amount(spoken)}"


@pytest.mark.parametrize("seed", range(2))
def test_normalize_text_inverts_amounts_in_sentences(seed):
    rng = random.Random(200 + seed)
    for _ in range(200):
        cents = rng.randrange(100, 10**8)
        spoken = say_amount(cents, rng)
        expected = format((Decimal(cents) / 100).normalize(), "f")
        text = f"你们多扣了我{spoken}，赶紧退"
        spans = find_number_spans(text)
        assert [(k, v) for k, _, _, v in spans] == [("amount", expected)], (text, spans)
        assert normalize_text(text) == f"你们多扣了我{expected}元，赶紧退", text


# -- spoken amounts and phone numbers in every dialect's wording (issue 15) ---------------------------
@pytest.mark.parametrize("said, value", [
    ("五百四十六蚊半", "546.5"), ("三蚊", "3"), ("兩個半", "2.5"), ("五毛", "0.5"), ("三块五毛", "3.5"),
    ("两角", "0.2"), ("一百蚊", "100"), ("七块半", "7.5"), ("八块五角", "8.5"), ("五毫子", "0.5"), ("兩個半蚊", "2.5"),
])
def test_amount_in_each_dialects_wording(said, value):
    assert amount(said) == value


@pytest.mark.parametrize("text, value", [
    ("我使咗五百四十六蚊半。", "546.5"), ("佢收咗我三蚊。", "3"), ("一共兩個半。", "2.5"), ("扣咗我兩個半", "2.5"),
    ("佢使咗三個半蚊", "3.5"), ("五毛钱都要算", "0.5"), ("花了三块五毛", "3.5"), ("才两角", "0.2"), ("畀咗一百蚊", "100"),
])
def test_amounts_found_in_free_text(text, value):
    found = [v for kind, _, _, v in find_number_spans(text) if kind == "amount"]
    assert found == [value]


@pytest.mark.parametrize("text", ["我等咗兩個半月", "兩個半鐘之後再打嚟", "我要兩個半", "两个半小时"])
def test_x_and_a_half_is_money_only_in_a_money_context(text):
    assert not [k for k, *_ in find_number_spans(text) if k == "amount"]


@pytest.mark.parametrize("text, value", [
    ("我電話係一三八零零一二三四五六。", "13800123456"),
    ("电话系幺三九一二三四五六七八，", "13912345678"),
    ("我電話一五零一二三四五六七八", "15012345678"),
    ("聯絡電話係一八六 零零二二 三三四四", "18600223344"),
    ("我手机是幺八六二二三三四四五五", "18622334455"),
    ("联系电话一三九零零零零一一一一", "13900001111"),
])
def test_phone_numbers_after_dialect_cue_words(text, value):
    assert [v for kind, _, _, v in find_number_spans(text) if kind == "phone"] == [value]
