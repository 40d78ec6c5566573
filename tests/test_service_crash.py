"""Crash safety of ticket creation through the real service, on SQLite and PostgreSQL.

``bentoml serve serving.service:Hotline`` runs in its own process group; concurrent clients create tickets from text
messages with distinct ``call_id``s; the whole group is SIGKILLed while creations are in flight; the service is
restarted on the same database. Every ``call_id`` answered 201 has exactly one ticket; retrying every unanswered
``call_id`` creates each exactly once (201, or 200 when it had been committed before the answer was lost); claims
left by the dead processes are taken over (no 409 for ever) and nothing is duplicated.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from test_service_e2e import Service, service_env, train_intent_champion  # tests/ is on sys.path (rootdir conftest)

pytestmark = pytest.mark.slow

CLIENTS = 12  # concurrent clients
CALLS_PER_CLIENT = 20  # call_ids each client may send (it stops at the kill)
KILL_AFTER_ANSWERS = 10  # SIGKILL once this many tickets were answered 201 (then creations are in flight)
KILL_WAIT_S = 240.0  # longest wait for those answers
CLIENT_TIMEOUT_S = 60.0  # one request's time limit
RETRY_409_BUDGET_S = 90.0  # longest a retried call_id may keep answering 409 after the restart


def _text(call_id: str) -> str:
    n = int(call_id.rsplit("-", 1)[1])
    return f"我的快递一个星期了还没到，订单号{20240518000 + n}，我要投诉"


@pytest.fixture(scope="module")
def champions(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("crash")
    train_intent_champion(root)
    return root


def _client(url: str, headers: dict, ids: list[str], outcome: dict, lock: threading.Lock, stop: threading.Event,
            answered: list) -> None:
    import httpx

    with httpx.Client(timeout=CLIENT_TIMEOUT_S) as http:
        for call_id in ids:
            if stop.is_set():
                return
            with lock:
                outcome[call_id] = ("sent", None)
            try:
                r = http.post(f"{url}/tickets", headers=headers, data={"call_id": call_id, "text": _text(call_id)})
            except httpx.HTTPError as e:  # the kill: no answer; this client gives up until the restart
                with lock:
                    outcome[call_id] = ("no answer", type(e).__name__)
                return
            with lock:
                ticket_id = r.json().get("id") if r.headers.get("content-type", "").startswith("application/json") else None
                outcome[call_id] = (r.status_code, ticket_id)
                if r.status_code == 201:
                    answered.append(call_id)


def _tickets_by_call_id(url: str) -> tuple[Counter, int]:
    """Tickets per call_id, and the claims (creations in flight) left, read straight from the database."""
    from sqlalchemy import text

    from serving.store import Store

    store = Store(url)
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(text("SELECT call_id, COUNT(*) FROM tickets GROUP BY call_id")).all()
            claims = conn.execute(text("SELECT COUNT(*) FROM ticket_claims")).scalar_one()
    finally:
        store.close()
    return Counter({r[0]: int(r[1]) for r in rows}), int(claims)


def test_sigkill_during_concurrent_creation(store_url, champions, tmp_path, request):
    import httpx

    from serving.store import Store

    store = Store(store_url)
    store.upgrade()
    _, secret = store.create_key("platform", "crash")
    store.close()
    headers = {"Authorization": f"Bearer {secret}"}
    env = service_env(champions, store_url)
    svc = Service(env, tmp_path / "service.log").start()
    outcome: dict[str, tuple] = {}
    answered: list[str] = []
    lock, stop = threading.Lock(), threading.Event()
    threads = []
    try:
        svc.wait_ready()
        ids = [[f"crash-{c * CALLS_PER_CLIENT + k}" for k in range(CALLS_PER_CLIENT)] for c in range(CLIENTS)]
        threads = [threading.Thread(target=_client, args=(svc.url, headers, row, outcome, lock, stop, answered),
                                    daemon=True) for row in ids]
        for t in threads:
            t.start()
        deadline = time.monotonic() + KILL_WAIT_S
        while time.monotonic() < deadline:
            with lock:
                if len(answered) >= KILL_AFTER_ANSWERS:
                    break
            time.sleep(0.05)
        with lock:
            in_flight_at_kill = sum(1 for v in outcome.values() if v[0] == "sent")
            answered_before_kill = len(answered)
        assert answered_before_kill >= KILL_AFTER_ANSWERS, (
            f"only {answered_before_kill} tickets answered 201 in {KILL_WAIT_S} s: {dict(Counter(v[0] for v in outcome.values()))}"
            f"\n{svc.tail()}")
        killed = svc.kill()  # SIGKILL the whole service (leader and every worker) while clients are mid-request
        stop.set()
        for t in threads:
            t.join(timeout=CLIENT_TIMEOUT_S + 10)
        assert not any(t.is_alive() for t in threads), "a client did not finish within its time limit"
    finally:
        stop.set()
        svc.stop()

    statuses = Counter(str(v[0]) for v in outcome.values())
    created = {cid for cid, v in outcome.items() if v[0] == 201}
    unanswered = sorted(cid for cid, v in outcome.items() if v[0] != 201)
    counts, stale_claims = _tickets_by_call_id(store_url)
    request.node.user_properties.append(("crash", {"statuses": dict(statuses), "in_flight_at_kill": in_flight_at_kill,
                                                   "stale_claims_after_kill": stale_claims,
                                                   "killed_pids": len(killed)}))
    print(f"[crash] killed {len(killed)} processes; statuses {dict(statuses)}; in flight at the kill {in_flight_at_kill}; "
          f"claims left {stale_claims}; "
          f"tickets after the kill {sum(counts.values())}")
    assert in_flight_at_kill > 0 and unanswered, "no creation was in flight at the kill: the test proved nothing"
    assert len(killed) >= 5, killed  # the arbiter and the four services' workers
    # every 201 is in the database exactly once, with the id it was answered with
    for cid in created:
        assert counts[cid] == 1, (cid, counts[cid])
    assert all(n == 1 for n in counts.values()), "a call_id has two tickets"
    assert set(counts) <= set(outcome), "a ticket for a call_id no client sent"

    # restart on the same database; retry every unanswered call_id (and a few answered ones)
    svc2 = Service(env, tmp_path / "service2.log").start()
    retried: dict[str, tuple[int, str | None]] = {}
    try:
        svc2.wait_ready()
        with httpx.Client(timeout=CLIENT_TIMEOUT_S) as http:
            for cid in unanswered + sorted(created)[:3]:
                deadline = time.monotonic() + RETRY_409_BUDGET_S
                while True:
                    r = http.post(f"{svc2.url}/tickets", headers=headers, data={"call_id": cid, "text": _text(cid)})
                    if r.status_code == 409 and time.monotonic() < deadline:
                        time.sleep(min(float(r.headers.get("Retry-After", "1")), 5.0))
                        continue
                    break
                retried[cid] = (r.status_code, r.json().get("id"))
    finally:
        svc2.stop()
    retry_statuses = Counter(v[0] for v in retried.values())
    print(f"[crash] retries after the restart: {dict(retry_statuses)}")
    request.node.user_properties.append(("retries", dict(retry_statuses)))
    for cid in unanswered:
        assert retried[cid][0] in (200, 201), (cid, retried[cid], outcome[cid])
    for cid in sorted(created)[:3]:
        assert retried[cid] == (200, outcome[cid][1]), (cid, retried[cid], outcome[cid])
    # a 200 on retry means the ticket had been committed before its answer was lost; it must be the only one
    counts, claims_left = _tickets_by_call_id(store_url)
    for cid in outcome:
        assert counts[cid] == 1, (cid, counts[cid], outcome[cid], retried.get(cid))
    assert sum(counts.values()) == len(outcome)
    assert claims_left == 0, f"{claims_left} claims left after every call_id got its ticket"
    # and through the API's own listing the same tickets appear once each
    ids_by_call = {cid: (retried.get(cid) or outcome[cid])[1] for cid in outcome}
    assert len(set(ids_by_call.values())) == len(outcome)
