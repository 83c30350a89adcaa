"""Helpers shared by the benchmarks in bench/: fresh PostgreSQL databases, migrations, a gunicorn
server on a free loopback port, HTTP load from keep-alive clients, pgbench, percentiles; bulk loads
in set-based SQL, database copies, child processes measured for time and peak memory, ledger
checks in plain SQL.

Nothing here imports Django: a benchmark configures Django itself (`django_setup`) once it has
pointed DATABASE_URL at its own database.

Environment:
  BENCH_PG_URL  the PostgreSQL server to use, as a URL to its maintenance database
                (default postgres://postgres@127.0.0.1:5432/postgres)
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"  # logs of the last run (git-ignored)
PYTHON = sys.executable
PG_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def log(msg: str) -> None:
    """Progress goes to stderr; the result lines go to stdout."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- PostgreSQL -----------------------------------------------------------------------------

def db_url(name: str) -> str:
    """The URL of database `name` on the benchmark's PostgreSQL server."""
    parts = urlsplit(PG_ADMIN_URL)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))


def _admin_execute(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql)


def _check_name(name: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise ValueError(f"not a safe database name: {name!r}")
    return name


def fresh_database(name: str) -> str:
    """Drop database `name` if present (disconnecting its sessions), create it empty; its URL."""
    drop_database(name)
    _admin_execute(f'CREATE DATABASE "{_check_name(name)}"')
    return db_url(name)


def drop_database(name: str) -> None:
    _admin_execute(f'DROP DATABASE IF EXISTS "{_check_name(name)}" WITH (FORCE)')


def analyze(url: str) -> None:
    """Refresh the planner's statistics, as autovacuum would on a live server.

    A freshly loaded database has none; PostgreSQL then plans the ledger's per-entry commit
    trigger with sequential scans and every COMMIT gets slower as the tables grow.
    """
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE")


def pg_setting(name: str) -> str:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        return conn.execute("SELECT current_setting(%s)", [name]).fetchone()[0]


def pg_conninfo(url: str) -> dict:
    """host/port/user/dbname of a URL, for command-line tools such as pgbench."""
    parts = urlsplit(url)
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": str(parts.port or 5432),
        "user": parts.username or "postgres",
        "dbname": parts.path.lstrip("/"),
        "password": parts.password,
    }


# --- Django ---------------------------------------------------------------------------------

def django_env(database_url: str, **extra: str) -> dict:
    """Environment for a Django process on `database_url`: production-like, not hardened."""
    env = {k: v for k, v in os.environ.items() if k != "PORTAL_MODE"}
    env.update(
        DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE="portal.settings",
        DEBUG="0",
        ALLOWED_HOSTS="127.0.0.1",
        LOG_LEVEL="WARNING",
        # Queued tasks and mail stay inside the process: a benchmark must not feed the
        # project's real broker or send mail.
        CELERY_BROKER_URL="memory://localhost/",
        MAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
        # The per-token limit (600 a minute by default) still counts every request, as in
        # production, but must not refuse the benchmark's own load: one token sends it all.
        API_RATE_LIMIT="100000000/minute",
    )
    env.update(extra)
    return env


def migrate(database_url: str) -> None:
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=REPO, env=django_env(database_url), check=True,
    )


def django_setup(database_url: str, **extra: str) -> None:
    """Configure Django in this process against `database_url` (call once, before any model import);
    `extra` environment variables as in `django_env`."""
    os.environ.pop("PORTAL_MODE", None)
    os.environ.update(django_env(database_url, **extra))
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import django

    django.setup()


# --- gunicorn -------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    port: int
    process: subprocess.Popen
    log_path: Path
    host: str = "127.0.0.1"


@contextmanager
def gunicorn(database_url: str, *, workers: int = 4, worker_class: str = "sync", threads: int = 1,
             name: str = "server", ready_path: str = "/api/v1/openapi.json", timeout: float = 30.0):
    """Run `gunicorn portal.wsgi` on a free loopback port until the block ends.

    Ready when `ready_path` answers anything over HTTP. The server's log is kept in bench/results/.
    """
    RESULTS.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = RESULTS / f"{name}.log"
    cmd = [
        str(Path(PYTHON).parent / "gunicorn"), "portal.wsgi",
        "-w", str(workers), "-k", worker_class, "--threads", str(threads),
        "-b", f"127.0.0.1:{port}", "--keep-alive", "30", "--timeout", "120",
        "--error-logfile", "-", "--log-level", "warning",
    ]
    with open(log_path, "w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=django_env(database_url), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    server = Server(port, proc, log_path)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {proc.returncode}; see {log_path}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", ready_path)
                conn.getresponse().read()
                conn.close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"gunicorn did not answer within {timeout:.0f}s; see {log_path}") from None
                time.sleep(0.2)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # graceful: the master stops its workers
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --- HTTP load --------------------------------------------------------------------------------

@dataclass
class LoadResult:
    seconds: float  # wall time from the first request sent to the last answer read
    latencies: list[float]  # per request, seconds
    answers: list = field(default_factory=list)  # whatever `check` returned, per request
    errors: list[str] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)  # bodies sent, per client


def http_load(server: Server, path: str, bodies_per_client: list[list[bytes]], *, headers: dict,
              check=None, method: str = "POST", max_seconds: float | None = None) -> LoadResult:
    """One thread per client, each sending its bodies in order over one keep-alive connection.

    `check(status, body_bytes)` runs for every answer (after the latency is taken) and returns a
    value kept in `answers`, or raises to record an error. The clients start together; with
    `max_seconds` a client sends no new request once that time has passed (`sent` says how many
    bodies each client sent).
    """
    headers = {"Content-Type": "application/json", "Connection": "keep-alive", **headers}
    n = len(bodies_per_client)
    latencies: list[list[float]] = [[] for _ in range(n)]
    answers: list[list] = [[] for _ in range(n)]
    errors: list[str] = []
    start = threading.Barrier(n + 1)
    ends = [0.0] * n
    sent = [0] * n
    t_start = 0.0

    def client(i: int) -> None:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=120)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start.wait()
        try:
            for body in bodies_per_client[i]:
                t0 = time.perf_counter()
                if max_seconds is not None and t0 - t_start > max_seconds:
                    break
                sent[i] += 1
                try:
                    conn.request(method, path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                except (http.client.HTTPException, OSError):
                    # The server closed an idle keep-alive connection: reconnect once and resend.
                    conn.close()
                    conn = http.client.HTTPConnection(server.host, server.port, timeout=120)
                    t0 = time.perf_counter()
                    conn.request(method, path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                latencies[i].append(time.perf_counter() - t0)
                if resp.will_close:
                    conn.close()  # http.client reopens it on the next request
                try:
                    answers[i].append(check(resp.status, data) if check else resp.status)
                except Exception as e:  # noqa: BLE001 - reported, not raised, so others finish
                    errors.append(f"client {i}: {e}")
        except Exception as e:  # noqa: BLE001
            errors.append(f"client {i} stopped: {e!r}")
        finally:
            ends[i] = time.perf_counter()
            conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    t_start = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    return LoadResult(
        seconds=max(ends) - t_start,
        latencies=[x for per in latencies for x in per],
        answers=[x for per in answers for x in per],
        errors=errors,
        sent=sent,
    )


# --- CPU accounting (Linux /proc) ------------------------------------------------------------

def _cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


class CpuMeter:
    """CPU seconds used by the gunicorn workers ("app") and by the PostgreSQL backends serving
    database `dbname` ("db") between `start()` and `stop()`. Zeros where /proc is not readable."""

    def __init__(self, server: Server, dbname: str):
        self.server, self.dbname = server, dbname

    def _pids(self) -> tuple[list[int], list[int]]:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            db = [r[0] for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [self.dbname])]
        return _children(self.server.process.pid), db

    def _snapshot(self) -> dict:
        app, db = self._pids()
        return {("app", p): _cpu_seconds(p) for p in app} | {("db", p): _cpu_seconds(p) for p in db}

    def start(self) -> None:
        self.before = self._snapshot()

    def stop(self) -> dict[str, float]:
        out = {"app": 0.0, "db": 0.0}
        for (kind, pid), now in self._snapshot().items():
            if now is not None:
                out[kind] += now - (self.before.get((kind, pid)) or 0.0)
        return out


class LockSampler:
    """Samples pg_stat_activity of database `dbname` in a thread while the block runs:
    `lock_share` is the fraction of busy-backend samples that were waiting for a lock."""

    def __init__(self, dbname: str, interval: float = 0.05):
        self.dbname, self.interval = dbname, interval
        self.busy = self.waiting = 0

    def __enter__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            while not self._stop.wait(self.interval):
                busy, waiting = conn.execute(
                    "SELECT count(*), count(*) FILTER (WHERE wait_event_type = 'Lock') FROM pg_stat_activity"
                    " WHERE datname = %s AND state <> 'idle' AND pid <> pg_backend_pid()", [self.dbname],
                ).fetchone()
                self.busy += busy
                self.waiting += waiting

    @property
    def lock_share(self) -> float:
        return self.waiting / self.busy if self.busy else 0.0


# --- pgbench ----------------------------------------------------------------------------------

def pgbench_tpcb(*, scale: int = 4, clients: int = 4, jobs: int = 2, seconds: int = 15,
                 dbname: str = "bench_pgbench") -> float:
    """tps of pgbench's built-in TPC-B-like script in a fresh database (dropped afterwards)."""
    exe = shutil.which("pgbench")
    if exe is None:
        raise RuntimeError("pgbench is not on PATH (Debian/Ubuntu: apt-get install postgresql-client)")
    info = pg_conninfo(fresh_database(dbname))
    env = dict(os.environ)
    if info["password"]:
        env["PGPASSWORD"] = info["password"]
    conn = ["-h", info["host"], "-p", info["port"], "-U", info["user"]]
    try:
        subprocess.run([exe, *conn, "-i", "-q", "-s", str(scale), info["dbname"]], env=env, check=True,
                       capture_output=True, text=True)
        out = subprocess.run(
            [exe, *conn, "-c", str(clients), "-j", str(jobs), "-T", str(seconds), "-n", info["dbname"]],
            env=env, check=True, capture_output=True, text=True,
        ).stdout
    finally:
        drop_database(dbname)
    return parse_pgbench_tps(out)


def parse_pgbench_tps(output: str) -> float:
    """The tps of pgbench's report (the figure without initial connection time when given)."""
    found = re.findall(r"^tps = ([0-9.]+) \((?:without|excluding) initial connection", output, re.M)
    found = found or re.findall(r"^tps = ([0-9.]+)", output, re.M)
    if not found:
        raise RuntimeError(f"no 'tps = ...' line in pgbench output:\n{output}")
    return float(found[-1])


# --- statistics -------------------------------------------------------------------------------

def percentile(values, p: float) -> float:
    """The p-th percentile (0–100) with linear interpolation between closest ranks."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


# --- set-based loading, database copies, measured child processes -----------------------------

def sql(url: str, *statements: str, params=None, autocommit: bool = False) -> list:
    """Run statements in one transaction on `url` (committed), or each on its own with
    `autocommit`; the rows of the last one, if any. BENCH_VERBOSE=1 logs each one's time."""
    import psycopg

    rows: list = []
    with psycopg.connect(url, autocommit=autocommit) as conn:
        for statement in statements:
            t0 = time.perf_counter()
            cur = conn.execute(statement, params)
            rows = cur.fetchall() if cur.description else []
            if os.environ.get("BENCH_VERBOSE"):
                log(f"  {time.perf_counter() - t0:6.2f} s  {' '.join(statement.split())[:90]}")
    return rows


@contextmanager
def secondary_indexes_dropped(url: str, tables: list[str]):
    """Drop the indexes of `tables` that back no constraint while the block bulk-loads them, then
    create them again from their own definitions (`pg_get_indexdef`): one sort per index instead
    of a tree insert per row — several times faster for millions of rows, and the schema ends
    up exactly as migrated. Primary keys and unique constraints stay."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        found = conn.execute(
            """SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
                 FROM pg_index i
                WHERE i.indrelid = ANY(%s::regclass[])
                  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)""",
            [tables],
        ).fetchall()
        for name, _ in found:
            conn.execute(f"DROP INDEX {name}")
    yield
    sql(url, "SET maintenance_work_mem = '512MB'", *[definition for _, definition in found], autocommit=True)


def clone_database(template: str, name: str) -> str:
    """A fresh copy of database `template` (which must have no open connections); its URL.

    FILE_COPY copies the files after a checkpoint instead of writing every page to the WAL: a
    few seconds for a few GB. Every copy starts alike — its pages in the OS cache (just
    written), none in PostgreSQL's shared buffers (they are new files) — so two copies make a
    fair pair for timing two ways of doing the same work.
    """
    drop_database(name)
    _admin_execute(f'CREATE DATABASE "{_check_name(name)}" TEMPLATE "{_check_name(template)}" STRATEGY FILE_COPY')
    return db_url(name)


def checkpoint() -> None:
    """Flush dirty pages now, so the next timed step neither inherits them nor pays for them.
    (After a checkpoint each page's first change is logged in full: both sides of a ratio pay it.)"""
    _admin_execute("CHECKPOINT")


def database_size(name: str) -> int:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        return conn.execute("SELECT pg_database_size(%s)", [name]).fetchone()[0]


@dataclass
class Measured:
    seconds: float  # wall time of the whole process
    max_rss_mb: float  # its peak resident set size (this child alone, from wait4)
    stdout: str


def run_measured(cmd: list[str], *, env: dict | None = None, timeout: float = 3600, cwd=REPO) -> Measured:
    """Run a child process and return its output, wall time and its own peak RSS.

    `os.wait4` gives the resource usage of that one child, where
    `getrusage(RUSAGE_CHILDREN)` would report the largest of every child waited for so far
    (migrate included).
    """
    t0 = time.perf_counter()
    with open(os.devnull, "rb") as devnull:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=devnull, stdout=subprocess.PIPE, text=True)
    out_chunks: list[str] = []
    reader = threading.Thread(target=lambda: out_chunks.append(proc.stdout.read()), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{cmd[:3]} did not finish within {timeout:.0f} s")
        time.sleep(0.05)
    seconds = time.perf_counter() - t0
    reader.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd[:3])} … exited with {proc.returncode}")
    return Measured(seconds=seconds, max_rss_mb=usage.ru_maxrss / 1024, stdout="".join(out_chunks))


@contextmanager
def memory_broker_drained(interval: float = 0.5):
    """Empty kombu's in-memory broker every `interval` seconds while the block runs.

    Benchmarks queue Celery tasks to `memory://` (`django_env`) so that nothing reaches a real
    broker; but that transport keeps every message in the queuing process, so a job that
    queues an email per bill would seem to grow by a few KB a bill. This thread plays the
    worker that takes them off the queue in production.
    """
    from kombu.transport import memory

    stop = threading.Event()

    def drain() -> None:
        while not stop.wait(interval):
            for queue in list(memory.Channel.queues.values()):
                with queue.mutex:
                    queue.queue.clear()

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def rss_mb() -> float:
    """This process's resident set size now (Linux), in MB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def machine_note(started: float) -> str:
    """The tail of a benchmark's last line: its duration and how busy the machine was."""
    return (f"{time.monotonic() - started:.0f} s, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


# --- ledger checks (plain SQL, for databases loaded in bulk) ---------------------------------

def ledger_unbalanced(url: str) -> list:
    """Currencies whose entries do not sum to zero (debits = credits): [] when balanced."""
    return sql(url, """
        SELECT a.currency, SUM(CASE WHEN e.side = 'D' THEN e.amount ELSE -e.amount END)
          FROM billing_ledgerentry e JOIN billing_ledgeraccount a ON a.id = e.account_id
         GROUP BY a.currency HAVING SUM(CASE WHEN e.side = 'D' THEN e.amount ELSE -e.amount END) <> 0""")


def balances_drift(url: str, accounts_sql: str) -> tuple[int, int]:
    """(accounts checked, accounts whose stored balance differs from the sum of their entries)
    for the ledger accounts whose ids `accounts_sql` selects."""
    [(checked, drifted)] = sql(url, f"""
        WITH sample AS ({accounts_sql})
        SELECT count(*), count(*) FILTER (WHERE a.balance <> CASE WHEN a.normal = 'D' THEN COALESCE(s.dr, 0)
                                                                  ELSE -COALESCE(s.dr, 0) END)
          FROM billing_ledgeraccount a JOIN sample USING (id)
          LEFT JOIN LATERAL (SELECT SUM(CASE WHEN side = 'D' THEN amount ELSE -amount END) AS dr
                               FROM billing_ledgerentry WHERE account_id = a.id) s ON true""")
    return checked, drifted


# --- bulk-loaded advertisers (set-based SQL matching the migrated schema) ---------------------

# An advertiser's standard ledger accounts (billing.models.ADVERTISER_PURPOSES) with their
# normal sides. Bulk loads give advertiser a (1, 2, …) the account ids (a - 1) * 10 + position.
ADVERTISER_ACCOUNTS = [("cash", "C"), ("arrears", "D"), ("accrued", "D"), ("credit_line", "D"), ("billed", "D"),
                       ("settlement", "D"), ("revenue", "C"), ("fee_revenue", "C"), ("promotion_expense", "D"),
                       ("forfeiture", "C")]


def account_position(purpose: str) -> int:
    return 1 + [p for p, _ in ADVERTISER_ACCOUNTS].index(purpose)


def sql_ts(t) -> str:
    """A timestamptz literal for SQL the benchmarks generate themselves."""
    return f"'{t.isoformat()}'::timestamptz"


CURRENCY_SQL = "CASE WHEN {} % 10 = 7 THEN 'EUR' ELSE 'USD' END"  # advertiser a: 90% USD, 10% EUR


def advertisers_sql(count: int, at, *, billing_method: str = "manual", credit_frozen: str = "false",
                    billing_threshold: str = "NULL", next_bill_at: str = "NULL", successful_payments: str = "0") -> list[str]:
    """INSERTs of advertisers 1..count (every column, as the migrated schema has them) and
    their ten ledger accounts at balance 0. Keyword arguments are SQL expressions of `a`."""
    purposes = ", ".join(f"({k}, '{p}', '{side}')" for k, (p, side) in enumerate(ADVERTISER_ACCOUNTS, start=1))
    since = f"{sql_ts(at)} - interval '400 days'"
    return [
        f"""INSERT INTO portal_advertiser
              (id, name, currency, timezone, billing_method, status, registered_at, signup_source, shop_id,
               credit_frozen, billing_threshold, bill_cycle, credit_line_limit, invoicing_eligible, created_at,
               business_center_id, failed_payments, next_bill_at, successful_payments,
               spending_limit, spending_limit_period, limit_spent, limit_month)
            SELECT a, 'Bench advertiser ' || a, {CURRENCY_SQL.format('a')},
                   (ARRAY['UTC', 'America/New_York', 'Europe/Berlin', 'Asia/Tokyo'])[1 + a % 4], '{billing_method}',
                   'active', {since}, 'organic', '', {credit_frozen}, {billing_threshold}, 'monthly', 0, false, {since},
                   NULL, 0, {next_bill_at}, {successful_payments}, NULL, 'monthly', 0, NULL
              FROM generate_series(1, {int(count)}) a""",
        f"""INSERT INTO billing_ledgeraccount (id, purpose, currency, normal, balance, advertiser_id, business_center_id)
            SELECT (a - 1) * 10 + p.k, p.purpose, {CURRENCY_SQL.format('a')}, p.normal, 0, a, NULL
              FROM generate_series(1, {int(count)}) a CROSS JOIN (VALUES {purposes}) p(k, purpose, normal)""",
    ]


BULK_LOAD_SESSION = [
    # Foreign-key checks and the ledger's triggers are off while loading (the loads generate
    # consistent data and the benchmarks check it afterwards); the timed steps run with the
    # server's own settings.
    "SET session_replication_role = replica",
    "SET synchronous_commit = off",
    "SET temp_buffers = '1GB'",
    "SET work_mem = '256MB'",
]


def reset_sequences(tables: list[str]) -> list[str]:
    """Statements that move each table's id sequence past the ids a bulk load gave explicitly."""
    return [f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), GREATEST((SELECT max(id) FROM {t}), 1))"
            for t in tables]


def child_json(cmd: list[str], env: dict, cwd=REPO) -> dict:
    """Run a benchmark's child process; the JSON object on its last output line, with the
    child's peak RSS added as `max_rss_mb`. (Run it from the checkout whose code it should
    import: Celery puts the working directory first on the child's import path.)"""
    m = run_measured(cmd, env=env, cwd=cwd)
    out = json.loads(m.stdout.strip().splitlines()[-1])
    out["max_rss_mb"] = m.max_rss_mb
    return out


def django_setting(name: str):
    """A Django setting as the benchmark's child processes will see it (repr-evaluated)."""
    import ast

    out = run_measured([PYTHON, "-c", "import django; django.setup(); from django.conf import settings;"
                                      f" print(repr(settings.{name}))"], env=django_env(PG_ADMIN_URL))
    return ast.literal_eval(out.stdout.strip().splitlines()[-1])
