"""Speaker/caller normalisation of the emotion head's inputs, pluggable transcript sources, and finding the saved
model inside a downloaded MLflow model folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from data.audio import SAMPLE_RATE
from models.emotion.model import EmotionModel, EmotionModelConfig, load_emotion_model, loaded_from_mlflow
from models.emotion.normalise import PopulationPrior, SpeakerStats, normalise_causal, normalise_groups, normalise_partial
from models.emotion.trajectory import score_call
from models.emotion.transcripts import noised, resolve, source_name, transcripts
from models.taxonomy import EMOTIONS
from test_emotion_model import voice  # tests/ is on sys.path (rootdir conftest)


def _p(results) -> np.ndarray:
    return np.array([[r.probs[e] for e in EMOTIONS] for r in results])


def _speakers(n_spk: int = 6, per: int = 40, seed: int = 0):
    """Rows = speaker offset (large) + emotion shift (small): the emotion only shows relative to the speaker."""
    rng = np.random.default_rng(seed)
    rows, spk, emo = [], [], []
    for s in range(n_spk):
        base = rng.normal(0, 5, 3)
        for _ in range(per):
            e = int(rng.integers(0, 2))
            rows.append(base + np.array([1.0, -1.0, 0.0]) * e + rng.normal(0, 0.2, 3))
            spk.append(f"s{s}")
            emo.append(e)
    return np.array(rows), spk, np.array(emo)


def test_group_normalisation_removes_the_speaker_offset():
    x, spk, emo = _speakers()
    prior = PopulationPrior.fit(x, weight=0.0, groups=spk)
    z = normalise_groups(x, spk, prior, "mean")
    # raw feature 0 barely tells the emotion across speakers; relative to the speaker it does
    raw_gap = abs(x[emo == 1, 0].mean() - x[emo == 0, 0].mean()) / x[:, 0].std()
    rel_gap = abs(z[emo == 1, 0].mean() - z[emo == 0, 0].mean()) / z[:, 0].std()
    assert rel_gap > 1.5 and rel_gap > 3 * raw_gap
    for s in set(spk):  # every speaker's rows are centred
        np.testing.assert_allclose(z[np.array(spk) == s].mean(0), 0, atol=1e-5)
    zs = normalise_groups(x, spk, prior, "meanstd")
    assert np.all(np.abs(zs[np.array(spk) == "s0"].std(0) - 1) < 1e-3)
    with pytest.raises(ValueError, match="speaker_norm"):
        normalise_groups(x, spk, prior, "median")


def test_stats_shrink_towards_the_population_and_match_numpy_without_a_prior():
    rng = np.random.default_rng(1)
    x = rng.normal(3, 2, (50, 4))
    prior = PopulationPrior(np.zeros(4, np.float32), np.ones(4, np.float32), weight=0.0)
    mean, std = SpeakerStats(4).add(x).moments(prior)
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-9)
    np.testing.assert_allclose(std, x.std(0), rtol=1e-9)
    strong = PopulationPrior(np.zeros(4, np.float32), np.ones(4, np.float32), weight=1e6)
    np.testing.assert_allclose(SpeakerStats(4).add(x).moments(strong)[0], 0, atol=1e-3)
    # no statistics at all: the population itself
    mean, std = SpeakerStats(4).moments(PopulationPrior(np.full(4, 2.0, np.float32), np.full(4, 9.0, np.float32), 4.0))
    np.testing.assert_allclose(mean, 2.0) and np.testing.assert_allclose(std, 3.0)
    with pytest.raises(ValueError, match="dim"):
        SpeakerStats(3).add(x)


def test_causal_normalisation_never_looks_ahead():
    x, spk, _ = _speakers(n_spk=1, per=10)
    prior = PopulationPrior.fit(x, weight=2.0)
    a = normalise_causal(x, prior, "mean")
    changed = x.copy()
    changed[6:] += 100.0  # later segments change: earlier outputs must not
    b = normalise_causal(changed, prior, "mean")
    np.testing.assert_allclose(a[:6], b[:6])
    assert not np.allclose(a[6:], b[6:])
    # the first segment with a history = the history plus itself
    hist = SpeakerStats(3).add(x[:5])
    first = normalise_causal(x[5:6], prior, "mean", history=hist)[0]
    expected = hist.copy().add(x[5]).normalise(x[5:6], prior, "mean")[0]
    np.testing.assert_allclose(first, expected)
    assert hist.n == 5  # the caller's history is not modified


def test_normalising_model_saves_its_prior_and_normalises_the_same_after_loading(tmp_path):
    cfg = EmotionModelConfig(use_encoder=False, hidden=8, speaker_norm="meanstd", speaker_norm_prior=3.0)
    model = EmotionModel.create(cfg, EMOTIONS)
    audios = [voice(f0, 1.0, amp, syllables_per_s=4, seed=i) for i, (f0, amp) in
              enumerate([(120, 0.2), (130, 0.3), (200, 0.2), (220, 0.4), (125, 0.25), (210, 0.3)])]
    speakers = ["low", "low", "high", "high", "low", "high"]
    raw = model.inputs(*model.raw_features(audios))
    with pytest.raises(RuntimeError, match="fit_speaker_prior"):
        model.normalise(raw, speakers)
    model.fit_speaker_prior(raw, speakers)
    model.set_normalisation(model.normalise(raw, speakers))
    before = model.classify_many(audios, speakers=speakers)
    causal = model.classify_many(audios[:3], causal=True)
    model.save(tmp_path / "m")
    again = load_emotion_model(tmp_path / "m")
    assert again.normalises and again.prior.weight == 3.0
    np.testing.assert_allclose(again.prior.mean, model.prior.mean)
    after = again.classify_many(audios, speakers=speakers)
    np.testing.assert_allclose(_p(after), _p(before), atol=1e-6)
    np.testing.assert_allclose(_p(again.classify_many(audios[:3], causal=True)), _p(causal), atol=1e-6)
    # the speaker context matters: the same utterance scores differently alone and among its speaker's
    assert np.abs(_p([again.classify(audios[0])]) - _p(after[:1])).max() > 1e-4
    # a call's customer segments are scored causally by score_call
    channel = np.concatenate([np.zeros(SAMPLE_RATE // 2, np.float32), audios[0], audios[1]])
    turns = [{"speaker": "customer", "start_s": 0.5, "end_s": 1.5}, {"speaker": "customer", "start_s": 1.5, "end_s": 2.5}]
    ce = score_call(again, channel, turns)
    seq = again.classify_many([channel[8000:24000], channel[24000:40000]], causal=True)
    np.testing.assert_allclose(np.array([[s.probs[e] for e in EMOTIONS] for s in ce.segments]), _p(seq), atol=1e-6)
    with pytest.raises(ValueError, match="speaker_norm"):
        EmotionModel.create(EmotionModelConfig(use_encoder=False, speaker_norm="zscore"))


def test_model_dir_is_found_inside_an_mlflow_model_folder(tmp_path):
    model = EmotionModel.create(EmotionModelConfig(use_encoder=False, hidden=8), EMOTIONS)
    inner = tmp_path / "download" / "artifacts" / "model"  # whatever MLflow names the artifact folder
    model.save(inner)
    (tmp_path / "download" / "MLmodel").write_text("flavors: {}\n")
    assert loaded_from_mlflow(tmp_path / "download") == inner
    assert loaded_from_mlflow(inner) == inner
    assert load_emotion_model(loaded_from_mlflow(tmp_path / "download")).labels == tuple(EMOTIONS)
    with pytest.raises(FileNotFoundError, match="emotion_model.json"):
        loaded_from_mlflow(tmp_path / "empty_dir_that_is_missing")


def test_transcript_sources_are_pluggable(tmp_path):
    recs = [{"id": f"u{i}", "text": "我真的受够了，你们到底管不管，再不处理我就去投诉你们的服务态度"} for i in range(20)]
    assert transcripts(recs, "reference") == [r["text"] for r in recs]
    noisy = transcripts(recs, "asr_noise", seed=0)
    assert noisy == transcripts(recs, "asr_noise", seed=0)  # seeded: the same errors every run
    assert sum(n != r["text"] for n, r in zip(noisy, recs)) >= 10  # most texts get recognition errors
    assert noisy[0] == noised(recs[0]["text"], "u0", 0) and transcripts(recs, "asr_noise", seed=1) != noisy
    path = tmp_path / "asr.jsonl"
    path.write_text("\n".join(json.dumps({"id": r["id"], "transcript": f"识别{i}"}, ensure_ascii=False)
                              for i, r in enumerate(recs)), encoding="utf-8")
    assert transcripts(recs, path)[3] == "识别3" and source_name(path) == "asr"
    assert transcripts(recs[:2], {"u0": "甲", "u1": "乙"}) == ["甲", "乙"]
    assert transcripts(recs[:1], lambda r: r["id"] + "!") == ["u0!"]
    with pytest.raises(KeyError, match="u1"):
        resolve({"u0": "甲"})(recs[1])
    with pytest.raises(FileNotFoundError, match="evaluation.transcripts"):
        resolve(tmp_path / "missing.jsonl")


def test_partial_normalisation_uses_a_few_rows_of_the_own_speaker():
    x, spk, _ = _speakers(n_spk=3, per=10)
    prior = PopulationPrior.fit(x, weight=0.0)
    one = normalise_partial(x, spk, prior, "mean", sizes=(1,))
    np.testing.assert_allclose(one, 0, atol=1e-5)  # alone and no prior weight: every row is its own mean
    full = normalise_partial(x, spk, prior, "mean", sizes=(10,))
    np.testing.assert_allclose(full, normalise_groups(x, spk, prior, "mean"), atol=1e-5)  # all 10 rows of the speaker
    few = normalise_partial(x, spk, prior, "mean", sizes=(3,), seed=1)
    assert few.shape == x.shape and not np.allclose(few, full)
