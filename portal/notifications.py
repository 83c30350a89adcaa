"""Notifications (SPEC R36): one record per event, emailed once after the transaction commits.

`KINDS` is the list of what is notified: per kind its subject, its button (label and link) and its
footer, defined once; the body is `templates/emails/<kind>.txt`, the same in the email and in the
notification centre.

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

PROMOTIONS = "/a/{advertiser_id}/payments/promotions/"
PAYMENTS = "/a/{advertiser_id}/payments/"
BILL = "/a/{advertiser_id}/payments/bills/{bill_id}/"
BILLS = "/a/{advertiser_id}/payments/bills/"
DOCUMENTS = "/a/{advertiser_id}/payments/documents/"
CREDIT_FOOTER = "Ad credit is a non-cash balance: it cannot be transferred, withdrawn or refunded, and it expires."
PAYMENTS_FOOTER = "You get this email as an admin or finance member of the ad account."


@dataclass(frozen=True)
class Kind:
    """What one kind of notification says and where its button leads: the subject (formatted with
    the notification's context), the button's label and link (formatted with `advertiser_id` and
    the context), and the email's footer. The body is `templates/emails/<kind>.txt`."""

    subject: str
    button: str
    link: str
    footer: str = PAYMENTS_FOOTER


KINDS = {
    # credit and freeze (R36)
    "credit_issued": Kind("You received {amount} in ad credit", "Open Promotions", PROMOTIONS, CREDIT_FOOTER),
    "credit_expiring": Kind("{amount} of ad credit expires on {date}", "Open Promotions", PROMOTIONS, CREDIT_FOOTER),
    "credit_expired": Kind("{amount} of ad credit expired", "Open Promotions", PROMOTIONS, CREDIT_FOOTER),
    "credit_withdrawn": Kind("{amount} of ad credit was withdrawn", "Open Promotions", PROMOTIONS, CREDIT_FOOTER),
    "credit_frozen": Kind("Your ad credit has been frozen", "Open Promotions", PROMOTIONS, CREDIT_FOOTER),
    "credit_unfrozen": Kind("Your ad credit is usable again", "Open Promotions", PROMOTIONS, CREDIT_FOOTER),
    "appeal_received": Kind("We received your appeal #{appeal_id}", "View appeal", PROMOTIONS, CREDIT_FOOTER),
    "appeal_decided": Kind("Your appeal #{appeal_id} was {decision}", "Open Promotions", PROMOTIONS, CREDIT_FOOTER),
    # money in, bills and invoices
    "deposit_received": Kind("Funds added: {amount}", "View transactions", PAYMENTS + "transactions/"),
    "bill_paid": Kind("Payment received: {amount} for {bill_label} {number}", "View bill", BILL),
    "payment_failed": Kind("Payment failed: {amount} for {bill_label} {number}", "Review and pay", BILL),
    "chargeback": Kind("A card payment of {amount} was charged back", "Open Payments", PAYMENTS),
    "invoice_issued": Kind("Invoice {number} for {month}: {amount} due {due}", "View invoice", BILL),
    "invoice_reminder": Kind("Reminder: invoice {number}, {amount} {when}", "View documents", DOCUMENTS),
    "invoice_overdue": Kind("Invoice {number} is overdue: delivery is paused", "View invoice", BILL),
    "credit_note_issued": Kind("Credit note {number} for {document}: {amount}", "View documents", DOCUMENTS),
    "dispute_decided": Kind("Your dispute of invoice {document} was {decision}", "View documents", DOCUMENTS),
    # delivery stopped or restarted by billing (R13, R27; after failed payments, R26, and an overdue
    # invoice, the payment_failed and invoice_overdue emails say it)
    "campaigns_paused_arrears": Kind("Your campaigns are paused: add funds to resume", "Add funds",
                                     PAYMENTS + "add-funds/"),
    "campaigns_paused_credit_line": Kind("Your credit line is used up: campaigns are paused", "View invoices", BILLS),
    "campaigns_resumed": Kind("Your campaigns are delivering again", "View campaigns", "/a/{advertiser_id}/campaigns/"),
    # billing settings (R25, R28)
    "threshold_changed": Kind("Your billing threshold is now {new}", "Open Payments", PAYMENTS),
    "billing_method_changed": Kind("Your billing method is now {method}", "View billing method",
                                   PAYMENTS + "billing-method/"),
}


def kind_link(kind: str, advertiser_id: int, context: dict) -> str:
    return KINDS[kind].link.format(advertiser_id=advertiser_id, **context)


def kind_button(kind: str) -> str:
    """The label of the notification's button (email) and link (notification centre)."""
    return KINDS[kind].button if kind in KINDS else "Open"


@dataclass
class Draft:
    advertiser: object
    kind: str
    key: str
    context: dict = field(default_factory=dict)  # JSON-serialisable; formats the kind's subject and link


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
                subject=KINDS[d.kind].subject.format(**d.context)[:200],
                context=d.context,
                link=kind_link(d.kind, d.advertiser.pk, d.context),
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
    kind = KINDS[note.kind]
    html = render_to_string("emails/base.html", {
        "subject": note.subject, "body": body, "link": note.link, "button": kind.button, "footer": kind.footer,
        "site_url": settings.SITE_URL,
    })
    message = EmailMultiAlternatives(note.subject, body, settings.DEFAULT_FROM_EMAIL, to)
    message.attach_alternative(html, "text/html")
    try:
        message.send()
    except Exception:
        # not sent: give the claim back, so a later run sends it (a mail outage delays, never loses)
        Notification.objects.filter(pk=notification_id).update(emailed_at=None)
        raise
    return True
