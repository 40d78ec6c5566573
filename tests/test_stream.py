"""Live streams (serving/stream.py) through the entry service's ASGI app (starlette TestClient, the model services
in-process as under ``--development``): a synthetic two-channel angry call streamed faster than real time, the order
and content of its events, the ticket at the end against ``POST /tickets`` of the same WAV, watchers, ``GET /live``,
protocol errors with their close codes, a dropped connection freeing the call, and the alert rules as pure functions.

The call is espeak-ng Mandarin (agent on channel 0, an angry customer on channel 1 who says 12315 and 找你们领导).
Zero-shot whisper-base does not understand espeak's Mandarin (measured: "我要找你们领导" comes back as "我以後見面臨到";
NOTES.md: 75 to 90% CER), so the recogniser of the service's pipeline is replaced here by an oracle that answers the
script's words for the clip a segment matches (cross-correlation), the way ``--recogniser none`` reads reference text.
Both the stream and ``POST /tickets`` then go through the same pipeline object, so the ticket comparison still tests
that both are made by the same code. ``scripts/bench_stream.py`` runs the real whisper-base.
"""

from __future__ import annotations

import gc
import os
import random
import time

import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

RATE = 16000
AGENT_TURNS = ("您好，这里是客服中心，请问有什么可以帮您？", "好的，我帮您查一下物流。")
CUSTOMER_TURNS = ("我的快递一个星期了还没到，订单号是二零二四零五一八零零一，物流一直不更新。",
                  "你们再不处理，我就打12315投诉，我要找你们领导！")


# -- the synthetic call ---------------------------------------------------------------------------------------------
def synth_call(seed: int = 5) -> tuple[np.ndarray, list[tuple[np.ndarray, str]]]:
    """(stereo int16 (2, samples) at 16 kHz, [(clip, words)]): agent and customer take turns with 1 s between."""
    from data.audio import resample
    from data.synth.tts import ESPEAK_SAMPLE_RATE, make_speakers, prosody_for, synthesize

    rng = random.Random(seed)
    spk = make_speakers(4, seed=3)
    agent = next(s for s in spk if s.gender == "female")
    customer = next(s for s in spk if s.gender == "male")
    order = [(0, AGENT_TURNS[0]), (1, CUSTOMER_TURNS[0]), (0, AGENT_TURNS[1]), (1, CUSTOMER_TURNS[1])]
    gap = np.zeros(RATE, dtype=np.float32)
    tracks: list[list[np.ndarray]] = [[gap], [gap]]
    clips = []
    for ch, words in order:
        who = agent if ch == 0 else customer
        a = resample(synthesize(words, "mandarin", who, prosody_for("neutral" if ch == 0 else "angry", who, rng)),
                     ESPEAK_SAMPLE_RATE, RATE).astype(np.float32)
        clips.append((a, words))
        tracks[ch].append(a)
        tracks[1 - ch].append(np.zeros_like(a))
        for t in tracks:
            t.append(gap)
    stereo = np.stack([np.concatenate(t) for t in tracks])
    return (np.clip(stereo, -1, 1) * 32767).astype("<i2"), clips


class OracleRecognizer:
    """The script's words for the part of the clip a segment matches best (cross-correlation: the lag places the
    window in its clip, the score is normalised by the overlapping part); a window shorter than its clip (a partial)
    gets the words of the same share of the clip, so a partial is always a piece of its final's text."""

    def __init__(self, clips: list[tuple[np.ndarray, str]]):
        self.clips = clips

    def _one(self, audio: np.ndarray) -> str:
        from scipy.signal import fftconvolve

        audio = np.asarray(audio, dtype=np.float32)
        best, best_score = None, -1.0
        for clip, words in self.clips:
            if min(len(clip), len(audio)) < 160:
                continue
            corr = np.abs(fftconvolve(audio, clip[::-1], mode="full"))
            k = int(np.argmax(corr))
            off = len(clip) - 1 - k  # the clip sample under audio[0]
            lo, hi = max(0, off), min(len(clip), off + len(audio))
            if hi - lo < 160:
                continue
            score = float(corr[k]) / (np.linalg.norm(clip[lo:hi]) * np.linalg.norm(audio) + 1e-9)
            if score > best_score:
                best, best_score = (clip, words, lo, hi), score
        if best is None or best_score < 0.2:
            return ""
        clip, words, lo, hi = best
        if (hi - lo) / len(clip) > 0.9:
            return words
        a, b = int(len(words) * lo / len(clip)), int(len(words) * hi / len(clip))
        return words[a : max(a + 1, b)]

    def transcribe_batch(self, audios, dialects=None):
        from models.pipeline import Transcription

        return [Transcription(self._one(a), 0.9) for a in audios]

    def transcribe(self, audio, dialect=None):
        return self.transcribe_batch([audio])[0]


# -- the service ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def call():
    pcm, clips = synth_call()
    from serving.stream import wav_bytes

    return {"pcm": pcm, "clips": clips, "wav": wav_bytes(pcm.T.tobytes(), RATE, 2),
            "seconds": pcm.shape[1] / RATE}


@pytest.fixture(scope="module")
def svc(tmp_path_factory, call):
    root = tmp_path_factory.mktemp("stream_svc")
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db", "HOTLINE_ARTIFACT_ROOT": str(root / "artifacts"),
           "HOTLINE_DATABASE_URL": f"sqlite:///{root}/hotline.db", "HF_HUB_OFFLINE": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        from training.intent import main as train_intent

        assert train_intent(["data.n_train=44", "data.n_validation=22", "data.n_test=22", "trainer.max_steps=2",
                             "trainer.progress_bar=false", "model.embed_dim=16", "model.conv_channels=16",
                             "model.hidden=16"]) == 0
        from starlette.testclient import TestClient

        from serving.runtime import Runtime
        from serving.service import Hotline

        from conftest import hotline_asgi_app

        with TestClient(hotline_asgi_app()) as client:
            assert client.get("/readyz").status_code == 200
            import bentoml

            rt = bentoml.get_current_service().runtime  # this app's (an earlier module's Runtime may still be alive)
            assert isinstance(rt, Runtime) and rt._pipeline is not None
            pipe = rt._pipeline
            pipe.asr = OracleRecognizer(call["clips"])
            pipe._asr_batch, pipe._asr_dialect = True, True
            keys = {role: rt.store.create_key(role, f"stream-{role}")[1] for role in ("platform", "agent", "supervisor")}
            yield {"client": client, "rt": rt, "keys": keys}
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def stream(client, pcm: np.ndarray, call_id: str, key: str, chunk_ms: int = 100, caller: str | None = "13812345678",
           stop_after_s: float | None = None) -> tuple[list[dict], int | None]:
    """Stream ``pcm`` (channels, samples) int16 as fast as possible; (events, close code)."""
    from starlette.websockets import WebSocketDisconnect

    events, code = [], None
    n = RATE * chunk_ms // 1000
    frames = pcm.T.tobytes()
    width = 2 * pcm.shape[0]
    with client.websocket_connect("/stream", headers={"Authorization": f"Bearer {key}"}) as ws:
        ws.send_json({"type": "start", "call_id": call_id, "caller": caller, "sample_rate": RATE,
                      "channels": pcm.shape[0], "agent_channel": 0, "customer_channel": 1})
        for i in range(0, len(frames), n * width):
            if stop_after_s is not None and i / width / RATE >= stop_after_s:
                return events, None
            ws.send_bytes(frames[i : i + n * width])
        ws.send_json({"type": "end"})
        try:
            while True:
                events.append(ws.receive_json())
        except WebSocketDisconnect as e:
            code = e.code
    return events, code


COMPARED = ("intent", "is_complaint", "slots", "missing_slots", "priority", "queue", "skill_group", "dialect",
            "caller", "channel", "summary")


def test_angry_call_streams_events_in_order_and_ends_in_the_same_ticket_as_post_tickets(svc, call):
    client, keys = svc["client"], svc["keys"]
    # (how fast it streams is measured by scripts/bench_stream.py, never asserted here: a busy CI box is slower)
    events, code = stream(client, call["pcm"], "live-1", keys["platform"])
    assert code == 1000, events[-3:]
    types = [e["type"] for e in events]
    assert types[0] == "ready" and events[0]["call_id"] == "live-1"
    assert [e["seq"] for e in events] == sorted({e["seq"] for e in events})
    assert "error" not in types, [e for e in events if e["type"] == "error"]
    assert types[-1] == "ticket"

    finals = [e for e in events if e["type"] == "final"]
    assert {f["channel"] for f in finals} == {"agent", "customer"}
    assert [f["text"] for f in finals if f["channel"] == "customer"] == list(CUSTOMER_TURNS)
    # every final of a long segment came after a partial of it (short ones may close before the load-paced cadence
    # asks for one); a partial is a piece of what that channel's speaker said, though not always a prefix of the
    # final: it may hear audio past the point where the VAD later closes the segment, as a real recogniser's
    # partials get revised
    turns = {"agent": AGENT_TURNS, "customer": CUSTOMER_TURNS}
    for f in finals:
        if f["end"] - f["start"] > 3.0:
            assert any(e["type"] == "partial" and e["channel"] == f["channel"] and abs(e["start"] - f["start"]) < 0.05
                       for e in events[: events.index(f)]), f"no partial before {f}"
    partials = [e for e in events if e["type"] == "partial"]
    assert partials and all(any(p["text"] in t for t in turns[p["channel"]]) for p in partials), partials
    assert all(e["t"] <= call["seconds"] + 0.01 for e in events)

    alerts = [e for e in events if e["type"] == "alert"]
    kinds = {a["kind"] for a in alerts}
    assert {"regulator_threat", "manager_request"} <= kinds
    assert all(a["message"] and a["t"] <= call["seconds"] + 0.01 for a in alerts)
    assert types.index("alert") < types.index("ticket")
    assert {e["cue"] for e in events if e["type"] == "cue"} >= {"12315", "找你们领导", "投诉"}

    slots = [e for e in events if e["type"] == "slots"]
    assert slots and slots[-1]["slots"].get("order_id") == "2024051800" + "1"
    intents = [e for e in events if e["type"] == "intent"]
    assert intents and intents[-1]["is_complaint"] is True
    suggestions = [e for e in events if e["type"] == "suggestion"]
    assert suggestions, types
    last = suggestions[-1]
    assert types.index("intent") < events.index(last)
    ids = [a["id"] for a in last["articles"]]
    assert "complaint-escalation-script" in ids  # the cues ask for the escalation script
    from serving.stream import knowledge_base

    kb = knowledge_base(svc["rt"])
    by_id = {a.id: a for a in kb.articles}
    assert any(last["intent"] in by_id[i].intents for i in ids if i in by_id), (last, intents[-1])

    streamed = events[-1]["ticket"]
    assert events[-1]["created"] is True
    assert streamed["caller"] == "138****5678"  # platform keys see masked numbers, as from POST /tickets
    h = {"Authorization": f"Bearer {keys['platform']}"}
    files = {"audio": ("call.wav", call["wav"], "audio/wav")}
    posted = client.post("/tickets", data={"call_id": "posted-1", "caller": "13812345678"}, files=files, headers=h)
    assert posted.status_code == 201, posted.text
    posted = posted.json()
    for field in COMPARED:
        assert streamed[field] == posted[field], field
    assert [(s["channel"], s["text"]) for s in streamed["transcript"]] == [
        (s["channel"], s["text"]) for s in posted["transcript"]]
    assert streamed["emotion"] == posted["emotion"]
    # the same call_id and the same WAV file: 200 with the streamed ticket
    retry = client.post("/tickets", data={"call_id": "live-1", "caller": "13812345678"}, files=files, headers=h)
    assert retry.status_code == 200, retry.text
    assert retry.json()["id"] == streamed["id"]

    # the ticket's suggestions from the knowledge base (agent role)
    r = client.get(f"/assist?ticket={streamed['id']}", headers={"Authorization": f"Bearer {keys['agent']}"})
    assert r.status_code == 200 and r.json()["articles"], r.text


def test_watchers_live_list_and_a_dropped_connection_frees_the_call(svc, call):
    from serving import stream as S

    client, keys = svc["client"], svc["keys"]
    agent = {"Authorization": f"Bearer {keys['agent']}"}
    sup = {"Authorization": f"Bearer {keys['supervisor']}"}
    frames = call["pcm"].T.tobytes()
    n = RATE // 10 * 4
    with client.websocket_connect("/stream", headers={"Authorization": f"Bearer {keys['platform']}"}) as ws:
        ws.send_json({"type": "start", "call_id": "live-drop", "caller": "13812345678", "sample_rate": RATE,
                      "channels": 2})
        assert ws.receive_json()["type"] == "ready"
        for i in range(0, 40 * n, n):  # 4 s of audio
            ws.send_bytes(frames[i : i + n])
        for _ in range(50):
            calls = client.get("/live", headers=agent).json()["calls"]
            if calls and calls[0]["seconds"] >= 4.0:
                break
            time.sleep(0.05)
        assert [c["call_id"] for c in calls] == ["live-drop"]
        assert calls[0]["caller"] == "138****5678"
        assert client.get("/live", headers=sup).json()["calls"][0]["caller"] == "13812345678"
        assert client.get("/live", headers={"Authorization": f"Bearer {keys['platform']}"}).status_code == 403
        with client.websocket_connect(f"/stream/live-drop/watch?key={keys['agent']}") as w:
            first = w.receive_json()
            assert first["type"] == "ready" and first["seq"] == 1  # replayed
        session = S.LIVE["live-drop"]
    # the platform's socket closed without {"type": "end"}: the call is forgotten and its state freed
    for _ in range(100):
        if "live-drop" not in S.LIVE:
            break
        time.sleep(0.05)
    assert "live-drop" not in S.LIVE
    assert client.get("/live", headers=agent).json()["calls"] == []
    assert session.closed and session.spool.closed and not session.audio and not session.connections
    assert all(t.done() for t in session.workers)


@pytest.mark.parametrize("case", ["not_json", "no_call_id", "bad_key", "wrong_role", "rate", "channels",
                                  "oversized", "odd_bytes", "watch_platform"])
def test_protocol_errors_send_an_error_event_and_close_with_a_4xxx_code(svc, case):
    from starlette.websockets import WebSocketDisconnect

    client, keys = svc["client"], svc["keys"]
    start = {"type": "start", "call_id": f"err-{case}", "sample_rate": RATE, "channels": 2}
    key = keys["platform"]
    expect = {"not_json": 4400, "no_call_id": 4400, "bad_key": 4401, "wrong_role": 4403, "rate": 4415,
              "channels": 4415, "oversized": 4413, "odd_bytes": 4400, "watch_platform": 4403}[case]
    if case == "watch_platform":
        url, headers = f"/stream/x/watch?key={key}", {}
    else:
        url, headers = "/stream", {}
    with client.websocket_connect(url, headers=headers) as ws:
        if case == "not_json":
            ws.send_text("hello")
        elif case == "no_call_id":
            ws.send_json({**start, "call_id": "", "key": key})
        elif case == "bad_key":
            ws.send_json({**start, "key": "hl_nope"})
        elif case == "wrong_role":
            ws.send_json({**start, "key": keys["agent"]})
        elif case == "rate":
            ws.send_json({**start, "sample_rate": 44100, "key": key})
        elif case == "channels":
            ws.send_json({**start, "channels": 3, "key": key})
        elif case in ("oversized", "odd_bytes"):
            ws.send_json({**start, "key": key})
            assert ws.receive_json()["type"] == "ready"
            ws.send_bytes(b"\0" * (4 * RATE * 3 // 10) if case == "oversized" else b"\0" * 6)
        event = ws.receive_json()
        assert event["type"] == "error" and event["error"], event
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == expect, (case, event)
    from serving import stream as S

    assert f"err-{case}" not in S.LIVE


# -- pure rules ------------------------------------------------------------------------------------------------------
def test_sustained_anger_alert_as_a_pure_function():
    from serving.stream import StreamConfig, sustained_alerts

    cfg = StreamConfig(sustained_s=8.0, sustained_segments=2, emotion_min_confidence=0.6)
    seq = [{"start": 0, "end": 3, "label": "neutral", "confidence": 0.9},
           {"start": 4, "end": 7, "label": "angry", "confidence": 0.8},
           {"start": 8, "end": 10, "label": "angry", "confidence": 0.5},  # unsure: breaks the run
           {"start": 11, "end": 14, "label": "angry", "confidence": 0.7},
           {"start": 15, "end": 17, "label": "angry", "confidence": 0.9}]
    assert sustained_alerts(seq[:4], cfg) == []  # 11-14 alone, 4-7 broken by the unsure reading
    assert sustained_alerts(seq, cfg) == []  # 11-17: 6 s < 8 s
    seq.append({"start": 18, "end": 20, "label": "angry", "confidence": 0.8})
    alerts = sustained_alerts(seq, cfg)
    assert [(a["kind"], a["start"]) for a in alerts] == [("sustained_anger", 11.0)] and alerts[0]["message"]
    assert sustained_alerts(seq, cfg, already=["sustained_anger"]) == []
    anxious = [{"start": i * 5, "end": i * 5 + 4, "label": "anxious", "confidence": None} for i in range(3)]
    assert [a["kind"] for a in sustained_alerts(anxious, cfg)] == ["sustained_anxiety"]


def test_cue_alerts_and_masking():
    from serving.stream import cue_alerts, mask_event

    got = cue_alerts(["投诉", "12315", "消协", "曝光", "找你们领导"], 3.2)
    assert [a["kind"] for a in got] == ["regulator_threat", "media_threat", "manager_request"]
    assert "12315" in got[0]["message"] and got[0]["start"] == 3.2
    assert cue_alerts(["12315"], 1.0, already=["regulator_threat"]) == []
    e = mask_event({"type": "slots", "slots": {"phone": "13812345678", "order_id": "1"}, "new": ["phone"]})
    assert e["slots"]["phone"] == "138****5678"
    assert mask_event({"type": "final", "text": "电话13812345678"})["text"] == "电话138****5678"


def test_streaming_vad_closes_segments_at_pauses():
    from serving.stream import StreamConfig, StreamingVad

    _, clips = synth_call()
    gap = np.zeros(RATE, dtype=np.float32)
    audio = np.concatenate([gap, clips[1][0], gap, clips[3][0], gap])
    vad = StreamingVad(StreamConfig())
    closed = []
    for i in range(0, len(audio), 1600):
        closed += vad.feed(audio[i : i + 1600])
    closed += vad.flush()
    assert len(closed) >= 2
    first_end = (RATE + len(clips[1][0])) / RATE
    assert abs(closed[0][1] / RATE - 1.0) < 0.4 and closed[0][2] / RATE <= first_end + 0.4


def test_decode_gate_serves_finals_first_customer_first_and_keeps_a_slot_for_finals():
    import asyncio

    from serving.stream import DecodeGate

    async def scenario() -> tuple[list[str], DecodeGate]:
        gate = DecodeGate(slots=2, partial_slots=1)
        order: list[str] = []
        await gate.acquire((1, 0, 0.0), True)  # a partial holds one slot
        await gate.acquire((0, 1, 0.0), False)  # a final the other

        async def want(name: str, priority: tuple, partial: bool) -> None:
            await gate.acquire(priority, partial)
            order.append(name)

        tasks = [asyncio.create_task(want(*w)) for w in (
            ("partial-customer", (1, 0, 1.0), True), ("final-agent", (0, 1, 2.0), False),
            ("final-customer", (0, 0, 3.0), False), ("partial-agent", (1, 1, 0.5), True))]
        cancelled = asyncio.create_task(want("cancelled", (0, 0, 0.0), False))
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.sleep(0)
        gate.release(False)  # the final ends: the customer's final is next, though queued after the agent's
        await asyncio.sleep(0)
        assert order == ["final-customer"]
        gate.release(True)  # the partial ends: the agent's final next, never a partial first
        await asyncio.sleep(0)
        assert order == ["final-customer", "final-agent"]
        gate.release(False)  # both slots could take a partial now, but partials get one at most
        await asyncio.sleep(0)
        assert order == ["final-customer", "final-agent", "partial-customer"] and gate.busy == 2
        gate.release(False)
        gate.release(True)
        await asyncio.sleep(0)
        assert order[-1] == "partial-agent"
        gate.release(True)
        await asyncio.gather(*tasks)
        return order, gate

    order, gate = asyncio.run(scenario())
    assert "cancelled" not in order and gate.busy == 0 and gate.busy_partial == 0 and gate.waiting == 0
