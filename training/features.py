"""What the audio trainers (emotion, dialect ID, ASR) share: repository-relative paths, content keys for caches,
and resumable row caches of per-utterance features.

    cache = repo_path("data/cache/emotion") / cache_key("enc", FEATURE_VERSION, ids, encoder_source)
    rows = cached_rows(cache, len(records), compute_rows, "encoder train")   # resumes after an interruption
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]  # relative paths in configs are read from here, wherever the command runs
CHUNK = 256  # utterances per cached feature file (an interrupted extraction resumes from the last chunk)


def repo_path(p: str | None) -> Path | None:
    """``p`` with ``~`` expanded; a relative path is taken from the repository root (None stays None)."""
    if p is None:
        return None
    path = Path(p).expanduser()
    return path if path.is_absolute() else REPO / path


def cache_key(*parts: Any) -> str:
    """16 hex characters naming a cache by everything its content depends on (JSON of ``parts``, hashed)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cached_rows(folder: Path, n: int, compute: Callable[[Sequence[int]], np.ndarray], desc: str) -> np.ndarray:
    """Rows 0..n-1 computed ``CHUNK`` at a time by ``compute(indices)`` and saved as ``folder/chunk_*.npy``;
    chunks already on disk are read back, so an interrupted run resumes where it stopped."""
    from tqdm import tqdm

    folder.mkdir(parents=True, exist_ok=True)
    parts = []
    with tqdm(total=n, desc=desc, unit="utt", mininterval=2.0, dynamic_ncols=True) as bar:
        for start in range(0, n, CHUNK):
            path = folder / f"chunk_{start:07d}.npy"
            idx = list(range(start, min(start + CHUNK, n)))
            if path.is_file():
                rows = np.load(path)
            else:
                rows = compute(idx)
                tmp = path.with_suffix(".tmp.npy")
                np.save(tmp, rows)
                tmp.replace(path)
            parts.append(rows)
            bar.update(len(idx))
    return np.concatenate(parts) if parts else np.zeros((0,))
