"""Accounts on automatic payment and monthly invoicing, with bills made by the real services, for
the billing page tests (Overview panels, Bills & invoices, Payment and Billing method)."""

from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.utils import timezone

from billing.autopay import charge_thresholds, payment_method_set, threshold_set
from billing.invoicing import issue_monthly_invoices
from billing.models import Bill, BillKind, BillStatus
from billing.switching import billing_settings_set
from tests.pages_helpers import make_team, spend

GOOD, DECLINE, TIMEOUT = "4242424242424242", "4000000000000002", "4000000000000119"
LA = ZoneInfo("America/Los_Angeles")
TOKYO = ZoneInfo("Asia/Tokyo")


def auto_team(*, card=GOOD, threshold="180.00", tz="America/Los_Angeles", **fields):
    """An automatic-payment team with a card on file and a fixed billing threshold."""
    t = make_team(billing_method="automatic", timezone_name=tz, **fields)
    if card:
        payment_method_set(advertiser=t.advertiser, card_number=card, expiry="12/30")
    threshold_set(advertiser=t.advertiser, amount=threshold, reason="test")
    t.advertiser.refresh_from_db()
    return t


def threshold_bill(t, *, amount="50.00") -> Bill:
    """Spend exactly the threshold and run the threshold job: one bill, charged to the card."""
    before = set(Bill.objects.filter(advertiser=t.advertiser).values_list("pk", flat=True))
    spend(t.campaign, amount)
    charge_thresholds()
    return Bill.objects.filter(advertiser=t.advertiser).exclude(pk__in=before).get()


def invoiced_team(*, limit="1000.00", tz="Asia/Tokyo", card=GOOD, **fields):
    """A monthly-invoicing team with a credit line (and a card to pay invoices with)."""
    t = make_team(billing_method="monthly_invoice", timezone_name=tz, **fields)
    billing_settings_set(advertiser=t.advertiser, credit_line_limit=limit)
    if card:
        payment_method_set(advertiser=t.advertiser, card_number=card, expiry="12/30")
    t.advertiser.refresh_from_db()
    return t


def last_month_invoice(t, *, amount="300.00", now=None) -> Bill:
    """Spend in the previous local month, then the 1st-of-the-month job issues its invoice."""
    tz = t.advertiser.tz
    now = (now or timezone.now()).astimezone(tz)
    first = now.replace(day=1, hour=0, minute=5, second=0, microsecond=0)
    spend(t.campaign, amount, occurred_at=first - timedelta(days=10))
    issue_monthly_invoices(at=first)
    return Bill.objects.get(advertiser=t.advertiser, period_end=datetime.combine(first.date(), datetime.min.time(), tzinfo=tz))


def bill_rows_only(advertiser, n: int, *, kind=BillKind.THRESHOLD, failed: int = 1) -> list[Bill]:
    """`n` bill rows (the first `failed` failed, the rest paid) for query-count tests: the pages
    read Bill rows, so the rows are made directly instead of through n job runs."""
    now = timezone.now()
    return Bill.objects.bulk_create([
        Bill(advertiser=advertiser, kind=kind, amount=Decimal("50.00"), currency=advertiser.currency,
             status=BillStatus.FAILED if i < failed else BillStatus.PAID, attempts=1,
             last_error="Your card was declined." if i < failed else "", issued_at=now - timedelta(days=i),
             due_at=now - timedelta(days=i), card_last4="" if i < failed else "4242",
             number=f"T{advertiser.pk}-{i:06d}" if kind == BillKind.MONTHLY_INVOICE else None,
             seq=None if kind == BillKind.MONTHLY_INVOICE else n - i,  # newest is the account's n-th bill
             period_start=now - timedelta(days=i + 30) if kind == BillKind.MONTHLY_INVOICE else None,
             period_end=now - timedelta(days=i) if kind == BillKind.MONTHLY_INVOICE else None)
        for i in range(n)
    ])
