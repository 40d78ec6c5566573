"""The emotion model's parts on real computations: the real-length Whisper encoder forward (tiny random
Whisper built here), prosodic features on signals with known pitch/loudness/rate, save/load round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data.audio import SAMPLE_RATE
from models.emotion.encoder_features import WhisperEncoderFeatures, select_layers
from models.emotion.model import AROUSAL, EmotionModel, EmotionModelConfig, centre_crop, load_emotion_model
from models.emotion.prosody import FEATURE_NAMES, prosody_features
from models.taxonomy import EMOTIONS

F = {n: i for i, n in enumerate(FEATURE_NAMES)}


def tiny_whisper(folder, max_source_positions: int = 1500):
    """A random 2-layer Whisper saved with save_pretrained (no feature extractor: the loader builds one)."""
    from transformers import WhisperConfig, WhisperModel

    torch.manual_seed(0)
    cfg = WhisperConfig(vocab_size=64, d_model=16, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=80,
                        max_source_positions=max_source_positions, max_target_positions=32,
                        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    WhisperModel(cfg).save_pretrained(folder)
    return folder


def voice(f0: float, seconds: float, amp: float = 0.3, syllables_per_s: float | None = None, seed: int = 0) -> np.ndarray:
    """A harmonic tone at ``f0`` Hz (band-limited to the phone band), optionally amplitude-modulated into syllables."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8) if f0 * k < 3400)
    if syllables_per_s:
        x = x * (0.5 - 0.5 * np.cos(2 * np.pi * syllables_per_s * t)) ** 2
    x = x / np.abs(x).max() * amp
    return (x + np.random.default_rng(seed).normal(0, 1e-3, x.shape)).astype(np.float32)


@pytest.fixture(scope="module")
def features(tmp_path_factory) -> WhisperEncoderFeatures:
    torch.set_num_threads(2)
    return WhisperEncoderFeatures.load(tiny_whisper(tmp_path_factory.mktemp("whisper")))


def test_real_length_forward_matches_hf_encoder_on_a_full_window(tmp_path):
    """With exactly the frames HF expects, the real-length forward is the HF encoder."""
    folder = tiny_whisper(tmp_path / "w", max_source_positions=50)  # 100 mel frames = 1 s
    feats = WhisperEncoderFeatures.load(folder)
    audio = voice(180, 1.0)
    mel = feats.log_mel(audio)
    assert mel.shape == (80, 100)
    states, valid = feats.hidden_states([mel])
    assert valid.all()
    with torch.no_grad():
        ref = feats.encoder(mel[None]).last_hidden_state
    torch.testing.assert_close(states[-1], ref, atol=1e-5, rtol=1e-4)


def test_log_mel_matches_the_whisper_feature_extractor(features):
    from transformers import WhisperFeatureExtractor

    audio = voice(150, 2.0)
    ref = WhisperFeatureExtractor()(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features[0]
    mine = features.log_mel(audio)
    assert mine.shape == (80, 200)
    # the last frame differs: HF pads the signal's end with zeros, torch.stft reflects
    assert float((ref[:, :199] - mine[:, :199]).abs().max()) < 0.02


def test_batched_pooling_equals_one_at_a_time(features):
    audios = [voice(120 + 30 * k, 0.5 + 0.4 * k, seed=k) for k in range(4)]
    batched = features.pooled_many(audios, batch_seconds=100.0)
    single = np.stack([features.pooled([a])[0] for a in audios])
    assert batched.shape == (4, 3, 2, 16)
    np.testing.assert_allclose(batched, single, atol=1e-4)
    # fewer layers run: the same leading layers
    np.testing.assert_allclose(features.pooled_many(audios, n_layers=1), batched[:, :2], atol=1e-4)
    assert select_layers(batched, [1, 2]).shape == (4, 2 * 2 * 16)
    with pytest.raises(ValueError, match="out of range"):
        select_layers(batched, [5])


def test_prosody_pitch_loudness_and_rate():
    low, high = prosody_features(voice(110, 2.0)), prosody_features(voice(220, 2.0))
    assert abs((high[F["f0_mean_st"]] - low[F["f0_mean_st"]]) - 12.0) < 1.0  # an octave is 12 semitones
    assert abs(low[F["f0_mean_st"]] - 12 * np.log2(110 / 100)) < 1.0
    loud, quiet = prosody_features(voice(150, 2.0, amp=0.5)), prosody_features(voice(150, 2.0, amp=0.05))
    assert loud[F["level_dbfs"]] - quiet[F["level_dbfs"]] == pytest.approx(20.0, abs=1.0)
    slow, fast = prosody_features(voice(150, 4.0, syllables_per_s=3)), prosody_features(voice(150, 4.0, syllables_per_s=6))
    assert slow[F["speech_rate_per_s"]] < fast[F["speech_rate_per_s"]]
    assert 2.0 < slow[F["speech_rate_per_s"]] < 4.5
    assert low[F["duration_s"]] == pytest.approx(2.0, abs=0.01)
    assert np.all(np.isfinite(prosody_features(np.zeros(1600, np.float32))))


def test_centre_crop():
    x = np.arange(10 * SAMPLE_RATE, dtype=np.float32)
    c = centre_crop(x, 2.0)
    assert len(c) == 2 * SAMPLE_RATE and c[0] == 4 * SAMPLE_RATE
    assert len(centre_crop(x[:100], 2.0)) == 100


def test_model_classify_save_load_round_trip(features, tmp_path):
    cfg = EmotionModelConfig(encoder=features.spec.source, layers=(1, 2), max_seconds=1.0, hidden=8)
    model = EmotionModel.create(cfg, EMOTIONS, featurizer=features)
    audios = [voice(130 + 20 * k, 1.2, seed=k) for k in range(5)]
    x = model.inputs(*model.raw_features(audios))
    assert x.shape == (5, 2 * 2 * 16 + len(FEATURE_NAMES))
    model.set_normalisation(x, [0, 1, 1, 2, 3])
    assert float(model.net.class_weights[4]) == 0.0 and float(model.net.class_weights[0]) > float(model.net.class_weights[1])
    model.temperature = 1.7
    r = model.classify(audios[0])
    assert r.emotion in EMOTIONS and set(r.probs) == set(EMOTIONS)
    assert sum(r.probs.values()) == pytest.approx(1.0, abs=1e-5) and r.confidence == max(r.probs.values())
    assert 0.0 <= r.arousal <= 1.0
    model.save(tmp_path / "m")
    assert (tmp_path / "m" / "encoder" / "config.json").is_file()  # a non-default encoder travels with the head
    again = load_emotion_model(tmp_path / "m")
    assert again.temperature == pytest.approx(1.7)
    r2 = again.classify(audios[0])
    assert r2.emotion == r.emotion and r2.probs == pytest.approx(r.probs, abs=1e-5)
    with pytest.raises(ValueError, match="mono"):
        again.classify(np.zeros((2, 100), np.float32))
    with pytest.raises(FileNotFoundError, match="emotion_model.json"):
        load_emotion_model(tmp_path)


def test_prosody_only_model_needs_no_encoder(tmp_path):
    model = EmotionModel.create(EmotionModelConfig(use_encoder=False, hidden=8), EMOTIONS)
    assert model._featurizer is None
    x = model.inputs(*model.raw_features([voice(150, 1.0)]))
    assert x.shape == (1, len(FEATURE_NAMES))
    with pytest.raises(ValueError, match="no features"):
        EmotionModel.create(EmotionModelConfig(use_encoder=False, use_prosody=False))
    assert set(AROUSAL) == set(EMOTIONS)


def test_inverse_frequency_weights_balance_the_classes_present():
    from models.emotion.model import inverse_frequency_weights

    w = inverse_frequency_weights([0, 0, 1, 2, 2, 2], 4)
    assert w.dtype == np.float32 and w.tolist() == pytest.approx([0.75, 1.5, 0.5, 0.0])
    counts = np.array([2, 1, 3, 0])
    assert (w * counts)[:3] == pytest.approx([1.5, 1.5, 1.5])  # every present class carries the same total weight
