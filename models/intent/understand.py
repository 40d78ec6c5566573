"""Understanding a caller's text: intent, complaint decision and ticket slots, behind one interface.

Two backends implement :class:`IntentModel`: the compact character model trained from scratch
(``models/intent/charmodel.py``, backend ``"char"``) and a fine-tuned Hugging Face encoder
(``models/intent/hf_backend.py``, backend ``"hf"``). Both produce intent logits and per-character BIO tag
log-probabilities; everything after that is shared here:

1. intent probabilities = softmax(logits / T), T fitted on validation data (``models/calibration.py``);
2. BIO tags decoded with a constrained Viterbi (no ``I-x`` without ``B-x``/``I-x`` before it) into spans;
3. each span's surface normalised by ITN (``normalize_slot``); implausible values (a phone that is not 11
   digits) are dropped; number spans found by rules (``find_number_spans``) fill slots the tagger missed;
4. complaint = complaint intent OR a strong cue (``models/intent/cues.py``), with the evidence for both.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from models.calibration import softmax
from models.intent.cues import decide_complaint, find_cues
from models.lazy import lazy_attribute
from models.taxonomy import DEFAULT_TAXONOMY, Taxonomy

CONFIG_FILE = "config.json"  # every saved model directory has one; its "backend" key picks the loader
PYFUNC_ARTIFACT = "intent_model"  # inside a logged MLflow model: artifacts/<this>/ is the saved model directory
BACKENDS = {  # backend name -> "module:class" with a classmethod ``load(directory)``
    "char": "models.intent.charmodel:CharIntentModel",
    "hf": "models.intent.hf_backend:HFIntentModel",
    "ensemble": "models.intent.ensemble:EnsembleIntentModel",
    "fused_e5": "models.intent.e5_head:FusedE5IntentModel",  # character model + e5 head (training/intent_e5.py)
}
# Near-pinyin merges (Southern and Southwestern accents, frequent recogniser confusions): zh/z, n/l, in/ing ...
PINYIN_INITIAL_MERGE = {"zh": "z", "ch": "c", "sh": "s", "n": "l", "r": "l", "f": "h"}
PINYIN_FINAL_MERGE = {"ing": "in", "eng": "en", "ang": "an", "iang": "ian", "uang": "uan", "ong": "eng"}
PINYIN_INITIALS = ("zh", "ch", "sh", "b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h", "j", "q", "x", "r", "z", "c", "s", "y", "w")
GAZETTEER_MAX_EDIT_SHARE = 0.34  # a value snaps to a known one within this share of syllable edits (at least 1)
RULE_SLOT_CONFIDENCE = 0.5  # slot_confidence of a slot filled by the number rules, not the tagger
MIN_ORDER_ID_DIGITS = 6  # an order number shorter than this is not plausible
MAX_ORDER_ID_DIGITS = 30
_PHONE_RE = re.compile(r"1\d{10}")
CONTEXT_WINDOW = 8  # characters before a number searched for a word saying what it is
# Words before a digit string that say which slot it fills (the rule fallback reads them; nearest wins).
CONTEXT_WORDS = {  # matched on the window folded to simplified characters (電話係 -> 电话系, 單號 -> 单号)
    "order_id": ("订单", "单号", "运单", "快递单", "张单", "编号", "订单编号", "单号码"),
    "phone": ("电话", "手机", "联系方式", "打我", "回电", "致电", "联系我", "联络"),
}
_AMOUNT_RE = re.compile(r"\d+(\.\d+)?")
# Digit readings by toneless pinyin: a recogniser that mishears a digit writes a (near-)homophone (四 -> 寺, 六 -> 纽).
DIGIT_SOUNDS = {"ling": "零", "dong": "洞", "yi": "一", "yao": "幺", "er": "二", "liang": "两", "san": "三", "si": "四",
                "wu": "五", "liu": "六", "qi": "七", "ba": "八", "jiu": "九"}
_DIGIT_CHARS = set("零〇洞一幺二两三四五六七八九0123456789")
LEADING_DIGIT_RUN = 5  # a misheard first digit is put back only before this many digits, and only on an exact sound
_NOT_DIGITS = set("是时事市式十石实使始以已医衣依亿意义易")  # common words that sound like a digit: never a misheard one at a number's start
_NUMBER_WORDS = set("十百千万亿点半廿卅")  # place units and number words inside a cardinal: never a misheard digit
PRODUCT_WINDOW_SLACK = 1  # characters a known value's window may start away from the tagged span's start


@dataclass(frozen=True)
class SlotRules:
    """When a tagged span of a text slot with known values (a gazetteer) becomes a slot value."""

    min_shared_chars: int = 1  # a snap needing syllable edits keeps this many of the value's characters (0: off)
    unknown_min_confidence: float = 0.95  # a value matching no known value is kept only at this tag confidence
    # ... unless it ends with a product noun the catalogue knows (方太热水器: 热水器): products are open vocabulary
    keep_unknown_with_product_noun: bool = True


DEFAULT_SLOT_RULES = SlotRules()  # min_shared_chars and unknown_min_confidence chosen on validation (clean and noised)


@dataclass(frozen=True)
class Understanding:
    intent: str  # the most probable intent label (taxonomy name)
    intent_confidence: float  # calibrated probability of ``intent``
    intent_probs: dict[str, float]  # calibrated probability of every intent
    is_complaint: bool  # the intent is a complaint intent OR a strong complaint cue fired
    complaint_confidence: float  # probability that ``is_complaint`` is right (model and cues combined)
    complaint_evidence: tuple[str, ...]  # e.g. ("intent:logistics_delay", "cue:投诉", "cue:12315")
    slots: dict[str, str]  # slot name -> value normalised by ITN (EVALUATION.md values)
    slot_spans: tuple[tuple[str, int, int, str], ...]  # (slot, start, end, surface) in the input text
    slot_confidence: dict[str, float]  # slot name -> confidence (RULE_SLOT_CONFIDENCE when rules filled it)
    # slot name -> what is known beyond the value; "product": {"value", "said", "brand", "brand_listed", "category",
    # "catalogue_id", "match"} from the product catalogue (models/catalogue.py); ``slots`` keeps the scored string
    slot_details: dict[str, dict] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["complaint_evidence"] = list(self.complaint_evidence)
        d["slot_spans"] = [list(s) for s in self.slot_spans]
        return d


@runtime_checkable
class IntentModel(Protocol):
    def predict(self, texts: list[str]) -> list[Understanding]: ...

    def save(self, directory: str | Path) -> None: ...


@dataclass(frozen=True)
class LabelMaps:
    """The label spaces a model was trained with (saved with it, so a model never depends on the code's taxonomy)."""

    intents: tuple[str, ...]  # class id -> intent name
    complaint_intents: tuple[str, ...]  # the intents that are complaints
    bio_tags: tuple[str, ...]  # tag id -> "O" | "B-<slot>" | "I-<slot>"

    @classmethod
    def from_taxonomy(cls, taxonomy: Taxonomy = DEFAULT_TAXONOMY) -> "LabelMaps":
        return cls(taxonomy.intent_names, taxonomy.complaint_intents, taxonomy.bio_tags)

    @property
    def slots(self) -> tuple[str, ...]:
        return tuple(t[2:] for t in self.bio_tags if t.startswith("B-"))

    def intent_id(self, name: str) -> int:
        try:
            return self.intents.index(name)
        except ValueError:
            raise ValueError(f"unknown intent {name!r}; this model knows {', '.join(self.intents)}") from None

    def to_json(self) -> dict:
        return {k: list(v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, d: Mapping) -> "LabelMaps":
        return cls(tuple(d["intents"]), tuple(d["complaint_intents"]), tuple(d["bio_tags"]))


@dataclass(frozen=True)
class Example:
    """One training example for either backend."""

    text: str  # the utterance as the model sees it (clean or ASR-noised)
    intent_id: int  # index into LabelMaps.intents
    tag_ids: tuple[int, ...] | None  # BIO tag id per character of ``text``; None when the record has no spans


# -- BIO -------------------------------------------------------------------------------------------
def char_tags(text: str, spans: Sequence[Sequence], bio_tags: Sequence[str]) -> list[int]:
    """Tag ids per character of ``text`` for labelled spans ``(slot, start, end, ...)`` (unknown slots are O)."""
    index = {t: i for i, t in enumerate(bio_tags)}
    tags = [index["O"]] * len(text)
    for s in spans:
        slot, start, end = s[0], int(s[1]), int(s[2])
        if f"B-{slot}" not in index or not (0 <= start < end <= len(text)):
            continue
        tags[start] = index[f"B-{slot}"]
        for i in range(start + 1, end):
            tags[i] = index[f"I-{slot}"]
    return tags


def decode_bio(tags: Sequence[str], confidences: Sequence[float] | None = None) -> list[tuple[str, int, int, float]]:
    """Spans ``(slot, start, end, confidence)`` from a BIO tag sequence.

    ``B-x`` opens a span; ``I-x`` continues a span of the same slot, or opens one when it follows ``O`` or
    another slot (lenient, like conlleval). Confidence is the mean of the per-character confidences (1 when
    none are given).
    """
    spans: list[tuple[str, int, int, float]] = []
    cur: list = []  # [slot, start]

    def close(end: int) -> None:
        if cur:
            conf = 1.0 if confidences is None else float(np.mean(confidences[cur[1] : end]))
            spans.append((cur[0], cur[1], end, conf))
            cur.clear()

    for i, tag in enumerate(tags):
        if tag.startswith("B-"):
            close(i)
            cur[:] = [tag[2:], i]
        elif tag.startswith("I-"):
            if not cur or cur[0] != tag[2:]:
                close(i)
                cur[:] = [tag[2:], i]
        else:
            close(i)
    close(len(tags))
    return spans


def _transitions(bio_tags: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(allowed start tags, allowed transitions prev x next) for BIO: I-x only after B-x or I-x."""
    n = len(bio_tags)
    start = np.array([not t.startswith("I-") for t in bio_tags])
    trans = np.ones((n, n), dtype=bool)
    for j, t in enumerate(bio_tags):
        if t.startswith("I-"):
            slot = t[2:]
            trans[:, j] = [p in (f"B-{slot}", f"I-{slot}") for p in bio_tags]
    return start, trans


def viterbi_bio(log_probs: np.ndarray, bio_tags: Sequence[str]) -> list[int]:
    """The most probable tag sequence under per-character ``log_probs`` (chars x tags) that is valid BIO."""
    n_chars = log_probs.shape[0]
    if n_chars == 0:
        return []
    start, trans = _transitions(tuple(bio_tags))
    neg = -1e9
    score = np.where(start, log_probs[0], neg)
    back = np.zeros((n_chars, len(bio_tags)), dtype=np.int64)
    penalty = np.where(trans, 0.0, neg)
    for i in range(1, n_chars):
        total = score[:, None] + penalty
        back[i] = total.argmax(axis=0)
        score = total.max(axis=0) + log_probs[i]
    best = [int(score.argmax())]
    for i in range(n_chars - 1, 0, -1):
        best.append(int(back[i, best[-1]]))
    return best[::-1]


# -- pinyin --------------------------------------------------------------------------------------
@lru_cache(maxsize=50000)
def toneless_pinyin(char: str) -> str:
    """The pinyin of one character without tone ("诉" -> "su"), "" for non-Chinese characters."""
    from pypinyin import Style, lazy_pinyin

    p = lazy_pinyin(char, style=Style.NORMAL, errors="ignore")
    return p[0] if p and p[0].isalpha() else ""


def fuzzy_pinyin_key(pinyin: str) -> str:
    """A key under which near-sounding syllables meet: "zhi" and "zi" -> "z|i", "ning" and "lin" -> "l|in"."""
    initial = next((i for i in PINYIN_INITIALS if pinyin.startswith(i)), "")
    final = pinyin[len(initial) :]
    return PINYIN_INITIAL_MERGE.get(initial, initial) + "|" + PINYIN_FINAL_MERGE.get(final, final)


def _sound(text: str) -> tuple[str, ...]:
    return tuple(fuzzy_pinyin_key(toneless_pinyin(c)) if toneless_pinyin(c) else c for c in text)


def _edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def shares_enough(heard: str, value: str, edits: int, min_shared_chars: int) -> bool:
    """Whether ``heard`` may snap to the known ``value`` ``edits`` syllable edits away: a snap that sounds the same
    (no edits) always may; one that needs edits must keep ``min_shared_chars`` of ``value``'s characters, so a
    different word that only sounds near a value (停电 ting-dian for 床垫 chuang-dian) is not turned into it."""
    return edits == 0 or len(set(heard) & set(value)) >= min_shared_chars


def snap_to_known(
    value: str, known: Sequence[str], min_shared_chars: int = DEFAULT_SLOT_RULES.min_shared_chars
) -> tuple[str, float]:
    """``value`` replaced by the known value that sounds closest (recognition errors, a measure word caught in
    the span), with a similarity in [0, 1]; ``value`` itself with 1.0 when it is known or nothing is close.

    Closeness is the edit distance over syllables compared by :func:`fuzzy_pinyin_key`; a snap needs at most
    ``GAZETTEER_MAX_EDIT_SHARE`` of the known value's syllables edited (at least one), a unique best match and,
    when it needs edits, ``min_shared_chars`` characters in common (:func:`shares_enough`).
    """
    if not known or value in known:
        return value, 1.0
    sound = _sound(value)
    scored = sorted((_edit_distance(sound, _sound(k)), k) for k in known)
    scored = [(d, k) for d, k in scored if shares_enough(value, k, d, min_shared_chars)]
    if not scored:
        return value, 1.0
    best_d, best = scored[0]
    if best_d > max(1, round(GAZETTEER_MAX_EDIT_SHARE * len(best))):
        return value, 1.0
    if len(scored) > 1 and scored[1][0] == best_d:
        return value, 1.0  # ambiguous
    return best, 1.0 - best_d / max(len(best), len(value))


@lru_cache(maxsize=1)
def _digit_keys() -> dict[str, str]:
    return {fuzzy_pinyin_key(p): d for p, d in DIGIT_SOUNDS.items()}


def misheard_digit(char: str) -> str | None:
    """The digit a recogniser probably meant by ``char`` (same or near pinyin as a digit reading), else None."""
    if char in _DIGIT_CHARS or char in _NUMBER_WORDS or not ("\u4e00" <= char <= "\u9fff"):
        return None  # a place unit (十 shi, 四 si) is part of the number, not a misheard digit
    py = toneless_pinyin(char)
    if not py:
        return None
    return DIGIT_SOUNDS.get(py) or _digit_keys().get(fuzzy_pinyin_key(py))


def repair_digits(text: str) -> str:
    """``text`` with misheard digits inside digit readings put back: a character that sounds like a digit
    between two digits ("二六三五四一饲零八" -> "二六三五四一四零八"), or with exactly a digit's sound right before
    a run of digits ("药三零五零..." -> "幺三零五零..."). One character for one: offsets stay valid."""
    chars = list(text)
    for i in range(1, len(chars) - 1):  # inside a reading
        if chars[i - 1] in _DIGIT_CHARS and text[i + 1] in _DIGIT_CHARS:
            chars[i] = misheard_digit(chars[i]) or chars[i]
    for i in range(len(chars) - LEADING_DIGIT_RUN):  # the first digit of a reading
        if (i == 0 or chars[i - 1] not in _DIGIT_CHARS) and chars[i] not in _NOT_DIGITS and chars[i] not in _DIGIT_CHARS:
            if all(c in _DIGIT_CHARS for c in chars[i + 1 : i + 1 + LEADING_DIGIT_RUN]):
                chars[i] = DIGIT_SOUNDS.get(toneless_pinyin(chars[i])) or chars[i]  # exact sound only
    return "".join(chars)


def snap_in_context(
    text: str, start: int, end: int, known: Sequence[str], min_shared_chars: int = DEFAULT_SLOT_RULES.min_shared_chars
) -> tuple[str, float, int, int] | None:
    """The known value that sounds closest to a window of ``text`` around the tagged span ``[start, end)``
    (the tagger may cut a misheard value short or run past it), with a similarity and the window's offsets;
    None when nothing is close enough (the :func:`snap_to_known` rule, :func:`shares_enough` with
    ``min_shared_chars``) or two values tie."""
    slack = PRODUCT_WINDOW_SLACK
    best: list = []
    for k in known:
        ks = _sound(k)
        n = len(k)
        limit = max(1, round(GAZETTEER_MAX_EDIT_SHARE * n))
        for a in range(max(0, start - slack), min(start + slack, end - 1) + 1):
            for length in range(max(1, n - 1), n + 2):
                b = a + length
                if b > len(text) or b <= start:
                    continue
                d = _edit_distance(_sound(text[a:b]), ks)
                # cost: the edits, and half a point per tagged character the window leaves out
                if d <= limit and shares_enough(text[a:b], k, d, min_shared_chars):
                    uncovered = max(0, a - start) + max(0, end - b)
                    best.append((d + 0.5 * uncovered, abs(a - start) + abs(b - end), k, a, b, d))
    if not best:
        return None
    best.sort()
    cost, shift, k, a, b, d = best[0]
    if any(x[0] == cost and x[1] == shift and x[2] != k for x in best[1:]):
        return None  # two known values fit equally well
    return k, 1.0 - d / max(len(k), b - a), a, b


# -- slots -----------------------------------------------------------------------------------------
def plausible(slot: str, value: str | None) -> bool:
    """Whether a normalised slot value looks like a real one (EVALUATION.md formats)."""
    if not value:
        return False
    if slot == "phone":
        return bool(_PHONE_RE.fullmatch(value))
    if slot == "order_id":
        return value.isdigit() and MIN_ORDER_ID_DIGITS <= len(value) <= MAX_ORDER_ID_DIGITS
    if slot == "amount":
        return bool(_AMOUNT_RE.fullmatch(value))
    return bool(value.strip())


def _fold_context(window: str) -> str:
    """A context window in simplified characters (電話 -> 电话), for matching CONTEXT_WORDS."""
    from models.textnorm import to_simplified

    return to_simplified(window)


def context_kind(text: str, start: int, kind: str) -> str:
    """The slot a rule-found digit string at ``start`` fills: the nearest context word before it decides
    (订单号 ... -> order_id, 电话 ... -> phone); without one, ITN's guess ``kind`` stands."""
    if kind not in CONTEXT_WORDS:
        return kind
    window = _fold_context(text[max(0, start - CONTEXT_WINDOW) : start])
    best, best_pos = kind, -1
    for slot, words in CONTEXT_WORDS.items():
        for w in words:
            pos = window.rfind(w)
            if pos >= 0 and pos + len(w) > best_pos:
                best, best_pos = slot, pos + len(w)
    return best


NUMBER_SLOTS = ("order_id", "phone", "amount")  # slots ITN reads; a rule span that covers a tagged one wins


def brand_safe(tagged: str, window: str, candidate: str, catalogue: Any) -> bool:
    """Whether a product span may be repaired to ``candidate``: the brand stays. The brand of the candidate (by the
    catalogue: a listed brand at its start, or words before a known product noun) must be the brand of the text the
    repair covers (``window``) and of what was tagged: 美得热水器 -> 美的热水器 may, 方太热水器 -> 美的热水器 and
    老板油烟机 -> 油烟机 may not."""

    def same(a: str | None, b: str | None) -> bool:
        return a == b or bool(a and b and _sound(a) == _sound(b))

    cb = catalogue.brand_of(candidate)[0]
    tb = catalogue.brand_of(tagged)[0]
    wb = catalogue.brand_of(window)[0]
    return same(cb, wb) and (tb is None or same(tb, cb))


def same_product(tagged: str, window: str, candidate: str, catalogue: Any) -> bool:
    """Whether a repair of ``window`` (the text it covers) to the known ``candidate`` fixes a misheard or clipped
    span of the same product rather than naming a different one: the brand stays (:func:`brand_safe`), and the
    window is the candidate's beginning (a clipped span) or sounds like the candidate, at least
    ``models.catalogue.FUZZY_MIN_SIMILARITY`` (chosen on the catalogue's dev list) in syllable similarity.
    机顶盒 is not 机票, 校园宽带 is not 宽带, 停电 is not 床垫."""
    from models.catalogue import FUZZY_MIN_SIMILARITY

    if not brand_safe(tagged, window, candidate, catalogue):
        return False
    if len(window) >= 2 and candidate.startswith(window):
        return True  # the tagger stopped short or the end was not heard: 羽绒 -> 羽绒服
    d = _edit_distance(_sound(window), _sound(candidate))
    return 1.0 - d / max(len(window), len(candidate), 1) >= FUZZY_MIN_SIMILARITY


def fill_slots(
    text: str,
    spans: Sequence[tuple[str, int, int, float]],
    slots: Sequence[str],
    gazetteer: Mapping[str, Sequence[str]] | None = None,
    rules: SlotRules | None = None,
    catalogue: Any = None,
) -> tuple[dict[str, str], tuple[tuple[str, int, int, str], ...], dict[str, float]]:
    """Slots from tagged spans (ITN-normalised, implausible ones dropped), then number rules for the rest.

    Per slot the most confident accepted span wins. A tagged number span inside a longer rule-found number of the
    same slot takes the rule's reading (五百四十六蚊 tagged in 五百四十六蚊半 reads 546.5). The product slot is open
    vocabulary: the span as the caller said it. A ``gazetteer`` (known values, e.g. products seen in training) may
    repair a misheard span to the known value that sounds closest (:func:`snap_in_context`, :func:`snap_to_known`,
    under ``rules``, default :data:`DEFAULT_SLOT_RULES`) only when it is the same product (:func:`same_product`: the
    brand stays and the text sounds like the known value), never to a different product; then the
    product ``catalogue`` (``models.catalogue``; None: :func:`models.catalogue.default_catalogue`) normalises the
    value to its canonical name on an unambiguous match. A span that is neither known, nor in the catalogue, nor
    ends with a product noun the catalogue knows is dropped unless its tag confidence reaches
    ``rules.unknown_min_confidence``. Returns (values, spans with surfaces, confidences).
    """
    from models.catalogue import default_catalogue
    from models.intent.itn import find_number_spans, normalize_slot

    rules = rules or DEFAULT_SLOT_RULES
    cat = catalogue if catalogue is not None else default_catalogue()
    values: dict[str, str] = {}
    chosen: dict[str, tuple[str, int, int, str]] = {}
    conf: dict[str, float] = {}
    repaired = repair_digits(text)  # misheard digits inside digit readings, one character for one
    rule_spans = [(context_kind(text, a, k), a, b, v) for k, a, b, v in find_number_spans(repaired)]
    for slot, start, end, c in sorted(spans, key=lambda s: -s[3]):
        if slot in values or slot not in slots:
            continue
        if slot in NUMBER_SLOTS:
            cover = [r for r in rule_spans if r[0] == slot and r[1] <= start and end <= r[2] and (r[1], r[2]) != (start, end)
                     and plausible(slot, r[3])]
            if cover:
                _, start, end, _ = cover[0]
        surface = text[start:end]
        value = normalize_slot(slot, surface)
        if not plausible(slot, value) and repaired[start:end] != surface:
            value = normalize_slot(slot, repaired[start:end])
        if not plausible(slot, value):
            continue
        similarity = 1.0
        if slot not in NUMBER_SLOTS:
            known = tuple(gazetteer.get(slot) or ()) if gazetteer else ()
            if known and value not in known:
                near = snap_in_context(text, start, end, known, rules.min_shared_chars)
                if near is not None and same_product(value, text[near[2] : near[3]], near[0], cat):
                    value, similarity, start, end = near
                    surface = text[start:end]
                else:
                    guess, sim = snap_to_known(value, known, rules.min_shared_chars)
                    if guess != value and same_product(value, value, guess, cat):
                        value, similarity = guess, sim
            if slot == "product":
                m = cat.match(value)
                if m is not None:
                    value = m.product.name
                listed = value in known or m is not None
                noun = rules.keep_unknown_with_product_noun and cat.describe(value).category is not None
                if not listed and not noun and c < rules.unknown_min_confidence:
                    continue  # matches nothing known and the tagger is unsure: most likely not a product at all
            elif known and value not in known and c < rules.unknown_min_confidence:
                continue
        values[slot], chosen[slot], conf[slot] = value, (slot, start, end, surface), float(c) * similarity
    taken = [(s[1], s[2]) for s in chosen.values()]
    for kind, start, end, value in rule_spans:
        if kind not in slots or kind in values or not plausible(kind, value):
            continue
        if any(start < e and s < end for s, e in taken):
            continue
        values[kind], chosen[kind], conf[kind] = value, (kind, start, end, text[start:end]), RULE_SLOT_CONFIDENCE
        taken.append((start, end))
    order = sorted(chosen.values(), key=lambda s: s[1])
    return {s[0]: values[s[0]] for s in order}, tuple(order), {s[0]: conf[s[0]] for s in order}


def slot_details(slots: Mapping[str, str], slot_spans: Sequence[tuple[str, int, int, str]],
                 catalogue: Any = None) -> dict[str, dict]:
    """``Understanding.slot_details``: for the product, the catalogue's view of what the caller said (brand and
    category as separate fields, ``catalogue_id`` None when the span matched no entry)."""
    from models.catalogue import default_catalogue

    out: dict[str, dict] = {}
    if "product" in slots:
        cat = catalogue if catalogue is not None else default_catalogue()
        said = next((s[3] for s in slot_spans if s[0] == "product"), slots["product"])
        d = cat.describe(said).to_dict()
        if d["value"] != slots["product"]:  # the value was repaired before the catalogue saw it
            d = {**cat.describe(slots["product"]).to_dict(), "said": said}
        out["product"] = d
    return out


# -- the shared decision ---------------------------------------------------------------------------
def understand(
    text: str,
    intent_logits: np.ndarray,
    tag_log_probs: np.ndarray,
    labels: LabelMaps,
    temperature: float = 1.0,
    gazetteer: Mapping[str, Sequence[str]] | None = None,
    rules: SlotRules | None = None,
    catalogue: Any = None,
) -> Understanding:
    """One :class:`Understanding` from a backend's raw scores for ``text``.

    ``intent_logits``: (intents,); ``tag_log_probs``: (len(text), tags) log-probabilities per character;
    ``gazetteer``: known values per text slot and ``rules`` how they are used, ``catalogue`` the product catalogue
    (None: the default one) (see :func:`fill_slots`).
    """
    probs = softmax(np.asarray(intent_logits, dtype=np.float64)[None], temperature)[0]
    best = int(probs.argmax())
    intent_probs = {name: float(p) for name, p in zip(labels.intents, probs)}
    lp = np.asarray(tag_log_probs, dtype=np.float64)
    if lp.shape[0] != len(text):
        raise ValueError(f"tag scores cover {lp.shape[0]} characters but the text has {len(text)}")
    tag_ids = viterbi_bio(lp, labels.bio_tags)
    char_conf = np.exp(lp[np.arange(len(tag_ids)), tag_ids]) if tag_ids else np.zeros(0)
    spans = decode_bio([labels.bio_tags[t] for t in tag_ids], char_conf)
    slots, slot_spans, slot_conf = fill_slots(text, spans, labels.slots, gazetteer, rules, catalogue)
    decision = decide_complaint(labels.intents[best], intent_probs, labels.complaint_intents, find_cues(text))
    return Understanding(
        intent=labels.intents[best],
        intent_confidence=float(probs[best]),
        intent_probs=intent_probs,
        is_complaint=decision.is_complaint,
        complaint_confidence=decision.confidence,
        complaint_evidence=decision.evidence,
        slots=slots,
        slot_spans=slot_spans,
        slot_confidence=slot_conf,
        slot_details=slot_details(slots, slot_spans, catalogue),
    )


# -- saved models ----------------------------------------------------------------------------------
def resolve_model_dir(directory: str | Path) -> Path:
    """The saved model directory: ``directory`` itself, or the one inside a downloaded MLflow model
    (``artifacts/intent_model/``), so ``mlflow.artifacts.download_artifacts("models:/intent@champion")`` loads too."""
    d = Path(directory)
    if (d / CONFIG_FILE).is_file():
        return d
    inner = d / "artifacts" / PYFUNC_ARTIFACT
    if (inner / CONFIG_FILE).is_file():
        return inner
    found = sorted((d / "artifacts").glob(f"*/{CONFIG_FILE}")) if (d / "artifacts").is_dir() else []
    if len(found) == 1:  # MLflow keeps the logged folder's own name
        return found[0].parent
    raise FileNotFoundError(
        f"{d / CONFIG_FILE} not found: {d} is not a saved intent model directory "
        f"(train one with `hotline train intent`, or pass the folder that holds {CONFIG_FILE})"
    )


def read_model_config(directory: str | Path) -> dict:
    return json.loads((resolve_model_dir(directory) / CONFIG_FILE).read_text(encoding="utf-8"))


def load_intent_model(directory: str | Path) -> IntentModel:
    """Load a saved intent model directory; ``config.json``'s ``backend`` says which implementation reads it."""
    import importlib

    d = resolve_model_dir(directory)
    backend = read_model_config(d).get("backend")
    if backend not in BACKENDS:
        raise ValueError(f"{d / CONFIG_FILE}: unknown backend {backend!r}; known backends: {', '.join(BACKENDS)}")
    module, cls = BACKENDS[backend].split(":")
    return getattr(importlib.import_module(module), cls).load(d)


# -- MLflow pyfunc ---------------------------------------------------------------------------------
def _pyfunc_class() -> type:
    import mlflow.pyfunc

    class IntentPyfuncModel(mlflow.pyfunc.PythonModel):
        """MLflow pyfunc flavour of a saved intent model: a list of texts in (MLflow turns a one-column
        DataFrame into one), one :meth:`Understanding.to_dict` per text out."""

        def load_context(self, context) -> None:
            self.model = load_intent_model(context.artifacts[PYFUNC_ARTIFACT])

        def predict(self, context, model_input: list[str], params: dict[str, str] | None = None) -> list[dict[str, Any]]:
            texts = [model_input] if isinstance(model_input, str) else [str(t) for t in model_input]
            return [u.to_dict() for u in self.model.predict(texts)]

    return IntentPyfuncModel


__getattr__ = lazy_attribute(globals(), "IntentPyfuncModel", _pyfunc_class)  # mlflow is imported on first use only


class ScoredIntentModel:
    """Shared ``predict`` for backends that expose ``scores(texts) -> (intent_logits, per-text tag log-probs)`` and
    carry ``labels``, ``temperature`` and ``gazetteer``: decoding and slot filling are the same for every backend."""

    def predict(self, texts: list[str]) -> list[Understanding]:
        logits, tag_lp = self.scores(texts)  # type: ignore[attr-defined]
        return [
            understand(t, z, lp, self.labels, self.temperature, self.gazetteer)  # type: ignore[attr-defined]
            for t, z, lp in zip(texts, logits, tag_lp)
        ]

