"""The synthetic corpus: files, manifest contract, split disjointness, determinism, failure accounting."""

from __future__ import annotations

import json

import numpy as np
import pytest

from data.audio import PHONE_SAMPLE_RATE, SAMPLE_RATE, load_audio, load_audio_channels
from data.manifest import read_manifest
from models.taxonomy import DEFAULT_TAXONOMY


def test_manifest_validates_against_contract(tiny_corpus):
    m = read_manifest(tiny_corpus / "manifest.jsonl", check_audio=True)
    assert m.errors == []
    assert len(m.records) >= 50
    for rec in m.records:
        assert rec["dialect"] in DEFAULT_TAXONOMY.dialect_names
        assert rec["emotion"] in DEFAULT_TAXONOMY.emotions
        assert rec["is_complaint"] == DEFAULT_TAXONOMY.is_complaint(rec["intent"])
        for name, start, end in rec["slot_spans"]:
            assert name in rec["slots"] and 0 <= start < end <= len(rec["text"])


def test_splits_disjoint_in_templates_and_speakers(tiny_corpus):
    recs = read_manifest(tiny_corpus / "manifest.jsonl").records
    by_split = {s: [r for r in recs if r["split"] == s] for s in ("train", "validation", "test")}
    assert all(by_split.values()), {s: len(v) for s, v in by_split.items()}
    train_t = {r["template_id"] for r in by_split["train"]}
    train_s = {r["speaker"] for r in by_split["train"]}
    for other in ("validation", "test"):
        assert train_t.isdisjoint(r["template_id"] for r in by_split[other])
        assert train_s.isdisjoint(r["speaker"] for r in by_split[other])
    # per-split manifests hold exactly the records of that split
    for split, rows in by_split.items():
        ids = [json.loads(line)["id"] for line in (tiny_corpus / f"{split}.jsonl").read_text().splitlines()]
        assert ids == [r["id"] for r in rows]


def test_audio_is_telephone_band_and_decodes_at_16k(tiny_corpus):
    rec = read_manifest(tiny_corpus / "manifest.jsonl").records[0]
    import soundfile as sf

    info = sf.info(rec["audio_path"])
    assert info.samplerate == PHONE_SAMPLE_RATE and info.channels == 1
    audio = load_audio(rec["audio_path"], SAMPLE_RATE)
    assert audio.dtype == np.float32 and abs(len(audio) / SAMPLE_RATE - rec["duration_s"]) < 0.05
    # little energy above the 3.4 kHz telephone band even after upsampling to 16 kHz
    spec = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE)
    assert spec[freqs > 4000].sum() / spec.sum() < 0.02


def test_calls_stereo_with_turn_timestamps(tiny_corpus):
    m = read_manifest(tiny_corpus / "calls.jsonl", check_audio=True)
    assert m.errors == [] and m.records
    call = m.records[0]
    stereo = load_audio_channels(tiny_corpus / call["audio_stereo"], SAMPLE_RATE)
    assert stereo.shape[0] == 2
    turns = call["turns"]
    assert {t["speaker"] for t in turns} == {"agent", "customer"}
    assert all(a["end_s"] <= b["start_s"] for a, b in zip(turns, turns[1:]))
    assert turns[-1]["end_s"] <= call["duration_s"] + 0.01
    # the customer channel carries energy during a customer turn; the agent channel is quiet then
    t = next(t for t in turns if t["speaker"] == "customer")
    seg = slice(int(t["start_s"] * SAMPLE_RATE), int(t["end_s"] * SAMPLE_RATE))
    # (the agent channel still carries line noise: SNR can be as low as 10 dB)
    assert np.sqrt(np.mean(stereo[1, seg] ** 2)) > 1.5 * np.sqrt(np.mean(stereo[0, seg] ** 2))


def test_dataset_dict_saved(tiny_corpus):
    from datasets import load_from_disk

    dd = load_from_disk(str(tiny_corpus / "dataset"))
    assert set(dd) == {"train", "validation", "test"}
    row = dd["test"][0]
    assert row["audio"]["sampling_rate"] == SAMPLE_RATE if isinstance(row["audio"], dict) else True
    stats = json.loads((tiny_corpus / "stats.json").read_text())
    assert stats["utterances"] == sum(len(dd[s]) for s in dd)


def test_deterministic_for_a_seed(tmp_path):
    from data.synth.corpus import CorpusSize, SIZES, synthesize_corpus

    SIZES["micro"] = CorpusSize(utterances=12, calls=0, speakers=6)
    try:
        a = synthesize_corpus(tmp_path / "a", size="micro", seed=3, workers=1, build_dataset=False, progress=False)
        b = synthesize_corpus(tmp_path / "b", size="micro", seed=3, workers=2, build_dataset=False, progress=False)
    finally:
        del SIZES["micro"]
    assert a.utterances == b.utterances == 12
    ma = (tmp_path / "a" / "manifest.jsonl").read_text()
    mb = (tmp_path / "b" / "manifest.jsonl").read_text()
    assert ma == mb
    wav = "audio/" + json.loads(ma.splitlines()[0])["audio"].split("audio/")[1]
    assert (tmp_path / "a" / wav).read_bytes() == (tmp_path / "b" / wav).read_bytes()


def test_failed_items_are_counted_not_fatal(tmp_path, monkeypatch):
    from data.synth import corpus

    real = corpus.synthesize

    def flaky(text, dialect, speaker, prosody):
        if dialect == "cantonese":
            raise RuntimeError("espeak-ng voice yue failed")
        return real(text, dialect, speaker, prosody)

    monkeypatch.setattr(corpus, "synthesize", flaky)
    corpus.SIZES["micro"] = corpus.CorpusSize(utterances=30, calls=0, speakers=6)
    try:
        rep = corpus.synthesize_corpus(tmp_path, size="micro", seed=1, workers=1, build_dataset=False, progress=False)
    finally:
        del corpus.SIZES["micro"]
    n_yue = sum(1 for f in rep.failures if "yue" in f["error"])
    assert n_yue == len(rep.failures) > 0
    assert rep.utterances + len(rep.failures) == 30
    assert "FAILED" in rep.table()
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert len(stats["failures"]) == len(rep.failures)
    # past the threshold the report refuses: `hotline data synth` exits non-zero
    assert rep.failed_fraction == pytest.approx(len(rep.failures) / 30) and not rep.ok()
    with pytest.raises(corpus.SynthesisFailed, match=f"{len(rep.failures)} of 30 items failed.*yue"):
        rep.check()
    assert rep.ok(max_failed_fraction=1.0) and rep.check(1.0) is rep


def test_failure_threshold_on_report_counts():
    from data.synth.corpus import DEFAULT_MAX_FAILED_FRACTION, CorpusReport, SynthesisFailed

    def report(ok: int, failed: int) -> CorpusReport:
        return CorpusReport("out", "tiny", 0, ok, 0, [{"id": f"u{k}", "error": "boom"} for k in range(failed)], 1.0,
                            1.0, {})

    assert DEFAULT_MAX_FAILED_FRACTION == 0.01
    assert report(99, 1).ok() and not report(98, 2).ok()  # 1% allowed, 2% not
    assert not report(0, 0).ok()  # nothing rendered is no success
    with pytest.raises(SynthesisFailed, match="2 of 100 items failed"):
        report(98, 2).check()


def test_unknown_size_is_a_clear_error(tmp_path):
    from data.synth.corpus import synthesize_corpus

    with pytest.raises(ValueError, match="--size"):
        synthesize_corpus(tmp_path, size="huge")


def test_test_speakers_use_voice_variants_no_training_speaker_uses():
    """'Speakers unseen' holds for the espeak voice variant too, not only for the speaker id."""
    from data.synth.corpus import SIZES, plan
    from data.synth.text import TextGenerator
    from data.synth.tts import FEMALE_VARIANTS, MALE_VARIANTS, split_variants

    v = split_variants(0)
    for gender, pool in (("female", FEMALE_VARIANTS), ("male", MALE_VARIANTS)):
        sets = [set(v[s][gender]) for s in ("train", "validation", "test")]
        assert all(sets) and set.union(*sets) == set(pool) and sum(map(len, sets)) == len(pool)  # a partition
    items = plan(SIZES["small"], 0, TextGenerator())
    used: dict[str, set] = {}
    ids: dict[str, set] = {}
    for item in items:
        voices = [item.speaker] + ([item.agent] if getattr(item, "agent", None) else [])
        for spk in voices:
            used.setdefault(item.split, set()).add(spk.variant)
            ids.setdefault(item.split, set()).add(spk.id)
    assert not used["test"] & used["train"] and not used["validation"] & used["train"]
    assert not used["test"] & used["validation"]
    assert not ids["test"] & ids["train"] and not ids["validation"] & ids["train"]
