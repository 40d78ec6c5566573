"""Intent keyword evidence: hand-written words and phrases per intent, matched longest-first in a text.

The lists (``keywords.yaml`` next to this file) encode what each intent means, as a call-centre analyst
would write them, independent of any training phrasing. The char intent model reads two features from them:

- ``hit_vector``: per intent, the keyword hits in the text (log1p of the count; a phrase listed under
  several intents counts a share for each)
- ``char_tags``: per character, 1 + the index of the intent whose keyword covers it (0: none; a phrase of
  several intents tags the first of them)

A second, intent-free list (``register:`` in the YAML) separates asking from complaining:
``register_vector`` gives the question-cue hits (请问, 多久, 能不能 ...), the complaint-cue hits (negative
wording: 一直, 根本, 太过分 ...) and a flag "asks without complaining", which points to consultation and
order_inquiry whatever the topic words say (保修期多久 is a question, not a repair complaint).

Texts and keywords are compared in one form (NFKC, simplified, lower-case); punctuation is kept, so
offsets stay those of the original text.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from models.textnorm import to_simplified

DEFAULT_KEYWORDS_FILE = Path(__file__).with_name("keywords.yaml")
REGISTER_GROUPS = ("question", "complaint")  # the cue groups of ``register:`` in the keyword file
REGISTER_FEATURES = 3  # register_vector: log1p(question hits), log1p(complaint hits), asks-without-complaining


@lru_cache(maxsize=65536)
def _fold(text: str) -> str:
    """``text`` in the form keywords are matched in, one output character per input character."""
    chars = []
    for c in text:
        n = unicodedata.normalize("NFKC", c)
        chars.append(n if len(n) == 1 else c)
    joined = "".join(chars)
    simple = to_simplified(joined)
    if len(simple) != len(joined):  # a conversion changed the length: convert character by character
        simple = "".join(s if len(s := to_simplified(c)) == 1 else c for c in chars)
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in simple)


@dataclass(frozen=True)
class KeywordMatch:
    start: int  # first character of the match in the text
    end: int  # one past its last character
    keyword: str  # the keyword as listed (folded)
    intents: tuple[str, ...]  # the intents that list it


@dataclass(frozen=True)
class IntentKeywords:
    """Keywords per intent, with longest-match search."""

    keywords: Mapping[str, tuple[str, ...]]  # intent -> its keywords (folded)
    register: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # "question"/"complaint" -> cues (folded)

    @classmethod
    def from_mapping(
        cls,
        mapping: Mapping[str, Sequence[str]],
        source: str = "keywords",
        register: Mapping[str, Sequence[str]] | None = None,
    ) -> "IntentKeywords":
        """Keywords from ``{intent: [keyword, ...]}`` (blank entries dropped, order and duplicates removed);
        ``register``: the optional ``{"question": [...], "complaint": [...]}`` cue lists."""
        out = _folded_lists(mapping, source, "intent")
        reg = _folded_lists(register or {}, f"{source} (register:)", "register group")
        unknown = sorted(set(reg) - set(REGISTER_GROUPS))
        if unknown:
            raise ValueError(f"{source}: register groups {unknown} are not one of {', '.join(REGISTER_GROUPS)}")
        return cls(out, reg)

    @classmethod
    def load(cls, path: str | Path | None = None) -> "IntentKeywords":
        """The keywords of a YAML file ``intents: {intent: [keyword, ...]}`` (default: ``keywords.yaml``)."""
        import yaml

        p = Path(path) if path is not None else DEFAULT_KEYWORDS_FILE
        if not p.is_file():
            raise FileNotFoundError(f"intent keyword file {p} not found; pass a YAML file with 'intents: {{...}}'")
        doc = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        if not isinstance(doc, Mapping) or "intents" not in doc:
            raise ValueError(f"{p}: expected a top-level 'intents:' mapping intent -> list of keywords")
        return cls.from_mapping(doc["intents"], str(p), register=doc.get("register"))

    def to_mapping(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self.keywords.items()}

    def register_mapping(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self.register.items()}

    def check_intents(self, intents: Sequence[str], source: str = "keywords") -> None:
        """Raise if a listed intent is not one of ``intents`` (a typo would silently drop its evidence)."""
        unknown = sorted(set(self.keywords) - set(intents))
        if unknown:
            raise ValueError(f"{source} lists unknown intents {unknown}; the labels are {', '.join(intents)}")

    @property
    def _table(self) -> tuple[dict[str, tuple[str, ...]], int]:
        cached = self.__dict__.get("_cached_table")
        if cached is None:
            table: dict[str, list[str]] = {}
            for intent, words in self.keywords.items():
                for w in words:
                    table.setdefault(w, []).append(intent)
            longest = max((len(w) for w in table), default=0)
            cached = ({w: tuple(i) for w, i in table.items()}, longest)
            object.__setattr__(self, "_cached_table", cached)
        return cached

    def matches(self, text: str) -> list[KeywordMatch]:
        """Non-overlapping keyword matches, left to right, the longest keyword at each position."""
        table, longest = self._table
        t = _fold(text)
        out, i = [], 0
        while i < len(t):
            for n in range(min(longest, len(t) - i), 0, -1):
                hit = table.get(t[i : i + n])
                if hit is not None:
                    out.append(KeywordMatch(i, i + n, t[i : i + n], hit))
                    i += n
                    break
            else:
                i += 1
        return out

    def hit_vector(self, text: str, intents: Sequence[str]) -> np.ndarray:
        """Per intent of ``intents``: log1p of its keyword hits in ``text`` (shared phrases split evenly)."""
        index = {name: k for k, name in enumerate(intents)}
        counts = np.zeros(len(intents), dtype=np.float32)
        for m in self.matches(text):
            for name in m.intents:
                if name in index:
                    counts[index[name]] += 1.0 / len(m.intents)
        return np.log1p(counts).astype(np.float32)

    def char_tags(self, text: str, intents: Sequence[str]) -> list[int]:
        """Per character of ``text``: 1 + index in ``intents`` of the intent its keyword belongs to, else 0."""
        index = {name: k for k, name in enumerate(intents)}
        tags = [0] * len(text)
        for m in self.matches(text):
            ids = [index[n] for n in m.intents if n in index]
            if ids:
                tags[m.start : m.end] = [1 + ids[0]] * (m.end - m.start)
        return tags

    def register_counts(self, text: str) -> dict[str, int]:
        """Per register group, its cues in ``text`` (non-overlapping, longest first over both groups, so
        怎么回事 counts as a complaint cue and not as the question cue 怎么)."""
        cached = self.__dict__.get("_cached_register")
        if cached is None:
            table = {w: g for g in REGISTER_GROUPS for w in self.register.get(g, ())}
            cached = (table, max((len(w) for w in table), default=0))
            object.__setattr__(self, "_cached_register", cached)
        table, longest = cached
        counts = {g: 0 for g in REGISTER_GROUPS}
        t, i = _fold(text), 0
        while i < len(t):
            for n in range(min(longest, len(t) - i), 0, -1):
                g = table.get(t[i : i + n])
                if g is not None:
                    counts[g] += 1
                    i += n
                    break
            else:
                i += 1
        return counts

    def register_vector(self, text: str) -> np.ndarray:
        """``REGISTER_FEATURES`` values: log1p(question cues), log1p(complaint cues), 1 if the text asks
        (a question cue) without complaining (no complaint cue), else 0."""
        c = self.register_counts(text)
        q, k = c["question"], c["complaint"]
        return np.array([np.log1p(q), np.log1p(k), float(q > 0 and k == 0)], dtype=np.float32)


def _folded_lists(mapping: Mapping[str, Sequence[str]], source: str, what: str) -> dict[str, tuple[str, ...]]:
    """``{name: [phrase, ...]}`` folded, blanks and duplicates dropped, sorted."""
    if not isinstance(mapping, Mapping):
        raise ValueError(f"{source}: expected a mapping {what} -> list of phrases, got {type(mapping).__name__}")
    out: dict[str, tuple[str, ...]] = {}
    for name, words in mapping.items():
        if isinstance(words, str) or not isinstance(words, Sequence):
            raise ValueError(f"{source}: the phrases of {what} {name!r} must be a list of strings")
        out[str(name)] = tuple(sorted({_fold(str(w).strip()) for w in words if w is not None and str(w).strip()}))
    return out
