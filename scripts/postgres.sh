#!/usr/bin/env bash
# A local PostgreSQL for the store's tests (and for trying the service on PostgreSQL). Idempotent: installs Debian's
# postgresql if missing, starts the cluster (no systemd here), creates the role and the database if missing, and
# prints the SQLAlchemy URL on its LAST line (tests/conftest.py reads that line).
#   HOTLINE_PG_USER (default hotline), HOTLINE_PG_PASSWORD (default hotline), HOTLINE_PG_DB (default hotline_test)
set -euo pipefail

PGUSER_NAME="${HOTLINE_PG_USER:-hotline}"
PGPASS="${HOTLINE_PG_PASSWORD:-hotline}"
PGDB="${HOTLINE_PG_DB:-hotline_test}"

if [ "$(id -u)" -eq 0 ]; then SUDO=(); AS_PG=(runuser -u postgres --); else SUDO=(sudo); AS_PG=(sudo -u postgres); fi

if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    echo "postgres.sh: installing Debian's postgresql" >&2
    "${SUDO[@]}" apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y --no-install-recommends postgresql >&2
fi

# the newest installed major version, and its first cluster (Debian creates "main" on install)
VERSION="$(ls /usr/lib/postgresql | sort -n | tail -1)"
CLUSTER="$(pg_lsclusters -h | awk -v v="$VERSION" '$1 == v {print $2; exit}')"
if [ -z "$CLUSTER" ]; then
    "${SUDO[@]}" pg_createcluster "$VERSION" main >&2
    CLUSTER=main
fi
PORT="$(pg_lsclusters -h | awk -v v="$VERSION" -v c="$CLUSTER" '$1 == v && $2 == c {print $3}')"
STATUS="$(pg_lsclusters -h | awk -v v="$VERSION" -v c="$CLUSTER" '$1 == v && $2 == c {print $4}')"
if [ "$STATUS" != "online" ]; then
    "${SUDO[@]}" pg_ctlcluster --skip-systemctl-redirect "$VERSION" "$CLUSTER" start >&2
fi
for _ in $(seq 1 30); do
    "${AS_PG[@]}" pg_isready -q -p "$PORT" && break
    sleep 1
done
"${AS_PG[@]}" pg_isready -p "$PORT" >&2

psql_pg() { (cd / && "${AS_PG[@]}" psql -p "$PORT" -v ON_ERROR_STOP=1 -qtA "$@"); }
if [ "$(psql_pg -d postgres -c "select 1 from pg_roles where rolname = '$PGUSER_NAME'")" != "1" ]; then
    psql_pg -d postgres -c "create role \"$PGUSER_NAME\" login createdb password '$PGPASS'" >&2
fi
if [ "$(psql_pg -d postgres -c "select 1 from pg_database where datname = '$PGDB'")" != "1" ]; then
    psql_pg -d postgres -c "create database \"$PGDB\" owner \"$PGUSER_NAME\"" >&2
fi
echo "postgresql+psycopg://$PGUSER_NAME:$PGPASS@127.0.0.1:$PORT/$PGDB"
