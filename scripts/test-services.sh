#!/usr/bin/env bash
# Starts the Postgres and Redis the scale-out tests use, on loopback, and prints the variables
# that point the tests at them. Usage: eval "$(bash scripts/test-services.sh)"
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
as_postgres() { if [ "$(id -u)" = 0 ]; then su postgres -c "$1"; else sudo -u postgres sh -c "$1"; fi; }

# Postgres: the Debian cluster, a role that may create the per-test databases.
if ! pg_lsclusters -h 2>/dev/null | grep -q online; then
  $SUDO service postgresql start >&2
fi
for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 && break; sleep 0.5; done
as_postgres "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='papo_test'\" | grep -q 1 || psql -q -c \"CREATE ROLE papo_test LOGIN PASSWORD 'papo_test' CREATEDB\"" >&2
as_postgres "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='papo_test'\" | grep -q 1 || createdb -O papo_test papo_test" >&2

# Redis >= 7 on its own port, nothing persisted.
PORT=6399
if ! redis-cli -p $PORT ping >/dev/null 2>&1; then
  redis-server --port $PORT --bind 127.0.0.1 --save '' --appendonly no --daemonize yes >&2
fi
for _ in $(seq 1 30); do redis-cli -p $PORT ping >/dev/null 2>&1 && break; sleep 0.2; done

echo "export PAPO_TEST_POSTGRES_URL=postgres://papo_test:papo_test@127.0.0.1/papo_test"
echo "export PAPO_TEST_REDIS_URL='redis://127.0.0.1:$PORT/?protocol=resp3'"
echo "export PAPO_REQUIRE_POSTGRES=1"
