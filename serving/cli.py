"""``hotline keys|customers|db ...``: manage the service's store from the command line.

:func:`add_parsers` adds the subcommands to the ``hotline`` parser (training/cli.py calls it lazily; serving never
imports training). Every command upgrades the schema first (safe while the service runs against the same database)
and works on ``--database-url``, else ``$HOTLINE_DATABASE_URL``, else ``<repo>/var/hotline.db``.
"""

from __future__ import annotations

import argparse
import sys

from serving.auth import ROLES

URL_HELP = "database URL (default: $HOTLINE_DATABASE_URL, else sqlite:///<repo>/var/hotline.db)"


def _store(args: argparse.Namespace):
    from serving.store import Store

    store = Store(args.database_url)
    store.upgrade()
    return store


def _keys_create(args: argparse.Namespace) -> int:
    with _store(args) as store:
        info, secret = store.create_key(args.role, args.name)
        store.audit(None, "keys.create", detail=f"{info.id} {info.role} {info.name} (command line)")
    print(f"created key {info.id} role={info.role} name={info.name}")
    print("the secret is shown once; store it now (only its SHA-256 is kept):", file=sys.stderr)
    print(secret)
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    with _store(args) as store:
        keys = store.list_keys()
    if not keys:
        print("no keys: create one with `hotline keys create --role ROLE`")
        return 0
    print(f"{'id':<20} {'prefix':<9} {'role':<11} {'created':<20} {'revoked':<20} name")
    for k in keys:
        revoked = k.revoked_at.strftime("%Y-%m-%d %H:%M:%S") if k.revoked_at else "-"
        print(f"{k.id:<20} {k.prefix:<9} {k.role:<11} {k.created_at:%Y-%m-%d %H:%M:%S} {revoked:<20} {k.name}")
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    from serving.store import NotFound

    with _store(args) as store:
        try:
            info = store.revoke_key(args.key)
        except (NotFound, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        store.audit(None, "keys.revoke", detail=f"{info.id} {info.role} {info.name} (command line)")
    print(f"revoked key {info.id} ({info.role}, {info.name}) at {info.revoked_at:%Y-%m-%d %H:%M:%S} UTC")
    return 0


def _customers_import(args: argparse.Namespace) -> int:
    with _store(args) as store:
        try:
            n, errors = store.import_customers_csv(args.file)
        except FileNotFoundError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    if errors:
        print(f"{args.file}: {len(errors)} bad rows; nothing imported (fix them and import the file again):",
              file=sys.stderr)
        for e in errors:
            print(f"  line {e.line}: {e.message}", file=sys.stderr)
        return 1
    print(f"imported {n} customers from {args.file}")
    return 0


def _db_upgrade(args: argparse.Namespace) -> int:
    with _store(args) as store:
        print(f"{store.engine.url.render_as_string(hide_password=True)} is at revision {store.current_revision()}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``keys``, ``customers`` and ``db`` to a ``hotline`` subparsers object; each sets ``func(args) -> int``."""

    def url(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--database-url", default=None, help=URL_HELP)
        return p

    keys = sub.add_parser("keys", help="create, list and revoke API keys")
    ksub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    c = url(ksub.add_parser("create", help="create a key and print its secret (once)"))
    c.add_argument("--role", required=True, choices=ROLES, help="what the key may do (API.md)")
    c.add_argument("--name", default=None, help="who holds it (shown in ticket events and the audit log)")
    c.set_defaults(func=_keys_create)
    url(ksub.add_parser("list", help="list keys (prefix, role, created, revoked)")).set_defaults(func=_keys_list)
    r = url(ksub.add_parser("revoke", help="revoke a key by its id or prefix"))
    r.add_argument("key", metavar="ID", help="key id (k_...) or the prefix shown by `hotline keys list`")
    r.set_defaults(func=_keys_revoke)

    customers = sub.add_parser("customers", help="customer profiles")
    csub = customers.add_subparsers(dest="customers_command", required=True, metavar="ACTION")
    i = url(csub.add_parser("import", help="import customers from a CSV (phone,name,vip_level,region); all or "
                                          "nothing: bad rows are listed with line numbers"))
    i.add_argument("file", metavar="FILE.csv")
    i.set_defaults(func=_customers_import)

    db = sub.add_parser("db", help="the service database")
    dsub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    url(dsub.add_parser("upgrade", help="apply the schema migrations (alembic upgrade head)")).set_defaults(
        func=_db_upgrade)
    add_ops_parsers(sub)


# -- escalations and the outbox (serving/escalation.py, serving/outbox.py) --------------------------------------------
def _escalations_run(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from serving.escalation import run_due

    if args.now:
        try:
            now = datetime.fromisoformat(args.now)
        except ValueError:
            print(f"error: --now {args.now!r} is not an ISO-8601 time (e.g. 2026-12-01T10:00:00+00:00)",
                  file=sys.stderr)
            return 2
        now = now if now.tzinfo else now.replace(tzinfo=timezone.utc)
    else:
        from serving.escalation import Clock

        now = Clock.from_env().now()
    with _store(args) as store:
        done = run_due(store, now)
    print(f"{len(done)} escalation steps at {now.isoformat()}")
    for d in done:
        print(f"  {d.ticket_id} level {d.level} -> {d.to}: {d.outcome}")
    return 0


def _outbox_relay(args: argparse.Namespace) -> int:
    from serving.outbox import main

    argv = ["--once"] if args.once else []
    return main(argv + (["--database-url", args.database_url] if args.database_url else []))


def _outbox_list(args: argparse.Namespace) -> int:
    with _store(args) as store:
        items = store.list_outbox(args.state, limit=args.limit)
    for i in items:
        print(f"{i.id:>6} {i.state:<9} {i.kind:<28} {i.ticket_id or '-':<36} attempts={i.attempts} "
              f"{(i.last_error or '')[:80]}")
    if not items:
        print(f"no {args.state} outbox rows")
    return 0


def _outbox_retry(args: argparse.Namespace) -> int:
    from serving.store import NotFound

    with _store(args) as store:
        try:
            item = store.retry_outbox(args.id)
        except (NotFound, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        store.audit(None, "outbox.retry", item.ticket_id, f"outbox {item.id} {item.kind} (command line)")
    print(f"outbox row {item.id} ({item.kind}) is pending again")
    return 0


def _purge(args: argparse.Namespace) -> int:
    from serving.crypto import Cipher
    from serving.escalation import Clock
    from serving.operations import OperationsConfig, parse_when, purge
    from serving.store import Store

    try:
        now = parse_when(args.now) or Clock.from_env().now()
        days = args.retention_days if args.retention_days is not None else OperationsConfig.from_env().retention_days
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with Store(args.database_url, cipher=Cipher.from_env(required=False)) as store:
        store.upgrade()
        done = purge(store, now, days)
    print(f"purged {len(done)} recordings older than {days} days at {now.isoformat()}")
    return 0


def add_ops_parsers(sub: argparse._SubParsersAction) -> None:
    """``hotline escalations run`` and ``hotline outbox relay|list|retry`` (called by :func:`add_parsers`)."""

    def url(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--database-url", default=None, help=URL_HELP)
        return p

    esc = sub.add_parser("escalations", help="SLA escalations (for deployments that run them from cron)")
    esub = esc.add_subparsers(dest="escalations_command", required=True, metavar="ACTION")
    r = url(esub.add_parser("run", help="carry out the escalation steps due now (each exactly once)"))
    r.add_argument("--now", default=None, help="ISO-8601 time to run at (default: now, plus $HOTLINE_CLOCK_OFFSET_S)")
    r.set_defaults(func=_escalations_run)

    ob = sub.add_parser("outbox", help="notifications waiting for or given up on delivery")
    osub = ob.add_subparsers(dest="outbox_command", required=True, metavar="ACTION")
    rl = url(osub.add_parser("relay", help="deliver the outbox to $HOTLINE_WEBHOOKS (loops unless --once)"))
    rl.add_argument("--once", action="store_true")
    rl.set_defaults(func=_outbox_relay)
    ls = url(osub.add_parser("list", help="list outbox rows"))
    ls.add_argument("--state", default="parked", choices=("pending", "parked", "delivered", "all"))
    ls.add_argument("--limit", type=int, default=50)
    ls.set_defaults(func=_outbox_list)
    rt = url(osub.add_parser("retry", help="put a parked row back in the queue"))
    rt.add_argument("id", type=int)
    rt.set_defaults(func=_outbox_retry)

    pg = url(sub.add_parser("purge", help="delete recordings older than the retention period "
                                         "($HOTLINE_RECORDING_RETENTION_DAYS, default 90)"))
    pg.add_argument("--now", default=None, help="ISO-8601 time to purge at (default: now)")
    pg.add_argument("--retention-days", type=float, default=None, help="override the retention period, days")
    pg.set_defaults(func=_purge)
