#!/usr/bin/env bash
# Prepare the database and serve the portal with a Celery worker and Celery beat.
# Ctrl-C (or SIGTERM) stops all three and exits 0; if one of them dies, the others are stopped
# too and the script exits with its status.
#
# The console shows migrate, the web server and its access log; the demo logins are printed last,
# once the web server answers. Emails go to files in var/mail/ (MAIL_BACKEND set elsewhere wins),
# the worker's and beat's logs to var/log/ (decision 0028).
#
# Environment: BIND (address:port, default 127.0.0.1:8000; links in emails follow it unless
# SITE_URL is set), VENV (default .venv), WEB_WORKERS (gunicorn processes, default 2),
# DEMO_SIMULATOR (default 1: beat runs the delivery simulator), plus the portal's own settings
# (DATABASE_URL, CELERY_BROKER_URL, MAIL_BACKEND, ...).
set -euo pipefail
cd "$(dirname "$0")/.."

bin="${VENV:-.venv}/bin"
export BIND="${BIND:-127.0.0.1:8000}"
export DEMO_SIMULATOR="${DEMO_SIMULATOR:-1}"
if [ -z "${MAIL_BACKEND:-}" ]; then
  export MAIL_BACKEND=django.core.mail.backends.filebased.EmailBackend
  export MAIL_FILE_PATH="${MAIL_FILE_PATH:-var/mail}"
  mail_note="emails are written to $MAIL_FILE_PATH/ as files, not sent"
else
  mail_note="emails go through MAIL_BACKEND=$MAIL_BACKEND"
fi

# kombu's filesystem broker (the default without CELERY_BROKER_URL) needs its folders.
mkdir -p var/broker/queue var/broker/processed var/broker/control var/log

pids=()

stop() {
  # Ignore further signals while stopping (make and the terminal may both send one).
  trap '' INT TERM
  trap - EXIT
  local pid alive
  [ "${#pids[@]}" -gt 0 ] || return 0  # stopped during the setup: nothing runs yet
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
# Ctrl-C and SIGTERM are how a run is meant to end (during the setup too): stop everything and succeed.
trap 'stop; exit 0' INT TERM
trap 'stop' EXIT

"$bin/python" manage.py migrate --noinput
echo "==> loading the demo data"
demo="$("$bin/python" manage.py load_demo)"  # printed at the end, logins last
"$bin/python" manage.py collectstatic --noinput --verbosity 0

"$bin/celery" -A portal worker --pool=solo --loglevel=INFO >>var/log/worker.log 2>&1 &
pids+=("$!")
"$bin/celery" -A portal beat --loglevel=INFO >>var/log/beat.log 2>&1 &
pids+=("$!")
"$bin/gunicorn" portal.wsgi:application \
  --bind "$BIND" --workers "${WEB_WORKERS:-2}" \
  --graceful-timeout 5 --access-logfile - --no-control-socket &
pids+=("$!")

# Wait until the web server answers one request (bash's /dev/tcp: no curl needed): its port takes
# connections, then the first request, which can take seconds on a slow machine, gets its answer.
web="${pids[2]}"
wait_for_web() {
  local host="${BIND%:*}" port="${BIND##*:}" status
  host="${host#[}" && host="${host%]}"
  case "$host" in "" | 0.0.0.0 | ::) host=127.0.0.1 ;; esac
  for _ in $(seq 240); do
    kill -0 "$web" 2>/dev/null || return 0  # it died: `wait -n` below reports it
    if exec 3<>"/dev/tcp/$host/$port"; then
      printf 'GET /login/ HTTP/1.0\r\nHost: %s\r\n\r\n' "$host" >&3
      read -r -t 60 status <&3 || true
      exec 3<&- 3>&-
      sleep 0.2  # its access-log line comes out before the logins
      return 0
    fi 2>/dev/null
    sleep 0.25
  done
}
[[ "$BIND" == unix:* ]] || wait_for_web

cat <<EOF

==> portal served on $BIND by gunicorn; Celery worker and beat running (DEMO_SIMULATOR=$DEMO_SIMULATOR)
    $mail_note
    worker and beat log to var/log/worker.log and var/log/beat.log
    Ctrl-C stops all three
$demo

EOF

# Whichever process ends first (normally none until Ctrl-C) ends the whole run.
status=0
wait -n || status=$?
echo "a process exited with status $status; stopping the others (see var/log/ for the worker and beat)" >&2
exit "$status"
