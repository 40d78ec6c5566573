"""What the trainers share: repository-relative paths, reading a corpus split, content keys for caches and
resumable row caches of per-utterance features (emotion, dialect ID, ASR).

    cache = repo_path("data/cache/emotion") / cache_key("enc", FEATURE_VERSION, ids, encoder_source)
    rows = cached_rows(cache, len(records), compute_rows, "encoder train")   # resumes after an interruption
"""

from __future__ import annotations

import hashlib
import json
import sys
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


def read_split_manifest(path: Path, who: str, hint: str, taxonomy: Any = None, fatal: tuple[str, str] | None = None):
    """The manifest at ``path`` (``data.manifest.Manifest``), its bad lines reported on stderr as ``[who]`` and
    skipped. A missing file raises FileNotFoundError ending in ``hint`` (what the folder must hold, how to build it).
    ``fatal = (marker, what)``: bad lines whose message contains ``marker`` raise ValueError saying ``what`` instead."""
    from data.manifest import format_errors, read_manifest

    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {hint}")
    m = read_manifest(path) if taxonomy is None else read_manifest(path, taxonomy)
    if fatal is not None:
        bad = [e for e in m.errors if fatal[0] in e.message]
        if bad:
            raise ValueError(f"{path}: {len(bad)} lines have {fatal[1]} (fix them or drop them):\n{format_errors(bad, 10)}")
    if m.errors:
        print(f"[{who}] {path}: skipped {len(m.errors)} bad lines\n{format_errors(m.errors, 10)}", file=sys.stderr)
    return m


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
