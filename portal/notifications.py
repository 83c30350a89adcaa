"""Notifications (SPEC R36): one record per event, emailed once after the transaction commits.

`notify` is called inside the transaction that made the change. The Notification row's unique
`key` makes it exactly-once however often a job runs; the email is queued with
`transaction.on_commit`, so a rolled-back change never sends mail.
"""

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMultiAlternatives
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.utils import timezone

from portal.models import Notification, Role

log = logging.getLogger(__name__)

SUBJECTS = {
    "credit_issued": "You received {amount} in ad credit",
    "credit_expiring": "{amount} of ad credit expires on {date}",
    "credit_expired": "{amount} of ad credit expired",
}


def notify(*, advertiser, kind: str, key: str, context: dict, link: str = "") -> Notification | None:
    """Record a notification and queue its email; returns None if `key` was already notified."""
    context = {**context, "advertiser": advertiser, "site_url": settings.SITE_URL}
    subject = SUBJECTS[kind].format(**context)
    body = render_to_string(f"emails/{kind}.txt", context)
    try:
        with transaction.atomic():
            note = Notification.objects.create(
                advertiser=advertiser, kind=kind, key=key, subject=subject, body=body, link=link
            )
    except IntegrityError:
        return None
    transaction.on_commit(lambda: _queue(note.pk))
    return note


def _queue(notification_id: int) -> None:
    from portal.tasks import send_notification

    send_notification.delay(notification_id)


def recipients(advertiser) -> list[str]:
    """Payments people of the account: its admins and finance members, and its BC's."""
    User = get_user_model()
    q = Q(memberships__advertiser=advertiser, memberships__role__in=[Role.ADMIN, Role.FINANCE])
    if advertiser.business_center_id:
        q |= Q(bc_memberships__business_center_id=advertiser.business_center_id)
    return sorted(set(User.objects.filter(q, is_active=True).exclude(email="").values_list("email", flat=True)))


def notification_send_email(*, notification_id: int) -> bool:
    """Send a notification's email once. Claimed with a guarded UPDATE so a retried task or two
    workers never send it twice."""
    claimed = Notification.objects.filter(pk=notification_id, emailed_at__isnull=True).update(emailed_at=timezone.now())
    if not claimed:
        return False
    note = Notification.objects.select_related("advertiser").get(pk=notification_id)
    to = recipients(note.advertiser)
    if not to:
        return False
    html = render_to_string(
        "emails/base.html", {"subject": note.subject, "body": note.body, "link": note.link, "site_url": settings.SITE_URL}
    )
    message = EmailMultiAlternatives(note.subject, note.body, settings.DEFAULT_FROM_EMAIL, to)
    message.attach_alternative(html, "text/html")
    message.send()
    return True
