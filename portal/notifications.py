"""Notifications (SPEC R36): one record per event, emailed once after the transaction commits.

`KINDS` is the list of what is notified: per kind its subject, its button (label and link) and its
footer, defined once; the body is `templates/emails/<kind>.txt`, the same in the email and in the
notification centre.

`notify_many` is called inside the transaction that made the change: it inserts the rows in one
statement and queues one task to email them with `transaction.on_commit`, so a rolled-back change
never sends mail. The unique `key` makes each event exactly-once; `notification_send_email`
claims a row with a guarded UPDATE, so a retried task never sends twice.

`ALERTS` is the alert catalogue (R44, decision 0034): the kinds each alert is made of. A member may
turn an alert off per channel (`AlertPreference`, no row: on); a kind outside the catalogue is
always sent. A notice with a `user` is that member's own alert: only they get it.
"""

import functools
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMultiAlternatives
from django.db import connection, transaction
from django.db.models import Case, CharField, Exists, OuterRef, Q, Value, When
from django.template.loader import render_to_string
from django.utils import timezone

from billing.ledger import Rider
from portal.dbtypes import id_chunks, prepared_cursor
from portal.models import AlertPreference, Notification, Role

log = logging.getLogger("portal.notifications")
RELAY_AFTER = timedelta(minutes=1)  # a notice unsent this long after it was written is sent by the job

PROMOTIONS = "/a/{advertiser_id}/payments/promotions/"
PAYMENTS = "/a/{advertiser_id}/payments/"
BILL = "/a/{advertiser_id}/payments/bills/{bill_id}/"
BILLS = "/a/{advertiser_id}/payments/bills/"
DOCUMENTS = "/a/{advertiser_id}/payments/documents/"
ADD_FUNDS = "/a/{advertiser_id}/payments/add-funds/"
BILLING_METHOD = "/a/{advertiser_id}/payments/billing-method/"
CREDIT_FOOTER = "Ad credit is a non-cash balance: it cannot be transferred, withdrawn or refunded, and it expires."
PAYMENTS_FOOTER = "You get this email as an admin or finance member of the ad account."
OWN_ALERT_FOOTER = "You get this email because you set a low-balance alert for this ad account."


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
    "credit_used_up": Kind("Your {kind_label} #{credit_id} is used up", "Open Promotions", PROMOTIONS, CREDIT_FOOTER),
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
    # R43: the account's spending limit is reached: its campaigns go to paused_limit
    "spending_limit_reached": Kind("Your spending limit of {amount} is reached: campaigns are paused",
                                   "View billing method", BILLING_METHOD),
    # alerts of levels (R44, portal.alerts.alerts_check): once per crossing
    "low_balance": Kind("Your balance is below {threshold}", "Add funds", ADD_FUNDS, OWN_ALERT_FOOTER),
    "credit_line_high": Kind("Your credit line is {percent} used", "View invoices", BILLS),
    # R39: a receipt, invoice, statement or credit note was issued
    "document_issued": Kind("{document} {number} issued: {amount}", "View documents", DOCUMENTS),
    # billing settings (R25, R28)
    "threshold_changed": Kind("Your billing threshold is now {new}", "Open Payments", PAYMENTS),
    "billing_method_changed": Kind("Your billing method is now {method}", "View billing method",
                                   PAYMENTS + "billing-method/"),
}


@dataclass(frozen=True)
class Alert:
    """One alert of R44 a member chooses per channel: its label on the settings page and the kinds of
    notification it is made of. `own`: each member sets their own level (an amount) and gets their
    own notice; `billing_method`: the alert concerns only accounts paying that way; `default`:
    whether a member who never chose gets it (False: only those who turned it on)."""

    label: str
    kinds: tuple[str, ...]
    own: bool = False
    billing_method: str = ""
    default: bool = True


LOW_BALANCE = "low_balance"
ALERTS: dict[str, Alert] = {
    LOW_BALANCE: Alert("Balance below an amount you set", ("low_balance",), own=True, billing_method="manual"),
    "credit_line_high": Alert("Credit line over 80 % used", ("credit_line_high",), billing_method="monthly_invoice"),
    "credit_expiring": Alert("Credit expiring within 7 days", ("credit_expiring",)),
    "threshold_charge": Alert("Threshold charge taken", ("bill_paid",)),
    "payment_failed": Alert("Payment failed", ("payment_failed",)),
    "campaigns": Alert("Campaigns paused or resumed", ("campaigns_paused_arrears", "campaigns_paused_credit_line",
                                                        "campaigns_resumed", "spending_limit_reached")),
    "invoices": Alert("Invoice issued or overdue", ("invoice_issued", "invoice_overdue", "invoice_reminder")),
    "appeal_decided": Alert("Appeal decided", ("appeal_decided",)),
    # every receipt, invoice and credit note already comes with its own notice (payment received,
    # invoice issued, credit note issued): the document's own is for those who ask for it
    # (decision 0034); webhooks get every document (R45)
    "document_issued": Alert("Document issued", ("document_issued",), default=False),
}
OPT_IN = [name for name, alert in ALERTS.items() if not alert.default]
ALERT_OF_KIND: dict[str, str] = {kind: name for name, alert in ALERTS.items() for kind in alert.kinds}


def alert_of(kind: str) -> str | None:
    """The alert a kind belongs to, or None: outside the catalogue, always sent."""
    return ALERT_OF_KIND.get(kind)


def kind_alert_expression():
    """SQL for `alert_of(kind)` over Notification rows ("" outside the catalogue)."""
    return Case(*[When(kind__in=alert.kinds, then=Value(name)) for name, alert in ALERTS.items()],
                default=Value(""), output_field=CharField())


def visible_notifications(notifications, *, user):
    """What a member sees of `notifications` in the notification centre (and counts on its bell):
    the account's notices, less those whose alert they turned off in-app, and their own alerts —
    never another member's. One query with the page's; no query per row."""
    uid = user.pk if user is not None and user.is_authenticated else None
    if uid is None:
        return notifications.filter(user__isnull=True)
    muted = AlertPreference.objects.filter(user=uid, advertiser=OuterRef("advertiser"), alert=OuterRef("alert"),
                                           in_app=False)
    asked = AlertPreference.objects.filter(user=uid, advertiser=OuterRef("advertiser"), alert=OuterRef("alert"),
                                           in_app=True)
    return (notifications.filter(Q(user__isnull=True) | Q(user=uid)).alias(alert=kind_alert_expression())
            .exclude(Exists(muted)).exclude(Q(alert__in=OPT_IN) & ~Exists(asked)))


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
    user: object = None  # a member's own alert (R44), the user or their id: only they get it


def notify_many(drafts: list[Draft], *, skip_existing: bool = False) -> list[int]:
    """Insert notifications and queue their emails; returns their ids.

    With `skip_existing`, a key already notified (say by a concurrent run) is skipped instead of
    failing the transaction; sending is claimed per row, so nothing is emailed twice.
    """
    if not drafts:
        return []
    rows = [(d.advertiser.pk, getattr(d.user, "pk", d.user), d.kind, d.key,
             KINDS[d.kind].subject.format(**d.context)[:200], d.context, kind_link(d.kind, d.advertiser.pk, d.context))
            for d in drafts]
    if connection.vendor == "postgresql":
        inserted = _insert_postgresql(rows, skip_existing=skip_existing)
    else:
        notes = Notification.objects.bulk_create([
            Notification(advertiser_id=a, user_id=u, kind=k, key=key, subject=subject, context=context, link=link)
            for a, u, k, key, subject, context, link in rows
        ], ignore_conflicts=skip_existing)
        inserted = {n.key: n.pk for n in notes if n.pk is not None}
    if skip_existing and len(inserted) < len(drafts):
        inserted.update(Notification.objects.filter(key__in=[d.key for d in drafts if d.key not in inserted])
                        .values_list("key", "pk"))
    ids = [inserted[d.key] for d in drafts if d.key in inserted]
    transaction.on_commit(lambda: _queue(ids))
    return ids


def _insert_postgresql(rows: list[tuple], *, skip_existing: bool) -> dict[str, int]:
    """The notices in one prepared INSERT from arrays bound in binary (a statements run writes
    2,000 a chunk: the ORM's instances and its 16,000 quoted parameters cost more than the rows);
    {key: id} of those inserted."""

    columns = list(zip(*rows))
    params = [timezone.now(), *[list(c) for c in columns[:5]], [json.dumps(c) for c in columns[5]], list(columns[6])]
    with prepared_cursor() as cursor:
        cursor.execute(_insert_sql(skip_existing), params)
        return dict(cursor.fetchall())


@functools.cache
def _insert_sql(skip_existing: bool) -> str:
    table = connection.ops.quote_name(Notification._meta.db_table)
    return (f"INSERT INTO {table} (advertiser_id, user_id, kind, key, subject, context, link, created_at)"
            " SELECT n.advertiser_id, n.user_id, n.kind, n.key, n.subject, n.context::jsonb, n.link, %b"
            " FROM unnest(%b::bigint[], %b::bigint[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[])"
            " WITH ORDINALITY AS n(advertiser_id, user_id, kind, key, subject, context, link, i) ORDER BY n.i"
            + (" ON CONFLICT (key) DO NOTHING" if skip_existing else "") + " RETURNING key, id")


def notices_rider(drafts: list[Draft]):
    """`notify_many` for notices a booking writes in its own statement (spend: a credit used up,
    R7): one more INSERT of the booking's WITH, from arrays, a key already written skipped.
    Queued by key after commit (one read then, only when there are any); `notifications_send_due`
    sends them if that fails, as any notice."""
    if drafts:
        keys = [d.key for d in drafts]
        transaction.on_commit(lambda: _queue(list(Notification.objects.filter(key__in=keys)
                                                  .values_list("pk", flat=True))))

    now = timezone.now()
    rows = [(d.advertiser.pk, d.kind, d.key, KINDS[d.kind].subject.format(**d.context)[:200], json.dumps(d.context),
             kind_link(d.kind, d.advertiser.pk, d.context)) for d in drafts]
    table = connection.ops.quote_name(Notification._meta.db_table)
    columns = list(zip(*rows)) if rows else [[]] * 6

    def orm(tx_ids):
        notify_many(drafts, skip_existing=True)

    return Rider(
        sql=f"""notices AS (INSERT INTO {table} (advertiser_id, kind, key, subject, context, link, created_at)
                  SELECT n.advertiser_id, n.kind, n.key, n.subject, n.context::jsonb, n.link, %s
                    FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[])
                         AS n(advertiser_id, kind, key, subject, context, link)
                  ON CONFLICT (key) DO NOTHING)""",
        params=[now, *[list(c) for c in columns]],
        orm=orm,
    )


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
    failed, the worker died, or the mail server refused it — a chunk at a time until none is
    left (a broker outage can leave thousands: the soak found one run of 500 a minute fell
    behind). Each is claimed before sending, so two runs (or a run and a worker) never send one
    twice; one the mail server refuses waits for the next run."""
    at = at or timezone.now()
    counts = {"sent": 0, "failed": 0}
    due = Notification.objects.filter(emailed_at__isnull=True, created_at__lte=at - RELAY_AFTER).order_by("pk")
    for ids in id_chunks(due, chunk):
        for pk in ids:
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


def recipients(advertiser, *, kind: str = "", user_id: int | None = None) -> list[str]:
    """Payments people of the account: its admins and finance members, and its BC's — less those who
    turned the kind's alert off by email (R44); with `user_id`, a member's own alert, that one
    member only (and only while they are still one of them). One query."""
    User = get_user_model()
    q = Q(memberships__advertiser=advertiser, memberships__role__in=[Role.ADMIN, Role.FINANCE])
    if advertiser.business_center_id:
        q |= Q(bc_memberships__business_center_id=advertiser.business_center_id)
    people = User.objects.filter(q, is_active=True).exclude(email="")
    if user_id is not None:
        people = people.filter(pk=user_id)
    alert = alert_of(kind)
    if alert and ALERTS[alert].default:
        people = people.exclude(Exists(AlertPreference.objects.filter(
            user=OuterRef("pk"), advertiser=advertiser, alert=alert, email=False)))
    elif alert:  # opt-in: only those who turned it on
        people = people.filter(Exists(AlertPreference.objects.filter(
            user=OuterRef("pk"), advertiser=advertiser, alert=alert, email=True)))
    return sorted(set(people.values_list("email", flat=True)))


def notification_send_email(*, notification_id: int) -> bool:
    claimed = Notification.objects.filter(pk=notification_id, emailed_at__isnull=True).update(emailed_at=timezone.now())
    if not claimed:
        return False
    note = Notification.objects.select_related("advertiser").get(pk=notification_id)
    to = recipients(note.advertiser, kind=note.kind, user_id=note.user_id)
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
