"""Celery tasks of the billing app: thin wrappers around plain functions (STYLE)."""

from datetime import datetime

from celery import shared_task

from billing.simulator import simulate_delivery as run


@shared_task(name="billing.tasks.simulate_delivery", ignore_result=True)
def simulate_delivery(at: str | None = None) -> dict:
    """One round of demo delivery (beat entry "simulate-delivery" when DEMO_SIMULATOR=1)."""
    return run(at=datetime.fromisoformat(at) if at else None)
