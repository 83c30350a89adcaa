from celery import shared_task

from portal.notifications import notification_send_email


@shared_task(ignore_result=True)
def send_notification(notification_id: int) -> None:
    notification_send_email(notification_id=notification_id)
