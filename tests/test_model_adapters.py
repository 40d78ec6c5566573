"""The model-service adapters of the entry service (serving/adapters.py): a model call whose pooled connection broke
before any answer is tried once more; an answered error or a second break is the caller's to see."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from serving.adapters import RemoteDialect, RemoteUnderstanding, _remote


class Flaky:
    """A model service method that fails the first ``breaks`` calls with ``error``, then answers."""

    def __init__(self, error: Exception, breaks: int = 1, answer=None):
        self.error, self.breaks, self.answer, self.calls = error, breaks, answer, 0

    async def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls <= self.breaks:
            raise self.error
        return self.answer if self.answer is not None else {"args": args, "kwargs": kwargs}


class Service:
    """What ``bentoml.depends`` gives: ``to_async.<method>``."""

    def __init__(self, **methods):
        self.to_async = type("Async", (), {})()
        for name, fn in methods.items():
            setattr(self.to_async, name, fn)


@pytest.mark.parametrize("error", [
    httpx.RemoteProtocolError("Server disconnected without sending a response."),
    httpx.ReadError("connection reset by peer"),
    httpx.ConnectError("connection refused"),
])
def test_a_broken_connection_is_retried_once(error):
    fn = Flaky(error, breaks=1)
    assert asyncio.run(_remote(fn, 1, k=2)) == {"args": (1,), "kwargs": {"k": 2}}
    assert fn.calls == 2


def test_a_second_break_reaches_the_caller():
    fn = Flaky(httpx.RemoteProtocolError("Server disconnected"), breaks=2)
    with pytest.raises(httpx.RemoteProtocolError):
        asyncio.run(_remote(fn))
    assert fn.calls == 2


@pytest.mark.parametrize("error", [httpx.ReadTimeout("slow"), RuntimeError("the model raised"), ValueError("bad")])
def test_answered_errors_and_timeouts_are_not_retried(error):
    fn = Flaky(error, breaks=1)
    with pytest.raises(type(error)):
        asyncio.run(_remote(fn))
    assert fn.calls == 1


def test_the_adapters_retry_through_remote():
    dialect = Flaky(httpx.RemoteProtocolError("closed"), answer={"label": "cantonese", "confidence": 0.9,
                                                                  "probs": {"cantonese": 0.9}, "min_confidence": 0.5})
    understand = Flaky(httpx.ReadError("reset"), answer=[{"intent": "logistics"}])
    svc = Service(dialect=dialect, understand=understand)
    c = asyncio.run(RemoteDialect(svc).classify([0.0]))
    assert (c.label, c.confidence, dialect.calls) == ("cantonese", 0.9, 2)
    assert asyncio.run(RemoteUnderstanding(svc).predict(["快递没到"])) == [{"intent": "logistics"}]
    assert understand.calls == 2
