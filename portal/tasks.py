from celery import shared_task

from portal.notifications import notification_send_email


@shared_task(ignore_result=True)
def send_notifications(notification_ids: list[int]) -> None:
    for pk in notification_ids:
        notification_send_email(notification_id=pk)


@shared_task(ignore_result=True)
def run_job(name: str) -> None:
    """A beat entry: the job acts as of the moment it runs."""
    from portal.jobs import job_run

    job_run(name=name)
