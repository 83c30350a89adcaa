"""Notifications (SPEC R36): one record per event, emailed once after the transaction commits.

`notify_many` is called inside the transaction that made the change: it inserts the rows in one
statement and queues one task to email them with `transaction.on_commit`, so a rolled-back change
never sends mail. The unique `key` makes each event exactly-once; `notification_send_email`
claims a row with a guarded UPDATE, so a retried task never sends twice.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.utils import timezone

from portal.models import Notification, Role

log = logging.getLogger("portal.notifications")
RELAY_AFTER = timedelta(minutes=1)  # a notice unsent this long after it was written is sent by the job

SUBJECTS = {
    "credit_issued": "You received {amount} in ad credit",
    "credit_expiring": "{amount} of ad credit expires on {date}",
    "credit_expired": "{amount} of ad credit expired",
    "bill_paid": "Payment received: {amount} for {bill_label} {number}",
    "payment_failed": "Payment failed: {amount} for {bill_label} {number}",
    "invoice_issued": "Invoice {number} for {month}: {amount} due {due}",
    "credit_frozen": "Your ad credit has been frozen",
    "appeal_received": "We received your appeal #{appeal_id}",
    "appeal_decided": "Your appeal #{appeal_id} was {decision}",
    "credit_withdrawn": "{amount} of ad credit was withdrawn",
    "chargeback": "A card payment of {amount} was charged back",
    "credit_note_issued": "Credit note {number} for {document}: {amount}",
    "invoice_reminder": "Reminder: invoice {number}, {amount} {when}",
    "dispute_decided": "Your dispute of invoice {document} was {decision}",
}


@dataclass
class Draft:
    advertiser: object
    kind: str
    key: str
    context: dict = field(default_factory=dict)  # JSON-serialisable
    link: str = ""


def notify_many(drafts: list[Draft], *, skip_existing: bool = False) -> list[int]:
    """Insert notifications and queue their emails; returns their ids.

    With `skip_existing`, a key already notified (say by a concurrent run) is skipped instead of
    failing the transaction; sending is claimed per row, so nothing is emailed twice.
    """
    if not drafts:
        return []
    notes = Notification.objects.bulk_create(
        [
            Notification(
                advertiser=d.advertiser,
                kind=d.kind,
                key=d.key,
                subject=SUBJECTS[d.kind].format(**d.context)[:200],
                context=d.context,
                link=d.link,
            )
            for d in drafts
        ],
        ignore_conflicts=skip_existing,
    )
    if skip_existing:
        ids = list(Notification.objects.filter(key__in=[d.key for d in drafts]).values_list("pk", flat=True))
    else:
        ids = [n.pk for n in notes]
    transaction.on_commit(lambda: _queue(ids))
    return ids


def _queue(ids: list[int]) -> None:
    """After commit: hand the new notices to a worker. The notices are already rows (written in
    the change's own transaction, R46), so a broker that does not answer only delays them: the
    change stays committed and answered, and `notifications_send_due` sends them later."""
    try:
        send_notifications.delay(ids)
    except Exception as exc:  # noqa: BLE001 — kombu/redis errors, refused connections, timeouts
        log.error("notifications %s not queued (%s: %s); notifications_send_due will send them",
                  ids[:20], type(exc).__name__, exc)


def notifications_send_due(*, at: datetime | None = None, chunk: int = 500) -> dict:
    """Job (R46): e-mail every notice still unsent a minute after it was written — its queueing
    failed, the worker died, or the mail server refused it. Each is claimed before sending, so
    two runs (or a run and a worker) never send one twice."""
    at = at or timezone.now()
    counts = {"sent": 0, "failed": 0}
    due = Notification.objects.filter(emailed_at__isnull=True, created_at__lte=at - RELAY_AFTER).order_by("pk")
    for pk in list(due.values_list("pk", flat=True)[:chunk]):
        try:
            counts["sent"] += notification_send_email(notification_id=pk)
        except Exception:  # noqa: BLE001 — the mail server: this notice waits for the next run
            log.exception("notification %s not sent; next run retries", pk)
            counts["failed"] += 1
    return counts


@shared_task(name="portal.tasks.send_notifications", ignore_result=True)  # its name before it moved here
def send_notifications(notification_ids: list[int]) -> None:
    for pk in notification_ids:
        try:
            notification_send_email(notification_id=pk)
        except Exception:  # noqa: BLE001 — the mail server: this one waits for notifications_send_due
            log.exception("notification %s not sent; notifications_send_due retries it", pk)


def render_body(note: Notification) -> str:
    return render_to_string(f"emails/{note.kind}.txt", {**note.context, "advertiser": note.advertiser})


def recipients(advertiser) -> list[str]:
    """Payments people of the account: its admins and finance members, and its BC's."""
    User = get_user_model()
    q = Q(memberships__advertiser=advertiser, memberships__role__in=[Role.ADMIN, Role.FINANCE])
    if advertiser.business_center_id:
        q |= Q(bc_memberships__business_center_id=advertiser.business_center_id)
    return sorted(set(User.objects.filter(q, is_active=True).exclude(email="").values_list("email", flat=True)))


def notification_send_email(*, notification_id: int) -> bool:
    claimed = Notification.objects.filter(pk=notification_id, emailed_at__isnull=True).update(emailed_at=timezone.now())
    if not claimed:
        return False
    note = Notification.objects.select_related("advertiser").get(pk=notification_id)
    to = recipients(note.advertiser)
    if not to:
        return False
    body = render_body(note)
    html = render_to_string(
        "emails/base.html", {"subject": note.subject, "body": body, "link": note.link, "site_url": settings.SITE_URL}
    )
    message = EmailMultiAlternatives(note.subject, body, settings.DEFAULT_FROM_EMAIL, to)
    message.attach_alternative(html, "text/html")
    try:
        message.send()
    except Exception:
        # not sent: give the claim back, so a later run sends it (a mail outage delays, never loses)
        Notification.objects.filter(pk=notification_id).update(emailed_at=None)
        raise
    return True
