"""A disk cache of Whisper encoder outputs, so a frozen encoder runs once per utterance instead of once per step.

Each utterance's audio becomes the normal 30-s padded log-mel features (what HF ``generate`` and faster-whisper
see at inference), the encoder runs on them, and the last hidden states (``n_frames x d_model``, 1500 x 512 for
whisper-base) are stored as float16 in chunk files ``chunk_<first index>.npy`` of ``CHUNK_UTTERANCES``
utterances. A chunk is written atomically, so an interrupted build resumes from the last finished chunk; a
``meta.json`` marks the cache complete. Chunks are read back memory-mapped: a batch costs a few page reads.

The cache folder's name is :func:`cache_key` of the utterances, the encoder (:func:`encoder_fingerprint`) and the
settings, so a changed record, model or setting never reads stale states.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

if TYPE_CHECKING:
    import torch

ENCODER_CACHE_VERSION = 1  # bump when what is stored changes: older caches are then ignored
CHUNK_UTTERANCES = 32  # utterances per chunk file (1500 x 512 float16 = 1.5 MB each for whisper-base)
STATES_DTYPE = np.float16  # storage dtype of the hidden states (half the disk and page cache of float32)
META_FILE = "meta.json"  # written last: the cache is complete
KEY_CHARS = 16  # hex characters of the sha256 kept as the folder name

AudioLoader = Callable[[int], np.ndarray]  # utterance index -> 16 kHz mono float32 audio


def cache_key(*parts: Any) -> str:
    """A short stable hash of JSON-able ``parts`` (records' ids and paths, encoder fingerprint, settings)."""
    text = json.dumps([ENCODER_CACHE_VERSION, *parts], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:KEY_CHARS]


def encoder_fingerprint(model_dir: str | os.PathLike) -> str:
    """Identity of the weights in a transformers model folder: config.json's text plus the size and mtime of
    each weights file (cheap; changes whenever the folder is re-saved)."""
    folder = Path(model_dir)
    h = hashlib.sha256()
    config = folder / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{folder}: no config.json; pass a folder written by save_pretrained")
    h.update(config.read_bytes())
    for path in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        st = path.stat()
        h.update(f"{path.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:KEY_CHARS]


def log_mel(feature_extractor: Any, audios: Sequence[np.ndarray], sample_rate: int) -> np.ndarray:
    """Whisper log-mel features of ``audios``, each padded (or cut) to the 30-s window: ``(B, n_mels, 3000)``."""
    out = feature_extractor(list(audios), sampling_rate=sample_rate, return_tensors="np")
    return out["input_features"].astype(np.float32)


def encode(model: Any, features: np.ndarray | "torch.Tensor") -> "torch.Tensor":
    """Last hidden states of ``model``'s encoder (a WhisperForConditionalGeneration) on log-mel ``features``."""
    import torch

    encoder = model.get_encoder()
    param = next(encoder.parameters())
    x = torch.as_tensor(features).to(param.device, dtype=param.dtype)
    with torch.no_grad():
        return encoder(input_features=x).last_hidden_state


class EncoderStateCache:
    """Encoder states of ``n`` utterances in ``folder``: build once (resumable), then read by index."""

    def __init__(self, folder: str | os.PathLike, n: int, chunk: int = CHUNK_UTTERANCES) -> None:
        if n < 1:
            raise ValueError(f"an encoder cache needs at least one utterance, got n={n}")
        self.folder = Path(folder)  # the cache's own folder (its name is the cache key)
        self.n = n  # utterances
        self.chunk = chunk  # utterances per chunk file
        self._maps: dict[int, np.ndarray] = {}

    # -- building ----------------------------------------------------------------------------------
    def _chunk_path(self, start: int) -> Path:
        return self.folder / f"chunk_{start:07d}.npy"

    @property
    def complete(self) -> bool:
        """True when every chunk and meta.json are on disk for the same ``n``."""
        try:
            meta = json.loads((self.folder / META_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return meta.get("n") == self.n and meta.get("chunk") == self.chunk and all(
            self._chunk_path(s).is_file() for s in range(0, self.n, self.chunk))

    def missing_chunks(self) -> list[int]:
        """First indices of the chunks not yet on disk."""
        return [s for s in range(0, self.n, self.chunk) if not self._chunk_path(s).is_file()]

    def build(self, compute: Callable[[Sequence[int]], np.ndarray], desc: str = "encoder", progress: bool = True,
              info: dict[str, Any] | None = None) -> "EncoderStateCache":
        """Fill the missing chunks with ``compute(indices) -> (len(indices), frames, d_model)``; write meta.json
        (with ``info``) at the end. Chunks already on disk are kept, so an interrupted build resumes."""
        from tqdm import tqdm

        if self.complete:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        todo = self.missing_chunks()
        done = self.n - sum(min(self.chunk, self.n - s) for s in todo)
        shape = None
        with tqdm(total=self.n, initial=done, desc=desc, unit="utt", disable=not progress, mininterval=5.0,
                  dynamic_ncols=True) as bar:
            for start in todo:
                idx = list(range(start, min(start + self.chunk, self.n)))
                rows = np.asarray(compute(idx))
                if rows.ndim != 3 or rows.shape[0] != len(idx):
                    raise ValueError(f"compute() returned shape {rows.shape}; expected ({len(idx)}, frames, d_model)")
                shape = rows.shape[1:]
                tmp = self.folder / f".tmp-{os.getpid()}-{start}.npy"
                np.save(tmp, rows.astype(STATES_DTYPE, copy=False))
                os.replace(tmp, self._chunk_path(start))
                bar.update(len(idx))
        if shape is None:
            shape = self.states(0).shape
        meta = {"n": self.n, "chunk": self.chunk, "frames": int(shape[0]), "d_model": int(shape[1]),
                "dtype": np.dtype(STATES_DTYPE).name, "version": ENCODER_CACHE_VERSION, **(info or {})}
        (self.folder / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
        return self

    # -- reading -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.n

    def _map(self, start: int) -> np.ndarray:
        if start not in self._maps:
            path = self._chunk_path(start)
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: the encoder cache {self.folder} is incomplete; build it first")
            self._maps[start] = np.load(path, mmap_mode="r")
        return self._maps[start]

    def states(self, i: int) -> np.ndarray:
        """Encoder states of utterance ``i``: ``(frames, d_model)`` float16 (memory-mapped)."""
        if not 0 <= i < self.n:
            raise IndexError(f"utterance {i} is outside 0..{self.n - 1}")
        start = (i // self.chunk) * self.chunk
        return self._map(start)[i - start]

    def batch(self, indices: Sequence[int]) -> "torch.Tensor":
        """States of ``indices`` as one float32 tensor ``(B, frames, d_model)``."""
        import torch

        return torch.from_numpy(np.stack([np.asarray(self.states(int(i)), dtype=np.float32) for i in indices]))


def build_encoder_cache(
    model: Any,
    feature_extractor: Any,
    load: AudioLoader,
    n: int,
    folder: str | os.PathLike,
    sample_rate: int,
    batch_size: int = 8,
    desc: str = "encoder",
    progress: bool = True,
    info: dict[str, Any] | None = None,
) -> EncoderStateCache:
    """Run ``model``'s encoder over utterances ``0..n-1`` (audio from ``load(i)``) into an :class:`EncoderStateCache`
    in ``folder`` (resuming a partial one); returns it."""
    cache = EncoderStateCache(folder, n)

    def compute(idx: Sequence[int]) -> np.ndarray:
        parts = []
        for s in range(0, len(idx), batch_size):
            feats = log_mel(feature_extractor, [load(i) for i in idx[s : s + batch_size]], sample_rate)
            parts.append(encode(model, feats).float().cpu().numpy().astype(STATES_DTYPE))
        return np.concatenate(parts)

    was_training = getattr(model, "training", False)
    model.eval()
    try:
        return cache.build(compute, desc=desc, progress=progress, info=info)
    finally:
        model.train(was_training)


__all__ = [
    "CHUNK_UTTERANCES",
    "ENCODER_CACHE_VERSION",
    "EncoderStateCache",
    "build_encoder_cache",
    "cache_key",
    "encode",
    "encoder_fingerprint",
    "log_mel",
]
