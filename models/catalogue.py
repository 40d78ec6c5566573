"""The company's product catalogue: canonical names, brands, categories and aliases for the ``product`` slot.

Products are open vocabulary: the slot holds the product as the caller named it. A catalogue the company provides
(CSV or YAML; :data:`SAMPLE_CATALOGUE` ships one for the default intents' products) normalises a span only on an
unambiguous match:

1. the span is an entry's canonical name or one of its aliases (exact, after folding traditional to simplified and
   case): that entry;
2. else a fuzzy match by sound (toneless pinyin with near-initial/final merges, as ``models.intent.understand``
   compares products) that keeps the brand: a branded entry only when the span starts with that brand (or a
   homophone of it: 美得 for 美的), an unbranded entry only when the span shows no brand; the best entry must
   reach :data:`FUZZY_MIN_SIMILARITY` and be the only one that does;
3. else no match: the span stays as said, and :meth:`Catalogue.describe` still reports what it can (a known brand
   at its start, or the words before a known product noun as an unlisted brand; the category of that noun).

A brand is never replaced by another: 方太热水器 stays 方太热水器 though 美的热水器 is listed, 老板油烟机 keeps 老板.

File formats. YAML: ``products:`` a list of mappings with ``name``, ``brand``, ``category``, ``aliases`` (a list)
and an optional ``id``. CSV: a header with ``name,brand,category,aliases`` (and optionally ``id``), aliases
separated by ``|``; an empty brand is a generic product. ``HOTLINE_CATALOGUE`` points :func:`default_catalogue`
at a company file.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Mapping, Sequence

SAMPLE_CATALOGUE = Path(__file__).with_name("catalogue_products.yaml")
DEV_LIST = Path(__file__).with_name("catalogue_dev.yaml")  # the dev list FUZZY_MIN_SIMILARITY was chosen on
CATALOGUE_ENV = "HOTLINE_CATALOGUE"
# Lowest sound similarity (1 - syllable edits / longer length) of a fuzzy match, chosen on the dev list
# (DEV_LIST: hand-written near misses and other products, plus catalogue names through simulated ASR errors;
# choose_threshold picks the most conservative value of the best accuracy). Never tuned on the held-out set.
FUZZY_MIN_SIMILARITY = 0.8
THRESHOLD_GRID = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))  # 0.50 .. 0.95
MIN_UNLISTED_BRAND, MAX_UNLISTED_BRAND = 2, 4  # characters before a known product noun that may be an unlisted brand
# Words before a product noun that are not a brand (我的热水器, 新买的空调 ...).
NOT_BRAND = ("我的", "我", "你们的", "你们", "这个", "那个", "这台", "那台", "一台", "一部", "个", "部", "台", "新",
             "旧", "新买的", "买的", "家里的", "屋企", "嘅", "的", "二手", "这", "那", "呢个", "嗰个", "一个", "两个")


@dataclass(frozen=True)
class Product:
    id: str  # stable id (the name when the file gives none)
    name: str  # canonical name, what a ticket shows
    brand: str | None  # None: a generic product (宽带, 机票, 油烟机)
    category: str
    aliases: tuple[str, ...] = ()

    @property
    def noun(self) -> str:
        """The product noun: the name without its brand (美的热水器 -> 热水器)."""
        if self.brand and self.name.startswith(self.brand) and len(self.name) > len(self.brand):
            return self.name[len(self.brand) :]
        return self.name


@dataclass(frozen=True)
class Match:
    product: Product
    how: str  # "exact" | "alias" | "fuzzy"
    similarity: float  # 1.0 for exact and alias matches


@dataclass(frozen=True)
class ProductDetails:
    """What the catalogue says about a product span (``Understanding.slot_details["product"]``)."""

    value: str  # the slot value: the canonical name on a match, else the span as said
    said: str  # the span as said
    brand: str | None  # the brand: the entry's, a listed brand at the span's start, or an unlisted one (see below)
    brand_listed: bool  # the brand is one the catalogue lists (False: words before a known noun, e.g. 方太)
    category: str | None
    catalogue_id: str | None  # the matched entry, None when the span matched none
    match: str | None  # "exact" | "alias" | "fuzzy" | None

    def to_dict(self) -> dict:
        return {"value": self.value, "said": self.said, "brand": self.brand, "brand_listed": self.brand_listed,
                "category": self.category, "catalogue_id": self.catalogue_id, "match": self.match}


class CatalogueError(ValueError):
    """A catalogue file that cannot be read: wrong format, missing keys, duplicate ids or names."""


def _fold(text: str) -> str:
    from models.textnorm import to_simplified

    return to_simplified(text.strip()).lower()


def _sound(text: str) -> tuple[str, ...]:
    from models.intent.understand import _sound as sound

    return sound(text)


def _distance(a: Sequence[str], b: Sequence[str]) -> int:
    from models.intent.understand import _edit_distance

    return _edit_distance(a, b)


@dataclass
class Catalogue:
    products: tuple[Product, ...]
    source: str = "<memory>"
    _by_key: dict[str, tuple[Product, str]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        ids, names = set(), {}
        for p in self.products:
            if not p.name or not p.category:
                raise CatalogueError(f"{self.source}: every product needs a name and a category, got {p}")
            if p.id in ids:
                raise CatalogueError(f"{self.source}: duplicate product id {p.id!r}")
            ids.add(p.id)
            for key, how in ((p.name, "exact"), *((a, "alias") for a in p.aliases)):
                k = _fold(key)
                other = self._by_key.get(k)
                if other is not None and other[0].id != p.id:
                    raise CatalogueError(f"{self.source}: {key!r} names both {other[0].id!r} and {p.id!r}")
                self._by_key.setdefault(k, (p, how))
            names[p.name] = p

    # -- loading ---------------------------------------------------------------------------------
    @classmethod
    def from_records(cls, rows: Iterable[Mapping], source: str = "<memory>") -> "Catalogue":
        out = []
        for i, r in enumerate(rows, 1):
            if not isinstance(r, Mapping) or not r.get("name"):
                raise CatalogueError(f"{source}: product {i} has no name: {r!r}")
            aliases = r.get("aliases") or ()
            if isinstance(aliases, str):
                aliases = [a for a in aliases.split("|")]
            brand = (r.get("brand") or None) and str(r["brand"]).strip() or None
            out.append(Product(id=str(r.get("id") or r["name"]).strip(), name=str(r["name"]).strip(), brand=brand,
                               category=str(r.get("category") or "").strip(),
                               aliases=tuple(a.strip() for a in aliases if str(a).strip())))
        return cls(tuple(out), source)

    @classmethod
    def load(cls, path: str | Path) -> "Catalogue":
        """A catalogue from a ``.yaml``/``.yml`` or ``.csv`` file (see the module docstring for the keys)."""
        path = Path(path)
        if not path.is_file():
            raise CatalogueError(f"catalogue file {path} not found (set {CATALOGUE_ENV} to a CSV or YAML file)")
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            rows = raw.get("products") if isinstance(raw, Mapping) else raw
            if not isinstance(rows, list):
                raise CatalogueError(f"{path}: expected a 'products:' list")
            return cls.from_records(rows, str(path))
        if path.suffix.lower() == ".csv":
            with path.open(encoding="utf-8-sig", newline="") as f:
                reader = csv.DictReader(f)
                missing = {"name", "brand", "category", "aliases"} - set(reader.fieldnames or ())
                if missing:
                    raise CatalogueError(f"{path}: CSV header lacks {sorted(missing)} (needs name,brand,category,aliases)")
                return cls.from_records(list(reader), str(path))
        raise CatalogueError(f"{path}: a catalogue is a .yaml, .yml or .csv file")

    # -- queries ---------------------------------------------------------------------------------
    @property
    def brands(self) -> tuple[str, ...]:
        return tuple(sorted({p.brand for p in self.products if p.brand}, key=lambda b: (-len(b), b)))

    def nouns(self) -> dict[str, str]:
        """Product noun -> category (热水器 -> small), longest first: from every entry's name minus its brand."""
        out: dict[str, str] = {}
        for p in self.products:
            out.setdefault(p.noun, p.category)
        return dict(sorted(out.items(), key=lambda kv: -len(kv[0])))

    def listed_brand(self, span: str) -> str | None:
        """The listed brand the span starts with, by sound (a misheard 美得 is 美的), else None."""
        s = _fold(span)
        for b in self.brands:
            if len(s) > len(b) and (s.startswith(b) or _sound(s[: len(b)]) == _sound(b)):
                return b
        return None

    def _noun_of(self, span: str) -> tuple[str, str] | None:
        s = _fold(span)
        for noun, cat in self.nouns().items():
            if s.endswith(noun):
                return noun, cat
        return None

    def brand_of(self, span: str) -> tuple[str | None, bool]:
        """(brand, listed): a listed brand at the start; else the words before a known product noun, when the
        category has branded products and they are not a pronoun or adjective (方太热水器 -> 方太); else None."""
        listed = self.listed_brand(span)
        if listed:
            return listed, True
        found = self._noun_of(span)
        if found is None:
            return None, False
        noun, cat = found
        prefix = _fold(span)[: -len(noun)]
        branded = any(p.brand for p in self.products if p.category == cat)
        if branded and MIN_UNLISTED_BRAND <= len(prefix) <= MAX_UNLISTED_BRAND and prefix not in NOT_BRAND:
            return span.strip()[: len(prefix)], False
        return None, False

    def match(self, span: str, min_similarity: float | None = None) -> Match | None:
        """The entry the span names, unambiguously, or None (module docstring: exact, alias, brand-keeping fuzzy)."""
        s = _fold(span)
        if not s:
            return None
        hit = self._by_key.get(s)
        if hit is not None:
            return Match(hit[0], hit[1], 1.0)
        threshold = FUZZY_MIN_SIMILARITY if min_similarity is None else min_similarity
        brand, listed = self.brand_of(span)
        heard = _sound(s)
        best: dict[str, tuple[float, Product]] = {}
        for key, (p, _how) in self._by_key.items():
            d = _distance(heard, _sound(key))
            homophone = d == 0 and not p.brand and not listed  # 台虱电脑 is 台式电脑 misheard, not a brand 台虱
            if p.brand != brand and not homophone and not (p.brand and brand and _sound(p.brand) == _sound(brand)):
                continue  # a brand is never added, dropped or replaced
            if not set(s) & set(key):
                continue  # shares no character: a different word that only sounds near
            sim = 1.0 - d / max(len(heard), len(key))
            if sim >= threshold and sim > best.get(p.id, (-1.0, p))[0]:
                best[p.id] = (sim, p)
        if len(best) != 1:
            return None  # nothing close, or two entries above the threshold: ambiguous
        sim, p = next(iter(best.values()))
        return Match(p, "fuzzy", sim)

    def describe(self, span: str) -> ProductDetails:
        """The slot value and what is known of the product the caller named."""
        said = span.strip()
        m = self.match(said)
        if m is not None:
            return ProductDetails(m.product.name, said, m.product.brand, m.product.brand is not None,
                                  m.product.category, m.product.id, m.how)
        brand, listed = self.brand_of(said)
        found = self._noun_of(said)
        return ProductDetails(said, said, brand, listed, found[1] if found else None, None, None)


# -- the default catalogue ---------------------------------------------------------------------------
@lru_cache(maxsize=4)
def _load_cached(path: str, mtime: float) -> Catalogue:
    return Catalogue.load(path)


def default_catalogue() -> Catalogue:
    """The catalogue at ``$HOTLINE_CATALOGUE``, else the shipped sample (re-read when the file changes)."""
    path = Path(os.environ.get(CATALOGUE_ENV) or SAMPLE_CATALOGUE)
    if not path.is_file():
        raise CatalogueError(f"{CATALOGUE_ENV}={path}: file not found")
    return _load_cached(str(path), path.stat().st_mtime)


# -- choosing the fuzzy threshold on a dev list -----------------------------------------------------
def dev_pairs(catalogue: Catalogue | None = None, noised: int = 3, seed: int = 0) -> list[tuple[str, str | None]]:
    """(span, expected canonical name or None): the hand-written pairs of :data:`DEV_LIST`, plus every catalogue
    name through simulated recognition errors (``data.asr_noise``, ``noised`` draws each, substitutions only)
    expected to come back to itself. No held-out product is in it (tests/test_catalogue.py checks)."""
    import random

    import yaml

    from data.asr_noise import AsrNoiseOptions, add_asr_noise

    cat = catalogue or Catalogue.load(SAMPLE_CATALOGUE)
    raw = yaml.safe_load(DEV_LIST.read_text(encoding="utf-8"))
    pairs = [(str(a), (str(b) if b else None)) for a, b in raw["pairs"]]
    options = AsrNoiseOptions(substitute=0.25, drop=0.0, insert=0.0, arabic_digits=0.0)
    rng = random.Random(f"catalogue-dev:{seed}")
    for p in cat.products:
        for _ in range(noised):
            heard = add_asr_noise(p.name, [], rng, options).text
            if heard != p.name:
                pairs.append((heard, p.name))
    return pairs


def choose_threshold(pairs: Sequence[tuple[str, str | None]], catalogue: Catalogue,
                     grid: Sequence[float] = THRESHOLD_GRID) -> tuple[float, dict[float, float]]:
    """The grid value with the best accuracy on ``pairs`` (ties: the highest, the most conservative), and every
    value's accuracy. A pair is right when ``match`` gives the expected name (or None when None is expected)."""
    acc = {}
    for t in grid:
        right = 0
        for span, want in pairs:
            m = catalogue.match(span, min_similarity=t)
            right += (m.product.name if m else None) == want
        acc[t] = right / len(pairs)
    best = max(acc.values())
    return max(t for t, a in acc.items() if a == best), acc


# -- hotwords for the recogniser ---------------------------------------------------------------------
# The catalogue's brands and product names go into the Whisper prompt (after <|startofprev|>, behind the dialect
# prompt; models/asr/dialects.py dialect_prompt), so the decoder leans towards the company's own words. The prompt
# may hold MAX_PROMPT_TOKENS = 223 tokens at most and the recogniser keeps only its END when it is longer (the
# dialect name would be cut first), so the hotword text has a hard budget below that.
HOTWORDS_ENV = "HOTLINE_HOTWORDS"  # "on" (or 1, true, yes): hotwords in the recogniser's prompt; default off: on
# audio the recogniser follows badly the decoder copies prompt words into the transcript (scripts/bench_hotwords.py:
# brands in 17-33% of espeak sentences that named none; a fresh-clone test run heard "我要找苏泊尔 华为 苏泊尔 ..."
# for "我要找你们领导", which lost the manager-request alert), and real telephone speech is such audio for whisper-base
# Budget of the hotword text in UTF-8 bytes, separators included. Whisper's tokenizer is a byte-level BPE, so a
# token covers at least one byte: 180 bytes are at most 180 tokens, and with the dialect prompt (at most 8 tokens,
# plus its 3-token colon and <|startofprev|>) the prompt stays under 195 of its 223 tokens whatever the words are.
# Measured on the sample catalogue: about 0.55 Whisper tokens per byte, so the 180 bytes are about 100 tokens.
HOTWORD_BUDGET_BYTES = 180
MAX_CUSTOMER_HOTWORDS = 3  # products of the caller's earlier tickets (newest first) put before the catalogue's
_OFF = ("0", "off", "false", "no")
_ON = ("1", "on", "true", "yes")


def hotword_bytes(words: Sequence[str]) -> int:
    """UTF-8 bytes of ``words`` as the prompt writes them (joined by the recogniser's hotword separator)."""
    from models.asr.dialects import HOTWORD_SEPARATOR

    return len(HOTWORD_SEPARATOR.join(words).encode("utf-8"))


def _fit(candidates: Iterable[str], budget_bytes: int, kept: Sequence[str] = (),
         limit: int | None = None) -> list[str]:
    """``kept`` plus the candidates, in order, that fit the budget: stripped, without repeats (after folding
    traditional to simplified and case) and without a word already inside a kept one (美的 after 美的空调)."""
    out = list(kept)
    folded = [_fold(w) for w in out]
    added = 0
    for word in candidates:
        if limit is not None and added >= limit:
            break
        w = str(word or "").strip()
        f = _fold(w)
        if not f or any(f in k for k in folded):
            continue
        if hotword_bytes([*out, w]) > budget_bytes:
            continue  # too long for what is left; a shorter word further down may still fit
        out.append(w)
        folded.append(f)
        added += 1
    return out


def catalogue_hotwords(catalogue: Catalogue, budget_bytes: int = HOTWORD_BUDGET_BYTES) -> tuple[str, ...]:
    """The catalogue's hotwords, most useful first, within ``budget_bytes`` (UTF-8 bytes of the prompt text):
    the brands (proper names a general recogniser knows least), those with more products first, ties in catalogue
    order; then the branded products' names, then the generic ones, in catalogue order. Deterministic: the same
    catalogue and budget give the same list. Aliases are left out (they compete with the names for the budget)."""
    counts: dict[str, int] = {}
    first: dict[str, int] = {}
    for i, p in enumerate(catalogue.products):
        if p.brand:
            counts[p.brand] = counts.get(p.brand, 0) + 1
            first.setdefault(p.brand, i)
    brands = sorted(counts, key=lambda b: (-counts[b], first[b]))
    branded = [p.name for p in catalogue.products if p.brand]
    generic = [p.name for p in catalogue.products if not p.brand]
    return tuple(_fit([*brands, *branded, *generic], budget_bytes))


def call_hotwords(base: Sequence[str], customer_products: Sequence[str] = (),
                  budget_bytes: int = HOTWORD_BUDGET_BYTES,
                  max_customer: int = MAX_CUSTOMER_HOTWORDS) -> tuple[str, ...]:
    """One call's hotwords: the caller's own products first (at most ``max_customer``, in the order given:
    newest first), then ``base`` (:func:`catalogue_hotwords`) as far as the budget allows."""
    mine = _fit(customer_products, budget_bytes, limit=max_customer)
    return tuple(_fit(base, budget_bytes, kept=mine))


def hotwords_enabled() -> bool:
    """``$HOTLINE_HOTWORDS``: off unless it says on (a value that is neither is an error naming the variable)."""
    raw = (os.environ.get(HOTWORDS_ENV) or "").strip().lower()
    if raw in _ON:
        return True
    if not raw or raw in _OFF:
        return False
    raise CatalogueError(f"{HOTWORDS_ENV}={raw!r}: use on or off")


def default_hotwords() -> tuple[str, ...] | None:
    """The hotwords of :func:`default_catalogue` (``$HOTLINE_CATALOGUE`` or the shipped sample, the catalogue the
    product slot is normalised with), or None unless ``$HOTLINE_HOTWORDS`` is on."""
    if not hotwords_enabled():
        return None
    return catalogue_hotwords(default_catalogue())
