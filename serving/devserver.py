"""Development and test helper: the real service as a subprocess.

Starts ``bentoml serve serving.service:Hotline`` (the model services in their own worker processes) on a free loopback
port, waits for ``/readyz``, and stops or kills the whole process tree. Used by the end-to-end and crash tests
(tests/test_service_e2e.py, tests/test_service_crash.py) and by the benchmarks (scripts/bench_service.py,
scripts/bench_stream.py). It is not part of the served application: nothing in the service imports it, and it
imports nothing of tests or training.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # the repository root: the service's working directory
BENTOML = Path(sys.executable).with_name("bentoml")  # the bentoml of the running interpreter's environment
SERVICE = "serving.service:Hotline"
HOST = "127.0.0.1"

READY_TIMEOUT_S = float(os.environ.get("HOTLINE_TEST_READY_TIMEOUT_S", "300"))  # a loaded 2-core machine: 15-60 s
READY_POLL_S = 1.0  # pause between two /readyz polls
READYZ_REQUEST_TIMEOUT_S = 10.0  # one /readyz request
STOP_GRACE_S = 20.0  # after SIGTERM, how long the leader may take to stop its workers before SIGKILL
STOP_LEFTOVER_WAIT_S = 5.0  # after the leader, how long the rest of the tree may take to exit before SIGKILL
REAP_TIMEOUT_S = 30.0  # longest wait for killed processes to go
LOG_TAIL_LINES = 60  # lines of the log in error messages


def free_port() -> int:
    """A TCP port free on the loopback interface now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_ready(url: str, timeout_s: float = READY_TIMEOUT_S, proc: subprocess.Popen | None = None,
               tail=None) -> dict:
    """Poll ``{url}/readyz`` until 200 and return its JSON (``{"raw": text}`` when not JSON).

    Fails early when ``proc`` (the service's leader, if started here) exits, and after ``timeout_s`` with the last
    answer; ``tail`` (a callable returning the log's last lines) is appended to the error."""
    import httpx

    def _tail() -> str:
        return f":\n{tail()}" if tail is not None else ""

    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the service exited with {proc.returncode} before it was ready{_tail()}")
        try:
            r = httpx.get(f"{url}/readyz", timeout=READYZ_REQUEST_TIMEOUT_S)
            last = f"{r.status_code} {r.text[:300]}"
            if r.status_code == 200:
                try:
                    return r.json()
                except ValueError:
                    return {"raw": r.text}
        except httpx.HTTPError as e:
            last = repr(e)
        time.sleep(READY_POLL_S)
    raise TimeoutError(f"{url}/readyz not 200 within {timeout_s:.0f} s (last: {last}){_tail()}")


class Service:
    """``bentoml serve serving.service:Hotline`` in its own session (process group) on a free loopback port.

    ``env`` is laid over this process's environment (plus ``HF_HUB_OFFLINE=1``, ``TOKENIZERS_PARALLELISM=false`` and
    ``PYTHONUNBUFFERED=1``); stdout and stderr go to ``log_path`` (appended).

    Its workers are not in that group (BentoML's arbiter starts each in a session of its own): :meth:`kill` and
    :meth:`stop` signal the whole process tree, found by parentage, and check that nothing is left."""

    def __init__(self, env: dict[str, str], log_path: Path, port: int | None = None):
        self.env = env
        self.log_path = Path(log_path)
        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Service":
        full = {**os.environ, **self.env, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                "PYTHONUNBUFFERED": "1"}
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(BENTOML), "serve", SERVICE, "--host", HOST, "--port", str(self.port)],
            cwd=REPO, env=full, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        return self

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> dict:
        """Poll ``/readyz`` until 200 (its JSON details), or fail with the log's tail after ``timeout_s``."""
        return wait_ready(self.url, timeout_s, self.proc, self.tail)

    def processes(self) -> list:
        """The leader and every descendant (psutil.Process). BentoML's arbiter starts each worker in a session of its
        own (setsid), so the leader's process group does not hold the workers: they are found by parentage."""
        import psutil

        if self.proc is None:
            return []
        try:
            leader = psutil.Process(self.proc.pid)
            return [leader, *leader.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill(self, sig: int = signal.SIGKILL) -> list[int]:
        """Send ``sig`` to the whole service at once: the leader's process group and every worker (each in its own
        session and group); reap the leader; returns the pids signalled. Workers left alive after
        ``REAP_TIMEOUT_S`` are an error."""
        import psutil

        procs = self.processes()
        groups = set()
        for p in procs:
            try:
                groups.add(os.getpgid(p.pid))
            except ProcessLookupError:
                pass
        for g in groups:
            try:
                os.killpg(g, sig)
            except ProcessLookupError:
                pass
        for p in procs:  # in case a worker shares its group with something else
            try:
                p.send_signal(sig)
            except psutil.NoSuchProcess:
                pass
        if self.proc is not None:
            try:
                self.proc.wait(timeout=REAP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
        _, alive = psutil.wait_procs([p for p in procs if p.pid != getattr(self.proc, "pid", None)],
                                     timeout=REAP_TIMEOUT_S)
        if alive:
            raise RuntimeError(f"service processes still alive after signal {sig}: {[p.pid for p in alive]}")
        return [p.pid for p in procs]

    def stop(self) -> None:
        """SIGTERM the leader (BentoML stops its workers), then SIGKILL whatever is left of the tree after
        ``STOP_GRACE_S``."""
        import psutil

        if self.proc is None:
            return
        procs = self.processes()
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=STOP_GRACE_S)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        _, alive = psutil.wait_procs(procs, timeout=STOP_LEFTOVER_WAIT_S)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=REAP_TIMEOUT_S)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=REAP_TIMEOUT_S)
        if not self._log.closed:
            self._log.close()

    def tail(self, n: int = LOG_TAIL_LINES) -> str:
        try:
            return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


def service_env(root: Path, database_url: str, **extra: str) -> dict[str, str]:
    """The service's environment: an MLflow store under ``root`` and a database; nothing of the repository's own."""
    return {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow' / 'mlflow.db'}",
            "HOTLINE_ARTIFACT_ROOT": str(root / "mlflow" / "artifacts"),
            "HOTLINE_DATABASE_URL": database_url, "HOTLINE_RECOGNITION_GPUS": "0", **extra}
