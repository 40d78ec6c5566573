"""The service's store on SQLite and on a real PostgreSQL (tests/conftest.py: ``store``, ``store_url``)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.orm import Session

from models.ticket import Sla, Ticket
from serving.auth import PERMISSIONS, ROLES, can, can_read_ticket
from serving.store import (
    MIGRATIONS,
    ApiKeyRow,
    Claim,
    ClaimRow,
    CreationInFlight,
    IdempotencyConflict,
    InvalidTransition,
    NotFound,
    Store,
    TicketRow,
    new_ticket_id,
    owner_is_dead,
    process_owner,
    utcnow,
)

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)


def make_ticket(call_id: str, *, caller: str | None = "13812345678", created_at: datetime = T0,
                order_id: str | None = None, intent: str = "refund", priority: str = "P3",
                is_complaint: bool = False) -> Ticket:
    slots = {"order_id": order_id} if order_id else {}
    return Ticket(id=new_ticket_id(), call_id=call_id, caller=caller, created_at=created_at, updated_at=created_at,
                  intent=intent, is_complaint=is_complaint, slots=slots, priority=priority, queue="billing",
                  skill_group="billing", summary="退款", needs_review=False,
                  sla=Sla(due_at=created_at + timedelta(hours=24)), policy_version="test")


def create(store: Store, call_id: str, content: str = "same", **kw) -> Ticket:
    got = store.claim(call_id, content)
    assert isinstance(got, Claim), got
    return store.finish(got, make_ticket(call_id, **kw), actor="platform-1")


# -- schema --------------------------------------------------------------------------------------------------------
def _latest_revision_file() -> str:
    """The revision no other migration file names as its down_revision (read from the files, not from alembic)."""
    revs, downs = set(), set()
    for f in (MIGRATIONS / "versions").glob("*.py"):
        ns: dict = {}
        exec(compile(f.read_text(encoding="utf-8"), str(f), "exec"), ns)
        revs.add(ns["revision"])
        downs.add(ns["down_revision"])
    heads = revs - downs
    assert len(heads) == 1, f"migrations have {len(heads)} heads: {heads}"
    return heads.pop()


def test_migrations_create_the_schema_at_head(store):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from serving.store import Base

    tables = set(inspect(store.engine).get_table_names())
    assert {"tickets", "ticket_events", "ticket_claims", "customers", "api_keys", "audit_log",
            "alembic_version"} <= tables
    assert store.current_revision() == store.head_revision() == _latest_revision_file()
    with store.engine.connect() as conn:  # the ORM and the migrations describe the same schema
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    store.upgrade()  # a second upgrade is a no-op
    assert store.current_revision() == _latest_revision_file()


def test_several_processes_upgrade_one_database_at_once(store_url):
    code = "import sys; from serving.store import Store; s = Store(sys.argv[1]); s.upgrade(); print(s.current_revision())"
    procs = [subprocess.Popen([sys.executable, "-c", code, store_url], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    head = _latest_revision_file()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert out.strip() == head


def test_bad_urls_say_what_to_use(tmp_path):
    with pytest.raises(ValueError, match="sqlite:///PATH"):
        Store("mysql://x@localhost/db")
    with pytest.raises(ValueError, match="in-memory"):
        Store("sqlite://")


def test_default_url_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HOTLINE_DATABASE_URL", f"sqlite:///{tmp_path / 'sub' / 'env.db'}")
    s = Store()
    assert s.sqlite_path == tmp_path / "sub" / "env.db" and s.sqlite_path.parent.is_dir()
    with s.engine.connect() as conn:  # WAL and the busy timeout are set on every connection
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    s.close()
    monkeypatch.delenv("HOTLINE_DATABASE_URL")
    from serving.store import DEFAULT_URL, resolve_url

    assert resolve_url() == DEFAULT_URL == f"sqlite:///{REPO / 'var' / 'hotline.db'}"
    assert resolve_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"


# -- idempotent creation -------------------------------------------------------------------------------------------
def test_same_call_id_same_content_gives_the_same_ticket_other_content_conflicts(store):
    first = create(store, "call-1", "hash-a")
    again = store.claim("call-1", "hash-a")
    assert isinstance(again, Ticket) and again.id == first.id and again.call_id == "call-1"
    with pytest.raises(IdempotencyConflict, match="other content"):
        store.claim("call-1", "hash-b")
    with Session(store.engine) as s:
        assert s.scalar(select(text("count(*)")).select_from(TicketRow).where(TicketRow.call_id == "call-1")) == 1
        assert s.scalar(select(text("count(*)")).select_from(ClaimRow)) == 0


def test_a_live_claim_answers_in_flight_and_abandon_releases_it(store):
    claim = store.claim("call-2", "h")
    assert isinstance(claim, Claim) and claim.owner == process_owner()
    with pytest.raises(CreationInFlight) as e:
        store.claim("call-2", "h")
    assert 1 <= e.value.retry_after_s <= 10
    store.abandon(claim)
    again = store.claim("call-2", "h")
    assert isinstance(again, Claim)
    ticket = store.finish(again, make_ticket("call-2"), actor="p")
    assert store.get_ticket(ticket.id).events[0].type == "created"


def test_an_expired_claim_is_taken_over_and_the_late_finisher_gets_the_stored_ticket(store):
    slow = store.claim("call-3", "h", lease_s=0.05)
    time.sleep(0.1)
    fast = store.claim("call-3", "h")
    assert isinstance(fast, Claim) and fast.claimed_at > slow.claimed_at
    winner = store.finish(fast, make_ticket("call-3"), actor="p")
    late = store.finish(slow, make_ticket("call-3"), actor="p")  # another ticket id, same call_id
    assert late.id == winner.id
    with Session(store.engine) as s:
        assert s.scalar(select(text("count(*)")).select_from(TicketRow)) == 1
        assert s.scalar(select(text("count(*)")).select_from(ClaimRow)) == 0


def _insert_claim(store: Store, call_id: str, owner: str) -> None:
    now = utcnow()
    with Session(store.engine) as s, s.begin():
        s.add(ClaimRow(call_id=call_id, content_hash="h", owner=owner, claimed_at=now,
                       expires_at=now + timedelta(hours=1)))


def test_a_claim_of_a_killed_process_on_this_host_is_taken_over_at_once(store, store_url):
    """The service is SIGKILLed while processing a call; after a restart the platform's retry must not 409."""
    code = ("import sys, time; from serving.store import Store, process_owner; s = Store(sys.argv[1]); "
            "c = s.claim('call-4', 'h', lease_s=3600); print(c.owner, flush=True); time.sleep(120)")
    child = subprocess.Popen([sys.executable, "-c", code, store_url], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        owner = child.stdout.readline().strip()
        assert owner == process_owner(child.pid) and not owner_is_dead(owner)
        with pytest.raises(CreationInFlight):  # the owner still runs: its claim holds
            store.claim("call-4", "h")
    finally:
        child.kill()
        child.wait(timeout=30)
    assert owner_is_dead(owner)
    got = store.claim("call-4", "h")  # the lease has an hour left, but its owner is gone
    assert isinstance(got, Claim) and got.owner == process_owner()
    assert store.finish(got, make_ticket("call-4"), actor="p").call_id == "call-4"


def test_a_recycled_pid_is_not_the_owner_and_other_hosts_are_never_declared_dead(store):
    host, pid, start = process_owner().rsplit(":", 2)
    assert owner_is_dead(f"{host}:{pid}:{int(start) + 1}")  # this pid, another start time: a recycled pid
    other_host = f"not-{host}:{pid}:{start}"
    assert not owner_is_dead(other_host)
    _insert_claim(store, "call-5", other_host)
    with pytest.raises(CreationInFlight):
        store.claim("call-5", "h")


def test_eight_threads_creating_one_call_make_exactly_one_ticket(store):
    barrier = threading.Barrier(8)
    results: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    got = store.claim("call-race", "h")
                except CreationInFlight:
                    time.sleep(0.02)
                    continue
                if isinstance(got, Ticket):
                    results.append(got.id)
                    return
                time.sleep(0.05)  # "processing"
                results.append(store.finish(got, make_ticket("call-race"), actor="p").id)
                return
            raise TimeoutError("no ticket within 60 s")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(results) == 8 and len(set(results)) == 1
    with Session(store.engine) as s:
        assert s.scalar(select(text("count(*)")).select_from(TicketRow)) == 1
        assert s.scalar(select(text("count(*)")).select_from(ClaimRow)) == 0


def test_finish_refuses_a_ticket_of_another_call(store):
    claim = store.claim("call-6", "h")
    with pytest.raises(ValueError, match="not the claimed call_id"):
        store.finish(claim, make_ticket("call-other"), actor="p")


# -- events --------------------------------------------------------------------------------------------------------
def test_events_follow_the_state_machine(store):
    t = create(store, "call-ev")
    assert t.status == "open" and [e.type for e in t.events] == ["created"]
    t = store.add_event(t.id, "assign", "agent-1", {"assignee": "王芳"})
    assert t.status == "assigned" and t.assignee == "王芳"
    t = store.add_event(t.id, "comment", "agent-1", {"text": "已联系客户"})
    t = store.add_event(t.id, "escalate", "agent-1", {"to": "supervisor"})
    assert t.status == "escalated"
    with pytest.raises(InvalidTransition, match="allows"):
        store.add_event(t.id, "satisfaction", "agent-1", {"score": 5})
    with pytest.raises(InvalidTransition):
        store.add_event(t.id, "reopen", "agent-1", {})
    t = store.add_event(t.id, "resolve", "agent-1", {})
    with pytest.raises(ValueError, match="integer from 1 to 5"):
        store.add_event(t.id, "satisfaction", "agent-1", {"score": 6})
    with pytest.raises(ValueError, match="integer from 1 to 5"):
        store.add_event(t.id, "satisfaction", "agent-1", {"score": True})
    t = store.add_event(t.id, "satisfaction", "agent-1", {"score": 4})
    assert t.satisfaction == 4 and t.status == "resolved"
    t = store.add_event(t.id, "close", "agent-1", {})
    t = store.add_event(t.id, "reopen", "agent-1", {})
    assert t.status == "open"
    stored = store.get_ticket(t.id)
    assert [e.type for e in stored.events] == ["created", "assign", "comment", "escalate", "resolve",
                                               "satisfaction", "close", "reopen"]
    assert stored.events[1].actor == "agent-1" and stored.events[1].data == {"assignee": "王芳"}
    assert stored.updated_at > stored.created_at and stored.assignee == "王芳" and stored.satisfaction == 4
    assert store.get_ticket(t.id, with_events=False).events is None


def test_bad_events_name_what_to_send(store):
    t = create(store, "call-bad-ev")
    with pytest.raises(ValueError, match="use one of"):
        store.add_event(t.id, "delete", "a", {})
    with pytest.raises(ValueError, match="assignee"):
        store.add_event(t.id, "assign", "a", {})
    with pytest.raises(NotFound):
        store.add_event("T-missing", "comment", "a", {})
    assert store.get_ticket("T-missing") is None
    assert [e.type for e in store.get_ticket(t.id).events] == ["created"]  # nothing half-written


# -- lists, links --------------------------------------------------------------------------------------------------
def test_list_filters_and_cursor_pagination(store):
    made = []
    for i in range(7):
        at = T0 + timedelta(minutes=i // 2)  # pairs share created_at: the id breaks the tie
        made.append(create(store, f"call-l{i}", created_at=at, caller="13800000001" if i % 2 else "13900000002",
                           priority="P1" if i < 3 else "P3", intent="refund" if i != 4 else "delivery"))
    expected = [t.id for t in sorted(made, key=lambda t: (t.created_at, t.id), reverse=True)]
    seen, cursor = [], None
    for _ in range(5):
        page, cursor = store.list_tickets(limit=3, cursor=cursor)
        assert all(t.events is None for t in page)
        seen += [t.id for t in page]
        if cursor is None:
            break
    assert seen == expected
    assert {t.call_id for t in store.list_tickets(priority="P1")[0]} == {"call-l0", "call-l1", "call-l2"}
    assert [t.call_id for t in store.list_tickets(intent="delivery")[0]] == ["call-l4"]
    assert {t.call_id for t in store.list_tickets(caller="13800000001")[0]} == {"call-l1", "call-l3", "call-l5"}
    window, nxt = store.list_tickets(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3))
    assert {t.call_id for t in window} == {"call-l2", "call-l3", "call-l4", "call-l5"} and nxt is None
    store.add_event(made[0].id, "resolve", "a", {})
    assert [t.id for t in store.list_tickets(status="resolved")[0]] == [made[0].id]
    with pytest.raises(ValueError, match="from 1 to 200"):
        store.list_tickets(limit=201)
    with pytest.raises(ValueError, match="next_cursor"):
        store.list_tickets(cursor="not-a-cursor")
    with pytest.raises(ValueError, match="timezone"):
        store.list_tickets(since=datetime(2026, 1, 1))


def test_platform_keys_list_only_their_own_tickets(store):
    claim = store.claim("call-own", "h")
    mine = store.finish(claim, make_ticket("call-own"), actor="platform-1", created_by_key="k_1")
    create(store, "call-theirs")
    assert [t.id for t in store.list_tickets(created_by_key="k_1")[0]] == [mine.id]
    assert store.ticket_owner(mine.id) == "k_1"


def test_linked_tickets_are_earlier_tickets_of_the_caller_or_the_order(store):
    a = create(store, "c-a", caller="13811112222", created_at=T0)
    b = create(store, "c-b", caller="13933334444", order_id="OD123", created_at=T0 + timedelta(minutes=1))
    create(store, "c-c", caller="13755556666", created_at=T0 + timedelta(minutes=2))
    d = create(store, "c-d", caller="13811112222", created_at=T0 + timedelta(minutes=3))
    assert store.linked_tickets("13811112222", "OD123", exclude_call_id="c-new") == [d.id, b.id, a.id]
    assert store.linked_tickets("13811112222", None, exclude_call_id="c-d") == [a.id]
    assert store.linked_tickets(None, None, exclude_call_id="x") == []


# -- customers -----------------------------------------------------------------------------------------------------
def test_customer_profiles_count_tickets(store):
    store.upsert_customer("13811112222", name="李雷", vip_level=2, region="成都")
    create(store, "c1", caller="13811112222", is_complaint=True, created_at=T0)
    t2 = create(store, "c2", caller="13811112222", created_at=T0 + timedelta(minutes=1))
    c = store.get_customer("13811112222")
    assert (c.name, c.vip_level, c.region) == ("李雷", 2, "成都")
    assert (c.ticket_count, c.complaint_count, c.recent_ticket_ids[0]) == (2, 1, t2.id)
    assert store.get_customer("10000000000") is None
    with pytest.raises(ValueError, match="5 to 20 digits"):
        store.upsert_customer("138-1111")


def test_customers_csv_is_all_or_nothing_with_line_numbers(store, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("phone,name,vip_level,region\n13800000001,张三,1,北京\n12ab,李四,0,上海\n"
                   "13800000003,王五,-1,\n13800000001,重复,0,\n", encoding="utf-8")
    n, errors = store.import_customers_csv(bad)
    assert n == 0 and [e.line for e in errors] == [3, 4, 5]
    assert "5 to 20 digits" in errors[0].message and "vip_level" in errors[1].message
    assert "line 2" in errors[2].message
    assert store.get_customer("13800000001") is None  # nothing half-imported
    good = tmp_path / "good.csv"
    good.write_text("\ufeffregion,phone,name,vip_level\n北京,13800000001,张三,1\n,13800000002,\"Li, Si\",\n",
                    encoding="utf-8")
    assert store.import_customers_csv(good) == (2, [])
    assert store.get_customer("13800000002").name == "Li, Si"
    assert store.get_customer("13800000002").vip_level == 0
    headerless = tmp_path / "h.csv"
    headerless.write_text("13800000001,张三,1,北京\n", encoding="utf-8")
    n, errors = store.import_customers_csv(headerless)
    assert n == 0 and errors[0].line == 1 and "phone,name,vip_level,region" in errors[0].message


# -- keys and audit ------------------------------------------------------------------------------------------------
def test_keys_store_only_a_hash_and_revoked_keys_stop_working(store):
    info, secret = store.create_key("agent", "agent-1")
    assert secret.startswith("hl_") and len(secret) > 40 and info.prefix == secret[:8]
    assert store.verify_key(secret) == info and store.verify_key(secret + "x") is None
    assert store.verify_key("") is None
    with Session(store.engine) as s:
        rows = s.execute(select(ApiKeyRow.__table__)).all()
    dump = repr(rows)
    assert secret not in dump and secret[8:] not in dump
    assert rows[0].key_hash == hashlib.sha256(secret.encode()).hexdigest()
    other, _ = store.create_key("platform")
    assert [k.id for k in store.list_keys()] == [info.id, other.id] and other.name.startswith("platform-")
    revoked = store.revoke_key(info.prefix)
    assert revoked.revoked_at is not None and store.verify_key(secret) is None
    assert [k.id for k in store.list_keys(include_revoked=False)] == [other.id]
    with pytest.raises(NotFound, match="keys list"):
        store.revoke_key("k_nope")
    with pytest.raises(ValueError, match="platform, agent, supervisor, admin"):
        store.create_key("root")


def test_audit_entries_newest_first_and_by_ticket(store):
    key, _ = store.create_key("supervisor", "sup")
    store.audit(key, "read_unmasked", ticket_id="T-1", detail="caller")
    store.audit(None, "auth_failed", detail="unknown key")
    store.audit(key, "update_ticket", ticket_id="T-1")
    entries = store.audit_entries()
    assert [e.action for e in entries] == ["update_ticket", "auth_failed", "read_unmasked"]
    assert entries[1].key_id is None and entries[0].key_name == "sup" and entries[0].role == "supervisor"
    assert [e.action for e in store.audit_entries(ticket_id="T-1", limit=1)] == ["update_ticket"]


def test_role_table():
    table = {action: {r for r in ROLES if can(r, action)} for action in PERMISSIONS}
    assert table == {
        "route": {"platform"}, "models": {"platform", "agent", "supervisor"}, "create_ticket": {"platform"}, "read_ticket": {"platform", "agent", "supervisor"},
        "update_ticket": {"agent", "supervisor"}, "read_unmasked": {"supervisor"}, "analytics": {"supervisor"},
        "admin": {"admin"},
    }
    assert not can("nobody", "route")
    with pytest.raises(ValueError, match="knows"):
        can("admin", "drop_tables")
    assert can_read_ticket("platform", "k_1", "k_1") and not can_read_ticket("platform", "k_1", "k_2")
    assert can_read_ticket("agent", "k_9", "k_1") and not can_read_ticket("admin", "k_1", "k_1")


# -- command line --------------------------------------------------------------------------------------------------
def test_cli_keys_customers_and_db(store_url, tmp_path, capsys):
    from training.cli import main

    assert main(["db", "upgrade", "--database-url", store_url]) == 0
    assert "revision " + _latest_revision_file() in capsys.readouterr().out
    assert main(["keys", "create", "--role", "agent", "--name", "desk-7", "--database-url", store_url]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    secret = out[-1]
    with Store(store_url) as s:
        info = s.verify_key(secret)
    assert info is not None and info.role == "agent" and info.name == "desk-7"
    assert main(["keys", "list", "--database-url", store_url]) == 0
    listing = capsys.readouterr().out
    assert info.id in listing and info.prefix in listing and secret not in listing
    assert main(["keys", "revoke", info.id, "--database-url", store_url]) == 0
    assert main(["keys", "revoke", "k_unknown", "--database-url", store_url]) == 1
    assert "keys list" in capsys.readouterr().err
    csv_file = tmp_path / "c.csv"
    csv_file.write_text("phone,name,vip_level,region\n13800000009,赵六,3,广州\n", encoding="utf-8")
    assert main(["customers", "import", str(csv_file), "--database-url", store_url]) == 0
    csv_file.write_text("phone,name,vip_level,region\nabc,x,0,\n", encoding="utf-8")
    assert main(["customers", "import", str(csv_file), "--database-url", store_url]) == 1
    assert "line 2" in capsys.readouterr().err
    with Store(store_url) as s:
        assert s.verify_key(secret) is None
        assert s.get_customer("13800000009").vip_level == 3
        assert {e.action for e in s.audit_entries()} == {"keys.create", "keys.revoke"}
    with pytest.raises(SystemExit):
        main(["keys", "create", "--role", "root", "--database-url", store_url])


def test_cli_works_while_the_service_holds_a_write_transaction(store, store_url, capsys):
    """The service writes to the same database; a command waits for the lock (busy timeout) and then succeeds."""
    from training.cli import main

    started, release = threading.Event(), threading.Event()

    def service_write() -> None:
        with store._write() as s, s.begin():  # BEGIN IMMEDIATE on SQLite: holds the write lock
            store._upsert(s, "13800000077", "held", 0, None, utcnow())
            started.set()
            release.wait(timeout=30)

    t = threading.Thread(target=service_write)
    t.start()
    assert started.wait(timeout=30)
    threading.Timer(0.5, release.set).start()
    try:
        assert main(["keys", "create", "--role", "platform", "--database-url", store_url]) == 0
    finally:
        release.set()
        t.join()
    assert store.verify_key(capsys.readouterr().out.strip().splitlines()[-1]).role == "platform"
    assert store.get_customer("13800000077").name == "held"


def test_earlier_tickets_by_caller_or_order(store):
    from models.decisions import load_policy
    from models.ticket import build_ticket, content_hash

    policy = load_policy()
    for i, (caller, order, intent) in enumerate([("13800000001", "111", "logistics_delay"),
                                                 ("13800000002", "111", "billing_error"),
                                                 ("13800000001", None, "product_quality")]):
        pred = {"intent": intent, "is_complaint": True, "priority": "P3", "queue": "complaint",
                "slots": {"order_id": order} if order else {}}
        call = f"c{i}"
        claim = store.claim(call, content_hash(text=call))
        store.finish(claim, build_ticket(pred, ticket_id=f"T-{i:032x}", call_id=call, caller=caller,
                                         policy=policy), actor="test")
    got = store.earlier_tickets("13800000001", "111", exclude_call_id="c2")
    assert [t["id"] for t in got] == [f"T-{1:032x}", f"T-{0:032x}"]
    assert {t["intent"] for t in got} == {"logistics_delay", "billing_error"}
    assert store.earlier_tickets(None, None) == []
