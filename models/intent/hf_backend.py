"""Intent and slots by fine-tuning a Hugging Face encoder (BERT-style), the ``"hf"`` backend.

Any ``AutoModel`` encoder with a fast tokenizer works, from a local folder or (with network) a hub id,
e.g. a Chinese BERT. Joint head: intent classification on the first ([CLS]) token, BIO tagging on every
token. Character tags are aligned to tokens through the tokenizer's offsets: a token takes the tag of its
first character. At prediction, every character takes its token's tag distribution (characters after the
first in a multi-character token have their ``B-x`` mass moved to ``I-x``), so the shared decoding of
``models/intent/understand.py`` works on characters for both backends.

Saved directory::

    config.json         {"backend": "hf", "labels": {...}, "model": {...}, "temperature": T}
    encoder/            the fine-tuned encoder (save_pretrained)
    tokenizer/          its tokenizer (save_pretrained)
    heads.safetensors   the intent and tagging heads
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from models.intent.understand import CONFIG_FILE, Example, LabelMaps, ScoredIntentModel, read_model_config

BACKEND = "hf"
ENCODER_DIR = "encoder"
TOKENIZER_DIR = "tokenizer"
HEADS_FILE = "heads.safetensors"
IGNORE_INDEX = -100  # tag label of special tokens, padding and examples without spans
PREDICT_BATCH = 32  # texts per forward pass in ``predict``


@dataclass(frozen=True)
class HFModelConfig:
    pretrained: str = ""  # local folder (or hub id) of the encoder and its tokenizer
    max_tokens: int = 128  # longer texts are cut (the tail gets no slot tags)
    dropout: float = 0.1  # dropout before both heads
    slot_loss_weight: float = 1.0  # weight of the tagging loss next to the intent loss


class HFJointNet(nn.Module):
    """An encoder with an intent head on the first token and a tag head on every token."""

    def __init__(self, encoder: nn.Module, n_intents: int, n_tags: int, cfg: HFModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.drop = nn.Dropout(cfg.dropout)
        self.intent_head = nn.Linear(hidden, n_intents)
        self.tag_head = nn.Linear(hidden, n_tags)

    def heads_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if not k.startswith("encoder.")}

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        intent_labels: torch.Tensor | None = None,
        tag_labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        h = self.drop(self.encoder(**kwargs).last_hidden_state)
        out = {"intent_logits": self.intent_head(h[:, 0]), "tag_logits": self.tag_head(h)}
        if intent_labels is not None:
            loss = F.cross_entropy(out["intent_logits"], intent_labels)
            if tag_labels is not None and (tag_labels != IGNORE_INDEX).any():
                tag_loss = F.cross_entropy(
                    out["tag_logits"].flatten(0, 1), tag_labels.flatten(), ignore_index=IGNORE_INDEX
                )
                loss = loss + self.cfg.slot_loss_weight * tag_loss
            out["loss"] = loss
        return out


def _offline() -> None:
    # Without it a tokenizer asked for by hub id can hang in DNS retries and come back broken (NOTES.md).
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


class HFIntentModel(ScoredIntentModel):
    """The ``"hf"`` backend of :class:`~models.intent.understand.IntentModel`."""

    backend = BACKEND

    def __init__(self, net: HFJointNet, tokenizer, labels: LabelMaps, config: HFModelConfig, temperature: float = 1.0):
        self.net = net  # the torch module (train it with training/loop.py; forward returns a dict with "loss")
        self.tokenizer = tokenizer  # a fast tokenizer (offset mappings are needed)
        self.labels = labels
        self.config = config
        self.temperature = float(temperature)  # intent logits are divided by this (fitted on validation data)
        self.gazetteer: dict[str, tuple[str, ...]] = {}  # known values of text slots (products seen in training)

    @classmethod
    def create(cls, labels: LabelMaps, config: HFModelConfig) -> "HFIntentModel":
        """The pretrained encoder at ``config.pretrained`` with fresh heads."""
        from transformers import AutoModel, AutoTokenizer

        _offline()
        if not config.pretrained:
            raise ValueError(
                "model.pretrained is empty: set it to a local encoder folder (model.pretrained=/path/to/bert)"
            )
        try:
            tokenizer = AutoTokenizer.from_pretrained(config.pretrained)
            encoder = AutoModel.from_pretrained(config.pretrained)
        except OSError as e:
            raise OSError(
                f"cannot load an encoder and tokenizer from model.pretrained={config.pretrained!r}: {e}. "
                f"Pass a local folder holding config.json, the weights and the tokenizer files."
            ) from e
        cls._check_tokenizer(tokenizer, config.pretrained)
        return cls(HFJointNet(encoder, len(labels.intents), len(labels.bio_tags), config), tokenizer, labels, config)

    @staticmethod
    def _check_tokenizer(tokenizer, where: str) -> None:
        if not getattr(tokenizer, "is_fast", True):
            raise ValueError(
                f"the tokenizer at {where} is not a fast tokenizer: character offsets are needed to align slot tags"
            )
        if len(tokenizer) < 10:
            raise ValueError(
                f"the tokenizer at {where} has {len(tokenizer)} tokens: it did not load properly (set HF_HUB_OFFLINE=1)"
            )

    # -- batches ---------------------------------------------------------------------------------
    def _encode(self, texts: Sequence[str]):
        return self.tokenizer(
            list(texts),
            return_offsets_mapping=True,
            truncation=True,
            max_length=self.config.max_tokens,
            padding=True,
            return_tensors="pt",
        )

    def collate(
        self, examples: Sequence[Example], train: bool = False, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Tensors for a batch: token ids plus the char tags aligned to tokens (first character's tag)."""
        enc = self._encode([e.text for e in examples])
        offsets = enc.pop("offset_mapping")
        tags = torch.full(enc["input_ids"].shape, IGNORE_INDEX, dtype=torch.long)
        for r, e in enumerate(examples):
            if e.tag_ids is None:
                continue
            for t, (s, end) in enumerate(offsets[r].tolist()):
                if end > s and s < len(e.tag_ids):
                    tags[r, t] = e.tag_ids[s]
        batch = dict(enc)
        batch["intent_labels"] = torch.tensor([e.intent_id for e in examples], dtype=torch.long)
        batch["tag_labels"] = tags
        return batch

    # -- inference -------------------------------------------------------------------------------
    def _char_log_probs(self, text: str, token_lp: np.ndarray, offsets: list[tuple[int, int]]) -> np.ndarray:
        tags = self.labels.bio_tags
        o = tags.index("O")
        out = np.full((len(text), len(tags)), -1e4)
        out[:, o] = 0.0  # characters no token covers (spaces, the cut tail) are O
        b_to_i = [(tags.index(t), tags.index("I-" + t[2:])) for t in tags if t.startswith("B-")]
        for t, (s, e) in enumerate(offsets):
            if e <= s:
                continue
            for c in range(s, min(e, len(text))):
                lp = token_lp[t].copy()
                if c > s:  # inside a token: a span cannot begin here
                    p = np.exp(lp)
                    for b, i in b_to_i:
                        p[i] += p[b]
                        p[b] = 0.0
                    lp = np.log(np.maximum(p, 1e-12))
                out[c] = lp
        return out

    @torch.inference_mode()
    def scores(self, texts: Sequence[str]) -> tuple[np.ndarray, list[np.ndarray]]:
        """(intent logits: texts x intents, per text the tag log-probs per character: len(text) x tags)."""
        self.net.eval()
        device = next(self.net.parameters()).device
        logits, tag_lp = [], []
        for b in range(0, len(texts), PREDICT_BATCH):
            chunk = list(texts[b : b + PREDICT_BATCH])
            enc = self._encode(chunk)
            offsets = enc.pop("offset_mapping").tolist()
            out = self.net(**{k: v.to(device) for k, v in enc.items()})
            logits.append(out["intent_logits"].float().cpu().numpy())
            lp = F.log_softmax(out["tag_logits"].float(), dim=-1).cpu().numpy()
            for r, t in enumerate(chunk):
                tag_lp.append(self._char_log_probs(t, lp[r], [tuple(x) for x in offsets[r]]))
        n_int = len(self.labels.intents)
        return (np.concatenate(logits) if logits else np.zeros((0, n_int))), tag_lp

    # -- persistence -----------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.net.encoder.save_pretrained(d / ENCODER_DIR)
        self.tokenizer.save_pretrained(d / TOKENIZER_DIR)
        heads = {k: v.detach().cpu().contiguous() for k, v in self.net.heads_state_dict().items()}
        save_file(heads, str(d / HEADS_FILE))
        config = {
            "backend": BACKEND,
            "labels": self.labels.to_json(),
            "model": asdict(self.config),
            "temperature": self.temperature,
            "gazetteer": {k: list(v) for k, v in self.gazetteer.items()},
        }
        (d / CONFIG_FILE).write_text(json.dumps(config, ensure_ascii=False, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> "HFIntentModel":
        from safetensors.torch import load_file
        from transformers import AutoModel, AutoTokenizer

        _offline()
        d = Path(directory)
        config = read_model_config(d)
        if config.get("backend") != BACKEND:
            raise ValueError(
                f"{d / CONFIG_FILE} says backend {config.get('backend')!r}; use load_intent_model({str(d)!r})"
            )
        for name in (ENCODER_DIR, TOKENIZER_DIR, HEADS_FILE):
            if not (d / name).exists():
                raise FileNotFoundError(
                    f"{d / name} is missing: the model directory is incomplete; re-save or retrain it"
                )
        labels = LabelMaps.from_json(config["labels"])
        cfg = HFModelConfig(**config["model"])
        tokenizer = AutoTokenizer.from_pretrained(d / TOKENIZER_DIR)
        cls._check_tokenizer(tokenizer, str(d / TOKENIZER_DIR))
        net = HFJointNet(AutoModel.from_pretrained(d / ENCODER_DIR), len(labels.intents), len(labels.bio_tags), cfg)
        missing, unexpected = net.load_state_dict(load_file(str(d / HEADS_FILE)), strict=False)
        if unexpected or any(not k.startswith("encoder.") for k in missing):
            raise ValueError(f"{d / HEADS_FILE} does not match the heads: missing {missing}, unexpected {unexpected}")
        net.to(device).eval()
        model = cls(net, tokenizer, labels, cfg, config.get("temperature", 1.0))
        model.gazetteer = {k: tuple(v) for k, v in config.get("gazetteer", {}).items()}
        return model
