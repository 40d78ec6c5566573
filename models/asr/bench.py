"""Speed and accuracy of the recogniser's engines on the same utterances.

    python -m models.asr.bench --manifest data/corpus/default/test.jsonl --n 40 [--model DIR] --out bench_asr.json

Decodes the same utterances with transformers (float32) and CTranslate2 (int8 on CPU, float16 on CUDA where
there is a GPU), and prints one row per engine: utterances, audio seconds, wall seconds, real-time factor
(wall / audio; below 1 is faster than real time), CPU seconds (all threads; robust when other jobs share the
machine), speed ratio against the transformers baseline on the same
device, and corpus CER. Audio is read before timing; one warm-up batch per engine is not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from data.audio import SAMPLE_RATE, load_audio
from data.manifest import read_manifest
from models.asr.recognizer import DEFAULT_COMPUTE_TYPE, Recognizer, RecognizerOptions, _cuda_available
from models.textnorm import cer_corpus

DEFAULT_THREADS = 2  # CPU threads per engine: the hotline CPU box has 2 cores
DEFAULT_N = 40  # utterances
SEED = 0  # utterance sample


@dataclass(frozen=True)
class BenchRow:
    """One engine's measurement."""

    engine: str  # "hf" or "ct2"
    device: str  # "cpu" or "cuda"
    compute_type: str  # weights / activations type used
    utterances: int
    audio_s: float  # s of audio decoded
    wall_s: float  # s of wall-clock time decoding (audio already in memory, warm-up excluded)
    cpu_s: float  # s of CPU time of this process over the same span (all threads): robust to a busy machine
    rtf: float  # real-time factor: wall_s / audio_s
    speedup: float  # hf wall_s on the same device / this wall_s
    cer: float  # corpus character error rate against the manifest's text


def pick(records: list[dict], n: int, seed: int = SEED) -> list[dict]:
    """``n`` utterances with audio and text, sampled reproducibly."""
    usable = [r for r in records if r.get("audio_path") and r.get("text") and r.get("kind", "utterance") == "utterance"]
    return sorted(random.Random(seed).sample(usable, min(n, len(usable))), key=lambda r: r["id"])


def run(
    manifest: Path, n: int, model: str | None, threads: int, batch_size: int, beam_size: int, devices: list[str]
) -> tuple[list[BenchRow], list[dict]]:
    records = pick(read_manifest(manifest).records, n)
    if not records:
        raise SystemExit(f"{manifest}: no utterances with audio and text")
    audios = [load_audio(r["audio_path"], SAMPLE_RATE) for r in records]
    dialects = [r.get("dialect") for r in records]
    refs = [r["text"] for r in records]
    audio_s = sum(len(a) for a in audios) / SAMPLE_RATE
    options = RecognizerOptions(cpu_threads=threads, batch_size=batch_size, beam_size=beam_size)
    rows: list[BenchRow] = []
    samples: list[dict] = []
    for device in devices:
        baseline = None
        for engine in ("hf", "ct2"):
            rec = Recognizer.load(model, engine=engine, device=device, options=options)
            rec.transcribe_batch(audios[:batch_size], dialects[:batch_size])  # warm-up, not timed
            t0, c0 = time.perf_counter(), time.process_time()
            hyps = [t.text for t in rec.transcribe_batch(audios, dialects)]
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            baseline = baseline if baseline is not None else wall
            rows.append(
                BenchRow(
                    engine, device, rec.compute_type, len(audios), round(audio_s, 2), round(wall, 2),
                    round(cpu, 2), round(wall / audio_s, 4), round(baseline / wall, 2),
                    round(cer_corpus(refs, hyps), 4),
                )  # fmt: skip
            )
            print(f"{engine}/{device}: {wall:.1f} s for {audio_s:.0f} s of audio", file=sys.stderr)
            samples.extend(
                {"engine": engine, "device": device, "id": r["id"], "ref": r["text"], "hyp": h}
                for r, h in list(zip(records, hyps))[:5]
            )
            del rec
    return rows, samples


def table(rows: list[BenchRow]) -> str:
    head = ("engine", "device", "compute", "utts", "audio_s", "wall_s", "cpu_s", "RTF", "speedup", "CER")
    lines = [
        f"{head[0]:<6} {head[1]:<6} {head[2]:<8} {head[3]:>5} {head[4]:>8} {head[5]:>7} {head[6]:>7} {head[7]:>7} "
        f"{head[8]:>8} {head[9]:>6}"
    ]
    for r in rows:
        lines.append(
            f"{r.engine:<6} {r.device:<6} {r.compute_type:<8} {r.utterances:>5} {r.audio_s:>8.1f} {r.wall_s:>7.1f} "
            f"{r.cpu_s:>7.1f} {r.rtf:>7.3f} {r.speedup:>7.2f}x {r.cer:>6.1%}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(prog="python -m models.asr.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", required=True, help="JSON Lines manifest (e.g. data/corpus/default/test.jsonl)")
    parser.add_argument("--n", type=int, default=DEFAULT_N, help=f"utterances (default {DEFAULT_N})")
    parser.add_argument("--model", default=None, help="fine-tuned model folder (default: zero-shot whisper-base)")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="CPU threads per engine")
    parser.add_argument("--batch-size", type=int, default=RecognizerOptions.batch_size, help="utterances per batch")
    parser.add_argument("--beam-size", type=int, default=RecognizerOptions.beam_size, help="1 = greedy")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda", "all"), default="auto",
                        help="auto: CPU, plus CUDA where there is a GPU")  # fmt: skip
    parser.add_argument("--out", default=None, help="JSON file for the results")
    args = parser.parse_args(argv)
    cuda = _cuda_available("ct2") and _cuda_available("hf")
    devices = {"cpu": ["cpu"], "cuda": ["cuda"], "all": ["cpu", "cuda"]}.get(args.device, ["cpu"] + ["cuda"] * cuda)
    rows, samples = run(Path(args.manifest), args.n, args.model, args.threads, args.batch_size, args.beam_size, devices)
    print(table(rows))
    fastest = {d: min((r for r in rows if r.device == d), key=lambda r: r.wall_s).engine for d in devices}
    print("fastest engine per device: " + ", ".join(f"{d}: {e}" for d, e in fastest.items()))
    if args.out:
        result = {
            "manifest": str(args.manifest), "model": args.model or "whisper-base", "threads": args.threads,
            "batch_size": args.batch_size, "beam_size": args.beam_size,
            "machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "default_compute_types": DEFAULT_COMPUTE_TYPE,
            "rows": [asdict(r) for r in rows], "fastest": fastest, "samples": samples,
        }  # fmt: skip
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
