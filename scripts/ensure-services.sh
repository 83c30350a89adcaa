#!/usr/bin/env bash
# Make sure the local PostgreSQL and Redis that the test suite uses are up: start whichever does
# not answer, wait for both, and create the database named in DATABASE_URL if it is missing.
# Usage: DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal scripts/ensure-services.sh
set -euo pipefail

DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/portal}"
WAIT_SECONDS="${WAIT_SECONDS:-60}"

pg_up() { pg_isready -h 127.0.0.1 -q >/dev/null 2>&1; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 ping 2>/dev/null)" = PONG ]; }

for tool in pg_isready redis-cli; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "error: '$tool' not found: the tests need a local PostgreSQL and Redis" >&2
    exit 1
  fi
done

if ! pg_up; then
  version="$(ls /etc/postgresql | sort -V | tail -n 1)"
  echo "==> starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
fi

if ! redis_up; then
  echo "==> starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi

deadline=$((SECONDS + WAIT_SECONDS))
until pg_up && redis_up; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    pg_up || echo "error: PostgreSQL did not answer on 127.0.0.1 within ${WAIT_SECONDS}s" >&2
    redis_up || echo "error: Redis did not answer on 127.0.0.1 within ${WAIT_SECONDS}s" >&2
    exit 1
  fi
  sleep 1
done

# postgres://user@host:port/name?options -> the server URL and the database name
server="${DATABASE_URL%%\?*}"
name="${server##*/}"
server="${server%/*}"
if [ -n "$name" ] && [ "$(psql "$server/postgres" -tAc "SELECT 1 FROM pg_database WHERE datname = '$name'")" != 1 ]; then
  echo "==> creating database $name"
  psql "$server/postgres" -qc "CREATE DATABASE \"$name\"" || true
fi
echo "PostgreSQL and Redis are up (database: $name)"
