"""Benchmark corpus synthesis: per-stage cost and end-to-end throughput, 1 worker (baseline) vs N.

    .venv/bin/python -m data.synth.bench [--utterances 300] [--workers 2] [--out bench_synth.json]

Prints a table and writes JSON. Throughput counts utterances only (no whole calls), so it reads directly as
"utterances per second"; the ratio column compares each run against the 1-worker baseline of the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from data.audio import ESPEAK_SAMPLE_RATE, PHONE_SAMPLE_RATE, write_wav
from data.synth import corpus
from data.synth.channel import telephone_channel
from data.synth.text import TextGenerator
from data.synth.tts import make_speakers, prosody_for, synthesize
from models.taxonomy import DEFAULT_TAXONOMY


def stage_costs(n: int, seed: int = 0) -> dict[str, float]:
    """Mean milliseconds per utterance for each stage, single process."""
    gen, rng = TextGenerator(), random.Random(seed)
    speakers = make_speakers(8, seed)
    totals = {"text": 0.0, "tts": 0.0, "channel": 0.0, "write": 0.0}
    audio_s = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            intent = DEFAULT_TAXONOMY.intent_names[i % len(DEFAULT_TAXONOMY.intent_names)]
            dialect = DEFAULT_TAXONOMY.dialect_names[i % len(DEFAULT_TAXONOMY.dialect_names)]
            t0 = time.perf_counter()
            utt = gen.utterance(rng, intent, "neutral", dialect)
            t1 = time.perf_counter()
            spk = speakers[i % len(speakers)]
            audio = synthesize(utt.text, dialect, spk, prosody_for("neutral", spk, rng))
            t2 = time.perf_counter()
            phone, _ = telephone_channel(audio, ESPEAK_SAMPLE_RATE, np.random.default_rng(i))
            t3 = time.perf_counter()
            write_wav(Path(tmp) / f"{i}.wav", phone, PHONE_SAMPLE_RATE)
            t4 = time.perf_counter()
            audio_s += len(phone) / PHONE_SAMPLE_RATE
            for k, dt in zip(totals, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                totals[k] += dt
    out = {k: 1000 * v / n for k, v in totals.items()}
    out["audio_s_per_utterance"] = audio_s / n
    return out


def throughput(n: int, workers: int) -> dict[str, float]:
    corpus.SIZES["_bench"] = corpus.CorpusSize(utterances=n, calls=0, speakers=30)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rep = corpus.synthesize_corpus(tmp, size="_bench", workers=workers, build_dataset=False, progress=False)
    finally:
        del corpus.SIZES["_bench"]
    return {"workers": workers, "utterances": rep.utterances, "failed": len(rep.failures), "seconds": rep.seconds,
            "utterances_per_second": rep.utterances / rep.seconds}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--utterances", type=int, default=300, help="utterances per throughput run")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="workers of the parallel run")
    p.add_argument("--out", default="bench_synth.json", help="JSON results file")
    args = p.parse_args(argv)

    stages = stage_costs(min(100, args.utterances))
    base = throughput(args.utterances, 1)
    par = throughput(args.utterances, args.workers)
    print(f"{'stage':<10} {'ms/utterance':>12}")
    for k in ("text", "tts", "channel", "write"):
        print(f"{k:<10} {stages[k]:>12.1f}")
    print(f"(mean audio {stages['audio_s_per_utterance']:.2f} s per utterance)\n")
    print(f"{'workers':>7} {'utterances':>10} {'failed':>6} {'seconds':>8} {'utt/s':>7} {'vs 1 worker':>11}")
    for r in (base, par):
        ratio = r["utterances_per_second"] / base["utterances_per_second"]
        print(f"{r['workers']:>7} {r['utterances']:>10} {r['failed']:>6} {r['seconds']:>8.1f} "
              f"{r['utterances_per_second']:>7.1f} {ratio:>10.2f}x")
    result = {"stages_ms": stages, "baseline": base, "parallel": par, "cpu_count": os.cpu_count()}
    Path(args.out).write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
