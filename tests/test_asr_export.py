"""CTranslate2 export of a tiny random Whisper (built from a config, real whisper-base processor files)."""

from __future__ import annotations

import json
import shutil

import pytest

import ctranslate2  # noqa: E402,F401 - required (pyproject): a broken install fails, never skips
import faster_whisper  # noqa: E402,F401

from models.asr.export import CT2_FILES, EXPORT_STAMP, ExportError, export_ct2, main  # noqa: E402


def tiny_whisper_folder(out):
    """A random WhisperForConditionalGeneration (d_model 64, 2+2 layers, full vocabulary) saved with the
    bootstrapped whisper-base processor and generation config: a model folder as the trainer writes it."""
    import torch
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration, WhisperProcessor

    from models.asr.bootstrap import whisper_base_hf

    base = whisper_base_hf()
    torch.manual_seed(0)
    config = WhisperConfig(
        d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=128, decoder_ffn_dim=128, vocab_size=51865, num_mel_bins=80, max_source_positions=1500,
        max_target_positions=448, pad_token_id=50257, bos_token_id=50257, eos_token_id=50257,
        decoder_start_token_id=50258,
    )  # fmt: skip
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig.from_pretrained(base)
    model.save_pretrained(out)
    WhisperProcessor.from_pretrained(base).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
    return tiny_whisper_folder(tmp_path_factory.mktemp("tinywhisper") / "model")


def test_export_writes_a_folder_faster_whisper_loads_offline(tiny_hf, tmp_path):
    from faster_whisper import WhisperModel

    out = export_ct2(tiny_hf, tmp_path / "ct2", quantization="int8")
    assert out == tmp_path / "ct2"
    for name in CT2_FILES:
        assert (out / name).is_file(), name
    pre = json.loads((out / "preprocessor_config.json").read_text(encoding="utf-8"))
    assert pre["feature_size"] == 80 and pre["hop_length"] == 160 and pre["sampling_rate"] == 16000
    model = WhisperModel(str(out), device="cpu", compute_type="int8", cpu_threads=1)
    assert model.model.is_multilingual
    assert model.hf_tokenizer.token_to_id("<|startofprev|>") == 50361  # the real tokenizer, not a hub download
    assert model.feat_kwargs["feature_size"] == 80


def test_export_is_idempotent_and_redone_when_asked_differently(tiny_hf, tmp_path):
    out = export_ct2(tiny_hf, tmp_path / "ct2")
    mtime = (out / "model.bin").stat().st_mtime_ns
    assert export_ct2(tiny_hf, tmp_path / "ct2") == out
    assert (out / "model.bin").stat().st_mtime_ns == mtime  # nothing rewritten
    stamp = json.loads((out / EXPORT_STAMP).read_text(encoding="utf-8"))
    assert stamp["quantization"] == "float16" and "model.safetensors" in stamp["source"]
    export_ct2(tiny_hf, tmp_path / "ct2", quantization="int8")
    assert json.loads((out / EXPORT_STAMP).read_text(encoding="utf-8"))["quantization"] == "int8"
    assert not list(tmp_path.glob("ct2.tmp-*"))  # no leftovers


def test_export_cli_writes_the_ct2_subfolder(tiny_hf, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_hf, model)
    assert main([str(model), "--quantization", "int8"]) == 0
    assert (model / "ct2" / "model.bin").is_file()
    assert main([str(tmp_path / "nope")]) == 2


def test_export_errors_name_the_problem(tiny_hf, tmp_path):
    with pytest.raises(ExportError, match="folder not found"):
        export_ct2(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(ExportError, match="quantization"):
        export_ct2(tiny_hf, tmp_path / "out", quantization="int3")
    no_tok = tmp_path / "no_tokenizer"
    shutil.copytree(tiny_hf, no_tok)
    (no_tok / "tokenizer.json").unlink()
    with pytest.raises(ExportError, match="tokenizer.json"):
        export_ct2(no_tok, tmp_path / "out")
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    shutil.copy(tiny_hf / "config.json", no_weights / "config.json")
    with pytest.raises(ExportError, match="no weights"):
        export_ct2(no_weights, tmp_path / "out")
    with pytest.raises(ExportError, match="must differ"):
        export_ct2(tiny_hf, tiny_hf)
