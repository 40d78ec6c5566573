"""Export a transformers Whisper folder to CTranslate2, the format faster-whisper serves.

``export_ct2(hf_dir, out_dir)`` runs ctranslate2's own ``TransformersConverter`` and copies what faster-whisper
reads beside ``model.bin`` so the folder loads offline: ``tokenizer.json`` (else faster-whisper asks the hub for
openai/whisper-tiny's) and ``preprocessor_config.json`` (mel bins, hop length; transformers 5 writes the feature
extractor into ``processor_config.json`` instead, so it is written from there when missing). A stamp file records
what was converted (source weights' sha256, quantization, converter version): calling again with the same input
returns at once, a changed input or quantization converts again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

EXPORT_STAMP = "hotline-export.json"  # in the CTranslate2 folder: what it was converted from
EXPORTER_VERSION = 1  # bump when export_ct2 changes what it writes: existing exports are redone
QUANTIZATIONS = ("float32", "float16", "bfloat16", "int8", "int8_float16", "int8_float32", "int8_bfloat16", "int16")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # transformers weights, one of them must be there
TOKENIZER_FILE = "tokenizer.json"  # faster-whisper's tokenizer (tokenizers library format)
PREPROCESSOR_FILE = "preprocessor_config.json"  # faster-whisper's feature extractor settings
PROCESSOR_FILE = "processor_config.json"  # transformers 5: the processor, feature extractor nested inside
CT2_FILES = ("model.bin", "config.json", TOKENIZER_FILE, PREPROCESSOR_FILE)  # a complete export holds these


class ExportError(RuntimeError):
    """The model folder cannot be exported; the message names the folder or file and what to do."""


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _source_fingerprint(hf_dir: Path) -> dict[str, str]:
    """sha256 of the files that decide the export: weights, config, tokenizer."""
    names = [n for n in WEIGHT_FILES if (hf_dir / n).is_file()][:1] + ["config.json", TOKENIZER_FILE]
    return {name: _sha256(hf_dir / name) for name in names if (hf_dir / name).is_file()}


def check_hf_folder(hf_dir: Path) -> None:
    """Raise ExportError unless ``hf_dir`` is a transformers Whisper folder with weights and a fast tokenizer."""
    if not hf_dir.is_dir():
        raise ExportError(f"{hf_dir}: folder not found; pass a folder written by save_pretrained (model + processor)")
    if not (hf_dir / "config.json").is_file():
        raise ExportError(
            f"{hf_dir}: no config.json; pass a folder written by WhisperForConditionalGeneration.save_pretrained"
        )
    config = json.loads((hf_dir / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != "whisper":
        raise ExportError(f"{hf_dir}/config.json: model_type is {config.get('model_type')!r}, expected 'whisper'")
    if not any((hf_dir / n).is_file() for n in WEIGHT_FILES):
        raise ExportError(f"{hf_dir}: no weights ({' or '.join(WEIGHT_FILES)}); save the model with save_pretrained")
    if not (hf_dir / TOKENIZER_FILE).is_file():
        raise ExportError(
            f"{hf_dir}: no {TOKENIZER_FILE}; save the processor too (WhisperProcessor.save_pretrained), "
            "faster-whisper needs the fast tokenizer file to load offline"
        )


def _preprocessor_config(hf_dir: Path) -> dict:
    """Feature extractor settings: preprocessor_config.json, else the one nested in processor_config.json,
    else transformers' WhisperFeatureExtractor defaults with the model's mel bins."""
    if (hf_dir / PREPROCESSOR_FILE).is_file():
        return json.loads((hf_dir / PREPROCESSOR_FILE).read_text(encoding="utf-8"))
    if (hf_dir / PROCESSOR_FILE).is_file():
        nested = json.loads((hf_dir / PROCESSOR_FILE).read_text(encoding="utf-8")).get("feature_extractor")
        if nested:
            return nested
    from transformers import WhisperFeatureExtractor

    n_mels = json.loads((hf_dir / "config.json").read_text(encoding="utf-8")).get("num_mel_bins", 80)
    return WhisperFeatureExtractor(feature_size=n_mels).to_dict()


def export_ct2(hf_dir: str | os.PathLike, out_dir: str | os.PathLike, quantization: str = "float16") -> Path:
    """Convert the transformers Whisper folder ``hf_dir`` to a CTranslate2 folder ``out_dir`` (model.bin stored as
    ``quantization``; faster-whisper converts it again on load to the compute type asked for) that faster-whisper
    loads offline. Does nothing when ``out_dir`` already holds the export of the same files. Returns ``out_dir``.
    Raises ExportError for a folder that is not a Whisper model, or an unknown quantization."""
    hf_dir, out_dir = Path(hf_dir).expanduser(), Path(out_dir).expanduser()
    if quantization not in QUANTIZATIONS:
        raise ExportError(f"quantization {quantization!r} is not one of {', '.join(QUANTIZATIONS)}")
    check_hf_folder(hf_dir)
    if out_dir.resolve() == hf_dir.resolve():
        raise ExportError(f"{out_dir}: the export folder must differ from the model folder (e.g. {hf_dir}/ct2)")
    want = {"exporter": EXPORTER_VERSION, "quantization": quantization, "source": _source_fingerprint(hf_dir)}
    stamp = out_dir / EXPORT_STAMP
    try:
        if json.loads(stamp.read_text(encoding="utf-8")) == want and all((out_dir / n).is_file() for n in CT2_FILES):
            return out_dir
    except (OSError, ValueError):
        pass

    import ctranslate2.converters

    t0 = time.perf_counter()
    tmp = out_dir.with_name(f"{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    copy = [n for n in (TOKENIZER_FILE, PREPROCESSOR_FILE) if (hf_dir / n).is_file()]
    try:
        converter = ctranslate2.converters.TransformersConverter(str(hf_dir), copy_files=copy or None)
        converter.convert(str(tmp), quantization=quantization, force=True)
    except Exception as exc:  # noqa: BLE001 - converter errors are many and untyped; say which folder failed
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExportError(f"{hf_dir}: CTranslate2 conversion failed ({type(exc).__name__}: {exc})") from exc
    if not (tmp / PREPROCESSOR_FILE).is_file():
        (tmp / PREPROCESSOR_FILE).write_text(
            json.dumps(_preprocessor_config(hf_dir), indent=2, ensure_ascii=False), encoding="utf-8"
        )
    (tmp / EXPORT_STAMP).write_text(json.dumps(want, indent=1), encoding="utf-8")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    print(f"export: {hf_dir} -> {out_dir} ({quantization}) in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    """``python -m models.asr.export MODEL_DIR [--out DIR] [--quantization Q]``: export a fine-tuned model
    folder to its ``ct2/`` subfolder (the layout the recogniser loads)."""
    import argparse

    from models.asr.dialects import CT2_SUBDIR

    parser = argparse.ArgumentParser(prog="python -m models.asr.export", description=main.__doc__)
    parser.add_argument("model_dir", help="transformers Whisper folder (model + processor)")
    parser.add_argument("--out", default=None, help=f"output folder (default MODEL_DIR/{CT2_SUBDIR})")
    parser.add_argument("--quantization", default="float16", choices=QUANTIZATIONS, help="weights type in model.bin")
    args = parser.parse_args(argv)
    out = args.out or Path(args.model_dir) / CT2_SUBDIR
    try:
        print(export_ct2(args.model_dir, out, args.quantization))
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
