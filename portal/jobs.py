"""The periodic jobs (SPEC R33), by name. Each is a plain function taking `at` and returning counts;
the Celery task and `manage.py run_job NAME [--at ISO-8601]` both call it through `job_run`."""

from datetime import datetime
from importlib import import_module

JOBS: dict[str, str] = {
    "charge_thresholds": "billing.autopay.charge_thresholds",
    "charge_bill_dates": "billing.autopay.charge_bill_dates",
    "retry_payments": "billing.autopay.retry_payments",
    "issue_monthly_invoices": "billing.invoicing.issue_monthly_invoices",
    "reconcile_ledger": "billing.reconcile.reconcile_ledger",
    "close_ladder_windows": "promotions.programs.close_ladder_windows",
    "expire_credits": "promotions.expiry.expire_credits",
    "remind_expiring": "promotions.expiry.remind_expiring",
    "notifications_send_due": "portal.notifications.notifications_send_due",
}


def job_run(*, name: str, at: datetime | None = None) -> dict:
    if name not in JOBS:
        raise KeyError(f"unknown job {name!r}; jobs: {', '.join(sorted(JOBS))}")
    module, func = JOBS[name].rsplit(".", 1)
    return getattr(import_module(module), func)(at=at)
