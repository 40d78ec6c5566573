"""``hotline stream FILE.wav --url ws://127.0.0.1:3000/stream --key K``: play a recording to the live-stream endpoint
in real time (or ``--speed`` times faster) and print every event as one JSON line.

A 16-bit PCM WAV at 8 or 16 kHz with one or two channels is sent as it is (so ``POST /tickets`` of the same file and
``call_id`` later answers the streamed ticket); any other file is converted to 16 kHz 16-bit PCM first. Exit status 0
when the ticket event arrived, 1 on an error event or a close without a ticket. Used by scripts/bench_stream.py too.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
import time
import uuid
import wave
from pathlib import Path
from typing import Any, Callable


def read_pcm(path: str | Path) -> tuple[bytes, int, int]:
    """(interleaved 16-bit PCM, sample rate, channels) of ``path``; converted to 16 kHz when it is not already
    16-bit PCM at 8 or 16 kHz with 1 or 2 channels."""
    data = Path(path).read_bytes()
    try:
        with wave.open(io.BytesIO(data)) as w:
            if w.getsampwidth() == 2 and w.getframerate() in (8000, 16000) and w.getnchannels() in (1, 2):
                return w.readframes(w.getnframes()), w.getframerate(), w.getnchannels()
    except (wave.Error, EOFError):
        pass
    import numpy as np

    from data.audio import load_audio_bytes

    audio = load_audio_bytes(data, 16000, mono=False, name=str(path), allow_silent=True)[:2]
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").T.tobytes()
    return pcm, 16000, audio.shape[0]


async def play(url: str, key: str, pcm: bytes, rate: int, channels: int, call_id: str, caller: str | None = None,
               speed: float = 1.0, chunk_ms: int = 100, on_event: Callable[[dict, float], Any] | None = None,
               ) -> list[dict]:
    """Stream ``pcm`` and collect the events (``on_event(event, wall_time)`` as each arrives). ``speed`` <= 0: as
    fast as possible. Frame k is sent at ``start + k * chunk_ms / speed``; the events' send times are returned in
    the ``sent_at`` of the last frame of each audio second (``events`` carry their arrival in ``_wall``)."""
    import websockets

    width = 2 * channels
    n = max(1, rate * chunk_ms // 1000) * width
    events: list[dict] = []
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {key}"}, max_size=2**24) as ws:
        await ws.send(json.dumps({"type": "start", "call_id": call_id, "caller": caller, "sample_rate": rate,
                                  "channels": channels, "agent_channel": 0, "customer_channel": 1 if channels == 2
                                  else 0}))
        t0 = time.perf_counter()

        async def send() -> None:
            for k, i in enumerate(range(0, len(pcm), n)):
                if speed > 0:
                    delay = t0 + k * chunk_ms / 1000 / speed - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                await ws.send(pcm[i : i + n])
            await ws.send(json.dumps({"type": "end"}))

        sender = asyncio.create_task(send())
        try:
            async for msg in ws:
                ev = json.loads(msg)
                ev["_wall"] = time.perf_counter() - t0
                events.append(ev)
                if on_event:
                    on_event(ev, ev["_wall"])
        except websockets.ConnectionClosed:
            pass
        finally:
            if not sender.done():
                sender.cancel()
    return events


def _run(args: argparse.Namespace) -> int:
    pcm, rate, channels = read_pcm(args.file)

    def show(ev: dict, _: float) -> None:
        print(json.dumps({k: v for k, v in ev.items() if k != "_wall"}, ensure_ascii=False), flush=True)

    try:
        events = asyncio.run(play(args.url, args.key, pcm, rate, channels, args.call_id or f"cli-{uuid.uuid4().hex[:12]}",
                                  args.caller, args.speed, args.chunk_ms, show))
    except OSError as e:
        print(f"error: cannot reach {args.url}: {e} (is the service running? `make serve`)", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - websockets' handshake refusals
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0 if any(e.get("type") == "ticket" for e in events) else 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``stream`` to a ``hotline`` subparsers object (sets ``func(args) -> int``)."""
    p = sub.add_parser("stream", help="play a WAV file to the live-stream endpoint and print the events (JSON lines)")
    p.add_argument("file", help="a recording: 16-bit PCM WAV at 8/16 kHz is sent as is; other files are converted")
    p.add_argument("--url", default="ws://127.0.0.1:3000/stream", help="the /stream endpoint")
    p.add_argument("--key", required=True, help="a platform key (`hotline keys create --role platform`)")
    p.add_argument("--call-id", default=None, help="the call's id (default: a fresh one)")
    p.add_argument("--caller", default=None, help="the caller's phone number")
    p.add_argument("--speed", type=float, default=1.0, help="times real time (0: as fast as possible)")
    p.add_argument("--chunk-ms", type=int, default=100, help="ms of audio per frame (20 to 200)")
    p.set_defaults(func=_run)
