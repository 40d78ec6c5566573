"""training/asr_eval.py: the per-dialect CER table on a real (tiny) corpus, with a tiny random Whisper exported to
CTranslate2 as the fine-tuned model."""

from __future__ import annotations

import json

import pytest

import ctranslate2  # noqa: E402,F401 - required (pyproject): a broken install fails, never skips

from models.asr.dialects import CT2_SUBDIR  # noqa: E402
from models.asr.export import export_ct2  # noqa: E402
from test_asr_export import tiny_whisper_folder  # noqa: E402
from training.asr_eval import main, product_dialects, score, table  # noqa: E402


def test_score_is_corpus_cer_overall_and_per_dialect():
    records = [{"text": "你好吗", "dialect": "wu"}, {"text": "谢谢", "dialect": "min"}]
    s = score(records, ["你好", "谢谢"])
    assert s["cer"] == pytest.approx(1 / 5) and s["cer_wu"] == pytest.approx(1 / 3) and s["cer_min"] == 0.0
    assert s["n"] == 2 and s["n_wu"] == 1
    assert "wu" in table([{"model": "m", "dialect_prompt": "none", "rtf": 0.5, **s}])
    numbers = score([{"text": "退款二十九元", "dialect": "mandarin"}], ["退款29元"])
    assert numbers["cer"] == pytest.approx(0.5) and numbers["cer_numnorm"] == 0.0 and numbers["cer_numnorm_mandarin"] == 0.0


def test_main_scores_a_model_folder_on_a_corpus_manifest(tiny_corpus, tmp_path, capsys):
    folder = tiny_whisper_folder(tmp_path / "model")
    export_ct2(folder, folder / CT2_SUBDIR, quantization="int8")
    out = tmp_path / "asr_eval.json"
    assert main(["--manifest", str(tiny_corpus / "test.jsonl"), "--n", "5", "--model", str(folder),
                 "--threads", "1", "--out", str(out)]) == 0
    written = json.loads(out.read_text(encoding="utf-8"))
    result = written["results"][0]
    # the product path first: no dialect-ID champion in this store, so the recogniser is told nothing
    assert result["dialect_prompt"] == "product (no dialect ID)" and written["dialect_id"]["told"] == 0
    assert all(s["told"] is None for s in result["samples"])
    assert result["n"] == 5 and result["cer"] >= 0 and result["cer_numnorm"] >= 0 and result["rtf"] > 0
    assert "oracle_cer" in result and "oracle_cer_numnorm" in result  # the oracle only as labelled extra columns
    assert sum(result[k] for k in result if k.startswith("n_")) == 5 and len(result["samples"]) == 5
    printed = capsys.readouterr().out
    assert "RTF" in printed and "oracle" in printed and "no dialect-ID champion" in printed


def test_product_path_tells_the_recogniser_what_dialect_id_is_sure_of(tiny_corpus):
    """As the pipeline: the dialect-ID answer when its confidence reaches min_confidence, else nothing."""
    from data.manifest import read_manifest

    records = [r for r in read_manifest(tiny_corpus / "test.jsonl").records if r.get("audio_path")][:4]

    class Stub:
        min_confidence = 0.6

        def __init__(self):
            self.calls = 0

        def classify(self, audio):
            self.calls += 1
            return {"label": "cantonese", "confidence": 0.9 if self.calls % 2 else 0.3}

    told, info = product_dialects(records, Stub())
    assert told == ["cantonese", None, "cantonese", None] and info["told"] == 2
    assert info["accuracy"] == sum(r.get("dialect") == "cantonese" for r in records) / 4
    assert product_dialects(records, None) == ([None] * 4, {"accuracy": None, "told": 0})


def test_main_names_the_accepted_model_values(tiny_corpus):
    with pytest.raises(SystemExit, match="zero-shot"):
        main(["--manifest", str(tiny_corpus / "test.jsonl"), "--n", "2", "--model", "no/such/folder"])


def test_save_sample_writes_the_sampled_records_as_a_manifest(tiny_corpus, tmp_path, capsys):
    """--save-sample --sample-only: the dialect-balanced sample as a manifest another command can read (the same
    recordings, from another folder), and nothing decoded."""
    from data.manifest import read_manifest
    from training.asr import balanced_subsample
    from training.asr_eval import SEED

    manifest = tiny_corpus / "test.jsonl"
    out = tmp_path / "elsewhere" / "sample.jsonl"
    assert main(["--manifest", str(manifest), "--n", "5", "--save-sample", str(out), "--sample-only"]) == 0
    usable = [r for r in read_manifest(manifest).records if r.get("audio_path") and r.get("text")]
    chosen = balanced_subsample(usable, 5, SEED)
    saved = read_manifest(out)
    assert not saved.errors and [r["id"] for r in saved.records] == [r["id"] for r in chosen]
    assert [r["audio_path"] for r in saved.records] == [r["audio_path"] for r in chosen]
    assert "wrote the 5 sampled records" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--manifest", str(manifest), "--sample-only"])  # --sample-only alone: an argparse error
