"""The pipeline's emotion: audio (normalised per caller) fused with the transcript's wording, as saved in fusion.json."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.emotion.fused import FUSION_FILE, FusedEmotion, load_fused_emotion, read_fusion
from models.emotion.fusion import fuse, with_bias
from models.emotion.model import EmotionModel, EmotionModelConfig
from models.emotion.text_signal import LexiconTextSignal
from models.pipeline import Pipeline
from models.taxonomy import EMOTIONS
from test_emotion_model import voice  # tests/ is on sys.path (rootdir conftest)

ANGRY_TEXT = "你们这是什么破服务！气死我了，我要投诉，我要曝光你们！"


def _saved_model(tmp_path, fusion: dict | None, speaker_norm: str = "mean"):
    cfg = EmotionModelConfig(use_encoder=False, hidden=8, speaker_norm=speaker_norm, speaker_norm_prior=2.0)
    model = EmotionModel.create(cfg, EMOTIONS)
    audios = [voice(f0, 1.0, amp, syllables_per_s=4, seed=i) for i, (f0, amp) in
              enumerate([(120, 0.2), (130, 0.3), (200, 0.2), (220, 0.4)])]
    if model.normalises:
        raw = model.inputs(*model.raw_features(audios))
        model.fit_speaker_prior(raw, ["a", "a", "b", "b"])
        model.set_normalisation(model.normalise(raw, ["a", "a", "b", "b"]))
    folder = model.save(tmp_path / "emotion")
    if fusion is not None:
        (folder / FUSION_FILE).write_text(json.dumps(fusion, ensure_ascii=False), encoding="utf-8")
    return folder, audios


def _p(result) -> np.ndarray:
    return np.array([result.probs[e] for e in EMOTIONS])


def test_fused_probabilities_follow_the_saved_rule(tmp_path):
    folder, audios = _saved_model(tmp_path, {"text_signal": "lexicon", "text_weight": 0.6, "angry_bias": 0.5})
    fused = load_fused_emotion(folder)
    assert read_fusion(folder).text_weight == 0.6
    p_audio, _ = fused.audio_probs(audios[0])
    p_text = LexiconTextSignal(labels=EMOTIONS).predict_proba([ANGRY_TEXT])
    expected = with_bias(fuse(p_audio[None], p_text, 0.6), EMOTIONS.index("angry"), 0.5)[0]
    got = fused.classify(audios[0], text=ANGRY_TEXT)
    np.testing.assert_allclose(_p(got), expected, atol=1e-6)
    assert got.emotion == "angry"  # the words are unmistakable and carry 60% of the weight
    # without a transcript only the audio (and the bias) count
    alone = fused.classify(audios[0])
    np.testing.assert_allclose(_p(alone), with_bias(p_audio[None], EMOTIONS.index("angry"), 0.5)[0], atol=1e-6)


def test_callers_are_normalised_against_their_own_earlier_segments(tmp_path):
    folder, audios = _saved_model(tmp_path, None)
    fused = load_fused_emotion(folder)
    assert fused.fusion is None  # no fusion.json: audio alone
    first = fused.classify(audios[2], caller="13800138000")
    second = fused.classify(audios[2], caller="13800138000")  # same audio, now with the caller's history
    other = fused.classify(audios[2], caller="13900139000")  # a new caller starts from the population prior
    np.testing.assert_allclose(_p(first), _p(other), atol=1e-6)
    assert np.abs(_p(first) - _p(second)).max() > 1e-5
    model = fused.audio_model
    x = model.inputs(*model.raw_features([audios[2]]))
    hist = model.new_caller().add(x)
    expected, _ = model.probs(model.normalise(x, history=hist))
    np.testing.assert_allclose(_p(second), expected[0], atol=1e-6)
    fused.forget()
    np.testing.assert_allclose(_p(fused.classify(audios[2], caller="13800138000")), _p(first), atol=1e-6)


def test_the_pipeline_passes_transcript_and_caller(tmp_path):
    folder, audios = _saved_model(tmp_path, {"text_signal": "lexicon", "text_weight": 0.9, "angry_bias": 0.0})
    from data.audio import SAMPLE_RATE, write_wav

    path = tmp_path / "u.wav"
    write_wav(path, audios[0], SAMPLE_RATE)
    pipe = Pipeline(emotion=load_fused_emotion(folder))
    calm, angry = pipe.process_many([
        {"id": "a", "audio_path": str(path), "text": "你好，我想查一下订单。", "caller": "138"},
        {"id": "b", "audio_path": str(path), "text": ANGRY_TEXT, "caller": "138"},
    ], progress=False)
    # the caller's history was kept: "138" has two segments now; a corpus record's speaker id keys it too
    assert pipe.emotion._callers["138"].n == 2
    pipe.process_many([{"id": "c", "audio_path": str(path), "text": "好的", "speaker": "spk0001"}], progress=False)
    assert pipe.emotion._callers["spk0001"].n == 1
    assert angry["emotion"] == "angry" and angry["text_source"] == "reference"
    assert calm["emotion"] != "angry"


def test_bad_fusion_files_say_what_is_wrong(tmp_path):
    folder, _ = _saved_model(tmp_path, {"text_signal": "ngram", "text_weight": 0.5})
    with pytest.raises(ValueError, match="needs the saved 'ngram'"):
        load_fused_emotion(folder)
    (folder / FUSION_FILE).write_text(json.dumps({"text_signal": "bert"}), encoding="utf-8")
    with pytest.raises(ValueError, match="unknown text_signal"):
        read_fusion(folder)
    assert isinstance(FusedEmotion(EmotionModel.create(EmotionModelConfig(use_encoder=False, hidden=8)), None).labels, list)
