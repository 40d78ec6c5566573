"""Benchmark of the hotline service over HTTP (a benchmark, not a timed test).

Measures, against a real ``bentoml serve serving.service:Hotline``:

- the time from upload to ticket (``POST /tickets``, one request each) for synthetic stereo calls of 30, 60 and 180 s
  (concatenated espeak-ng turns: a Mandarin agent on channel 0, a customer on channel 1, through the telephone
  channel);
- ``POST /route`` latency for a 5 s utterance at 1 and 4 concurrent clients (p50/p95 over a bounded number of
  requests per level);
- the machine (CPU cores, load average before and after) and the models the service reports in ``/readyz``.

Prints a table and writes JSON (default ``bench_service.json``; ``bench_*.json`` is git-ignored).

Usage::

    # start the service here (champions from $MLFLOW_TRACKING_URI; a tiny intent champion, and tiny dialect and
    # emotion heads on the real whisper-base encoder with --speech-heads, are trained into a temporary store
    # when the registry has none):
    .venv/bin/python scripts/bench_service.py --speech-heads
    # against a running service:
    .venv/bin/python scripts/bench_service.py --url http://127.0.0.1:3000 --key <platform key>
    # seconds-long check that the script still works:
    .venv/bin/python scripts/bench_service.py --smoke --url ... --key ...

Every wait is bounded: ``--ready-timeout`` for start-up, ``--request-timeout`` per request.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from serving.devserver import Service, wait_ready  # noqa: E402

PHONE_RATE = 8000  # Hz: the telephone channel's rate, the rate of the uploads
FULL = {"call_seconds": [30, 60, 180], "route_seconds": 5.0, "concurrency": [1, 4], "route_requests": 12}
SMOKE = {"call_seconds": [4], "route_seconds": 2.0, "concurrency": [1, 2], "route_requests": 2}
AGENT_TURNS = ["您好，顺达商城客服，工号五三七零，请问有什么可以帮您？", "请您提供一下订单号，我帮您查询。",
               "非常抱歉给您带来不便，我马上帮您登记。", "好的，已经为您加急处理，请您保持电话畅通。"]
CUSTOMER_TURNS = ["我的快递一个星期了还没到，我要投诉。", "订单号二零二四零五一八零零一，你们一直说在路上。",
                  "上次打电话也是这么说的，到底什么时候能到？", "好吧，那我等你们的电话。"]
ROUTE_TEXT = "喂，你好，我的快递一个星期了还没到，订单号二零二四零五一八零零一，我要投诉你们。"


# -- synthetic audio ------------------------------------------------------------------------------------------------
def _turn(text: str, dialect: str, emotion: str, seed: int, female: bool) -> np.ndarray:
    """One espeak-ng turn through the telephone channel, float32 at 8 kHz."""
    from data.synth.channel import ChannelConfig, telephone_channel
    from data.synth.tts import ESPEAK_SAMPLE_RATE, make_speakers, prosody_for, synthesize

    spk = next(s for s in make_speakers(8, seed) if (s.gender == "female") == female)
    audio = synthesize(text, dialect, spk, prosody_for(emotion, spk, random.Random(seed)))
    cfg = ChannelConfig(codec="alaw", snr_db=(30.0, 30.0), noise_kinds=("pink",), noise_weights=(1.0,), packet_loss=0.0)
    phone, _ = telephone_channel(audio, ESPEAK_SAMPLE_RATE, np.random.default_rng(seed), cfg)
    return phone.astype(np.float32)


def stereo_call(seconds: float, seed: int = 0) -> np.ndarray:
    """A call of ``seconds`` (trimmed): alternating agent (channel 0) and customer (channel 1) turns, [2, n] float32."""
    agent = [_turn(t, "mandarin", "neutral", seed + 1, True) for t in AGENT_TURNS]
    customer = [_turn(t, "mandarin", "angry", seed + 2, False) for t in CUSTOMER_TURNS]
    n = int(seconds * PHONE_RATE)
    out = np.zeros((2, n), np.float32)
    pos, i = int(0.3 * PHONE_RATE), 0
    while pos < n:
        ch, turns = (0, agent) if i % 2 == 0 else (1, customer)
        a = turns[(i // 2) % len(turns)]
        k = min(len(a), n - pos)
        out[ch, pos:pos + k] = a[:k]
        pos += len(a) + int(0.5 * PHONE_RATE)
        i += 1
    return out


def utterance(seconds: float, seed: int = 0) -> np.ndarray:
    """A caller's first utterance of exactly ``seconds`` (espeak Mandarin, repeated or trimmed), float32 at 8 kHz."""
    a = _turn(ROUTE_TEXT, "mandarin", "angry", seed, False)
    n = int(seconds * PHONE_RATE)
    reps = int(np.ceil(n / len(a)))
    return np.tile(a, reps)[:n]


def wav_bytes(audio: np.ndarray, rate: int = PHONE_RATE) -> bytes:
    """16-bit PCM WAV bytes of (samples,) or (channels, samples) float audio at ``rate`` Hz."""
    from data.audio import wav_bytes as encode

    return encode(audio, rate)


# -- the service ----------------------------------------------------------------------------------------------------
def _train_tiny(root: Path, speech_heads: bool) -> None:
    """A tiny intent champion (and with ``speech_heads`` tiny dialect and emotion heads on the real whisper-base
    encoder, trained on a tiny synthetic corpus) into the MLflow store under ``root``."""
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    os.environ["HOTLINE_ARTIFACT_ROOT"] = str(root / "artifacts")
    from training.intent import main as train_intent

    print("bench: training a tiny intent champion (no champion in the registry)", file=sys.stderr, flush=True)
    assert train_intent(["data.n_train=44", "data.n_validation=22", "data.n_test=22", "trainer.max_steps=2",
                         "trainer.progress_bar=false", "model.embed_dim=16", "model.conv_channels=16",
                         "model.hidden=16"]) == 0
    if not speech_heads:
        return
    from data.synth.corpus import synthesize_corpus
    from training.dialect import main as train_dialect
    from training.emotion import main as train_emotion

    print("bench: training tiny dialect and emotion heads on whisper-base", file=sys.stderr, flush=True)
    corpus = root / "corpus"
    synthesize_corpus(corpus, size="tiny", seed=7, workers=2, build_dataset=False, progress=False)
    configs = REPO / "training" / "configs"
    common = [f"data.corpus_dir={corpus}", "model.layers=[2,4]", "model.max_seconds=4.0", "data.batch_size=16",
              "threads=2", f"data.cache_dir={root / 'cache'}", "trainer.max_epochs=20"]
    assert train_dialect(["--config", str(configs / "dialect.yaml"), "--out", str(root / "dialect"), *common,
                          "evaluation.realspeech=null"]) == 0
    assert train_emotion(["--config", str(configs / "emotion.yaml"), "--out", str(root / "emotion"), *common,
                          "model.hidden=32", "evaluation.max_calls=0", "evaluation.ablation=false",
                          "evaluation.weibo_path=null"]) == 0


class _Started:
    """The service started by the benchmark (serving/devserver.py's ``Service``: its whole process tree is stopped,
    always), on the registry's champions or tiny ones trained into a temporary store, with a fresh platform key."""

    def __init__(self, args) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="bench_service_"))
        from models.champions import champion_version

        if champion_version("intent") is None:
            _train_tiny(self.tmp / "mlflow", args.speech_heads)
        self.db = os.environ.get("HOTLINE_DATABASE_URL") or f"sqlite:///{self.tmp / 'hotline.db'}"
        from serving.store import Store

        store = Store(self.db)
        store.upgrade()
        _, self.key = store.create_key("platform", "bench")
        store.close()
        self.service = Service({"HOTLINE_DATABASE_URL": self.db}, self.tmp / "service.log").start()
        self.url = self.service.url

    def wait_ready(self, timeout_s: float) -> dict:
        return self.service.wait_ready(timeout_s)

    def stop(self) -> None:
        self.service.stop()


# -- measurements ---------------------------------------------------------------------------------------------------
def _pct(xs: Sequence[float], q: float) -> float:
    s = sorted(xs)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q
    lo, hi = int(np.floor(k)), int(np.ceil(k))
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def bench_tickets(url: str, headers: dict, seconds_list: Sequence[float], timeout_s: float) -> list[dict]:
    import httpx

    rows = []
    for seconds in seconds_list:
        audio = stereo_call(seconds, seed=int(seconds))
        data = wav_bytes(audio)
        call_id = f"bench-{int(seconds)}s-{uuid.uuid4().hex[:10]}"
        t = time.perf_counter()
        r = httpx.post(f"{url}/tickets", headers=headers, data={"call_id": call_id},
                       files={"audio": (f"{call_id}.wav", data, "audio/wav")}, timeout=timeout_s)
        dt = time.perf_counter() - t
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        rows.append({"call_seconds": seconds, "status": r.status_code, "seconds": round(dt, 2),
                     "real_time_factor": round(dt / seconds, 3), "upload_bytes": len(data),
                     "segments": len(body.get("transcript") or []), "error": body.get("error")})
        print(f"bench: ticket from a {seconds:.0f} s call: {r.status_code} in {dt:.1f} s", file=sys.stderr, flush=True)
    return rows


def bench_route(url: str, headers: dict, seconds: float, concurrency: Sequence[int], requests: int,
                timeout_s: float) -> list[dict]:
    import httpx

    data = wav_bytes(utterance(seconds, seed=5))
    rows = []
    for c in concurrency:
        latencies: list[float] = []
        statuses: dict[str, int] = {}
        lock = threading.Lock()
        todo = list(range(requests))

        def worker() -> None:
            with httpx.Client(timeout=timeout_s) as http:
                while True:
                    with lock:
                        if not todo:
                            return
                        todo.pop()
                    t = time.perf_counter()
                    try:
                        r = http.post(f"{url}/route", headers=headers, data={"caller": "13812345678"},
                                      files={"audio": ("first.wav", data, "audio/wav")})
                        code = str(r.status_code)
                    except httpx.HTTPError as e:
                        code = type(e).__name__
                    dt = time.perf_counter() - t
                    with lock:
                        statuses[code] = statuses.get(code, 0) + 1
                        if code == "200":
                            latencies.append(dt)

        t0 = time.perf_counter()
        threads = [threading.Thread(target=worker, daemon=True) for _ in range(c)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=timeout_s * requests + 60)
        wall = time.perf_counter() - t0
        rows.append({"concurrency": c, "requests": requests, "statuses": statuses, "p50_s": round(_pct(latencies, 0.5), 3),
                     "p95_s": round(_pct(latencies, 0.95), 3), "mean_s": round(statistics.fmean(latencies), 3)
                     if latencies else float("nan"), "throughput_rps": round(len(latencies) / wall, 3)})
        print(f"bench: /route x{requests} at concurrency {c}: {statuses}", file=sys.stderr, flush=True)
    return rows


def machine() -> dict:
    info: dict[str, Any] = {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                            "python": platform.python_version()}
    try:
        info["affinity_cores"] = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        pass
    try:
        info["cpu_model"] = next(line.split(":", 1)[1].strip() for line in
                                 Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return info


def models_from_readyz(ready: dict) -> dict:
    """What /readyz says of each model (version, source, engine; absent ones say so)."""
    models = ready.get("models") if isinstance(ready, dict) else None
    if not isinstance(models, dict):
        return {"readyz": ready}
    out = {}
    for name, v in models.items():
        if isinstance(v, dict):
            out[name] = {k: v[k] for k in ("version", "source", "engine", "device", "compute_type", "absent", "status")
                         if k in v}
        else:
            out[name] = v
    return out


def table(result: dict) -> str:
    lines = [f"machine: {result['machine'].get('cpu_count')} cores ({result['machine'].get('cpu_model', '?')}), "
             f"load average before {result['load_before']}, after {result['load_after']}",
             "models: " + ", ".join(f"{k}={v.get('version', v) if isinstance(v, dict) else v}"
                                    for k, v in result["models"].items()),
             "", f"{'upload -> ticket':<24}{'status':>8}{'seconds':>10}{'x real time':>13}{'segments':>10}"]
    for r in result["tickets"]:
        lines.append(f"{str(r['call_seconds']) + ' s stereo call':<24}{r['status']:>8}{r['seconds']:>10.1f}"
                     f"{r['real_time_factor']:>13.2f}{r['segments']:>10}")
    lines += ["", f"{'/route ' + str(result['route_seconds']) + ' s utterance':<24}{'requests':>9}{'p50 s':>9}"
              f"{'p95 s':>9}{'req/s':>8}  statuses"]
    for r in result["route"]:
        lines.append(f"{str(r['concurrency']) + ' concurrent':<24}{r['requests']:>9}{r['p50_s']:>9.2f}{r['p95_s']:>9.2f}"
                     f"{r['throughput_rps']:>8.2f}  {r['statuses']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="a running service (default: start one here)")
    p.add_argument("--key", help="a platform key for --url")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script, measures nothing useful")
    p.add_argument("--calls", type=float, nargs="+", help="call lengths in s (default 30 60 180)")
    p.add_argument("--route-requests", type=int, help="requests per concurrency level (default 12)")
    p.add_argument("--concurrency", type=int, nargs="+", help="route client counts (default 1 4)")
    p.add_argument("--speech-heads", action="store_true",
                   help="when starting with an empty registry, also train tiny dialect and emotion heads")
    p.add_argument("--out", default="bench_service.json", help="JSON results (default bench_service.json)")
    p.add_argument("--ready-timeout", type=float, default=600.0, help="s to wait for /readyz when starting")
    p.add_argument("--request-timeout", type=float, default=900.0, help="s one request may take")
    args = p.parse_args(argv)
    if bool(args.url) != bool(args.key):
        p.error("--url and --key go together")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sizes = dict(SMOKE if args.smoke else FULL)
    if args.calls:
        sizes["call_seconds"] = args.calls
    if args.route_requests:
        sizes["route_requests"] = args.route_requests
    if args.concurrency:
        sizes["concurrency"] = args.concurrency

    started = None
    try:
        if args.url:
            url, key = args.url.rstrip("/"), args.key
            t = time.perf_counter()
            ready = wait_ready(url, args.ready_timeout)
        else:
            started = _Started(args)
            url, key = started.url, started.key
            t = time.perf_counter()
            ready = started.wait_ready(args.ready_timeout)
        ready_s = time.perf_counter() - t
        headers = {"Authorization": f"Bearer {key}"}
        load_before = [round(x, 2) for x in os.getloadavg()]
        t = time.perf_counter()
        tickets = bench_tickets(url, headers, sizes["call_seconds"], args.request_timeout)
        route = bench_route(url, headers, sizes["route_seconds"], sizes["concurrency"], sizes["route_requests"],
                            args.request_timeout)
        result = {"command": " ".join(["scripts/bench_service.py", *(argv if argv is not None else sys.argv[1:])]),
                  "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "smoke": args.smoke, "url": url,
                  "started_here": started is not None, "ready_wait_s": round(ready_s, 1),
                  "machine": machine(), "load_before": load_before,
                  "load_after": [round(x, 2) for x in os.getloadavg()], "bench_seconds": round(time.perf_counter() - t, 1),
                  "models": models_from_readyz(ready), "route_seconds": sizes["route_seconds"],
                  "tickets": tickets, "route": route}
    finally:
        if started is not None:
            started.stop()
    Path(args.out).write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    print(table(result))
    print(f"\nwritten {args.out}")
    ok = all(r["status"] in (200, 201) for r in tickets) and all(r["statuses"].get("200") for r in route)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
