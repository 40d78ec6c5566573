"""CER per dialect of recognisers on one manifest: zero-shot Whisper against the registry's champion.

    python -m training.asr_eval --manifest data/corpus/default/test.jsonl --n 250 --out reports/asr_test.json
    python -m training.asr_eval --manifest ../shared/realspeech/manifest.jsonl --n 0 --model zero-shot --model champion

Each ``--model`` (``zero-shot``: the pretrained whisper-base; ``champion``: ``models:/asr@champion``; or a model
folder) decodes the same utterances with the serving recogniser (CTranslate2 int8 on CPU).

What the decoder is told, ``--dialect-prompt``:

- ``product`` (the default, the headline numbers): what a caller gets. The dialect comes from the dialect-ID
  champion, and only when it is at least ``min_confidence`` sure, as ``models/pipeline.py`` does; without a
  dialect-ID champion the recogniser is told nothing. Dialect ID's accuracy on the manifest is reported beside it.
- ``none``: nothing.

The oracle (each record's own, true dialect: the upper bound of dialect ID) is only ever an extra column,
``oracle_cer`` and friends, labelled as such (``--no-oracle`` skips it). Zero-shot always decodes as the
pretrained model would (``<|zh|>``, no prompt), since its training never saw the prompts.

Chinese is scored per character after text normalisation (traditional to simplified, punctuation removed), two
ways: ``cer`` as EVALUATION.md defines it and ``cer_numnorm`` after writing numerals as digits on both sides
(cn2an; 二十九 and 29 count as equal). The real-time factor is wall time over audio time, reading the WAV files
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
PRODUCT = "product"  # --dialect-prompt: the dialect-ID champion's answer when sure, else nothing (the pipeline's path)
NONE = "none"  # --dialect-prompt: never a dialect
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
    """Corpus CER overall and per dialect (``training.metrics.cer_by_group``), both ways (``cer``, ``cer_numnorm``),
    plus the utterance counts."""
    from training.metrics import cer_by_group

    res = cer_by_group((r.get("dialect") or "unknown", r["text"], h) for r, h in zip(records, hyps))
    out = {"cer": res["cer"], "cer_numnorm": res["cer_numnorm"], "n": res["n"]}
    for d, g in sorted(res["per_group"].items()):
        out[f"cer_{d}"], out[f"cer_numnorm_{d}"], out[f"n_{d}"] = g["cer"], g["cer_numnorm"], g["n"]
    return out


def load_dialect_classifier():
    """(the dialect-ID champion as the pipeline loads it, its description), or (None, why) without one."""
    from models.champions import champion_version, download_champion, load_dialect_component

    if champion_version("dialect") is None:
        return None, "no dialect-ID champion: the recogniser is told no dialect"
    folder, info = download_champion("dialect")
    return load_dialect_component(folder), f"dialect-ID champion v{info['version']}"


def product_dialects(records: Sequence[dict], classifier, telephone: bool = False) -> tuple[list[str | None], dict]:
    """What the pipeline would tell the recogniser for each record: the classifier's dialect when its confidence
    reaches ``classifier.min_confidence``, else None (all None without a classifier); and dialect ID's record."""
    if classifier is None:
        return [None] * len(records), {"accuracy": None, "told": 0}
    from models.pipeline import as_classification
    from training.emotion import load_utterance

    floor = float(getattr(classifier, "min_confidence", 0.0) or 0.0)
    told, right = [], 0
    for r in records:
        c = as_classification(classifier.classify(load_utterance(r, telephone)))
        right += c.label == r.get("dialect")
        told.append(c.label if c.confidence is None or c.confidence >= floor else None)
    return told, {"accuracy": right / len(records) if records else None, "told": sum(d is not None for d in told)}


def decode(rec, records: Sequence[dict], dialects: Sequence[str | None], desc: str,
           telephone: bool = False) -> tuple[list[str], float, float]:
    """(hypotheses for scoring, audio seconds, wall seconds) of ``rec`` on ``records``, told ``dialects``;
    ``telephone``: each clip first goes through the synthetic telephone channel (8 kHz, G.711, noise; seeded by the
    record id, so every model hears the same line)."""
    from tqdm import tqdm

    from data.audio import SAMPLE_RATE
    from models.asr.recognizer import for_scoring
    from training.emotion import load_utterance

    hyps: list[str] = []
    audio_s, t0 = 0.0, time.perf_counter()
    batch = rec.options.batch_size if hasattr(rec, "options") else 8
    for b in tqdm(range(0, len(records), batch), desc=desc, unit="batch", mininterval=2.0):
        part = records[b : b + batch]
        audios = [load_utterance(r, telephone) for r in part]
        audio_s += sum(len(a) for a in audios) / SAMPLE_RATE
        hyps += [for_scoring(t.text) for t in rec.transcribe_batch(audios, list(dialects[b : b + batch]))]
    return hyps, audio_s, time.perf_counter() - t0


def run(records: Sequence[dict], spec: str, told: Sequence[str | None] | None, prompt_label: str, threads: int,
        oracle: bool = True, telephone: bool = False) -> dict:
    """One model on ``records``: the headline columns with the dialects ``told`` (None: nothing), then, for a
    fine-tuned model and ``oracle``, the ``oracle_*`` columns with each record's true dialect."""
    from models.asr.recognizer import Recognizer, RecognizerOptions

    folder, description = resolve_model(spec)
    options = RecognizerOptions(cpu_threads=threads)
    rec = Recognizer.load(folder, engine="ct2", device="cpu", options=options)
    tell = folder is not None and told is not None
    dialects = list(told) if tell else [None] * len(records)
    hyps, audio_s, wall = decode(rec, records, dialects, spec, telephone)
    result = {"model": description, "telephone": telephone, "dialect_prompt": prompt_label if folder is not None else "none (zero-shot)",
              **score(records, hyps), "audio_seconds": round(audio_s, 1), "wall_seconds": round(wall, 1),
              "rtf": round(wall / max(audio_s, 1e-9), 4)}
    if oracle and folder is not None:
        oracle_hyps, _, _ = decode(rec, records, [r.get("dialect") for r in records], f"{spec} (oracle)", telephone)
        result.update({f"oracle_{k}": v for k, v in score(records, oracle_hyps).items() if k.startswith("cer")})
    result["samples"] = [{"id": r.get("id"), "dialect": r.get("dialect"), "told": d, "ref": r["text"], "hyp": h}
                         for r, d, h in list(zip(records, dialects, hyps))[:10]]
    return result


def table(results: Sequence[dict]) -> str:
    """One row per model: the headline CER overall and per dialect, the number-normalised CER overall (``all#``),
    the oracle-dialect CER overall (``oracle``, labelled; blank for zero-shot) and the RTF."""
    dialects = sorted({k[4:] for r in results for k in r if k.startswith("cer_") and not k.startswith("cer_numnorm")})
    head = (f"{'model':<30}{'prompt':>24}{'all':>8}{'all#':>8}" + "".join(f"{d[:11]:>12}" for d in dialects)
            + f"{'oracle':>8}{'oracle#':>8}{'RTF':>8}")
    lines = [head, "-" * len(head)]
    nan = float("nan")
    for r in results:
        cells = "".join(f"{r.get('cer_' + d, nan):>12.3f}" for d in dialects)
        lines.append(f"{r['model'][:30]:<30}{r['dialect_prompt'][:24]:>24}{r['cer']:>8.3f}{r.get('cer_numnorm', nan):>8.3f}"
                     f"{cells}{r.get('oracle_cer', nan):>8.3f}{r.get('oracle_cer_numnorm', nan):>8.3f}{r['rtf']:>8.3f}")
    lines.append("all#: numerals written as digits on both sides (cn2an); oracle: told each record's true dialect "
                 "(an upper bound, not the product path)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(prog="python -m training.asr_eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", required=True, help="JSON Lines with audio_path, text and dialect per line")
    parser.add_argument("--n", type=int, default=250, help="utterances, evenly over dialects (0: all)")
    parser.add_argument("--model", action="append", default=None,
                        help=f"'{ZERO_SHOT}', '{CHAMPION}' or a model folder; repeat to compare (default: both)")
    parser.add_argument("--dialect-prompt", choices=(PRODUCT, NONE), default=PRODUCT,
                        help="tell fine-tuned models the dialect-ID champion's answer as the pipeline does (product), "
                             "or nothing (none)")
    parser.add_argument("--no-oracle", dest="oracle", action="store_false",
                        help="skip the extra oracle columns (fine-tuned models told each record's true dialect)")
    parser.add_argument("--telephone", action="store_true",
                        help="pass every clip through the synthetic telephone channel first (for wideband recordings "
                             "such as the real clips: a caller is heard over an 8 kHz line)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of the recogniser")
    parser.add_argument("--out", default=None, help="JSON file for the results")
    parser.add_argument("--save-sample", default=None, metavar="PATH",
                        help="also write the sampled records as a JSON Lines manifest, e.g. "
                             "for `hotline evaluate` on the same utterances")
    parser.add_argument("--sample-only", action="store_true", help="write --save-sample and stop (decode nothing)")
    args = parser.parse_args(argv)
    if args.sample_only and not args.save_sample:
        parser.error("--sample-only needs --save-sample PATH")

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
    if args.save_sample:
        from data.manifest import write_manifest

        Path(args.save_sample).parent.mkdir(parents=True, exist_ok=True)
        write_manifest(records, args.save_sample)  # 'audio' rewritten relative to the new manifest's folder
        print(f"wrote the {len(records)} sampled records to {args.save_sample}")
        if args.sample_only:
            return 0
    specs = args.model or [ZERO_SHOT, CHAMPION]
    told: list[str | None] | None = None
    dialect_id: dict = {"source": None}
    prompt_label = NONE
    if args.dialect_prompt == PRODUCT and any(s != ZERO_SHOT for s in specs):
        classifier, source = load_dialect_classifier()
        told, dialect_id = product_dialects(records, classifier, args.telephone)
        dialect_id["source"] = source
        prompt_label = f"{PRODUCT} ({'dialect ID' if classifier is not None else 'no dialect ID'})"
        acc = dialect_id["accuracy"]
        print(f"[asr_eval] {source}" + (f": accuracy {acc:.3f}, a dialect told for {dialect_id['told']} of "
                                         f"{len(records)}" if acc is not None else ""))
    results = [run(records, spec, told, prompt_label, args.threads, args.oracle, args.telephone) for spec in specs]
    print(table(results))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"manifest": str(args.manifest), "dialect_id": dialect_id, "results": results}, ensure_ascii=False,
                                             indent=1), encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
