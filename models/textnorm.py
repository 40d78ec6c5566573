"""Text normalisation for scoring, and the character error rate (CER).

Chinese is scored per character (EVALUATION.md): before comparing, both sides lose punctuation (Chinese
and ASCII), symbols and whitespace, traditional characters become simplified ones (recognisers write
Cantonese in traditional characters; references are simplified), full-width forms become half-width
(NFKC) and Latin letters become lowercase. "您好，這個訂單" and "您好这个订单" are the same text.

Traditional-to-simplified mapping uses OpenCC's ``t2s`` tables (PyPI ``opencc-python-reimplemented``,
pure Python, offline). Without that package the mapping is skipped: :data:`HAS_T2S` says which.
"""

from __future__ import annotations

import unicodedata
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Iterable

try:  # OpenCC tables, pure Python: `uv pip install opencc-python-reimplemented==0.1.7`
    from opencc import OpenCC as _OpenCC

    _T2S = _OpenCC("t2s")
    HAS_T2S = True  # traditional characters are mapped to simplified ones
except Exception:  # pragma: no cover - only without the package
    _T2S = None
    HAS_T2S = False

# Unicode general categories dropped before scoring: punctuation (P*), symbols (S*: ￥, ～, emoji),
# separators (Z*: spaces) and control/format characters (C*: tabs, newlines, zero-width spaces).
_DROP_CATEGORIES = ("P", "S", "Z", "C")


def to_simplified(text: str) -> str:
    """``text`` with traditional Chinese characters mapped to simplified ones (unchanged without OpenCC)."""
    return _T2S.convert(text) if _T2S is not None and text else text


@lru_cache(maxsize=65536)
def normalize_text(text: str | None) -> str:
    """The form two texts are compared in: no punctuation/symbols/whitespace, simplified, NFKC, lowercase."""
    if not text:
        return ""
    text = unicodedata.normalize("NFKC", str(text))
    text = "".join(ch for ch in text if not unicodedata.category(ch).startswith(_DROP_CATEGORIES))
    return to_simplified(text).lower()


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


def char_errors(ref: str | None, hyp: str | None) -> tuple[int, int]:
    """``(edits, reference length)`` in characters, after :func:`normalize_text` on both sides."""
    r, h = normalize_text(ref), normalize_text(hyp)
    return edit_distance(r, h), len(r)


def cer(ref: str | None, hyp: str | None) -> float:
    """Character error rate of one hypothesis: edit distance / reference length, after normalisation.

    An empty (normalised) reference scores 0.0 against an empty hypothesis and 1.0 against anything else.
    """
    edits, n = char_errors(ref, hyp)
    if n == 0:
        return 0.0 if edits == 0 else 1.0
    return edits / n


def cer_corpus(refs: Iterable[str | None], hyps: Iterable[str | None]) -> float:
    """Corpus CER: total edits over total reference characters (long utterances weigh more)."""
    refs, hyps = list(refs), list(hyps)
    if len(refs) != len(hyps):
        raise ValueError(f"cer_corpus needs one hypothesis per reference: {len(refs)} references, {len(hyps)} hypotheses")
    edits = total = 0
    for r, h in zip(refs, hyps):
        e, n = char_errors(r, h)
        edits += e
        total += n
    if total == 0:
        return 0.0 if edits == 0 else 1.0
    return edits / total
