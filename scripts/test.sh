#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what it needs, then runs
#   1. cargo test --workspace (unit, integration, str0m interop, fuzz seed corpora),
#   2. the end-to-end tests with real headless Chromium (e2e/).
# Usage: scripts/test.sh                 everything
#        SKIP_E2E=1 scripts/test.sh       Rust tests only
#        SKIP_POSTGRES=1 scripts/test.sh  storage tests on SQLite only
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs npm)
{ command -v ip && command -v tc; } >/dev/null 2>&1 || need_apt+=(iproute2) # e2e test k: namespace, veth, tbf
if [ "${SKIP_E2E:-0}" != 1 ] && [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

# The storage tests run against SQLite and against a throwaway local PostgreSQL (Debian
# package, installed if missing); SFU_REQUIRE_POSTGRES makes them fail rather than skip it.
if [ "${SKIP_POSTGRES:-0}" != 1 ]; then
  if ! scripts/postgres.sh status; then
    trap 'scripts/postgres.sh stop || true' EXIT
  fi
  log "local PostgreSQL for the storage tests"
  SFU_TEST_POSTGRES_URL="$(scripts/postgres.sh start)"
  export SFU_TEST_POSTGRES_URL SFU_REQUIRE_POSTGRES=1
fi

log "cargo test --workspace"
cargo test --workspace --locked 2>&1

if [ "${SKIP_E2E:-0}" = 1 ]; then
  exit 0
fi

log "end-to-end tests in headless Chromium"
cargo build -p sfu-server --locked
(cd e2e && npm ci --no-audit --no-fund --loglevel=error && node --test --test-concurrency=1 tests/)
