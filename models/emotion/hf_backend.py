"""The second backend: fine-tune any Hugging Face audio classifier (AutoModelForAudioClassification:
wav2vec2, HuBERT, WavLM ...) on raw 16 kHz audio, with the same interface as :class:`EmotionModel`.

Arousal is the expectation of :data:`models.emotion.model.AROUSAL` under the calibrated probabilities.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from data.audio import SAMPLE_RATE
from models.emotion.model import (AROUSAL, CONFIG_FILE, FORMAT_VERSION, EmotionResult, SingleUtteranceClassifier,
                                  centre_crop, inverse_frequency_weights, result)
from models.taxonomy import EMOTIONS

HF_DIR = "hf_model"  # model directory: the fine-tuned transformers model and feature extractor


@dataclass(frozen=True)
class HFModelConfig:
    pretrained: str = "models/pretrained/wav2vec2"  # local transformers folder (or a hub id when online)
    max_seconds: float = 4.0  # s: centre crop of each utterance fed to the model
    freeze_feature_encoder: bool = True  # keep the convolutional feature encoder fixed (wav2vec2-style models)


class HFNet(torch.nn.Module):
    """An AutoModelForAudioClassification with a class-weighted loss, returning fit()'s dict."""

    def __init__(self, model: torch.nn.Module, n_classes: int) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("class_weights", torch.ones(n_classes))

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> dict:
        kwargs = {"attention_mask": attention_mask} if attention_mask is not None else {}
        logits = self.model(input_values=input_values, **kwargs).logits
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = torch.nn.functional.cross_entropy(logits, labels, weight=self.class_weights)
        return out


class HFEmotionModel(SingleUtteranceClassifier):
    backend = "hf"

    def __init__(self, cfg: HFModelConfig, labels: Sequence[str], net: HFNet, extractor, temperature: float = 1.0) -> None:
        self.cfg = cfg
        self.labels = tuple(labels)
        self.net = net
        self.extractor = extractor
        self.temperature = float(temperature)

    @classmethod
    def create(cls, cfg: HFModelConfig, labels: Sequence[str] = EMOTIONS) -> "HFEmotionModel":
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

        path = Path(cfg.pretrained).expanduser()
        if not path.exists() and (cfg.pretrained.startswith((".", "/", "~")) or cfg.pretrained.count("/") > 1):
            raise FileNotFoundError(f"model.pretrained={cfg.pretrained}: folder not found; pass a local transformers "
                                    "audio model folder (config.json, weights, preprocessor_config.json)")
        src = str(path) if path.exists() else cfg.pretrained
        model = AutoModelForAudioClassification.from_pretrained(
            src, num_labels=len(labels), label2id={e: i for i, e in enumerate(labels)},
            id2label={i: e for i, e in enumerate(labels)}, ignore_mismatched_sizes=True)
        if cfg.freeze_feature_encoder and hasattr(model, "freeze_feature_encoder"):
            model.freeze_feature_encoder()
        extractor = AutoFeatureExtractor.from_pretrained(src)
        return cls(cfg, labels, HFNet(model, len(labels)), extractor)

    def set_class_weights(self, y: Sequence[int]) -> None:
        self.net.class_weights.copy_(torch.as_tensor(inverse_frequency_weights(y, len(self.labels))))

    def collate(self, items: Sequence[tuple[np.ndarray, int]] | Sequence[np.ndarray]) -> dict:
        """Crop, pad and normalise a batch (``(audio, label)`` pairs, or plain audio for prediction)."""
        with_labels = bool(items) and isinstance(items[0], tuple)
        audios = [centre_crop(np.asarray(a[0] if with_labels else a, dtype=np.float32), self.cfg.max_seconds) for a in items]
        feats = self.extractor(audios, sampling_rate=SAMPLE_RATE, padding=True, return_tensors="pt",
                               return_attention_mask=True)
        batch = {"input_values": feats["input_values"]}
        if "attention_mask" in feats:
            batch["attention_mask"] = feats["attention_mask"]
        if with_labels:
            batch["labels"] = torch.tensor([int(a[1]) for a in items], dtype=torch.long)
        return batch

    @torch.no_grad()
    def scores(self, audios: Sequence[np.ndarray], batch_size: int = 8) -> tuple[np.ndarray, np.ndarray]:
        """(logits, arousal from the uncalibrated probabilities) of 16 kHz utterances."""
        from models.calibration import softmax

        self.net.eval()
        out = [self.net(**self.collate(list(audios[i : i + batch_size])))["logits"].numpy() for i in range(0, len(audios), batch_size)]
        logits = np.concatenate(out) if out else np.zeros((0, len(self.labels)), np.float32)
        return logits, self.arousal(softmax(logits)) if len(logits) else np.zeros(0)

    def arousal(self, probs: np.ndarray) -> np.ndarray:
        return probs @ np.array([AROUSAL.get(e, AROUSAL["neutral"]) for e in self.labels])

    def classify_many(self, audios: Sequence[np.ndarray]) -> list[EmotionResult]:
        from models.calibration import softmax

        logits, _ = self.scores(list(audios))
        probs = softmax(logits, self.temperature)
        return [result(p, a, self.labels) for p, a in zip(probs, self.arousal(probs))]

    def save(self, folder: str | os.PathLike) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.net.model.save_pretrained(folder / HF_DIR)
        self.extractor.save_pretrained(folder / HF_DIR)
        meta = {"format_version": FORMAT_VERSION, "backend": self.backend, "labels": list(self.labels),
                "temperature": self.temperature, "config": {**asdict(self.cfg), "pretrained": HF_DIR},
                "class_weights": self.net.class_weights.tolist()}
        (folder / CONFIG_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, meta: Mapping | None = None) -> "HFEmotionModel":
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

        folder = Path(folder)
        meta = meta or json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        cfg = HFModelConfig(**{**meta["config"], "pretrained": str(folder / HF_DIR)})
        model = AutoModelForAudioClassification.from_pretrained(folder / HF_DIR)
        extractor = AutoFeatureExtractor.from_pretrained(folder / HF_DIR)
        return cls(cfg, meta["labels"], HFNet(model, len(meta["labels"])).eval(), extractor, float(meta.get("temperature", 1.0)))
