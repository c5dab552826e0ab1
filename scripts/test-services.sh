#!/usr/bin/env bash
# Starts the Postgres and Redis the scale-out tests use, on loopback, checks that both answer,
# and prints the variables that point the tests at them. Exits non-zero (and prints nothing on
# stdout) when either cannot be started: the test command must then fail, not skip.
# Usage: bash scripts/test-services.sh > env.sh && . env.sh
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
as_postgres() { if [ "$(id -u)" = 0 ]; then su postgres -c "$1"; else sudo -u postgres sh -c "$1"; fi; }
fail() { echo "test-services: $*" >&2; exit 1; }

# Postgres: the Debian cluster, a role that may create the per-test databases.
command -v pg_lsclusters >/dev/null || fail "Postgres is not installed (scripts/install-deps.sh test)"
if ! pg_lsclusters -h 2>/dev/null | grep -q online; then
  $SUDO service postgresql start >&2 || fail "could not start Postgres"
fi
ready=0
for _ in $(seq 1 60); do pg_isready -q -h 127.0.0.1 && { ready=1; break; }; sleep 0.5; done
[ "$ready" = 1 ] || fail "Postgres does not answer on 127.0.0.1:5432"
as_postgres "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='papo_test'\" | grep -q 1 || psql -q -c \"CREATE ROLE papo_test LOGIN PASSWORD 'papo_test' CREATEDB\"" >&2
as_postgres "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='papo_test'\" | grep -q 1 || createdb -O papo_test papo_test" >&2
PG_URL=postgres://papo_test:papo_test@127.0.0.1/papo_test
psql "$PG_URL" -qtAc "SELECT 1" 2>&1 | grep -q '^1$' || fail "cannot sign in to Postgres as papo_test"

# Redis >= 7 on its own port, nothing persisted.
command -v redis-server >/dev/null || fail "Redis is not installed (scripts/install-deps.sh test)"
PORT=6399
if ! redis-cli -p $PORT ping >/dev/null 2>&1; then
  redis-server --port $PORT --bind 127.0.0.1 --save '' --appendonly no --daemonize yes >&2 \
    || fail "could not start redis-server"
fi
ready=0
for _ in $(seq 1 50); do redis-cli -p $PORT ping 2>/dev/null | grep -q PONG && { ready=1; break; }; sleep 0.2; done
[ "$ready" = 1 ] || fail "Redis does not answer on 127.0.0.1:$PORT"
major=$(redis-cli -p $PORT INFO server | sed -n 's/^redis_version:\([0-9]*\).*/\1/p')
[ "${major:-0}" -ge 7 ] || fail "Redis $major is too old: the Socket.IO Redis adapter needs >= 7 (RESP3)"

echo "export PAPO_TEST_POSTGRES_URL=$PG_URL"
echo "export PAPO_TEST_REDIS_URL='redis://127.0.0.1:$PORT/?protocol=resp3'"
echo "export PAPO_REQUIRE_POSTGRES=1"
