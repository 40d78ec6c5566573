"""Text normalisation for scoring, and the character error rate (CER).

Chinese is scored per character (EVALUATION.md): before comparing, both sides lose punctuation (Chinese
and ASCII), symbols and whitespace, traditional characters become simplified ones (recognisers write
Cantonese in traditional characters; references are simplified), full-width forms become half-width
(NFKC) and Latin letters become lowercase. "您好，這個訂單" and "您好这个订单" are the same text.

Traditional-to-simplified mapping uses OpenCC's ``t2s`` tables (PyPI ``opencc-python-reimplemented``,
pure Python, offline). It is required: without it importing this module fails, since scoring Cantonese
transcripts without the mapping would silently count every traditional character as an error.

Numbers (:func:`normalize_numbers`, :func:`cer_numnorm`): EVALUATION.md's CER charges a recogniser that writes
"29" for 二十九 per character. The number-normalised CER first writes numbers one way on both sides: Chinese
numerals become Arabic digits with ``cn2an.transform(text, "cn2an")`` (PyPI ``cn2an``, pure Python, offline):
二十九 -> 29, 幺三八零零一二三四五六 -> 13800123456, 一点五 -> 1.5, 百分之五十 -> 50%, 两百 -> 200. A numeral run
that cn2an cannot parse (万一, 千千万万) is left as written, the same on both sides.
"""

from __future__ import annotations

import unicodedata
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Iterable

try:  # OpenCC tables, pure Python: `uv pip install opencc-python-reimplemented==0.1.7`
    from opencc import OpenCC as _OpenCC
except ImportError as e:  # pragma: no cover - only without the package
    raise ImportError("models.textnorm needs OpenCC's traditional-to-simplified tables: "
                      "`uv pip install opencc-python-reimplemented==0.1.7` (a pyproject dependency)") from e

_T2S = _OpenCC("t2s")
HAS_T2S = True  # traditional characters are mapped to simplified ones (always: OpenCC is required)

# Unicode general categories dropped before scoring: punctuation (P*), symbols (S*: ￥, ～, emoji),
# separators (Z*: spaces) and control/format characters (C*: tabs, newlines, zero-width spaces).
_DROP_CATEGORIES = ("P", "S", "Z", "C")


def to_simplified(text: str) -> str:
    """``text`` with traditional Chinese characters mapped to simplified ones."""
    return _T2S.convert(text) if text else text


@lru_cache(maxsize=65536)
def normalize_text(text: str | None) -> str:
    """The form two texts are compared in: no punctuation/symbols/whitespace, simplified, NFKC, lowercase."""
    if not text:
        return ""
    text = unicodedata.normalize("NFKC", str(text))
    text = "".join(ch for ch in text if not unicodedata.category(ch).startswith(_DROP_CATEGORIES))
    return to_simplified(text).lower()


@lru_cache(maxsize=65536)
def normalize_numbers(text: str | None) -> str:
    """:func:`normalize_text` after writing Chinese numerals as Arabic digits (``cn2an.transform(..., "cn2an")``).

    The numerals are converted before punctuation is dropped, so 一点五 and "1.5" both end as "15". Full-width
    digits and traditional numerals are unified first (NFKC, OpenCC). cn2an leaves a numeral run it cannot parse
    as written and warns; the warning is silenced, and any other failure of cn2an on an odd input keeps the text
    unconverted (both sides of a comparison go through the same function, so neither gains)."""
    if not text:
        return ""
    import warnings

    import cn2an

    text = to_simplified(unicodedata.normalize("NFKC", str(text)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            text = cn2an.transform(text, "cn2an")
    except Exception:  # noqa: BLE001 - a library failure on one odd string must not stop a scoring run
        pass
    return normalize_text(text)


def normalize_slot_value(slot: str, value: object) -> str:
    """A slot value in the form slot scoring compares exactly.

    ``amount`` compares as a number ("50" == "50.00"); digit slots (``order_id``, ``phone``) and free-text
    slots (``product``) compare after :func:`normalize_text` (so "ＩＰＨＯＮＥ 15" == "iphone15").
    """
    if value is None:
        return ""
    text = normalize_text(str(value)) if slot != "amount" else unicodedata.normalize("NFKC", str(value)).strip()
    if slot == "amount":
        try:
            number = Decimal(text.replace(",", ""))
            return format(number.normalize(), "f")
        except InvalidOperation:
            return normalize_text(text)
    return text


def edit_distance(ref: str, hyp: str) -> int:
    """Levenshtein distance (substitutions, deletions, insertions each cost 1) between two strings."""
    try:
        from rapidfuzz.distance import Levenshtein

        return int(Levenshtein.distance(ref, hyp))
    except ImportError:  # pragma: no cover - rapidfuzz comes with jiwer
        prev = list(range(len(hyp) + 1))
        for i, r in enumerate(ref, 1):
            cur = [i] + [0] * len(hyp)
            for j, h in enumerate(hyp, 1):
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
            prev = cur
        return prev[-1]


def char_errors(ref: str | None, hyp: str | None, numbers: bool = False) -> tuple[int, int]:
    """``(edits, reference length)`` in characters, after :func:`normalize_text` on both sides (``numbers``:
    :func:`normalize_numbers`, numerals written as digits)."""
    norm = normalize_numbers if numbers else normalize_text
    r, h = norm(ref), norm(hyp)
    return edit_distance(r, h), len(r)


def cer(ref: str | None, hyp: str | None, numbers: bool = False) -> float:
    """Character error rate of one hypothesis: edit distance / reference length, after normalisation
    (``numbers``: numerals written as digits on both sides first, see :func:`cer_numnorm`).

    An empty (normalised) reference scores 0.0 against an empty hypothesis and 1.0 against anything else.
    """
    edits, n = char_errors(ref, hyp, numbers)
    if n == 0:
        return 0.0 if edits == 0 else 1.0
    return edits / n


def cer_numnorm(ref: str | None, hyp: str | None) -> float:
    """:func:`cer` after :func:`normalize_numbers` on both sides: cer_numnorm("二十九", "29") == 0.0."""
    return cer(ref, hyp, numbers=True)


def cer_corpus(refs: Iterable[str | None], hyps: Iterable[str | None], numbers: bool = False) -> float:
    """Corpus CER: total edits over total reference characters (long utterances weigh more); ``numbers``: the
    number-normalised figure."""
    refs, hyps = list(refs), list(hyps)
    if len(refs) != len(hyps):
        raise ValueError(f"cer_corpus needs one hypothesis per reference: {len(refs)} references, {len(hyps)} hypotheses")
    edits = total = 0
    for r, h in zip(refs, hyps):
        e, n = char_errors(r, h, numbers)
        edits += e
        total += n
    if total == 0:
        return 0.0 if edits == 0 else 1.0
    return edits / total
