"""The telephone channel: what happens to a caller's voice between the handset and the call recording.

In order: resampling to 8 kHz, the 300-3400 Hz telephone band, background noise at a random in-band SNR,
level changes over the call, G.711 companding (mu-law or A-law, 8 bits a sample) and packet-loss gaps.
Everything is numpy/scipy and costs a few milliseconds per second of audio.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np
from scipy.signal import ellip, firwin, resample_poly, sosfilt

from data.audio import PHONE_BAND_HZ, PHONE_SAMPLE_RATE, SAMPLE_RATE

CODECS = ("ulaw", "alaw")  # G.711 companding laws (mu-law: North America/Japan; A-law: China, Europe)
NOISE_KINDS = ("white", "pink", "brown", "hum", "babble")  # background noise types
FRAME_S = 0.020  # s: one packet of telephone audio (G.711 over RTP sends 20 ms frames)
MAINS_HZ = (50.0, 60.0)  # Hz: mains frequencies for hum (50 Hz in China)
BAND_RIPPLE_DB = 0.5  # dB: pass-band ripple of the telephone band filter
BAND_STOP_DB = 45.0  # dB: stop-band attenuation of the telephone band filter
BAND_ORDER = 5  # order of each edge of the elliptic band-pass (the filter has 2 * BAND_ORDER poles)


@dataclass(frozen=True)
class ChannelConfig:
    codec: str = "random"  # "ulaw" | "alaw" | "random" (either, per call) | "none" (no companding, for tests)
    snr_db: tuple[float, float] = (10.0, 35.0)  # in-band speech-to-noise ratio range, dB (uniform per call)
    noise_kinds: tuple[str, ...] = NOISE_KINDS  # background noise types to draw from, one per call
    noise_weights: tuple[float, ...] = (0.1, 0.3, 0.15, 0.15, 0.3)  # their relative probabilities
    packet_loss: float = 0.05  # probability that a call has packet-loss gaps (20 ms frames zeroed)
    max_gaps: int = 4  # most lost bursts in a call that has packet loss
    max_gap_frames: int = 3  # most consecutive 20 ms frames in one lost burst
    level_db: tuple[float, float] = (-6.0, 3.0)  # gain range, dB; the gain moves between values drawn here
    level_points: int = 3  # gain values drawn per call, spread evenly and interpolated (1 = constant gain)


DEFAULT_CHANNEL = ChannelConfig()  # the channel of the synthetic corpus


# -- G.711 (ITU-T G.711; bit-exact with the reference tables of Sun's g711.c and Python's audioop) ----------

_ULAW_BIAS = 0x84  # 132, added to the magnitude before the segment search (in 16-bit units)
_ULAW_CLIP = 8159  # largest 14-bit magnitude mu-law encodes


def _to_int16(audio: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(audio, dtype=np.float64) * 32768.0), -32768, 32767).astype(np.int32)


def mulaw_encode(audio: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] (clipped beyond) -> G.711 mu-law codes, uint8."""
    pcm = _to_int16(audio) >> 2  # 14-bit
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    seg = np.maximum(np.frexp(mag)[1] - 6, 0)  # segments end at 0x3F, 0x7F, ..., 0x1FFF: bit length - 6
    code = (np.minimum(seg, 7) << 4) | ((mag >> (seg + 1)) & 0x0F)
    code = np.where(seg >= 8, 0x7F, code)  # at the clip level: the largest code
    return (code ^ mask).astype(np.uint8)


def mulaw_decode(codes: np.ndarray) -> np.ndarray:
    """G.711 mu-law codes -> float32 samples in [-1, 1)."""
    u = ~np.asarray(codes, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + _ULAW_BIAS) << ((u & 0x70) >> 4)
    pcm = np.where(u & 0x80, _ULAW_BIAS - t, t - _ULAW_BIAS)
    return (pcm / 32768.0).astype(np.float32)


def alaw_encode(audio: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] (clipped beyond) -> G.711 A-law codes, uint8."""
    pcm = _to_int16(audio) >> 3  # 13-bit
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    mag = np.where(pcm >= 0, pcm, -pcm - 1)
    seg = np.maximum(np.frexp(mag)[1] - 5, 0)  # segments end at 0x1F, 0x3F, ..., 0xFFF: bit length - 5
    shift = np.where(seg < 2, 1, seg)
    code = (np.minimum(seg, 7) << 4) | ((mag >> shift) & 0x0F)
    code = np.where(seg >= 8, 0x7F, code)  # beyond the last segment: the largest code
    return (code ^ mask).astype(np.uint8)


def alaw_decode(codes: np.ndarray) -> np.ndarray:
    """G.711 A-law codes -> float32 samples in [-1, 1)."""
    a = np.asarray(codes, dtype=np.int32) ^ 0x55
    seg = (a & 0x70) >> 4
    t = (a & 0x0F) << 4
    t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    pcm = np.where(a & 0x80, t, -t)
    return (pcm / 32768.0).astype(np.float32)


_CODEC = {"ulaw": (mulaw_encode, mulaw_decode), "alaw": (alaw_encode, alaw_decode)}


def g711(audio: np.ndarray, codec: str) -> np.ndarray:
    """Encode and decode with G.711 ``codec`` ("ulaw" or "alaw"): 8-bit companding noise and clipping."""
    if codec not in _CODEC:
        raise ValueError(f"unknown codec {codec!r}; expected one of {CODECS}")
    encode, decode = _CODEC[codec]
    return decode(encode(audio))


# -- filters and noise ---------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _resample_filter(up: int, down: int) -> np.ndarray:
    """The FIR low-pass scipy's resample_poly designs by default (Kaiser, beta 5), designed once per ratio."""
    max_rate = max(up, down)
    half_len = 10 * max_rate
    return firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0)).astype(np.float32)


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Polyphase resampling between integer rates (anti-aliased), float32 out."""
    if from_rate == to_rate:
        return np.asarray(audio, dtype=np.float32)
    ratio = Fraction(to_rate, from_rate)
    up, down = ratio.numerator, ratio.denominator
    out = resample_poly(np.asarray(audio, dtype=np.float32), up, down, window=_resample_filter(up, down))
    return out.astype(np.float32)


@lru_cache(maxsize=4)
def _band_sos(rate: int) -> np.ndarray:
    return ellip(BAND_ORDER, BAND_RIPPLE_DB, BAND_STOP_DB, PHONE_BAND_HZ, btype="bandpass", output="sos", fs=rate)


def telephone_band(audio: np.ndarray, rate: int = PHONE_SAMPLE_RATE) -> np.ndarray:
    """Band-pass to PHONE_BAND_HZ (causal elliptic filter, as a line card filters)."""
    return sosfilt(_band_sos(rate), audio).astype(np.float32)


def _shaped_noise(n: int, exponent: float, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise inside PHONE_BAND_HZ whose power falls as 1 / f**exponent (0 white, 1 pink, 2 brown)."""
    freqs = np.fft.rfftfreq(n, 1.0 / rate)
    inside = (freqs >= PHONE_BAND_HZ[0]) & (freqs <= PHONE_BAND_HZ[1])
    spectrum = np.zeros(freqs.size, dtype=np.complex128)
    k = int(inside.sum())
    spectrum[inside] = (rng.standard_normal(k) + 1j * rng.standard_normal(k)) / freqs[inside] ** (exponent / 2)
    return np.fft.irfft(spectrum, n=n)


def _hum(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Mains hum and buzz: the harmonics of 50 (or 60) Hz that fall in the telephone band, over a faint floor."""
    f0 = MAINS_HZ[0] if rng.random() < 0.8 else MAINS_HZ[1]
    t = np.arange(int(round(rate / f0))) / rate  # one period (an exact number of samples at 8 kHz)
    harmonics = np.arange(int(np.ceil(PHONE_BAND_HZ[0] / f0)), int(PHONE_BAND_HZ[1] // f0) + 1)
    amps = (harmonics / harmonics[0]) ** -rng.uniform(0.5, 2.0) * rng.uniform(0.5, 1.0, harmonics.size)
    phases = rng.uniform(0, 2 * np.pi, harmonics.size)
    cycle = (amps[:, None] * np.sin(2 * np.pi * f0 * harmonics[:, None] * t + phases[:, None])).sum(axis=0)
    hum = np.tile(cycle, n // cycle.size + 1)[:n]
    floor = _shaped_noise(n, 0.0, rate, rng)
    return hum / (hum.std() + 1e-12) + 0.05 * floor / (floor.std() + 1e-12)


def _babble(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Office babble: a few distant talkers, each speech-shaped noise switched on and off at syllable rate."""
    talkers = int(rng.integers(3, 7))
    base = _shaped_noise(n, 1.0, rate, rng)
    frame = max(1, int(rate * 0.06))  # 60 ms envelope steps: a few syllables a second
    steps = n // frame + 2
    env = (rng.random((talkers, steps)) < 0.6) * rng.uniform(0.3, 1.0, (talkers, steps))
    pos, knots = np.arange(n, dtype=np.float64), np.arange(steps, dtype=np.float64) * frame
    out = np.zeros(n, dtype=np.float64)
    for k, offset in enumerate(rng.integers(0, n, talkers)):  # each talker: the base noise shifted in time
        out += np.roll(base, int(offset)) * np.interp(pos, knots, env[k])
    return out


def background_noise(kind: str, n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of background noise of ``kind`` (one of NOISE_KINDS) as the telephone band passes it
    (nothing outside PHONE_BAND_HZ), float32 with unit standard deviation."""
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise kind {kind!r}; expected one of {NOISE_KINDS}")
    if n == 0:
        return np.zeros(0, dtype=np.float32)
    if kind in ("white", "pink", "brown"):
        noise = _shaped_noise(n, {"white": 0.0, "pink": 1.0, "brown": 2.0}[kind], rate, rng)
    elif kind == "hum":
        noise = _hum(n, rate, rng)
    else:
        noise = _babble(n, rate, rng)
    return (noise / (noise.std() + 1e-12)).astype(np.float32)


def add_noise(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``speech + noise`` with the noise scaled so that mean speech power / mean noise power = ``snr_db``."""
    p_speech = float(np.mean(np.square(speech, dtype=np.float64)))
    p_noise = float(np.mean(np.square(noise, dtype=np.float64))) + 1e-20
    return (speech + noise * np.sqrt(p_speech / p_noise / 10 ** (snr_db / 10))).astype(np.float32)


# -- the channel -------------------------------------------------------------------------------------


def _check(config: ChannelConfig) -> None:
    if config.codec not in (*CODECS, "random", "none"):
        raise ValueError(f"ChannelConfig.codec={config.codec!r}; expected one of {CODECS}, 'random' or 'none'")
    unknown = set(config.noise_kinds) - set(NOISE_KINDS)
    if unknown or len(config.noise_kinds) != len(config.noise_weights) or not config.noise_kinds:
        raise ValueError(
            f"ChannelConfig.noise_kinds={config.noise_kinds} must be non-empty kinds from {NOISE_KINDS}, "
            f"one weight each in noise_weights={config.noise_weights}"
        )
    if not 0.0 <= config.packet_loss <= 1.0:
        raise ValueError(f"ChannelConfig.packet_loss={config.packet_loss} must be a probability in [0, 1]")


def telephone_channel(
    audio: np.ndarray, sample_rate: int, rng: np.random.Generator, config: ChannelConfig = DEFAULT_CHANNEL
) -> tuple[np.ndarray, dict]:
    """Pass ``audio`` (mono, any rate) through a telephone line.

    Returns float32 audio at PHONE_SAMPLE_RATE and what was applied, JSON-ready for a manifest:
    ``{"codec", "snr_db", "noise", "gain_db" (the gain points), "gaps" ([start_s, end_s] pairs)}``.
    Each stage draws from its own child of ``rng``, so changing one setting leaves the others' draws alone.
    """
    _check(config)
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"telephone_channel expects mono audio (1-D), got shape {audio.shape}")
    rng_noise, rng_level, rng_loss, rng_codec = rng.spawn(4)
    rate = PHONE_SAMPLE_RATE

    speech = telephone_band(resample(audio, sample_rate, rate), rate)
    n = speech.size

    kind = str(rng_noise.choice(config.noise_kinds, p=np.asarray(config.noise_weights) / sum(config.noise_weights)))
    snr_db = float(rng_noise.uniform(*config.snr_db))
    out = add_noise(speech, background_noise(kind, n, rate, rng_noise), snr_db) if n else speech

    gains_db = rng_level.uniform(*config.level_db, size=max(config.level_points, 1))
    if n:
        knots = np.linspace(0, n - 1, gains_db.size) if gains_db.size > 1 else np.zeros(1)
        out = out * (10 ** (np.interp(np.arange(n), knots, gains_db) / 20)).astype(np.float32)

    codec = str(rng_codec.choice(CODECS)) if config.codec == "random" else config.codec
    out = g711(out, codec) if codec != "none" else np.clip(out, -1.0, 1.0).astype(np.float32)

    gaps: list[list[float]] = []  # lost in the network after encoding: the receiver plays silence
    frame = int(round(FRAME_S * rate))
    if n >= frame and rng_loss.random() < config.packet_loss:
        for _ in range(int(rng_loss.integers(1, config.max_gaps + 1))):
            start = int(rng_loss.integers(0, n // frame)) * frame
            stop = min(n, start + frame * int(rng_loss.integers(1, config.max_gap_frames + 1)))
            out[start:stop] = 0.0
            gaps.append([round(start / rate, 3), round(stop / rate, 3)])
        gaps.sort()

    applied = {
        "codec": codec,
        "snr_db": round(snr_db, 2),
        "noise": kind,
        "gain_db": [round(float(g), 2) for g in gains_db],
        "gaps": gaps,
    }
    return out, applied


def to_model_rate(audio_8k: np.ndarray) -> np.ndarray:
    """Upsample telephone audio from PHONE_SAMPLE_RATE to SAMPLE_RATE (nothing is added above 4 kHz)."""
    return resample(audio_8k, PHONE_SAMPLE_RATE, SAMPLE_RATE)
