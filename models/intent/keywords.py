"""Intent keyword evidence: hand-written words and phrases per intent, matched longest-first in a text.

The lists (``keywords.yaml`` next to this file) encode what each intent means, as a call-centre analyst
would write them, independent of any training phrasing. The char intent model reads two features from them:

- ``hit_vector``: per intent, the keyword hits in the text (log1p of the count; a phrase listed under
  several intents counts a share for each)
- ``char_tags``: per character, 1 + the index of the intent whose keyword covers it (0: none; a phrase of
  several intents tags the first of them)

Texts and keywords are compared in one form (NFKC, simplified, lower-case); punctuation is kept, so
offsets stay those of the original text.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from models.textnorm import to_simplified

DEFAULT_KEYWORDS_FILE = Path(__file__).with_name("keywords.yaml")


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

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Sequence[str]], source: str = "keywords") -> "IntentKeywords":
        """Keywords from ``{intent: [keyword, ...]}`` (blank entries dropped, order and duplicates removed)."""
        if not isinstance(mapping, Mapping):
            raise ValueError(f"{source}: expected a mapping intent -> list of keywords, got {type(mapping).__name__}")
        out: dict[str, tuple[str, ...]] = {}
        for intent, words in mapping.items():
            if isinstance(words, str) or not isinstance(words, Sequence):
                raise ValueError(f"{source}: the keywords of intent {intent!r} must be a list of strings")
            folded = {_fold(str(w).strip()) for w in words if w is not None and str(w).strip()}
            out[str(intent)] = tuple(sorted(folded))
        return cls(out)

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
        return cls.from_mapping(doc["intents"], str(p))

    def to_mapping(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self.keywords.items()}

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

