"""End to end through the real service: ``bentoml serve serving.service:Hotline`` in a subprocess (its model services
in their own processes), with a tiny intent champion and tiny but real dialect and emotion champions (heads on the
real whisper-base encoder, trained on merged tiny synthetic corpora) and the pretrained whisper-base recogniser.

A synthetic stereo call (channel 0: a calm Mandarin agent; channel 1: an angry Cantonese customer, espeak-ng ``yue``
with ``prosody_for("angry")``) goes through ``/analyze``, ``/transcribe``, ``/route`` and ``/tickets``: dialect group,
raised priority, ticket fields, retry and a 422 for other audio under the same ``call_id``.

What zero-shot whisper-base hears in espeak Cantonese is not the complaint's words, so the complaint queue is only
asserted where the real output supports it (see ``test_complaint_words_through_the_pretrained_recogniser``).

Starting and stopping the service's whole process tree is serving/devserver.py's ``Service``; the champions and
synthetic calls here are shared with tests/test_service_crash.py.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import numpy as np
import pytest

# the service as a subprocess (Service and service_env are also imported from here by tests/test_service_crash.py)
from serving.devserver import REPO, Service, service_env  # noqa: F401

REQUEST_TIMEOUT_S = 300.0  # one request through the real models (whisper-base on 2 busy cores)

pytestmark = pytest.mark.slow


# -- champions -----------------------------------------------------------------------------------------------------
def _with_tracking(root: Path):
    env = service_env(root, "unused")
    old = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "HOTLINE_ARTIFACT_ROOT")}
    os.environ["MLFLOW_TRACKING_URI"] = env["MLFLOW_TRACKING_URI"]
    os.environ["HOTLINE_ARTIFACT_ROOT"] = env["HOTLINE_ARTIFACT_ROOT"]
    (root / "mlflow").mkdir(parents=True, exist_ok=True)
    return old


def _restore(old: dict) -> None:
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def train_intent_champion(root: Path) -> None:
    """A tiny intent champion (seconds) in ``root``'s MLflow store."""
    from training.intent import main as train_intent

    old = _with_tracking(root)
    try:
        assert train_intent(["data.n_train=44", "data.n_validation=22", "data.n_test=22", "trainer.max_steps=2",
                             "trainer.progress_bar=false", "model.embed_dim=16", "model.conv_channels=16",
                             "model.hidden=16"]) == 0
    finally:
        _restore(old)


def merged_tiny_corpus(out: Path, seeds=(7, 8, 9)) -> Path:
    """Several tiny synthetic corpora (60 utterances each, disjoint speakers per split) as one corpus folder."""
    from data.synth.corpus import synthesize_corpus

    out.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        report = synthesize_corpus(out / f"s{seed}", size="tiny", seed=seed, workers=2, build_dataset=False,
                                   progress=False)
        assert report.utterances > 0, report.table()
    for split in ("train", "validation", "test"):
        lines = []
        for seed in seeds:
            for line in (out / f"s{seed}" / f"{split}.jsonl").read_text(encoding="utf-8").splitlines():
                rec = json.loads(line)
                rec["id"] = f"s{seed}-{rec['id']}"
                rec["speaker"] = f"s{seed}-{rec.get('speaker')}"
                rec["audio"] = f"s{seed}/{rec['audio']}"
                lines.append(json.dumps(rec, ensure_ascii=False))
        (out / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "calls.jsonl").write_text("", encoding="utf-8")
    return out


def train_speech_champions(root: Path, corpus: Path) -> None:
    """Dialect and emotion champions: heads on the real (frozen) whisper-base encoder, about a minute on 2 cores."""
    from training.dialect import main as train_dialect
    from training.emotion import main as train_emotion

    configs = REPO / "training" / "configs"
    old = _with_tracking(root)
    try:
        common = [f"data.corpus_dir={corpus}", "model.layers=[2,4]", "model.max_seconds=4.0", "data.batch_size=16",
                  "threads=2", f"data.cache_dir={root / 'feature_cache'}"]
        assert train_dialect(["--config", str(configs / "dialect.yaml"), "--out", str(root / "dialect"), *common,
                              "trainer.max_epochs=40", "evaluation.realspeech=null"]) == 0
        assert train_emotion(["--config", str(configs / "emotion.yaml"), "--out", str(root / "emotion"), *common,
                              "model.hidden=32", "trainer.max_epochs=40", "evaluation.max_calls=0",
                              "evaluation.ablation=false", "evaluation.weibo_path=null"]) == 0
    finally:
        _restore(old)


# -- synthetic calls -----------------------------------------------------------------------------------------------
AGENT_TURNS = ["您好，顺达商城客服，工号五三七零，请问有什么可以帮您？",
               "非常抱歉给您带来不便，我马上帮您登记投诉。",
               "好的，已经为您加急处理，请您保持电话畅通。"]
CUSTOMER_TURNS = ["我要投诉！你哋嘅快递一个礼拜都未到，搞咩呀！",
                  "订单号二零二四零五一八零零一，你哋成日都係咁，我好嬲呀！",
                  "我要投诉你哋，今日一定要俾个交代我！"]
PHONE_RATE = 8000


def _speaker(seed: int, female: bool):
    from data.synth.tts import make_speakers

    return next(s for s in make_speakers(8, seed) if (s.gender == "female") == female)


def synth_turn(text: str, dialect: str, emotion: str, seed: int, female: bool) -> np.ndarray:
    """One espeak-ng turn at 8 kHz through the telephone channel (float32)."""
    from data.synth.channel import ChannelConfig, telephone_channel
    from data.synth.tts import prosody_for, synthesize

    spk = _speaker(seed, female)
    audio = synthesize(text, dialect, spk, prosody_for(emotion, spk, random.Random(seed)))
    from data.synth.tts import ESPEAK_SAMPLE_RATE

    cfg = ChannelConfig(codec="alaw", snr_db=(30.0, 30.0), noise_kinds=("pink",), noise_weights=(1.0,), packet_loss=0.0)
    phone, _ = telephone_channel(audio, ESPEAK_SAMPLE_RATE, np.random.default_rng(seed), cfg)
    assert phone.size and np.isfinite(phone).all()
    return phone.astype(np.float32)


def stereo_call(agent_turns, customer_turns, *, customer_dialect="cantonese", customer_emotion="angry",
                agent_dialect="mandarin", seed=0, min_seconds: float = 0.0, gap_s: float = 0.5):
    """Alternating turns (agent first) on two channels: (stereo float32 [2, n] at 8 kHz, turns with times).

    Turns are repeated in order until the call is at least ``min_seconds`` long."""
    pieces: list[tuple[str, float, np.ndarray, str]] = []
    t, i = 0.3, 0
    mixed = []
    for k in range(max(len(agent_turns), len(customer_turns))):
        if k < len(agent_turns):
            mixed.append(("agent", agent_turns[k]))
        if k < len(customer_turns):
            mixed.append(("customer", customer_turns[k]))
    cache: dict[tuple[str, str], np.ndarray] = {}
    while True:
        who, text = mixed[i % len(mixed)]
        key = (who, text)
        if key not in cache:
            if who == "agent":
                cache[key] = synth_turn(text, agent_dialect, "neutral", seed + 1, female=True)
            else:
                cache[key] = synth_turn(text, customer_dialect, customer_emotion, seed + 2, female=False)
        audio = cache[key]
        pieces.append((who, t, audio, text))
        t += len(audio) / PHONE_RATE + gap_s
        i += 1
        if i >= len(mixed) and t >= min_seconds:
            break
    n = int((t + 0.3) * PHONE_RATE)
    stereo = np.zeros((2, n), np.float32)
    turns = []
    for who, start, audio, text in pieces:
        ch = 0 if who == "agent" else 1
        a = int(start * PHONE_RATE)
        stereo[ch, a:a + len(audio)] += audio
        turns.append({"speaker": who, "start": round(start, 2), "end": round(start + len(audio) / PHONE_RATE, 2),
                      "text": text})
    return np.clip(stereo, -1.0, 1.0), turns


def wav_bytes(audio: np.ndarray, rate: int = PHONE_RATE) -> bytes:
    """16-bit PCM WAV bytes of (samples,) or (channels, samples) float audio at ``rate`` Hz."""
    from data.audio import wav_bytes as encode

    return encode(audio, rate)


# -- the module's service ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    """Champions trained into a temporary MLflow store, a SQLite database, keys, and the real service started on
    them; the whole process group is stopped at the end (and on failure)."""
    root = tmp_path_factory.mktemp("e2e")
    t0 = time.monotonic()
    train_intent_champion(root)
    corpus = merged_tiny_corpus(root / "corpus")
    train_speech_champions(root, corpus)
    trained_s = time.monotonic() - t0
    db = f"sqlite:///{root / 'hotline.db'}"
    from serving.store import Store

    store = Store(db)
    store.upgrade()
    _, platform = store.create_key("platform", "e2e")
    _, supervisor = store.create_key("supervisor", "e2e-supervisor")
    store.close()
    svc = Service(service_env(root, db), root / "service.log").start()
    try:
        t1 = time.monotonic()
        ready = svc.wait_ready()
        yield {"svc": svc, "url": svc.url, "ready": ready, "root": root, "db": db, "trained_s": trained_s,
               "ready_s": time.monotonic() - t1, "platform": {"Authorization": f"Bearer {platform}"},
               "supervisor": {"Authorization": f"Bearer {supervisor}"}, "platform_key": platform}
    finally:
        svc.stop()


@pytest.fixture(scope="module")
def angry_cantonese_call():
    stereo, turns = stereo_call(AGENT_TURNS, CUSTOMER_TURNS, seed=11)
    other, _ = stereo_call(AGENT_TURNS[:2], CUSTOMER_TURNS[1:], seed=23)
    return {"wav": wav_bytes(stereo), "other_wav": wav_bytes(other), "turns": turns,
            "customer_wav": wav_bytes(stereo[1]), "seconds": stereo.shape[1] / PHONE_RATE}


def _post(url, path, headers, data=None, files=None, timeout=REQUEST_TIMEOUT_S):
    import httpx

    return httpx.post(f"{url}{path}", headers=headers, data=data, files=files, timeout=timeout)


def _why(e2e, r) -> str:
    """A failed request's answer and the service log's last lines (what the service said about it)."""
    return f"{r.status_code} {r.text}\n--- service log (last lines) ---\n{e2e['svc'].tail()}"


def _report(request, name: str, value) -> None:
    """Numbers of the real path, printed (pytest -s) and kept in the test report's user properties."""
    request.node.user_properties.append((name, value))
    print(f"[e2e] {name}: {json.dumps(value, ensure_ascii=False)[:2000]}")


# -- tests ---------------------------------------------------------------------------------------------------------
def _policy():
    from models.decisions import load_policy

    return load_policy()


def _assert_priority_follows_emotion(emotion: str | None, priority: str, reasons: list[str]) -> None:
    """The emotion reading is applied as the policy says: a raising emotion fires its rule, any other fires none."""
    policy = _policy()
    fired = [r for r in reasons if r.startswith("emotion ")]
    if emotion in policy.priority.emotion_raise:
        _assert_raised_by_emotion(emotion, priority, reasons)
    else:
        assert not fired, (emotion, reasons)


def _assert_raised_by_emotion(emotion: str | None, priority: str, reasons: list[str]) -> None:
    """The emotion raised the priority (a policy rule fired for it) and the result is more urgent than the intent's
    rule and the complaint floor alone (the starting priority is the first reason's)."""
    policy = _policy()
    assert emotion in policy.priority.emotion_raise, (emotion, dict(policy.priority.emotion_raise))
    fired = [r for r in reasons if r.startswith(f"emotion {emotion}: +")]
    assert fired, reasons
    raised_to = fired[0].rsplit("-> ", 1)[1]
    assert priority == raised_to or any(r.startswith(("escalation cue", "VIP", "repeat")) for r in reasons), reasons


def test_readyz_reports_every_model(e2e, request):
    ready = e2e["ready"]
    _report(request, "readyz", ready)
    _report(request, "seconds", {"train": round(e2e["trained_s"], 1), "ready": round(e2e["ready_s"], 1)})
    assert ready["ready"] is True and ready["absent"] == [] and ready["database"] == "ok"
    models = ready["models"]
    assert models["asr"]["version"] == "whisper-base (pretrained)"  # no asr champion: the pretrained recogniser
    for name in ("intent", "dialect", "emotion"):
        assert models[name]["version"] == "1" and models[name]["run_id"], (name, models[name])


def test_analyze_customer_channel_is_cantonese(e2e, angry_cantonese_call, request):
    """Dialect ID (a head on the real whisper-base encoder) tells espeak Cantonese; the emotion head reads each of the
    customer's turns (which label: see test_angry_prosody_raises_the_priority)."""
    r = _post(e2e["url"], "/analyze", e2e["platform"],
              files={"audio": ("customer.wav", angry_cantonese_call["customer_wav"], "audio/wav")})
    assert r.status_code == 200, _why(e2e, r)
    body = r.json()
    _report(request, "analyze", body)
    assert body["dialect"] == "cantonese" and body["dialect_confidence"] >= 0.6, body
    assert body["absent_models"] == []
    labels = [s["label"] for s in body["emotion_trajectory"]]
    assert len(labels) == len(CUSTOMER_TURNS), body["emotion_trajectory"]  # one reading per customer turn
    assert set(labels) <= set(_policy().taxonomy.emotions) and body["emotion"] in labels, labels


def test_route_first_utterance(e2e, request):
    """The caller's first utterance (Cantonese, angry) in the IVR: the Cantonese group, priority raised by the
    emotion reading of the real emotion head."""
    first = synth_turn(CUSTOMER_TURNS[0], "cantonese", "angry", 13, female=False)
    r = _post(e2e["url"], "/route", e2e["platform"], data={"caller": "13812345678"},
              files={"audio": ("first.wav", wav_bytes(first), "audio/wav")})
    assert r.status_code == 200, _why(e2e, r)
    body = r.json()
    _report(request, "route", body)
    assert body["dialect"] == "cantonese" and body["route"]["dialect_group"] == "cantonese"
    assert body["transcript"]  # what the pretrained whisper-base heard (never a reference text)
    assert body["emotion"] is not None  # the emotion model is in the path
    _assert_priority_follows_emotion(body["emotion"], body["route"]["priority"], body["route"]["reasons"])
    assert "dialect cantonese: cantonese agents" in body["route"]["reasons"]


@pytest.fixture(scope="module")
def created(e2e, angry_cantonese_call):
    r = _post(e2e["url"], "/tickets", e2e["platform"], data={"call_id": "e2e-call-1", "caller": "13812345678"},
              files={"audio": ("call.wav", angry_cantonese_call["wav"], "audio/wav")})
    return r


def test_ticket_from_the_stereo_call(e2e, angry_cantonese_call, created, request):
    assert created.status_code == 201, _why(e2e, created)
    t = created.json()
    _report(request, "ticket", t)
    assert t["call_id"] == "e2e-call-1" and t["status"] == "open" and t["caller"] == "138****5678"
    # dialect of the customer channel and its group
    assert t["dialect"] == "cantonese" and t["dialect_group"] == "cantonese"
    # the transcript: segments of both channels, labelled and timed where the turns were placed
    segs = t["transcript"]
    assert {s["channel"] for s in segs} == {"agent", "customer"}
    for s in segs:
        assert 0 <= s["start"] < s["end"] <= angry_cantonese_call["seconds"] + 0.5, s
        placed = [u for u in angry_cantonese_call["turns"] if u["speaker"] == s["channel"]
                  and u["start"] - 0.5 <= s["start"] and s["end"] <= u["end"] + 0.5]
        assert placed, (s, angry_cantonese_call["turns"])
    assert [s["start"] for s in segs] == sorted(s["start"] for s in segs)
    assert sum(s["channel"] == "customer" for s in segs) == len(CUSTOMER_TURNS)
    # emotion: one reading per customer segment, the peak raises the priority
    traj = t["emotion"]["trajectory"]
    customer = [s for s in segs if s["channel"] == "customer"]
    assert [(x["start"], x["end"]) for x in traj] == [(s["start"], s["end"]) for s in customer]
    assert all(0.0 <= x["confidence"] <= 1.0 for x in traj)
    assert t["emotion"]["peak"] in {x["label"] for x in traj}, traj
    _assert_priority_follows_emotion(t["emotion"]["peak"], t["priority"], t["route_reasons"])
    # routing is what the policy makes of the understanding (queue of the intent; complaint queue for a complaint)
    policy = _policy()
    expected_queue = policy.complaint_queue if t["is_complaint"] else policy.rule(t["intent"]).queue
    assert t["queue"] == expected_queue and t["skill_group"] == policy.rule(t["intent"]).skill
    # model versions of every model in the path
    mv = t["model_versions"]
    assert mv["asr"]["version"] == "whisper-base (pretrained)"
    assert {k: mv[k]["version"] for k in ("intent", "dialect", "emotion")} == {"intent": "1", "dialect": "1",
                                                                              "emotion": "1"}
    assert t["absent_models"] == [] and t["sla"]["due_at"] and t["policy_version"]


def test_retry_returns_the_same_ticket(e2e, angry_cantonese_call, created):
    assert created.status_code == 201, _why(e2e, created)
    r = _post(e2e["url"], "/tickets", e2e["platform"], data={"call_id": "e2e-call-1", "caller": "13812345678"},
              files={"audio": ("call.wav", angry_cantonese_call["wav"], "audio/wav")})
    assert r.status_code == 200, _why(e2e, r)
    assert r.json()["id"] == created.json()["id"]
    assert r.json()["transcript"] == created.json()["transcript"]


def test_same_call_id_other_audio_is_422(e2e, angry_cantonese_call, created):
    assert created.status_code == 201, _why(e2e, created)
    r = _post(e2e["url"], "/tickets", e2e["platform"], data={"call_id": "e2e-call-1", "caller": "13812345678"},
              files={"audio": ("other.wav", angry_cantonese_call["other_wav"], "audio/wav")})
    assert r.status_code == 422, _why(e2e, r)
    assert created.json()["id"] in r.json()["error"]
    from serving.store import Store

    store = Store(e2e["db"])
    try:
        items, _ = store.list_tickets(limit=50)
    finally:
        store.close()
    assert [x.call_id for x in items].count("e2e-call-1") == 1


@pytest.mark.xfail(strict=False, reason=(
    "the tiny emotion head (trained in this module on ~120 synthetic utterances, not deterministic from run to run) "
    "reads espeak's angry prosody as angry or anxious in some runs and as happy in others (espeak's angry and happy "
    "profiles differ little after peak normalisation); happy raises no priority"))
def test_angry_prosody_raises_the_priority(e2e, created, request):
    t = created.json()
    first = synth_turn(CUSTOMER_TURNS[0], "cantonese", "angry", 13, female=False)
    r = _post(e2e["url"], "/route", e2e["platform"], files={"audio": ("first.wav", wav_bytes(first), "audio/wav")})
    assert r.status_code == 200, _why(e2e, r)
    route = r.json()
    _report(request, "emotion_readings", {"ticket_peak": t["emotion"]["peak"], "ticket_priority": t["priority"],
                                          "route_emotion": route["emotion"], "route_priority": route["route"]["priority"]})
    _assert_raised_by_emotion(t["emotion"]["peak"], t["priority"], t["route_reasons"])
    _assert_raised_by_emotion(route["emotion"], route["route"]["priority"], route["route"]["reasons"])


@pytest.mark.xfail(strict=True, reason=(
    "zero-shot whisper-base does not transcribe espeak-ng Cantonese (it loops on phrases like 你也不想要求), so the "
    "complaint is not read from the customer's words (我要投诉): the queue comes from the intent model's guess on "
    "wrong text. Passes once a recogniser (an `asr` champion) hears espeak Cantonese."))
def test_complaint_read_from_the_words(e2e, created, request):
    t = created.json()
    heard = " / ".join(s["text"] for s in t["transcript"] if s["channel"] == "customer")
    _report(request, "customer_transcript", {"heard": heard, "said": CUSTOMER_TURNS, "intent": t["intent"],
                                             "intent_confidence": t.get("intent_confidence"),
                                             "is_complaint": t["is_complaint"], "evidence": t.get("evidence")})
    assert "投诉" in heard or "投訴" in heard, heard
    assert t["queue"] == "complaint" and any("投诉" in e or "complaint" in e for e in t.get("evidence", [])), t


def test_bench_script_smoke(e2e, tmp_path):
    """scripts/bench_service.py keeps working (tiny sizes, against the running service)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_service", REPO / "scripts" / "bench_service.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    assert bench.main(["--smoke", "--url", e2e["url"], "--key", e2e["platform_key"], "--out", str(out)]) == 0
    res = json.loads(out.read_text(encoding="utf-8"))
    assert [r["status"] for r in res["tickets"]] == [201]
    assert [r["concurrency"] for r in res["route"]] == [1, 2] and all(r["p50_s"] > 0 for r in res["route"])
    assert res["machine"]["cpu_count"] and len(res["load_before"]) == 3
    assert res["models"]["asr"]["version"] == "whisper-base (pretrained)"
