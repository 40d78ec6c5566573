"""Live calls: the ``/stream`` WebSocket (a call platform streams a call's audio), ``/stream/{call_id}/watch`` (agents
and supervisors follow a live call), ``GET /live`` (the live calls) and the events they carry (README "Live streams").

One :class:`StreamSession` per call. Audio arrives as 16-bit PCM frames (8 or 16 kHz, 1 or 2 channels); each channel
is resampled to 16 kHz and goes through a streaming VAD (silero, the model ``models/asr/vad.py`` uses, run frame by
frame with its recurrent state carried): a pause of at least ``gap_s`` closes a segment, which is decoded at once by
the runtime's pipeline components (the Recognition model service); while a segment is open a partial transcript of
its last ``partial_window_s`` is decoded every ``partial_every_s`` of audio. Each channel has one worker task, so a
channel's partials come before its final and finals come in time order. After each customer final the customer's
words so far go through understanding (intent, slots, complaint cues), emotion and dialect (when those models are
present), the alert rules (:func:`cue_alerts`, :func:`sustained_alerts`) and the knowledge base, in the call's own
analysis task (in order), so the next decode never waits for them.

Bounded latency under load (issue 13): every decode of every live call in the process passes one
:class:`DecodeGate` (``decode_slots`` at once, ``partial_slots`` of them at most for partials): finals go before
partials, the customer's before the agent's, older before newer, and a final never waits behind a partial for a slot.
A channel's worker decodes each closed segment at once, in time order; a partial runs beside it (one per channel, started
only when no closed segment waits), is cut from the newest audio when it gets its slot (never a stale window), is given
up when its segment closes while it waits (a partial already decoding goes out before the final: partials of a
segment always come before its final), and its cadence follows the load:
the next partial of a channel comes after ``max(partial_every_s, partial_load_factor * last partial's decode time)``
of audio. Each decode's wait and duration are logged (DEBUG, ``hotline.stream``) and kept in ``timings``.

Bounded state: a channel keeps only the audio of its open segment (at most ``max_segment_s``; older audio is dropped
once decoded); at most ``max_segments`` finals and ``max_events`` events are kept for watchers joining late; the
call's PCM goes to a spooled temporary file (in memory up to a few MiB, then on disk) for the ticket. A dropped
connection cancels the workers, closes the spool and forgets the call (``GET /live`` stops listing it).

When the platform sends ``{"type": "end"}``, the open segments are closed and decoded and the ticket is created by
:meth:`serving.runtime.Runtime.create_ticket`, the code of ``POST /tickets``, with the whole call as the record; the
content hash is taken over the PCM written as a WAV file (:func:`wav_bytes`), so a later ``POST /tickets`` of that
WAV file with the same ``call_id`` answers 200 with the same ticket.
"""

from __future__ import annotations

import asyncio
import heapq
import io
import json
import logging
import os
import tempfile
import time
import wave
from collections import deque
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

import numpy as np

log = logging.getLogger("hotline.stream")

SAMPLE_RATES = (8000, 16000)  # Hz the stream accepts
CHANNEL_COUNTS = (1, 2)
MIN_FRAME_MS, MAX_FRAME_MS = 20, 200  # ms of audio per binary frame (a shorter frame is allowed only as the last)
MODEL_RATE = 16000  # Hz: what VAD and the models read
VAD_FRAME = 512  # samples at 16 kHz (32 ms) per silero step
VAD_CONTEXT = 64  # samples of the previous frame silero sees

# close codes (RFC 6455 private range 4000-4999 mirrors the HTTP status the REST API would give)
CLOSE_BAD_REQUEST, CLOSE_UNAUTHORIZED, CLOSE_FORBIDDEN, CLOSE_TIMEOUT = 4400, 4401, 4403, 4408
CLOSE_CONFLICT, CLOSE_TOO_LARGE, CLOSE_UNSUPPORTED, CLOSE_UNPROCESSABLE = 4409, 4413, 4415, 4422
CLOSE_NOT_FOUND = 4404

ALERT_KINDS = ("sustained_anger", "sustained_anxiety", "regulator_threat", "media_threat", "manager_request")
# complaint cues (models/intent/cues.py names) -> the alert they raise
CUE_ALERTS: dict[str, str] = {
    "12315": "regulator_threat", "12345": "regulator_threat", "315": "regulator_threat", "消协": "regulator_threat",
    "工信部": "regulator_threat", "举报": "regulator_threat", "起诉": "regulator_threat", "维权": "regulator_threat",
    "曝光": "media_threat", "媒体": "media_threat",
    "找你们领导": "manager_request",
}
ALERT_MESSAGES: dict[str, str] = {
    "sustained_anger": "客户持续愤怒，请先安抚情绪，必要时请主管介入",
    "sustained_anxiety": "客户持续焦虑，请明确告知处理时限和下一步",
    "regulator_threat": "客户提到向监管部门投诉（{cue}），请按升级投诉流程处理",
    "media_threat": "客户提到媒体曝光（{cue}），请立即通知主管",
    "manager_request": "客户要求找领导，请转值班主管或承诺主管回电",
}
EMOTION_ALERTS = {"angry": "sustained_anger", "anxious": "sustained_anxiety"}


@dataclass(frozen=True)
class StreamConfig:
    """Limits and cadences of a live stream; each can be set with ``HOTLINE_STREAM_<FIELD>`` (upper case)."""

    gap_s: float = 0.5  # s of silence that close a segment
    vad_threshold: float = 0.5  # silero speech probability of a speech frame
    pad_s: float = 0.2  # s of audio kept each side of a segment
    min_segment_s: float = 0.25  # s: shorter speech bursts are dropped
    max_segment_s: float = 20.0  # s: a longer segment is closed and decoded (the open audio held stays bounded)
    partial_every_s: float = 1.0  # s of audio between partial transcripts of an open segment
    partial_window_s: float = 6.0  # s: a partial decodes at most the last this-many seconds of the open segment
    max_segments: int = 400  # finals kept in memory (the oldest dropped first)
    max_events: int = 4000  # events kept for watchers joining late
    max_text_chars: int = 3000  # characters of the customer's latest words that understanding reads
    max_call_s: float = 3600.0  # s of audio a stream may send (4413 beyond)
    start_timeout_s: float = 15.0  # s to wait for the start message (4408 beyond)
    idle_timeout_s: float = 60.0  # s without a message before the stream is dropped (4408)
    spool_memory_mb: float = 8.0  # MiB of call audio kept in memory before the spool goes to a temporary file
    watcher_queue: int = 2000  # events a slow watcher may lag behind before it is dropped
    sustained_s: float = 8.0  # s: an emotion read this long (over consecutive customer segments) raises an alert
    sustained_segments: int = 2  # ... over at least this many segments
    emotion_min_confidence: float = 0.6  # readings below it break a run
    decode_slots: int = 2  # decodes of all live calls in flight at once (the process-wide DecodeGate)
    partial_slots: int = 1  # ... of which partials at most (the rest stay free for finals)
    partial_load_factor: float = 2.0  # a partial that took d s to decode delays the channel's next by this * d s of audio

    @classmethod
    def from_env(cls, **overrides: Any) -> "StreamConfig":
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            raw = os.environ.get(f"HOTLINE_STREAM_{f.name.upper()}")
            if raw:
                try:
                    kwargs[f.name] = int(raw) if f.type in ("int", int) else float(raw)
                except ValueError:
                    raise ValueError(f"HOTLINE_STREAM_{f.name.upper()}={raw!r}: expected a number") from None
        kwargs.update(overrides)
        return cls(**kwargs)


class ProtocolError(Exception):
    """A client mistake: sent as an ``error`` event, then the socket closes with ``code``."""

    def __init__(self, message: str, code: int = CLOSE_BAD_REQUEST):
        super().__init__(message)
        self.code = code


# -- pure rules ------------------------------------------------------------------------------------------
def sustained_alerts(readings: Sequence[Mapping[str, Any]], config: StreamConfig = StreamConfig(),
                     already: Sequence[str] = ()) -> list[dict]:
    """Alerts for sustained anger or anxiety in a customer's emotion readings (``{start, end, label, confidence}``
    per closed segment, in time order): the same label read with at least ``emotion_min_confidence`` over at least
    ``sustained_segments`` consecutive segments spanning at least ``sustained_s``. One alert per kind (kinds in
    ``already`` are not raised again): ``[{kind, message, start}]``, ``start`` the start of the run."""
    out: list[dict] = []
    done = set(already)
    run_label, run_start, run_n = None, 0.0, 0
    for r in readings:
        label = r.get("label")
        conf = r.get("confidence")
        sure = conf is None or float(conf) >= config.emotion_min_confidence
        if sure and label in EMOTION_ALERTS and label == run_label:
            run_n += 1
        elif sure and label in EMOTION_ALERTS:
            run_label, run_start, run_n = label, float(r["start"]), 1
        else:
            run_label, run_n = None, 0
            continue
        kind = EMOTION_ALERTS[label]
        if kind not in done and run_n >= config.sustained_segments and float(r["end"]) - run_start >= config.sustained_s:
            out.append({"kind": kind, "message": ALERT_MESSAGES[kind], "start": round(run_start, 2)})
            done.add(kind)
    return out


def cue_alerts(cues: Sequence[str], start: float, already: Sequence[str] = ()) -> list[dict]:
    """Alerts raised by complaint cues heard in a segment that began at ``start``: one per kind."""
    out, done = [], set(already)
    for cue in cues:
        kind = CUE_ALERTS.get(cue)
        if kind and kind not in done:
            out.append({"kind": kind, "message": ALERT_MESSAGES[kind].format(cue=cue), "start": round(start, 2)})
            done.add(kind)
    return out


def wav_bytes(pcm: bytes, sample_rate: int, channels: int) -> bytes:
    """16-bit PCM as the bytes of a plain WAV file (44-byte header, as Python's ``wave`` and most tools write it)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm)
    return buf.getvalue()


def mask_event(event: dict) -> dict:
    """An event as a role without ``read_unmasked`` may see it: phone numbers masked in callers, slots and words."""
    from models.ticket import Ticket, mask_phone, mask_text, masked

    e = dict(event)
    if e.get("caller"):
        e["caller"] = mask_phone(e["caller"])
    if isinstance(e.get("text"), str):
        e["text"] = mask_text(e["text"])
    if isinstance(e.get("slots"), dict) and e["slots"].get("phone"):
        e["slots"] = {**e["slots"], "phone": mask_phone(e["slots"]["phone"])}
    if e.get("type") == "ticket" and isinstance(e.get("ticket"), dict):
        e["ticket"] = masked(Ticket.model_validate(e["ticket"])).model_dump(mode="json")
    return e


# -- the order of decodes ---------------------------------------------------------------------------------------
class DecodeGate:
    """Admission of recognition work of all live calls in one process (one event loop): at most ``slots`` decodes
    at once, partials at most ``partial_slots`` of them; waiters are served in ``priority`` order (a tuple, smaller
    first: finals ``(0, ...)`` before partials ``(1, ...)``). A partial that does not fit never holds up a final
    behind it. Cancelling a waiter gives its place (or its slot, if it was granted meanwhile) back."""

    def __init__(self, slots: int = 2, partial_slots: int = 1):
        self.slots, self.partial_slots = max(1, int(slots)), max(1, int(partial_slots))
        self.busy = self.busy_partial = 0
        self._waiting: list[list] = []  # heap of [priority, n, future, partial]
        self._n = 0

    def _fits(self, partial: bool) -> bool:
        return self.busy < self.slots and (not partial or self.busy_partial < self.partial_slots)

    def _take(self, partial: bool) -> None:
        self.busy += 1
        self.busy_partial += int(partial)

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiting if not w[2].done())

    async def acquire(self, priority: tuple, partial: bool) -> None:
        if self._fits(partial) and not any(not w[2].done() and (not w[3] or partial) for w in self._waiting):
            self._take(partial)
            return
        fut = asyncio.get_running_loop().create_future()
        self._n += 1
        heapq.heappush(self._waiting, [priority, self._n, fut, partial])
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # granted as it was cancelled: give the slot back
                self.release(partial)
            raise

    def release(self, partial: bool) -> None:
        self.busy -= 1
        self.busy_partial -= int(partial)
        skipped = []
        while self._waiting and self.busy < self.slots:
            w = heapq.heappop(self._waiting)
            if w[2].done():  # cancelled
                continue
            if not self._fits(w[3]):
                skipped.append(w)
                continue
            self._take(w[3])
            w[2].set_result(None)
        for w in skipped:
            heapq.heappush(self._waiting, w)


def decode_gate(rt: Any, config: StreamConfig) -> DecodeGate:
    """The runtime's gate (one per service process, made by the first stream)."""
    gate = getattr(rt, "_decode_gate", None)
    if gate is None:
        gate = DecodeGate(config.decode_slots, config.partial_slots)
        try:
            rt._decode_gate = gate
        except AttributeError:  # a runtime that takes no attributes: a gate per call
            pass
    return gate


# -- streaming VAD -----------------------------------------------------------------------------------------
class StreamingVad:
    """Silero VAD (the ONNX model bundled with faster-whisper, as ``models/asr/vad.py`` uses) one 32 ms frame at a
    time with its recurrent state carried, and the segment rules of :class:`~models.asr.vad.VadConfig`: speech
    starts at a frame above ``threshold``; ``gap_s`` below ``threshold - 0.15`` ends it; a segment reaching
    ``max_segment_s`` is cut. ``feed`` returns ``("close", start_sample, end_sample)`` for each closed segment
    (samples at 16 kHz from the start of the channel); ``open_start`` is the open segment's start or None."""

    def __init__(self, config: StreamConfig):
        from faster_whisper.vad import get_vad_model

        self.session = get_vad_model().session
        self.cfg = config
        self.h = np.zeros((1, 1, 128), dtype=np.float32)
        self.c = np.zeros((1, 1, 128), dtype=np.float32)
        self.context = np.zeros(VAD_CONTEXT, dtype=np.float32)
        self.pending = np.zeros(0, dtype=np.float32)
        self.pos = 0  # samples consumed into frames
        self.open_start: int | None = None
        self.last_voice = 0

    def prob(self, frame: np.ndarray) -> float:
        x = np.concatenate([self.context, frame])[None, :].astype(np.float32)
        out, self.h, self.c = self.session.run(None, {"input": x, "h": self.h, "c": self.c})
        self.context = frame[-VAD_CONTEXT:]
        return float(np.asarray(out).reshape(-1)[0])

    def feed(self, audio: np.ndarray) -> list[tuple[str, int, int]]:
        cfg, out = self.cfg, []
        gap, min_len = int(cfg.gap_s * MODEL_RATE), int(cfg.min_segment_s * MODEL_RATE)
        max_len = int(cfg.max_segment_s * MODEL_RATE)
        self.pending = np.concatenate([self.pending, audio]) if len(self.pending) else np.asarray(audio, np.float32)
        while len(self.pending) >= VAD_FRAME:
            frame, self.pending = self.pending[:VAD_FRAME], self.pending[VAD_FRAME:]
            p = self.prob(frame)
            start, end = self.pos, self.pos + VAD_FRAME
            self.pos = end
            if p >= cfg.vad_threshold:
                if self.open_start is None:
                    self.open_start = start
                self.last_voice = end
            elif self.open_start is not None and p < cfg.vad_threshold - 0.15 and end - self.last_voice >= gap:
                if self.last_voice - self.open_start >= min_len:
                    out.append(("close", self.open_start, self.last_voice))
                self.open_start = None
            if self.open_start is not None and end - self.open_start >= max_len:
                out.append(("close", self.open_start, end))
                self.open_start, self.last_voice = end, end
        return out

    def flush(self) -> list[tuple[str, int, int]]:
        """Close the open segment at the end of the audio (the call ended)."""
        out = []
        if self.open_start is not None and self.last_voice - self.open_start >= int(self.cfg.min_segment_s * MODEL_RATE):
            out.append(("close", self.open_start, self.last_voice))
        self.open_start = None
        return out


class ChannelAudio:
    """The 16 kHz audio of one channel still needed: from ``base`` (a sample index) to the newest sample."""

    def __init__(self) -> None:
        self.base = 0
        self.audio = np.zeros(0, dtype=np.float32)

    @property
    def end(self) -> int:
        return self.base + len(self.audio)

    def append(self, x: np.ndarray) -> None:
        self.audio = np.concatenate([self.audio, x]) if len(self.audio) else x.astype(np.float32, copy=True)

    def cut(self, start: int, end: int) -> np.ndarray:
        a, b = max(start - self.base, 0), max(min(end, self.end) - self.base, 0)
        return self.audio[a:b].copy()

    def drop_before(self, sample: int) -> None:
        k = min(max(sample - self.base, 0), len(self.audio))
        if k:
            self.audio = self.audio[k:].copy()
            self.base += k


# -- one live call ---------------------------------------------------------------------------------------------
@dataclass
class Connection:
    role: str
    queue: asyncio.Queue
    owner: bool = False


class StreamSession:
    """One live call: audio in, events out (to the platform that streams it and to watchers)."""

    def __init__(self, rt: Any, key: Any, start: Mapping[str, Any], config: StreamConfig, kb: Any = None):
        self.rt, self.key, self.cfg, self.kb = rt, key, config, kb
        self.call_id: str = start["call_id"]
        self.caller: str | None = start.get("caller")
        self.hotwords: tuple[str, ...] | None = None  # the recogniser's hotwords (Pipeline.hotwords_for), once
        self.rate: int = int(start["sample_rate"])
        self.channels: int = int(start["channels"])
        self.agent_channel = int(start.get("agent_channel", 0))
        self.customer_channel = int(start.get("customer_channel", 1))
        if self.channels == 1:
            self.labels = {0: "customer"}
        else:
            self.labels = {self.agent_channel: "agent", self.customer_channel: "customer"}
        self.started_at = datetime.now(timezone.utc)
        self.samples = 0  # samples per channel received, at the stream's rate
        self.seq = 0
        self.events: deque[dict] = deque(maxlen=config.max_events)
        self.connections: list[Connection] = []
        self.finals: deque[dict] = deque(maxlen=config.max_segments)
        self.spool = tempfile.SpooledTemporaryFile(max_size=int(config.spool_memory_mb * 1024 * 1024))
        self.vad = {ch: StreamingVad(config) for ch in self.labels}
        self.audio = {ch: ChannelAudio() for ch in self.labels}
        self.resample_tail = {ch: np.zeros(0, dtype=np.float32) for ch in self.labels}
        self.last_partial = {ch: 0 for ch in self.labels}  # sample of the open segment's last partial
        self.partial_pending = {ch: False for ch in self.labels}  # a partial asked for and not yet done or dropped
        self.partial_decode_s = {ch: 0.0 for ch in self.labels}  # how long the channel's last partial took
        self.partial_task: dict[int, asyncio.Task] = {}  # the channel's partial in flight
        self.pending: dict[int, deque] = {ch: deque() for ch in self.labels}  # closed segments to decode, in order
        self.wake = {ch: asyncio.Event() for ch in self.labels}  # work for the channel's worker
        self.final_waiting = {ch: asyncio.Event() for ch in self.labels}  # a closed segment waits (drop the partial)
        self.ending = False  # the platform sent end: workers finish the closed segments and stop
        self.gate = decode_gate(rt, config)
        self.timings: deque[dict] = deque(maxlen=config.max_segments)  # per decode: kind, channel, wait_s, decode_s
        self.workers: list[asyncio.Task] = []
        self.analysis: asyncio.Queue = asyncio.Queue()  # customer finals to analyse, in order
        self.analyser: asyncio.Task | None = None
        self.seg_no = 0
        self.customer_words: deque[str] = deque()
        self.customer_chars = 0
        self.customer_speech: deque[np.ndarray] = deque()  # last ~30 s of customer speech for dialect ID
        self.dialect: dict | None = None
        self.intent: dict | None = None
        self.slots: dict[str, str] = {}
        self.cues: list[str] = []
        self.emotions: list[dict] = []
        self.alerts: list[dict] = []
        self.suggested: list[str] = []
        self.short_frame_seen = False
        self.ended = False
        self.closed = False

    # -- events ---------------------------------------------------------------------------------------------
    @property
    def t(self) -> float:
        return round(self.samples / self.rate, 3)

    def emit(self, etype: str, **data: Any) -> dict:
        self.seq += 1
        event = {"type": etype, "seq": self.seq, "t": self.t, **data}
        self.events.append(event)
        for conn in list(self.connections):
            self._deliver(conn, event)
        return event

    def _deliver(self, conn: Connection, event: dict) -> None:
        from serving.auth import can

        ev = event if can(conn.role, "read_unmasked") else mask_event(event)
        if not conn.owner and conn.queue.qsize() > self.cfg.watcher_queue + self.cfg.max_events:
            if conn in self.connections:  # a watcher too slow to keep up is dropped, never the call
                self.connections.remove(conn)
            conn.queue.put_nowait(None)
            return
        conn.queue.put_nowait(ev)

    def subscribe(self, role: str, owner: bool = False) -> Connection:
        conn = Connection(role, asyncio.Queue(), owner)
        for ev in list(self.events):
            self._deliver(conn, ev)
        self.connections.append(conn)
        return conn

    def summary(self, unmasked: bool) -> dict:
        from models.ticket import mask_phone

        last = self.emotions[-1] if self.emotions else None
        return {"call_id": self.call_id, "caller": self.caller if unmasked else mask_phone(self.caller),
                "started_at": self.started_at.isoformat(), "seconds": self.t,
                "dialect": self.dialect, "emotion": last, "alerts": [a["kind"] for a in self.alerts],
                "intent": self.intent}

    # -- audio in ---------------------------------------------------------------------------------------------
    def start_workers(self) -> None:
        self.workers = [asyncio.create_task(self._worker(ch), name=f"stream-{self.call_id}-{ch}")
                        for ch in self.labels]
        self.analyser = asyncio.create_task(self._analyser(), name=f"stream-{self.call_id}-analysis")

    def frame(self, data: bytes) -> None:
        """One binary frame of interleaved 16-bit PCM."""
        width = 2 * self.channels
        if len(data) == 0 or len(data) % width:
            raise ProtocolError(f"a PCM frame of {len(data)} bytes is not whole samples: send 16-bit little-endian PCM, "
                                f"{self.channels} channel(s) interleaved ({width} bytes per sample)")
        n = len(data) // width
        ms = 1000.0 * n / self.rate
        if ms > MAX_FRAME_MS:
            raise ProtocolError(f"a PCM frame of {ms:.0f} ms is too long: send {MIN_FRAME_MS} to {MAX_FRAME_MS} ms per "
                                f"frame", CLOSE_TOO_LARGE)
        if self.short_frame_seen:
            raise ProtocolError(f"a frame followed one shorter than {MIN_FRAME_MS} ms: only the last frame may be "
                                f"shorter; send {MIN_FRAME_MS} to {MAX_FRAME_MS} ms per frame")
        if ms < MIN_FRAME_MS:
            self.short_frame_seen = True
        if (self.samples + n) / self.rate > self.cfg.max_call_s:
            raise ProtocolError(f"the call is longer than {self.cfg.max_call_s:g} s (HOTLINE_STREAM_MAX_CALL_S); end "
                                f"it and start a new stream", CLOSE_TOO_LARGE)
        self.spool.write(data)
        pcm = np.frombuffer(data, dtype="<i2").reshape(n, self.channels).T.astype(np.float32) / 32768.0
        self.samples += n
        for ch in self.labels:
            x = self._to_model_rate(ch, pcm[ch])
            self.audio[ch].append(x)
            for _, s, e in self.vad[ch].feed(x):
                self._close(ch, s, e)
            self._maybe_partial(ch)
            self._trim(ch)

    def _to_model_rate(self, ch: int, x: np.ndarray) -> np.ndarray:
        if self.rate == MODEL_RATE:
            return x
        # 8 kHz -> 16 kHz: linear interpolation, continuous across frames (the previous frame's last sample)
        tail = self.resample_tail[ch]
        prev = tail[-1] if len(tail) else x[0]
        y = np.empty(2 * len(x), dtype=np.float32)
        y[1::2] = x
        y[0::2] = (np.concatenate([[prev], x[:-1]]) + x) / 2
        self.resample_tail[ch] = x[-1:]
        return y

    def _close(self, ch: int, start: int, end: int) -> None:
        pad = int(self.cfg.pad_s * MODEL_RATE)
        audio = self.audio[ch].cut(start - pad, end + pad)
        self.seg_no += 1
        self.pending[ch].append((self.seg_no, start / MODEL_RATE, end / MODEL_RATE, audio, time.perf_counter()))
        self.final_waiting[ch].set()
        self.wake[ch].set()
        self.last_partial[ch] = 0

    def _maybe_partial(self, ch: int) -> None:
        start = self.vad[ch].open_start
        if start is None or self.partial_pending[ch]:
            return
        now = self.audio[ch].end
        # the cadence follows the load: a partial that took d s to decode delays the next by factor * d s of audio
        every_s = max(self.cfg.partial_every_s, self.cfg.partial_load_factor * self.partial_decode_s[ch])
        if now - max(start, self.last_partial[ch]) < int(every_s * MODEL_RATE):
            return
        self.last_partial[ch] = now
        self.partial_pending[ch] = True  # the worker cuts the window when the partial gets a decode slot
        self.wake[ch].set()

    def _trim(self, ch: int) -> None:
        """Drop audio no segment can need: before the open segment (less the pad), or all but the last gap."""
        pad = int(self.cfg.pad_s * MODEL_RATE)
        start = self.vad[ch].open_start
        keep_from = (start - pad) if start is not None else self.audio[ch].end - int((self.cfg.gap_s + self.cfg.pad_s)
                                                                                     * MODEL_RATE)
        self.audio[ch].drop_before(keep_from)

    # -- decoding and analysis ----------------------------------------------------------------------------------
    async def _worker(self, ch: int) -> None:
        """The channel's decodes: its closed segments in time order, each at once (never behind a partial: a partial
        runs as a task of its own, started only when no closed segment waits, one at a time per channel)."""
        while True:
            if self.pending[ch]:
                await self._final(ch, *self.pending[ch].popleft())
                continue
            self.final_waiting[ch].clear()
            task = self.partial_task.get(ch)
            busy = task is not None and not task.done()
            if self.partial_pending[ch] and not busy and not self.ending:
                self.partial_task[ch] = asyncio.create_task(self._partial_job(ch), name=f"partial-{self.call_id}-{ch}")
            elif self.ending:
                if busy:
                    await asyncio.wait({task})
                return
            self.wake[ch].clear()
            await self.wake[ch].wait()

    async def _partial_job(self, ch: int) -> None:
        try:
            await self._partial(ch)
        finally:
            self.partial_pending[ch] = False

    def _priority(self, ch: int, kind: str, start: float) -> tuple:
        return (0 if kind == "final" else 1, 0 if self.labels[ch] == "customer" else 1, start)

    async def _final(self, ch: int, seg: int, start: float, end: float, audio: np.ndarray, closed_at: float) -> None:
        label = self.labels[ch]
        try:
            text = await self._recognise(ch, "final", start, end, audio, closed_at)
        except Exception as e:  # noqa: BLE001 - one failed decode is reported, the call goes on
            log.exception("stream %s: recognition failed", self.call_id)
            self.emit("error", error=f"recognition of a {label} segment failed ({type(e).__name__}); the call "
                                     f"goes on")
            return
        task = self.partial_task.get(ch)
        if task is not None and not task.done():  # a partial of this segment decoding alongside goes out first
            await asyncio.wait({task})
        final = {"channel": label, "start": round(start, 3), "end": round(end, 3), "text": text, "segment": seg}
        self.finals.append(final)
        self.emit("final", **final)
        if label == "customer" and text.strip():
            self.analysis.put_nowait((start, end, text, audio))

    async def _partial(self, ch: int) -> None:
        """A partial of the channel's open segment: waits for a partial slot unless a segment closes meanwhile (then
        the final goes first and this partial is dropped); the window is cut from the newest audio once admitted."""
        start = self.vad[ch].open_start
        if start is None:
            return
        asked = time.perf_counter()
        acquire = asyncio.ensure_future(self.gate.acquire(self._priority(ch, "partial", start / MODEL_RATE), True))
        closed = asyncio.ensure_future(self.final_waiting[ch].wait())
        try:
            await asyncio.wait({acquire, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
            if not acquire.done():
                acquire.cancel()  # its handler gives a slot granted meanwhile back
        if not acquire.done() or acquire.cancelled():
            return
        try:
            acquire.result()
            now, start = self.audio[ch].end, self.vad[ch].open_start
            if start is None or self.final_waiting[ch].is_set():
                return
            window = int(self.cfg.partial_window_s * MODEL_RATE)
            audio = self.audio[ch].cut(max(start, now - window), now)
            self.last_partial[ch] = max(self.last_partial[ch], now)
            t0 = time.perf_counter()
            text = await self._decode(self.labels[ch], audio, start / MODEL_RATE)
        except Exception as e:  # noqa: BLE001 - one failed decode is reported, the call goes on
            log.exception("stream %s: recognition failed", self.call_id)
            self.emit("error", error=f"recognition of a {self.labels[ch]} segment failed ({type(e).__name__}); the "
                                     f"call goes on")
            return
        finally:
            if acquire.done() and not acquire.cancelled() and acquire.exception() is None:
                self.gate.release(True)
        took = time.perf_counter() - t0
        self.partial_decode_s[ch] = took
        self._timing("partial", ch, t0 - asked, took, None)
        if text:
            self.emit("partial", channel=self.labels[ch], start=round(start / MODEL_RATE, 3), text=text)

    def _timing(self, kind: str, ch: int, wait_s: float, decode_s: float, closed_at: float | None) -> None:
        t = {"kind": kind, "channel": self.labels[ch], "wait_s": round(wait_s, 3), "decode_s": round(decode_s, 3),
             "busy": self.gate.busy, "waiting": self.gate.waiting}
        self.timings.append(t)
        log.debug("stream %s: %s %s waited %.2f s for a slot, decoded in %.2f s (gate busy %d, waiting %d)",
                  self.call_id, kind, t["channel"], wait_s, decode_s, t["busy"], t["waiting"])

    async def _recognise(self, ch: int, kind: str, start: float, end: float, audio: np.ndarray,
                         asked: float) -> str:
        """The text of a closed segment: decoded once the gate admits it (finals first, the customer's first)."""
        if len(audio) < int(0.1 * MODEL_RATE):
            return ""
        await self.gate.acquire(self._priority(ch, kind, start), False)
        t0 = time.perf_counter()
        try:
            return await self._decode(self.labels[ch], audio, start)
        finally:
            self.gate.release(False)
            self._timing(kind, ch, t0 - asked, time.perf_counter() - t0, asked)

    async def _decode(self, label: str, audio: np.ndarray, start: float) -> str:
        from models.pipeline import _Piece

        if len(audio) < int(0.1 * MODEL_RATE):
            return ""
        pipe = await self.rt.pipeline()
        dialect = self.dialect["label"] if self.dialect and self.dialect.get("sure") else None
        if self.hotwords is None:  # once per call: the same list the ticket's pipeline run gives the recogniser
            self.hotwords = await pipe.hotwords_for(self.caller, True)
        heard = await pipe._recognise([_Piece(label, start, start + len(audio) / MODEL_RATE, audio)], dialect, True,
                                      self.hotwords)
        return heard[0].text.strip() if heard else ""

    async def _analyser(self) -> None:
        """The customer's finals through understanding, emotion, dialect, alerts and suggestions, one at a time."""
        while True:
            job = await self.analysis.get()
            if job is None:
                return
            try:
                await self._analyse(*job)
            except Exception as e:  # noqa: BLE001
                log.exception("stream %s: analysis failed", self.call_id)
                self.emit("error", error=f"analysis of a customer segment failed ({type(e).__name__}); the call "
                                         f"goes on")

    async def _analyse(self, start: float, end: float, text: str, audio: np.ndarray) -> None:
        from models.intent.cues import find_cues

        pipe = await self.rt.pipeline()
        # dialect: the customer's last ~30 s of speech
        if pipe.dialect is not None:
            self.customer_speech.append(audio)
            while sum(len(a) for a in self.customer_speech) > 30 * MODEL_RATE and len(self.customer_speech) > 1:
                self.customer_speech.popleft()
            from models.pipeline import as_classification

            c = as_classification(await pipe.dialect.classify(np.concatenate(list(self.customer_speech))))
            floor = float(getattr(pipe.dialect, "min_confidence", 0.0) or 0.0)
            d = {"label": c.label, "confidence": None if c.confidence is None else round(float(c.confidence), 4),
                 "sure": c.confidence is None or c.confidence >= floor}
            if d != self.dialect:
                self.dialect = d
                self.emit("dialect", **d)
        # emotion of this segment, and sustained emotion alerts
        if pipe.emotion is not None:
            from models.pipeline import as_classification

            kwargs = {k: v for k, v in (("text", text), ("caller", self.caller)) if k in pipe._emotion_kwargs and v}
            c = as_classification(await pipe.emotion.classify(audio, **kwargs))
            reading = {"start": round(start, 3), "end": round(end, 3), "label": c.label,
                       "confidence": None if c.confidence is None else round(float(c.confidence), 4)}
            self.emotions.append(reading)
            del self.emotions[: max(0, len(self.emotions) - self.cfg.max_segments)]
            self.emit("emotion", **reading)
            for a in sustained_alerts(self.emotions, self.cfg, [x["kind"] for x in self.alerts]):
                self.alerts.append(a)
                self.emit("alert", **a)
        # complaint cues and the alerts they raise
        new_cues = []
        for m in find_cues(text):
            if m.cue not in self.cues:
                self.cues.append(m.cue)
                new_cues.append(m.cue)
                self.emit("cue", cue=m.cue)
        for a in cue_alerts(new_cues, start, [x["kind"] for x in self.alerts]):
            self.alerts.append(a)
            self.emit("alert", **a)
        # understanding of the customer's words so far
        self.customer_words.append(text)
        self.customer_chars += len(text)
        while self.customer_chars > self.cfg.max_text_chars and len(self.customer_words) > 1:
            self.customer_chars -= len(self.customer_words.popleft())
        words = self.customer_text()
        u = (await pipe._understand([words], True))[0]
        get = (lambda k: u.get(k)) if isinstance(u, Mapping) else (lambda k: getattr(u, k, None))
        slots = {str(k): str(v) for k, v in (get("slots") or {}).items()}
        new = sorted(k for k, v in slots.items() if self.slots.get(k) != v)
        if new:
            self.slots = {**self.slots, **slots}
            self.emit("slots", slots=dict(self.slots), new=new)
        intent = {"intent": get("intent"), "confidence": None if get("intent_confidence") is None
                  else round(float(get("intent_confidence")), 4), "is_complaint": bool(get("is_complaint"))}
        changed = self.intent is None or (intent["intent"], intent["is_complaint"]) != (
            self.intent["intent"], self.intent["is_complaint"])
        self.intent = intent
        if changed:
            self.emit("intent", **intent)
        if (changed or new_cues) and self.kb is not None:
            await self._suggest(words)

    async def _suggest(self, words: str) -> None:
        intent = (self.intent or {}).get("intent")
        query = words + (" " + " ".join(self.cues) if self.cues else "")
        hits = await asyncio.to_thread(self.kb.search, query, 3, intent)
        if self.cues:  # complaint cues (12315, 找领导, ...) ask for their own article: the best for the cues alone
            cue_hits = await asyncio.to_thread(self.kb.search, "客户说要" + "、".join(self.cues), 1)
            if cue_hits and cue_hits[0]["id"] not in [h["id"] for h in hits]:
                hits = hits[:2] + cue_hits
        ids = [h["id"] for h in hits]
        if hits and ids != self.suggested:
            self.suggested = ids
            self.emit("suggestion", articles=[{k: h[k] for k in ("id", "title", "snippet", "score")} for h in hits],
                      intent=intent)

    def customer_text(self) -> str:
        from models.asr.recognizer import join_texts

        return join_texts(self.customer_words)

    # -- the end -------------------------------------------------------------------------------------------------
    async def finish(self) -> None:
        """Close the open segments, wait for every decode, then create the ticket as ``POST /tickets`` does."""
        for ch in self.labels:
            for _, s, e in self.vad[ch].flush():
                self._close(ch, s, e)
        self.ending = True
        for ch in self.labels:
            self.partial_pending[ch] = False
            self.final_waiting[ch].set()  # a partial waiting for a slot is given up
            self.wake[ch].set()
        await asyncio.gather(*self.workers)
        self.analysis.put_nowait(None)
        if self.analyser is not None:
            await self.analyser
        self.ended = True
        if self.samples == 0:
            raise ProtocolError("the stream ended without audio: no ticket was made", CLOSE_UNPROCESSABLE)
        from data.audio import SAMPLE_RATE, AudioError, load_audio_bytes
        from serving.runtime import BadInput

        self.spool.seek(0)
        data = wav_bytes(self.spool.read(), self.rate, self.channels)
        try:
            samples = await asyncio.to_thread(load_audio_bytes, data, SAMPLE_RATE, False, f"{self.call_id} (stream)",
                                              allow_silent=True)
        except AudioError as e:
            raise ProtocolError(f"the call's audio could not be used: {e}", CLOSE_UNPROCESSABLE) from None
        record = {"id": self.call_id, "audio": samples, "caller": self.caller}
        try:
            ticket, created = await self.rt.create_ticket(call_id=self.call_id, record=record, audio_bytes=data,
                                                          text=None, caller=self.caller, channel="phone",
                                                          actor=self.key)
        except BadInput as e:
            raise ProtocolError(str(e), CLOSE_UNPROCESSABLE) from None
        except Exception as e:  # noqa: BLE001 - the store's refusals
            name = type(e).__name__
            if name == "IdempotencyConflict":
                raise ProtocolError(str(e), CLOSE_UNPROCESSABLE) from None
            if name == "CreationInFlight":
                raise ProtocolError(str(e), CLOSE_CONFLICT) from None
            raise
        self.rt.store.audit(self.key, "create_ticket" if created else "read_ticket", ticket.id,
                            "stream" if created else "stream retry")
        self.emit("ticket", ticket=ticket.model_dump(mode="json"), created=created)

    def close(self) -> None:
        """Free everything (also after a dropped connection): workers, audio, the spool."""
        if self.closed:
            return
        self.closed = True
        for task in [*self.workers, *self.partial_task.values(), *([self.analyser] if self.analyser else [])]:
            task.cancel()
        for conn in list(self.connections):
            conn.queue.put_nowait(None)
        self.connections.clear()
        self.audio.clear()
        self.vad.clear()
        self.spool.close()


# -- the registry of live calls -------------------------------------------------------------------------------
LIVE: dict[str, StreamSession] = {}


def knowledge_base(rt: Any) -> Any:
    """The runtime's knowledge base (loaded once, from ``HOTLINE_KB_DIR`` or ``data/kb``); None if it fails."""
    kb = getattr(rt, "_kb", None)
    if kb is None and not getattr(rt, "_kb_error", None):
        try:
            from models.kb import DEFAULT_FOLDER, KnowledgeBase

            kb = KnowledgeBase.load(os.environ.get("HOTLINE_KB_DIR") or DEFAULT_FOLDER)
            rt._kb = kb
        except Exception as e:  # noqa: BLE001 - the stream works without suggestions
            log.exception("knowledge base not loaded")
            rt._kb_error = f"{type(e).__name__}: {e}"
    return kb


# -- the WebSocket handlers (registered on serving/api.py's app) ----------------------------------------------
def _parse_start(raw: Any) -> dict:
    try:
        msg = json.loads(raw) if isinstance(raw, str) else None
    except json.JSONDecodeError as e:
        raise ProtocolError(f"the first message is not JSON ({e.msg}); send a text frame "
                            '{"type": "start", "call_id": ..., "sample_rate": 16000, "channels": 2}') from None
    if not isinstance(msg, dict) or msg.get("type") != "start":
        raise ProtocolError('the first message must be a text frame {"type": "start", "call_id": ..., '
                            '"sample_rate": 8000|16000, "channels": 1|2, ...}')
    call_id = msg.get("call_id")
    if not isinstance(call_id, str) or not call_id.strip() or len(call_id) > 128:
        raise ProtocolError("`call_id` is required: a string of 1 to 128 characters (the platform's id of the call)")
    rate, channels = msg.get("sample_rate"), msg.get("channels")
    if rate not in SAMPLE_RATES:
        raise ProtocolError(f"sample_rate {rate!r} is not supported: use 8000 or 16000", CLOSE_UNSUPPORTED)
    if channels not in CHANNEL_COUNTS:
        raise ProtocolError(f"channels {channels!r} is not supported: use 1 (customer only) or 2", CLOSE_UNSUPPORTED)
    agent, customer = msg.get("agent_channel", 0), msg.get("customer_channel", 1 if channels == 2 else 0)
    if channels == 2 and ({agent, customer} != {0, 1}):
        raise ProtocolError("agent_channel and customer_channel must be 0 and 1 (one each) for 2 channels")
    caller = msg.get("caller")
    if caller is not None:
        from serving.api import _caller

        try:
            caller = _caller(str(caller))
        except Exception as e:  # noqa: BLE001 - BadInput
            raise ProtocolError(str(e)) from None
    return {"call_id": call_id.strip(), "caller": caller, "sample_rate": rate, "channels": channels,
            "agent_channel": agent, "customer_channel": customer, "key": msg.get("key")}


def _verify(rt: Any, secret: str | None, action: str, what: str) -> Any:
    from serving.auth import can

    if not secret:
        raise ProtocolError(f"missing API key: send `Authorization: Bearer <key>` or {what}", CLOSE_UNAUTHORIZED)
    key = rt.store.verify_key(secret.strip())
    if key is None:
        raise ProtocolError("unknown or revoked API key; ask an admin for a key (`hotline keys create`)",
                            CLOSE_UNAUTHORIZED)
    if not can(key.role, action):
        raise ProtocolError(f"the role {key.role!r} may not do this here (needs {action.replace('_', ' ')}); use a key "
                            f"with a role that may (see API.md: roles)", CLOSE_FORBIDDEN)
    return key


def _bearer(ws: Any) -> str | None:
    auth = ws.headers.get("authorization")
    if not auth:
        return None
    scheme, _, secret = auth.partition(" ")
    return secret.strip() if scheme.lower() == "bearer" and secret.strip() else None


async def _send_error(ws: Any, message: str, code: int, seq: int = 0, t: float = 0.0) -> None:
    try:
        await ws.send_text(json.dumps({"type": "error", "seq": seq, "t": t, "error": message}, ensure_ascii=False))
        await ws.close(code=code)
    except Exception:  # noqa: BLE001 - the client is gone already
        pass


async def _pump(ws: Any, conn: Connection) -> None:
    """Send a connection's events in order until the session says it is over (None)."""
    while True:
        ev = await conn.queue.get()
        if ev is None:
            return
        await ws.send_text(json.dumps(ev, ensure_ascii=False, separators=(",", ":")))


async def stream_endpoint(ws: Any) -> None:
    """``/stream``: a call platform streams one call."""
    from starlette.websockets import WebSocketDisconnect

    import bentoml

    rt = bentoml.get_current_service().runtime
    cfg = StreamConfig.from_env(max_call_s=min(StreamConfig.from_env().max_call_s, rt.settings.max_call_seconds))
    await ws.accept()
    session: StreamSession | None = None
    sender: asyncio.Task | None = None
    try:
        try:
            raw = await asyncio.wait_for(ws.receive(), cfg.start_timeout_s)
        except asyncio.TimeoutError:
            raise ProtocolError(f"no start message within {cfg.start_timeout_s:g} s", CLOSE_TIMEOUT) from None
        if raw.get("type") == "websocket.disconnect":
            return
        start = _parse_start(raw.get("text"))
        key = _verify(rt, _bearer(ws) or start.get("key"), "create_ticket", 'a "key" in the start message')
        if start["call_id"] in LIVE:
            raise ProtocolError(f"call {start['call_id']!r} is already streaming; one stream per call_id",
                                CLOSE_CONFLICT)
        await rt.pipeline()
        session = StreamSession(rt, key, start, cfg, await asyncio.to_thread(knowledge_base, rt))
        LIVE[session.call_id] = session
        conn = session.subscribe(key.role, owner=True)
        sender = asyncio.create_task(_pump(ws, conn))
        session.start_workers()
        session.emit("ready", call_id=session.call_id)
        while True:
            try:
                msg = await asyncio.wait_for(ws.receive(), cfg.idle_timeout_s)
            except asyncio.TimeoutError:
                raise ProtocolError(f"nothing received for {cfg.idle_timeout_s:g} s; the stream is dropped",
                                    CLOSE_TIMEOUT) from None
            if msg["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(msg.get("code", 1000))
            if msg.get("bytes") is not None:
                session.frame(msg["bytes"])
                await asyncio.sleep(0)  # let the workers and the sender run between frames
                continue
            try:
                body = json.loads(msg.get("text") or "")
            except json.JSONDecodeError:
                raise ProtocolError('a text frame must be JSON; send {"type": "end"} to end the call') from None
            if not isinstance(body, dict) or body.get("type") != "end":
                raise ProtocolError('after start, send binary PCM frames and finally {"type": "end"}')
            await session.finish()
            break
        for conn_ in list(session.connections):
            conn_.queue.put_nowait(None)
        await sender
        await ws.close(code=1000)
    except ProtocolError as e:
        if sender is not None:
            sender.cancel()
        await _send_error(ws, str(e), e.code, session.seq + 1 if session else 0, session.t if session else 0.0)
    except WebSocketDisconnect:
        log.info("stream %s: the platform disconnected", session.call_id if session else "?")
    except Exception as e:  # noqa: BLE001
        log.exception("stream failed")
        await _send_error(ws, f"internal error ({type(e).__name__}); the call was not saved: send it again with "
                              f"POST /tickets", 1011)
    finally:
        if sender is not None and not sender.done():
            sender.cancel()
        if session is not None:
            session.close()
            if LIVE.get(session.call_id) is session:
                del LIVE[session.call_id]


async def watch_endpoint(ws: Any, call_id: str) -> None:
    """``/stream/{call_id}/watch``: an agent or supervisor follows a live call (events so far replayed first)."""
    from starlette.websockets import WebSocketDisconnect

    import bentoml

    rt = bentoml.get_current_service().runtime
    await ws.accept()
    conn = None
    session = None
    try:
        key = _verify(rt, _bearer(ws) or ws.query_params.get("key"), "update_ticket", "`?key=` in the URL")
        session = LIVE.get(call_id)
        if session is None:
            raise ProtocolError(f"no live call {call_id!r}; GET /live lists the live calls", CLOSE_NOT_FOUND)
        conn = session.subscribe(key.role)
        pump = asyncio.create_task(_pump(ws, conn))
        listen = asyncio.create_task(ws.receive())
        done, _ = await asyncio.wait({pump, listen}, return_when=asyncio.FIRST_COMPLETED)
        if listen in done:  # the watcher left (or sent something: watchers only listen)
            pump.cancel()
            return
        listen.cancel()
        await ws.close(code=1000)
    except ProtocolError as e:
        await _send_error(ws, str(e), e.code)
    except WebSocketDisconnect:
        pass
    finally:
        if session is not None and conn is not None and conn in session.connections:
            session.connections.remove(conn)


def live_calls(role: str) -> list[dict]:
    from serving.auth import can

    unmasked = can(role, "read_unmasked")
    return [s.summary(unmasked) for s in list(LIVE.values()) if not s.ended]
