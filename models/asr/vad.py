"""Voice activity detection: where the speech is in a long recording.

Uses silero-vad as shipped in the faster-whisper wheel (``faster_whisper/assets/silero_vad_v6.onnx``, run with
onnxruntime; no download, no torch). Times come back in seconds of the audio passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data.audio import SAMPLE_RATE

WHISPER_WINDOW_SECONDS = 30.0  # s: what Whisper's encoder sees at once; a longer segment would be cut


@dataclass(frozen=True)
class VadConfig:
    """How speech is found and cut into segments."""

    threshold: float = 0.5  # silero speech probability above which a 32 ms frame is speech
    min_speech_ms: int = 250  # ms: shorter speech bursts (clicks, breaths) are dropped
    min_silence_ms: int = 500  # ms: a pause at least this long ends a segment (a turn boundary)
    speech_pad_ms: int = 200  # ms: added each side of a segment so word edges are not cut
    max_segment_seconds: float = WHISPER_WINDOW_SECONDS  # s: longer speech is split at its last pause


def speech_segments(
    audio: np.ndarray, config: VadConfig = VadConfig(), sample_rate: int = SAMPLE_RATE
) -> list[tuple[float, float]]:
    """(start_s, end_s) of each speech segment in mono ``audio`` (float32 at ``sample_rate``, which must be 16000
    or 8000 Hz: the rates silero-vad knows), in time order; [] when there is no speech."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"speech_segments expects mono audio (samples,), got shape {audio.shape}; pick a channel")
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"speech_segments expects {SAMPLE_RATE} Hz audio, got {sample_rate} Hz; resample it first")
    if audio.size == 0:
        return []
    options = VadOptions(
        threshold=config.threshold,
        min_speech_duration_ms=config.min_speech_ms,
        max_speech_duration_s=config.max_segment_seconds,
        min_silence_duration_ms=config.min_silence_ms,
        speech_pad_ms=config.speech_pad_ms,
    )
    stamps = get_speech_timestamps(audio, options, sampling_rate=sample_rate)
    return [(s["start"] / sample_rate, s["end"] / sample_rate) for s in stamps]
