#!/usr/bin/env bash
# Prepare the database and serve the portal with a Celery worker and Celery beat.
# Ctrl-C (or SIGTERM) stops all three; if one of them dies, the others are stopped too.
#
# Environment: BIND (address:port, default 127.0.0.1:8000), VENV (default .venv),
# WEB_WORKERS (gunicorn processes, default 2), DEMO_SIMULATOR (default 1: beat runs the
# delivery simulator), plus the portal's own settings (DATABASE_URL, CELERY_BROKER_URL, ...).
set -euo pipefail
cd "$(dirname "$0")/.."

bin="${VENV:-.venv}/bin"
BIND="${BIND:-127.0.0.1:8000}"
export DEMO_SIMULATOR="${DEMO_SIMULATOR:-1}"

# kombu's filesystem broker (the default without CELERY_BROKER_URL) needs its folders.
mkdir -p var/broker/queue var/broker/processed var/broker/control

"$bin/python" manage.py migrate --noinput
"$bin/python" manage.py load_demo
"$bin/python" manage.py collectstatic --noinput --verbosity 0

pids=()

stop() {
  # Ignore further signals while stopping (make and the terminal may both send one).
  trap '' INT TERM
  trap - EXIT
  local pid alive
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  # Celery finishes its current task on TERM; give everything 15 s, then force.
  for _ in $(seq 150); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "stopped web, worker and beat"
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
trap 'stop' EXIT

"$bin/gunicorn" portal.wsgi:application \
  --bind "$BIND" --workers "${WEB_WORKERS:-2}" \
  --graceful-timeout 5 --access-logfile - --no-control-socket &
pids+=("$!")
"$bin/celery" -A portal worker --pool=solo --loglevel=INFO &
pids+=("$!")
"$bin/celery" -A portal beat --loglevel=INFO &
pids+=("$!")

echo "==> portal on http://$BIND/ with Celery worker and beat (DEMO_SIMULATOR=$DEMO_SIMULATOR); Ctrl-C stops all"

# Whichever process ends first (normally none until Ctrl-C) ends the whole run.
status=0
wait -n || status=$?
echo "a process exited with status $status; stopping the others" >&2
exit "$status"
