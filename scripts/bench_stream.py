"""Live-stream latency and capacity on this machine (issue 13): ``.venv/bin/python scripts/bench_stream.py``.

Starts the entry service in-process (uvicorn on a free loopback port, the model services built in the same process
as under ``--development``: the pretrained whisper-base recogniser, a tiny intent champion trained into a temporary
MLflow store unless ``--tracking-uri`` names one with champions) and plays the synthetic two-channel angry call of
tests/test_stream.py to ``/stream`` in real time with ``serving/stream_client.py``. Prints and writes (``--out``):

- final latency: from the end of a spoken segment (its VAD end, in call time = the wall time it was sent) to its
  ``final`` event, p50 and p95 over all segments of one stream (it includes the ``gap_s`` of silence VAD waits for);
- alert latency: from the end of the segment whose words raised the alert to the ``alert`` event. espeak Mandarin is
  not understood by zero-shot whisper-base, so ``--oracle`` swaps in the test's oracle recogniser (script words; it
  measures the stream's own path, not whisper) for this figure; without it the alert may never come (reported null);
- capacity: 1, 2, 3, ... concurrent real-time streams (up to ``--max-streams``) until the p95 final latency passes
  ``--limit-s`` (3 s); the last count under it is what one machine holds.

The first step plays the call ``--repeat`` times one after the other (more segments for its p50/p95). One stream as
fast as possible goes first, unmeasured (``--no-warmup`` to skip): it loads the knowledge base and warms the models,
which the first stream after a start pays once. In-process, each decode's wait for a slot and its duration
(serving/stream.py's DecodeGate, logged at DEBUG) are summed up per kind ("stages").

``--serve`` measures the real service instead: ``bentoml serve serving.service:Hotline`` as a subprocess (the model
services in their own processes; the tiny intent champion and a platform key made first; the whole process tree killed
at the end: serving/devserver.py's ``Service``). ``--url ws://HOST:PORT/stream --key K`` measures a
service already running. ``--oracle`` needs the in-process service (it swaps the recogniser object).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from serving.devserver import Service, free_port  # noqa: E402


def pct(xs: list[float], q: float) -> float | None:
    import numpy as np

    return round(float(np.percentile(xs, q)), 3) if xs else None


def serve(port: int):
    import uvicorn

    from serving.service import Hotline

    server = uvicorn.Server(uvicorn.Config(Hotline.to_asgi(), host="127.0.0.1", port=port, log_level="warning",
                                           ws="websockets", lifespan="on"))
    threading.Thread(target=server.run, daemon=True).start()
    return server


class StageLog:
    """Collects serving/stream.py's per-decode DEBUG lines (kind, channel, wait for a slot, decode time)."""

    def __init__(self) -> None:
        import logging

        self.rows: list[tuple[str, str, float, float]] = []
        handler = logging.Handler(logging.DEBUG)
        handler.emit = self._emit  # type: ignore[method-assign]
        logger = logging.getLogger("hotline.stream")
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        logger.addHandler(handler)

    def _emit(self, record) -> None:
        if "waited" in str(record.msg) and len(record.args or ()) >= 5:
            _, kind, channel, wait, took = record.args[:5]
            self.rows.append((kind, channel, float(wait), float(took)))

    def take(self) -> dict:
        rows, self.rows = self.rows, []
        out = {}
        for kind in ("final", "partial"):
            xs = [r for r in rows if r[0] == kind]
            out[kind] = {"n": len(xs), "wait_p50_s": pct([r[2] for r in xs], 50), "wait_p95_s": pct([r[2] for r in xs], 95),
                         "decode_p50_s": pct([r[3] for r in xs], 50), "decode_p95_s": pct([r[3] for r in xs], 95)}
        return out


def measure(events: list[dict]) -> dict:
    finals = [e for e in events if e["type"] == "final"]
    lat = [e["_wall"] - e["end"] for e in finals]
    alerts = []
    for a in (e for e in events if e["type"] == "alert"):
        seg = [f for f in finals if f["start"] <= a["start"] + 0.01 and f["channel"] == "customer"]
        if seg:
            alerts.append(a["_wall"] - seg[-1]["end"])
    ticket = next((e for e in events if e["type"] == "ticket"), None)
    last_audio = max((e["t"] for e in events), default=0.0)
    return {"final_latency_s": lat, "alert_latency_s": alerts, "finals": len(finals),
            "partials": sum(1 for e in events if e["type"] == "partial"),
            "ticket_after_end_s": round(ticket["_wall"] - last_audio, 3) if ticket else None,
            "errors": [e["error"] for e in events if e["type"] == "error"]}


async def ramp(url: str, key: str, pcm: bytes, n: int, tag: str, speed: float = 1.0) -> list[dict]:
    from serving.stream_client import play

    runs = [play(url, key, pcm, 16000, 2, f"bench-{tag}-{n}-{i}", None, speed, 100) for i in range(n)]
    return [measure(ev) for ev in await asyncio.gather(*runs)]


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def train_tiny_intent() -> None:
    from training.intent import main as train_intent

    assert train_intent(["data.n_train=44", "data.n_validation=22", "data.n_test=22", "trainer.max_steps=2",
                         "trainer.progress_bar=false", "model.embed_dim=16", "model.conv_channels=16",
                         "model.hidden=16"]) == 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--max-streams", type=int, default=4, help="ramp 1..N concurrent real-time streams at most")
    ap.add_argument("--limit-s", type=float, default=3.0, help="p95 final latency that ends the ramp")
    ap.add_argument("--oracle", action="store_true", help="the test's oracle recogniser instead of whisper-base")
    ap.add_argument("--tracking-uri", default=None, help="an MLflow store with champions (default: a fresh tiny one)")
    ap.add_argument("--out", default="bench_stream.json")
    ap.add_argument("--repeat", type=int, default=2, help="plays of the call one after the other for 1 stream")
    ap.add_argument("--no-warmup", action="store_true", help="measure from the first stream after the start")
    ap.add_argument("--serve", action="store_true", help="start `bentoml serve serving.service:Hotline` and measure it")
    ap.add_argument("--url", default=None, help="the /stream endpoint of a running service (with --key)")
    ap.add_argument("--key", default=None, help="a platform key of the service at --url")
    args = ap.parse_args(argv)
    if args.oracle and (args.serve or args.url):
        ap.error("--oracle swaps the recogniser of the in-process service; it cannot with --serve or --url")
    if args.url and not args.key:
        ap.error("--url needs --key (a platform key: `hotline keys create --role platform`)")

    root = Path(tempfile.mkdtemp(prefix="bench_stream_"))
    os.environ["HOTLINE_DATABASE_URL"] = f"sqlite:///{root}/hotline.db"
    if args.tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = args.tracking_uri
    elif not args.url:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root}/mlflow.db"
        os.environ["HOTLINE_ARTIFACT_ROOT"] = str(root / "artifacts")
        train_tiny_intent()
    from tests.test_stream import OracleRecognizer, synth_call

    pcm16, clips = synth_call()
    pcm = pcm16.T.tobytes()
    seconds = pcm16.shape[1] / 16000
    service, server, stages = None, None, None
    if args.url:
        url, key, mode = args.url, args.key, f"service at {args.url}"
    elif args.serve:
        from serving.store import Store

        store = Store(os.environ["HOTLINE_DATABASE_URL"])
        store.upgrade()
        key = store.create_key("platform", "bench")[1]
        store.close()
        env = {k: os.environ[k] for k in ("MLFLOW_TRACKING_URI", "HOTLINE_ARTIFACT_ROOT", "HOTLINE_DATABASE_URL")
               if k in os.environ}
        service = Service({**env, "HOTLINE_RECOGNITION_GPUS": "0"}, root / "service.log").start()
        try:
            service.wait_ready()
        except BaseException:
            service.kill()
            raise
        url, mode = service.url.replace("http://", "ws://") + "/stream", "bentoml serve (model services in their own processes)"
    else:
        port = free_port()
        server = serve(port)
        import urllib.request

        for _ in range(600):
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=30).status == 200:
                    break
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.5)
        from serving.runtime import Runtime

        rt = next(o for o in gc.get_objects() if isinstance(o, Runtime) and o._pipeline is not None)
        if args.oracle:
            rt._pipeline.asr = OracleRecognizer(clips)
            rt._pipeline._asr_batch = rt._pipeline._asr_dialect = True
        key = rt.store.create_key("platform", "bench")[1]
        url, mode = f"ws://127.0.0.1:{port}/stream", "in-process (Hotline.to_asgi() under uvicorn, model services in the same process)"
        stages = StageLog()
    recogniser = "oracle" if args.oracle else "the service's asr champion or pretrained whisper-base"
    print(f"call: {seconds:.1f} s, 2 channels, 16 kHz; recogniser: {recogniser}; {mode}; cpus: {os.cpu_count()}; "
          f"load average {load_avg()}", flush=True)
    try:
        return _run(args, url, key, pcm, seconds, recogniser, mode, stages)
    finally:
        if server is not None:
            server.should_exit = True
        if service is not None:
            service.kill()


def _run(args, url: str, key: str, pcm: bytes, seconds: float, recogniser: str, mode: str, stages) -> int:
    if not args.no_warmup:
        t = time.time()
        asyncio.run(ramp(url, key, pcm, 1, f"warmup{int(t)}", speed=0))
        print(f"warm-up stream (as fast as possible, not measured): {time.time() - t:.1f} s", flush=True)
        if stages is not None:
            stages.take()
    steps = []
    for n in range(1, args.max_streams + 1):
        t = time.time()
        before = load_avg()
        runs = []
        for k in range(args.repeat if n == 1 else 1):
            runs += asyncio.run(ramp(url, key, pcm, n, f"{int(t)}-{k}"))
        lat = [x for r in runs for x in r["final_latency_s"]]
        alert = [x for r in runs for x in r["alert_latency_s"]]
        step = {"streams": n, "plays": len(runs), "final_p50_s": pct(lat, 50), "final_p95_s": pct(lat, 95),
                "final_max_s": round(max(lat), 3) if lat else None, "finals": len(lat),
                "partials": sum(r["partials"] for r in runs),
                "alert_p50_s": pct(alert, 50), "alerts": len(alert),
                "ticket_after_end_s": [r["ticket_after_end_s"] for r in runs],
                "errors": sum(len(r["errors"]) for r in runs), "wall_s": round(time.time() - t, 1),
                "load_avg_before": before, "load_avg_after": load_avg()}
        if stages is not None:
            step["stages"] = stages.take()
        steps.append(step)
        print(json.dumps(step, ensure_ascii=False), flush=True)
        if step["final_p95_s"] is None or step["final_p95_s"] > args.limit_s:
            break
    held = max((s["streams"] for s in steps if s["final_p95_s"] is not None and s["final_p95_s"] <= args.limit_s),
               default=0)
    one = steps[0]
    result = {"recogniser": recogniser, "mode": mode, "cpus": os.cpu_count(), "call_s": round(seconds, 2),
              "final_latency_p50_s": one["final_p50_s"], "final_latency_p95_s": one["final_p95_s"],
              "alert_latency_p50_s": one["alert_p50_s"], "streams_held_under_limit": held, "limit_s": args.limit_s,
              "ramp": steps}
    print("\n| streams | finals | final p50 (s) | final p95 (s) | alert p50 (s) | ticket after end (s) | load avg |")
    print("|---|---|---|---|---|---|---|")
    for s in steps:
        tickets = [x for x in s["ticket_after_end_s"] if x is not None]
        print(f"| {s['streams']} | {s['finals']} | {s['final_p50_s']} | {s['final_p95_s']} | {s['alert_p50_s']} | "
              f"{max(tickets) if tickets else None} | {s['load_avg_before'][0]} -> {s['load_avg_after'][0]} |")
    print(f"\nconcurrent real-time streams held with p95 final latency <= {args.limit_s:g} s: {held}")
    Path(args.out).write_text(json.dumps(result, ensure_ascii=False, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
