from celery import shared_task

from portal.jobs import job_run
from portal.notifications import send_notifications  # noqa: F401  (registered here for the worker)


@shared_task(ignore_result=True)
def run_job(name: str) -> None:
    """A beat entry: the job acts as of the moment it runs."""
    job_run(name=name)
