"""Audio loading: any rate, mono or stereo, WAV/FLAC/MP3/M4A, and clear errors for files that cannot be used."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from data.audio import (
    MAX_AUDIO_SECONDS,
    SAMPLE_RATE,
    AudioError,
    is_silent,
    load_audio,
    load_audio_bytes,
    load_audio_channels,
    resample,
    write_wav,
)


def sine(sr: int, seconds: float = 0.5, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(audio: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio))
    return float(np.fft.rfftfreq(len(audio), 1 / sr)[np.argmax(spectrum)])


def test_8k_mono_wav_resampled_to_16k(tmp_path):
    path = tmp_path / "phone.wav"
    sf.write(path, sine(8000, 0.5), 8000, subtype="PCM_16")
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) == 8000  # 0.5 s at 16 kHz
    assert np.abs(audio).max() <= 1.0
    assert abs(peak_hz(audio, SAMPLE_RATE) - 440) < 5


def test_48k_stereo_wav_keeps_channels_apart(tmp_path):
    left, right = sine(48000, 0.5, 440, 0.5), sine(48000, 0.5, 1000, 0.2)
    path = tmp_path / "call.wav"
    sf.write(path, np.stack([left, right], axis=1), 48000, subtype="PCM_16")
    channels = load_audio_channels(path)
    assert channels.shape == (2, 8000) and channels.dtype == np.float32
    assert abs(peak_hz(channels[0], SAMPLE_RATE) - 440) < 5
    assert abs(peak_hz(channels[1], SAMPLE_RATE) - 1000) < 5
    assert np.sqrt(np.mean(channels[0] ** 2)) > 2 * np.sqrt(np.mean(channels[1] ** 2))
    mono = load_audio(path)
    assert mono.shape == (8000,)
    np.testing.assert_allclose(mono, channels.mean(axis=0), atol=1e-6)
    assert load_audio(path, mono=False).shape == (2, 8000)


def test_flac_44k1(tmp_path):
    path = tmp_path / "a.flac"
    sf.write(path, sine(44100, 0.5), 44100, format="FLAC")
    audio = load_audio(path)
    assert audio.shape == (8000,) and audio.dtype == np.float32


def test_other_target_rate(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, sine(16000, 0.5), 16000)
    assert load_audio(path, sample_rate=8000).shape == (4000,)


def test_load_audio_bytes_matches_file(tmp_path):
    path = tmp_path / "up.wav"
    sf.write(path, sine(22050, 0.4), 22050, subtype="PCM_16")
    from_bytes = load_audio_bytes(path.read_bytes())
    np.testing.assert_array_equal(from_bytes, load_audio(path))
    with pytest.raises(AudioError, match="ticket-42.wav"):
        load_audio_bytes(os.urandom(2000), name="ticket-42.wav")
    with pytest.raises(AudioError, match="empty"):
        load_audio_bytes(b"", name="ticket-43.wav")


def test_corrupt_file_names_the_file(tmp_path):
    path = tmp_path / "corrupt.wav"
    path.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(AudioError) as err:
        load_audio(path)
    assert str(path) in str(err.value) and "not a readable audio file" in str(err.value)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty\.wav: empty file"):
        load_audio(path)


def test_zero_sample_wav(tmp_path):
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros((0, 1), np.float32), 16000)
    with pytest.raises(AudioError, match=r"zero\.wav: the file holds no samples"):
        load_audio(path)


def test_too_short(tmp_path):
    path = tmp_path / "blip.wav"
    sf.write(path, sine(16000, 0.05), 16000)
    with pytest.raises(AudioError, match=r"blip\.wav: too short \(50 ms"):
        load_audio(path)


def test_too_long_refused_before_decoding(tmp_path):
    # 2 h 1 s at 100 Hz, 8-bit: a small file with an absurd duration
    path = tmp_path / "marathon.wav"
    n = int((MAX_AUDIO_SECONDS + 1) * 100)
    sf.write(path, np.full((n, 1), 0.1, np.float32), 100, subtype="PCM_U8")
    with pytest.raises(AudioError, match=r"marathon\.wav: 2\.0 hours long"):
        load_audio(path)


def test_silent_wav(tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(16000, np.float32), 16000)
    with pytest.raises(AudioError, match=r"silence\.wav: silent"):
        load_audio(path)
    audio = load_audio(path, allow_silent=True)
    assert audio.shape == (16000,) and is_silent(audio)
    assert not is_silent(sine(16000))
    assert is_silent(sine(16000, amp=1e-4))  # -83 dBFS RMS
    assert not is_silent(sine(16000, amp=1e-2))  # -43 dBFS RMS
    assert is_silent(np.zeros(0))


def test_stereo_call_with_one_quiet_side_loads(tmp_path):
    path = tmp_path / "one_sided.wav"
    sf.write(path, np.stack([sine(8000), np.zeros(4000, np.float32)], axis=1), 8000)
    channels = load_audio_channels(path)
    assert channels.shape == (2, 8000) and is_silent(channels[1]) and not is_silent(channels[0])


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(AudioError, match=r"nope\.wav: file not found"):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(AudioError, match="is a folder"):
        load_audio(tmp_path)


def _encode(path, audio: np.ndarray, sr: int) -> None:
    """Encode with torchcodec (FFmpeg), or skip the test where this FFmpeg cannot write the format."""
    try:
        import torch
        from torchcodec.encoders import AudioEncoder

        AudioEncoder(torch.from_numpy(audio[None]), sample_rate=sr).to_file(str(path))
    except Exception as exc:  # noqa: BLE001 - an encoder missing from the FFmpeg build
        pytest.skip(f"torchcodec cannot encode {path.suffix} here: {exc}")


def test_mp3(tmp_path):
    path = tmp_path / "clip.mp3"
    _encode(path, sine(44100, 0.5), 44100)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and abs(len(audio) - 8000) < 1200  # MP3 pads a frame or two
    assert abs(peak_hz(audio, SAMPLE_RATE) - 440) < 5


def test_m4a_through_ffmpeg_fallback(tmp_path):
    """soundfile cannot read M4A/AAC: this exercises the torchcodec fallback, from a file and from bytes."""
    path = tmp_path / "voicemail.m4a"
    _encode(path, sine(16000, 0.5), 16000)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and abs(len(audio) - 8000) < 1200
    assert abs(peak_hz(audio, SAMPLE_RATE) - 440) < 5
    assert abs(len(load_audio_bytes(path.read_bytes(), name="vm.m4a")) - len(audio)) < 1200


def test_resample_shapes_and_frequency():
    x = sine(8000, 1.0, 300)
    y = resample(x, 8000, 16000)
    assert y.shape == (16000,) and y.dtype == np.float32
    assert abs(peak_hz(y, 16000) - 300) < 2
    stereo = np.stack([sine(44100, 1.0), sine(44100, 1.0, 1000)])
    z = resample(stereo, 44100, 16000)
    assert z.shape == (2, 16000)
    assert resample(x, 8000, 8000) is not None and resample(x, 8000, 8000).shape == x.shape
    with pytest.raises(ValueError, match="positive"):
        resample(x, 0, 16000)


def test_write_wav_round_trip(tmp_path):
    stereo = np.stack([sine(8000), sine(8000, freq=1000, amp=0.2)])
    path = tmp_path / "nested" / "call.wav"
    write_wav(path, stereo, 8000)
    info = sf.info(path)
    assert (info.samplerate, info.channels, info.subtype) == (8000, 2, "PCM_16")
    back = load_audio_channels(path, 8000)
    np.testing.assert_allclose(back, stereo, atol=1 / 16000)
    write_wav(tmp_path / "mono.wav", np.full(1600, 2.0), 16000)  # clipped, not wrapped
    assert load_audio(tmp_path / "mono.wav").max() == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ValueError, match=r"pass \(channels, samples\)"):
        write_wav(tmp_path / "bad.wav", stereo.T, 8000)
