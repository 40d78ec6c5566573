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
