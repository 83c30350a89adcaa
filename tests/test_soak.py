"""The short soak (issue 11): the real topology — a PostgreSQL primary with a streaming replica,
Redis, two gunicorn masters, two Celery workers and beat — under spend with resends, jobs run
by hand beside beat, and faults (Celery worker processes killed mid-job, gunicorn workers
killed, Redis restarted, the primary restarted); every money invariant must hold after it.

It runs `bench/soak --short` as its own process tree on ports and a folder of its own, so it
shares nothing with the rest of the suite but the machine."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NEEDS = ["redis-server", "pg_config", "pg_basebackup"]


def test_the_short_soak_keeps_every_money_invariant_under_faults():
    missing = [tool for tool in NEEDS if shutil.which(tool) is None]
    assert not missing, f"the soak needs {missing} on the PATH (make test's machine has them)"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "CACHE_URL", "CELERY_"))}
    done = subprocess.run([sys.executable, str(REPO / "bench" / "soak"), "--short"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr[-4000:]
    lines = {line.split(":")[0]: line for line in out.splitlines() if ":" in line}
    for name in ("events", "bills", "credit expiry", "ladder rewards", "ledger balanced", "balances equal entries",
                 "notifications", "replica", "answers"):
        assert name in lines and "BROKEN" not in lines[name], out
    assert "doubled 0" in lines["events"] and "ledger balanced: yes" in out and " 0 lost" in lines["notifications"]
    assert "soak passed" in out
    # the jobs had work under the faults: credit expired, ladder windows closed, bills paid
    assert not lines["credit expiry"].startswith("credit expiry: 0 "), lines["credit expiry"]
    assert not lines["ladder rewards"].startswith("ladder rewards: 0 "), lines["ladder rewards"]
    assert not lines["bills"].startswith("bills: 0 "), lines["bills"]
    # the faults were injected, not skipped
    summary = next(line for line in out.splitlines() if line.startswith("soak passed"))
    for fault in ("worker kills 2", "gunicorn kills 2", "redis restarts 1", "primary restarts 1"):
        assert fault in summary, summary
