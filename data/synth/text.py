"""Synthetic customer utterances and whole call scripts, for every intent, emotion and dialect.

The text side of hotline's synthetic corpus. Every utterance comes from a template (``template_id`` such as
``"logistics_delay/07"``, the same id in every dialect): the held-out split (:func:`split_templates`) works on
template ids, so test phrasings are never seen in training. Slot values are spoken the way callers say them
(order numbers digit by digit with 幺 and 洞, amounts as Chinese cardinals with 块/元/毛/蚊), and every slot
carries a character span over its spoken form, so that ITN and slot tagging can be trained and checked.
The ``test`` split is *the old test split*: the extra training phrasings were written after studying a model's errors
on it, so it no longer measures unseen phrasings. Use the held-out set of :mod:`data.synth.heldout` (templates,
products and fillers absent from training, fingerprinted) for reported numbers; the split keeps its name ``test``
because other code reads ``test.jsonl``.
The words and templates live in :mod:`data.synth.lexicon` (training-only phrasings added after the split was
fixed in :mod:`data.synth.extra_templates`); this module holds the machinery.

All randomness comes from the ``random.Random`` passed in: the same state gives the same text.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from data.synth import lexicon as L
from data.synth.extra_templates import EXTRA_TEMPLATES
from models.taxonomy import DEFAULT_TAXONOMY, Taxonomy

SPLIT_NAMES = ("train", "validation", "test")
SLOT_KEYS = ("order_id", "phone", "amount", "product")  # template keys that produce slot values
_SPECIAL_KEYS = set(SLOT_KEYS) | {"mw", "defect", "company", "agent_id"}

PHONE_PREFIXES = (  # real mobile number segments: 1[3-9]x
    "130", "131", "132", "133", "134", "135", "136", "137", "138", "139", "145", "147", "150", "151", "152",
    "153", "155", "156", "157", "158", "159", "166", "170", "171", "173", "175", "176", "177", "178", "180",
    "181", "182", "183", "184", "185", "186", "187", "188", "189", "191", "198", "199",
)
ORDER_ID_DIGITS = (8, 14)  # inclusive range of order-number lengths
_DIGIT_ZH = "零一二三四五六七八九"
_TERMINAL = "。！？"
_PUNCT = "，。！？、…；："
_CJK = re.compile(r"[\u4e00-\u9fff]+")


# -- records ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Utterance:
    text: str  # what the caller says: Chinese characters and punctuation, numbers as spoken numerals
    intent: str  # intent label (models/taxonomy.py)
    emotion: str  # emotion label
    dialect: str  # dialect label; the text is in that dialect's written form
    slots: dict[str, str]  # slot -> normalised value (EVALUATION.md): digits, 11-digit phone, "128.5", product
    slot_spans: tuple[tuple[str, int, int], ...]  # (slot, start, end): text[start:end] is the spoken value
    template_id: str  # "intent/NN": the unit of the held-out split, the same across dialects


@dataclass(frozen=True)
class Turn:
    speaker: str  # "agent" or "customer"
    text: str  # what is said in this turn
    slots: dict[str, str]  # slot -> normalised value, for slots spoken in this turn
    slot_spans: tuple[tuple[str, int, int], ...]  # spans into this turn's text


@dataclass(frozen=True)
class CallScript:
    turns: tuple[Turn, ...]  # agent greeting first, then customer and agent in turn
    intent: str  # intent label of the call
    emotion: str  # the caller's emotion
    dialect: str  # the caller's dialect (agents speak Cantonese to Cantonese callers, else Mandarin)
    slots: dict[str, str]  # union of all customer-turn slots (consistent across turns)
    template_id: str  # template of the customer's problem statement

    @property
    def customer_text(self) -> str:
        """The customer turns joined: the reference transcript of the customer channel."""
        return "".join(t.text for t in self.turns if t.speaker == "customer")

    @property
    def customer_slot_spans(self) -> tuple[tuple[str, int, int], ...]:
        """Slot spans of the customer turns, as offsets into :attr:`customer_text`."""
        spans, offset = [], 0
        for t in self.turns:
            if t.speaker == "customer":
                spans += [(s, a + offset, b + offset) for s, a, b in t.slot_spans]
                offset += len(t.text)
        return tuple(spans)


class TemplateError(ValueError):
    """A template or lexicon entry in data/synth/lexicon.py that cannot be parsed or refers to a missing key."""


# -- spoken numbers ----------------------------------------------------------------------------------------
def read_digits(digits: str, *, yao: bool = False, dong: bool = False) -> str:
    """Digit-by-digit reading: "1380" -> "一三八零" (幺三八洞 with ``yao`` and ``dong``)."""
    if not digits.isdigit():
        raise ValueError(f"read_digits wants a string of ASCII digits, got {digits!r}")
    table = list(_DIGIT_ZH)
    if yao:
        table[1] = "幺"
    if dong:
        table[0] = "洞"
    return "".join(table[int(d)] for d in digits)


def cardinal(n: int, rng: random.Random | None = None, *, liang: bool = True) -> str:
    """Chinese cardinal for 0 <= n < 10**8: 1050 -> "一千零五十", 12 -> "十二", 2000 -> "两千".

    With ``liang`` a leading 2 before 千/万 (and, half the time, 百) and a bare 2 are read 两, as in 两千块, 两块;
    ``rng`` decides the optional ones (without it: 两 before 千 and 万 only).
    """
    if not 0 <= n < 10**8:
        raise ValueError(f"cardinal covers 0 <= n < 100000000, got {n}")
    if n == 0:
        return "零"
    if n == 2:
        return "两" if liang else "二"
    wan, rest = divmod(n, 10000)
    if not wan:
        return _four(rest, rng, liang, leading=True)
    head = "两" if (wan == 2 and liang) else _four(wan, rng, liang, leading=True)
    out = head + "万"
    if rest:
        if rest < 1000:
            out += "零"
        out += _four(rest, rng, liang, leading=False)
    return out


def _four(n: int, rng: random.Random | None, liang: bool, leading: bool) -> str:
    digits = (n // 1000, n // 100 % 10, n // 10 % 10, n % 10)
    out, started, zero = [], False, False
    for d, unit in zip(digits, ("千", "百", "十", "")):
        if d == 0:
            zero = started
            continue
        if zero:
            out.append("零")
            zero = False
        if d == 1 and unit == "十" and not started and leading:
            ch = ""  # 十二, not 一十二, at the head of a number
        elif d == 2 and not started and liang and unit == "千":
            ch = "两" if rng is None or rng.random() < 0.85 else "二"
        elif d == 2 and not started and liang and unit == "百":
            ch = "两" if rng is not None and rng.random() < 0.5 else "二"
        else:
            ch = _DIGIT_ZH[d]
        out.append(ch + unit)
        started = True
    return "".join(out)


@dataclass(frozen=True)
class Amount:
    yuan: int  # whole yuan
    jiao: int  # tenths (角, 毛, 毫)
    fen: int  # hundredths (分)

    @property
    def normalised(self) -> str:
        """EVALUATION.md form: digits with an optional decimal point, no trailing zeros ("128.5", "50")."""
        if self.fen:
            return f"{self.yuan}.{self.jiao}{self.fen}"
        if self.jiao:
            return f"{self.yuan}.{self.jiao}"
        return str(self.yuan)


_ROUND_YUAN = (5, 10, 20, 30, 50, 60, 80, 100, 150, 200, 300, 500, 800, 1000, 1500, 2000, 3000, 5000, 10000, 20000)
_PRICE_YUAN = (9, 19, 29, 39, 49, 59, 69, 79, 89, 99, 128, 129, 199, 299, 399, 499, 599, 699, 999, 1299, 1999,
               2999, 3999, 4999, 5999, 6999, 1050, 2680)


def random_amount(rng: random.Random, kind: str | None = None) -> Amount:
    """A plausible price or charge: round sums, prices ending in 9, odd sums, with or without 角 and 分.

    ``kind`` ("small", "mid", "big": :data:`data.synth.lexicon.AMOUNT_RANGES`) bounds the whole yuan.
    """
    lo, hi = L.AMOUNT_RANGES[kind] if kind else (1, 30000)
    for _ in range(20):
        r = rng.random()
        if r < 0.3:
            yuan = rng.choice(_ROUND_YUAN)
        elif r < 0.6:
            yuan = rng.choice(_PRICE_YUAN)
        else:
            yuan = int(10 ** rng.uniform(0.3, 4.4))
        if lo <= yuan <= hi:
            break
    else:
        yuan = rng.randint(lo, hi)
    r = rng.random()
    if r < 0.5 or (yuan >= 1000 and r < 0.9):
        return Amount(yuan, 0, 0)
    if r < 0.8:
        return Amount(yuan, rng.randint(1, 9), 0)
    if r < 0.97 or lo > 1:
        return Amount(yuan, rng.randint(0, 9), rng.randint(1, 9))
    return Amount(0, rng.randint(1, 9), rng.choice((0, 0, rng.randint(1, 9))))  # 八毛五, 五毛


def speak_amount(amount: Amount, rng: random.Random, dialect: str = "mandarin") -> str:
    """How a caller says the sum: 五十块, 一百二十八块五, 十二块八毛, 九十九块九毛九, 一千零五十元; 五十蚊."""
    y, j, f = amount.yuan, amount.jiao, amount.fen
    ys = cardinal(y, rng) if y else ""
    d = _DIGIT_ZH
    if dialect == "cantonese":
        if y == 0:
            return (cardinal(j, rng) + "毫" + (d[f] if f else "")) if j else d[f] + "仙"
        if not j and not f:
            return ys + rng.choice(("蚊", "蚊", "蚊", "元", "块钱"))
        if not f:
            return rng.choice((f"{ys}蚊{d[j]}", f"{ys}蚊{d[j]}", f"{ys}点{d[j]}蚊", f"{ys}点{d[j]}元"))
        return rng.choice((f"{ys}点{d[j]}{d[f]}元", f"{ys}点{d[j]}{d[f]}蚊"))
    if y == 0:
        jiao = cardinal(j, rng) + "毛"
        return jiao + (d[f] if f else rng.choice(("", "钱")))
    if not j and not f:
        return ys + rng.choice(("块", "块钱", "元", "块", "块钱", "元钱"))
    if not f:
        return rng.choice((f"{ys}块{d[j]}", f"{ys}块{cardinal(j, rng)}毛", f"{ys}元{d[j]}角", f"{ys}点{d[j]}元",
                           f"{ys}块{d[j]}", f"{ys}点{d[j]}块"))
    if j == 0:
        return rng.choice((f"{ys}块零{d[f]}分", f"{ys}点零{d[f]}元"))
    return rng.choice((f"{ys}块{cardinal(j, rng)}毛{d[f]}", f"{ys}块{d[j]}毛{d[f]}分", f"{ys}点{d[j]}{d[f]}元",
                       f"{ys}块{cardinal(j, rng)}毛{d[f]}"))


def random_phone(rng: random.Random) -> str:
    """An 11-digit mobile number from a real prefix: matches ``^1[3-9]\\d{9}$``."""
    return rng.choice(PHONE_PREFIXES) + "".join(rng.choice("0123456789") for _ in range(8))


def random_order_id(rng: random.Random) -> str:
    """An order number of 8 to 14 digits, not starting with 0."""
    n = rng.randint(*ORDER_ID_DIGITS)
    return rng.choice("123456789") + "".join(rng.choice("0123456789") for _ in range(n - 1))


# -- slot values shared by the turns of one call ----------------------------------------------------------
class _Values:
    """Slot values of one utterance or call, drawn when first needed; the caller's spoken forms are kept."""

    def __init__(self, rng: random.Random, intent: str, dialect: str):
        self.rng, self.intent, self.dialect = rng, intent, dialect
        self.norm: dict[str, str] = {}
        self.said: dict[str, str] = {}  # slot -> the caller's spoken form (repeated the same way)
        self.product_entry: tuple[str, str, str] | None = None  # (name, measure word, category)
        self.amount: Amount | None = None
        # the caller's habits: 幺 for 1, 洞 for 0
        cantonese = dialect == "cantonese"
        self.phone_yao = not cantonese and rng.random() < 0.65
        self.order_yao = not cantonese and rng.random() < 0.4
        self.dong = not cantonese and rng.random() < 0.08

    def product(self, category: str | None = None) -> tuple[str, str, str]:
        entry = self.product_entry
        if entry is None or (category is not None and entry[2] != category):
            cats = (category,) if category else L.INTENT_PRODUCTS.get(self.intent, ("phone",))
            cat = self.rng.choice(cats)
            name, mw = self.rng.choice(L.PRODUCTS[cat])
            entry = self.product_entry = (name, mw, cat)
            self.norm["product"] = name
            self.said.pop("product", None)
        return entry

    def value(self, slot: str, kind: str | None = None) -> str:
        if slot not in self.norm:
            if slot == "phone":
                self.norm[slot] = random_phone(self.rng)
            elif slot == "order_id":
                self.norm[slot] = random_order_id(self.rng)
            elif slot == "amount":
                self.amount = random_amount(self.rng, kind)
                self.norm[slot] = self.amount.normalised
            elif slot == "product":
                self.product()
            else:
                raise KeyError(slot)
        return self.norm[slot]

    def spoken(self, slot: str, *, caller: bool = True, dialect: str | None = None, kind: str | None = None) -> str:
        """The spoken form of a slot: the caller's own (kept) or, for the agent, a fresh reading."""
        norm = self.value(slot, kind)
        if caller and slot in self.said:
            return self.said[slot]
        d = dialect or self.dialect
        if slot == "phone":
            text = read_digits(norm, yao=self.phone_yao if caller else d != "cantonese", dong=self.dong and caller)
        elif slot == "order_id":
            text = read_digits(norm, yao=self.order_yao if caller else False, dong=self.dong and caller)
        elif slot == "amount":
            assert self.amount is not None
            text = speak_amount(self.amount, self.rng, d)
        else:
            text = norm
        if caller:
            self.said[slot] = text
        return text


# -- templates -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Text:
    text: str


@dataclass(frozen=True)
class _Ref:
    key: str
    arg: str | None = None


@dataclass(frozen=True)
class _Opt:
    body: tuple
    p: float = 0.5


@dataclass(frozen=True)
class _Alt:
    options: tuple[tuple, ...]


def parse_template(template: str) -> tuple:
    """Parse the template mini-language of :mod:`data.synth.lexicon` into nodes."""
    nodes, pos = _parse_seq(template, 0, "")
    if pos != len(template):
        raise TemplateError(f"unbalanced {template[pos]!r} at {pos} in template {template!r}")
    return nodes


def _parse_seq(s: str, pos: int, stops: str) -> tuple[tuple, int]:
    nodes: list = []
    buf: list[str] = []

    def flush() -> None:
        if buf:
            nodes.append(_Text("".join(buf)))
            buf.clear()

    while pos < len(s):
        c = s[pos]
        if c in stops:
            break
        if c == "{":
            end = s.find("}", pos)
            if end < 0:
                raise TemplateError(f"unclosed '{{' at {pos} in template {s!r}")
            flush()
            key, _, arg = s[pos + 1 : end].partition(":")
            if not key:
                raise TemplateError(f"empty '{{}}' at {pos} in template {s!r}")
            nodes.append(_Ref(key, arg or None))
            pos = end + 1
        elif c == "[":
            flush()
            body, pos = _parse_seq(s, pos + 1, "]")
            if pos >= len(s):
                raise TemplateError(f"unclosed '[' in template {s!r}")
            nodes.append(_Opt(body))
            pos += 1
        elif c == "(":
            flush()
            options = []
            pos += 1
            while True:
                body, pos = _parse_seq(s, pos, "|)")
                options.append(body)
                if pos >= len(s):
                    raise TemplateError(f"unclosed '(' in template {s!r}")
                pos += 1
                if s[pos - 1] == ")":
                    break
            nodes.append(_Alt(tuple(options)))
        elif c in "}])|":
            raise TemplateError(f"unexpected {c!r} at {pos} in template {s!r}")
        else:
            buf.append(c)
            pos += 1
    flush()
    return tuple(nodes), pos


def _refs(nodes: Iterable) -> Iterable[_Ref]:
    for n in nodes:
        if isinstance(n, _Ref):
            yield n
        elif isinstance(n, _Opt):
            yield from _refs(n.body)
        elif isinstance(n, _Alt):
            for o in n.options:
                yield from _refs(o)


# -- dialect conversion --------------------------------------------------------------------------------------
def _cantonese_le(m: re.Match) -> str:
    """Sentence-final 了: 太过分了 -> 太过分喇, 坏了 -> 坏咗 (不了 is left to the 不了 -> 唔到 rule)."""
    before = m.group(1)
    if before == "不":
        return "不了"
    return before + ("喇" if before in L.CANTONESE_LE_AS_LA else "咗")


class _Converter:
    """Mandarin -> dialect word rules, longest match first, each match applied with the dialect's rate."""

    def __init__(self, dialect: str):
        self.dialect = dialect
        self.rules = L.CONVERSIONS.get(dialect, {})
        self.rate = L.CONVERSION_RATE.get(dialect, 1.0)
        keys = sorted(self.rules, key=len, reverse=True)
        self.pattern = re.compile("|".join(map(re.escape, keys))) if keys else None

    def __call__(self, text: str, rng: random.Random) -> str:
        if self.pattern is None:
            return text
        if self.dialect == "cantonese":
            text = re.sub(r"([一二两三四五六七八九十几半])天", r"\1日", text)
            text = re.sub(f"(不.)了(?=[{_PUNCT}]|$)", r"\1", text)  # 找不到了 -> 搵唔到
            text = re.sub(f"(.)了(?=[{_PUNCT}]|$)", _cantonese_le, text)

        def sub(m: re.Match) -> str:
            src = m.group(0)
            outs = self.rules[src]
            if outs == (src,) or (self.rate < 1.0 and rng.random() >= self.rate):
                return src
            return outs[0] if len(outs) == 1 else rng.choice(outs)

        return self.pattern.sub(sub, text)


# -- rendering ---------------------------------------------------------------------------------------------
@dataclass
class _Seg:
    text: str
    slot: str | None = None  # slot name when this segment is a spoken slot value
    convert: bool = False  # Mandarin text still to be converted to the dialect


@dataclass
class _Ctx:
    rng: random.Random
    intent: str
    emotion: str
    dialect: str  # dialect of the words rendered (the agent's for agent lines)
    values: _Values
    agent: bool = False
    group: str = "complaint"  # complaint | inquiry | praise: which closers fit
    extra: dict[str, str] = field(default_factory=dict)  # fixed values for company, agent_id


# disfluency rates per emotion: (filler per clause, stutter per utterance, restart per utterance)
_DISFLUENCY = {
    "neutral": (0.12, 0.10, 0.08),
    "angry": (0.08, 0.25, 0.15),
    "anxious": (0.15, 0.35, 0.22),
    "sad": (0.22, 0.10, 0.10),
    "happy": (0.10, 0.05, 0.05),
}
_FLUENT_P = 0.3  # share of utterances with no disfluency at all
_STUTTER_CHARS = set("我你他这那就是佢呢嗰侬阮汝阿")
# how often an emotion opens / closes the utterance with its own words
_OPEN_P = {"neutral": 0.45, "angry": 0.6, "anxious": 0.65, "sad": 0.6, "happy": 0.65}
_CLOSE_P = {"neutral": 0.3, "angry": 0.85, "anxious": 0.8, "sad": 0.8, "happy": 0.8}


class TextGenerator:
    """Customer utterances and call scripts for every intent, emotion and dialect of a taxonomy."""

    def __init__(self, taxonomy: Taxonomy = DEFAULT_TAXONOMY):
        self.taxonomy = taxonomy
        missing = [i for i in taxonomy.intent_names if i not in L.TEMPLATES]
        if missing:
            raise ValueError(
                f"no templates for intent(s) {missing}; add them to TEMPLATES in data/synth/lexicon.py "
                f"(known: {sorted(L.TEMPLATES)})"
            )
        known_dialects = {"mandarin", *L.CONVERSIONS}
        if bad := [d for d in taxonomy.dialect_names if d not in known_dialects]:
            raise ValueError(f"no wording for dialect(s) {bad}; add CONVERSIONS in data/synth/lexicon.py")
        worded = set(L.LEX["req"]) & set(L.LEX["open"])  # type: ignore[arg-type]
        if bad := [e for e in taxonomy.emotions if e not in worded]:
            raise ValueError(f"no wording for emotion(s) {bad}; add them to LEX['req'] etc. in data/synth/lexicon.py")
        self._parsed: dict[str, tuple] = {}
        self._converters = {d: _Converter(d) for d in taxonomy.dialect_names}
        self._check_lexicon()

    # -- public API ------------------------------------------------------------------------------------
    def template_ids(self, intent: str, extra: bool = False) -> list[str]:
        """Template ids of an intent, e.g. ``["praise/00", "praise/01", ...]``.

        ``extra``: also the training-only phrasings of :mod:`data.synth.extra_templates`, numbered on from the
        last core template (``"praise/20"`` ...). Without it, the ids the held-out split and the corpus use.
        """
        self.taxonomy.check("intent", intent)
        n = len(L.TEMPLATES[intent]) + (len(EXTRA_TEMPLATES.get(intent, ())) if extra else 0)
        return [f"{intent}/{i:02d}" for i in range(n)]

    def extra_template_ids(self, intent: str) -> list[str]:
        """The ids of the training-only phrasings alone (``template_ids(intent, extra=True)`` past the core ones)."""
        return self.template_ids(intent, extra=True)[len(L.TEMPLATES[intent]):]

    def template(self, template_id: str) -> dict[str, str]:
        """The wordings (``{"mandarin": ..., "cantonese": ...}``) of a core or extra template id."""
        intent, _, k = template_id.rpartition("/")
        self.taxonomy.check("intent", intent)
        every = tuple(L.TEMPLATES[intent]) + tuple(EXTRA_TEMPLATES.get(intent, ()))
        if not k.isdigit() or int(k) >= len(every):
            raise ValueError(f"unknown template id {template_id!r}; use one of TextGenerator.template_ids({intent!r}, "
                             "extra=True)")
        return every[int(k)]

    def emotion_weights(self, intent: str) -> dict[str, float]:
        """Plausible emotion mix of callers with this intent (sums to 1; every emotion > 0 for complaints)."""
        self.taxonomy.check("intent", intent)
        complaint = self.taxonomy.is_complaint(intent)
        table = L.EMOTION_WEIGHTS.get(intent, {})
        w = {e: float(table.get(e, 0.2 if complaint or not table else 0.0)) for e in self.taxonomy.emotions}
        total = sum(w.values())
        return {e: v / total for e, v in w.items()}

    def utterance(
        self, rng: random.Random, intent: str, emotion: str, dialect: str, template_id: str | None = None
    ) -> Utterance:
        """One caller utterance stating a problem (or question, or praise) from one template."""
        self._check(intent, emotion, dialect)
        tid = self._pick_template(rng, intent, template_id)
        return self._statement(rng, intent, emotion, dialect, tid, _Values(rng, intent, dialect))

    def call(
        self, rng: random.Random, intent: str, emotion: str, dialect: str, template_id: str | None = None
    ) -> CallScript:
        """A whole call: greeting, the problem, the agent asking for what is missing, answers, closing."""
        self._check(intent, emotion, dialect)
        tid = self._pick_template(rng, intent, template_id)
        values = _Values(rng, intent, dialect)
        agent_dialect = "cantonese" if dialect == "cantonese" else "mandarin"
        extra = self._agent_extra(rng, intent, agent_dialect)
        actx = _Ctx(rng, intent, "neutral", agent_dialect, values, agent=True, extra=extra)

        def agent(key: str) -> None:
            turns.append(self._agent_turn(actx, key))

        def customer(key: str) -> None:
            turns.append(self._customer_turn(rng, intent, emotion, dialect, values, key))

        turns: list[Turn] = []
        agent("greet")
        main = self._statement(rng, intent, emotion, dialect, tid, values)
        turns.append(Turn("customer", main.text, dict(main.slots), main.slot_spans))
        said = set(main.slots)
        complaint = self.taxonomy.is_complaint(intent)
        wanted = [s for s in L.WANTED_SLOTS.get(intent, ()) if s not in said]
        for i, slot in enumerate(wanted):
            if slot in said:
                continue  # given on the way (a caller without an order number gives the phone)
            if (i > 0 and rng.random() < 0.25) or (not complaint and rng.random() < 0.5):
                break  # agents do not always ask for everything
            if slot == "order_id" and "phone" not in said and rng.random() < 0.15:
                agent("ask_order_id")
                customer("no_order")
                slot = "phone"
            agent(self._ask_key(slot, intent))
            customer(f"ans_{slot}")
            said.add(slot)
            if slot in ("phone", "order_id") and rng.random() < 0.35:
                agent(f"confirm_{slot}")
                customer("yes")
        if intent != "praise" and rng.random() < 0.8:
            agent("check")
            if rng.random() < 0.6:
                customer("wait_reply")
        agent("resolve")
        pushy = complaint or intent == "order_inquiry"
        push_p = 0.7 if emotion == "angry" else 0.45
        if pushy and emotion in L.LEX["push"] and rng.random() < push_p:  # type: ignore[operator]
            customer("push")
            agent("soothe")
        if rng.random() < 0.6:
            agent("anything_else")
            customer("bye")
        agent("goodbye")

        slots: dict[str, str] = {}
        for t in turns:
            if t.speaker == "customer":
                for k, v in t.slots.items():
                    if slots.setdefault(k, v) != v:  # pragma: no cover - _Values makes this impossible
                        raise AssertionError(f"slot {k} has two values in one call: {slots[k]!r} and {v!r}")
        return CallScript(tuple(turns), intent, emotion, dialect, slots, tid)

    # -- internals: checks and choices -----------------------------------------------------------------------
    def _check(self, intent: str, emotion: str, dialect: str) -> None:
        self.taxonomy.check("intent", intent)
        self.taxonomy.check("emotion", emotion)
        self.taxonomy.check("dialect", dialect)

    def _pick_template(self, rng: random.Random, intent: str, template_id: str | None) -> str:
        if template_id is None:
            return rng.choice(self.template_ids(intent))
        ids = self.template_ids(intent, extra=True)
        if template_id not in ids:
            raise ValueError(
                f"template_id {template_id!r} is not a template of intent {intent!r}; "
                f"use one of {ids[0]} .. {ids[-1]} (TextGenerator.template_ids)"
            )
        return template_id

    def _group(self, intent: str) -> str:
        if self.taxonomy.is_complaint(intent):
            return "complaint"
        return "praise" if intent == "praise" else "inquiry"

    @staticmethod
    def _ask_key(slot: str, intent: str) -> str:
        special = {
            ("amount", "billing_error"): "ask_amount_billing",
            ("amount", "refund_dispute"): "ask_amount_refund",
            ("product", "booking_issue"): "ask_product_booking",
            ("product", "network_outage"): "ask_product_network",
        }
        return special.get((slot, intent), f"ask_{slot}")

    @staticmethod
    def _agent_extra(rng: random.Random, intent: str, dialect: str) -> dict[str, str]:
        company = rng.choice(L.AGENT_COMPANY[L.INTENT_COMPANY.get(intent, "any")])
        digits = "".join(rng.choice("0123456789") for _ in range(rng.choice((3, 4, 4, 5))))
        yao = dialect != "cantonese" and rng.random() < 0.6
        return {"company": company, "agent_id": read_digits(digits, yao=yao)}

    # -- internals: rendering ------------------------------------------------------------------------------
    def _nodes(self, template: str) -> tuple:
        nodes = self._parsed.get(template)
        if nodes is None:
            nodes = self._parsed[template] = parse_template(template)
        return nodes

    def _lex(self, ctx: _Ctx, key: str) -> tuple[str, bool]:
        """One entry of lexicon ``key`` for this context, and whether it still needs dialect conversion."""
        if ctx.agent:
            table = L.AGENT_LEX[ctx.dialect]
            if key in table:
                entries = table[key]
                if isinstance(entries, dict):
                    entries = entries[ctx.intent]
                return ctx.rng.choice(entries), False
        dialect_entries = self._pick(L.DIALECT_LEX.get(ctx.dialect, {}).get(key), ctx.emotion)
        if dialect_entries and (ctx.dialect in L.REPLACE_LEX_DIALECTS or ctx.rng.random() < 0.5):
            return ctx.rng.choice(dialect_entries), False
        entries = self._pick(L.LEX.get(key), ctx.emotion)
        if not entries:
            raise TemplateError(
                f"lexicon key {key!r} has no entries for emotion {ctx.emotion!r}; add them in data/synth/lexicon.py"
            )
        return ctx.rng.choice(entries), not ctx.agent and ctx.dialect != "mandarin"

    @staticmethod
    def _pick(entries: object, emotion: str) -> Sequence[str] | None:
        if isinstance(entries, dict):
            return entries.get(emotion)
        return entries  # type: ignore[return-value]

    def _render(self, nodes: tuple, ctx: _Ctx, convert: bool) -> list[_Seg]:
        out: list[_Seg] = []
        rng = ctx.rng
        for n in nodes:
            if isinstance(n, _Text):
                out.append(_Seg(n.text, None, convert))
            elif isinstance(n, _Opt):
                if rng.random() < n.p:
                    out += self._render(n.body, ctx, convert)
            elif isinstance(n, _Alt):
                out += self._render(rng.choice(n.options), ctx, convert)
            else:
                out += self._render_ref(n, ctx, convert)
        return out

    def _render_ref(self, ref: _Ref, ctx: _Ctx, convert: bool) -> list[_Seg]:
        v, key = ctx.values, ref.key
        if key == "product":
            v.product(ref.arg)
            return [_Seg(v.spoken("product", caller=not ctx.agent), "product")]
        if key in SLOT_KEYS:
            return [_Seg(v.spoken(key, caller=not ctx.agent, dialect=ctx.dialect, kind=ref.arg), key)]
        if key == "mw":
            return [_Seg("一" + v.product()[1])]
        if key == "defect":
            cat = v.product()[2]
            mandarin = ctx.rng.choice(L.DEFECTS.get(cat, L.DEFECTS["generic"]))
            return [_Seg(mandarin, None, not ctx.agent and ctx.dialect != "mandarin")]
        if key in ctx.extra:
            return [_Seg(ctx.extra[key])]
        entry, needs_conversion = self._lex(ctx, key)
        return self._render(self._nodes(entry), ctx, needs_conversion)

    def _finish(self, segs: list[_Seg], ctx: _Ctx, *, disfluent: bool) -> tuple[str, dict[str, str], tuple]:
        """Convert to the dialect, add disfluencies, tidy punctuation; return text, slots and spans."""
        conv = self._converters.get(ctx.dialect) if not ctx.agent else None
        segs = _merge(segs, by_convert=True)
        for s in segs:
            if s.convert and conv is not None and s.slot is None:
                s.text = conv(s.text, ctx.rng)
        segs = _merge(segs, by_convert=False)
        if disfluent:
            self._disfluency(segs, ctx)
        _tidy(segs)
        text, slots, spans, pos = "", {}, [], 0
        for s in segs:
            if s.slot:
                spans.append((s.slot, pos, pos + len(s.text)))
                slots[s.slot] = ctx.values.norm[s.slot]
            text += s.text
            pos += len(s.text)
        return text, slots, tuple(spans)

    def _statement(
        self, rng: random.Random, intent: str, emotion: str, dialect: str, tid: str, values: _Values
    ) -> Utterance:
        ctx = _Ctx(rng, intent, emotion, dialect, values, group=self._group(intent))
        template = self.template(tid)
        own = template.get(dialect)
        convert = own is None and dialect != "mandarin"
        core = self._render(self._nodes(own or template["mandarin"]), ctx, convert)
        if emotion == "anxious" and rng.random() < 0.3:
            _echo(core, ctx, self)
        opened = rng.random() < _OPEN_P.get(emotion, 0.5)
        closed = rng.random() < _CLOSE_P.get(emotion, 0.5)
        if emotion != "neutral" and not (opened or closed):
            closed = True
        segs: list[_Seg] = []
        if opened:
            segs += self._render_ref(_Ref("open"), ctx, False)
        segs += core
        if closed:
            segs += self._render_ref(_Ref(f"close_{ctx.group}"), ctx, False)
        text, slots, spans = self._finish(segs, ctx, disfluent=rng.random() >= _FLUENT_P)
        if emotion == "angry" and text.endswith("。") and rng.random() < 0.6:
            text = text[:-1] + "！"
        return Utterance(text, intent, emotion, dialect, slots, spans, tid)

    def _customer_turn(
        self, rng: random.Random, intent: str, emotion: str, dialect: str, values: _Values, key: str
    ) -> Turn:
        ctx = _Ctx(rng, intent, emotion, dialect, values, group=self._group(intent))
        segs = self._render_ref(_Ref(key), ctx, False)
        text, slots, spans = self._finish(segs, ctx, disfluent=rng.random() >= 0.6)
        return Turn("customer", text, slots, spans)

    def _agent_turn(self, ctx: _Ctx, key: str) -> Turn:
        segs = self._render_ref(_Ref(key), ctx, False)
        text, slots, spans = self._finish(segs, ctx, disfluent=False)
        return Turn("agent", text, slots, spans)

    def _disfluency(self, segs: list[_Seg], ctx: _Ctx) -> None:
        """Fillers at clause starts, a stuttered word (我我我), a restart (我买的，我买的那个)."""
        rng = ctx.rng
        p_fill, p_stutter, p_restart = _DISFLUENCY.get(ctx.emotion, _DISFLUENCY["neutral"])
        # clause starts inside text segments: (segment index, offset), never at the very start
        starts = [
            (i, k)
            for i, s in enumerate(segs)
            if s.slot is None
            for k in range(1, len(s.text))
            if s.text[k - 1] in _PUNCT and s.text[k] not in _PUNCT
        ]
        if segs and segs[0].slot is None and segs[0].text:
            starts.insert(0, (0, 0))
        edits: dict[tuple[int, int], str] = {}
        for i, k in starts:
            if (i, k) != (0, 0) and rng.random() < p_fill:
                edits[(i, k)] = self._lex(ctx, "fillers")[0]
        if rng.random() < p_stutter:
            cand = [(i, k) for i, k in starts if segs[i].text[k] in _STUTTER_CHARS]
            if cand:
                i, k = rng.choice(cand)
                edits[(i, k)] = edits.get((i, k), "") + segs[i].text[k] * rng.choice((1, 1, 2))
        if rng.random() < p_restart:
            cand = [(i, k) for i, k in starts if _CJK.fullmatch(segs[i].text[k : k + 4] or "-")]
            if cand:
                i, k = rng.choice(cand)
                n = rng.choice((2, 3, 3, 4))
                edits[(i, k)] = edits.get((i, k), "") + segs[i].text[k : k + n] + rng.choice(("，", "……", "，"))
        for (i, k) in sorted(edits, reverse=True):
            segs[i].text = segs[i].text[:k] + edits[(i, k)] + segs[i].text[k:]

    # -- internals: self-check ----------------------------------------------------------------------------
    def _check_lexicon(self) -> None:
        """Parse every template and lexicon entry once; unknown keys fail here, not mid-corpus."""
        known = _SPECIAL_KEYS | set(L.LEX) | {k for d in L.DIALECT_LEX.values() for k in d}
        known |= {k for d in L.AGENT_LEX.values() for k in d}
        texts: list[str] = []
        for intent in self.taxonomy.intent_names:
            for t in (*L.TEMPLATES[intent], *EXTRA_TEMPLATES.get(intent, ())):
                texts += list(t.values())
        for table in (L.LEX, *L.DIALECT_LEX.values(), *L.AGENT_LEX.values()):
            for entries in table.values():
                for group in entries.values() if isinstance(entries, dict) else (entries,):
                    texts += list(group)
        for t in texts:
            for ref in _refs(self._nodes(t)):
                if ref.key not in known:
                    raise TemplateError(f"template {t!r} refers to unknown key {{{ref.key}}} (data/synth/lexicon.py)")
                if ref.key == "product" and ref.arg and ref.arg not in L.PRODUCTS:
                    raise TemplateError(f"template {t!r}: unknown product category {ref.arg!r}; see PRODUCTS")
                if ref.key == "amount" and ref.arg and ref.arg not in L.AMOUNT_RANGES:
                    raise TemplateError(f"template {t!r}: unknown amount kind {ref.arg!r}; see AMOUNT_RANGES")
            if re.search(r"[A-Za-z0-9]", re.sub(r"\{[^}]*\}", "", t)):
                raise TemplateError(f"template {t!r} has Latin letters or digits outside {{}}: TTS reads characters")


def _merge(segs: list[_Seg], *, by_convert: bool) -> list[_Seg]:
    out: list[_Seg] = []
    for s in segs:
        if not s.text:
            continue
        if out and s.slot is None and out[-1].slot is None and (not by_convert or out[-1].convert == s.convert):
            out[-1] = _Seg(out[-1].text + s.text, None, out[-1].convert)
        else:
            out.append(_Seg(s.text, s.slot, s.convert))
    return out


def _tidy(segs: list[_Seg]) -> None:
    """Collapse doubled punctuation, drop a leading one, end with a full stop (slot segments untouched)."""
    for s in segs:
        if s.slot is None:
            t = re.sub(r"[，、]+([。！？…])", r"\1", s.text)
            t = re.sub(r"([。！？])[，、。]+", r"\1", t)
            t = re.sub(r"，{2,}", "，", t)
            s.text = t
    while segs and segs[0].slot is None and segs[0].text and segs[0].text[0] in _PUNCT:
        segs[0].text = segs[0].text[1:]
        if not segs[0].text:
            segs.pop(0)
    if not segs or segs[-1].slot is not None:
        segs.append(_Seg("。"))
    elif segs[-1].text[-1] not in _TERMINAL:
        segs[-1].text = segs[-1].text.rstrip("，、…；：") + "。"


def _echo(core: list[_Seg], ctx: _Ctx, gen: TextGenerator) -> None:
    """An anxious caller says the last clause again: "……快点处理，快点处理啊。"."""
    if not core or core[-1].slot is not None:
        return
    last = core[-1]
    body = last.text.rstrip(_TERMINAL)
    end = last.text[len(body) :] or "。"
    clause = re.split(f"[{_PUNCT}]", body)[-1]
    if 2 <= len(clause) <= 12 and _CJK.fullmatch(clause):
        particle = gen._lex(ctx, "echo")[0]
        last.text = f"{body}，{clause}{particle}{end}"


# -- held-out split --------------------------------------------------------------------------------------------
def split_templates(
    gen: TextGenerator, seed: int, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
) -> dict[str, str]:
    """template_id -> "train" | "validation" | "test": per intent, deterministic for ``seed``.

    Every split gets at least one template of every intent, so test phrasings are never seen in training. "test" is
    the old test split: the extra training phrasings were written after studying its errors; use the held-out set
    (:func:`data.synth.heldout.heldout_records`) for reported numbers, validation for decisions.
    The split is drawn over the core templates (``TEMPLATES``) only; the training-only phrasings of
    :mod:`data.synth.extra_templates` are always ``"train"``, so adding them leaves validation and test as they were.
    """
    if len(fractions) != 3 or any(f <= 0 for f in fractions):
        raise ValueError(f"fractions must be three positive shares (train, validation, test), got {fractions}")
    total = sum(fractions)
    _, f_val, f_test = (f / total for f in fractions)
    out: dict[str, str] = {}
    for intent in gen.taxonomy.intent_names:
        ids = gen.template_ids(intent)
        if len(ids) < 3:
            raise ValueError(f"intent {intent!r} has {len(ids)} templates; a three-way split needs at least 3")
        order = list(ids)
        random.Random(f"split_templates:{seed}:{intent}").shuffle(order)
        n = len(order)
        n_test = max(1, round(n * f_test))
        n_val = max(1, round(n * f_val))
        n_val = min(n_val, n - n_test - 1)
        for k, tid in enumerate(order):
            out[tid] = "test" if k < n_test else "validation" if k < n_test + n_val else "train"
        out.update((tid, "train") for tid in gen.extra_template_ids(intent))
    return out


# -- a look at the output ----------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> None:
    """Print a few utterances per dialect: ``python -m data.synth.text [N] [SEED]``."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    n = int(args[0]) if args else 5
    rng = random.Random(int(args[1]) if len(args) > 1 else 0)
    gen = TextGenerator()
    tax = gen.taxonomy
    for dialect in tax.dialect_names:
        print(f"== {dialect}")
        for _ in range(n):
            intent = rng.choice(tax.intent_names)
            w = gen.emotion_weights(intent)
            emotion = rng.choices(list(w), weights=list(w.values()))[0]
            u = gen.utterance(rng, intent, emotion, dialect)
            print(f"[{u.template_id} {u.emotion}] {u.text}  {u.slots}")


if __name__ == "__main__":
    main()
