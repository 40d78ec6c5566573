"""The manifest format (JSON Lines, see ../shared/EVALUATION.md) and the dataset schema of every hotline
speech corpus.

A manifest holds one call or message a line: ``id`` (required, unique), ``audio`` (a WAV/FLAC path relative
to the manifest's folder), ``text``, optional labels (``dialect``, ``emotion``, ``intent``, ``is_complaint``,
``slots``, ``caller``) and any other fields, which are kept but not checked. Reading never stops at a bad
line: it is reported with its line number and skipped.

The dataset schema (:data:`CORPUS_COLUMNS`, :func:`corpus_features`) is the one set of columns that the
synthetic corpus and every corpus adapter produce, so that training code reads them all the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from models.taxonomy import DEFAULT_TAXONOMY, Taxonomy, UnknownLabelError

if TYPE_CHECKING:  # datasets is imported lazily: reading a manifest must stay cheap for the service
    import datasets

HASH_CHARS = 16  # hex digits of the sha256 kept as a manifest's version
ERRORS_SHOWN = 50  # lines of errors that format_errors prints before summarising the rest

# Slot values after normalisation (EVALUATION.md): the pattern a value must match, and how to say it.
SLOT_PATTERNS: dict[str, tuple[re.Pattern[str], str]] = {
    "phone": (re.compile(r"\d{11}"), "an 11-digit mobile number such as '13800123456'"),
    "order_id": (re.compile(r"\d+"), "a string of digits such as '20240518001'"),
    "amount": (
        re.compile(r"\d+(\.\d+)?"),
        "yuan as digits with an optional decimal point, no unit, e.g. '50' or '99.5'",
    ),
}
_STRING_FIELDS = ("audio", "text", "caller", "speaker", "source", "split")  # optional, a string when present
_LABEL_FIELDS = ("dialect", "emotion", "intent")  # optional, checked against the taxonomy


@dataclass(frozen=True)
class ManifestError:
    line: int  # 1-based line number in the manifest file
    message: str  # what was wrong and how to fix it

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class Manifest:
    path: Path | None  # the file read, or None for records built in memory
    records: list[dict] = field(default_factory=list)  # valid records in input order, plus 'audio_path'
    errors: list[ManifestError] = field(default_factory=list)  # lines that were skipped, with reasons

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):
        return iter(self.records)


# -- validation ---------------------------------------------------------------------------------------
def validate_record(rec: dict, taxonomy: Taxonomy = DEFAULT_TAXONOMY) -> dict:
    """Check one record against the contract; return a copy with ``is_complaint`` derived from ``intent``
    when absent. Raises ValueError saying which field is wrong and what it should be. A label that is
    null counts as absent; fields the contract does not know are kept unchecked."""
    if not isinstance(rec, dict):
        raise ValueError(f"expected a JSON object {{\"id\": ..., ...}}, got {type(rec).__name__}")
    out = dict(rec)
    rid = out.get("id")
    if rid is None:
        raise ValueError("missing 'id': every line needs a unique string id")
    if not isinstance(rid, str) or not rid.strip():
        raise ValueError(f"'id' must be a non-empty string, got {rid!r}; quote numeric ids (\"id\": \"{rid}\")")
    where = f"record {rid!r}"

    for key in _STRING_FIELDS:
        value = out.get(key)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{where}: '{key}' must be a string, got {type(value).__name__} {value!r}")
    if out.get("audio") == "":
        raise ValueError(f"{where}: 'audio' is empty; give the path of the audio file or leave the field out")
    if out.get("audio") is None and out.get("text") is None:
        raise ValueError(f"{where}: has neither 'audio' nor 'text'; a line needs a recording or a message")

    for kind in _LABEL_FIELDS:
        value = out.get(kind)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ValueError(f"{where}: '{kind}' must be a string label, got {type(value).__name__} {value!r}")
        try:
            taxonomy.check(kind, value)
        except UnknownLabelError as exc:
            raise ValueError(f"{where}: {exc}") from None

    intent = out.get("intent")
    complaint = out.get("is_complaint")
    if complaint is not None and not isinstance(complaint, bool):
        raise ValueError(f"{where}: 'is_complaint' must be true or false, got {complaint!r}")
    if intent is not None:
        derived = taxonomy.is_complaint(intent)
        if complaint is None:
            out["is_complaint"] = derived
        elif complaint != derived:
            raise ValueError(
                f"{where}: 'is_complaint' is {str(complaint).lower()} but intent {intent!r} is "
                f"{'a complaint' if derived else 'not a complaint'}; fix one of them or drop 'is_complaint' "
                "(it is derived from the intent)"
            )

    slots = out.get("slots")
    if slots is not None:
        if not isinstance(slots, dict):
            raise ValueError(f"{where}: 'slots' must be an object of slot name -> value, got {type(slots).__name__}")
        for name, value in slots.items():
            try:
                taxonomy.check("slot", name)
            except UnknownLabelError as exc:
                raise ValueError(f"{where}: {exc}") from None
            _check_slot(where, name, value)

    duration = out.get("duration_s")
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, (int, float)) or duration < 0):
        raise ValueError(f"{where}: 'duration_s' must be a non-negative number of seconds, got {duration!r}")
    return out


def _check_slot(where: str, name: str, value: object) -> None:
    if not isinstance(value, str):
        raise ValueError(
            f"{where}: slot {name!r} must be a string, got {type(value).__name__} {value!r}; quote it (\"{value}\")"
        )
    if name in SLOT_PATTERNS:
        pattern, expected = SLOT_PATTERNS[name]
        if not pattern.fullmatch(value):
            raise ValueError(f"{where}: slot {name!r} is {value!r}; expected {expected}")
    elif not value.strip():
        raise ValueError(f"{where}: slot {name!r} is empty; drop the slot or give its value")


# -- reading and writing ------------------------------------------------------------------------------
def read_manifest(
    path: str | os.PathLike, taxonomy: Taxonomy = DEFAULT_TAXONOMY, check_audio: bool = False
) -> Manifest:
    """Read a JSON Lines manifest. Bad lines are reported in ``errors`` and skipped, never raised; a missing
    manifest raises FileNotFoundError. Each record gets ``audio_path``: the absolute path of its audio
    (relative paths resolved against the manifest's folder), or None for a text message. With
    ``check_audio`` a line whose audio file does not exist is an error too."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a manifest file" if path.is_dir() else "not found"
        raise FileNotFoundError(f"manifest {path} {what}; pass the path of a .jsonl file (one JSON object a line)")
    base = os.path.abspath(path.parent)
    manifest = Manifest(path=path)
    seen: dict[str, int] = {}
    with path.open("rb") as f:
        for number, data in enumerate(f, start=1):
            try:
                line = data.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                manifest.errors.append(
                    ManifestError(number, f"not UTF-8 (byte {exc.start + 1}); save the manifest as UTF-8")
                )
                continue
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                manifest.errors.append(
                    ManifestError(
                        number,
                        f"not valid JSON ({exc.msg} at column {exc.colno}); each line must be one JSON object",
                    )
                )
                continue
            try:
                rec = validate_record(raw, taxonomy)
            except ValueError as exc:
                manifest.errors.append(ManifestError(number, str(exc)))
                continue
            rid = rec["id"]
            if rid in seen:
                manifest.errors.append(
                    ManifestError(number, f"duplicate id {rid!r} (first on line {seen[rid]}); ids must be unique")
                )
                continue
            audio = rec.get("audio")
            rec["audio_path"] = os.path.normpath(os.path.join(base, audio)) if audio else None
            if check_audio and audio and not os.path.isfile(rec["audio_path"]):
                manifest.errors.append(
                    ManifestError(
                        number,
                        f"record {rid!r}: audio file {rec['audio_path']} not found ('audio' is {audio!r}, "
                        f"resolved against the manifest's folder {base})",
                    )
                )
                continue
            seen[rid] = number
            manifest.records.append(rec)
    return manifest


def write_manifest(records: Iterable[dict], path: str | os.PathLike) -> None:
    """Write records as JSON Lines (UTF-8, non-ASCII as is), dropping 'audio_path'. Where a record has an
    ``audio_path`` and a relative ``audio``, ``audio`` is rewritten relative to the new manifest's folder so
    that the file points at the same recordings wherever it is written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = os.path.abspath(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for rec in records:
            out = {k: v for k, v in rec.items() if k != "audio_path"}
            audio_path = rec.get("audio_path")
            if audio_path and not os.path.isabs(out.get("audio") or "/"):
                try:
                    out["audio"] = Path(os.path.relpath(audio_path, base)).as_posix()
                except ValueError:  # another drive on Windows: keep the absolute path
                    out["audio"] = str(audio_path)
            elif audio_path and not out.get("audio"):
                out["audio"] = str(audio_path)
            f.write(json.dumps(out, ensure_ascii=False) + "\n")
    tmp.replace(path)


def manifest_hash(path: str | os.PathLike) -> str:
    """First 16 hex digits of the sha256 of the manifest file's bytes: the dataset version logged to MLflow.
    (It covers the manifest, not the audio files it points to.)"""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:HASH_CHARS]


def format_errors(errors: Sequence[ManifestError], limit: int | None = ERRORS_SHOWN) -> str:
    """One "line N: ..." row per error, the first ``limit`` of them, then a count of the rest."""
    shown = list(errors) if limit is None else list(errors)[:limit]
    rows = [str(e) for e in shown]
    if len(errors) > len(shown):
        rows.append(f"... and {len(errors) - len(shown)} more bad lines")
    return "\n".join(rows)


# -- the dataset schema -------------------------------------------------------------------------------
# Columns of every hotline speech dataset, in order. Labels a corpus lacks are None.
# 'slots' is a JSON string of the slots object ("{}" if none): a datasets struct column needs the same keys
# in every row, while slots vary per record and per taxonomy; decode it with `json.loads` (see decode_slots).
CORPUS_COLUMNS: tuple[str, ...] = (
    "id",  # string: unique utterance id
    "audio",  # datasets.Audio(sampling_rate=SAMPLE_RATE): decoded and resampled to 16 kHz on access
    "text",  # string: reference transcript
    "dialect",  # string: a taxonomy dialect, or None
    "emotion",  # string: a taxonomy emotion, or None
    "intent",  # string: a taxonomy intent, or None
    "is_complaint",  # bool, or None where the intent is unknown
    "slots",  # string: JSON object of slot name -> value, "{}" if none
    "speaker",  # string: speaker id within its source, or None
    "source",  # string: the corpus the record came from
    "duration_s",  # float64 seconds, or None where not known without decoding
    "split",  # string: train / validation / test, or None
)
SPLIT_ORDER = ("train", "validation", "test")  # order of splits in a DatasetDict; others follow sorted


def corpus_features() -> "datasets.Features":
    """The datasets Features of :data:`CORPUS_COLUMNS`."""
    import datasets

    from data.audio import SAMPLE_RATE

    string = datasets.Value("string")
    features = {
        "id": string,
        "audio": datasets.Audio(sampling_rate=SAMPLE_RATE),
        "text": string,
        "dialect": string,
        "emotion": string,
        "intent": string,
        "is_complaint": datasets.Value("bool"),
        "slots": string,
        "speaker": string,
        "source": string,
        "duration_s": datasets.Value("float64"),
        "split": string,
    }
    assert tuple(features) == CORPUS_COLUMNS
    return datasets.Features(features)


def decode_slots(value: str | None) -> dict:
    """The slots object from a dataset row's 'slots' column."""
    return json.loads(value) if value else {}


def _row(rec: dict) -> dict:
    audio = rec.get("audio_path")
    if audio is None and rec.get("audio"):
        if not os.path.isabs(rec["audio"]):
            raise ValueError(
                f"record {rec.get('id')!r} has a relative 'audio' {rec['audio']!r} and no 'audio_path'; "
                "read it with read_manifest (which resolves paths) or set 'audio_path' to the absolute path"
            )
        audio = rec["audio"]
    complaint = rec.get("is_complaint")
    return {
        "id": str(rec["id"]),
        "audio": str(audio) if audio is not None else None,
        "text": rec.get("text"),
        "dialect": rec.get("dialect"),
        "emotion": rec.get("emotion"),
        "intent": rec.get("intent"),
        "is_complaint": bool(complaint) if complaint is not None else None,
        "slots": json.dumps(rec.get("slots") or {}, ensure_ascii=False, sort_keys=True),
        "speaker": None if rec.get("speaker") is None else str(rec["speaker"]),
        "source": rec.get("source"),
        "duration_s": None if rec.get("duration_s") is None else float(rec["duration_s"]),
        "split": rec.get("split"),
    }


def records_to_dataset(records: Sequence[dict]) -> "datasets.Dataset":
    """A datasets.Dataset in the corpus schema from records as read_manifest or an adapter returns them
    (``audio_path`` absolute). Audio is not decoded here; it is decoded at 16 kHz when a row is read."""
    import datasets

    rows = [_row(r) for r in records]
    columns = {name: [row[name] for row in rows] for name in CORPUS_COLUMNS}
    return datasets.Dataset.from_dict(columns, features=corpus_features())


def records_to_dataset_dict(
    records: Sequence[dict], split_key: str = "split", default_split: str | None = None
) -> "datasets.DatasetDict":
    """One dataset per value of ``record[split_key]`` (train, validation, test first). Records without a split
    go to ``default_split``; if that is None they raise ValueError."""
    import datasets

    groups: dict[str, list[dict]] = {}
    missing = []
    for rec in records:
        split = rec.get(split_key) or default_split
        if split is None:
            missing.append(rec.get("id"))
            continue
        groups.setdefault(str(split), []).append({**rec, "split": str(split)})
    if missing:
        raise ValueError(
            f"{len(missing)} records have no {split_key!r} (first: {missing[:3]}); set it in the manifest or "
            "pass default_split='train' (or another split name)"
        )
    names = [s for s in SPLIT_ORDER if s in groups] + sorted(s for s in groups if s not in SPLIT_ORDER)
    return datasets.DatasetDict({s: records_to_dataset(groups[s]) for s in names})
