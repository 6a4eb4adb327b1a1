#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on 127.0.0.1 for the integration tests and benchmarks.
#
#   bash .ci/postgres.sh [start]   install PostgreSQL if missing, start the cluster, print its URI
#   bash .ci/postgres.sh status    exit 0 and print the URI if the cluster is running
#   bash .ci/postgres.sh stop      stop the cluster (the data directory is kept)
#
# Idempotent: running `start` again on a running cluster only prints the URI. The only
# line on stdout is the URI (postgresql://USER:PASSWORD@127.0.0.1:PORT/DB); progress
# goes to stderr. Settings (environment): KEDROFLOW_PG_DIR (data directory, default
# /tmp/kedroflow-pg), KEDROFLOW_PG_PORT (default 55432). The role owns its database
# and may create others (the test fixture makes a fresh database per session).
set -euo pipefail

PGDIR="${KEDROFLOW_PG_DIR:-/tmp/kedroflow-pg}"
PORT="${KEDROFLOW_PG_PORT:-55432}"
ROLE=kedroflow
PASSWORD=kedroflow
DB=kedroflow
URI="postgresql://${ROLE}:${PASSWORD}@127.0.0.1:${PORT}/${DB}"
ACTION="${1:-start}"

log() { echo "postgres.sh: $*" >&2; }

find_bindir() {
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x "$dir/pg_ctl" ]]; then echo "$dir"; return 0; fi
    done
    if command -v pg_ctl >/dev/null 2>&1; then dirname "$(command -v pg_ctl)"; return 0; fi
    return 1
}

install_postgres() {
    if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        log "PostgreSQL is not installed and cannot be installed here (needs root and apt-get)."
        log "Install it yourself (Debian/Ubuntu: apt-get install postgresql) and run me again."
        exit 1
    fi
    log "installing PostgreSQL from the distribution's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends postgresql >&2
}

# Run a PostgreSQL binary as an unprivileged user: postgres refuses to run as root.
as_owner() {
    if [[ "$(id -u)" == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

BINDIR="$(find_bindir || true)"
is_running() {
    [[ -n "$BINDIR" && -f "$PGDIR/PG_VERSION" ]] && as_owner "$BINDIR/pg_ctl" -D "$PGDIR" status >/dev/null 2>&1
}

case "$ACTION" in
    status)
        if is_running; then echo "$URI"; exit 0; fi
        log "not running (data directory $PGDIR)"; exit 3 ;;
    stop)
        if is_running; then as_owner "$BINDIR/pg_ctl" -D "$PGDIR" -m fast -w stop >&2; fi
        exit 0 ;;
    start) ;;
    *) log "unknown action '$ACTION': use start, status or stop"; exit 2 ;;
esac

if [[ -z "$BINDIR" ]]; then
    install_postgres
    BINDIR="$(find_bindir)"
fi

if [[ ! -f "$PGDIR/PG_VERSION" ]]; then
    log "creating a cluster in $PGDIR"
    mkdir -p "$PGDIR"
    if [[ "$(id -u)" == 0 ]]; then chown postgres:postgres "$PGDIR"; fi
    chmod 700 "$PGDIR"
    pwfile="$(mktemp)"
    echo "$PASSWORD" >"$pwfile"
    if [[ "$(id -u)" == 0 ]]; then chown postgres "$pwfile"; fi
    # The superuser is the throwaway role itself; connections need its password.
    as_owner "$BINDIR/initdb" -D "$PGDIR" -U "$ROLE" --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >&2
    rm -f "$pwfile"
    cat >>"$PGDIR/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$PGDIR'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
fi

if ! is_running; then
    log "starting PostgreSQL on 127.0.0.1:$PORT"
    as_owner "$BINDIR/pg_ctl" -D "$PGDIR" -l "$PGDIR/server.log" -w -t 60 start >&2
fi

if ! as_owner "$BINDIR/psql" -h "$PGDIR" -p "$PORT" -U "$ROLE" -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
    as_owner "$BINDIR/createdb" -h "$PGDIR" -p "$PORT" -U "$ROLE" "$DB" >&2
fi
echo "$URI"
