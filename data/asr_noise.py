"""Simulated speech-recognition errors on text, so text models train on what the service will see.

A recogniser confuses characters that sound alike (same pinyin without tone, or near initials and finals
such as zh/z, n/l, in/ing, an/ang), drops and inserts characters, and often writes numbers in Arabic digits
("一百二十八块五" -> "128.5元", "幺三八..." -> "138...", through ITN). ``add_asr_noise`` applies such
edits to a text and re-maps labelled spans through them: the surface of a re-mapped span is exactly the
noised version of the original span. The same ``random.Random`` state gives the same edits.

Confusable characters come from the 3755 common characters of GB2312 level 1, grouped by pinyin (pypinyin).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

from models.intent.understand import fuzzy_pinyin_key, toneless_pinyin

# Characters the recogniser may produce as a substitution: GB2312 level-1 hanzi (rows 0xB0-0xD7).
_GB2312_L1_ROWS = (0xB0, 0xD7)  # first byte range, inclusive
_GB2312_L1_COLS = (0xA1, 0xFE)  # second byte range, inclusive (row 0xD7 ends at 0xF9)

# Fillers and particles a recogniser inserts.
FILLERS = "的了啊呃嗯是那就这吧呢哦"


@dataclass(frozen=True)
class AsrNoiseOptions:
    substitute: float = 0.06  # per-character probability of a homophone / near-homophone substitution
    drop: float = 0.015  # per-character probability that a character is lost
    insert: float = 0.015  # per-character probability that a filler or echo is inserted after it
    near_share: float = 0.35  # share of substitutions drawn from near pinyin (zh/z, n/l, in/ing) rather than exact
    arabic_digits: float = 0.5  # probability (once per text) that the recogniser writes numbers as Arabic digits
    number_scale: float = 0.25  # error rates inside numbers are multiplied by this (digit strings are well modelled)


DEFAULT_ASR_NOISE = AsrNoiseOptions()


@dataclass(frozen=True)
class NoisyText:
    text: str  # the text after the simulated recognition errors
    spans: tuple[tuple, ...]  # the input spans with offsets in ``text`` (a 4th "surface" field is updated too)
    n_edits: int  # substitutions + drops + insertions + numbers rewritten as digits
    alignment: tuple[tuple[int, int, int, int], ...] = ()  # (start, end) in the input -> (start, end) here, per unit


def _is_hanzi(c: str) -> bool:
    return "\u4e00" <= c <= "\u9fff"


@lru_cache(maxsize=1)
def _inventory() -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    """(toneless pinyin -> common chars, fuzzy key -> common chars)."""
    by_py: dict[str, list[str]] = {}
    by_key: dict[str, list[str]] = {}
    for a in range(_GB2312_L1_ROWS[0], _GB2312_L1_ROWS[1] + 1):
        for b in range(_GB2312_L1_COLS[0], _GB2312_L1_COLS[1] + 1):
            if a == _GB2312_L1_ROWS[1] and b > 0xF9:
                continue
            c = bytes([a, b]).decode("gb2312")
            py = toneless_pinyin(c)
            if py:
                by_py.setdefault(py, []).append(c)
                by_key.setdefault(fuzzy_pinyin_key(py), []).append(c)
    return {k: tuple(v) for k, v in by_py.items()}, {k: tuple(v) for k, v in by_key.items()}


@lru_cache(maxsize=20000)
def confusable(char: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(exact homophones, near homophones) of ``char`` among common characters, ``char`` itself excluded."""
    py = toneless_pinyin(char)
    if not py:
        return (), ()
    by_py, by_key = _inventory()
    same = tuple(c for c in by_py.get(py, ()) if c != char)
    near = tuple(c for c in by_key.get(fuzzy_pinyin_key(py), ()) if c != char and c not in same)
    return same, near


def _substitute(char: str, rng: random.Random, near_share: float) -> str:
    same, near = confusable(char)
    use_near = rng.random() < near_share
    pool = (near or same) if use_near else (same or near)
    return rng.choice(pool) if pool else char


def _units(text: str, spans: Sequence[Sequence]) -> list[tuple[int, int, str | None]]:
    """Split ``text`` into (start, end, digits) units: number expressions (with their Arabic-digit form,
    from ITN's ``scan_numbers``) and single characters. A number that straddles a span boundary is split
    into characters and never rewritten."""
    from models.intent.itn import scan_numbers

    cuts = {int(s[1]) for s in spans} | {int(s[2]) for s in spans}
    units: list[tuple[int, int, str | None]] = []
    i = 0
    for n in scan_numbers(text):
        if n.start < i or any(n.start < c < n.end for c in cuts):
            continue
        units += [(j, j + 1, None) for j in range(i, n.start)]
        units.append((n.start, n.end, n.render()))
        i = n.end
    units += [(j, j + 1, None) for j in range(i, len(text))]
    return units


def add_asr_noise(
    text: str,
    spans: Sequence[Sequence] = (),
    rng: random.Random | int | None = None,
    options: AsrNoiseOptions = DEFAULT_ASR_NOISE,
) -> NoisyText:
    """``text`` with simulated recognition errors, and ``spans`` (``(label, start, end, ...)``) re-mapped.

    A span whose characters were all dropped is removed. Numbers are rewritten in digits as a whole, never
    across a span boundary. Deterministic for a given ``rng`` state (or integer seed).
    """
    if not isinstance(rng, random.Random):
        rng = random.Random(rng)
    for s in spans:
        if len(s) < 3 or not (0 <= s[1] <= s[2] <= len(text)):
            raise ValueError(f"span {tuple(s)!r} is not (label, start, end, ...) inside a text of {len(text)} characters")
    write_digits = rng.random() < options.arabic_digits
    out: list[str] = []
    starts: dict[int, int] = {}  # original unit start -> output offset
    ends: dict[int, int] = {}  # original unit end -> output offset
    pos, n_edits = 0, 0
    alignment: list[tuple[int, int, int, int]] = []
    for a, b, digits in _units(text, spans):
        piece = text[a:b]
        scale = options.number_scale if digits is not None else 1.0
        rewritten = digits is not None and write_digits and digits != piece
        if rewritten:  # the recogniser wrote the whole number in digits; no further errors inside it
            piece, n_edits = digits, n_edits + 1
        chars = []
        for c in piece:
            if _is_hanzi(c) and not rewritten:
                r = rng.random()
                if r < options.drop * scale:
                    n_edits += 1
                    continue
                if r < (options.drop + options.substitute) * scale:
                    new = _substitute(c, rng, options.near_share)
                    n_edits += new != c
                    c = new
                chars.append(c)
                if rng.random() < options.insert * scale:
                    chars.append(rng.choice(FILLERS) if rng.random() < 0.5 else _substitute(c, rng, 1.0))
                    n_edits += 1
            else:
                chars.append(c)
        piece = "".join(chars)
        starts[a] = pos
        out.append(piece)
        pos += len(piece)
        ends[b] = pos
        alignment.append((a, b, starts[a], pos))
    new_spans = []
    for s in spans:
        start, end = int(s[1]), int(s[2])
        if start == end:
            continue
        ns, ne = starts[start], ends[end]
        if ne <= ns:
            continue  # every character of the span was dropped
        new = [s[0], ns, ne, *s[3:]]
        if len(new) >= 4:
            new[3] = "".join(out)[ns:ne]
        new_spans.append(tuple(new))
    return NoisyText("".join(out), tuple(new_spans), n_edits, tuple(alignment))
