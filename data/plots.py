"""Plots for the notebooks: waveforms, spectrograms, whole calls, label balance, real vs synthetic speech, and the
rough prosody statistics the last one plots (:func:`speech_stats`: duration, speaking rate, pitch, level).

Every ``plot_*`` function draws with matplotlib and returns the Figure (it never calls ``plt.show()``; Jupyter
shows figures by itself). Axis labels are English: no CJK font is assumed on the machine.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from data.audio import PHONE_BAND_HZ, SILENCE_DB
from models.taxonomy import DEFAULT_TAXONOMY, Taxonomy

if TYPE_CHECKING:  # matplotlib is imported lazily: importing data.plots stays cheap
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

SPEC_WINDOW_S = 0.025  # s: spectrogram analysis window (25 ms, the usual speech frame)
SPEC_HOP_S = 0.010  # s: hop between spectrogram frames
SPEC_RANGE_DB = 80.0  # dB: colour range of a spectrogram, below its loudest bin
PITCH_RANGE_HZ = (60.0, 500.0)  # Hz: F0 search range of speech_stats (covers adult male to child voices)
ACTIVE_RANGE_DB = 30.0  # dB: frames within this of the loudest frames count as speech in speech_stats
STATS_FRAME_S = 0.040  # s: frame length of speech_stats' pitch and energy tracks (over 2 periods of 60 Hz)
STATS_HOP_S = 0.010  # s: hop between speech_stats frames
YIN_THRESHOLD = 0.1  # YIN's dip threshold on the cumulative mean normalised difference
VOICED_APERIODICITY = 0.3  # frames whose YIN aperiodicity is below this count as voiced
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")  # one Chinese character = one syllable
SPEAKER_COLORS = {"agent": "tab:blue", "customer": "tab:orange"}  # colours of call channels and their turns
SPLIT_COLORS = {"train": "tab:blue", "validation": "tab:green", "test": "tab:red"}  # bar colours per split


def _new_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    import matplotlib.pyplot as plt

    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    return fig, ax


def _check_audio(audio: np.ndarray, sample_rate: int, what: str) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"{what}: expected mono audio of shape (samples,), got shape {audio.shape}; "
                         "pass one channel (audio[0]) or the mix (audio.mean(axis=0))")
    if sample_rate <= 0:
        raise ValueError(f"{what}: sample_rate must be a positive number of Hz, got {sample_rate}")
    return audio


# -- spectrograms and waveforms -----------------------------------------------------------------------
def spectrogram_db(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Power spectrogram of mono ``audio`` in dB relative to its loudest bin (0 dB = max), floored at
    ``-SPEC_RANGE_DB``: returns (freqs_hz (F,), times_s (T,), db (F, T))."""
    from scipy.signal import stft

    audio = _check_audio(audio, sample_rate, "spectrogram_db")
    nperseg = max(16, int(round(SPEC_WINDOW_S * sample_rate)))
    hop = max(1, int(round(SPEC_HOP_S * sample_rate)))
    nfft = 1 << (nperseg - 1).bit_length()
    freqs, times, z = stft(audio, fs=sample_rate, nperseg=nperseg, noverlap=nperseg - hop, nfft=nfft, boundary=None)
    power = np.abs(z) ** 2
    db = 10.0 * np.log10(np.maximum(power, 1e-12))
    db -= db.max(initial=-np.inf) if power.size else 0.0
    return freqs, times, np.maximum(db, -SPEC_RANGE_DB)


def plot_spectrogram(
    audio: np.ndarray,
    sample_rate: int,
    ax: Axes | None = None,
    title: str = "",
    max_hz: float | None = None,
    mark_hz: Sequence[float] = (),
) -> Figure:
    """Spectrogram of mono ``audio`` (dB, time in s, frequency in Hz up to ``max_hz``, default Nyquist), with a
    dashed line at each frequency of ``mark_hz`` (e.g. the telephone band edge)."""
    fig, ax = _new_axes(ax, (8, 3))
    freqs, times, db = spectrogram_db(audio, sample_rate)
    step_t = times[1] - times[0] if len(times) > 1 else SPEC_HOP_S
    extent = (times[0] - step_t / 2, times[-1] + step_t / 2, freqs[0], freqs[-1]) if len(times) else None
    mesh = ax.imshow(db, origin="lower", aspect="auto", extent=extent, cmap="magma", vmin=-SPEC_RANGE_DB, vmax=0.0,
                     interpolation="nearest")
    ax.set_ylim(0, max_hz or sample_rate / 2)
    for hz in mark_hz:
        ax.axhline(hz, color="cyan", linestyle="--", linewidth=1)
        ax.annotate(f"{hz / 1000:g} kHz", (0.995, hz), xycoords=("axes fraction", "data"), ha="right", va="bottom",
                    color="cyan", fontsize=8)
    ax.set(xlabel="time (s)", ylabel="frequency (Hz)", title=title)
    fig.colorbar(mesh, ax=ax, label="dB", pad=0.01)
    return fig


def plot_waveform(
    audio: np.ndarray,
    sample_rate: int,
    ax: Axes | None = None,
    title: str = "",
    spans: Sequence[tuple[float, float]] = (),
    color: str = "tab:blue",
) -> Figure:
    """Waveform of mono ``audio`` against time in seconds; each (start_s, end_s) of ``spans`` is shaded."""
    fig, ax = _new_axes(ax, (8, 2))
    audio = _check_audio(audio, sample_rate, "plot_waveform")
    t = np.arange(len(audio)) / sample_rate
    ax.plot(t, audio, color=color, linewidth=0.5)
    for start, end in spans:
        ax.axvspan(start, end, color=color, alpha=0.15, linewidth=0)
    ax.set(xlabel="time (s)", ylabel="amplitude", title=title, xlim=(0, max(t[-1] if len(t) else 0.0, 1e-3)))
    return fig


def plot_call(
    stereo: np.ndarray,
    sample_rate: int,
    turns: Sequence[Mapping],
    channels: Sequence[str] = ("agent", "customer"),
    title: str = "",
) -> Figure:
    """A whole call: one waveform row per channel of ``stereo`` (channels, samples) with that speaker's turns
    shaded and every turn boundary drawn, then the spectrogram of the mix. ``turns`` are call records'
    ``{"speaker", "start_s", "end_s", ...}``."""
    import matplotlib.pyplot as plt

    stereo = np.asarray(stereo, dtype=np.float32)
    if stereo.ndim != 2 or stereo.shape[0] != len(channels):
        raise ValueError(f"plot_call: expected audio of shape ({len(channels)}, samples) for channels "
                         f"{list(channels)}, got shape {stereo.shape}; load it with load_audio_channels")
    unknown = {t["speaker"] for t in turns} - set(channels)
    if unknown:
        raise ValueError(f"plot_call: turns name speakers {sorted(unknown)} that are not among channels {list(channels)}")
    rows = len(channels) + 1
    fig, axes = plt.subplots(rows, 1, figsize=(10, 1.8 * rows + 1), sharex=True, layout="constrained")
    for ax, name, audio in zip(axes, channels, stereo):
        color = SPEAKER_COLORS.get(name, "tab:gray")
        spans = [(t["start_s"], t["end_s"]) for t in turns if t["speaker"] == name]
        plot_waveform(audio, sample_rate, ax=ax, title=f"{name} channel", spans=spans, color=color)
        for t in turns:
            for edge in (t["start_s"], t["end_s"]):
                ax.axvline(edge, color=SPEAKER_COLORS.get(t["speaker"], "tab:gray"), linewidth=0.6, alpha=0.8)
        ax.set_xlabel("")
    plot_spectrogram(stereo.mean(axis=0), sample_rate, ax=axes[-1], title="mix", mark_hz=())
    if title:
        fig.suptitle(title)
    return fig


def plot_channel_comparison(
    wideband: np.ndarray,
    wideband_rate: int,
    phone: np.ndarray,
    phone_rate: int,
    band_hz: tuple[float, float] = PHONE_BAND_HZ,
) -> Figure:
    """The same utterance before and after the telephone channel: spectrograms side by side on one frequency
    scale (0 to the wideband Nyquist), the channel's pass band edges dashed."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 3.5), sharey=True, layout="constrained")
    top = wideband_rate / 2
    plot_spectrogram(wideband, wideband_rate, ax=axes[0], title=f"TTS output, {wideband_rate / 1000:g} kHz",
                     max_hz=top, mark_hz=band_hz)
    plot_spectrogram(phone, phone_rate, ax=axes[1], title=f"after the telephone channel, {phone_rate / 1000:g} kHz",
                     max_hz=top, mark_hz=band_hz)
    if phone_rate / 2 < top:
        axes[1].axhspan(phone_rate / 2, top, color="0.85", zorder=0)
        axes[1].text(0.5, (phone_rate / 2 + top) / 2, f"nothing above {phone_rate / 2000:g} kHz\n(Nyquist of {phone_rate / 1000:g} kHz audio)",
                     transform=axes[1].get_yaxis_transform(), ha="center", va="center", color="0.3")
    axes[1].set_ylabel("")
    return fig


def plot_spectrogram_grid(
    clips: Sequence[tuple[str, np.ndarray, int]],
    ncols: int = 2,
    max_hz: float | None = None,
) -> Figure:
    """One spectrogram per (title, mono audio, sample_rate) of ``clips``, ``ncols`` per row, a shared
    frequency scale up to ``max_hz`` (default: the lowest Nyquist among the clips)."""
    import matplotlib.pyplot as plt

    if not clips:
        raise ValueError("plot_spectrogram_grid: no clips given; pass a list of (title, audio, sample_rate)")
    nrows = -(-len(clips) // ncols)
    top = max_hz or min(sr for _, _, sr in clips) / 2
    fig, axes = plt.subplots(nrows, ncols, figsize=(6 * ncols, 2.6 * nrows), squeeze=False, layout="constrained")
    for ax, (title, audio, sr) in zip(axes.flat, clips):
        plot_spectrogram(audio, sr, ax=ax, title=title, max_hz=top)
    for ax in axes.flat[len(clips):]:
        ax.set_visible(False)
    return fig


# -- labels -------------------------------------------------------------------------------------------
def label_order(field: str, taxonomy: Taxonomy = DEFAULT_TAXONOMY) -> tuple[str, ...]:
    """The taxonomy's order of the labels of ``field`` ("dialect", "emotion" or "intent")."""
    orders = {"dialect": taxonomy.dialect_names, "emotion": taxonomy.emotions, "intent": taxonomy.intent_names}
    if field not in orders:
        raise ValueError(f"unknown label field {field!r}; use one of {', '.join(orders)}")
    return tuple(orders[field])


def count_labels(records: Sequence[Mapping], fields: Sequence[str] = ("dialect", "emotion", "intent"),
                 split_key: str = "split") -> dict[str, dict[str, dict[str, int]]]:
    """Counts in the shape of ``CorpusReport.counts`` (split -> field -> label -> n) from manifest records."""
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for rec in records:
        by_field = counts.setdefault(str(rec.get(split_key) or "all"), {f: {} for f in fields})
        for f in fields:
            label = rec.get(f)
            if label is not None:
                by_field[f][label] = by_field[f].get(label, 0) + 1
    return counts


def plot_label_balance(
    counts: Mapping[str, Mapping[str, Mapping[str, int]]],
    fields: Sequence[str] = ("dialect", "emotion", "intent"),
    taxonomy: Taxonomy = DEFAULT_TAXONOMY,
) -> Figure:
    """One bar chart per label field: for each label (in taxonomy order) one bar per split.
    ``counts`` is split -> field -> label -> n, as in ``CorpusReport.counts`` or :func:`count_labels`."""
    import matplotlib.pyplot as plt

    splits = list(counts)
    if not splits:
        raise ValueError("plot_label_balance: counts are empty (no split has any record)")
    fig, axes = plt.subplots(len(fields), 1, figsize=(11, 3.2 * len(fields)), squeeze=False, layout="constrained")
    width = 0.8 / len(splits)
    for ax, f in zip(axes[:, 0], fields):
        seen = {label for s in splits for label in counts[s].get(f, {})}
        known = label_order(f, taxonomy)  # every taxonomy label, so that a missing one shows as an empty slot
        labels = list(known) + sorted(seen - set(known))
        x = np.arange(len(labels))
        for i, split in enumerate(splits):
            values = [counts[split].get(f, {}).get(label, 0) for label in labels]
            ax.bar(x + (i - (len(splits) - 1) / 2) * width, values, width, label=f"{split} ({sum(values)})",
                   color=SPLIT_COLORS.get(split))
        ax.set_xticks(x, labels, rotation=30 if len(labels) > 6 else 0, ha="right" if len(labels) > 6 else "center")
        ax.set(ylabel="records", title=f"{f} per split")
        ax.legend(fontsize=8)
    return fig


# -- speech statistics --------------------------------------------------------------------------------
def pitch_track(frames: np.ndarray, sample_rate: int, pitch_range_hz: tuple[float, float] = PITCH_RANGE_HZ,
                threshold: float = YIN_THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
    """YIN pitch of each row of ``frames`` (n_frames, frame_length): returns (f0_hz, aperiodicity), where
    aperiodicity is the cumulative mean normalised difference at the chosen lag (near 0 for a clean periodic
    frame, near 1 for noise). ``frame_length`` must exceed one period of the lowest pitch."""
    lo, hi = pitch_range_hz
    min_lag, max_lag = max(1, int(sample_rate / hi)), int(np.ceil(sample_rate / lo))
    width = frames.shape[1] - max_lag - 1
    if width < max_lag // 2:
        raise ValueError(f"pitch_track: frames of {frames.shape[1]} samples are too short for pitch down to {lo} Hz "
                         f"at {sample_rate} Hz; use frames of at least {3 * max_lag} samples")
    frames = frames.astype(np.float64)
    diff = np.zeros((len(frames), max_lag + 2))
    for tau in range(1, max_lag + 2):
        delta = frames[:, :width] - frames[:, tau : tau + width]
        diff[:, tau] = np.einsum("ij,ij->i", delta, delta)
    cmnd = np.ones_like(diff)
    lags = np.arange(1, max_lag + 2)
    cmnd[:, 1:] = diff[:, 1:] * lags / np.maximum(np.cumsum(diff[:, 1:], axis=1), 1e-12)
    search = cmnd[:, min_lag : max_lag + 1]
    below = search < threshold
    idx = np.where(below.any(axis=1), below.argmax(axis=1), search.argmin(axis=1))
    rows = np.arange(len(frames))
    for _ in range(search.shape[1]):  # from the first dip below the threshold, walk down to its minimum
        step = (idx + 1 < search.shape[1]) & (search[rows, np.minimum(idx + 1, search.shape[1] - 1)] < search[rows, idx])
        if not step.any():
            break
        idx = idx + step
    lag = idx + min_lag
    a, b, c = cmnd[rows, lag - 1], cmnd[rows, lag], cmnd[rows, lag + 1]
    curvature = a - 2 * b + c
    shift = np.where(np.abs(curvature) > 1e-12, 0.5 * (a - c) / np.where(curvature == 0, 1, curvature), 0.0)
    return sample_rate / (lag + np.clip(shift, -1, 1)), b


def speech_stats(audio: np.ndarray, sample_rate: int, text: str | None = None) -> dict[str, float]:
    """Rough prosody statistics of mono ``audio`` (and its transcript ``text``, if given), for comparing corpora,
    not for phonetics:

    - ``duration_s``; ``syllables_per_s`` (Chinese characters in ``text`` per second of audio; NaN without text);
    - ``active_fraction``: share of frames within ``ACTIVE_RANGE_DB`` of the loudest and above ``SILENCE_DB``;
    - ``rms_db``: median level of the active frames, dBFS;
    - ``f0_median_hz``: median YIN pitch of the active frames that are periodic (aperiodicity below
      ``VOICED_APERIODICITY``); ``f0_iqr_st``: their interquartile range in semitones after folding every
      estimate into the octave around the median. Telephone audio has no fundamental (it lies below the 300 Hz
      band edge), so YIN often lands an octave off; folding keeps those errors out of the spread, which caps it
      at 12 semitones. NaN where no frame is periodic.
    """
    audio = _check_audio(audio, sample_rate, "speech_stats")
    frame = int(round(STATS_FRAME_S * sample_rate))
    hop = max(1, int(round(STATS_HOP_S * sample_rate)))
    nan = float("nan")
    duration = len(audio) / sample_rate
    syllables = len(_HAN.findall(text)) / duration if text is not None and duration > 0 else nan
    out = {"duration_s": duration, "syllables_per_s": syllables}
    if len(audio) < frame:
        return out | {"active_fraction": 0.0, "rms_db": nan, "f0_median_hz": nan, "f0_iqr_st": nan}
    frames = np.lib.stride_tricks.sliding_window_view(audio, frame)[::hop]
    rms_db = 10.0 * np.log10(np.maximum(np.mean(frames.astype(np.float64) ** 2, axis=1), 1e-20))
    active = (rms_db > np.percentile(rms_db, 95) - ACTIVE_RANGE_DB) & (rms_db > SILENCE_DB)
    f0 = iqr = nan
    if active.any():
        f0_hz, aperiodicity = pitch_track(frames[active], sample_rate)
        voiced = f0_hz[aperiodicity < VOICED_APERIODICITY]
        if len(voiced):
            f0 = float(np.median(voiced))
            folded = (12.0 * np.log2(voiced / f0) + 6.0) % 12.0 - 6.0  # semitones from the median, within +-6
            q25, q75 = np.percentile(folded, [25, 75])
            iqr = float(q75 - q25)
    return out | {
        "active_fraction": float(active.mean()),
        "rms_db": float(np.median(rms_db[active])) if active.any() else nan,
        "f0_median_hz": f0,
        "f0_iqr_st": iqr,
    }


def plot_stat_comparison(
    rows: Sequence[Mapping],
    stats: Sequence[str] = ("duration_s", "syllables_per_s", "f0_median_hz", "f0_iqr_st", "rms_db"),
    group: str = "dialect",
    by: str = "source",
    taxonomy: Taxonomy = DEFAULT_TAXONOMY,
) -> Figure:
    """Box plots of each statistic in ``stats`` per ``group`` value (x axis), one box per ``by`` value side by
    side (e.g. real vs synthetic). ``rows`` are dicts holding ``group``, ``by`` and the statistics; NaNs are
    dropped."""
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("plot_stat_comparison: no rows to plot")
    present = {r[group] for r in rows}
    groups = [g for g in label_order(group, taxonomy) if g in present] if group in ("dialect", "emotion", "intent") else []
    groups += sorted(present - set(groups))
    kinds = sorted({r[by] for r in rows})
    colors = dict(zip(kinds, ["tab:green", "tab:purple", "tab:orange", "tab:blue"]))
    width = 0.8 / len(kinds)
    fig, axes = plt.subplots(1, len(stats), figsize=(4.2 * len(stats), 3.4), squeeze=False, layout="constrained")
    for ax, stat in zip(axes[0], stats):
        for i, kind in enumerate(kinds):
            data, pos = [], []
            for j, g in enumerate(groups):
                values = [float(r[stat]) for r in rows if r[group] == g and r[by] == kind and np.isfinite(r.get(stat, np.nan))]
                if values:
                    data.append(values)
                    pos.append(j + (i - (len(kinds) - 1) / 2) * width)
            if data:
                parts = ax.boxplot(data, positions=pos, widths=width * 0.9, patch_artist=True, manage_ticks=False)
                for box in parts["boxes"]:
                    box.set(facecolor=colors[kind], alpha=0.6)
            ax.plot([], [], "s", color=colors[kind], alpha=0.6, label=kind)
        ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right")
        ax.set_title(stat)
        ax.legend(fontsize=8)
    return fig
