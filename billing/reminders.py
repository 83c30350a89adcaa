"""Invoice reminders (SPEC R41): an invoice still unpaid gets a reminder 7 days before it is due,
on the day it is due, then every week while it is overdue.

`remind_invoices` (beat hourly, `run_job remind_invoices`) looks at invoices due within the next
7 days or already due and not settled, and notifies each one's latest step only — a job that did
not run for a while sends one reminder, not the ones it missed. Each step is a notification key
(`invoice_reminder:<document>:<step>`), so reruns and concurrent runs remind once per step.
"""

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from billing.documents import amount_due, with_state
from billing.models import BillStatus, Document, DocumentKind
from billing.money import fmt
from portal.models import Notification
from portal.notifications import Draft, notify_many

BEFORE = timedelta(days=7)
EVERY = timedelta(days=7)


def reminder_step(due: datetime, at: datetime) -> int | None:
    """-1 in the week before `due`, 0 from the day it is due, n after n weeks overdue; None before."""
    if at < due - BEFORE:
        return None
    if at < due:
        return -1
    return (at - due) // EVERY


def remind_invoices(*, at: datetime | None = None, chunk: int = 500) -> dict:
    """Job (R41): remind every unpaid invoice of its latest step."""
    at = at or timezone.now()
    due = (with_state(Document.objects.filter(kind=DocumentKind.INVOICE, due_at__lte=at + BEFORE, total__gt=0)
                      .exclude(bill__status=BillStatus.PAID))
           .select_related("advertiser").order_by("pk"))
    sent, after = 0, 0
    while True:
        docs = list(due.filter(pk__gt=after)[:chunk])
        if not docs:
            return {"reminders": sent}
        after = docs[-1].pk
        drafts = [d for d in (_draft(doc, at) for doc in docs) if d is not None]
        known = set(Notification.objects.filter(key__in=[d.key for d in drafts]).values_list("key", flat=True))
        fresh = [d for d in drafts if d.key not in known]
        with transaction.atomic():
            notify_many(fresh, skip_existing=True)  # a concurrent run's rows stand
        sent += len(fresh)


def _draft(doc: Document, at: datetime) -> Draft | None:
    step, owed = reminder_step(doc.due_at, at), amount_due(doc)
    if step is None or owed <= 0:
        return None
    adv, cur = doc.advertiser, doc.currency
    due_on = doc.due_at.astimezone(adv.tz).date()
    when = (f"due on {due_on:%b} {due_on.day}" if step < 0 else "due today" if step == 0
            else f"overdue since {due_on:%b} {due_on.day}")
    return Draft(adv, "invoice_reminder", f"invoice_reminder:{doc.pk}:{step}", {
        "number": doc.number, "amount": f"{cur} {fmt(owed, cur)}", "when": when, "step": step,
        "due": f"{due_on:%b} {due_on.day}, {due_on.year}",
    })
