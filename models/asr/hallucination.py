"""What the recogniser writes for silence and line noise, with and without its no-speech gate (issue 15).

    python -m models.asr.hallucination [--model DIR] [--per-cell 4] [--lengths 1 5 15] [--speech 24] \\
        [--out reports/hallucination.json]

Builds clips deterministically from ``--seed`` (nothing is read from disk except the speech control's source):

- ``silence``: digital silence (all zeros);
- ``white`` / ``pink``: full-band white or pink (1/f) noise at a low level (RMS drawn in LEVEL_DB);
- ``hum``: 50 Hz (sometimes 60 Hz) mains hum, harmonics falling off, over a faint white floor, same levels;
- ``line``: "line noise": low-level pink noise sent through the project's telephone channel
  (``data.synth.channel.telephone_channel``: 8 kHz, 300-3400 Hz band, the channel's own background noise
  (white / pink / brown / hum / babble at 10-35 dB below the input), level changes, G.711, packet loss), back at
  16 kHz as the recogniser receives a call;

each at every length of ``--lengths`` (s), ``--per-cell`` clips per kind and length. No clip holds speech, so
every character written for one is a hallucination.

The speech control shows whether the gate drops speech: ``--speech`` utterances from a synthetic corpus's
validation split (``--speech-manifest``, else the first ``data/corpus/*/validation.jsonl``); without a corpus they
are synthesised here the way ``data.synth.corpus`` renders its validation split (espeak-ng voices, dialect mix and
telephone channel of the corpus; needs espeak-ng). Never point it at ``realspeech``: thresholds are chosen on
synthetic data only, and real speech is for evaluation.

Every clip is decoded twice by the same loaded model: ``no_gate`` (vad_gate off, no_speech_threshold None: the
behaviour before issue 15) and ``gate`` (the options' defaults, i.e. what the service runs). Reported per setting:
characters written per noise clip, the fraction of noise clips with any output (per kind and length too), corpus
CER of the speech control and how many speech clips came back empty. ``sweep`` in the JSON replays the no-speech
rule over a grid of thresholds from the ``no_gate`` run's no-speech probabilities and log-probabilities (exact: a
gated decode is the same decode), and ``vad_sweep`` the VAD check over SWEEP_VAD, so the defaults can be re-chosen
from this synthetic data. The defaults were chosen on ``--seed 1 --per-cell 6 --speech 40``; the default seed 0 is a
fresh draw of clips and utterances to report on.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from data.audio import ESPEAK_SAMPLE_RATE, SAMPLE_RATE, load_audio

KINDS = ("silence", "white", "pink", "hum", "line")  # noise clip kinds (see the module docstring)
LENGTHS = (1.0, 5.0, 15.0)  # s: clip lengths (all under 30 s, so decoded whole: where the VAD gate applies)
PER_CELL = 4  # clips per (kind, length)
LEVEL_DB = (-60.0, -35.0)  # dBFS RMS range of the noise (the line noise's level before the channel)
SPEECH_N = 24  # speech control utterances
SEED = 0
THREADS = 2  # CPU threads of the engine: the hotline CPU box has 2 cores
SWEEP_NO_SPEECH = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # no_speech_threshold values replayed in the sweep
SWEEP_LOGPROB = (-0.5, -0.75, -1.0, -1.5, -2.0, None)  # logprob_threshold values replayed (None: no_speech alone)
SWEEP_VAD = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)  # vad_gate_threshold values replayed (silero speech probability)
PINK_LOW_HZ = 20.0  # Hz: pink noise has no energy below this
MAINS_HARMONICS = 20  # harmonics of the mains frequency in the hum


@dataclass(frozen=True)
class Clip:
    id: str  # e.g. "line-5s-02"
    kind: str  # one of KINDS, or "speech"
    seconds: float
    level_db: float | None  # dBFS RMS asked for (None: silence / speech)
    audio: np.ndarray  # 16 kHz float32
    text: str = ""  # reference (speech only)
    dialect: str | None = None  # speech only


# -- noise clips -----------------------------------------------------------------------------------------
def _at_level(x: np.ndarray, level_db: float) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(x)))) + 1e-12
    return (x / rms * 10 ** (level_db / 20)).astype(np.float32)


def _pink(n: int, rng: np.random.Generator) -> np.ndarray:
    freqs = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    keep = freqs >= PINK_LOW_HZ
    spectrum[keep] /= np.sqrt(freqs[keep])
    spectrum[~keep] = 0.0
    return np.fft.irfft(spectrum, n=n)


def _hum(n: int, rng: np.random.Generator) -> np.ndarray:
    f0 = 50.0 if rng.random() < 0.8 else 60.0  # 50 Hz in China
    t = np.arange(n) / SAMPLE_RATE
    k = np.arange(1, MAINS_HARMONICS + 1)
    amps = k ** -rng.uniform(0.5, 1.5) * rng.uniform(0.5, 1.0, k.size)
    phases = rng.uniform(0, 2 * np.pi, k.size)
    hum = (amps[:, None] * np.sin(2 * np.pi * f0 * k[:, None] * t + phases[:, None])).sum(axis=0)
    floor = rng.standard_normal(n)
    return hum / (hum.std() + 1e-12) + 0.05 * floor


def _line(n: int, level_db: float, rng: np.random.Generator) -> np.ndarray:
    from data.synth.channel import DEFAULT_CHANNEL, telephone_channel, to_model_rate

    source = _at_level(_pink(n, rng), level_db)
    phone, _ = telephone_channel(source, SAMPLE_RATE, rng, DEFAULT_CHANNEL)
    out = to_model_rate(phone)
    return np.clip(np.pad(out, (0, max(0, n - out.size)))[:n], -1.0, 1.0).astype(np.float32)


def noise_clip(kind: str, seconds: float, index: int, seed: int = SEED) -> Clip:
    """Clip ``index`` of ``kind`` and length ``seconds``: the same arguments give the same samples."""
    if kind not in KINDS:
        raise ValueError(f"unknown clip kind {kind!r}; expected one of {KINDS}")
    rng = np.random.default_rng([seed, KINDS.index(kind), int(round(seconds * 1000)), index])
    n = int(round(seconds * SAMPLE_RATE))
    level = None if kind == "silence" else round(float(rng.uniform(*LEVEL_DB)), 1)
    if kind == "silence":
        audio = np.zeros(n, dtype=np.float32)
    elif kind == "white":
        audio = _at_level(rng.standard_normal(n), level)
    elif kind == "pink":
        audio = _at_level(_pink(n, rng), level)
    elif kind == "hum":
        audio = _at_level(_hum(n, rng), level)
    else:
        audio = _line(n, level, rng)
    return Clip(f"{kind}-{seconds:g}s-{index:02d}", kind, seconds, level, audio)


def noise_clips(kinds: Sequence[str], lengths: Sequence[float], per_cell: int, seed: int = SEED) -> list[Clip]:
    return [noise_clip(k, s, i, seed) for k in kinds for s in lengths for i in range(per_cell)]


# -- speech control --------------------------------------------------------------------------------------
def find_corpus_validation(root: Path = Path("data/corpus")) -> Path | None:
    """The first ``data/corpus/*/validation.jsonl`` (sorted), or None."""
    found = sorted(root.glob("*/validation.jsonl")) if root.is_dir() else []
    return found[0] if found else None


def speech_from_manifest(path: Path, n: int, seed: int = SEED) -> list[Clip]:
    """``n`` utterances (audio and text) of a synthetic corpus manifest, sampled reproducibly."""
    from data.manifest import read_manifest

    if "realspeech" in Path(path).resolve().parts:
        raise ValueError(f"{path}: realspeech is evaluation data; choose the gate's thresholds on synthetic data only")
    usable = [
        r for r in read_manifest(path).records
        if r.get("audio_path") and r.get("text") and r.get("kind", "utterance") == "utterance"
    ]  # fmt: skip
    picked = sorted(random.Random(seed).sample(usable, min(n, len(usable))), key=lambda r: r["id"])
    clips = []
    for r in picked:
        audio = load_audio(r["audio_path"])
        clips.append(Clip(f"speech-{r['id']}", "speech", round(len(audio) / SAMPLE_RATE, 3), None, audio,
                          r["text"], r.get("dialect")))  # fmt: skip
    return clips


def synthesize_speech(n: int, seed: int = SEED) -> list[Clip]:
    """``n`` validation-split utterances rendered as ``data.synth.corpus`` renders them (text, espeak-ng voice,
    telephone channel), in memory: the same seed gives the same clips."""
    from data.synth.channel import DEFAULT_CHANNEL, telephone_channel, to_model_rate
    from data.synth.corpus import CorpusSize, plan
    from data.synth.text import TextGenerator
    from data.synth.tts import prosody_for, synthesize

    gen = TextGenerator()
    size = CorpusSize(utterances=max(40, 10 * n), calls=0, speakers=60)
    items = [it for it in plan(size, seed, gen) if it.kind == "utterance" and it.split == "validation"][:n]
    clips = []
    for it in items:
        rng = random.Random(it.seed)
        utt = gen.utterance(rng, it.intent, it.emotion, it.dialect, it.template_id)
        voice = synthesize(utt.text, it.dialect, it.speaker, prosody_for(it.emotion, it.speaker, rng))
        phone, _ = telephone_channel(voice, ESPEAK_SAMPLE_RATE, np.random.default_rng(it.seed), DEFAULT_CHANNEL)
        audio = to_model_rate(phone)
        clips.append(Clip(f"speech-{it.id}", "speech", round(len(audio) / SAMPLE_RATE, 3), None, audio,
                          utt.text, it.dialect))  # fmt: skip
    return clips


# -- running ---------------------------------------------------------------------------------------------
def chars(text: str) -> int:
    """Characters written (whitespace not counted; punctuation counts: any output is a hallucination here)."""
    return sum(1 for c in text if not c.isspace())


def decode_all(rec: Any, clips: Sequence[Clip], bar: Any = None) -> list[tuple[str, list[dict]]]:
    """(text, gate details) per clip through ``rec._transcribe_batch`` (what transcribe_batch returns). Clips are
    batched by length (and dialect) so a short clip's token budget is not that of a long one beside it."""
    out: list[tuple[str, list[dict]] | None] = [None] * len(clips)
    groups: dict[tuple[float, str | None], list[int]] = {}
    for i, c in enumerate(clips):
        groups.setdefault((c.seconds if c.kind != "speech" else -1.0, c.dialect), []).append(i)
    bs = max(1, rec.options.batch_size)
    for idx in groups.values():
        for s in range(0, len(idx), bs):
            part = idx[s : s + bs]
            results = rec._transcribe_batch([clips[i].audio for i in part], [clips[i].dialect for i in part])
            for i, (t, details) in zip(part, results):
                out[i] = (t.text, details)
            if bar is not None:
                bar.update(len(part))
    return out  # type: ignore[return-value]


def _rate(flags: Sequence[bool]) -> float:
    return round(sum(flags) / len(flags), 4) if flags else 0.0


def noise_summary(clips: Sequence[Clip], texts: Sequence[str]) -> dict[str, Any]:
    counts = [chars(t) for t in texts]
    return {
        "clips": len(clips),
        "with_output": sum(c > 0 for c in counts),
        "with_output_rate": _rate([c > 0 for c in counts]),
        "chars_per_clip": round(float(np.mean(counts)), 3) if counts else 0.0,
        "chars_max": max(counts, default=0),
        "chars_total": int(sum(counts)),
    }


def speech_summary(clips: Sequence[Clip], texts: Sequence[str]) -> dict[str, Any]:
    from models.textnorm import cer_corpus

    if not clips:
        return {"clips": 0}
    empty = [chars(t) == 0 for t in texts]
    by_dialect = {}
    for d in sorted({c.dialect or "?" for c in clips}):
        idx = [i for i, c in enumerate(clips) if (c.dialect or "?") == d]
        by_dialect[d] = {
            "clips": len(idx),
            "cer": round(cer_corpus([clips[i].text for i in idx], [texts[i] for i in idx]), 4),
            "empty": sum(empty[i] for i in idx),
        }
    return {
        "clips": len(clips),
        "cer": round(cer_corpus([c.text for c in clips], texts), 4),
        "empty": sum(empty),
        "empty_rate": _rate(empty),
        "by_dialect": by_dialect,
    }


def gate_counts(details: Sequence[list[dict]]) -> dict[str, int]:
    """Clips stopped by the VAD check, and clips with a segment dropped by the no-speech rule."""
    return {
        "vad": sum(any(d["gated"] == "vad" for d in ds) for ds in details),
        "no_speech": sum(any(d["gated"] == "no_speech" for d in ds) for ds in details),
    }


def sweep(noise_no_gate: Sequence[list[dict]], noise_vad: Sequence[bool], speech_no_gate: Sequence[list[dict]],
          speech_vad: Sequence[bool]) -> list[dict[str, Any]]:
    """The no-speech rule replayed over SWEEP_NO_SPEECH x SWEEP_LOGPROB, with and without the VAD check:
    noise clips still writing something, speech clips coming back empty. ``*_no_gate``: the no-gate run's
    details (every clip decoded); ``*_vad``: whether the VAD check stopped the clip (from the gate run)."""

    def keeps(d: dict, nst: float | None, lpt: float | None) -> bool:
        if not d.get("text"):
            return False
        if nst is None or d.get("no_speech_prob") is None or d["no_speech_prob"] <= nst:
            return True
        return lpt is not None and d["avg_logprob"] > lpt

    rows = []
    for vad in (False, True):
        for nst in (None, *SWEEP_NO_SPEECH):
            for lpt in SWEEP_LOGPROB if nst is not None else (None,):
                def writes(ds: list[dict], stopped: bool) -> bool:
                    return not (vad and stopped) and any(keeps(d, nst, lpt) for d in ds)

                noisy = [writes(ds, v) for ds, v in zip(noise_no_gate, noise_vad)]
                spoke = [writes(ds, v) for ds, v in zip(speech_no_gate, speech_vad)]
                rows.append({
                    "vad_gate": vad, "no_speech_threshold": nst, "logprob_threshold": lpt,
                    "noise_with_output_rate": _rate(noisy),
                    "speech_empty_rate": _rate([not s for s in spoke]) if spoke else None,
                })  # fmt: skip
    return rows


def vad_sweep(rec: Any, noise: Sequence[Clip], speech: Sequence[Clip]) -> list[dict[str, Any]]:
    """The VAD check at each of SWEEP_VAD: noise clips it lets through, speech clips it stops."""
    from models.asr.vad import speech_segments

    rows = []
    for t in SWEEP_VAD:
        config = replace(rec.options.vad, threshold=t)
        rows.append({
            "vad_gate_threshold": t,
            "noise_passed_rate": _rate([bool(speech_segments(c.audio, config)) for c in noise]),
            "speech_stopped_rate": _rate([not speech_segments(c.audio, config) for c in speech]) if speech else None,
        })  # fmt: skip
    return rows


def run(
    model: str | None = None,
    engine: str = "auto",
    device: str = "cpu",
    kinds: Sequence[str] = KINDS,
    lengths: Sequence[float] = LENGTHS,
    per_cell: int = PER_CELL,
    speech: int = SPEECH_N,
    speech_manifest: Path | None = None,
    seed: int = SEED,
    threads: int = THREADS,
    progress: bool = True,
) -> dict[str, Any]:
    from tqdm.auto import tqdm

    from models.asr.recognizer import Recognizer, RecognizerOptions

    t0 = time.monotonic()
    noise = noise_clips(kinds, lengths, per_cell, seed)
    speech_source = None
    speech_clips: list[Clip] = []
    if speech > 0:
        manifest = speech_manifest or find_corpus_validation()
        if manifest is not None:
            speech_clips, speech_source = speech_from_manifest(manifest, speech, seed), str(manifest)
        else:
            speech_clips = synthesize_speech(speech, seed)
            speech_source = "synthesised (data.synth.corpus validation plan, espeak-ng, telephone channel)"
    build_s = time.monotonic() - t0

    gate = RecognizerOptions(cpu_threads=threads)  # the defaults: what the service runs
    no_gate = replace(gate, vad_gate=False, no_speech_threshold=None)
    rec = Recognizer.load(model, engine=engine, device=device, options=gate)
    settings = {"no_gate": Recognizer(rec.engine_impl, rec.source, no_gate), "gate": rec}

    results: dict[str, dict[str, Any]] = {}
    decoded: dict[str, tuple[list, list]] = {}
    total = (len(noise) + len(speech_clips)) * len(settings)
    with tqdm(total=total, desc="hallucination", unit="clip", disable=not progress) as bar:
        for name, r in settings.items():
            t = time.monotonic()
            n_out = decode_all(r, noise, bar)
            s_out = decode_all(r, speech_clips, bar) if speech_clips else []
            decoded[name] = (n_out, s_out)
            n_texts = [t_ for t_, _ in n_out]
            by_kind: dict[str, dict[str, Any]] = {}
            for k in kinds:
                for s in lengths:
                    idx = [i for i, c in enumerate(noise) if c.kind == k and c.seconds == s]
                    cell = noise_summary([noise[i] for i in idx], [n_texts[i] for i in idx])
                    by_kind.setdefault(k, {})[f"{s:g}s"] = cell
            results[name] = {
                "options": _options(r.options),
                "noise": noise_summary(noise, n_texts),
                "noise_by_kind": by_kind,
                "speech": speech_summary(speech_clips, [t_ for t_, _ in s_out]),
                "gated_noise": gate_counts([d for _, d in n_out]),
                "gated_speech": gate_counts([d for _, d in s_out]),
                "decode_s": round(time.monotonic() - t, 1),
            }

    n_vad = [any(d["gated"] == "vad" for d in ds) for _, ds in decoded["gate"][0]]
    s_vad = [any(d["gated"] == "vad" for d in ds) for _, ds in decoded["gate"][1]]
    clips_out = []
    for group, clips in ((0, noise), (1, speech_clips)):
        for i, c in enumerate(clips):
            rec_ = {"id": c.id, "kind": c.kind, "seconds": c.seconds, "level_db": c.level_db}
            if c.kind == "speech":
                rec_.update(reference=c.text, dialect=c.dialect)
            for name in settings:
                text, details = decoded[name][group][i]
                rec_[name] = {"text": text, "chars": chars(text), "details": details}
            clips_out.append(rec_)
    return {
        "model": rec.source.name,
        "engine": rec.engine,
        "device": rec.device,
        "compute_type": rec.compute_type,
        "seed": seed,
        "clip_set": {"kinds": list(kinds), "lengths_s": list(lengths), "per_cell": per_cell,
                     "level_db": list(LEVEL_DB), "speech": len(speech_clips), "speech_source": speech_source},
        "results": results,
        "sweep": sweep([d for _, d in decoded["no_gate"][0]], n_vad, [d for _, d in decoded["no_gate"][1]], s_vad),
        "vad_sweep": vad_sweep(rec, noise, speech_clips),
        "clips": clips_out,
        "timing": {"build_s": round(build_s, 1), "total_s": round(time.monotonic() - t0, 1)},
        "platform": platform.platform(),
    }


def _options(o: Any) -> dict[str, Any]:
    d = asdict(o)
    keys = ("vad_gate", "vad_gate_threshold", "no_speech_threshold", "logprob_threshold", "beam_size", "max_new_tokens",
            "max_tokens_per_second", "vad")
    return {k: d[k] for k in keys}


# -- report ----------------------------------------------------------------------------------------------
def table(report: dict[str, Any]) -> str:
    """The summary table (one row per setting) and the per-kind table (noise clips with output)."""
    res = report["results"]
    lines = [
        f"model {report['model']} ({report['engine']} {report['compute_type']} on {report['device']}); "
        f"{res['gate']['noise']['clips']} noise clips, {report['clip_set']['speech']} speech clips "
        f"({report['clip_set']['speech_source']})",
        "",
        f"{'setting':<8} {'noise w/ output':>16} {'chars/clip':>10} {'max chars':>9} {'stopped vad/nsp':>15} "
        f"{'speech CER':>10} {'speech empty':>12}",
    ]
    for name, r in res.items():
        n, s = r["noise"], r["speech"]
        g = r["gated_noise"]
        cer = f"{s['cer']:.3f}" if s.get("clips") else "-"
        empty = f"{s['empty']}/{s['clips']}" if s.get("clips") else "-"
        lines.append(
            f"{name:<8} {n['with_output']:>4}/{n['clips']:<4} {n['with_output_rate']:>6.1%} "
            f"{n['chars_per_clip']:>10.2f} "
            f"{n['chars_max']:>9} {g['vad']:>7}/{g['no_speech']:<7} {cer:>10} {empty:>12}"
        )
    lines += ["", "noise clips with any output, no_gate -> gate:"]
    kinds, lengths = report["clip_set"]["kinds"], report["clip_set"]["lengths_s"]
    lines.append(f"{'kind':<8} " + " ".join(f"{f'{s:g}s':>12}" for s in lengths))
    for k in kinds:
        cells = []
        for s in lengths:
            a = res["no_gate"]["noise_by_kind"][k][f"{s:g}s"]
            b = res["gate"]["noise_by_kind"][k][f"{s:g}s"]
            cells.append(f"{a['with_output']}/{a['clips']} -> {b['with_output']}/{b['clips']}")
        lines.append(f"{k:<8} " + " ".join(f"{c:>12}" for c in cells))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default=None, help="fine-tuned ASR model folder (default: zero-shot whisper-base)")
    p.add_argument("--engine", default="auto", choices=("auto", "ct2", "hf"))
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    p.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS, help="noise clip kinds")
    p.add_argument("--lengths", nargs="+", type=float, default=list(LENGTHS), help="clip lengths, s (each < 30)")
    p.add_argument("--per-cell", type=int, default=PER_CELL, help="clips per kind and length")
    p.add_argument("--speech", type=int, default=SPEECH_N, help="speech control utterances (0: none)")
    p.add_argument("--speech-manifest", type=Path, default=None,
                   help="synthetic corpus split for the speech control (default: data/corpus/*/validation.jsonl, "
                        "else synthesised); never realspeech")  # fmt: skip
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--threads", type=int, default=THREADS, help="CPU threads of the engine")
    p.add_argument("--out", type=Path, default=None, help="write the full report (JSON) here")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    a = p.parse_args(argv)
    if any(not 0 < s < 30 for s in a.lengths):
        p.error("--lengths: each must be between 0 and 30 s (longer audio is cut by VAD, not decoded whole)")
    report = run(a.model, a.engine, a.device, a.kinds, a.lengths, a.per_cell, a.speech, a.speech_manifest, a.seed,
                 a.threads, progress=not a.no_progress)  # fmt: skip
    report["command"] = "python -m models.asr.hallucination " + " ".join(sys.argv[1:] if argv is None else argv)
    print(table(report))
    if a.out is not None:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
