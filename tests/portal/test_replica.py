"""Reads off a replica (issue 11, decision 0022): the cases in replica_cases.py, run in a process
started with DATABASE_REPLICA_URL set and its own test database (this run's is left alone)."""

import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings

REPO = Path(__file__).resolve().parents[2]


def test_reads_off_a_replica_in_a_process_that_has_one():
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        base = f"sqlite:///{REPO / 'var' / 'replica-check.sqlite3'}"
    else:
        auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
        base = f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/portal_replica_check"
    env = {**os.environ, "DATABASE_URL": base, "DATABASE_REPLICA_URL": base}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:xdist", "tests/portal/replica_cases.py",
         "--create-db"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "4 passed" in result.stdout, result.stdout[-2000:]
