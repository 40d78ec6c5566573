"""Where the text signal's transcripts come from: a pluggable source per record.

A source is one of

- ``"reference"``: the record's own ``text`` (the corpus transcript: an upper bound);
- ``"asr_noise"``: the reference with simulated recognition errors (:func:`data.asr_noise.add_asr_noise`,
  :data:`~data.asr_noise.DEFAULT_ASR_NOISE`), seeded by the record id, so every run sees the same errors;
- a path to a JSON Lines file of ``{"id", "transcript"}`` (``hotline predict`` output) or ``{"id", "text"}``:
  real recogniser output;
- in code, a mapping ``id -> text`` or a callable ``record -> text``.

:func:`transcripts` turns a source into one text per record; a record the source has no text for is an error
that names the source, so a partial ASR file cannot silently score as empty transcripts.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Mapping, Sequence, Union

REFERENCE = "reference"
ASR_NOISE = "asr_noise"
TranscriptSource = Union[str, os.PathLike, Mapping[str, str], Callable[[Mapping], str]]


def noised(text: str, record_id: str, seed: int = 0) -> str:
    """``text`` through the simulated recogniser, seeded by ``record_id`` and ``seed``."""
    from data.asr_noise import DEFAULT_ASR_NOISE, add_asr_noise

    s = int(hashlib.sha256(f"{seed}:{record_id}".encode()).hexdigest()[:12], 16)
    return add_asr_noise(text or "", rng=s, options=DEFAULT_ASR_NOISE).text


def read_transcripts(path: str | os.PathLike) -> dict[str, str]:
    """``id -> transcript`` of a JSON Lines file (``transcript`` wins over ``text``; lines without either skipped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: transcript file not found (evaluation.transcripts: 'reference', 'asr_noise' "
                                "or a JSON Lines file of id + transcript, e.g. `hotline predict` output)")
    out: dict[str, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not JSON ({e})") from e
        text = rec.get("transcript", rec.get("text"))
        if "id" in rec and text is not None:
            out[str(rec["id"])] = str(text)
    return out


def resolve(source: TranscriptSource, seed: int = 0) -> Callable[[Mapping], str]:
    """A function ``record -> transcript`` for ``source`` (see the module docstring)."""
    if callable(source) and not isinstance(source, (str, os.PathLike)):
        return source
    if isinstance(source, Mapping):
        table = dict(source)
        return lambda r: _lookup(table, r, "the transcript mapping")
    if str(source) == REFERENCE:
        return lambda r: r.get("text") or ""
    if str(source) == ASR_NOISE:
        return lambda r: noised(r.get("text") or "", str(r["id"]), seed)
    table = read_transcripts(source)
    return lambda r: _lookup(table, r, str(source))


def _lookup(table: Mapping[str, str], record: Mapping, where: str) -> str:
    try:
        return table[str(record["id"])]
    except KeyError:
        raise KeyError(f"{where} has no transcript for id {record['id']!r}; transcribe every record of the split") from None


def transcripts(records: Sequence[Mapping], source: TranscriptSource, seed: int = 0) -> list[str]:
    """One transcript per record from ``source``."""
    fn = resolve(source, seed)
    return [fn(r) for r in records]


def source_name(source: TranscriptSource) -> str:
    """A short metric-safe name of a source: ``reference``, ``asr_noise``, or the file's stem."""
    if isinstance(source, (str, os.PathLike)):
        s = str(source)
        if s in (REFERENCE, ASR_NOISE):
            return s
        return "".join(c if c.isalnum() else "_" for c in Path(s).stem)
    return "custom"
