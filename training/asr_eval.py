"""CER per dialect of recognisers on one manifest: zero-shot Whisper against the registry's champion.

    python -m training.asr_eval --manifest data/corpus/default/test.jsonl --n 250 --out reports/asr_test.json
    python -m training.asr_eval --manifest ../shared/realspeech/manifest.jsonl --n 0 --model zero-shot --model champion

Each ``--model`` (``zero-shot``: the pretrained whisper-base; ``champion``: ``models:/asr@champion``; or a model
folder) decodes the same utterances with the serving recogniser (CTranslate2 int8 on CPU). ``--dialect-prompt``
says what the decoder is told: ``oracle`` passes each record's own dialect (the upper bound of dialect ID), ``none``
passes nothing. Zero-shot always decodes as the pretrained model would (``<|zh|>``, no prompt), since its
training never saw the prompts. Chinese is scored per character after text normalisation (traditional to
simplified, punctuation removed). The real-time factor is wall time over audio time, reading the WAV files
included (milliseconds against seconds of decoding). Prints a table (one row per model, a column per dialect)
and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

ZERO_SHOT = "zero-shot"  # --model value for the pretrained whisper-base
CHAMPION = "champion"  # --model value for models:/asr@champion
SEED = 0  # the utterance sample


def resolve_model(spec: str) -> tuple[str | None, str]:
    """(folder for Recognizer.load or None for zero-shot, a description)."""
    if spec == ZERO_SHOT:
        return None, "whisper-base (zero-shot)"
    if spec == CHAMPION:
        from models.asr.dialects import ASR_CONFIG_FILE
        from models.folders import find_model_dir
        from models.champions import download_champion

        folder, info = download_champion("asr")
        return str(find_model_dir(folder, marker=ASR_CONFIG_FILE)), f"asr v{info['version']} (champion)"
    if not Path(spec).is_dir():
        raise SystemExit(f"--model {spec!r}: not '{ZERO_SHOT}', '{CHAMPION}' or a model folder")
    return spec, spec


def score(records: Sequence[dict], hyps: Sequence[str]) -> dict[str, float]:
    """Corpus CER overall and per dialect (``training.metrics.cer_by_group``), plus the utterance counts."""
    from training.metrics import cer_by_group

    res = cer_by_group((r.get("dialect") or "unknown", r["text"], h) for r, h in zip(records, hyps))
    out = {"cer": res["cer"], "n": res["n"]}
    for d, g in sorted(res["per_group"].items()):
        out[f"cer_{d}"], out[f"n_{d}"] = g["cer"], g["n"]
    return out


def run(records: Sequence[dict], spec: str, dialect_prompt: str, threads: int) -> dict:
    from tqdm import tqdm

    from data.audio import SAMPLE_RATE, load_audio
    from models.asr.recognizer import Recognizer, RecognizerOptions, for_scoring

    folder, description = resolve_model(spec)
    options = RecognizerOptions(cpu_threads=threads)
    rec = Recognizer.load(folder, engine="ct2", device="cpu", options=options)
    tell = dialect_prompt == "oracle" and folder is not None
    hyps: list[str] = []
    audio_s, t0 = 0.0, time.perf_counter()
    batch = options.batch_size
    for b in tqdm(range(0, len(records), batch), desc=spec, unit="batch", mininterval=2.0):
        part = records[b : b + batch]
        audios = [load_audio(r["audio_path"], SAMPLE_RATE) for r in part]
        audio_s += sum(len(a) for a in audios) / SAMPLE_RATE
        dialects = [r.get("dialect") if tell else None for r in part]
        hyps += [for_scoring(t.text) for t in rec.transcribe_batch(audios, dialects)]
    wall = time.perf_counter() - t0
    result = {"model": description, "dialect_prompt": "oracle" if tell else "none", **score(records, hyps),
              "audio_seconds": round(audio_s, 1), "wall_seconds": round(wall, 1), "rtf": round(wall / max(audio_s, 1e-9), 4)}
    result["samples"] = [{"id": r.get("id"), "dialect": r.get("dialect"), "ref": r["text"], "hyp": h}
                         for r, h in list(zip(records, hyps))[:10]]
    return result


def table(results: Sequence[dict]) -> str:
    dialects = sorted({k[4:] for r in results for k in r if k.startswith("cer_")})
    head = f"{'model':<30}{'prompt':>8}{'all':>8}" + "".join(f"{d[:11]:>12}" for d in dialects) + f"{'RTF':>8}"
    lines = [head, "-" * len(head)]
    for r in results:
        cells = "".join(f"{r.get('cer_' + d, float('nan')):>12.3f}" for d in dialects)
        lines.append(f"{r['model'][:30]:<30}{r['dialect_prompt']:>8}{r['cer']:>8.3f}{cells}{r['rtf']:>8.3f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(prog="python -m training.asr_eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", required=True, help="JSON Lines with audio_path, text and dialect per line")
    parser.add_argument("--n", type=int, default=250, help="utterances, evenly over dialects (0: all)")
    parser.add_argument("--model", action="append", default=None,
                        help=f"'{ZERO_SHOT}', '{CHAMPION}' or a model folder; repeat to compare (default: both)")
    parser.add_argument("--dialect-prompt", choices=("oracle", "none"), default="oracle",
                        help="tell fine-tuned models each record's dialect (oracle) or nothing (none)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of the recogniser")
    parser.add_argument("--out", default=None, help="JSON file for the results")
    args = parser.parse_args(argv)

    from data.manifest import format_errors, read_manifest

    manifest = read_manifest(Path(args.manifest))
    if manifest.errors:
        print(f"{args.manifest}: skipped {len(manifest.errors)} bad lines\n{format_errors(manifest.errors, 5)}",
              file=sys.stderr)
    from training.asr import balanced_subsample

    usable = [r for r in manifest.records if r.get("audio_path") and r.get("text")]
    records = balanced_subsample(usable, args.n if args.n > 0 else None, SEED)
    if not records:
        raise SystemExit(f"{args.manifest}: no records with both audio_path and text")
    results = [run(records, spec, args.dialect_prompt, args.threads) for spec in (args.model or [ZERO_SHOT, CHAMPION])]
    print(table(results))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"manifest": str(args.manifest), "results": results}, ensure_ascii=False,
                                             indent=1), encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
