"""The compact default intent model: characters -> embeddings -> CNN -> BiGRU -> intent + BIO slot tags.

Trained from scratch on the synthetic corpus in minutes on a CPU. One network does both jobs: the
intent head reads masked mean+max pooled BiGRU states, the tagger reads every character's state.
The vocabulary comes from the training text, plus ``<pad>``, ``<unk>`` and the characters numbers are
written with (Arabic digits, Chinese numerals, units), which are always in it.

Saved directory::

    config.json          {"backend": "char", "labels": {...}, "model": {...}, "temperature": T, ...}
    vocab.json           the characters, id = index
    weights.safetensors  the network's state dict
    keywords.json        with ``keywords: true``: the intent keyword lists the model was trained with

Keyword evidence (``keywords: true``, :mod:`models.intent.keywords`): hand-written keywords per intent give
a per-intent hit vector and a per-character keyword-intent tag. The tag embedding joins the character
embedding, the hit vector joins the pooled intent features, and a third expert reads the hits alone:
``logit_k = a * hits_k + (W hits)_k + b_k`` with ``a`` shared by all intents, so keywords that never
occurred in training still count.

Register cues (``register_cues: true``, needs ``keywords: true``): the keyword file's intent-free question and
complaint cue lists give ``REGISTER_FEATURES`` values per text (question hits, complaint hits, "asks without
complaining"). They join the pooled intent features and the keyword expert's ``W`` input, so the model can
learn that a question without negative wording is a consultation or an enquiry whatever its topic words.
"""

from __future__ import annotations

import json
import string
import zlib
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from models.intent.keywords import REGISTER_FEATURES, IntentKeywords
from models.intent.understand import CONFIG_FILE, Example, LabelMaps, ScoredIntentModel, read_model_config

BACKEND = "char"
VOCAB_FILE = "vocab.json"
WEIGHTS_FILE = "weights.safetensors"
KEYWORDS_FILE = "keywords.json"
PAD, UNK = "<pad>", "<unk>"  # ids 0 and 1
IGNORE_INDEX = -100  # tag label of padding and of examples without spans
PREDICT_BATCH = 64  # texts per forward pass in ``predict``
# Characters numbers, amounts and model names are written with: always in the vocabulary.
ALWAYS_IN_VOCAB = string.digits + string.ascii_letters + ".-+#" + "零〇一二三四五六七八九十百千万亿幺两点块元毛角分"


@dataclass(frozen=True)
class CharModelConfig:
    embed_dim: int = 128  # character embedding size
    conv_channels: int = 128  # channels of the 1-D convolution over characters (0: no convolution)
    conv_kernel: int = 3  # characters the convolution sees at once
    hidden: int = 128  # GRU hidden size per direction
    layers: int = 1  # stacked BiGRU layers
    dropout: float = 0.2  # dropout on embeddings and GRU outputs
    pool_conv: bool = True  # the intent head also reads the max-pooled convolution (n-gram keyword detectors)
    ngram_buckets: int = 0  # > 0: a second intent expert, a bag of hashed character 2- and 3-grams (fastText-like)
    ngram_dim: int = 64  # size of the n-gram embeddings
    max_chars: int = 256  # longer texts are cut (the tail gets no slot tags)
    slot_loss_weight: float = 1.0  # weight of the tagging loss next to the intent loss
    unk_dropout: float = 0.02  # training only: share of characters replaced by <unk> (robust to unseen chars)
    keywords: bool = False  # intent keyword evidence (models/intent/keywords.yaml); the char config turns it on
    keyword_dim: int = 16  # size of the per-character keyword-intent tag embedding (0: no tag embedding)
    keyword_scale: float = 1.0  # initial shared weight ``a`` of the keyword expert's hits
    nonkeyword_unk_dropout: float = 0.0  # training only: extra <unk> share on characters outside keywords and slots
    label_smoothing: float = 0.0  # training only: label smoothing of the GRU and n-gram experts (not the keyword one)
    expert_weights: tuple[float, ...] = (1.0, 1.0, 1.0)  # weights of the experts' log-probs (GRU, n-gram, keyword)
    register_cues: bool = False  # question-vs-complaint cue features (keywords.yaml register:); needs keywords


def normalize_char(c: str) -> str:
    """One character in the form the vocabulary stores (full-width -> half-width); always one character."""
    n = unicodedata.normalize("NFKC", c)
    return n if len(n) == 1 else c


@dataclass(frozen=True)
class CharVocab:
    chars: tuple[str, ...]  # id -> character; ids 0 and 1 are <pad> and <unk>

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 1) -> "CharVocab":
        counts = Counter(normalize_char(c) for t in texts for c in t)
        seen = sorted(c for c, n in counts.items() if n >= min_count and c not in ALWAYS_IN_VOCAB)
        return cls((PAD, UNK, *ALWAYS_IN_VOCAB, *seen))

    def __len__(self) -> int:
        return len(self.chars)

    @property
    def index(self) -> dict[str, int]:
        idx = self.__dict__.get("_index")
        if idx is None:
            idx = {c: i for i, c in enumerate(self.chars)}
            object.__setattr__(self, "_index", idx)
        return idx

    def encode(self, text: str) -> list[int]:
        idx = self.index
        return [idx.get(normalize_char(c), 1) for c in text]


def hashed_ngrams(text: str, buckets: int) -> list[int]:
    """Bucket ids of the character 2- and 3-grams of ``text`` (crc32, stable across runs); [0] for tiny texts."""
    t = "".join(normalize_char(c) for c in text)
    grams = [t[i : i + n] for n in (2, 3) for i in range(len(t) - n + 1)]
    return [zlib.crc32(g.encode("utf-8")) % buckets for g in grams] or [0]


class CharIntentNet(nn.Module):
    """Joint intent classifier and BIO tagger over characters."""

    def __init__(self, vocab_size: int, n_intents: int, n_tags: int, cfg: CharModelConfig):
        super().__init__()
        if cfg.register_cues and not cfg.keywords:
            raise ValueError("model config register_cues: true needs keywords: true (the cues live in the keyword file)")
        self.cfg = cfg
        self.n_intents = n_intents
        self.n_register = REGISTER_FEATURES if cfg.register_cues else 0  # register features per text
        self.embed = nn.Embedding(vocab_size, cfg.embed_dim, padding_idx=0)
        self.kw_tags = None
        emb = cfg.embed_dim
        if cfg.keywords and cfg.keyword_dim > 0:  # tag 0: no keyword, 1 + k: a keyword of intent k
            self.kw_tags = nn.Embedding(n_intents + 1, cfg.keyword_dim, padding_idx=0)
            emb += cfg.keyword_dim
        width = emb
        self.conv = None
        if cfg.conv_channels > 0:
            self.conv = nn.Conv1d(emb, cfg.conv_channels, cfg.conv_kernel, padding=cfg.conv_kernel // 2)
            width = emb + cfg.conv_channels
        self.gru = nn.GRU(
            width, cfg.hidden, num_layers=cfg.layers, batch_first=True, bidirectional=True,
            dropout=cfg.dropout if cfg.layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(cfg.dropout)
        states = 2 * cfg.hidden
        pooled = 2 * states + (cfg.conv_channels if (cfg.pool_conv and self.conv is not None) else 0)
        pooled += (n_intents + self.n_register) if cfg.keywords else 0
        self.intent_head = nn.Sequential(
            nn.Linear(pooled, states), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(states, n_intents)
        )
        self.tag_head = nn.Linear(states, n_tags)
        self.ngrams = None
        if cfg.ngram_buckets > 0:
            self.ngrams = nn.EmbeddingBag(cfg.ngram_buckets, cfg.ngram_dim, mode="mean")
            self.ngram_head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(cfg.ngram_dim, n_intents))
        if cfg.keywords:  # the keyword expert: a * hits + W hits + b, W starts at zero
            self.kw_scale = nn.Parameter(torch.tensor(float(cfg.keyword_scale)))
            self.kw_mix = nn.Linear(n_intents + self.n_register, n_intents)
            nn.init.zeros_(self.kw_mix.weight)
            nn.init.zeros_(self.kw_mix.bias)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        intent_labels: torch.Tensor | None = None,
        tag_labels: torch.Tensor | None = None,
        ngram_ids: torch.Tensor | None = None,
        ngram_offsets: torch.Tensor | None = None,
        keyword_hits: torch.Tensor | None = None,
        keyword_tags: torch.Tensor | None = None,
        register: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Logits for ``input_ids`` (batch x chars); with labels also ``loss`` (intent CE + weighted tag CE).

        ``ngram_ids``/``ngram_offsets``: the hashed n-grams of each text, flat, as ``nn.EmbeddingBag`` takes them.
        ``keyword_hits`` (batch x intents) and ``keyword_tags`` (batch x chars): the keyword evidence
        (:meth:`CharIntentModel.collate` makes them; zeros when left out of a keyword model); ``register``
        (batch x ``REGISTER_FEATURES``): the question/complaint cue features of a ``register_cues`` model."""
        mask = attention_mask.bool()
        lengths = mask.sum(1).clamp(min=1)
        x = self.embed(input_ids)
        if self.cfg.keywords:
            if keyword_hits is None:
                keyword_hits = x.new_zeros(input_ids.shape[0], self.n_intents)
            if self.n_register and register is None:
                register = x.new_zeros(input_ids.shape[0], self.n_register)
            if self.kw_tags is not None:
                tags = keyword_tags if keyword_tags is not None else torch.zeros_like(input_ids)
                x = torch.cat([x, self.kw_tags(tags)], dim=-1)
        x = self.drop(x)
        pools = []
        if self.conv is not None:
            c = F.gelu(self.conv(x.transpose(1, 2))).transpose(1, 2)
            x = torch.cat([x, c], dim=-1)
            if self.cfg.pool_conv:
                pools.append(self.drop(c.masked_fill(~mask.unsqueeze(-1), torch.finfo(c.dtype).min).max(1).values))
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        h, _ = self.gru(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=input_ids.shape[1])
        h = self.drop(h)
        m = mask.unsqueeze(-1).to(h.dtype)
        mean = (h * m).sum(1) / lengths.unsqueeze(-1).to(h.dtype)
        mx = h.masked_fill(~mask.unsqueeze(-1), torch.finfo(h.dtype).min).max(1).values
        if self.cfg.keywords:
            evidence = keyword_hits.to(h.dtype)
            if self.n_register:
                evidence = torch.cat([evidence, register.to(h.dtype)], dim=-1)
            pools.append(evidence)
        experts = [self.intent_head(torch.cat([mean, mx, *pools], dim=-1))]
        if self.ngrams is not None and ngram_ids is not None:
            experts.append(self.ngram_head(self.ngrams(ngram_ids, ngram_offsets)))
        if self.cfg.keywords:
            hits = keyword_hits.to(h.dtype)
            experts.append(self.kw_scale * hits + self.kw_mix(evidence))
        # a weighted product of experts: each expert learns on its own loss, their log-probabilities add up
        log_probs = [F.log_softmax(e, dim=-1) for e in experts]
        stacked = torch.stack(log_probs, dim=1)  # batch x experts x intents
        weights = self.expert_weights(len(log_probs), stacked)
        out = {
            "intent_logits": (stacked * weights[None, :, None]).sum(1),
            "expert_log_probs": stacked,
            "tag_logits": self.tag_head(h),
        }
        if intent_labels is not None:
            smooth = [self.cfg.label_smoothing if k < len(log_probs) - int(self.cfg.keywords) else 0.0
                      for k in range(len(log_probs))]
            loss = sum(_smoothed_nll(lp, intent_labels, eps) for lp, eps in zip(log_probs, smooth))
            if tag_labels is not None and (tag_labels != IGNORE_INDEX).any():
                tag_loss = F.cross_entropy(
                    out["tag_logits"].flatten(0, 1), tag_labels.flatten(), ignore_index=IGNORE_INDEX
                )
                loss = loss + self.cfg.slot_loss_weight * tag_loss
            out["loss"] = loss
        return out


    def expert_weights(self, n: int, like: torch.Tensor) -> torch.Tensor:
        """The configured weights of the ``n`` experts present (GRU, n-gram if any, keyword if any)."""
        w = list(self.cfg.expert_weights)
        names = ["gru", *(["ngram"] if self.ngrams is not None else []), *(["keyword"] if self.cfg.keywords else [])]
        full = {"gru": w[0] if w else 1.0, "ngram": w[1] if len(w) > 1 else 1.0, "keyword": w[2] if len(w) > 2 else 1.0}
        return like.new_tensor([full[k] for k in names[:n]])


def _smoothed_nll(log_probs: torch.Tensor, target: torch.Tensor, eps: float) -> torch.Tensor:
    """NLL of ``target`` with label smoothing ``eps`` (uniform share over all classes)."""
    nll = F.nll_loss(log_probs, target)
    return nll if eps <= 0 else (1.0 - eps) * nll - eps * log_probs.mean(-1).mean()


class CharIntentModel(ScoredIntentModel):
    """The ``"char"`` backend of :class:`~models.intent.understand.IntentModel`."""

    backend = BACKEND

    def __init__(
        self,
        net: CharIntentNet,
        vocab: CharVocab,
        labels: LabelMaps,
        config: CharModelConfig,
        temperature: float = 1.0,
        keywords: IntentKeywords | None = None,
    ):
        self.net = net  # the torch module (train it with training/loop.py; forward returns a dict with "loss")
        self.vocab = vocab
        self.labels = labels
        self.config = config
        self.temperature = float(temperature)  # intent logits are divided by this (fitted on validation data)
        self.gazetteer: dict[str, tuple[str, ...]] = {}  # known values of text slots (products seen in training)
        if config.keywords and keywords is None:
            raise ValueError("model config says keywords: true but no IntentKeywords were given; pass keywords=")
        if keywords is not None:
            keywords.check_intents(labels.intents)
        if config.register_cues and keywords is not None and not keywords.register:
            raise ValueError("model config says register_cues: true but the keyword lists have no 'register:' "
                             "question/complaint cues; add them to the keyword file or set register_cues: false")
        self.keywords = keywords if config.keywords else None  # the intent keyword lists (keywords: true)

    @classmethod
    def create(
        cls,
        train_texts: Iterable[str],
        labels: LabelMaps,
        config: CharModelConfig = CharModelConfig(),
        keywords: IntentKeywords | None = None,
    ) -> "CharIntentModel":
        """An untrained model whose vocabulary is built from ``train_texts`` (with ``config.keywords``, the
        keyword lists ``keywords``, default ``models/intent/keywords.yaml``)."""
        vocab = CharVocab.build(train_texts)
        net = CharIntentNet(len(vocab), len(labels.intents), len(labels.bio_tags), config)
        if config.keywords and keywords is None:
            keywords = IntentKeywords.load()
        return cls(net, vocab, labels, config, keywords=keywords)

    # -- batches ---------------------------------------------------------------------------------
    def collate(
        self, examples: Sequence[Example], train: bool = False, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Tensors for a batch of examples (``train``: apply <unk> dropout)."""
        cut = self.config.max_chars
        ids = [self.vocab.encode(e.text[:cut]) or [1] for e in examples]
        width = max(len(i) for i in ids)
        input_ids = torch.zeros(len(ids), width, dtype=torch.long)
        mask = torch.zeros(len(ids), width, dtype=torch.long)
        tags = torch.full((len(ids), width), IGNORE_INDEX, dtype=torch.long)
        for r, (e, i) in enumerate(zip(examples, ids)):
            input_ids[r, : len(i)] = torch.tensor(i)
            mask[r, : len(i)] = 1
            if e.tag_ids is not None:
                t = e.tag_ids[:cut]
                tags[r, : len(t)] = torch.tensor(t, dtype=torch.long)
        kw_tags = None
        if self.keywords is not None:
            intents = self.labels.intents
            kw_tags = torch.zeros(len(ids), width, dtype=torch.long)
            hits = np.zeros((len(ids), len(intents)), dtype=np.float32)
            register = np.zeros((len(ids), REGISTER_FEATURES), dtype=np.float32) if self.config.register_cues else None
            for r, e in enumerate(examples):
                text = e.text[:cut]
                hits[r] = self.keywords.hit_vector(text, intents)
                if register is not None:
                    register[r] = self.keywords.register_vector(text)
                t = self.keywords.char_tags(text, intents)
                if t:
                    kw_tags[r, : len(t)] = torch.tensor(t, dtype=torch.long)
        if train and self.config.unk_dropout > 0:
            drop = (torch.rand(input_ids.shape, generator=generator) < self.config.unk_dropout) & mask.bool()
            input_ids = input_ids.masked_fill(drop, 1)
        if train and kw_tags is not None and self.config.nonkeyword_unk_dropout > 0:
            p = self.config.nonkeyword_unk_dropout
            outside = (kw_tags == 0) & ((tags == IGNORE_INDEX) | (tags == self.labels.bio_tags.index("O")))
            drop = (torch.rand(input_ids.shape, generator=generator) < p) & mask.bool() & outside
            input_ids = input_ids.masked_fill(drop, 1)
        batch = {
            "input_ids": input_ids,
            "attention_mask": mask,
            "intent_labels": torch.tensor([e.intent_id for e in examples], dtype=torch.long),
            "tag_labels": tags,
        }
        if self.config.ngram_buckets > 0:
            grams = [hashed_ngrams(e.text[:cut], self.config.ngram_buckets) for e in examples]
            batch["ngram_ids"] = torch.tensor([g for gs in grams for g in gs], dtype=torch.long)
            batch["ngram_offsets"] = torch.tensor([0, *np.cumsum([len(g) for g in grams])[:-1]], dtype=torch.long)
        if kw_tags is not None:
            batch["keyword_hits"] = torch.from_numpy(hits)
            batch["keyword_tags"] = kw_tags
            if register is not None:
                batch["register"] = torch.from_numpy(register)
        return batch

    # -- inference -------------------------------------------------------------------------------
    @torch.inference_mode()
    def expert_log_probs(self, texts: Sequence[str]) -> np.ndarray:
        """Each expert's intent log-probabilities: texts x experts x intents (for weighing the experts)."""
        self.net.eval()
        device = next(self.net.parameters()).device
        out = []
        for b in range(0, len(texts), PREDICT_BATCH):
            batch = self.collate([Example(t, 0, None) for t in texts[b : b + PREDICT_BATCH]])
            batch.pop("intent_labels")
            batch.pop("tag_labels")
            out.append(self.net(**{k: v.to(device) for k, v in batch.items()})["expert_log_probs"].float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0, len(self.labels.intents)))

    def set_expert_weights(self, weights: Sequence[float]) -> None:
        """Use ``weights`` (GRU, n-gram, keyword) for the experts' log-probs from now on (saved with the model)."""
        from dataclasses import replace

        self.config = replace(self.config, expert_weights=tuple(float(w) for w in weights))
        self.net.cfg = self.config

    @torch.inference_mode()
    def scores(self, texts: Sequence[str]) -> tuple[np.ndarray, list[np.ndarray]]:
        """(intent logits: texts x intents, per text the tag log-probs: len(text) x tags)."""
        self.net.eval()
        device = next(self.net.parameters()).device
        logits, tag_lp = [], []
        for b in range(0, len(texts), PREDICT_BATCH):
            chunk = list(texts[b : b + PREDICT_BATCH])
            batch = self.collate([Example(t, 0, None) for t in chunk])
            batch.pop("intent_labels")
            batch.pop("tag_labels")
            out = self.net(**{k: v.to(device) for k, v in batch.items()})
            logits.append(out["intent_logits"].float().cpu().numpy())
            lp = F.log_softmax(out["tag_logits"].float(), dim=-1).cpu().numpy()
            for r, t in enumerate(chunk):
                n = min(len(t), self.config.max_chars)
                rows = lp[r, :n]
                if len(t) > n:  # characters past max_chars are tagged O
                    tail = np.full((len(t) - n, lp.shape[-1]), -1e4)
                    tail[:, self.labels.bio_tags.index("O")] = 0.0
                    rows = np.concatenate([rows, tail])
                tag_lp.append(rows)
        n_int = len(self.labels.intents)
        return (np.concatenate(logits) if logits else np.zeros((0, n_int))), tag_lp

    # -- persistence -----------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        config = {
            "backend": BACKEND,
            "labels": self.labels.to_json(),
            "model": asdict(self.config),
            "temperature": self.temperature,
            "gazetteer": {k: list(v) for k, v in self.gazetteer.items()},
            "vocab_size": len(self.vocab),
        }
        (d / CONFIG_FILE).write_text(json.dumps(config, ensure_ascii=False, indent=2), encoding="utf-8")
        (d / VOCAB_FILE).write_text(json.dumps(list(self.vocab.chars), ensure_ascii=False), encoding="utf-8")
        if self.keywords is not None:
            (d / KEYWORDS_FILE).write_text(
                json.dumps({"intents": self.keywords.to_mapping(), "register": self.keywords.register_mapping()},
                           ensure_ascii=False, indent=1), encoding="utf-8"
            )
        state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        save_file(state, str(d / WEIGHTS_FILE))

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> "CharIntentModel":
        from safetensors.torch import load_file

        d = Path(directory)
        config = read_model_config(d)
        if config.get("backend") != BACKEND:
            raise ValueError(
                f"{d / CONFIG_FILE} says backend {config.get('backend')!r}; use load_intent_model({str(d)!r})"
            )
        for name in (VOCAB_FILE, WEIGHTS_FILE):
            if not (d / name).is_file():
                raise FileNotFoundError(
                    f"{d / name} is missing: the model directory is incomplete; re-save or retrain it"
                )
        vocab = CharVocab(tuple(json.loads((d / VOCAB_FILE).read_text(encoding="utf-8"))))
        labels = LabelMaps.from_json(config["labels"])
        fields = dict(config["model"])
        if "expert_weights" in fields:
            fields["expert_weights"] = tuple(fields["expert_weights"])
        cfg = CharModelConfig(**{"keywords": False, **fields})  # saved before keywords existed: off
        keywords = None
        if cfg.keywords:
            path = d / KEYWORDS_FILE
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} is missing but {d / CONFIG_FILE} says keywords: true; re-save or retrain the model"
                )
            doc = json.loads(path.read_text(encoding="utf-8"))
            keywords = IntentKeywords.from_mapping(doc.get("intents", {}), str(path), register=doc.get("register"))
        net = CharIntentNet(len(vocab), len(labels.intents), len(labels.bio_tags), cfg)
        net.load_state_dict(load_file(str(d / WEIGHTS_FILE)))
        net.to(device).eval()
        model = cls(net, vocab, labels, cfg, config.get("temperature", 1.0), keywords=keywords)
        model.gazetteer = {k: tuple(v) for k, v in config.get("gazetteer", {}).items()}
        return model
