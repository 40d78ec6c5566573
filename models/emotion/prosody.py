"""Prosodic features of one utterance: pitch statistics, energy, speaking rate, pauses, spectral balance.

Computed on the telephone band (the audio is 8 kHz at the source), independent of any model. Pitch is in
semitones re 100 Hz so that its statistics are differences a listener hears; energy in dB re the utterance's
own loudest frame (the line's gain varies) plus the absolute level as one feature.
"""

from __future__ import annotations

import numpy as np

from data.audio import PHONE_SAMPLE_RATE, SAMPLE_RATE

FRAME_S = 0.032  # s: analysis frame (pitch and energy)
HOP_S = 0.010  # s: frame hop
F0_MIN_HZ = 70.0  # Hz: lowest pitch searched
F0_MAX_HZ = 450.0  # Hz: highest pitch searched
F0_REF_HZ = 100.0  # Hz: 0 semitones
VOICING_THRESHOLD = 0.45  # normalised autocorrelation peak above which a frame counts as voiced
SILENCE_BELOW_PEAK_DB = 30.0  # dB: frames this far below the loudest frame are pauses
NUCLEUS_MIN_GAP_S = 0.09  # s: two syllable nuclei are at least this far apart
NUCLEUS_PROMINENCE_DB = 2.0  # dB: an energy peak must stand this far above its neighbourhood
EPS = 1e-10

FEATURE_NAMES = (
    "f0_mean_st", "f0_std_st", "f0_p10_st", "f0_p90_st", "f0_range_st", "f0_slope_st_per_s", "f0_delta_abs_st",
    "voiced_fraction",
    "energy_mean_db", "energy_std_db", "energy_range_db", "energy_voiced_mean_db", "level_dbfs", "peak_dbfs",
    "speech_rate_per_s", "pause_fraction", "mean_pause_s",
    "spectral_centroid_hz", "high_band_ratio_db", "duration_s",
)  # fmt: skip


def _frames(x: np.ndarray, frame: int, hop: int) -> np.ndarray:
    if len(x) < frame:
        x = np.pad(x, (0, frame - len(x)))
    n = 1 + (len(x) - frame) // hop
    idx = np.arange(frame)[None, :] + hop * np.arange(n)[:, None]
    return x[idx]


def _pitch(frames: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(f0 in Hz, voicing strength) per frame from the normalised autocorrelation peak in the pitch range."""
    f = frames - frames.mean(axis=1, keepdims=True)
    f = f * np.hanning(f.shape[1])[None, :]
    n_fft = 1 << int(np.ceil(np.log2(2 * f.shape[1])))
    spec = np.fft.rfft(f, n_fft, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, n_fft, axis=1)[:, : f.shape[1]]
    ac = ac / (ac[:, :1] + EPS)
    lo, hi = int(rate / F0_MAX_HZ), min(int(rate / F0_MIN_HZ), f.shape[1] - 2)
    seg = ac[:, lo:hi]
    k = seg.argmax(axis=1)
    strength = seg[np.arange(len(seg)), k]
    lag = (k + lo).astype(np.float64)
    # parabolic interpolation around the peak
    i = k + lo
    ok = (i > 0) & (i < ac.shape[1] - 1)
    a, b, c = ac[np.arange(len(ac)), np.clip(i - 1, 0, None)], ac[np.arange(len(ac)), i], ac[np.arange(len(ac)), np.clip(i + 1, None, ac.shape[1] - 1)]
    denom = a - 2 * b + c
    shift = np.where(ok & (np.abs(denom) > EPS), 0.5 * (a - c) / np.where(np.abs(denom) > EPS, denom, 1.0), 0.0)
    lag = lag + np.clip(shift, -1, 1)
    return rate / np.maximum(lag, 1.0), strength


def prosody_features(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The :data:`FEATURE_NAMES` of mono ``audio`` (float32, any rate; analysed at 8 kHz), as float32."""
    from data.audio import resample

    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"prosody_features expects mono audio (samples,), got shape {x.shape}")
    rate = PHONE_SAMPLE_RATE
    x = resample(x, sample_rate, rate).astype(np.float64)
    duration = len(x) / rate
    frame, hop = int(FRAME_S * rate), int(HOP_S * rate)
    frames = _frames(x, frame, hop)
    rms = np.sqrt(np.mean(frames**2, axis=1) + EPS)
    db = 20 * np.log10(rms + EPS)
    peak_db = float(db.max())
    rel = db - peak_db
    speech = rel > -SILENCE_BELOW_PEAK_DB
    f0, strength = _pitch(frames, rate)
    voiced = speech & (strength > VOICING_THRESHOLD)
    st = 12 * np.log2(np.maximum(f0, 1.0) / F0_REF_HZ)

    if voiced.sum() >= 3:
        sv = st[voiced]
        t = np.nonzero(voiced)[0] * HOP_S
        slope = float(np.polyfit(t, sv, 1)[0]) if np.ptp(t) > 0 else 0.0
        # frame-to-frame movement inside voiced runs; octave jumps (> 4 st) are tracking errors, not intonation
        both = voiced[1:] & voiced[:-1]
        d = np.abs(np.diff(st))[both]
        d = d[d < 4.0]
        p10, p90 = np.percentile(sv, [10, 90])
        pitch = [float(np.median(sv)), float(np.std(sv)), float(p10), float(p90), float(p90 - p10), slope,
                 float(d.mean()) if d.size else 0.0]
    else:
        pitch = [0.0] * 7

    # speaking rate: prominent peaks of the smoothed energy envelope inside speech
    env = np.convolve(rel, np.ones(5) / 5, mode="same")
    from scipy.signal import find_peaks

    gap = max(1, int(NUCLEUS_MIN_GAP_S / HOP_S))
    found, _ = find_peaks(np.where(speech, env, env.min()), distance=gap, prominence=NUCLEUS_PROMINENCE_DB)
    peaks = int(speech[found].sum())
    speech_s = max(speech.sum() * HOP_S, HOP_S)
    # pause runs between speech (leading and trailing silence are not pauses)
    edges = np.flatnonzero(np.diff(np.r_[0, (~speech).astype(np.int8), 0]))
    runs = [(a, b) for a, b in zip(edges[::2], edges[1::2]) if a > 0 and b < len(speech)]
    inner = [b - a for a, b in runs]

    spec = np.abs(np.fft.rfft(frames[speech] * np.hanning(frame)[None, :], axis=1)) ** 2 if speech.any() else np.zeros((1, frame // 2 + 1))
    freqs = np.fft.rfftfreq(frame, 1 / rate)
    power = spec.sum(axis=0) + EPS
    centroid = float((power * freqs).sum() / power.sum())
    high = float(10 * np.log10(power[freqs >= 1000].sum() / power[freqs < 1000].sum()))
    level = float(20 * np.log10(np.sqrt(np.mean(x**2)) + EPS))
    feats = pitch + [
        float(voiced.mean()),
        float(rel[speech].mean()), float(rel[speech].std()),
        float(np.subtract(*np.percentile(rel[speech], [90, 10]))),
        float(rel[voiced].mean()) if voiced.any() else float(rel[speech].mean()),
        level, float(20 * np.log10(np.abs(x).max() + EPS)),
        peaks / speech_s, float(1 - speech.mean()),
        float(np.mean(inner) * HOP_S) if inner else 0.0,
        centroid, high, duration,
    ]  # fmt: skip
    return np.asarray(feats, dtype=np.float32)
