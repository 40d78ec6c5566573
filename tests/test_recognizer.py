"""The recogniser: both engines on a tiny random Whisper (built from a config), VAD, stereo calls, prompts, errors.
One slow test decodes a real Mandarin clip with the real bootstrapped whisper-base."""

from __future__ import annotations

import io
import json
import shutil
import subprocess

import numpy as np
import pytest

import ctranslate2  # noqa: E402,F401 - required (pyproject): a broken install fails, never skips
import faster_whisper  # noqa: E402,F401

from data.audio import SAMPLE_RATE, AudioError, load_audio, resample, write_wav  # noqa: E402
from models.asr.bootstrap import WeightsError  # noqa: E402
from models.asr.dialects import ASR_CONFIG_FILE, CT2_SUBDIR, HOTWORD_SEPARATOR  # noqa: E402
from models.asr.export import export_ct2  # noqa: E402
from models.asr.recognizer import (  # noqa: E402
    Recognizer,
    RecognizerOptions,
    Segment,
    Transcript,
    for_scoring,
    join_texts,
)
from models.asr.vad import speech_segments  # noqa: E402
from test_asr_export import tiny_whisper_folder  # noqa: E402  (tests/ is on sys.path)

FAST = RecognizerOptions(max_new_tokens=6, cpu_threads=1, batch_size=4)  # garbage text, quickly
HOTWORD = "海尔空调"


def espeak(pinyin: str) -> np.ndarray:
    """Mandarin speech from tone-numbered pinyin, 16 kHz mono."""
    import soundfile as sf

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    wav = subprocess.run(
        ["espeak-ng", "--stdout", "-v", "cmn-latn-pinyin", pinyin], capture_output=True, check=True
    ).stdout
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return resample(audio, rate, SAMPLE_RATE)


@pytest.fixture(scope="module")
def speech():
    return espeak("ni3 hao3 wo3 mai3 de5 kong1 tiao2 huai4 le5"), espeak("qing3 wen4 you3 shen2 me5 ke3 yi3 bang1 nin2")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A fine-tuned-style model folder: HF files + ct2/ export (no hotline_asr.json: decoded zero-shot)."""
    folder = tiny_whisper_folder(tmp_path_factory.mktemp("rec") / "model")
    export_ct2(folder, folder / CT2_SUBDIR, quantization="int8")
    return folder


@pytest.fixture(scope="module")
def recognizers(model_dir):
    return {e: Recognizer.load(model_dir, engine=e, device="cpu", options=FAST) for e in ("ct2", "hf")}


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)


@pytest.mark.parametrize("engine", ["ct2", "hf"])
def test_transcribe_returns_a_transcript_with_sane_timestamps(recognizers, speech, tmp_path, engine):
    rec = recognizers[engine]
    assert rec.engine == engine and rec.device == "cpu"
    assert rec.compute_type == ("int8" if engine == "ct2" else "float32")
    path = tmp_path / "utt.wav"
    write_wav(path, resample(speech[0], SAMPLE_RATE, 8000), 8000)  # telephone rate: resampled on reading
    t = rec.transcribe(path, dialect="cantonese")
    assert isinstance(t, Transcript) and t.engine == engine
    assert t.language == "zh" and t.dialect == "cantonese"
    assert t.duration == pytest.approx(len(speech[0]) / SAMPLE_RATE, abs=0.01)
    assert len(t.segments) == 1
    seg = t.segments[0]
    assert isinstance(seg, Segment) and seg.start == 0.0 and seg.end == pytest.approx(t.duration)
    assert isinstance(seg.text, str) and t.text == seg.text.strip()
    assert seg.avg_logprob < 0.0 and np.isfinite(seg.avg_logprob)
    assert json.dumps(t.to_dict(), ensure_ascii=False)


@pytest.mark.parametrize("engine", ["ct2", "hf"])
def test_batch_decoding_gives_what_one_by_one_gives(recognizers, speech, engine):
    rec = recognizers[engine]
    batch = rec.transcribe_batch(list(speech), dialects=["mandarin", "mandarin"])
    single = [rec.transcribe(a, dialect="mandarin") for a in speech]
    assert [t.text for t in batch] == [t.text for t in single]
    assert [t.duration for t in batch] == [t.duration for t in single]
    with pytest.raises(ValueError, match="one per input"):
        rec.transcribe_batch(list(speech), dialects=["mandarin"])


def test_hotwords_and_dialect_prompt_reach_the_decoder(recognizers, model_dir, speech, tmp_path):
    hf = recognizers["hf"]
    tok = hf.engine_impl.tokens
    hot_ids = tok.encode(" " + HOTWORD, add_special_tokens=False)[1:]
    # Zero-shot model (no hotline_asr.json): hotwords only, no dialect name.
    assert hf.prompt("cantonese", [HOTWORD]) == HOTWORD
    prefix = hf.decoder_prefix("cantonese", [HOTWORD])
    assert prefix[0] == tok.convert_tokens_to_ids("<|startofprev|>")
    assert tok.convert_ids_to_tokens(prefix[-4:]) == [
        "<|startoftranscript|>", "<|zh|>", "<|transcribe|>", "<|notimestamps|>",
    ]  # fmt: skip
    # Both engines build the same token sequence (the same tokenizer.json).
    assert recognizers["ct2"].decoder_prefix("cantonese", [HOTWORD]) == prefix
    assert hf.decoder_prefix(None) == prefix[-4:]  # no prompt at all

    # The HF decoder really sees the prompt: catch its first input ids.
    seen = []
    decoder = hf.engine_impl.model.model.decoder
    handle = decoder.register_forward_pre_hook(lambda m, a, kw: seen.append(kw.get("input_ids")), with_kwargs=True)
    try:
        hf.transcribe(speech[0], dialect="cantonese", hotwords=[HOTWORD])
    finally:
        handle.remove()
    first = seen[0][0].tolist()
    assert first[: len(prefix)] == prefix
    assert all(i in first for i in hot_ids)

    # A fine-tuned folder (hotline_asr.json) is prompted with the dialect name by default, its own text if given.
    tuned = tmp_path / "tuned"
    shutil.copytree(model_dir, tuned)
    (tuned / ASR_CONFIG_FILE).write_text(
        json.dumps({"format": 1, "language": "zh", "dialect_prompts": {"cantonese": "广东话"}}, ensure_ascii=False),
        encoding="utf-8",
    )
    rec = Recognizer.load(tuned, engine="ct2", device="cpu", options=RecognizerOptions(hotwords=("百汇购物",)))
    assert rec.prompt("cantonese", [HOTWORD]) == f"广东话：百汇购物{HOTWORD_SEPARATOR}{HOTWORD}"
    assert rec.prompt("wu") == "吴语：百汇购物"
    assert rec.prompt(None) == "百汇购物"
    no_dialect = Recognizer.load(tuned, engine="ct2", device="cpu", options=RecognizerOptions(dialect_prompt=False))
    assert no_dialect.prompt("cantonese") == ""


def test_stereo_call_is_split_into_agent_and_customer_turns_in_time_order(recognizers, speech, tmp_path):
    agent_turn, customer_turn = speech
    n = int(9.0 * SAMPLE_RATE)
    call = np.zeros((2, n), dtype=np.float32)
    a0, c0, a1 = int(0.5 * SAMPLE_RATE), int(3.5 * SAMPLE_RATE), int(6.5 * SAMPLE_RATE)
    call[0, a0 : a0 + len(agent_turn)] = agent_turn[: n - a0]
    call[1, c0 : c0 + len(customer_turn)] = customer_turn[: n - c0]
    call[0, a1 : a1 + len(agent_turn)] = agent_turn[: n - a1]
    path = tmp_path / "call.wav"
    write_wav(path, call, SAMPLE_RATE)
    for engine, rec in recognizers.items():
        t = rec.transcribe_call(path, dialect="southwestern")
        speakers = [s.speaker for s in t.segments]
        assert speakers == ["agent", "customer", "agent"], (engine, t.segments)
        assert [s.channel for s in t.segments] == [0, 1, 0]
        starts = [s.start for s in t.segments]
        assert starts == sorted(starts)
        lengths = (len(agent_turn), len(customer_turn), len(agent_turn))
        for seg, true_start, length in zip(t.segments, (a0, c0, a1), lengths):
            assert abs(seg.start - true_start / SAMPLE_RATE) < 0.5
            assert abs(seg.end - (true_start + length) / SAMPLE_RATE) < 0.6
            assert seg.start < seg.end <= t.duration
        assert t.duration == pytest.approx(9.0)
    # Swapped channels swap the labels.
    t = recognizers["ct2"].transcribe_call(call, agent_channel=1, customer_channel=0)
    assert [s.speaker for s in t.segments] == ["customer", "agent", "customer"]
    with pytest.raises(AudioError, match="customer_channel=2"):
        recognizers["ct2"].transcribe_call(call, customer_channel=2)


def test_long_audio_is_cut_by_vad_with_times_of_the_original(recognizers, speech):
    first, second = speech
    audio = np.concatenate([silence(1.0), first, silence(2.0), second, silence(1.0)])
    segs = speech_segments(audio)
    assert len(segs) == 2
    assert abs(segs[0][0] - 1.0) < 0.4 and abs(segs[1][0] - (3.0 + len(first) / SAMPLE_RATE)) < 0.4
    rec = recognizers["ct2"]
    short_limit = Recognizer(rec.engine_impl, rec.source, RecognizerOptions(max_new_tokens=6, vad_min_seconds=5.0))
    t = short_limit.transcribe(audio)
    assert [(s.start, s.end) for s in t.segments] == [(round(a, 3), round(b, 3)) for a, b in segs]
    assert speech_segments(silence(3.0)) == []


def test_zero_shot_base_and_auto_engine(model_dir, tmp_path):
    hf_only = tmp_path / "hf_only"
    shutil.copytree(model_dir, hf_only, ignore=shutil.ignore_patterns(CT2_SUBDIR))
    rec = Recognizer.load(hf_only, engine="auto", device="cpu", options=FAST)  # no ct2/: falls back to hf
    assert rec.engine == "hf"
    assert Recognizer.load(model_dir, device="cpu", options=FAST).engine == "ct2"  # the CPU default
    assert Recognizer.load(model_dir / CT2_SUBDIR, device="cpu", options=FAST).engine == "ct2"  # a bare ct2 folder
    base = Recognizer.load(None, engine="ct2", device="cpu", options=FAST)
    assert base.source.name == "whisper-base" and not base.source.fine_tuned
    assert base.prompt("cantonese") == "" and base.language("cantonese") == "zh"  # whisper-base has no <|yue|>


def test_clear_errors(model_dir, recognizers, tmp_path):
    with pytest.raises(WeightsError, match="model folder not found"):
        Recognizer.load(tmp_path / "missing", engine="ct2")
    (tmp_path / "junk").mkdir()
    with pytest.raises(WeightsError, match="neither a transformers Whisper folder"):
        Recognizer.load(tmp_path / "junk")
    hf_only = tmp_path / "hf_only"
    shutil.copytree(model_dir, hf_only, ignore=shutil.ignore_patterns(CT2_SUBDIR))
    with pytest.raises(WeightsError, match="models.asr.export"):
        Recognizer.load(hf_only, engine="ct2", device="cpu")
    with pytest.raises(WeightsError, match="engine hf needs"):
        Recognizer.load(model_dir / CT2_SUBDIR, engine="hf", device="cpu")
    with pytest.raises(ValueError, match="engine 'onnx'"):
        Recognizer.load(model_dir, engine="onnx")
    rec = recognizers["ct2"]
    with pytest.raises(AudioError, match="missing.wav: file not found"):
        rec.transcribe(tmp_path / "missing.wav")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match="empty.wav: empty file"):
        rec.transcribe(empty)
    with pytest.raises(AudioError, match="expected audio samples"):
        rec.transcribe(np.zeros(0, dtype=np.float32))
    with pytest.raises(AudioError, match="too short"):
        rec.transcribe(np.zeros(100, dtype=np.float32))
    with pytest.raises(AudioError, match="channel=3"):
        rec.transcribe(np.zeros((2, SAMPLE_RATE), dtype=np.float32), channel=3)


def test_scoring_form_and_joining():
    assert for_scoring("您好，這個訂單 OK！") == "您好这个订单ok"
    assert for_scoring("一百二十块") == "一百二十块"  # numerals as spoken: normalisation is the slot step's
    assert join_texts(["你好", " 我要退款 ", "", "iPhone", "15"]) == "你好我要退款iPhone 15"


@pytest.mark.slow
def test_real_whisper_base_recognises_real_mandarin(shared_dir):
    """Zero-shot whisper-base, both engines, on one real AISHELL clip: CER < 0.6."""
    from models.textnorm import cer

    manifest = shared_dir / "realspeech" / "manifest.jsonl"
    if not manifest.is_file():
        pytest.skip(f"{manifest} missing")
    records = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    numerals = set("零一二三四五六七八九十百千万两")
    clip = next(
        r for r in records
        if r["dialect"] == "mandarin" and len(r["text"]) >= 8 and not numerals & set(r["text"])
    )  # fmt: skip
    path = manifest.parent / clip["audio"]
    audio = load_audio(path)
    options = RecognizerOptions(cpu_threads=1)
    for engine in ("ct2", "hf"):
        rec = Recognizer.load(None, engine=engine, device="cpu", options=options)
        t = rec.transcribe(audio, dialect="mandarin")
        assert cer(clip["text"], t.text) < 0.6, (engine, clip["text"], t.text)


def test_token_budget_scales_with_the_longest_audio():
    import numpy as np

    from models.asr.recognizer import RecognizerOptions, token_budget

    o = RecognizerOptions(max_new_tokens=128, max_tokens_per_second=10.0)
    assert token_budget([np.zeros(16000 * 2)], o) == 36  # 2 s -> 20 + 16
    assert token_budget([np.zeros(16000), np.zeros(16000 * 5)], o) == 66  # the longest in the batch decides
    assert token_budget([np.zeros(16000 * 30)], o) == 128  # never above max_new_tokens
    assert token_budget([np.zeros(16000 * 2)], RecognizerOptions(max_tokens_per_second=0)) == 128  # off
