"""Real speech corpora in their standard layouts -> manifest records -> the corpus dataset schema.

Each adapter reads a folder and returns an :class:`AdapterResult`: records shaped like
:func:`data.manifest.read_manifest`'s (``id``, ``audio`` as written in the corpus, absolute
``audio_path``, ``text``, labels where the corpus has them, ``speaker``, ``source``, ``split``) and a list
of what was skipped and why. A missing corpus folder or index file (``wav.scp``, the TSV) raises
FileNotFoundError; anything missing inside the corpus (a wav, a transcript line, a side file) is reported in
``skipped`` and never stops the run. Records come in a deterministic order (sorted by path or id). No audio
is decoded here: :func:`data.manifest.records_to_dataset` decodes lazily.

    result = load_corpus("aishell", "/data/data_aishell")
    print(result.summary())
    dataset = records_to_dataset_dict(result.records)
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from data.manifest import read_manifest, validate_record
from models.taxonomy import DEFAULT_TAXONOMY, Taxonomy

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".opus")  # files the emotion-folder adapter picks up

# Split names used by corpora -> hotline's split names.
SPLIT_NAMES = {
    "train": "train",
    "dev": "validation",
    "validation": "validation",
    "valid": "validation",
    "evaluation": "validation",
    "test": "test",
}

# Common Voice locale -> dialect. Locales not listed (zh-CN, zh-TW, ...) are read as Mandarin: Common Voice
# Chinese is read-aloud standard written Chinese, so a regional accent does not make it another dialect.
CV_LOCALE_DIALECTS = {"zh-HK": "cantonese", "yue": "cantonese", "zh-CN": "mandarin", "zh-TW": "mandarin"}
# Words in the free-text 'accents' column that mark Cantonese speech (checked case-insensitively).
CV_CANTONESE_ACCENTS = ("cantonese", "粤语", "粵語", "廣東話", "广东话", "香港")

# Emotion-folder names (case-insensitive) -> taxonomy emotion, or None to drop the folder's files.
# CASIA: angry fear happy neutral sad surprise; ESD: Angry Happy Neutral Sad Surprise. The taxonomy has no
# surprise (a hotline caller's surprise is not a routing signal); fear is the caller's anxiety.
DEFAULT_EMOTION_MAPPING: dict[str, str | None] = {
    "angry": "angry",
    "anger": "angry",
    "fear": "anxious",
    "anxious": "anxious",
    "happy": "happy",
    "neutral": "neutral",
    "sad": "sad",
    "surprise": None,
}


@dataclass
class AdapterResult:
    records: list[dict]  # manifest records, deterministic order, absolute 'audio_path'
    skipped: list[str] = field(default_factory=list)  # one line per problem: what was skipped and why
    dropped: dict[str, int] = field(default_factory=dict)  # label -> files left out on purpose (no taxonomy label)

    def summary(self) -> str:
        """A few lines for a terminal: counts, then the first problems."""
        rows = [f"{len(self.records)} records, {len(self.skipped)} problems"]
        for label, n in sorted(self.dropped.items()):
            rows.append(f"dropped {n} files labelled {label!r} (no taxonomy label)")
        rows += [f"  {s}" for s in self.skipped[:20]]
        if len(self.skipped) > 20:
            rows.append(f"  ... and {len(self.skipped) - 20} more")
        return "\n".join(rows)


# -- helpers ------------------------------------------------------------------------------------------
_CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")


def join_words(words: list[str]) -> str:
    """Words of a segmented Chinese transcript joined back: no space next to a Chinese character, one space
    between two Latin words ("你 好 iphone 十 pro max" -> "你好iphone十pro max")."""
    out = ""
    for word in words:
        if out and not _CJK.match(out[-1]) and not _CJK.match(word[0]):
            out += " "
        out += word
    return out


def _root(path: str | os.PathLike, what: str) -> Path:
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"{what}: folder {root} not found; pass the corpus root folder")
    return root


def _abs(path: Path) -> str:
    return os.path.normpath(os.path.abspath(path))


def _finish(candidates: list[dict], skipped: list[str], taxonomy: Taxonomy) -> list[dict]:
    """Validate records against the manifest contract; drop (and report) invalid ones and duplicate ids."""
    records, seen = [], set()
    for rec in candidates:
        try:
            rec = validate_record(rec, taxonomy)
        except ValueError as exc:
            skipped.append(f"{rec.get('audio_path') or rec.get('id')}: {exc}")
            continue
        if rec["id"] in seen:
            skipped.append(f"{rec['audio_path']}: duplicate id {rec['id']!r}; kept the first")
            continue
        seen.add(rec["id"])
        records.append(rec)
    return records


def _read_table(path: Path, skipped: list[str], what: str) -> dict[str, str]:
    """A Kaldi-style "key value..." file as {key: rest of line}; None-safe: a missing file is reported."""
    table: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        skipped.append(f"{path}: not found; {what}")
        return table
    except UnicodeDecodeError as exc:
        skipped.append(f"{path}: not UTF-8 ({exc.reason}); convert it with iconv; {what}")
        return table
    for number, line in enumerate(text.splitlines(), start=1):
        parts = line.strip().split(maxsplit=1)
        if not parts:
            continue
        if len(parts) == 1:
            skipped.append(f"{path}:{number}: {parts[0]!r} has no value; expected 'KEY VALUE'")
            continue
        table[parts[0]] = parts[1].strip()
    return table


# -- AISHELL-1 ----------------------------------------------------------------------------------------
def aishell(root: str | os.PathLike, taxonomy: Taxonomy = DEFAULT_TAXONOMY, source: str = "aishell-1") -> AdapterResult:
    """AISHELL-1 (``data_aishell``): ``wav/{train,dev,test}/SPKID/*.wav`` and
    ``transcript/aishell_transcript_v0.8.txt`` ("UTTID 字 字 字"; the spaces between words are removed).
    Split from the folder (dev -> validation), speaker from the folder, dialect mandarin. Wavs without a
    transcript line are skipped (as the AISHELL-1 recipe does); without the transcript file records have no
    text. Accepts the folder that holds ``data_aishell`` too."""
    root = _root(root, "aishell")
    if not (root / "wav").is_dir() and (root / "data_aishell" / "wav").is_dir():
        root = root / "data_aishell"
    skipped: list[str] = []
    wav_dir = root / "wav"
    if not wav_dir.is_dir():
        skipped.append(f"{wav_dir}: not found; expected wav/{{train,dev,test}}/SPKID/*.wav")
        return AdapterResult([], skipped)
    for archive in sorted(wav_dir.glob("*.tar.gz")):
        skipped.append(f"{archive}: not extracted; run `tar xzf {archive.name}` in {wav_dir}")

    transcript_file = root / "transcript" / "aishell_transcript_v0.8.txt"
    have_transcript = transcript_file.is_file()
    raw = _read_table(transcript_file, skipped, "records have no text")
    transcripts = {uid: join_words(words.split()) for uid, words in raw.items()}

    candidates = []
    for split_dir in sorted(p for p in wav_dir.iterdir() if p.is_dir()):
        split = SPLIT_NAMES.get(split_dir.name)
        if split is None:
            skipped.append(f"{split_dir}: unknown split folder {split_dir.name!r}; expected train, dev or test")
            continue
        for wav in sorted(split_dir.glob("*/*.wav")):
            uid = wav.stem
            if have_transcript and uid not in transcripts:
                skipped.append(f"{wav}: no line for {uid} in {transcript_file.name}; skipped")
                continue
            rec = {
                "id": uid,
                "audio": wav.relative_to(root).as_posix(),
                "audio_path": _abs(wav),
                "dialect": "mandarin",
                "speaker": wav.parent.name,
                "source": source,
                "split": split,
            }
            if uid in transcripts:
                rec["text"] = transcripts[uid]
            candidates.append(rec)
    if not candidates:
        skipped.append(f"{wav_dir}: no wav files under wav/{{train,dev,test}}/SPKID/")
    return AdapterResult(_finish(candidates, skipped, taxonomy), skipped)


# -- Kaldi data directories ---------------------------------------------------------------------------
def kaldi(
    data_dir: str | os.PathLike, taxonomy: Taxonomy = DEFAULT_TAXONOMY, source: str | None = None
) -> AdapterResult:
    """A Kaldi data directory: ``wav.scp`` ("UTTID path"), ``text`` ("UTTID word word ..."), optional
    ``utt2spk``, ``utt2dialect``, ``utt2emotion``. Pipe entries ("UTTID cmd ... |") and archive offsets
    ("x.ark:123") are reported as unsupported and never run. Relative paths are resolved against the data
    directory, then its parent and grandparent (Kaldi recipes run from the egs folder). The split comes from
    the folder name (train, dev -> validation, test), else None."""
    data_dir = _root(data_dir, "kaldi")
    scp = data_dir / "wav.scp"
    if not scp.is_file():
        raise FileNotFoundError(f"kaldi: {scp} not found; pass a Kaldi data directory (wav.scp, text, utt2spk)")
    source = source or f"kaldi:{data_dir.name}"
    skipped: list[str] = []
    if (data_dir / "segments").is_file():
        skipped.append(
            f"{data_dir / 'segments'}: segmented recordings are not supported (wav.scp ids are recordings, not "
            "utterances); cut the segments into wav files first (e.g. Kaldi's extract-segments)"
        )
        return AdapterResult([], skipped)
    wavs = _read_table(scp, skipped, "")
    texts = _read_table(data_dir / "text", skipped, "records have no text")
    has_text = (data_dir / "text").is_file()
    spk = _read_table(data_dir / "utt2spk", [], "") if (data_dir / "utt2spk").is_file() else {}
    labels = {
        kind: _read_table(data_dir / f"utt2{kind}", skipped, "")
        for kind in ("dialect", "emotion")
        if (data_dir / f"utt2{kind}").is_file()
    }
    split = SPLIT_NAMES.get(data_dir.name)
    bases = [data_dir, data_dir.parent, data_dir.parent.parent]

    candidates = []
    for uid in sorted(wavs):
        where = wavs[uid]
        if where.endswith("|"):
            skipped.append(
                f"{scp}: {uid}: pipe command ({where[:60]!r}) not supported and not run; "
                "write the audio to wav files and list their paths"
            )
            continue
        if re.search(r"\.ark:\d+$", where):
            skipped.append(f"{scp}: {uid}: archive offset {where!r} not supported; export the utterance as a wav file")
            continue
        path = Path(where)
        if not path.is_absolute():
            path = next((b / where for b in bases if (b / where).is_file()), data_dir / where)
        if not path.is_file():
            skipped.append(f"{scp}: {uid}: audio file {where} not found (looked in {', '.join(map(str, bases))})")
            continue
        if has_text and uid not in texts:
            skipped.append(f"{scp}: {uid}: no line in {data_dir / 'text'}; skipped")
            continue
        rec = {"id": uid, "audio": where, "audio_path": _abs(path), "source": source}
        if uid in texts:
            rec["text"] = join_words(texts[uid].split())
        if uid in spk:
            rec["speaker"] = spk[uid]
        for kind, table in labels.items():
            value = table.get(uid)
            if value is None:
                continue
            try:
                taxonomy.check(kind, value)
                rec[kind] = value
            except ValueError as exc:
                skipped.append(f"{data_dir / f'utt2{kind}'}: {uid}: {exc} Label left out, record kept")
        if split:
            rec["split"] = split
        candidates.append(rec)
    return AdapterResult(_finish(candidates, skipped, taxonomy), skipped)


# -- Mozilla Common Voice -----------------------------------------------------------------------------
def cv_dialect(locale: str | None, accents: str | None = None) -> str:
    """The dialect of a Common Voice clip: zh-HK/yue (or an accent naming Cantonese) -> cantonese, else mandarin."""
    if locale and CV_LOCALE_DIALECTS.get(locale) == "cantonese":
        return "cantonese"
    if accents and any(word in accents.lower() for word in CV_CANTONESE_ACCENTS):
        return "cantonese"
    return "mandarin"


def common_voice(
    root: str | os.PathLike,
    tsv: str = "validated.tsv",
    taxonomy: Taxonomy = DEFAULT_TAXONOMY,
    source: str | None = None,
) -> AdapterResult:
    """A Common Voice language folder: ``{tsv}`` (client_id, path, sentence, ..., accents, locale) and MP3 clips
    under ``clips/`` (not decoded here). Dialect from :func:`cv_dialect` with the ``locale`` column, or the
    folder name when there is none (``.../zh-HK``). Split from the TSV name (train, dev -> validation, test;
    validated.tsv has none)."""
    root = _root(root, "common_voice")
    table = root / tsv
    if not table.is_file():
        raise FileNotFoundError(f"common_voice: {table} not found; pass a Common Voice language folder and a TSV in it")
    skipped: list[str] = []
    folder_locale = root.name
    split = SPLIT_NAMES.get(Path(tsv).stem)
    candidates = []
    with table.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = {"client_id", "path", "sentence"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"common_voice: {table} lacks the columns {sorted(missing)}; is it a Common Voice TSV?")
        for number, row in enumerate(reader, start=2):
            clip = (row.get("path") or "").strip()
            if not clip:
                skipped.append(f"{table}:{number}: empty 'path'")
                continue
            audio = root / "clips" / clip
            if not audio.is_file():
                skipped.append(f"{table}:{number}: clip {audio} not found")
                continue
            locale = (row.get("locale") or "").strip() or folder_locale
            accents = row.get("accents") or row.get("accent") or ""
            rec = {
                "id": Path(clip).stem,
                "audio": f"clips/{clip}",
                "audio_path": _abs(audio),
                "text": (row.get("sentence") or "").strip(),
                "dialect": cv_dialect(locale, accents),
                "speaker": (row.get("client_id") or "").strip() or None,
                "source": source or f"common_voice:{locale}",
            }
            if split:
                rec["split"] = split
            candidates.append(rec)
    candidates.sort(key=lambda r: r["id"])
    return AdapterResult(_finish(candidates, skipped, taxonomy), skipped)


# -- one folder per emotion (CASIA, ESD) --------------------------------------------------------------
def emotion_folders(
    root: str | os.PathLike,
    mapping: Mapping[str, str | None] | None = None,
    taxonomy: Taxonomy = DEFAULT_TAXONOMY,
    dialect: str | None = None,
    source: str | None = None,
) -> AdapterResult:
    """Emotion corpora with one folder per label, at any depth: CASIA ``SPK/angry/201.wav``, ESD
    ``SPK/Angry/{train,evaluation,test}/*.wav``. Folder names are matched case-insensitively against
    ``mapping`` (default :data:`DEFAULT_EMOTION_MAPPING`: fear -> anxious; surprise -> None, i.e. dropped and
    counted in ``dropped``). The speaker is the folder above the emotion folder; the split a train/evaluation/
    test folder below it. Folders of audio without an emotion name are reported. ESD transcripts
    (``SPK/SPK.txt``, "UTTID<TAB>text<TAB>emotion") fill ``text``. ``dialect`` is set on every record when
    given (ESD also holds English speakers, so it is not assumed)."""
    root = _root(root, "emotion_folders")
    table = {k.lower(): v for k, v in (DEFAULT_EMOTION_MAPPING if mapping is None else mapping).items()}
    for folder, label in table.items():
        if label is not None:
            taxonomy.check("emotion", label)  # a mapping onto an unknown label is a caller's bug: raise
    source = source or root.name
    skipped: list[str] = []
    dropped: Counter[str] = Counter()
    unknown: Counter[Path] = Counter()
    transcripts: dict[Path, dict[str, str]] = {}  # speaker folder -> ESD transcript lines
    candidates = []
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    for path in files:
        parts = path.relative_to(root).parts[:-1]
        at = next((i for i in range(len(parts) - 1, -1, -1) if parts[i].lower() in table), None)
        if at is None:
            unknown[path.parent] += 1
            continue
        folder = parts[at].lower()
        label = table[folder]
        if label is None:
            dropped[folder] += 1
            continue
        speaker = parts[at - 1] if at > 0 else None
        split = next((SPLIT_NAMES[p.lower()] for p in parts[at + 1 :] if p.lower() in SPLIT_NAMES), None)
        rec = {
            "id": "-".join(path.relative_to(root).with_suffix("").parts),
            "audio": path.relative_to(root).as_posix(),
            "audio_path": _abs(path),
            "emotion": label,
            "source": source,
        }
        if speaker:
            rec["speaker"] = speaker
            spk_dir = root.joinpath(*parts[:at])
            if spk_dir not in transcripts:
                transcripts[spk_dir] = _esd_transcripts(spk_dir / f"{speaker}.txt", skipped)
            if path.stem in transcripts[spk_dir]:
                rec["text"] = transcripts[spk_dir][path.stem]
        if split:
            rec["split"] = split
        if dialect:
            rec["dialect"] = dialect
        candidates.append(rec)
    for folder, n in sorted(unknown.items()):
        skipped.append(
            f"{folder}: {n} audio files in a folder with no emotion name ({folder.name!r}); "
            f"known names: {', '.join(sorted(table))}; pass mapping={{'{folder.name}': 'neutral', ...}} to use them"
        )
    if not files:
        skipped.append(f"{root}: no audio files ({', '.join(AUDIO_SUFFIXES)}) found")
    return AdapterResult(_finish(candidates, skipped, taxonomy), skipped, dict(sorted(dropped.items())))


def _esd_transcripts(path: Path, skipped: list[str]) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = path.read_text(encoding="utf-16")
        except UnicodeError:
            skipped.append(f"{path}: transcript not UTF-8 or UTF-16; texts left out")
            return {}
    out = {}
    for line in text.splitlines():
        cols = line.split("\t")
        if len(cols) >= 2 and cols[0].strip() and cols[1].strip():
            out[cols[0].strip()] = cols[1].strip()
    return out


# -- a hotline manifest -------------------------------------------------------------------------------
def manifest(path: str | os.PathLike, taxonomy: Taxonomy = DEFAULT_TAXONOMY) -> AdapterResult:
    """A hotline JSON Lines manifest (read_manifest with audio checked); bad lines go to ``skipped``."""
    m = read_manifest(path, taxonomy=taxonomy, check_audio=True)
    return AdapterResult(m.records, [f"{path}: {e}" for e in m.errors])


ADAPTERS: dict[str, Callable[..., AdapterResult]] = {
    "aishell": aishell,
    "kaldi": kaldi,
    "common_voice": common_voice,
    "emotion_folders": emotion_folders,
    "manifest": manifest,
}


def load_corpus(kind: str, path: str | os.PathLike, **options) -> AdapterResult:
    """Run the adapter named ``kind`` (a key of :data:`ADAPTERS`) on ``path``; ``options`` go to the adapter."""
    if kind not in ADAPTERS:
        raise ValueError(f"unknown corpus kind {kind!r}; use one of {', '.join(ADAPTERS)}")
    return ADAPTERS[kind](path, **options)
