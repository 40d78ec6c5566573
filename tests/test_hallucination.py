"""The recogniser's no-speech gate (issue 15) and the hallucination benchmark (models/asr/hallucination.py).

The rule itself is checked on made-up decodes; the gate is checked with the real bootstrapped whisper-base on
digital silence and synthetic line noise (which it writes text for when ungated); the benchmark's main() runs on a
tiny clip set and writes its JSON."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from data.audio import SAMPLE_RATE
from models.asr import hallucination as H
from models.asr.recognizer import Decoded, ModelSource, Recognizer, RecognizerOptions


class _NoEngine:
    """Just enough engine for Recognizer.__init__ (the rule needs no model)."""

    name, device, compute_type = "stub", "cpu", "none"

    def vocabulary(self):
        return []


def _rule(**options) -> Recognizer:
    return Recognizer(_NoEngine(), ModelSource("stub", None, None, False, "zh"), RecognizerOptions(**options))


def test_no_speech_rule_is_openai_whispers():
    rec = _rule()  # defaults: VAD check on, no_speech_threshold 0.7, logprob_threshold -1.0 (openai/whisper's)
    assert rec.options.vad_gate and rec.options.no_speech_threshold == 0.7 and rec.options.logprob_threshold == -1.0
    assert rec.is_no_speech(Decoded("你不要再說了", -2.6, 0.93))  # likely silence and an unsure decode: dropped
    assert not rec.is_no_speech(Decoded("我要退款", -0.4, 0.93))  # a confident decode is kept whatever P(no speech)
    assert not rec.is_no_speech(Decoded("我要退款", -2.6, 0.65))  # an unsure decode of likely speech is kept
    assert _rule(no_speech_threshold=0.6).is_no_speech(Decoded("我要退款", -2.6, 0.65))
    assert not rec.is_no_speech(Decoded("x", -2.6, None))  # the engine gave no probability: nothing to judge
    assert _rule(logprob_threshold=None).is_no_speech(Decoded("我要退款", -0.4, 0.93))  # P(no speech) alone
    assert not _rule(no_speech_threshold=None).is_no_speech(Decoded("你", -5.0, 0.99))  # rule off


def test_noise_clips_are_deterministic_and_quiet():
    a = H.noise_clip("line", 1.0, 3, seed=7)
    b = H.noise_clip("line", 1.0, 3, seed=7)
    np.testing.assert_array_equal(a.audio, b.audio)
    assert not np.array_equal(a.audio, H.noise_clip("line", 1.0, 4, seed=7).audio)
    clips = H.noise_clips(H.KINDS, (1.0,), 2)
    assert [c.id for c in clips[:2]] == ["silence-1s-00", "silence-1s-01"] and len(clips) == 2 * len(H.KINDS)
    for c in clips:
        assert c.audio.dtype == np.float32 and c.audio.shape == (SAMPLE_RATE,)
        rms_db = 20 * np.log10(np.sqrt(np.mean(np.square(c.audio, dtype=np.float64))) + 1e-12)
        assert rms_db < -25.0, (c.id, rms_db)  # low-level noise, never speech-loud
    assert not np.any(clips[0].audio)  # digital silence


def test_speech_control_refuses_realspeech(tmp_path):
    folder = tmp_path / "realspeech"
    folder.mkdir()
    (folder / "manifest.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="evaluation data"):
        H.speech_from_manifest(folder / "manifest.jsonl", 3)


@pytest.fixture(scope="module")
def whisper_base():
    return Recognizer.load(None, engine="ct2", device="cpu", options=RecognizerOptions(cpu_threads=1))


@pytest.mark.slow
def test_gate_returns_no_text_for_silence_and_line_noise(whisper_base):
    rec = whisper_base
    silence = H.noise_clip("silence", 2.0, 0).audio
    line = H.noise_clip("line", 2.0, 0).audio
    for audio in (silence, line):
        t = rec.transcribe(audio)
        assert t.text == "" and t.segments == () and t.duration == pytest.approx(2.0)
    # The no-speech rule on its own (VAD check off) also drops digital silence: whisper-base's P(no speech) there
    # is ~0.93 and its invented text ("你不要再說了") has avg_logprob ~ -2.6.
    no_vad = Recognizer(rec.engine_impl, rec.source, replace(rec.options, vad_gate=False))
    (t, details), = no_vad._transcribe_batch([silence])
    assert t.text == "" and t.segments == ()
    assert details[0]["gated"] == "no_speech" and details[0]["no_speech_prob"] > rec.options.no_speech_threshold


@pytest.mark.slow
def test_benchmark_main_writes_its_report(tmp_path, capsys):
    out = tmp_path / "hallucination.json"
    speech = 1 if shutil.which("espeak-ng") else 0
    argv = ["--kinds", "silence", "line", "--lengths", "1", "--per-cell", "1", "--speech", str(speech),
            "--threads", "1", "--no-progress", "--out", str(out)]  # fmt: skip
    assert H.main(argv) == 0
    printed = capsys.readouterr().out
    assert "no_gate" in printed and "gate" in printed and "speech CER" in printed
    report = json.loads(out.read_text(encoding="utf-8"))
    assert {"model", "engine", "clip_set", "results", "sweep", "vad_sweep", "clips", "command", "timing"} <= set(report)
    assert report["model"] == "whisper-base" and report["clip_set"]["speech"] == speech
    assert set(report["results"]) == {"no_gate", "gate"}
    for r in report["results"].values():
        assert {"options", "noise", "noise_by_kind", "speech", "gated_noise", "gated_speech"} <= set(r)
        assert {"clips", "with_output", "with_output_rate", "chars_per_clip", "chars_max"} <= set(r["noise"])
        assert r["noise"]["clips"] == 2 and set(r["noise_by_kind"]) == {"silence", "line"}
    assert report["results"]["no_gate"]["options"]["vad_gate"] is False
    assert report["results"]["gate"]["options"]["vad_gate"] is True
    assert report["results"]["gate"]["noise"]["with_output"] == 0
    if speech:
        assert {"cer", "empty", "empty_rate", "by_dialect"} <= set(report["results"]["gate"]["speech"])
    assert len(report["clips"]) == 2 + speech and all({"no_gate", "gate"} <= set(c) for c in report["clips"])
    assert {"vad_gate", "no_speech_threshold", "logprob_threshold", "noise_with_output_rate"} <= set(report["sweep"][0])
