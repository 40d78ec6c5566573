"""The manifest format of EVALUATION.md: bad lines reported with line numbers and skipped, round trips,
hashes, and the dataset schema built from records."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data.audio import SAMPLE_RATE, load_audio
from data.manifest import (
    CORPUS_COLUMNS,
    ManifestError,
    decode_slots,
    format_errors,
    manifest_hash,
    read_manifest,
    records_to_dataset,
    records_to_dataset_dict,
    validate_record,
    write_manifest,
)

REALSPEECH = Path(__file__).resolve().parents[1].parent / "shared" / "realspeech" / "manifest.jsonl"


def _wav(path: Path, sr: int = 16000, seconds: float = 0.3) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(sr * seconds)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr)


GOOD_1 = {
    "id": "c1",
    "audio": "audio/c1.wav",
    "text": "我的快递三天了还没到，订单号20240518001",
    "dialect": "mandarin",
    "emotion": "angry",
    "intent": "logistics_delay",
    "slots": {"order_id": "20240518001", "phone": "13800123456", "amount": "99.5", "product": "扫地机器人"},
    "caller": "13800123456",
    "template_id": "t-7",  # unknown fields are kept
}
GOOD_2 = {"id": "m1", "text": "谢谢你们的师傅，服务很好", "intent": "praise"}  # a text message, no audio


def _lines() -> list[str]:
    return [
        json.dumps(GOOD_1, ensure_ascii=False),  # 1
        "",  # 2: blank, skipped silently
        '{"id": "broken", "text": "少了括号"',  # 3: bad JSON
        json.dumps({"text": "没有编号", "intent": "praise"}, ensure_ascii=False),  # 4: missing id
        json.dumps({"id": "c1", "text": "重复"}, ensure_ascii=False),  # 5: duplicate id
        json.dumps({"id": "e1", "text": "x", "emotion": "furious"}),  # 6: unknown emotion
        json.dumps({"id": "k1", "text": "x", "intent": "praise", "is_complaint": True}),  # 7: inconsistent
        json.dumps({"id": "p1", "text": "x", "slots": {"phone": "1380012345"}}),  # 8: phone of 10 digits
        json.dumps(GOOD_2, ensure_ascii=False),  # 9
        json.dumps({"id": 17, "text": "x"}),  # 10: id not a string
        json.dumps({"id": "a1", "text": "x", "slots": {"amount": "50元"}}, ensure_ascii=False),  # 11: unit in amount
        json.dumps({"id": "s1", "text": "x", "slots": {"colour": "red"}}),  # 12: unknown slot
        json.dumps({"id": "n1", "dialect": "mandarin"}),  # 13: neither audio nor text
        json.dumps(["not", "an", "object"]),  # 14
    ]


@pytest.fixture
def messy(tmp_path) -> Path:
    _wav(tmp_path / "audio" / "c1.wav")
    path = tmp_path / "calls.jsonl"
    path.write_text("\n".join(_lines()) + "\n", encoding="utf-8")
    return path


def test_bad_lines_reported_with_line_numbers_good_lines_kept(messy):
    m = read_manifest(messy, check_audio=True)
    assert [r["id"] for r in m.records] == ["c1", "m1"]
    by_line = {e.line: e.message for e in m.errors}
    assert sorted(by_line) == [3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14]
    assert "not valid JSON" in by_line[3]
    assert "missing 'id'" in by_line[4]
    assert "duplicate id 'c1' (first on line 1)" in by_line[5]
    assert "unknown emotion label 'furious'" in by_line[6] and "neutral" in by_line[6]
    assert "'is_complaint' is true but intent 'praise' is not a complaint" in by_line[7]
    assert "slot 'phone' is '1380012345'; expected an 11-digit" in by_line[8]
    assert "quote numeric ids" in by_line[10]
    assert "slot 'amount' is '50元'" in by_line[11]
    assert "unknown slot label 'colour'" in by_line[12]
    assert "neither 'audio' nor 'text'" in by_line[13]
    assert "expected a JSON object" in by_line[14]
    text = format_errors(m.errors)
    assert text.splitlines()[0].startswith("line 3: not valid JSON")
    assert len(text.splitlines()) == 11
    assert format_errors(m.errors, limit=2).splitlines()[-1] == "... and 9 more bad lines"


def test_records_are_completed_not_changed(messy, tmp_path):
    c1, m1 = read_manifest(messy).records
    assert c1["audio"] == "audio/c1.wav"  # kept as written
    assert c1["audio_path"] == str((tmp_path / "audio" / "c1.wav").resolve())
    assert c1["is_complaint"] is True  # derived from the intent
    assert c1["template_id"] == "t-7" and c1["slots"]["product"] == "扫地机器人"
    assert m1["audio_path"] is None and m1["is_complaint"] is False


def test_check_audio_reports_missing_file(tmp_path):
    path = tmp_path / "m.jsonl"
    write_manifest([{"id": "x", "audio": "audio/x.wav", "text": "喂"}], path)
    assert len(read_manifest(path).records) == 1  # not checked by default
    m = read_manifest(path, check_audio=True)
    assert m.records == [] and m.errors[0].line == 1
    assert "audio file" in m.errors[0].message and "x.wav not found" in m.errors[0].message


def test_missing_manifest_raises_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"manifest .*nope\.jsonl not found"):
        read_manifest(tmp_path / "nope.jsonl")


def test_round_trip_keeps_non_ascii_as_is(messy, tmp_path):
    m = read_manifest(messy)
    out = tmp_path / "copy.jsonl"
    write_manifest(m.records, out)
    raw = out.read_text(encoding="utf-8")
    assert "扫地机器人" in raw and "\\u" not in raw and "audio_path" not in raw
    back = read_manifest(out, check_audio=True)
    assert back.errors == [] and back.records == m.records


def test_write_elsewhere_keeps_audio_reachable(messy, tmp_path):
    m = read_manifest(messy)
    out = tmp_path / "exports" / "deep" / "m.jsonl"
    write_manifest(m.records, out)
    first = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert first["audio"] == "../../audio/c1.wav"
    back = read_manifest(out, check_audio=True)
    assert back.errors == [] and back.records[0]["audio_path"] == m.records[0]["audio_path"]


def test_manifest_hash(messy, tmp_path):
    h = manifest_hash(messy)
    assert len(h) == 16 and int(h, 16) >= 0
    assert manifest_hash(messy) == h
    other = tmp_path / "other.jsonl"
    other.write_bytes(messy.read_bytes() + b"\n")
    assert manifest_hash(other) != h


def test_validate_record_messages():
    assert validate_record({"id": "x", "text": "退款", "intent": "refund_dispute"})["is_complaint"] is True
    assert validate_record({"id": "x", "text": "t", "dialect": None})["dialect"] is None  # null = unlabelled
    with pytest.raises(ValueError, match="'order_id' is '12ab'"):
        validate_record({"id": "x", "text": "t", "slots": {"order_id": "12ab"}})
    with pytest.raises(ValueError, match="slot 'phone' must be a string"):
        validate_record({"id": "x", "text": "t", "slots": {"phone": 13800123456}})
    with pytest.raises(ValueError, match="slot 'product' is empty"):
        validate_record({"id": "x", "text": "t", "slots": {"product": " "}})
    with pytest.raises(ValueError, match="unknown dialect label 'klingon'"):
        validate_record({"id": "x", "text": "t", "dialect": "klingon"})
    with pytest.raises(ValueError, match="duration_s"):
        validate_record({"id": "x", "text": "t", "duration_s": "long"})
    assert ManifestError(3, "bad").__str__() == "line 3: bad"


def test_records_to_dataset_schema(messy):
    records = read_manifest(messy, check_audio=True).records
    ds = records_to_dataset(records)
    assert tuple(ds.column_names) == CORPUS_COLUMNS
    row = ds[0]
    assert row["id"] == "c1" and row["intent"] == "logistics_delay" and row["is_complaint"] is True
    assert decode_slots(row["slots"])["product"] == "扫地机器人"
    assert row["speaker"] is None and row["split"] is None  # labels the manifest lacks are None
    audio = row["audio"]
    assert audio["sampling_rate"] == SAMPLE_RATE and len(audio["array"]) == int(0.3 * SAMPLE_RATE)
    text_only = ds[1]
    assert text_only["audio"] is None and decode_slots(text_only["slots"]) == {}


def test_records_to_dataset_dict_splits(tmp_path):
    _wav(tmp_path / "a.wav")
    recs = [
        {"id": f"u{i}", "audio_path": str(tmp_path / "a.wav"), "text": "喂", "split": s}
        for i, s in enumerate(["test", "train", "train", "extra", "validation"])
    ]
    dd = records_to_dataset_dict(recs)
    assert list(dd) == ["train", "validation", "test", "extra"]
    assert len(dd["train"]) == 2 and dd["train"]["split"] == ["train", "train"]
    with pytest.raises(ValueError, match="no 'split'.*default_split"):
        records_to_dataset_dict([{"id": "z", "audio_path": str(tmp_path / "a.wav"), "text": "x"}])
    dd = records_to_dataset_dict([{"id": "z", "audio_path": str(tmp_path / "a.wav")}], default_split="test")
    assert list(dd) == ["test"] and dd["test"][0]["split"] == "test"
    with pytest.raises(ValueError, match="relative 'audio'.*no 'audio_path'"):
        records_to_dataset([{"id": "r", "audio": "a.wav"}])


@pytest.mark.skipif(not REALSPEECH.is_file(), reason=f"{REALSPEECH} not present (shared evaluation data)")
def test_realspeech_manifest_reads_clean():
    m = read_manifest(REALSPEECH, check_audio=True)
    assert m.errors == [], format_errors(m.errors)
    assert len(m.records) == 236
    dialects = {r["dialect"] for r in m.records}
    assert dialects == {"mandarin", "cantonese", "southwestern", "wu", "min"}
    for rec in (m.records[0], m.records[100], m.records[-1]):
        audio = load_audio(rec["audio_path"])
        assert audio.dtype == np.float32 and audio.ndim == 1
        assert abs(len(audio) / SAMPLE_RATE - rec["duration_s"]) < 0.05
