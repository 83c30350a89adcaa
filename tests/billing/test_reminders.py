"""Invoice reminders (SPEC R41): 7 days before due, on the day it is due, then weekly while
overdue; once per step, never for a settled invoice."""

from datetime import timedelta

import pytest

from billing.credit_notes import credit_note_issue
from billing.invoice_payments import invoice_transfer_record
from billing.reminders import remind_invoices, reminder_step
from portal.jobs import job_run
from portal.models import Notification
from tests.billing.test_documents_tax import _invoiced

pytestmark = pytest.mark.django_db


def test_reminder_steps():
    from django.utils import timezone
    due = timezone.now()
    assert reminder_step(due, due - timedelta(days=7, seconds=1)) is None
    assert reminder_step(due, due - timedelta(days=7)) == -1
    assert reminder_step(due, due - timedelta(seconds=1)) == -1
    assert reminder_step(due, due) == 0
    assert reminder_step(due, due + timedelta(days=6, hours=23)) == 0
    assert reminder_step(due, due + timedelta(days=7)) == 1
    assert reminder_step(due, due + timedelta(days=21)) == 3


def test_an_unpaid_invoice_is_reminded_before_on_and_after_its_due_date_once_per_step(spend_event):
    adv, inv = _invoiced(spend_event)
    due = inv.due_at
    assert due is not None
    assert remind_invoices(at=due - timedelta(days=8)) == {"reminders": 0}
    assert remind_invoices(at=due - timedelta(days=3)) == {"reminders": 1}
    assert remind_invoices(at=due - timedelta(days=2)) == {"reminders": 0}  # once per step
    assert job_run(name="remind_invoices", at=due + timedelta(hours=1)) == {"reminders": 1}
    # a job that did not run for three weeks sends the latest step only
    assert remind_invoices(at=due + timedelta(days=22)) == {"reminders": 1}
    notes = list(Notification.objects.filter(advertiser=adv, kind="invoice_reminder").order_by("pk"))
    assert [n.context["step"] for n in notes] == [-1, 0, 3]
    assert notes[0].subject.startswith(f"Reminder: invoice {inv.number}, EUR 123.00 due on ")
    assert "due today" in notes[1].subject and "overdue since" in notes[2].subject
    # a part payment: the reminder names what is still to pay
    invoice_transfer_record(actor=None, document=inv, amount="100.00", reference="B-1")
    remind_invoices(at=due + timedelta(days=29))
    assert Notification.objects.filter(kind="invoice_reminder").latest("pk").context["amount"] == "EUR 23.00"


def test_settled_invoices_get_no_reminder(spend_event):
    _, paid = _invoiced(spend_event)
    invoice_transfer_record(actor=None, document=paid, amount="123.00", reference="B-1")
    _, credited = _invoiced(spend_event)
    credit_note_issue(actor=None, document=credited, amount="123.00", reason="x", idempotency_key="cn")
    assert remind_invoices(at=paid.due_at + timedelta(days=1)) == {"reminders": 0}
    assert not Notification.objects.filter(kind="invoice_reminder").exists()
