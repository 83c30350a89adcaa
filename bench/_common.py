"""Helpers shared by the benchmarks in bench/: fresh PostgreSQL databases, migrations, a gunicorn
server on a free loopback port, HTTP load from keep-alive clients, pgbench, percentiles.

Nothing here imports Django: a benchmark configures Django itself (`django_setup`) once it has
pointed DATABASE_URL at its own database.

Environment:
  BENCH_PG_URL  the PostgreSQL server to use, as a URL to its maintenance database
                (default postgres://postgres@127.0.0.1:5432/postgres)
"""

from __future__ import annotations

import http.client
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
    )
    env.update(extra)
    return env


def migrate(database_url: str) -> None:
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=REPO, env=django_env(database_url), check=True,
    )


def django_setup(database_url: str) -> None:
    """Configure Django in this process against `database_url` (call once, before any model import)."""
    os.environ.pop("PORTAL_MODE", None)
    os.environ.update(django_env(database_url))
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
