"""Utterance embeddings from a frozen Whisper encoder, run on the utterance's real length.

The Hugging Face encoder insists on 3000 mel frames (30 s); a 3 s utterance would be 90% padding. Here the
encoder's own modules run on the real frames (conv1/conv2, the first T position embeddings, the layers, the
final layer norm), with an attention mask so that a padded batch gives each item the same result as running
it alone. Every layer's hidden states are mean- and std-pooled over time: ``(layers + 1, 2, d_model)`` per
utterance (index 0 = the input embeddings, the last = the final layer after its layer norm).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from data.audio import SAMPLE_RATE

WHISPER_BASE = "whisper-base"  # name of the bootstrapped local Whisper base (models/asr/bootstrap.py)
N_FFT = 400  # samples (25 ms at 16 kHz): Whisper's STFT window
HOP_LENGTH = 160  # samples (10 ms at 16 kHz): Whisper's mel frame hop
LOG_MEL_FLOOR = 1e-10  # power floor before log10
DYNAMIC_RANGE = 8.0  # log10 units: Whisper clamps the log-mel spectrogram to (max - 8)
MIN_FRAMES = 4  # mel frames: shorter inputs are padded to this (the convolutions need a few)


@dataclass(frozen=True)
class EncoderSpec:
    """What the feature extractor is: enough to rebuild it and to key a feature cache."""

    source: str  # "whisper-base" (bootstrapped) or a local transformers folder
    n_layers: int  # encoder layers; pooled features have n_layers + 1 rows
    d_model: int  # hidden size
    n_mels: int  # mel bins the encoder expects
    max_frames: int  # mel frames the encoder's position table covers (2 * max_source_positions)


class WhisperEncoderFeatures:
    """Pooled hidden states of a frozen Whisper encoder for 16 kHz utterances of any length (<= 30 s)."""

    def __init__(self, encoder: torch.nn.Module, mel_filters: np.ndarray, source: str) -> None:
        self.encoder = encoder.eval()
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        filters = np.asarray(mel_filters, dtype=np.float32)
        if filters.shape[0] != N_FFT // 2 + 1:  # HF stores (freq, mels); accept (mels, freq) too
            filters = filters.T
        self.mel_filters = torch.from_numpy(np.ascontiguousarray(filters.T))  # (mels, freq)
        cfg = encoder.config
        self.spec = EncoderSpec(
            source=source,
            n_layers=int(cfg.encoder_layers),
            d_model=int(cfg.d_model),
            n_mels=int(cfg.num_mel_bins),
            max_frames=int(cfg.max_source_positions) * 2,
        )
        if self.mel_filters.shape[0] != self.spec.n_mels:
            raise ValueError(
                f"{source}: mel filters have {self.mel_filters.shape[0]} bins but the encoder expects "
                f"{self.spec.n_mels} (config num_mel_bins); use the feature extractor saved with the model"
            )
        self._window = torch.hann_window(N_FFT)

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def load(cls, source: str | os.PathLike | None = None) -> "WhisperEncoderFeatures":
        """The encoder of ``source``: None or "whisper-base" for the bootstrapped Whisper base, else a local
        transformers folder holding a Whisper model (its feature extractor if saved, else a default one)."""
        from transformers import WhisperFeatureExtractor, WhisperModel

        if source is None or str(source) == WHISPER_BASE:
            from models.asr.bootstrap import load_whisper

            model, processor = load_whisper(None)
            return cls(model.model.encoder, processor.feature_extractor.mel_filters, WHISPER_BASE)
        path = Path(source).expanduser()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"{path}: no config.json; model.encoder must be 'whisper-base' or a folder written by "
                "save_pretrained holding a Whisper model"
            )
        model = WhisperModel.from_pretrained(path, dtype=torch.float32)
        if (path / "preprocessor_config.json").is_file():
            fe = WhisperFeatureExtractor.from_pretrained(path)
        else:
            fe = WhisperFeatureExtractor(feature_size=model.config.num_mel_bins)
        return cls(model.get_encoder(), fe.mel_filters, str(path))

    def save_encoder(self, folder: str | os.PathLike) -> None:
        """Write this encoder (as a Whisper model folder) and its feature extractor to ``folder``."""
        from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

        cfg = WhisperConfig(**self.encoder.config.to_dict())
        model = WhisperModel(cfg)
        model.encoder.load_state_dict(self.encoder.state_dict())
        model.save_pretrained(folder)
        fe = WhisperFeatureExtractor(feature_size=self.spec.n_mels)
        fe.save_pretrained(folder)

    # -- features ----------------------------------------------------------------------------------
    def log_mel(self, audio: np.ndarray) -> torch.Tensor:
        """Whisper's normalised log-mel spectrogram (n_mels, frames) of 16 kHz mono ``audio``."""
        x = torch.as_tensor(np.asarray(audio, dtype=np.float32))
        if x.numel() < N_FFT:
            x = torch.nn.functional.pad(x, (0, N_FFT - x.numel()))
        stft = torch.stft(x, N_FFT, HOP_LENGTH, window=self._window, return_complex=True)
        power = stft[..., :-1].abs() ** 2
        mel = self.mel_filters @ power
        log_spec = torch.clamp(mel, min=LOG_MEL_FLOOR).log10()
        log_spec = torch.maximum(log_spec, log_spec.max() - DYNAMIC_RANGE)
        log_spec = (log_spec + 4.0) / 4.0
        frames = min(log_spec.shape[-1], self.spec.max_frames)
        log_spec = log_spec[:, :frames]
        if frames < MIN_FRAMES:
            log_spec = torch.nn.functional.pad(log_spec, (0, MIN_FRAMES - frames), value=float(log_spec.min()))
        return log_spec

    @torch.no_grad()
    def hidden_states(self, mels: Sequence[torch.Tensor], n_layers: int | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Encoder hidden states for a batch of log-mels: (list of (batch, T, d) for the input embeddings and
        the first ``n_layers`` layers (all by default; the final layer is layer-normed); valid-frame mask (batch, T))."""
        enc = self.encoder
        lengths = [int(m.shape[-1]) for m in mels]
        n_frames = max(lengths)
        batch = torch.stack([torch.nn.functional.pad(m, (0, n_frames - m.shape[-1])) for m in mels])  # zeros, as conv padding
        x = torch.nn.functional.gelu(enc.conv1(batch))
        in_valid = torch.arange(n_frames)[None, :] < torch.tensor(lengths)[:, None]
        x = x * in_valid[:, None, :].to(x.dtype)  # what conv2's zero padding sees when an item runs alone
        x = torch.nn.functional.gelu(enc.conv2(x)).permute(0, 2, 1)
        t = x.shape[1]
        x = x + enc.embed_positions.weight[:t]
        out_len = torch.tensor([(n + 1) // 2 for n in lengths])
        valid = torch.arange(t)[None, :] < out_len[:, None]
        mask = None
        if not bool(valid.all()):
            mask = torch.zeros(len(mels), 1, t, t, dtype=x.dtype)
            mask.masked_fill_(~valid[:, None, None, :], torch.finfo(x.dtype).min)
        n_layers = self.spec.n_layers if n_layers is None else min(int(n_layers), self.spec.n_layers)
        states = [x]
        for layer in enc.layers[:n_layers]:
            x = layer(x, mask)
            if isinstance(x, tuple):
                x = x[0]
            states.append(x)
        if n_layers == self.spec.n_layers:
            states[-1] = enc.layer_norm(x)
        return states, valid

    @torch.no_grad()
    def pooled(self, audios: Sequence[np.ndarray], n_layers: int | None = None) -> np.ndarray:
        """(batch, n_layers + 1, 2, d_model) float32: mean and std over valid frames of each layer run."""
        mels = [self.log_mel(a) for a in audios]
        states, valid = self.hidden_states(mels, n_layers)
        w = valid.float()[:, :, None]
        n = w.sum(1).clamp(min=1.0)
        out = []
        for h in states:
            mean = (h * w).sum(1) / n
            var = (((h - mean[:, None]) ** 2) * w).sum(1) / n
            out.append(torch.stack([mean, var.clamp(min=0).sqrt()], dim=1))
        return torch.stack(out, dim=1).numpy().astype(np.float32)

    def pooled_many(self, audios: Iterable[np.ndarray], n_layers: int | None = None, batch_seconds: float = 40.0) -> np.ndarray:
        """:meth:`pooled` over many utterances, batched by similar length (``batch_seconds`` of audio a batch)."""
        audios = list(audios)
        order = sorted(range(len(audios)), key=lambda i: len(audios[i]))
        n_layers = self.spec.n_layers if n_layers is None else min(int(n_layers), self.spec.n_layers)
        out = np.zeros((len(audios), n_layers + 1, 2, self.spec.d_model), dtype=np.float32)
        i = 0
        while i < len(order):
            j, total = i, 0
            while j < len(order) and (j == i or total + len(audios[order[j]]) <= batch_seconds * SAMPLE_RATE):
                total += len(audios[order[j]])
                j += 1
            idx = order[i:j]
            out[idx] = self.pooled([audios[k] for k in idx], n_layers)
            i = j
        return out


def select_layers(pooled: np.ndarray, layers: Sequence[int]) -> np.ndarray:
    """Flatten the chosen layers of pooled features (..., L, 2, d) into (..., len(layers) * 2 * d).
    Layer indices count from 0 = input embeddings; negative ones from the end (-1 = final layer)."""
    n = pooled.shape[-3]
    bad = [k for k in layers if not -n <= k < n]
    if bad:
        raise ValueError(f"model.layers {list(bad)} out of range for features of {n - 1} encoder layers (valid: {-n}..{n - 1})")
    sel = pooled[..., [k % n for k in layers], :, :]
    return sel.reshape(*pooled.shape[:-3], -1)


class LazyEncoderFeatures:
    """Mixin for models over encoder features: ``featurizer`` loads ``WhisperEncoderFeatures`` from
    ``self.cfg.encoder`` on first use (a head alone loads and scores cached features without the encoder)."""

    _featurizer: "WhisperEncoderFeatures | None" = None

    @property
    def featurizer(self) -> "WhisperEncoderFeatures":
        if self._featurizer is None:
            self._featurizer = WhisperEncoderFeatures.load(self.cfg.encoder)
        return self._featurizer
