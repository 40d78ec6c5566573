"""The one path (models/pipeline.py) and `hotline predict` / `hotline evaluate` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from data.audio import load_audio, write_wav
from models.pipeline import Classification, Pipeline, Transcription
from training.cli import main as cli

SENTENCES = ["我要投诉，快递一直没到", "谢谢你们的服务", "怎么申请退货", "订单号20240518001", "电话13800123456"]


@pytest.fixture(scope="module")
def random_intent_model():
    """A tiny untrained character intent model (random weights): real code, arbitrary answers."""
    import torch

    from models.intent.charmodel import CharIntentModel, CharModelConfig
    from models.intent.understand import LabelMaps

    torch.manual_seed(0)
    return CharIntentModel.create(SENTENCES, LabelMaps.from_taxonomy(), CharModelConfig(embed_dim=8, conv_channels=8, hidden=8))


class FixedRecognizer:
    """A stand-in recogniser (the pipeline's plumbing, not recognition, is tested here) that remembers the dialect it was given."""

    def __init__(self, text: str):
        self.text, self.dialects = text, []

    def transcribe(self, audio, dialect=None):
        assert audio.ndim == 1 and audio.dtype == np.float32
        self.dialects.append(dialect)
        return Transcription(self.text, 0.9)


class LoudnessEmotion:
    """A stand-in emotion classifier: loud audio is angry."""

    def classify(self, audio):
        return ("angry", 0.95) if float(np.abs(audio).max()) > 0.5 else Classification("neutral", 0.8)


class FixedDialect:
    def classify(self, audio):
        return {"cantonese": 0.7, "mandarin": 0.3}


def _tone(path: Path, amplitude: float, sr: int = 8000) -> Path:
    t = np.arange(int(0.5 * sr)) / sr
    write_wav(path, (amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr)
    return path


REQUIRED = {"id", "transcript", "dialect", "emotion", "intent", "is_complaint", "slots", "queue", "priority",
            "needs_review", "text_source", "missing_slots", "complaint_evidence", "intent_confidence"}


def test_pipeline_text_and_reference_records(random_intent_model):
    pipe = Pipeline(intent_model=random_intent_model)
    records = [
        {"id": "m1", "text": "我要投诉，打12315曝光你们"},
        {"id": "a1", "audio": "missing.wav", "audio_path": "/nonexistent/missing.wav", "text": "谢谢你们的服务"},
        {"id": "a2", "audio": "missing.wav", "audio_path": "/nonexistent/missing.wav"},
        {"id": "m2", "text": "订单号20240518001"},
    ]
    out = pipe.process_many(records, batch_size=2, progress=False)
    assert [o["id"] for o in out] == ["m1", "a1", "a2", "m2"]
    m1, a1, a2, m2 = out
    assert REQUIRED <= set(m1)
    assert m1["text_source"] == "message" and m1["transcript"] is None and m1["emotion"] is None
    assert m1["channel_layout"] == "text" and m1["message"] == records[0]["text"] and m1["segments"] == []
    # a strong cue makes it a complaint whatever the random model says; 12315 escalates to P1
    assert m1["is_complaint"] is True and m1["queue"] == "complaint" and m1["priority"] == "P1"
    assert "cue:12315" in m1["complaint_evidence"]
    # audio without a recogniser: the reference text is understood (the audio is never opened)
    assert a1["text_source"] == "reference" and a1["transcript"] is None and "error" not in a1
    assert "no speech recogniser" in a2["error"] and set(a2) == {"id", "error"}
    assert isinstance(m2["slots"], dict) and set(m2["slots"]) <= {"order_id", "phone", "amount", "product"}
    json.dumps(out, ensure_ascii=False)  # JSON-ready


def test_pipeline_speech_seam(tmp_path, random_intent_model):
    asr = FixedRecognizer("你们的快递太慢了，我要投诉")
    pipe = Pipeline(intent_model=random_intent_model, asr=asr, emotion=LoudnessEmotion(), dialect=FixedDialect())
    records = [
        {"id": "loud", "audio_path": str(_tone(tmp_path / "loud.wav", 0.9)), "text": "参考文本"},
        {"id": "gone", "audio_path": str(tmp_path / "gone.wav"), "text": "参考文本"},
        {"id": "calm", "audio_path": str(_tone(tmp_path / "calm.wav", 0.1))},
    ]
    loud, gone, calm = pipe.process_many(records, progress=False)
    assert loud["text_source"] == "asr" and loud["transcript"] == asr.text
    assert (loud["dialect"], loud["dialect_confidence"]) == ("cantonese", 0.7)
    assert asr.dialects == ["cantonese", "cantonese"]  # dialect-aware recognition gets the detected dialect
    assert loud["emotion"] == "angry" and loud["needs_review"] is True
    assert any("angry" in r for r in loud["review_reasons"])
    assert loud["dialect_group"] == "cantonese"
    assert "not found" in gone["error"]  # unreadable audio fails this record only
    assert calm["emotion"] == "neutral" and calm["transcript"] == asr.text


def test_unsure_dialect_id_gives_the_recogniser_no_dialect(tmp_path, random_intent_model):
    class UnsureDialect(FixedDialect):
        min_confidence = 0.8  # the component's threshold: 0.7 is not enough

    asr = FixedRecognizer("喂你好")
    pipe = Pipeline(intent_model=random_intent_model, asr=asr, dialect=UnsureDialect())
    (out,) = pipe.process_many([{"id": "u", "audio_path": str(_tone(tmp_path / "u.wav", 0.3))}], progress=False)
    assert asr.dialects == [None]  # decoded without a dialect prompt
    assert (out["dialect"], out["dialect_confidence"]) == ("cantonese", 0.7)  # still reported for routing


def test_pipeline_isolates_a_failing_text(random_intent_model):
    class Fragile:
        def predict(self, texts):
            if any("BOOM" in t for t in texts):
                raise RuntimeError("cannot read BOOM")
            return random_intent_model.predict(texts)

    out = Pipeline(intent_model=Fragile()).process_many(
        [{"id": "1", "text": "你好"}, {"id": "2", "text": "BOOM"}, {"id": "3", "text": "谢谢"}], batch_size=8, progress=False
    )
    assert [o["id"] for o in out] == ["1", "2", "3"]
    assert "error" not in out[0] and "error" not in out[2]
    assert "cannot read BOOM" in out[1]["error"]


def test_predict_without_champion_names_the_training_command(tmp_path, capsys):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "1", "text": "你好"}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert cli(["predict", "--manifest", str(manifest), "--out", str(tmp_path / "p.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "hotline train intent" in err and "champion" in err
    assert cli(["predict", "--manifest", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "p.jsonl")]) == 2
    assert "not found" in capsys.readouterr().err


def _manifest(path: Path) -> list[str]:
    rows = [
        {"id": "c1", "text": "我的快递到现在还没到，订单号20240518001，我要投诉", "intent": "logistics_delay",
         "slots": {"order_id": "20240518001"}},
        {"id": "c2", "text": "谢谢你们，服务很好", "intent": "praise", "slots": {}},
        "{this line is not json",
        {"id": "c3", "audio": "calls/c3.wav", "text": "我的手机号13800123456，网络一直没信号", "intent": "network_outage",
         "dialect": "cantonese", "slots": {"phone": "13800123456"}},
        {"id": "c4", "text": "请问怎么开发票", "intent": "consultation"},
        {"id": "c5", "audio": "calls/c5.wav"},  # no reference text and no recogniser: an error line
    ]
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows) + "\n",
                    encoding="utf-8")
    return ["c1", "c2", "c3", "c4", "c5"]


@pytest.mark.slow
def test_predict_and_evaluate_end_to_end(tmp_path, capsys, shared_dir):
    from training.intent import main as train_intent  # an ImportError fails the test: the trainer must be there

    rc = train_intent([
        "data.n_train=44", "data.n_validation=22", "data.n_test=22", "trainer.max_steps=2",
        "trainer.progress_bar=false", "model.embed_dim=16", "model.conv_channels=16", "model.hidden=16",
        "evaluation.worst_errors=5",
    ])
    assert rc == 0
    capsys.readouterr()

    manifest = tmp_path / "m.jsonl"
    ids = _manifest(manifest)
    preds_path = tmp_path / "out" / "pred.jsonl"
    # --recogniser none: the labelled oracle, audio records are understood from their reference text
    assert cli(["predict", "--manifest", str(manifest), "--out", str(preds_path), "--recogniser", "none"]) == 0
    captured = capsys.readouterr()
    assert "line 3" in captured.err and "not valid JSON" in captured.err
    assert "recogniser: none" in captured.err and "recogniser: none" in captured.out
    preds = [json.loads(line) for line in preds_path.read_text(encoding="utf-8").splitlines()]
    assert [p["id"] for p in preds] == ids  # input order, the bad line produces nothing
    by_id = {p["id"]: p for p in preds}
    assert by_id["c3"]["text_source"] == "reference" and by_id["c1"]["text_source"] == "message"
    assert set(by_id["c5"]) == {"id", "error"}
    for rid in ("c1", "c2", "c3", "c4"):
        assert REQUIRED <= set(by_id[rid])
        assert by_id[rid]["priority"] in ("P1", "P2", "P3", "P4")
    assert by_id["c1"]["is_complaint"] is True  # 投诉 is a strong cue
    from models.ticket import Ticket  # predict output carries the service's ticket schema

    t1 = Ticket.model_validate(by_id["c1"]["ticket"])
    assert t1.call_id == "c1" and t1.intent == by_id["c1"]["intent"] and t1.priority == by_id["c1"]["priority"]
    assert t1.sla.escalations and t1.channel == "chat" and "ticket" not in by_id["c5"]
    assert "records 5" in captured.out

    report_path = tmp_path / "out" / "report.json"
    assert cli(["evaluate", "--manifest", str(manifest), "--out", str(report_path), "--limit", "4",
                "--recogniser", "none"]) == 0
    table = capsys.readouterr().out
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["n_records"] == 4 and report["n_errors"] == 0
    assert report["bad_lines"][0]["line"] == 3
    assert report["intent"]["n"] == 4 and 0.0 <= report["intent"]["accuracy"] <= 1.0
    assert sum(sum(row.values()) for row in report["intent"]["confusion"].values()) == 4
    assert report["complaint"]["n"] == 4
    assert report["slots"]["n_ref_slots"] == 2
    assert "cer" in report["skipped"] and "cer" not in report  # no recogniser yet
    assert report["models"]["intent"]["version"] == "1" and report["recogniser"].startswith("none")
    assert "intent accuracy" in table and "slot F1" in table
    evaluated = (tmp_path / "out" / "report.predictions.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["id"] for line in evaluated] == ids[:4]

    # the default (--recogniser auto, no asr champion): the pretrained whisper-base hears the audio; the reference
    # text is never read, so an audio record whose file is missing fails instead of being understood
    clip = _real_clip(shared_dir)
    spoken = tmp_path / "spoken.jsonl"
    spoken.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in [
        {"id": "real", "audio": str(clip["path"]), "text": clip["text"], "intent": "consultation"},
        {"id": "c3", "audio": "calls/c3.wav", "text": "我的手机号13800123456", "intent": "network_outage"},
        {"id": "c1", "text": "我要投诉，快递一直没到", "intent": "logistics_delay"},
    ]) + "\n", encoding="utf-8")
    assert cli(["predict", "--manifest", str(spoken), "--out", str(tmp_path / "spoken.pred.jsonl")]) == 0
    captured = capsys.readouterr()
    assert "recogniser: whisper-base (pretrained)" in captured.err
    real, c3, c1 = [json.loads(line) for line in (tmp_path / "spoken.pred.jsonl").read_text(encoding="utf-8").splitlines()]
    assert real["text_source"] == "asr" and real["channel_layout"] == "mono" and real["transcript"]
    assert real["transcript"] != clip["text"] and real["segments"][0]["text"] == real["transcript"]
    from models.textnorm import cer

    assert cer(clip["text"], real["transcript"]) < 0.6, (clip["text"], real["transcript"])
    assert set(c3) == {"id", "error"} and "not found" in c3["error"]
    assert c1["text_source"] == "message" and c1["channel_layout"] == "text"


def _real_clip(shared_dir: Path) -> dict:
    """A real Mandarin clip (AISHELL) from the shared corpus, without numerals (written either way)."""
    manifest = shared_dir / "realspeech" / "manifest.jsonl"
    assert manifest.is_file(), f"{manifest} missing: the shared real-speech clips are needed"
    records = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    numerals = set("零一二三四五六七八九十百千万两")
    clip = next(r for r in records
                if r["dialect"] == "mandarin" and len(r["text"]) >= 8 and not numerals & set(r["text"]))
    return {"path": manifest.parent / clip["audio"], "text": clip["text"]}


def test_run_manifest_hears_audio_with_the_recogniser_it_is_given(tmp_path, random_intent_model, capsys):
    """The product path: an audio record is understood from what the recogniser heard, never from its reference
    text. A tiny random Whisper stands in for whisper-base (the slow test above runs the real one)."""
    from models.asr.dialects import CT2_SUBDIR
    from models.asr.export import export_ct2
    from models.asr.recognizer import Recognizer, RecognizerOptions
    from test_asr_export import tiny_whisper_folder
    from test_emotion_model import voice
    from training.evaluate import Components, run_manifest

    folder = tiny_whisper_folder(tmp_path / "asr")
    export_ct2(folder, folder / CT2_SUBDIR, quantization="int8")
    asr = Recognizer.load(folder, engine="ct2", device="cpu", options=RecognizerOptions(max_new_tokens=6, cpu_threads=1))
    write_wav(tmp_path / "calls" / "a.wav", voice(180, 1.5, 0.3, syllables_per_s=4), 16000)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in [
        {"id": "a", "audio": "calls/a.wav", "text": "参考文本不该被读到"},
        {"id": "gone", "audio": "calls/gone.wav", "text": "参考文本"},
        {"id": "m", "text": "怎么申请退货"},
    ]) + "\n", encoding="utf-8")
    comps = Components(intent_model=random_intent_model, speech={"asr": asr})
    run = run_manifest(manifest, components=comps)
    assert "recogniser: Recognizer (given by the caller)" in capsys.readouterr().err
    a, gone, m = run.predictions
    assert a["text_source"] == "asr" and a["transcript"] != "参考文本不该被读到"
    from models.catalogue import default_hotwords  # the pipeline prompts with the catalogue's hotwords (issue 15)

    heard = asr.transcribe(load_audio(tmp_path / "calls" / "a.wav"), hotwords=default_hotwords() or ())
    assert a["transcript"] == heard.text
    assert a["channel_layout"] == "mono" and [s["channel"] for s in a["segments"]] == ["mono"]
    assert set(gone) == {"id", "error"} and "not found" in gone["error"]
    assert m["text_source"] == "message" and m["message"] == "怎么申请退货"
