"""Audio constants and loading. Constants are defined once here, with units; everything else imports them."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Union

import numpy as np

SAMPLE_RATE = 16000  # Hz: what every model in hotline consumes
PHONE_SAMPLE_RATE = 8000  # Hz: narrow-band telephone audio as a call platform records it
ESPEAK_SAMPLE_RATE = 22050  # Hz: what espeak-ng writes
PHONE_BAND_HZ = (300.0, 3400.0)  # Hz: pass band of a telephone channel

MIN_AUDIO_SECONDS = 0.1  # s: shorter inputs hold no speech worth recognising
MAX_AUDIO_SECONDS = 2 * 3600.0  # s: longer inputs are recording errors (a 4-hour "call"), refused before decoding
SILENCE_DB = -60.0  # dBFS (RMS): below this level an input counts as silent
MAX_CHANNELS = 16  # channels: a first axis longer than this is taken as (samples, channels) passed by mistake

PathLike = Union[str, os.PathLike]


class AudioError(ValueError):
    """An input that cannot be used as audio. The message names the file, says what was wrong and what to do."""


# -- loading ------------------------------------------------------------------------------------------
def load_audio(
    path: PathLike, sample_rate: int = SAMPLE_RATE, mono: bool = True, *, allow_silent: bool = False
) -> np.ndarray:
    """Read an audio file as float32 in [-1, 1] at ``sample_rate``: shape (samples,) if ``mono`` (channels
    averaged), else (channels, samples).

    WAV/FLAC/OGG/MP3 are read with soundfile; anything else FFmpeg reads (M4A, AAC, WebM, ...) through
    torchcodec. Raises :class:`AudioError` for a missing, empty, corrupt, too short, too long or silent file
    (``allow_silent=True`` accepts silence, e.g. for a stereo call with one quiet side).
    """
    audio = load_audio_channels(path, sample_rate, allow_silent=allow_silent)
    return _mixdown(audio) if mono else audio


def load_audio_channels(path: PathLike, sample_rate: int = SAMPLE_RATE, *, allow_silent: bool = False) -> np.ndarray:
    """Read an audio file as float32 (channels, samples) at ``sample_rate``: one row per channel, so the
    agent and customer sides of a stereo call stay apart. See :func:`load_audio` for the errors."""
    path = Path(path)
    name = str(path)
    if not path.exists():
        raise AudioError(
            f"{name}: file not found; check the path (manifest paths are relative to the manifest's folder)"
        )
    if path.is_dir():
        raise AudioError(f"{name}: is a folder, not an audio file; pass the path of a WAV/FLAC/MP3 file")
    if path.stat().st_size == 0:
        raise AudioError(f"{name}: empty file (0 bytes); re-export or re-download the recording")
    audio, sr = _decode(path, name)
    return _finish(audio, sr, sample_rate, name, allow_silent)


def load_audio_bytes(
    data: bytes,
    sample_rate: int = SAMPLE_RATE,
    mono: bool = True,
    name: str = "upload",
    *,
    allow_silent: bool = False,
) -> np.ndarray:
    """Like :func:`load_audio`, from the bytes of a file (an HTTP upload); ``name`` is used in error messages."""
    if not data:
        raise AudioError(f"{name}: empty upload (0 bytes); send the bytes of a WAV/FLAC/MP3 file")
    audio, sr = _decode(data, name)
    audio = _finish(audio, sr, sample_rate, name, allow_silent)
    return _mixdown(audio) if mono else audio


def _decode(source: Path | bytes, name: str) -> tuple[np.ndarray, int]:
    """(channels, samples) float32 at the file's own rate: soundfile first, torchcodec (FFmpeg) as fallback."""
    import soundfile as sf

    try:
        with sf.SoundFile(io.BytesIO(source) if isinstance(source, bytes) else str(source)) as f:
            _check_length(f.frames / f.samplerate if f.samplerate else 0.0, name)
            data = f.read(dtype="float32", always_2d=True)
            return np.ascontiguousarray(data.T), int(f.samplerate)
    except AudioError:
        raise
    except Exception as sf_exc:  # noqa: BLE001 - not a format libsndfile knows; FFmpeg may
        try:
            return _decode_ffmpeg(source, name)
        except AudioError:
            raise
        except Exception as ff_exc:  # noqa: BLE001 - neither reader could open it
            raise AudioError(
                f"{name}: not a readable audio file (soundfile: {_short(sf_exc)}; FFmpeg: {_short(ff_exc)}). "
                "The file may be corrupt, truncated or not audio; convert it to 16-bit PCM WAV "
                "(e.g. `ffmpeg -i in.xxx -ar 16000 out.wav`) and retry"
            ) from ff_exc


def _decode_ffmpeg(source: Path | bytes, name: str) -> tuple[np.ndarray, int]:
    from torchcodec.decoders import AudioDecoder  # lazy: torch + FFmpeg cost seconds to import

    decoder = AudioDecoder(source if isinstance(source, bytes) else str(source))
    duration = getattr(decoder.metadata, "duration_seconds", None)
    if duration is not None:
        _check_length(float(duration), name)
    samples = decoder.get_all_samples()
    data = samples.data.detach().cpu().numpy().astype(np.float32, copy=False)
    if data.ndim == 1:
        data = data[None, :]
    return data, int(samples.sample_rate)


def _finish(audio: np.ndarray, sr: int, sample_rate: int, name: str, allow_silent: bool) -> np.ndarray:
    """Check a decoded (channels, samples) array and bring it to ``sample_rate``."""
    if audio.shape[-1] == 0:
        raise AudioError(f"{name}: the file holds no samples (0 frames); re-export the recording")
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"{name}: holds NaN or infinite samples (a corrupt float file); re-export it as 16-bit PCM")
    seconds = audio.shape[-1] / sr
    if seconds < MIN_AUDIO_SECONDS:
        raise AudioError(
            f"{name}: too short ({seconds * 1000:.0f} ms; at least {MIN_AUDIO_SECONDS * 1000:.0f} ms is needed); "
            "check that the recording was not cut off"
        )
    _check_length(seconds, name)
    if not allow_silent and is_silent(audio):
        raise AudioError(
            f"{name}: silent (level below {SILENCE_DB:.0f} dBFS); check the recording channel and microphone"
        )
    audio = np.clip(audio, -1.0, 1.0)
    return resample(audio, sr, sample_rate)


def _check_length(seconds: float, name: str) -> None:
    if seconds > MAX_AUDIO_SECONDS:
        raise AudioError(
            f"{name}: {seconds / 3600:.1f} hours long, over the limit of {MAX_AUDIO_SECONDS / 3600:.1f} hours "
            "(data.audio.MAX_AUDIO_SECONDS); split the recording into calls first"
        )


def _mixdown(audio: np.ndarray) -> np.ndarray:
    return audio[0].copy() if audio.shape[0] == 1 else audio.mean(axis=0).astype(np.float32)


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


# -- processing ---------------------------------------------------------------------------------------
def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """``audio`` (samples,) or (channels, samples) from ``orig_sr`` to ``target_sr`` Hz (polyphase, float32)."""
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive Hz, got orig_sr={orig_sr}, target_sr={target_sr}")
    audio = np.asarray(audio, dtype=np.float32)
    if orig_sr == target_sr:
        return audio
    from scipy.signal import resample_poly

    g = math.gcd(int(orig_sr), int(target_sr))
    out = resample_poly(audio, int(target_sr) // g, int(orig_sr) // g, axis=-1)
    return out.astype(np.float32, copy=False)


def is_silent(audio: np.ndarray, threshold_db: float = SILENCE_DB) -> bool:
    """True if the RMS level of ``audio`` (any shape) is below ``threshold_db`` dBFS, or it has no samples."""
    audio = np.asarray(audio, dtype=np.float64)
    if audio.size == 0:
        return True
    rms = float(np.sqrt(np.mean(np.square(audio))))
    return rms <= 0.0 or 20.0 * math.log10(rms) < threshold_db


def _frames(audio: np.ndarray, where: str) -> np.ndarray:
    """(samples,) or (channels, samples) float audio as soundfile's (samples[, channels]) frames, clipped to [-1, 1]."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        if audio.shape[0] > MAX_CHANNELS:
            raise ValueError(
                f"{where}: audio of shape {audio.shape} has {audio.shape[0]} channels; "
                "pass (channels, samples), e.g. audio.T for a (samples, channels) array"
            )
        audio = audio.T
    elif audio.ndim != 1:
        raise ValueError(f"{where}: expected (samples,) or (channels, samples), got shape {audio.shape}")
    return np.clip(audio, -1.0, 1.0)


def write_wav(path: PathLike, audio: np.ndarray, sample_rate: int) -> None:
    """Write ``audio`` (samples,) or (channels, samples), float in [-1, 1], as 16-bit PCM WAV (parents created)."""
    import soundfile as sf

    frames = _frames(audio, f"write_wav({path})")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), frames, int(sample_rate), subtype="PCM_16", format="WAV")


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """The bytes of the 16-bit PCM WAV file :func:`write_wav` would write (an upload, a request body)."""
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, _frames(audio, "wav_bytes"), int(sample_rate), subtype="PCM_16", format="WAV")
    return buf.getvalue()
