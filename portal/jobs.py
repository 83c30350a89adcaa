"""The periodic jobs (SPEC R33), by name. Each is a plain function taking `at` and returning counts;
the Celery task and `manage.py run_job NAME [--at ISO-8601]` both call it through `job_run`."""

from datetime import datetime
from importlib import import_module

JOBS: dict[str, str] = {
    "charge_thresholds": "billing.autopay.charge_thresholds",
    "charge_bill_dates": "billing.autopay.charge_bill_dates",
    "retry_payments": "billing.autopay.retry_payments",
    "send_refunds": "billing.credit_notes.refunds_send",
    "issue_monthly_invoices": "billing.invoicing.issue_monthly_invoices",
    "issue_statements": "billing.statements.issue_statements",
    "remind_invoices": "billing.reminders.remind_invoices",
    "reconcile_ledger": "billing.reconcile.reconcile_ledger",
    "reconcile_ledger_full": "billing.reconcile.reconcile_ledger_full",
    "close_ladder_windows": "promotions.programs.close_ladder_windows",
    "expire_credits": "promotions.expiry.expire_credits",
    "remind_expiring": "promotions.expiry.remind_expiring",
    "notifications_send_due": "portal.notifications.notifications_send_due",
    "roll_spending_limits": "billing.limits.spending_limits_roll",
    "alerts_check": "portal.alerts.alerts_check",
    "deliver_webhooks": "portal.webhooks.deliver_webhooks",
}


# Jobs whose chunks beat runs as tasks that several workers share (issue 11): (the chunks' ids
# as of `at`, one chunk's work, what runs once after the chunks are queued — or None). Each chunk
# locks its own rows and re-reads them, so chunks of one run on two workers, a chunk re-delivered
# after a worker died, and a run by hand at the same time never do anything twice.
CHUNKED: dict[str, tuple[str, str, str | None]] = {
    "charge_thresholds": ("billing.autopay.charge_thresholds_chunks", "billing.autopay.charge_thresholds_chunk",
                          "billing.autopay.charge_thresholds_finish"),
    "expire_credits": ("promotions.expiry.expire_credits_chunks", "promotions.expiry.expire_credits_chunk", None),
    "issue_statements": ("billing.statements.statements_chunks", "billing.statements.statements_chunk", None),
}


def _function(path: str):
    module, func = path.rsplit(".", 1)
    return getattr(import_module(module), func)


def job_chunks(*, name: str, at: datetime) -> list[list[int]]:
    """The id lists of the chunks of `name` as of `at`."""
    return [list(ids) for ids in _function(CHUNKED[name][0])(at=at)]


def job_chunk_run(*, name: str, ids: list[int], at: datetime) -> dict:
    return _function(CHUNKED[name][1])(ids=ids, at=at)


def job_finish(*, name: str, at: datetime) -> dict:
    finish = CHUNKED[name][2]
    return _function(finish)(at=at) if finish else {}


def job_run(*, name: str, at: datetime | None = None) -> dict:
    if name not in JOBS:
        raise KeyError(f"unknown job {name!r}; jobs: {', '.join(sorted(JOBS))}")
    module, func = JOBS[name].rsplit(".", 1)
    return getattr(import_module(module), func)(at=at)


# --- exactly one beat (issue 11, decision 0021) -------------------------------------------------

BEAT_LOCK_KEY = 7_340_311_823  # the PostgreSQL advisory lock the running beat holds
_held: list = []


def beat_lock_take():
    """Take the beat's lock for the life of this process, or None when another beat holds it.

    PostgreSQL: a session advisory lock on a connection of the beat's own (not Django's, which
    closes its connections between tasks); it is released when the process ends, however it ends.
    SQLite (`make run`): an exclusive lock on a file beside the database."""
    from django.db import connections

    if connections["default"].vendor == "postgresql":
        own = connections.create_connection("default")
        with own.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [BEAT_LOCK_KEY])
            (taken,) = cursor.fetchone()
        if not taken:
            own.close()
            return None
        _held.append(own)
        return own
    import fcntl

    from django.conf import settings

    handle = open(settings.VAR_DIR / "beat.lock", "w")  # noqa: SIM115 — kept open: the lock lives with it
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    _held.append(handle)
    return handle


def beat_lock_release(lock) -> None:
    if lock in _held:
        _held.remove(lock)
    lock.close()
