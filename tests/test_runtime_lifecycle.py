"""The entry service's runtime stops what it started: the scheduler and operations threads end and the database pool
is released when the worker shuts down (BentoML's ``on_shutdown`` hook on ``Hotline``)."""

from __future__ import annotations

import threading

from serving.runtime import Runtime
from serving.settings import Settings


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.is_alive()}


def test_close_stops_the_background_threads(tmp_path, monkeypatch):
    monkeypatch.setenv("HOTLINE_DATABASE_URL", f"sqlite:///{tmp_path / 'hotline.db'}")
    monkeypatch.setenv("HOTLINE_SCHEDULER_INTERVAL_S", "0.2")
    rt = Runtime(Settings.from_env(), None, None, None)
    assert rt.scheduler is not None and rt.scheduler.running and rt.operations.running
    assert {"hotline-scheduler", "hotline-operations"} <= _threads()
    rt.close(timeout_s=5)
    assert not {"hotline-scheduler", "hotline-operations"} & _threads()
    assert rt.scheduler is None and rt.operations is None
    rt.close()  # idempotent
    # the store still answers after close (the pool reconnects on use): a late request is not an error
    assert rt.store.list_tickets(limit=1)[0] == []


def test_the_service_registers_the_shutdown_hook():
    from serving.service import Hotline

    hook = Hotline.inner.shutdown
    assert getattr(hook, "__bentoml_shutdown_hook__", False) is True
