"""The text side of emotion: angry or anxious (also sad, happy) wording in a transcript.

Two scorers with one output, probabilities over the taxonomy's emotions:

- :class:`LexiconTextSignal`: hand-written cue words of everyday Chinese (Mandarin plus common Cantonese
  forms), counted with a short negation check; no training, so it carries over to real text.
- :class:`NgramTextSignal`: multinomial naive Bayes over character 1-2 grams, trained on labelled transcripts.

:func:`combine` mixes them (log-linear). Which one the call-level fusion uses is decided on validation data.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from models.taxonomy import EMOTIONS

NEGATION_WINDOW = 2  # characters before a cue searched for a negation
NEGATIONS = ("不", "没", "别", "无", "未", "唔", "冇")
NEUTRAL_BIAS = 1.0  # logit of "neutral" when no cue fires (a cue's weight must beat it)

# Cue words per emotion with weights (1 = clear, 2 = strong). Everyday wording, not the synthetic lexicon's.
CUES: Mapping[str, Mapping[str, float]] = {
    "angry": {
        "气死": 2, "生气": 1.5, "愤怒": 2, "恼火": 2, "火大": 2, "受够": 2, "过分": 1.5, "太差": 1.5, "垃圾": 2,
        "投诉": 1, "曝光": 1.5, "骗子": 2, "骗人": 2, "坑人": 2, "无语": 1.5, "什么玩意": 2, "凭什么": 1.5,
        "搞什么": 1.5, "怎么回事": 1, "到底": 0.7, "必须": 0.7, "说法": 1, "领导": 0.7, "讨厌": 1.5, "恶心": 2,
        "混蛋": 2, "妈的": 2, "靠": 1, "滚": 1.5, "烦死": 2, "无耻": 2, "可恶": 2, "欺负": 1.5, "忍无可忍": 2,
        "岂有此理": 2, "有病": 1.5, "坑爹": 2, "破": 0.5, "差评": 1.5, "激死": 2, "嬲": 2, "搞咩": 1.5,
        "忍唔住": 1.5, "太离谱": 2, "离谱": 1.5, "什么态度": 2, "态度差": 2, "不像话": 2, "！！": 1,
    },
    "anxious": {
        "急": 1, "着急": 2, "急死": 2, "赶紧": 1, "快点": 1.5, "马上": 1, "尽快": 1, "求求": 2, "担心": 2,
        "害怕": 2, "怕": 1, "紧张": 2, "焦虑": 2, "慌": 2, "不安": 2, "恐怖": 1.5, "吓": 1.5, "怎么办": 1.5,
        "万一": 1, "来不及": 2, "赶时间": 2, "加急": 2, "快啲": 1.5, "好急": 2, "心慌": 2, "恐惧": 2,
        "可怕": 1.5, "吓人": 1.5, "吓死": 2, "提心吊胆": 2, "忐忑": 2, "等不了": 1.5,
    },
    "sad": {
        "难过": 2, "伤心": 2, "失望": 1.5, "唉": 1, "哭": 1.5, "泪": 1.5, "心痛": 2, "心酸": 2, "委屈": 2,
        "痛苦": 2, "孤独": 2, "寂寞": 2, "遗憾": 1.5, "可惜": 1, "无奈": 1.5, "郁闷": 1.5, "沮丧": 2, "悲": 1.5,
        "好惨": 2, "倒霉": 1.5, "没办法": 1, "算了": 1, "心累": 2, "绝望": 2, "想念": 1, "思念": 1, "舍不得": 1.5,
        "不知道怎么办": 1.5, "难受": 2, "桑心": 2, "呜呜": 2,
    },
    "happy": {
        "谢谢": 1, "感谢": 1.5, "开心": 2, "高兴": 2, "满意": 1.5, "太好了": 2, "棒": 1.5, "赞": 1.5, "喜欢": 1.5,
        "哈哈": 2, "好开心": 2, "幸福": 2, "快乐": 2, "表扬": 1.5, "给力": 1.5, "不错": 1, "很好": 1, "辛苦": 0.7,
        "耐心": 0.7, "点赞": 1.5, "美好": 1.5, "愉快": 2, "好评": 1.5, "多谢": 1, "唔该晒": 1, "嘻嘻": 2,
        "期待": 1, "爱": 1, "祝": 1, "生日快乐": 2, "恭喜": 2, "好吃": 1.5, "好看": 1, "可爱": 1.5,
    },
}  # fmt: skip


def _negated(text: str, start: int) -> bool:
    before = text[max(0, start - NEGATION_WINDOW) : start]
    return any(n in before for n in NEGATIONS)


class LexiconTextSignal:
    """Emotion probabilities from cue-word counts: logit(e) = sum of fired cue weights (neutral: a bias)."""

    def __init__(self, cues: Mapping[str, Mapping[str, float]] = CUES, labels: Sequence[str] = EMOTIONS,
                 neutral_bias: float = NEUTRAL_BIAS, scale: float = 1.5) -> None:
        self.labels = tuple(labels)
        self.cues = {e: dict(c) for e, c in cues.items() if e in self.labels}
        self.neutral_bias = neutral_bias
        self.scale = scale  # logit units per cue weight
        pattern = sorted({w for c in self.cues.values() for w in c}, key=len, reverse=True)
        self._re = re.compile("|".join(map(re.escape, pattern))) if pattern else None

    def cue_scores(self, text: str) -> dict[str, float]:
        """Summed weights of the (non-negated) cues of each emotion found in ``text``."""
        out = {e: 0.0 for e in self.labels}
        if not text or self._re is None:
            return out
        for m in self._re.finditer(text):
            if _negated(text, m.start()) and m.group() not in ("不像话",):
                continue
            for e, c in self.cues.items():
                if m.group() in c:
                    out[e] += c[m.group()]
        return out

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        for t in texts:
            s = self.cue_scores(t or "")
            logits = np.array([self.neutral_bias if e == "neutral" else self.scale * s[e] for e in self.labels])
            rows.append(np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum())
        return np.array(rows, dtype=np.float64).reshape(len(texts), len(self.labels))


class NgramTextSignal:
    """Multinomial naive Bayes over character 1..``n`` grams, with add-``alpha`` smoothing and a uniform prior
    (class balance); fitted with :meth:`fit`."""

    def __init__(self, labels: Sequence[str] = EMOTIONS, n: int = 2, alpha: float = 0.5, min_count: int = 2) -> None:
        self.labels = tuple(labels)
        self.n, self.alpha, self.min_count = n, alpha, min_count
        self.vocab: dict[str, int] = {}
        self.log_prob = np.zeros((len(self.labels), 0))

    def _grams(self, text: str) -> list[str]:
        t = re.sub(r"\s+", "", text or "")
        return [t[i : i + k] for k in range(1, self.n + 1) for i in range(len(t) - k + 1)]

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> "NgramTextSignal":
        counts = Counter(g for t in texts for g in set(self._grams(t)))
        self.vocab = {g: i for i, g in enumerate(sorted(g for g, c in counts.items() if c >= self.min_count))}
        table = np.full((len(self.labels), len(self.vocab)), self.alpha)
        index = {lab: i for i, lab in enumerate(self.labels)}
        for t, lab in zip(texts, labels):
            if lab not in index:
                continue
            for g in self._grams(t):
                j = self.vocab.get(g)
                if j is not None:
                    table[index[lab], j] += 1
        self.log_prob = np.log(table / table.sum(axis=1, keepdims=True))
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        for t in texts:
            ids = [j for g in self._grams(t) if (j := self.vocab.get(g)) is not None]
            z = self.log_prob[:, ids].sum(axis=1) if ids else np.zeros(len(self.labels))
            z = z / max(1.0, math.sqrt(len(ids)))  # tame NB over-confidence on long texts
            rows.append(np.exp(z - z.max()) / np.exp(z - z.max()).sum())
        return np.array(rows, dtype=np.float64).reshape(len(texts), len(self.labels))

    def to_dict(self) -> dict:
        return {"labels": list(self.labels), "n": self.n, "alpha": self.alpha, "min_count": self.min_count,
                "vocab": list(self.vocab), "log_prob": np.round(self.log_prob, 5).tolist()}

    @classmethod
    def from_dict(cls, d: Mapping) -> "NgramTextSignal":
        m = cls(d["labels"], int(d["n"]), float(d["alpha"]), int(d["min_count"]))
        m.vocab = {g: i for i, g in enumerate(d["vocab"])}
        m.log_prob = np.asarray(d["log_prob"], dtype=np.float64)
        return m


def combine(p_lexicon: np.ndarray, p_ngram: np.ndarray, weight: float = 0.5) -> np.ndarray:
    """Log-linear mix: ``(1 - weight) * log p_lexicon + weight * log p_ngram``, renormalised."""
    z = (1 - weight) * np.log(np.clip(p_lexicon, 1e-9, 1)) + weight * np.log(np.clip(p_ngram, 1e-9, 1))
    z = z - z.max(axis=1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)


# -- the Weibo check ----------------------------------------------------------------------------------
WEIBO_MAPPING = {"angry": "angry", "sad": "sad", "neutral": "neutral", "happy": "happy", "fear": "anxious", "surprise": None}


def read_weibo(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """(texts, taxonomy labels) of a JSON list of {content, label}: fear -> anxious, surprise dropped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: Weibo emotion file not found (evaluation.weibo_path); set it to null to skip")
    rows = json.loads(path.read_text(encoding="utf-8"))
    texts, labels = [], []
    for r in rows:
        lab = WEIBO_MAPPING.get(str(r.get("label", "")).lower(), None)
        if lab is None or not r.get("content"):
            continue
        texts.append(str(r["content"]))
        labels.append(lab)
    return texts, labels


