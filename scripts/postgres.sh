#!/usr/bin/env bash
# A throwaway local PostgreSQL for the storage tests (and for trying the server on PostgreSQL).
#
# It installs the Debian `postgresql` package if no server binaries are present, then runs its own
# cluster, owned by the `postgres` user when we are root, in a state directory
# (default /tmp/sfu-postgres-<user>, override with SFU_POSTGRES_DIR), listening on 127.0.0.1 only,
# on a free port, with a random password. It never touches the distribution's own clusters.
# Every command is idempotent: `start` on a running cluster only prints its URL again.
#
# Usage:
#   scripts/postgres.sh [start]   make sure it runs; print the database URL on stdout (logs on stderr)
#   scripts/postgres.sh env       same, printed as `export SFU_TEST_POSTGRES_URL=…` for eval
#   scripts/postgres.sh url       print the URL of the running cluster (exit 1 if it is not running)
#   scripts/postgres.sh status    exit 0 if the cluster runs
#   scripts/postgres.sh stop      stop it (the data stays; `start` brings it back)
#   scripts/postgres.sh destroy   stop it and delete the state directory
#
# The cluster trades durability for speed (fsync off): it is for tests, never for real data.
set -euo pipefail

STATE="${SFU_POSTGRES_DIR:-/tmp/sfu-postgres-$(id -un)}"
DATA="$STATE/data"
SOCKET_DIR="$STATE/socket"
DATABASE="sfu_test"
DB_USER="postgres"

log() { printf 'postgres.sh: %s\n' "$*" >&2; }

if [ "$(id -u)" = 0 ]; then
  # initdb refuses to run as root: the cluster belongs to the `postgres` user the package creates.
  as_owner() { runuser -u postgres -- "$@"; }
  SUDO=""
else
  as_owner() { "$@"; }
  SUDO="sudo"
fi

pg_bin_dir() {
  # The newest installed major version.
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
    printf '%s\n' "$dir"
  fi
}

install_server() {
  if [ -n "$(pg_bin_dir)" ]; then
    return
  fi
  log "installing the Debian postgresql package"
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends postgresql >&2
  if [ -z "$(pg_bin_dir)" ]; then
    log "no initdb/pg_ctl under /usr/lib/postgresql/*/bin after installing postgresql"
    exit 1
  fi
}

is_running() {
  local bin
  bin="$(pg_bin_dir)"
  [ -n "$bin" ] && [ -f "$DATA/PG_VERSION" ] && as_owner "$bin/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

port_is_free() {
  # A refused connection means nobody listens there.
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pick_port() {
  local previous port tries
  previous="$(cat "$STATE/port" 2>/dev/null || true)"
  if [ -n "$previous" ] && port_is_free "$previous"; then
    printf '%s\n' "$previous"
    return
  fi
  # Start somewhere random so two state directories rarely race for the same port.
  port=$((20000 + RANDOM % 30000))
  for tries in $(seq 1 200); do
    if port_is_free "$port"; then
      printf '%s\n' "$port"
      return
    fi
    port=$((port + 1))
  done
  log "no free TCP port found"
  exit 1
}

url() {
  printf 'postgres://%s:%s@127.0.0.1:%s/%s\n' \
    "$DB_USER" "$(cat "$STATE/password")" "$(cat "$STATE/port")" "$DATABASE"
}

init_cluster() {
  local bin="$1"
  log "creating a cluster in $DATA"
  mkdir -p "$STATE"
  chmod 700 "$STATE"
  # Hex, so the password needs no escaping in a URL.
  od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$STATE/password"
  mkdir -p "$SOCKET_DIR"
  if [ "$(id -u)" = 0 ]; then
    chown -R postgres:postgres "$STATE"
  fi
  as_owner "$bin/initdb" -D "$DATA" -U "$DB_USER" --pwfile="$STATE/password" \
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C >"$STATE/initdb.log" 2>&1 || {
    cat "$STATE/initdb.log" >&2
    exit 1
  }
  cat >>"$DATA/postgresql.conf" <<EOF

# scripts/postgres.sh: a throwaway test cluster.
listen_addresses = '127.0.0.1'
unix_socket_directories = '$SOCKET_DIR'
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
}

start() {
  install_server
  local bin port
  bin="$(pg_bin_dir)"
  if is_running; then
    url
    return
  fi
  if [ ! -f "$DATA/PG_VERSION" ]; then
    init_cluster "$bin"
  fi
  port="$(pick_port)"
  printf '%s\n' "$port" >"$STATE/port"
  log "starting PostgreSQL ($(basename "$(dirname "$bin")")) on 127.0.0.1:$port"
  # pg_ctl's own -w waits until the server accepts connections.
  as_owner "$bin/pg_ctl" -D "$DATA" -l "$STATE/server.log" -w -t 120 -o "-p $port" start >&2 || {
    tail -n 30 "$STATE/server.log" >&2 || true
    exit 1
  }
  if [ "$(as_owner "$bin/psql" -h "$SOCKET_DIR" -p "$port" -U "$DB_USER" -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")" != 1 ]; then
    as_owner "$bin/psql" -h "$SOCKET_DIR" -p "$port" -U "$DB_USER" -d postgres -qc \
      "CREATE DATABASE $DATABASE" >&2
  fi
  url
}

stop() {
  local bin
  bin="$(pg_bin_dir)"
  if is_running; then
    as_owner "$bin/pg_ctl" -D "$DATA" -m fast -w stop >&2
  fi
}

case "${1:-start}" in
  start) start ;;
  env) printf "export SFU_TEST_POSTGRES_URL='%s'\n" "$(start)" ;;
  url) is_running && url ;;
  status) is_running ;;
  stop) stop ;;
  destroy)
    stop
    rm -rf "$STATE"
    ;;
  *)
    sed -n '2,20p' "$0" >&2
    exit 2
    ;;
esac
