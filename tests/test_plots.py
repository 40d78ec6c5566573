"""data.plots: what the figures show matches the data they are given; statistics are right on known signals."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # headless

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from data.audio import ESPEAK_SAMPLE_RATE, PHONE_BAND_HZ, PHONE_SAMPLE_RATE  # noqa: E402
from data.plots import (  # noqa: E402
    SPEC_RANGE_DB,
    count_labels,
    plot_call,
    plot_channel_comparison,
    plot_label_balance,
    plot_spectrogram_grid,
    plot_stat_comparison,
    plot_waveform,
    speech_stats,
    spectrogram_db,
)
from models.taxonomy import DEFAULT_TAXONOMY  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _tone(hz: float, seconds: float, sr: int, harmonics: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return sum(np.sin(2 * np.pi * hz * k * t) / k for k in range(1, harmonics + 1)).astype(np.float32) * 0.3


def test_spectrogram_peaks_at_tone_frequency():
    freqs, times, db = spectrogram_db(_tone(1000.0, 1.0, PHONE_SAMPLE_RATE), PHONE_SAMPLE_RATE)
    assert db.shape == (len(freqs), len(times))
    assert freqs[-1] == pytest.approx(PHONE_SAMPLE_RATE / 2)
    peak_hz = freqs[np.argmax(db.mean(axis=1))]
    assert abs(peak_hz - 1000.0) <= freqs[1] - freqs[0]
    assert db.max() == pytest.approx(0.0) and db.min() >= -SPEC_RANGE_DB
    assert times[-1] == pytest.approx(1.0, abs=0.05)


def test_spectrogram_rejects_stereo_with_a_hint():
    with pytest.raises(ValueError, match=r"audio\[0\]"):
        spectrogram_db(np.zeros((2, 800), np.float32), PHONE_SAMPLE_RATE)


def test_label_balance_bars_equal_counts_and_keep_taxonomy_order():
    records = [
        {"split": "train", "dialect": "mandarin", "emotion": "angry", "intent": "billing_error"},
        {"split": "train", "dialect": "mandarin", "emotion": "neutral", "intent": "praise"},
        {"split": "train", "dialect": "wu", "emotion": "angry", "intent": "praise"},
        {"split": "test", "dialect": "min", "emotion": "sad", "intent": "billing_error"},
    ]
    counts = count_labels(records)
    assert counts["train"]["dialect"] == {"mandarin": 2, "wu": 1}
    assert counts["test"]["intent"] == {"billing_error": 1}
    fig = plot_label_balance(counts)
    dialect_ax = fig.axes[0]
    labels = [t.get_text() for t in dialect_ax.get_xticklabels()]
    assert labels == list(DEFAULT_TAXONOMY.dialect_names)  # cantonese shows as an empty slot
    bars = [p for p in dialect_ax.patches if isinstance(p, Rectangle)]
    assert len(bars) == 2 * len(labels)  # one bar per split per label
    train_heights = [b.get_height() for b in bars[: len(labels)]]
    assert train_heights == [counts["train"]["dialect"].get(x, 0) for x in labels]
    assert len(fig.axes) == 3
    with pytest.raises(ValueError, match="empty"):
        plot_label_balance({})


def test_call_plot_shades_each_speakers_turns():
    sr = PHONE_SAMPLE_RATE
    stereo = np.stack([_tone(300.0, 3.0, sr), _tone(500.0, 3.0, sr)])
    turns = [
        {"speaker": "agent", "start_s": 0.1, "end_s": 0.9},
        {"speaker": "customer", "start_s": 1.0, "end_s": 2.0},
        {"speaker": "agent", "start_s": 2.2, "end_s": 2.8},
    ]
    fig = plot_call(stereo, sr, turns)
    agent_ax, customer_ax = fig.axes[0], fig.axes[1]
    assert len(agent_ax.patches) == 2 and len(customer_ax.patches) == 1
    assert len(agent_ax.lines) == 1 + 2 * len(turns)  # the waveform plus every turn's two boundaries
    with pytest.raises(ValueError, match="load_audio_channels"):
        plot_call(stereo[0], sr, turns)
    with pytest.raises(ValueError, match="caller"):
        plot_call(stereo, sr, [{"speaker": "caller", "start_s": 0.0, "end_s": 1.0}])


def test_channel_comparison_shares_the_wideband_frequency_scale():
    wide = _tone(5000.0, 0.5, ESPEAK_SAMPLE_RATE) + _tone(1000.0, 0.5, ESPEAK_SAMPLE_RATE)
    phone = _tone(1000.0, 0.5, PHONE_SAMPLE_RATE)
    fig = plot_channel_comparison(wide, ESPEAK_SAMPLE_RATE, phone, PHONE_SAMPLE_RATE)
    left, right = fig.axes[0], fig.axes[1]
    assert left.get_ylim() == right.get_ylim() == (0.0, ESPEAK_SAMPLE_RATE / 2)
    marked = sorted({round(line.get_ydata()[0]) for line in right.lines})
    assert marked == [round(hz) for hz in PHONE_BAND_HZ]


def test_waveform_and_grid():
    fig = plot_waveform(_tone(200.0, 1.0, PHONE_SAMPLE_RATE), PHONE_SAMPLE_RATE, spans=[(0.2, 0.4)])
    assert len(fig.axes[0].patches) == 1
    clips = [(f"clip {i}", _tone(400.0 * (i + 1), 0.5, PHONE_SAMPLE_RATE), PHONE_SAMPLE_RATE) for i in range(3)]
    grid = plot_spectrogram_grid(clips, ncols=2)
    visible = [ax for ax in grid.axes if ax.get_visible() and ax.get_title()]
    assert [ax.get_title() for ax in visible] == ["clip 0", "clip 1", "clip 2"]


def test_speech_stats_on_a_voiced_tone_with_a_pause():
    sr = PHONE_SAMPLE_RATE
    voiced = _tone(150.0, 1.0, sr, harmonics=8)
    audio = np.concatenate([voiced, np.zeros(sr, np.float32), voiced])
    stats = speech_stats(audio, sr)
    assert stats["duration_s"] == pytest.approx(3.0)
    assert stats["f0_median_hz"] == pytest.approx(150.0, rel=0.03)
    assert stats["f0_iqr_st"] < 1.0  # a steady tone: well under a semitone
    assert math.isnan(stats["syllables_per_s"])  # no transcript given
    assert stats["active_fraction"] == pytest.approx(2 / 3, abs=0.05)
    level = 20 * math.log10(float(np.sqrt(np.mean(voiced**2))))
    assert stats["rms_db"] == pytest.approx(level, abs=1.5)
    silence = speech_stats(np.zeros(sr, np.float32), sr)
    assert silence["active_fraction"] == 0.0 and math.isnan(silence["f0_median_hz"])
    noise = np.random.default_rng(0).normal(0, 0.1, sr).astype(np.float32)
    assert math.isnan(speech_stats(noise, sr)["f0_median_hz"])  # noise is aperiodic: no pitch
    assert speech_stats(_tone(220.0, 1.0, 16000, harmonics=5), 16000)["f0_median_hz"] == pytest.approx(220.0, rel=0.01)


def test_speech_stats_folds_octave_errors_and_counts_syllables():
    sr = PHONE_SAMPLE_RATE
    # a voice at 150 Hz that a pitch tracker on telephone audio would read an octave too high a third of the time
    audio = np.concatenate([_tone(150.0, 0.7, sr, harmonics=8), _tone(300.0, 0.3, sr, harmonics=8)] * 2)
    stats = speech_stats(audio, sr, text="我要投诉，ABC 123！")
    assert stats["f0_iqr_st"] < 1.0  # unfolded, the quartiles would lie an octave (12 semitones) apart
    assert stats["f0_median_hz"] == pytest.approx(150.0, rel=0.03)
    assert stats["syllables_per_s"] == pytest.approx(4 / 2.0)  # four Chinese characters in two seconds


def test_stat_comparison_draws_one_box_per_group_and_source():
    rows = [
        {"dialect": d, "source": s, "duration_s": float(i), "f0_median_hz": 100.0 + i}
        for i, (d, s) in enumerate([("mandarin", "real"), ("mandarin", "synthetic"), ("wu", "synthetic")] * 3)
    ]
    rows.append({"dialect": "wu", "source": "real", "duration_s": 1.0, "f0_median_hz": float("nan")})
    fig = plot_stat_comparison(rows, stats=("duration_s", "f0_median_hz"))
    duration_ax, f0_ax = fig.axes
    assert [t.get_text() for t in duration_ax.get_xticklabels()] == ["mandarin", "wu"]
    assert len(duration_ax.patches) == 4  # mandarin real+synthetic, wu real+synthetic
    assert len(f0_ax.patches) == 3  # wu's real row has no F0: no box
