from datetime import datetime

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from portal.jobs import CHUNKED, job_chunk_run, job_chunks, job_finish, job_run
from portal.notifications import send_notifications  # noqa: F401  (registered here for the worker)


@shared_task(ignore_result=True)
def run_job(name: str, split: bool = False) -> None:
    """A beat entry: the job acts as of the moment it runs. With `split` (beat's entries of the
    chunked jobs, `portal.jobs.CHUNKED`) its chunks are queued as `run_job_chunk` tasks, which
    every worker takes its share of, then its finishing step runs here (issue 11, decision 0037);
    otherwise this task runs the whole job."""
    if not split or name not in CHUNKED or not settings.JOB_CHUNK_TASKS:
        job_run(name=name)
        return
    at = timezone.now()
    for ids in job_chunks(name=name, at=at):
        run_job_chunk.delay(name, ids, at.isoformat())
    job_finish(name=name, at=at)


@shared_task(ignore_result=True)
def run_job_chunk(name: str, ids: list[int], at: str) -> None:
    """One chunk of a beat run, as of the run's moment (acknowledged when done: a chunk whose
    worker died is delivered again, and does only what is still left)."""
    job_chunk_run(name=name, ids=ids, at=datetime.fromisoformat(at))
