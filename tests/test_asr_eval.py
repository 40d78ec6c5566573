"""training/asr_eval.py: the per-dialect CER table on a real (tiny) corpus, with a tiny random Whisper exported to
CTranslate2 as the fine-tuned model."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("ctranslate2")

from models.asr.dialects import CT2_SUBDIR  # noqa: E402
from models.asr.export import export_ct2  # noqa: E402
from test_asr_export import tiny_whisper_folder  # noqa: E402
from training.asr_eval import main, score, table  # noqa: E402


def test_score_is_corpus_cer_overall_and_per_dialect():
    records = [{"text": "你好吗", "dialect": "wu"}, {"text": "谢谢", "dialect": "min"}]
    s = score(records, ["你好", "谢谢"])
    assert s["cer"] == pytest.approx(1 / 5) and s["cer_wu"] == pytest.approx(1 / 3) and s["cer_min"] == 0.0
    assert s["n"] == 2 and s["n_wu"] == 1
    assert "wu" in table([{"model": "m", "dialect_prompt": "none", "rtf": 0.5, **s}])


def test_main_scores_a_model_folder_on_a_corpus_manifest(tiny_corpus, tmp_path, capsys):
    folder = tiny_whisper_folder(tmp_path / "model")
    export_ct2(folder, folder / CT2_SUBDIR, quantization="int8")
    out = tmp_path / "asr_eval.json"
    assert main(["--manifest", str(tiny_corpus / "test.jsonl"), "--n", "5", "--model", str(folder),
                 "--threads", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text(encoding="utf-8"))["results"][0]
    assert result["n"] == 5 and result["dialect_prompt"] == "oracle" and result["cer"] >= 0 and result["rtf"] > 0
    assert sum(result[k] for k in result if k.startswith("n_")) == 5 and len(result["samples"]) == 5
    assert "RTF" in capsys.readouterr().out


def test_main_names_the_accepted_model_values(tiny_corpus):
    with pytest.raises(SystemExit, match="zero-shot"):
        main(["--manifest", str(tiny_corpus / "test.jsonl"), "--n", "2", "--model", "no/such/folder"])
