"""Corpus adapters on tiny fixture folders in the real layouts: records, reported problems, and the
dataset built from them decoding at 16 kHz."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data.adapters import (
    ADAPTERS,
    AdapterResult,
    aishell,
    common_voice,
    cv_dialect,
    emotion_folders,
    join_words,
    kaldi,
    load_corpus,
)
from data.audio import SAMPLE_RATE
from data.manifest import CORPUS_COLUMNS, records_to_dataset, records_to_dataset_dict, write_manifest


def _wav(path: Path, sr: int = 16000, seconds: float = 0.25, channels: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(sr * seconds)) / sr
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    sf.write(path, np.stack([tone] * channels, axis=1), sr, subtype="PCM_16")
    return path


# -- AISHELL-1 ----------------------------------------------------------------------------------------
@pytest.fixture
def aishell_root(tmp_path) -> Path:
    root = tmp_path / "data_aishell"
    _wav(root / "wav" / "train" / "S0002" / "BAC009S0002W0122.wav")
    _wav(root / "wav" / "train" / "S0002" / "BAC009S0002W0123.wav", sr=8000)
    _wav(root / "wav" / "dev" / "S0724" / "BAC009S0724W0121.wav", sr=44100, channels=2)
    _wav(root / "wav" / "test" / "S0764" / "BAC009S0764W0121.wav")
    _wav(root / "wav" / "test" / "S0764" / "BAC009S0764W0999.wav")  # no transcript line
    (root / "wav" / "S0900.tar.gz").write_bytes(b"")  # a speaker archive left unextracted
    (root / "transcript").mkdir()
    (root / "transcript" / "aishell_transcript_v0.8.txt").write_text(
        "BAC009S0002W0122 而 对 楼市 成交 抑制 作用 最 大 的 限 购\n"
        "BAC009S0002W0123 也 成为 地方 政府 的 眼中 钉\n"
        "BAC009S0724W0121 甚至 出现 交易 几乎 停滞 的 情况\n"
        "BAC009S0764W0121 苹果 iphone 十 pro max 降价\n"
        "BAC009S0999W0001 这 一 行 没有 音频\n",
        encoding="utf-8",
    )
    return root


def test_aishell_records(aishell_root):
    result = aishell(aishell_root.parent)  # the folder holding data_aishell works too
    recs = result.records
    assert [r["id"] for r in recs] == ["BAC009S0724W0121", "BAC009S0764W0121", "BAC009S0002W0122", "BAC009S0002W0123"]
    by_id = {r["id"]: r for r in recs}
    first = by_id["BAC009S0002W0122"]
    assert first["text"] == "而对楼市成交抑制作用最大的限购"
    assert first["split"] == "train" and first["speaker"] == "S0002" and first["dialect"] == "mandarin"
    assert first["source"] == "aishell-1" and first["audio"] == "wav/train/S0002/BAC009S0002W0122.wav"
    assert os.path.isabs(first["audio_path"]) and os.path.isfile(first["audio_path"])
    assert by_id["BAC009S0724W0121"]["split"] == "validation"
    assert by_id["BAC009S0764W0121"]["text"] == "苹果iphone十pro max降价"
    assert any("W0999" in s and "no line" in s for s in result.skipped)
    assert any("S0900.tar.gz: not extracted" in s for s in result.skipped)
    assert aishell(aishell_root).records == recs  # deterministic


def test_aishell_without_transcript_keeps_audio(aishell_root):
    (aishell_root / "transcript" / "aishell_transcript_v0.8.txt").unlink()
    result = aishell(aishell_root)
    assert len(result.records) == 5 and all("text" not in r for r in result.records)
    assert any("aishell_transcript_v0.8.txt: not found" in s for s in result.skipped)


def test_dataset_decodes_8k_and_44k1_stereo_at_16k(aishell_root):
    dd = records_to_dataset_dict(aishell(aishell_root).records)
    assert list(dd) == ["train", "validation", "test"]
    assert tuple(dd["train"].column_names) == CORPUS_COLUMNS
    phone = dd["train"][1]  # 8 kHz source
    assert phone["id"] == "BAC009S0002W0123"
    assert phone["audio"]["sampling_rate"] == SAMPLE_RATE
    assert len(phone["audio"]["array"]) == int(0.25 * SAMPLE_RATE)
    stereo = dd["validation"][0]  # 44.1 kHz stereo source
    assert stereo["audio"]["sampling_rate"] == SAMPLE_RATE
    array = np.asarray(stereo["audio"]["array"])
    assert array.ndim == 1 and abs(len(array) - int(0.25 * SAMPLE_RATE)) <= 1
    assert np.abs(array).max() > 0.2
    assert stereo["dialect"] == "mandarin" and stereo["emotion"] is None and stereo["slots"] == "{}"


# -- Kaldi --------------------------------------------------------------------------------------------
def test_kaldi_data_dir(tmp_path):
    egs = tmp_path / "egs"
    data = egs / "data" / "dev"
    data.mkdir(parents=True)
    _wav(egs / "wavs" / "u1.wav", sr=8000)  # relative to the recipe folder, as Kaldi writes it
    _wav(data / "u2.wav")  # relative to the data folder
    _wav(tmp_path / "abs" / "u3.wav")
    (data / "wav.scp").write_text(
        f"u1 wavs/u1.wav\nu2 u2.wav\nu3 {tmp_path / 'abs' / 'u3.wav'}\n"
        "u4 sox raw/u4.flac -t wav - |\nu5 missing/u5.wav\nu6 feats.ark:1234\n",
        encoding="utf-8",
    )
    (data / "text").write_text("u1 我 要 投诉\nu2 你好\nu3 退款 还 没 到 账\nu5 无\n", encoding="utf-8")
    (data / "utt2spk").write_text("u1 spkA\nu2 spkB\nu3 spkA\n", encoding="utf-8")
    (data / "utt2dialect").write_text("u1 southwestern\nu2 klingon\nu3 cantonese\n", encoding="utf-8")
    (data / "utt2emotion").write_text("u1 angry\n", encoding="utf-8")
    result = load_corpus("kaldi", data)
    recs = result.records
    assert [r["id"] for r in recs] == ["u1", "u2", "u3"]
    u1, u2, u3 = recs
    assert u1["text"] == "我要投诉" and u1["speaker"] == "spkA" and u1["dialect"] == "southwestern"
    assert u1["emotion"] == "angry" and u1["split"] == "validation" and u1["source"] == "kaldi:dev"
    assert u1["audio_path"] == str((egs / "wavs" / "u1.wav").resolve())
    assert "dialect" not in u2  # unknown label left out, record kept
    assert u3["dialect"] == "cantonese" and os.path.isabs(u3["audio_path"])
    problems = "\n".join(result.skipped)
    assert "u4: pipe command" in problems and "not run" in problems
    assert "u5: audio file missing/u5.wav not found" in problems
    assert "u6: archive offset" in problems
    assert "u2: unknown dialect label 'klingon'" in problems
    assert not (tmp_path / "raw").exists()  # the pipe was never executed


def test_kaldi_without_wav_scp_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="wav.scp not found"):
        kaldi(tmp_path)


# -- Common Voice -------------------------------------------------------------------------------------
def _mp3(path: Path, sr: int = 48000, seconds: float = 0.5) -> None:
    try:
        import torch
        from torchcodec.encoders import AudioEncoder

        t = np.arange(int(sr * seconds)) / sr
        tone = torch.from_numpy((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None])
        path.parent.mkdir(parents=True, exist_ok=True)
        AudioEncoder(tone, sample_rate=sr).to_file(str(path))
    except Exception as exc:  # noqa: BLE001 - an FFmpeg build without an MP3 encoder
        pytest.skip(f"torchcodec cannot encode MP3 here: {exc}")


def test_common_voice(tmp_path):
    root = tmp_path / "cv-corpus" / "zh-HK"
    _mp3(root / "clips" / "common_voice_zh-HK_2.mp3")
    _mp3(root / "clips" / "common_voice_zh-HK_1.mp3")
    header = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tlocale\tsegment\n"
    (root / "dev.tsv").write_text(
        header
        + "spk2\tcommon_voice_zh-HK_2.mp3\t我哋今日去饮茶\t2\t0\t\t\t\tzh-HK\t\n"
        + "spk1\tcommon_voice_zh-HK_1.mp3\t\"唔该\" 晒\t2\t0\t\t\t\tzh-HK\t\n"
        + "spk3\tcommon_voice_zh-HK_3.mp3\t冇咗\t2\t0\t\t\t\tzh-HK\t\n",
        encoding="utf-8",
    )
    result = common_voice(root, tsv="dev.tsv")
    assert [r["id"] for r in result.records] == ["common_voice_zh-HK_1", "common_voice_zh-HK_2"]
    one = result.records[0]
    assert one["text"] == '"唔该" 晒' and one["dialect"] == "cantonese" and one["speaker"] == "spk1"
    assert one["split"] == "validation" and one["source"] == "common_voice:zh-HK"
    assert one["audio"] == "clips/common_voice_zh-HK_1.mp3" and os.path.isabs(one["audio_path"])
    assert len(result.skipped) == 1 and "common_voice_zh-HK_3.mp3 not found" in result.skipped[0]
    audio = records_to_dataset(result.records)[0]["audio"]  # MP3 at 48 kHz, decoded lazily here
    assert audio["sampling_rate"] == SAMPLE_RATE and abs(len(audio["array"]) - SAMPLE_RATE // 2) < 1200


def test_cv_dialect_mapping():
    assert cv_dialect("zh-CN") == "mandarin"
    assert cv_dialect("zh-HK") == "cantonese" and cv_dialect("yue") == "cantonese"
    assert cv_dialect("zh-TW") == "mandarin" and cv_dialect(None) == "mandarin"
    assert cv_dialect("zh-CN", "广东话口音") == "cantonese"


def test_common_voice_missing_tsv(tmp_path):
    with pytest.raises(FileNotFoundError, match="validated.tsv not found"):
        common_voice(tmp_path)


# -- emotion folders ----------------------------------------------------------------------------------
def test_casia_layout(tmp_path):
    root = tmp_path / "CASIA"
    for spk in ("liuchanhg", "wangzhe"):
        for emo in ("angry", "fear", "happy", "neutral", "sad", "surprise"):
            _wav(root / spk / emo / "201.wav", seconds=0.15)
    _wav(root / "wangzhe" / "whisper" / "201.wav", seconds=0.15)  # not an emotion
    result = emotion_folders(root)
    assert len(result.records) == 10
    assert result.dropped == {"surprise": 2}
    first = result.records[0]
    assert first["id"] == "liuchanhg-angry-201" and first["emotion"] == "angry"
    assert first["speaker"] == "liuchanhg" and first["source"] == "CASIA" and "dialect" not in first
    fear = [r for r in result.records if r["audio"].endswith("fear/201.wav")]
    assert {r["emotion"] for r in fear} == {"anxious"}
    assert len(result.skipped) == 1 and "'whisper'" in result.skipped[0] and "mapping=" in result.skipped[0]
    assert "dropped 2 files labelled 'surprise'" in result.summary()


def test_esd_layout_case_insensitive_with_splits_and_text(tmp_path):
    root = tmp_path / "ESD"
    for emo, split in (("Angry", "train"), ("Neutral", "evaluation"), ("Sad", "test"), ("Surprise", "train")):
        _wav(root / "0001" / emo / split / f"0001_{emo}.wav", seconds=0.15)
    line = "0001_Angry\t打远一看，它们的确很是美丽，\t生气\n"
    (root / "0001" / "0001.txt").write_text(line, encoding="utf-8")
    result = load_corpus("emotion_folders", root, dialect="mandarin")
    by_emotion = {r["emotion"]: r for r in result.records}
    assert set(by_emotion) == {"angry", "neutral", "sad"} and result.dropped == {"surprise": 1}
    assert by_emotion["angry"]["split"] == "train" and by_emotion["neutral"]["split"] == "validation"
    assert by_emotion["angry"]["text"] == "打远一看，它们的确很是美丽，"
    assert "text" not in by_emotion["sad"]
    assert all(r["speaker"] == "0001" and r["dialect"] == "mandarin" for r in result.records)


def test_emotion_folders_custom_mapping(tmp_path):
    _wav(tmp_path / "c" / "Calm" / "a.wav", seconds=0.15)
    _wav(tmp_path / "c" / "ANGRY" / "b.wav", seconds=0.15)
    result = emotion_folders(tmp_path / "c", mapping={"calm": "neutral", "Angry": "angry"})
    assert [(r["id"], r["emotion"]) for r in result.records] == [("ANGRY-b", "angry"), ("Calm-a", "neutral")]
    with pytest.raises(ValueError, match="unknown emotion label 'bored'"):
        emotion_folders(tmp_path / "c", mapping={"calm": "bored"})


# -- manifests, dispatch, round trip ------------------------------------------------------------------
def test_manifest_adapter_and_export_round_trip(aishell_root, tmp_path):
    recs = aishell(aishell_root).records
    out = tmp_path / "export" / "manifest.jsonl"
    write_manifest(recs, out)
    first = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert not os.path.isabs(first["audio"])  # written relative to the new manifest's folder
    result = load_corpus("manifest", out)
    assert result.skipped == []
    assert [(r["id"], r["audio_path"], r["text"]) for r in result.records] == [
        (r["id"], r["audio_path"], r["text"]) for r in recs
    ]


def test_dispatch():
    assert set(ADAPTERS) == {"aishell", "kaldi", "common_voice", "emotion_folders", "manifest"}
    with pytest.raises(ValueError, match="unknown corpus kind 'timit'.*aishell"):
        load_corpus("timit", ".")
    with pytest.raises(FileNotFoundError, match="aishell: folder .* not found"):
        load_corpus("aishell", "/no/such/corpus")
    assert AdapterResult([], ["x: missing"]).summary() == "0 records, 1 problems\n  x: missing"


def test_join_words():
    assert join_words("而 对 楼市".split()) == "而对楼市"
    assert join_words("买 了 iphone 十 pro max 手机".split()) == "买了iphone十pro max手机"
    assert join_words([]) == ""
