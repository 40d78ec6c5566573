"""Inverse text normalisation (ITN) of spoken Chinese numbers for hotline's slots and transcripts.

Callers say numbers as Chinese numerals; tickets store them as digits (``../shared/EVALUATION.md``):

- :func:`digits`: a digit-by-digit reading, "幺三八 零零一二 三四五六" -> "13800123456".
- :func:`cardinal`: a number read with place units, "一千零五十" -> 1050, "两千三" -> 2300, "三点五" -> 3.5.
- :func:`amount`: yuan with 块/元/蚊, 毛/角, 分, "一百二十八块五" -> "128.5", "三块零五分" -> "3.05".
- :func:`phone`, :func:`order_id`: :func:`digits` plus a plausibility check; :func:`normalize_slot`
  dispatches by slot name.
- :func:`normalize_text`: every number expression in free text rewritten to digits, words such as 一下,
  一直, 万一, 十分 left alone; :func:`find_number_spans`: phone / order number / amount candidates in free
  text, for the rule fallback of the slot tagger.

Rules only, pure Python (no torch). Functions return ``None`` for what they cannot read instead of
guessing; approximate amounts ("八百多块", "大概五十块") read as the figure said, and
:func:`parse_amount` says that they were approximate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

PHONE_DIGITS = 11  # a mainland mobile number has 11 digits
PHONE_RE = re.compile(r"1[3-9]\d{9}")  # mobile prefixes 13x..19x
MIN_ORDER_ID_DIGITS = 6  # shorter digit strings are not plausible order numbers
MAX_ORDER_ID_DIGITS = 20  # longer ones neither
MIN_DIGIT_RUN = 3  # in free text, a digit-by-digit reading needs this many numerals to be converted
JIAO = Decimal("0.1")  # 毛 / 角 / 毫 (Cantonese), in yuan
FEN = Decimal("0.01")  # 分 / 仙 (Cantonese), in yuan
HALF = Decimal("0.5")  # 半

# -- characters ------------------------------------------------------------------------------------
# One-to-one character rewrites applied everywhere (offsets in free text stay valid): traditional
# forms, fullwidth digits and punctuation.
_CHAR_MAP = str.maketrans(
    "兩萬億塊點個圓錢幾來餘０１２３４５６７８９．－＋　￥",
    "两万亿块点个圆钱几来余0123456789.-+ ¥",
)
# Financial numerals (大写) and their traditional forms: read in slot values, not in free text where 陆
# (land) or 拾 (pick up) are ordinary words.
_FINANCIAL_MAP = str.maketrans("壹贰貳叁參肆伍陆陸柒捌玖拾佰仟", "一二二三三四五六六七八九十百千")
_ASCII_DIGITS = "0123456789"
_ZEROS = "零〇洞"  # 洞 is the radio/military reading of 0
_DIGIT_VALUE = {
    "零": 0, "〇": 0, "洞": 0, "一": 1, "幺": 1, "二": 2, "两": 2, "三": 3, "四": 4,
    "五": 5, "六": 6, "七": 7, "八": 8, "九": 9,
    **{d: int(d) for d in _ASCII_DIGITS},
}  # fmt: skip
_MILITARY_DIGITS = {"拐": 7, "勾": 9}  # radio readings of 7 and 9, only inside a digit-by-digit slot value
_SMALL_UNITS = {"十": 10, "百": 100, "千": 1000}
_BIG_UNITS = {"万": 10**4, "亿": 10**8}
_TENS = {"廿": 20, "卅": 30}  # Cantonese and written forms of 二十, 三十
_APPROX = "多余来"  # after a place unit: "八百多" = 800 and a bit
_DECIMAL_POINT = "点"

# Fillers and separators a caller or the recogniser puts between digit groups.
_FILLERS = ("那个", "这个", "就是", "然后", "嗯", "呃", "额", "啊", "哦", "诶", "欸", "唔")
_SEPARATORS = re.compile(r"[\s\-‐‑–—―_~,，、.。/:：;；]+")
_REPEAT = re.compile(r"([两二三四五六七八九])个([零〇洞一幺二两三四五六七八九0-9])")  # "四个零" = 0000

# -- amounts ---------------------------------------------------------------------------------------
_YUAN = re.compile(r"(?P<yuan>.*?)(?P<unit>块儿钱|块钱|元钱|块儿|块|元|圆|蚊)(?P<rest>.*)")
_JIAO_UNITS = ("毫子", "毛", "角", "毫")  # 毫(子) is Cantonese
_FEN_UNITS = ("分", "仙")  # 仙 is Cantonese
_AMOUNT_PREFIXES = ("人民币", "RMB", "rmb", "¥", "一共", "总共", "合计", "共计", "共")
_HEDGE_PREFIXES = ("大概", "大约", "差不多", "将近", "接近", "约莫", "约")  # mark the amount approximate
_HEDGE_SUFFIXES = ("左右", "上下", "出头")
_AMOUNT_SUFFIXES = ("整",)


@dataclass(frozen=True)
class AmountReading:
    value: str  # yuan, digits with an optional decimal point and no trailing zeros ("128.5")
    approximate: bool  # the caller gave a rough figure ("八百多块", "大概五十"); value is the figure said


# -- digit-by-digit readings -----------------------------------------------------------------------
def digits(spoken: str) -> str | None:
    """The digit string of a digit-by-digit reading, or None if anything but digits remains.

    零〇洞 -> 0, 一幺 -> 1, 二两 -> 2, 拐 -> 7, 勾 -> 9, ASCII and fullwidth digits as they are; spaces,
    dashes, commas and fillers (嗯, 呃, 那个) between groups are dropped; "四个零" -> "0000".
    """
    s = _prep(spoken)
    for filler in _FILLERS:
        s = s.replace(filler, "")
    s = _SEPARATORS.sub("", s)
    s = _REPEAT.sub(lambda m: m.group(2) * _DIGIT_VALUE[m.group(1)], s)
    out = []
    for ch in s:
        value = _DIGIT_VALUE.get(ch, _MILITARY_DIGITS.get(ch))
        if value is None:
            return None
        out.append(str(value))
    return "".join(out) or None


def phone(spoken: str) -> str | None:
    """An 11-digit mainland mobile number (``1[3-9]`` and 9 digits) read digit by digit, else None.

    A leading country code (+86, 0086, 86 before an 11-digit mobile number) is dropped.
    """
    s = _prep(spoken).lstrip("+")
    value = digits(s)
    if value is None:
        return None
    for code in ("0086", "86"):
        rest = value[len(code) :]
        if len(value) == PHONE_DIGITS + len(code) and value.startswith(code) and PHONE_RE.fullmatch(rest):
            value = rest
    return value if PHONE_RE.fullmatch(value) else None


def order_id(spoken: str) -> str | None:
    """An order number: a digit-by-digit reading of 6 to 20 digits, else None."""
    value = digits(spoken)
    if value is None or not MIN_ORDER_ID_DIGITS <= len(value) <= MAX_ORDER_ID_DIGITS:
        return None
    return value


# -- cardinals -------------------------------------------------------------------------------------
def cardinal(spoken: str) -> Decimal | None:
    """The value of an exact spoken number, or None.

    Place units 十百千万亿 with 零 gaps ("一千零五十"), 十 at the start ("十二"), colloquial drops of the
    last unit ("两千三" = 2300, "三万五" = 35000, "一百二" = 120), 点 decimals ("三点五"), ASCII digits mixed
    in ("3千", "1.5万"), 半 ("一个半" = 1.5), 负 for negatives, three or more digits read one by one
    ("三九九" = 399). Approximate forms ("八百多") and ranges ("三四百") give None.
    """
    reading = _read_number(_prep(spoken))
    if reading is None or reading[1]:
        return None
    return reading[0]


# -- amounts ---------------------------------------------------------------------------------------
def amount(spoken: str) -> str | None:
    """A yuan amount as digits with an optional decimal point and no unit, or None.

    "五十块" -> "50", "一百二十八块五" -> "128.5" (a bare digit after 块 is 毛), "九十九块九毛九" -> "99.99",
    "三块零五分" -> "3.05", "五十蚊" -> "50" (Cantonese), "1299元" -> "1299", "三百九十九" -> "399".
    Approximate amounts read as the figure said: "八百多块" -> "800" (see :func:`parse_amount`).
    """
    reading = parse_amount(spoken)
    return None if reading is None else reading.value


def parse_amount(spoken: str) -> AmountReading | None:
    """:func:`amount` with a flag saying whether the caller gave only a rough figure."""
    s = _prep(spoken)
    s = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", s)  # 1,299
    approx = False
    changed = True
    while changed and s:
        changed = False
        for p in _HEDGE_PREFIXES + _AMOUNT_PREFIXES:
            if s.startswith(p) and len(s) > len(p):
                s, changed, approx = s[len(p) :], True, approx or p in _HEDGE_PREFIXES
        for x in _HEDGE_SUFFIXES + _AMOUNT_SUFFIXES:
            if s.endswith(x) and len(s) > len(x):
                s, changed, approx = s[: -len(x)], True, approx or x in _HEDGE_SUFFIXES
    if not s:
        return None
    match = _YUAN.fullmatch(s)
    if match:
        if not match["yuan"]:
            return None
        reading = _read_number(match["yuan"])
        if reading is None:
            return None
        yuan, rough = reading
        rest = match["rest"].removesuffix("钱")
        if rest in ("", "多"):
            sub: Decimal | None = Decimal(0)
            rough = rough or rest == "多"
        elif rest == "半":
            sub = HALF
        else:
            sub = _sub_yuan(rest, after_yuan=True)
        if sub is None or (sub and (rough or yuan != yuan.to_integral_value())):
            return None
        value = yuan + sub
    elif any(u in s for u in _JIAO_UNITS) or s.removesuffix("钱").endswith(_FEN_UNITS):
        sub = _sub_yuan(s.removesuffix("钱"), after_yuan=False)
        if sub is None:
            return None
        value, rough = sub, False
    else:
        reading = _read_number(s)
        if reading is None:
            return None
        value, rough = reading
    if value < 0:
        return None
    return AmountReading(_canon(value), approx or rough)


def _sub_yuan(rest: str, after_yuan: bool) -> Decimal | None:
    """毛 and 分 after 块: "五" (毛), "五毛六", "零五" (分), "五毛六分", "两毛"; None if malformed."""
    total = Decimal(0)
    slot = -1  # 0 = 毛, 1 = 分: each may be filled once, in that order
    zero = False
    items = 0
    i = 0
    while i < len(rest):
        ch = rest[i]
        if ch in _ZEROS:
            zero, i = True, i + 1
            continue
        digit = _DIGIT_VALUE.get(ch)
        if digit is None:
            return None
        i += 1
        target = None
        for units, t in ((_JIAO_UNITS, 0), (_FEN_UNITS, 1)):
            for u in units:
                if rest.startswith(u, i):
                    target, i = t, i + len(u)
                    break
            if target is not None:
                break
        if target is None:
            if zero:
                target = 1
            elif not after_yuan and items == 0:
                return None  # a bare digit is not money
            else:
                target = slot + 1
        if target <= slot or target > 1:
            return None
        total += digit * (JIAO if target == 0 else FEN)
        slot, zero, items = target, False, items + 1
    if zero or items == 0:
        return None
    return total


# -- number parsing --------------------------------------------------------------------------------
def _prep(spoken: str) -> str:
    """Slot text ready for parsing: one-to-one rewrites, financial numerals, no whitespace."""
    if not isinstance(spoken, str):
        raise TypeError(f"expected the spoken text as str, got {type(spoken).__name__}")
    return re.sub(r"\s+", "", spoken.translate(_CHAR_MAP).translate(_FINANCIAL_MAP))


def _canon(value: Decimal) -> str:
    """Digits with no exponent and no trailing zeros: 50, 128.5, 0.05."""
    return format(value.normalize(), "f")


def _clean(value: Decimal) -> Decimal:
    if value == value.to_integral_value():
        return Decimal(int(value))
    return value.normalize()


def _tokens(s: str) -> list[tuple[str, object, str]] | None:
    """(kind, value, text) tokens of a number; None on a character that is not part of one.

    kinds: n = ASCII number, d = digit 1-9, z = zero, u = 十百千, U = 万亿, t = 廿卅, pt = 点, approx = 多.
    """
    out: list[tuple[str, object, str]] = []
    i = 0
    while i < len(s):
        ch = s[i]
        if ch in _ASCII_DIGITS:
            j = i
            while j < len(s) and (
                s[j] in _ASCII_DIGITS
                or (s[j] == "." and "." not in s[i:j] and j + 1 < len(s) and s[j + 1] in _ASCII_DIGITS)
            ):
                j += 1
            out.append(("n", Decimal(s[i:j]), s[i:j]))
            i = j
            continue
        if ch in _ZEROS:
            out.append(("z", 0, "0"))
        elif ch in _DIGIT_VALUE:
            out.append(("d", _DIGIT_VALUE[ch], str(_DIGIT_VALUE[ch])))
        elif ch in _SMALL_UNITS:
            out.append(("u", _SMALL_UNITS[ch], ch))
        elif ch in _BIG_UNITS:
            out.append(("U", _BIG_UNITS[ch], ch))
        elif ch in _TENS:
            out.append(("t", _TENS[ch], ch))
        elif ch == _DECIMAL_POINT:
            out.append(("pt", None, ch))
        elif ch in _APPROX:
            out.append(("approx", None, ch))
        else:
            return None
        i += 1
    return out


def _read_number(s: str) -> tuple[Decimal, bool] | None:
    """(value, approximate) of a prepared number string, or None."""
    if not s:
        return None
    sign = 1
    if s.startswith("负"):
        sign, s = -1, s[1:]
    if s == "半":
        return HALF * sign, False
    half = Decimal(0)
    if s.endswith("个半"):
        s, half = s[:-2], HALF
        if not s:
            return None
    toks = _tokens(s)
    if not toks:
        return None
    kinds = [t[0] for t in toks]
    if "pt" in kinds:
        if half or kinds.count("pt") > 1:
            return None
        p = kinds.index("pt")
        value = _read_decimal(toks[:p], toks[p + 1 :])
        approx = False
    else:
        reading = _read_integer(toks)
        if reading is None:
            return None
        value, approx = reading
    if value is None or (half and (approx or value != value.to_integral_value())):
        return None
    return _clean((value + half) * sign), approx


def _read_decimal(int_toks: list, frac_toks: list) -> Decimal | None:
    """"三点五" = 3.5, "点五" = 0.5, "三点五万" = 35000."""
    scale = 1
    if frac_toks and frac_toks[-1][0] in ("u", "U"):
        scale = frac_toks[-1][1]
        frac_toks = frac_toks[:-1]
        if any(t[0] not in ("d", "z", "n") for t in int_toks):
            return None  # "一百点五万" is not a number
    if not frac_toks or any(t[0] not in ("d", "z", "n") or "." in t[2] for t in frac_toks):
        return None
    if int_toks:
        reading = _read_integer(int_toks)
        if reading is None or reading[1] or reading[0] != reading[0].to_integral_value():
            return None
        whole = reading[0]
    else:
        whole = Decimal(0)
    return (whole + Decimal("0." + "".join(t[2] for t in frac_toks))) * scale


def _read_integer(toks: list) -> tuple[Decimal, bool] | None:
    """(value, approximate) of tokens without 点, or None."""
    kinds = [t[0] for t in toks]
    if all(k in ("d", "z", "n") for k in kinds):
        if len(toks) == 1:
            return Decimal(toks[0][1]), False
        # three or more digits read one by one ("三九九" = 399); two are a range ("三四") or a mistake
        if len(toks) >= 3 and all(len(t[2]) == 1 for t in toks) and toks[0][1] != 0:
            return Decimal("".join(t[2] for t in toks)), False
        return None

    result = Decimal(0)  # the part already multiplied by 万 / 亿
    section = Decimal(0)  # the part below 万 being read
    pending: Decimal | None = None  # a digit waiting for its unit
    pending_single = False  # pending is one digit (may stand for the dropped next unit: 两千三)
    zero = False  # a 零 since the last unit: the pending digit is a plain unit digit (一百零五)
    last_small: int | None = None  # 十百千 within the section: must decrease
    last_big: int | None = None
    last_unit: int | None = None  # the latest unit of any kind
    approx = False
    for idx, (kind, value, text) in enumerate(toks):
        prev = kinds[idx - 1] if idx else None
        if approx and kind != "U":
            return None  # 多 ends a number, or sits before 万 / 亿 ("三十多万")
        if kind in ("d", "n"):
            if pending is not None:
                return None  # two digits in a row: a range ("三四百") or noise
            pending, pending_single = Decimal(value), len(text) == 1
        elif kind == "z":
            if pending is not None or last_unit is None:
                return None
            zero = True
        elif kind == "t":
            if pending is not None or (last_small is not None and last_small <= 10):
                return None
            section += value
            last_small = last_unit = 10
        elif kind == "u":
            if pending is None:
                if value == 10 or (idx == 0 and value in (100, 1000)):
                    pending = Decimal(1)  # 十二; Cantonese 百二, 千五
                else:
                    return None
            if last_small is not None and value >= last_small:
                return None
            section += pending * value
            pending, zero = None, False
            last_small = last_unit = value
        elif kind == "U":
            if pending is not None:
                section += pending
                pending = None
            if section == 0:
                if not (value == 10**8 and last_unit == 10**4 and prev in ("U", "approx")):
                    return None
                result *= value  # 万亿
            elif value == 10**4:
                if last_big == 10**4:
                    return None
                result += section * value
            else:
                if last_big == 10**8:
                    return None
                result = (result + section) * value
            section, zero, last_small = Decimal(0), False, None
            last_big = last_unit = value
        elif kind == "approx":
            if prev not in ("u", "U", "t"):
                return None
            approx = True
        else:
            return None
    if pending is not None:
        if pending != pending.to_integral_value() and last_unit is not None:
            return None
        if zero or last_unit is None or last_unit == 10:
            section += pending
        elif pending_single and kinds[-2] in ("u", "U"):
            section += pending * last_unit / 10  # 两千三 = 2300, 三万五 = 35000
        elif pending < last_unit:
            section += pending  # "3万500"
        else:
            return None
    return result + section, approx


# -- slots -----------------------------------------------------------------------------------------
_SLOT_NORMALIZERS = {"order_id": order_id, "phone": phone, "amount": amount}


def normalize_slot(name: str, spoken: str) -> str | None:
    """A slot value in EVALUATION.md's format: order_id / phone / amount through ITN (None when the
    surface cannot be read), any other slot (product, or one a custom taxonomy adds) as stripped text."""
    if not name:
        raise ValueError("normalize_slot needs a slot name: 'order_id', 'phone', 'amount', 'product', ...")
    fn = _SLOT_NORMALIZERS.get(name)
    if fn is not None:
        return fn(spoken)
    text = spoken.strip().strip("，。！？、,.!?;；:：\"'“”‘’ ")
    return text or None


# -- free text -------------------------------------------------------------------------------------
_TEXT_DIGITS = "零〇洞一幺二两三四五六七八九" + _ASCII_DIGITS  # digits read in free text
_TEXT_UNITS = "十百千万亿廿卅"
_NUMERAL = set(_TEXT_DIGITS + _TEXT_UNITS)
_NONZERO = set(_TEXT_DIGITS) - set(_ZEROS + "0")
_START = set(_TEXT_DIGITS + "十廿卅")  # a number expression in free text starts with one of these
# Words and idioms with numerals in them that are not numbers.
STOPWORDS = (
    "一下", "一直", "一样", "万一", "十分", "一些", "统一", "唯一", "一定", "一起", "一般", "一切", "一旦",
    "一向", "一再", "一致", "一律", "一边", "一会", "一阵", "一番", "一共", "一点儿", "一点点", "一块儿",
    "千万", "万万", "十足", "一五一十", "三三两两", "七七八八", "乱七八糟", "七上八下", "一心一意",
    "三心二意", "一模一样", "独一无二", "一清二楚", "十全十美", "五花八门", "千方百计", "三番五次",
    "接二连三", "一干二净", "九九八十一", "十有八九", "八九不离十", "成千上万", "千千万万", "万无一失",
    "百发百中", "一百个放心", "三天两头", "一天到晚", "不管三七二十一", "两口子", "二手",
)  # fmt: skip
# Stopwords that start with a digit and go on with a non-numeral: where one begins inside a number
# expression and runs past it ("一百万一定要"), the number ends before it.
_CUT_WORDS = tuple(w for w in STOPWORDS if w[0] in _TEXT_DIGITS and any(c not in _NUMERAL for c in w))
_STOP_BY_FIRST: dict[str, tuple[str, ...]] = {
    c: tuple(w for w in STOPWORDS if w[0] == c) for c in {w[0] for w in STOPWORDS}
}
_MEASURE_CUT = ("一个", "一次", "一件", "一台", "一张", "一份", "一天", "一月", "一年", "一套", "一只")
# Characters after a bare "X块" / "X毛" that keep a one-digit reading money ("才五块吧", not "五块蛋糕").
_MONEY_NEXT = set("，。！？、,.!?;；：:…~ \t\n了的吧啊呢吗呀哦嘛啦呗就都也还又才一买卖付给退扣充交花收赔还补换")
# Measure and time words: a bare digit after 块 followed by one is not 毛 ("五十块一个").
_MEASURE = set("个件台次天张本斤双套支部只条块份位年月日号点分秒周岁层楼箱瓶包袋盒桶米克升度折倍成趟遍人")
_YUAN_TEXT = re.compile(r"块儿钱|块钱|元钱|块儿|块|元|圆|蚊")
_D = "零〇洞一幺二两三四五六七八九0-9"
_SUB_TEXT = re.compile(rf"(?:零?[{_D}](?:毛|角|毫子|毫|分|仙)?(?:零?[{_D}](?:分|仙)?)?|半|多)钱?")
_JIAO_UNIT_TEXT = re.compile(r"毛钱|角钱|毛|角|毫子|毫")
_FEN_TEXT = re.compile(rf"[{_D}](?:分|仙)?钱?")
# Words a bare "X毛" / "X角" / "X毫" starts that are not money (毛病, 三角形, 五毫米).
_NOT_MONEY_AFTER = {
    "毛": "病巾衣线孔利发笔绒坯刺躁边毯不",
    "角": "度色落形膜逐",
    "毫": "米升克秒不无",
    "元": "化素旦宵首老音",
    "蚊": "子帐香虫",
}
_GROUP_SEP = re.compile(r"(?:[ \t\-‐‑–—―_~,，、]|嗯|呃|额|啊|那个|就是){1,4}")


@dataclass(frozen=True)
class NumberSpan:
    kind: str  # "digits" (read digit by digit), "cardinal", "amount" (yuan) or "percent"
    start: int  # character offset of the spoken expression in the text
    end: int  # exclusive; the span covers unit words (块钱, 毛) too
    value: str  # normalised: digit string, number, yuan amount without unit, or percentage
    approximate: bool = False  # "八百多": value is the figure said

    def render(self) -> str:
        more = "多" if self.approximate else ""
        if self.kind == "amount":
            return f"{self.value}{more}元"
        if self.kind == "percent":
            return f"{self.value}%"
        return f"{self.value}{more}"


def normalize_text(text: str) -> str:
    """``text`` with every number expression rewritten in digits, for display and search.

    Digit-by-digit runs of three or more numerals become digit strings ("幺三八零零一二三四五六" ->
    "13800123456"), numbers with place units become numbers ("三十天" -> "30天"), amounts become
    "128.5元", 百分之五十 becomes "50%". Single numerals ("一个", "两天"), clock times ("三点半"),
    ranges ("三四百"), and words such as 一下, 一直, 一样, 万一, 十分 stay as they are.
    """
    out, last = [], 0
    for span in scan_numbers(text):
        out.append(text[last : span.start])
        out.append(span.render())
        last = span.end
    out.append(text[last:])
    return "".join(out)


def find_number_spans(text: str) -> list[tuple[str, int, int, str]]:
    """Rule-based slot candidates in free text: (kind, start, end, normalised value).

    kind "phone": an 11-digit reading matching ``1[3-9]\\d{9}``; "order_id": any other reading of 6 to 20
    digits; "amount": a number with a currency unit (块, 元, 蚊, 毛, ...), the span including the unit.
    """
    found = []
    for span in scan_numbers(text):
        if span.kind == "digits":
            if PHONE_RE.fullmatch(span.value):
                found.append(("phone", span.start, span.end, span.value))
            elif MIN_ORDER_ID_DIGITS <= len(span.value) <= MAX_ORDER_ID_DIGITS:
                found.append(("order_id", span.start, span.end, span.value))
        elif span.kind == "amount":
            found.append(("amount", span.start, span.end, span.value))
    return found


def scan_numbers(text: str) -> list[NumberSpan]:
    """The number expressions in ``text``, left to right, with offsets into ``text``.

    Pure ASCII numbers are reported too (a typed "13800123456" is a phone number) but render unchanged.
    """
    s = text.translate(_CHAR_MAP)  # one-to-one: offsets stay those of ``text``
    n = len(s)
    spans: list[NumberSpan] = []
    i = 0
    while i < n:
        word = _stopword_at(s, i)
        if word:
            i += len(word)
            continue
        if s.startswith("百分之", i):
            span, end = _percent_at(s, i)
        elif s[i] in _START and not (s[i] in _ASCII_DIGITS and i and _is_ascii_alnum(s[i - 1])):
            span, end = _number_at(s, i)  # digits glued to letters ("A123", "iPhone15") are codes
        else:
            span, end = None, i + 1
        if span is not None:
            spans.append(span)
        i = max(end, i + 1)
    return spans


def _is_ascii_alnum(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def _stopword_at(s: str, i: int) -> str | None:
    best = None
    for w in _STOP_BY_FIRST.get(s[i], ()):
        if s.startswith(w, i) and (best is None or len(w) > len(best)):
            nxt = i + len(w)
            if w[0] in _TEXT_DIGITS and set(w) <= _NUMERAL and nxt < len(s) and s[nxt] in _NUMERAL:
                continue  # "三三两两" inside a longer run of numerals is part of that run
            best = w
    return best


def _int_extent(s: str, i: int) -> int:
    """End of the run of numerals (and ASCII . or , inside ASCII numbers) starting at ``i``."""
    j = i
    while j < len(s):
        c = s[j]
        if c in _NUMERAL:
            j += 1
        elif (
            c in ".,"
            and j > i
            and s[j - 1] in _ASCII_DIGITS
            and j + 1 < len(s)
            and s[j + 1] in _ASCII_DIGITS
            and (c == "." or re.match(r"\d{3}(?!\d)", s[j + 1 :]))
        ):
            j += 1
        else:
            break
    # The run ends early where a word starts inside it and goes on past it: "一百万|一定要",
    # "三百|一个" (300 each, not 310), "一千一|一个月".
    for k in range(i + 1, j):
        cut = any(s.startswith(w, k) and k + len(w) > j for w in _CUT_WORDS) or (
            (s[k - 1] in "百千万亿" or (k - i >= 2 and s[k - 1] in _NONZERO and s[k - 2] in "百千万亿"))
            and any(s.startswith(w, k) and k + len(w) > j for w in _MEASURE_CUT)
        )
        if cut:
            return k
    return j


def _digit_run_end(s: str, start: int, j: int) -> int:
    """Extend the digit-only run ``s[start:j]`` over separators and fillers to more digit-only groups."""
    end, prev_len = j, j - start
    while True:
        m = _GROUP_SEP.match(s, end)
        if not m or m.end() >= len(s) or s[m.end()] not in _TEXT_DIGITS:
            break
        k = m.end()
        e = _int_extent(s, k)
        group = s[k:e]
        if any(c in _TEXT_UNITS or c in ".," for c in group):
            break  # the next group is a number with units, not more digits
        if e < len(s) and (s[e] in "点多几毛角毫" or _YUAN_TEXT.match(s, e)):
            break
        if re.search(r"[,，、]", m.group()) and min(len(group), prev_len) < MIN_DIGIT_RUN:
            break  # a comma joins only groups of three or more digits
        end, prev_len = e, len(group)
    return end


def _number_at(s: str, i: int) -> tuple[NumberSpan | None, int]:
    """The number expression starting at ``i`` (or None) and where scanning goes on."""
    n = len(s)
    j = _int_extent(s, i)
    k = j
    approx = decimal = False
    if k < n and s[k] == _DECIMAL_POINT:
        if k + 1 < n and s[k + 1] in _TEXT_DIGITS:
            m = k + 1
            while m < n and s[m] in _TEXT_DIGITS:
                m += 1
            if m < n and s[m] in "十分钟刻半":
                return None, _time_end(s, k)  # 三点五十分: a clock time
            k, decimal = m, True
            if k < n and s[k] in _BIG_UNITS:
                k += 1
        elif k + 1 < n and s[k + 1] in "半钟整多刻":
            return None, k + 2  # 三点半, 三点钟
    if not decimal and k < n and s[k] == "多" and s[k - 1] in _TEXT_UNITS:
        approx, k = True, k + 1
        if k < n and s[k] in _BIG_UNITS:
            k += 1
    if k < n and s[k] == "几":
        return None, k + 1  # 二十几: a vague number, left alone
    number = s[i:k]
    is_ascii = all(c in _ASCII_DIGITS + ".," for c in number)
    single = len(number) == 1 and number not in _ASCII_DIGITS

    span = _amount_at(s, i, k, single) or _dollars_and_a_half_at(s, i, k)
    if span is not None:
        return span, span.end

    if not any(c in _TEXT_UNITS for c in number) and not decimal and "." not in number:
        # digits read one by one
        end = _digit_run_end(s, i, j)
        if not any(c in _DIGIT_VALUE and c not in _ASCII_DIGITS for c in s[i:end]):
            end = j  # ASCII groups stay apart ("iPhone 15 128G")
        value = "".join(str(_DIGIT_VALUE[c]) for c in s[i:end] if c in _DIGIT_VALUE)
        if end < n and _is_ascii_alnum(s[end]):
            return None, end  # part of a model name or code ("128G")
        if len(value) >= MIN_DIGIT_RUN or (is_ascii and value):
            return NumberSpan("digits", i, end, value), end
        return None, end
    if is_ascii or len(number) < 2:
        return None, k
    reading = _read_number(number)
    if reading is None:
        return None, k
    return NumberSpan("cardinal", i, k, _canon(reading[0]), reading[1]), k


def _amount_at(s: str, i: int, k: int, single: bool) -> NumberSpan | None:
    """An amount whose number is ``s[i:k]`` and whose currency unit starts at ``k``, or None.

    ``single``: the number is one Chinese numeral, which a measure word can follow too (三块蛋糕).
    """
    n = len(s)
    m = _YUAN_TEXT.match(s, k)
    if m:
        if m.group() == "块儿":
            return None  # 一块儿 = together
        tail_re = None if m.group().endswith("钱") else _SUB_TEXT
    elif single or (k - i == 1 and s[i] in _ASCII_DIGITS):
        m = _JIAO_UNIT_TEXT.match(s, k)
        if not m:
            return None
        tail_re = None if m.group().endswith("钱") else _FEN_TEXT
    else:
        return None
    e = m.end()
    tail = tail_re.match(s, e) if tail_re else None
    ends = []
    for end in range(tail.end() if tail else e, e, -1):
        if s[end - 1] in _TEXT_DIGITS and (
            (end < n and (s[end] in _MEASURE or s[end] in _TEXT_UNITS))
            or any(s.startswith(w, end - 1) for w in _CUT_WORDS)
        ):
            continue  # 五十块一个, 五十块一直: the 一 is not 毛
        ends.append(end)
    ends.append(e)
    for end in ends:
        unit = s[k:end]
        nxt = s[end] if end < n else ""
        if single and unit == "块" and nxt and nxt not in _MONEY_NEXT:
            continue  # 三块蛋糕
        if single and unit in _NOT_MONEY_AFTER and nxt and nxt in _NOT_MONEY_AFTER[unit]:
            continue  # 三角形, 一毛不拔, 一元化
        reading = parse_amount(s[i:end])
        if reading is not None:
            return NumberSpan("amount", i, end, reading.value, reading.approximate)
    return None


# Cantonese 兩個半 ("two dollars fifty"): X个半 is money only after a money word or before a currency unit, never
# before a time or measure word (兩個半月, 兩個半鐘).
_MONEY_CUES = ("使咗", "畀咗", "俾咗", "扣咗", "收咗", "用咗", "找咗", "一共", "总共", "合共", "付了", "花了", "扣了",
               "收了", "交了", "多收", "退返", "金额", "价钱", "畀", "俾", "扣", "收")
_OBJECTS = "我你佢他她"  # 扣咗我兩個半: the money word may come before an object pronoun
_NOT_MONEY_AFTER_HALF = set("月钟小星礼年天日人次个件只条周分秒层楼")
_CURRENCY_AFTER_HALF = ("蚊", "块", "元", "文", "银")


def _dollars_and_a_half_at(s: str, i: int, k: int) -> NumberSpan | None:
    """``X个半`` at ``s[i:]`` (the number ``s[i:k]``) read as X.5 yuan in a money context, else None."""
    if not s.startswith("个半", k):
        return None
    end = k + 2
    after = s[end] if end < len(s) else ""
    if after in _NOT_MONEY_AFTER_HALF:
        return None
    if any(s.startswith(u, end) for u in _CURRENCY_AFTER_HALF):
        end += 1
    elif not any(s[max(0, i - 5) : i].rstrip(_OBJECTS).endswith(w) for w in _MONEY_CUES):
        return None
    reading = _read_number(s[i : k + 2])
    if reading is None or reading[1]:
        return None
    return NumberSpan("amount", i, end, _canon(reading[0]))


def _percent_at(s: str, i: int) -> tuple[NumberSpan | None, int]:
    start = i + len("百分之")
    if s.startswith("百", start):
        return NumberSpan("percent", i, start + 1, "100"), start + 1
    j = _int_extent(s, start)
    if j < len(s) and s[j] == _DECIMAL_POINT and j + 1 < len(s) and s[j + 1] in _TEXT_DIGITS:
        j += 1
        while j < len(s) and s[j] in _TEXT_DIGITS:
            j += 1
    reading = _read_number(s[start:j]) if j > start else None
    if reading is None:
        return None, start
    return NumberSpan("percent", i, j, _canon(reading[0]), reading[1]), j


def _time_end(s: str, k: int) -> int:
    """End of a clock time whose 点 is at ``k`` ("三点五十分", "十二点一刻")."""
    k += 1
    while k < len(s) and (s[k] in _NUMERAL or s[k] in "分钟刻半整"):
        k += 1
    return k
