"""Calls through the one pipeline (models/pipeline.py): per-channel segments (agent / customer), per-segment
recognition and emotion, understanding of the customer's words only, the async entry point, mono utterances as
before, and failing records. Components are tiny real models with random weights: a Whisper recogniser
(CTranslate2), the emotion model, the dialect-ID head on a tiny Whisper encoder, the character intent model."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

import ctranslate2  # noqa: E402,F401 - required (pyproject): a broken install fails, never skips
import faster_whisper  # noqa: E402,F401

from data.audio import SAMPLE_RATE, load_audio, write_wav  # noqa: E402
from models.asr.recognizer import Recognizer, RecognizerOptions, join_texts  # noqa: E402
from models.pipeline import AROUSAL_ORDER, Pipeline, emotion_peak  # noqa: E402
from models.taxonomy import DIALECTS, EMOTIONS  # noqa: E402
from test_emotion_model import tiny_whisper, voice  # noqa: E402  (tests/ is on sys.path)

SENTENCES = ["我要投诉，快递一直没到", "谢谢你们的服务", "怎么申请退货", "订单号20240518001", "电话13800123456"]
# (channel, start s, seconds, f0 Hz): two agent and two customer turns of a 9 s call, of different lengths
TURNS = [(0, 0.5, 1.5, 130.0), (1, 2.5, 1.2, 220.0), (0, 5.0, 1.8, 140.0), (1, 7.0, 1.6, 230.0)]
CALL_SECONDS = 9.0
TOLERANCE = 0.45  # s: VAD pads and trims segment edges by up to ~0.2 s each side


# -- components --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def recogniser(tmp_path_factory):
    """A tiny random Whisper exported to CTranslate2, behind the product's Recognizer."""
    from models.asr.dialects import CT2_SUBDIR
    from models.asr.export import export_ct2
    from test_asr_export import tiny_whisper_folder

    folder = tiny_whisper_folder(tmp_path_factory.mktemp("asr") / "model")
    export_ct2(folder, folder / CT2_SUBDIR, quantization="int8")
    return Recognizer.load(folder, engine="ct2", device="cpu",
                           options=RecognizerOptions(max_new_tokens=6, cpu_threads=1, batch_size=8))


@pytest.fixture(scope="module")
def emotion():
    """The emotion model (prosodic features + MLP head, random weights) as the pipeline's fused classifier."""
    import torch

    from models.emotion.fused import FusedEmotion
    from models.emotion.model import EmotionModel, EmotionModelConfig

    torch.manual_seed(0)
    return FusedEmotion(EmotionModel.create(EmotionModelConfig(use_encoder=False, hidden=8), EMOTIONS), None)


@pytest.fixture(scope="module")
def dialect(tmp_path_factory):
    """The dialect-ID head (random weights) on a tiny random Whisper encoder, as the champion loader wraps it."""
    import torch

    from models.asr.dialect_id import DialectIdConfig, DialectIdModel
    from models.champions import DialectComponent

    torch.manual_seed(0)
    encoder = tiny_whisper(tmp_path_factory.mktemp("dialect") / "whisper")
    model = DialectIdModel.create(DialectIdConfig(encoder=str(encoder), layers=(1, 2), max_seconds=4.0), DIALECTS)
    return DialectComponent(model, 0.6)


@pytest.fixture(scope="module")
def intent_model():
    """A tiny untrained character intent model (random weights): real code, arbitrary answers."""
    import torch

    from models.intent.charmodel import CharIntentModel, CharModelConfig
    from models.intent.understand import LabelMaps

    torch.manual_seed(0)
    return CharIntentModel.create(SENTENCES, LabelMaps.from_taxonomy(), CharModelConfig(embed_dim=8, conv_channels=8, hidden=8))


class RecordingIntent:
    """The intent model, remembering every batch of texts it was given."""

    def __init__(self, model):
        self.model, self.seen = model, []

    def predict(self, texts):
        self.seen.append(list(texts))
        return self.model.predict(texts)


class RecordingRecogniser:
    """The recogniser, remembering each batch call: the segment lengths and dialects it was given."""

    def __init__(self, rec):
        self.rec, self.calls = rec, []

    def transcribe_batch(self, audios, dialects):
        self.calls.append(([len(a) for a in audios], list(dialects)))
        return self.rec.transcribe_batch(audios, dialects)


class LengthRecogniser:
    """A plumbing recogniser whose "text" is the length of the segment it was given (in ms): segments of different
    lengths get different words, so which segments reach understanding can be told from the text."""

    def transcribe(self, audio):
        assert audio.ndim == 1 and audio.dtype == np.float32
        return f"seg{round(len(audio) / SAMPLE_RATE * 1000)}ms"


# async adapters, as the service plugs in for remote model services
class AsyncRecogniser:
    def __init__(self, rec):
        self.rec = rec

    async def transcribe_batch(self, audios, dialects, hotwords=()):  # as the service's adapter: hotwords pass on
        await asyncio.sleep(0)
        return self.rec.transcribe_batch(audios, dialects, hotwords)


class AsyncClassifier:
    def __init__(self, inner):
        self.inner = inner
        self.min_confidence = getattr(inner, "min_confidence", 0.0)

    async def classify(self, audio, text=None, caller=None):
        await asyncio.sleep(0)
        if text is None and caller is None:
            return self.inner.classify(audio)
        return self.inner.classify(audio, text=text, caller=caller)


class AsyncIntent:
    def __init__(self, model):
        self.model = model

    async def predict(self, texts):
        await asyncio.sleep(0)
        return self.model.predict(texts)


def vip_lookup(caller):
    return {"vip": True} if caller == "13800138000" else None


async def async_vip_lookup(caller):
    await asyncio.sleep(0)
    return vip_lookup(caller)


# -- audio ---------------------------------------------------------------------------------------
def stereo_call(silent_agent: bool = False) -> np.ndarray:
    """(2, samples): agent on channel 0, customer on channel 1, syllable-modulated voices at TURNS."""
    call = np.zeros((2, int(CALL_SECONDS * SAMPLE_RATE)), dtype=np.float32)
    for k, (ch, start, seconds, f0) in enumerate(TURNS):
        if ch == 0 and silent_agent:
            continue
        v = voice(f0, seconds, 0.3, syllables_per_s=4, seed=k)
        i = int(start * SAMPLE_RATE)
        call[ch, i : i + len(v)] = v
    return call


def turns(channel: int) -> list[tuple[float, float]]:
    return [(start, start + seconds) for ch, start, seconds, _ in TURNS if ch == channel]


@pytest.fixture(scope="module")
def call_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("calls") / "call.wav"
    write_wav(path, stereo_call(), SAMPLE_RATE)
    return path


def _close(spans, truth):
    return len(spans) == len(truth) and all(abs(a - s) < TOLERANCE and abs(b - e) < TOLERANCE
                                            for (a, b), (s, e) in zip(spans, truth))


# -- tests ----------------------------------------------------------------------------------------
def test_stereo_call_is_processed_per_channel(call_path, recogniser, emotion, dialect, intent_model):
    asr, nlu = RecordingRecogniser(recogniser), RecordingIntent(intent_model)
    pipe = Pipeline(intent_model=nlu, asr=asr, emotion=emotion, dialect=dialect)
    out = pipe.process({"id": "call1", "audio_path": str(call_path), "caller": "13900139000"})
    assert "error" not in out, out
    assert out["channel_layout"] == "stereo" and out["message"] is None and out["text_source"] == "asr"
    segs = out["segments"]
    assert [s["channel"] for s in segs] == ["agent", "customer", "agent", "customer"]
    assert [s["start"] for s in segs] == sorted(s["start"] for s in segs)
    agent = [(s["start"], s["end"]) for s in segs if s["channel"] == "agent"]
    customer = [(s["start"], s["end"]) for s in segs if s["channel"] == "customer"]
    assert _close(agent, turns(0)), agent
    assert _close(customer, turns(1)), customer
    # one recognition call for all four segments, the customer's dialect decision for all of them
    assert len(asr.calls) == 1 and len(asr.calls[0][0]) == 4 and len(set(asr.calls[0][1])) == 1
    sure = out["dialect_confidence"] >= dialect.min_confidence
    assert asr.calls[0][1][0] == (out["dialect"] if sure else None)
    assert out["dialect"] in DIALECTS
    # understanding read the customer's words only, joined in time order
    assert nlu.seen == [[out["transcript"]]]
    assert out["transcript"] == join_texts(s["text"] for s in segs if s["channel"] == "customer")
    # one emotion point per customer segment; agent segments carry none
    traj = out["emotion_trajectory"]
    assert [(p["start"], p["end"]) for p in traj] == customer
    assert all(p["label"] in EMOTIONS and 0.0 <= p["confidence"] <= 1.0 for p in traj)
    assert [(s["emotion"], s["emotion_confidence"]) for s in segs if s["channel"] == "customer"] == \
        [(p["label"], p["confidence"]) for p in traj]
    assert all(s["emotion"] is None and s["emotion_confidence"] is None for s in segs if s["channel"] == "agent")
    peak = emotion_peak(traj, pipe.policy.review.min_emotion_confidence)
    assert (out["emotion_peak"], out["emotion_confidence"]) == peak and out["emotion"] == peak[0]
    assert out["intent"] is not None and out["priority"] in ("P1", "P2", "P3", "P4")
    json.dumps(out, ensure_ascii=False)


def test_ticket_schema_reads_the_call_prediction(call_path, recogniser, emotion, dialect, intent_model):
    from models.ticket import build_ticket

    pipe = Pipeline(intent_model=intent_model, asr=recogniser, emotion=emotion, dialect=dialect)
    out = pipe.process({"id": "t1", "audio_path": str(call_path), "caller": "13900139000"})
    ticket = build_ticket(out, ticket_id="T1", call_id="t1", caller="13900139000", policy=pipe.policy)
    assert [s.channel for s in ticket.transcript] == [s["channel"] for s in out["segments"]]
    assert len(ticket.emotion.trajectory) == 2 and ticket.emotion.peak == out["emotion_peak"]


def test_understanding_reads_only_the_customer_channel(call_path, intent_model):
    nlu = RecordingIntent(intent_model)
    pipe = Pipeline(intent_model=nlu, asr=LengthRecogniser())
    out = pipe.process({"id": "c", "audio_path": str(call_path)})
    agent_words = [s["text"] for s in out["segments"] if s["channel"] == "agent"]
    customer_words = [s["text"] for s in out["segments"] if s["channel"] == "customer"]
    assert len(agent_words) == 2 and len(customer_words) == 2
    assert set(agent_words).isdisjoint(customer_words)  # different lengths, different words
    (texts,) = nlu.seen
    assert texts == [" ".join(customer_words)] and out["transcript"] == texts[0]
    assert not any(w in texts[0] for w in agent_words)
    # channels swapped by the record: the other side is understood
    nlu.seen.clear()
    swapped = pipe.process({"id": "s", "audio_path": str(call_path), "agent_channel": 1, "customer_channel": 0})
    assert [s["channel"] for s in swapped["segments"]] == ["customer", "agent", "customer", "agent"]
    assert nlu.seen == [[" ".join(agent_words)]]
    bad = pipe.process({"id": "b", "audio_path": str(call_path), "customer_channel": 2})
    assert set(bad) == {"id", "error"} and "customer_channel=2" in bad["error"]


def test_aprocess_with_async_components_equals_process(call_path, recogniser, emotion, dialect, intent_model):
    record = {"id": "a1", "audio_path": str(call_path), "caller": "13800138000"}
    sync = Pipeline(intent_model=intent_model, asr=recogniser, emotion=emotion, dialect=dialect,
                    customer_lookup=vip_lookup)
    expected = sync.process(record)
    assert "error" not in expected
    assert any("VIP" in r for r in expected["route_reasons"])  # the caller's profile reached the routing
    apipe = Pipeline(intent_model=AsyncIntent(intent_model), asr=AsyncRecogniser(recogniser),
                     emotion=AsyncClassifier(emotion), dialect=AsyncClassifier(dialect),
                     customer_lookup=async_vip_lookup)
    assert asyncio.run(apipe.aprocess(record)) == expected
    assert apipe.process(record) == expected  # the sync entry point awaits async components too

    async def with_ticker(pipe):
        ticks = 0
        done = asyncio.Event()

        async def tick():
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.001)

        ticker = asyncio.create_task(tick())
        try:
            return await pipe.aprocess(record), ticks
        finally:
            done.set()
            await ticker

    got, ticks = asyncio.run(with_ticker(sync))  # synchronous components: run off the event loop
    assert got == expected
    assert ticks > 10  # the loop kept running while models worked


def test_process_many_inside_a_running_event_loop(call_path, intent_model):
    pipe = Pipeline(intent_model=intent_model, asr=LengthRecogniser())

    async def inside():
        return pipe.process_many([{"id": "x", "audio_path": str(call_path)}], progress=False)

    (out,) = asyncio.run(inside())  # a notebook cell or an async server: asyncio.run cannot nest
    assert out["channel_layout"] == "stereo" and len(out["segments"]) == 4


def test_mono_short_utterance_is_read_whole_as_before(tmp_path, recogniser, emotion, dialect, intent_model):
    utterance = np.concatenate([np.zeros(4000, np.float32), voice(200, 2.0, 0.3, syllables_per_s=4, seed=3),
                                np.zeros(4000, np.float32)])
    path = tmp_path / "utt.wav"
    write_wav(path, utterance, SAMPLE_RATE)
    pipe = Pipeline(intent_model=intent_model, asr=recogniser, emotion=emotion, dialect=dialect)
    out = pipe.process({"id": "u", "audio_path": str(path)})
    # what the pipeline computed before calls were split: everything over the whole utterance
    audio = load_audio(path)
    d = dialect.classify(audio)
    prompt = d.dialect if d.confidence >= dialect.min_confidence else None
    text = recogniser.transcribe(audio, dialect=prompt, hotwords=pipe.catalogue_hotwords or ()).text  # the catalogue's
    e = emotion.classify(audio, text=text)
    assert out["channel_layout"] == "mono"
    assert (out["dialect"], out["dialect_confidence"]) == (d.dialect, d.confidence)
    assert out["transcript"] == text and out["text_source"] == "asr"
    assert (out["emotion"], out["emotion_confidence"]) == (e.emotion, e.confidence) == \
        (out["emotion_peak"], e.confidence)
    duration = round(len(audio) / SAMPLE_RATE, 3)
    assert out["segments"] == [{"channel": "mono", "start": 0.0, "end": duration, "text": text,
                                "emotion": e.emotion, "emotion_confidence": e.confidence}]
    assert out["emotion_trajectory"] == [{"start": 0.0, "end": duration, "label": e.emotion,
                                          "confidence": e.confidence}]
    # a mono recording saved as two identical channels is still mono
    dual = tmp_path / "dual.wav"
    write_wav(dual, np.stack([utterance, utterance]), SAMPLE_RATE)
    again = pipe.process({"id": "u", "audio_path": str(dual)})
    assert again["channel_layout"] == "mono" and again["segments"] == out["segments"]


def test_long_mono_recording_is_cut_by_vad(intent_model, emotion):
    gap = np.zeros(int(1.5 * SAMPLE_RATE), np.float32)
    pieces, truth, t = [gap], [], 1.5
    for k in range(12):  # 12 turns of 1-2 s with 1.5 s pauses: 36-42 s, over the one-utterance limit
        v = voice(130 + 10 * k, 1.0 + (k % 3) * 0.5, 0.3, syllables_per_s=4, seed=k)
        pieces += [v, gap]
        truth.append((t, t + len(v) / SAMPLE_RATE))
        t += len(v) / SAMPLE_RATE + 1.5
    long_call = np.concatenate(pieces)
    pipe = Pipeline(intent_model=intent_model, asr=LengthRecogniser(), emotion=emotion)
    out = pipe.process({"id": "m", "audio": long_call})
    assert out["channel_layout"] == "mono"
    segs = out["segments"]
    assert len(segs) >= 8 and all(s["channel"] == "mono" for s in segs)  # VAD may miss a synthetic turn or two
    assert all(any(_close([(s["start"], s["end"])], [turn]) for turn in truth) for s in segs)
    assert [(p["start"], p["end"]) for p in out["emotion_trajectory"]] == [(s["start"], s["end"]) for s in segs]
    assert out["transcript"] == " ".join(s["text"] for s in out["segments"])


def test_stereo_call_with_a_silent_agent_channel(tmp_path, recogniser, emotion, dialect, intent_model):
    path = tmp_path / "quiet_agent.wav"
    write_wav(path, stereo_call(silent_agent=True), SAMPLE_RATE)
    pipe = Pipeline(intent_model=intent_model, asr=recogniser, emotion=emotion, dialect=dialect)
    out = pipe.process({"id": "q", "audio_path": str(path)})
    assert "error" not in out, out
    assert out["channel_layout"] == "stereo"
    assert [s["channel"] for s in out["segments"]] == ["customer", "customer"]
    assert _close([(s["start"], s["end"]) for s in out["segments"]], turns(1))
    assert len(out["emotion_trajectory"]) == 2 and out["dialect"] in DIALECTS


def test_bytes_and_array_records_give_what_the_file_gives(call_path, intent_model, emotion):
    pipe = Pipeline(intent_model=intent_model, asr=LengthRecogniser(), emotion=emotion)
    from_file = pipe.process({"id": "f", "audio_path": str(call_path)})
    from_bytes = pipe.process({"id": "f", "audio_bytes": call_path.read_bytes()})
    from_array = pipe.process({"id": "f", "audio": load_audio(call_path, mono=False)})
    assert from_bytes == from_file and from_array["segments"] == from_file["segments"]
    at_8k = pipe.process({"id": "f", "audio": stereo_call()[:, ::2], "sample_rate": 8000})  # resampled to 16 kHz
    assert at_8k["channel_layout"] == "stereo" and len(at_8k["segments"]) >= 3
    for s in at_8k["segments"]:  # times are seconds of the call whatever its rate
        assert any(_close([(s["start"], s["end"])], [turn]) for turn in turns(0 if s["channel"] == "agent" else 1))


def test_a_corrupt_record_fails_alone(tmp_path, call_path, intent_model, emotion):
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\x00\x00not really a wave file" * 10)
    records = [
        {"id": "ok", "audio_path": str(call_path)},
        {"id": "junk", "audio_path": str(junk)},
        {"id": "upload", "audio_bytes": b"\x00\x01garbage"},
        {"id": "silent", "audio": np.zeros((2, SAMPLE_RATE), np.float32)},
        {"id": "chat", "text": "我要投诉，快递一直没到"},
    ]
    pipe = Pipeline(intent_model=intent_model, asr=LengthRecogniser(), emotion=emotion)
    ok, bad, upload, silent, chat = pipe.process_many(records, progress=False)
    assert ok["channel_layout"] == "stereo" and len(ok["segments"]) == 4
    assert set(bad) == {"id", "error"} and bad["id"] == "junk" and "junk.wav" in bad["error"]
    assert set(upload) == {"id", "error"} and "upload" in upload["error"]
    assert set(silent) == {"id", "error"} and "silent" in silent["error"]
    assert chat["channel_layout"] == "text" and chat["message"] == records[-1]["text"]
    assert chat["segments"] == [] and chat["emotion_trajectory"] == [] and chat["emotion_peak"] is None
    assert chat["text_source"] == "message" and chat["transcript"] is None
    failed = asyncio.run(pipe.aprocess(records[2]))
    assert set(failed) == {"id", "error"} and "not a readable audio file" in failed["error"]


class BrokenClassifier:
    """An emotion model whose service is gone: every call raises (a connection error of a remote model)."""

    def classify(self, audio, text=None, caller=None):
        raise ConnectionResetError("the emotion service closed the connection")


def test_a_failing_model_is_named_in_the_error(call_path, intent_model):
    """A model that fails gives the record an error naming the model, its error type and message; the service's
    500 names the model and the type only (no caller data)."""
    from serving.runtime import PipelineFailed

    pipe = Pipeline(intent_model=intent_model, asr=LengthRecogniser(), emotion=BrokenClassifier())
    out = pipe.process({"id": "c", "audio_path": str(call_path)})
    assert set(out) == {"id", "error"}
    assert out["error"] == "emotion model: ConnectionResetError: the emotion service closed the connection"
    failed = PipelineFailed(out["error"])
    assert (failed.stage, failed.kind, failed.public) == ("emotion model", "ConnectionResetError",
                                                          "emotion model: ConnectionResetError")
    audio = PipelineFailed("AudioError: upload: empty upload (0 bytes)")
    assert (audio.stage, audio.kind) == (None, "AudioError")


def test_emotion_peak_prefers_arousal_read_with_confidence():
    point = lambda label, conf: {"start": 0.0, "end": 1.0, "label": label, "confidence": conf}  # noqa: E731
    traj = [point("neutral", 0.95), point("angry", 0.4), point("anxious", 0.7), point("anxious", 0.8)]
    assert emotion_peak(traj, 0.6) == ("anxious", 0.8)  # angry was not read surely enough
    assert emotion_peak(traj, 0.3) == ("angry", 0.4)
    assert emotion_peak([point("sad", 0.3), point("happy", 0.5)], 0.6) == ("happy", 0.5)  # none sure: most confident
    assert emotion_peak([], 0.6) == (None, None)
    assert AROUSAL_ORDER[0] == "angry" and set(AROUSAL_ORDER) == set(EMOTIONS)


def test_an_unsure_dialect_routes_to_the_default_group(call_path, recogniser, dialect, intent_model):
    """Unsure means the Mandarin (default) group and no dialect prompt; a sure reading routes to its group."""
    from models.champions import DialectComponent

    strict = DialectComponent(dialect.model, 1.01)  # nothing reaches it: always unsure
    p = Pipeline(intent_model=intent_model, asr=recogniser, dialect=strict).process(
        {"id": "u", "audio": str(call_path)})
    assert p["dialect"] is not None and p["dialect_sure"] is False
    assert p["dialect_group"] == Pipeline().policy.default_dialect_group
    assert any("unsure" in r for r in p["route_reasons"])
    lenient = DialectComponent(dialect.model, 0.0)  # everything counts as sure
    q = Pipeline(intent_model=intent_model, asr=recogniser, dialect=lenient).process(
        {"id": "s", "audio": str(call_path)})
    assert q["dialect_sure"] is True and q["dialect_group"] == Pipeline().policy.dialect_groups[q["dialect"]]
    assert q["skip_ivr"] == bool(q["is_complaint"])
