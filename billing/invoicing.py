"""Monthly invoicing (SPEC R27): spend funded by a credit line, invoiced on the 1st.

An invoice is a document: issuing it moves no money. Its `amount` is the account's own-money
spend (credit line, and arrears past the line) with `occurred_at` before the month boundary, less
everything invoiced before — so a late spend event that lands after an invoice was issued is
invoiced the next month rather than lost. Paying it (Dr payments received, Cr credit line and
arrears) restores the credit line. Numbers are gapless per issuer: the counter row is locked in
the transaction that takes the number.
"""

from datetime import datetime, time, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from billing.deposits import campaigns_pause
from billing.ledger import lock_advertisers
from billing.models import (
    Bill,
    BillKind,
    BillStatus,
    Document,
    DocumentKind,
    InvoiceCounter,
    LedgerEntry,
    LedgerTransaction,
    Purpose,
    TxKind,
)
from billing.documents import Line, amount_due, document_build, document_issue, with_state
from billing.money import ZERO, fmt
from billing.tax import tax_for
from portal.models import Advertiser, AdvertiserStatus, BillingMethod
from portal.notifications import Draft, notify_many

SPEND_KINDS = [TxKind.CHARGE, TxKind.FEE]


def month_bounds(advertiser, at: datetime) -> tuple[datetime, datetime]:
    """The previous calendar month in the account's time zone: [start, end)."""
    tz = advertiser.tz
    first_this = at.astimezone(tz).date().replace(day=1)
    first_prev = (first_this - timedelta(days=1)).replace(day=1)
    return datetime.combine(first_prev, time(0), tzinfo=tz), datetime.combine(first_this, time(0), tzinfo=tz)


def invoice_number_take(issuer: str) -> str:
    """The next gapless number (`ADC-000123`). Call inside the invoice's transaction."""
    counter, _ = InvoiceCounter.objects.get_or_create(issuer=issuer)
    counter = InvoiceCounter.objects.select_for_update().get(pk=counter.pk)
    counter.last_number += 1
    counter.save(update_fields=["last_number"])
    return f"{issuer}-{counter.last_number:06d}"


def _own_money_before(advertiser, end: datetime) -> tuple:
    """(line, arrears, gross, credits) of all spend that occurred before `end`."""
    entries = LedgerEntry.objects.filter(
        transaction__advertiser=advertiser, transaction__kind__in=SPEND_KINDS, transaction__occurred_at__lt=end, side="D"
    )
    sums = entries.aggregate(
        line=Sum("amount", filter=Q(account__purpose=Purpose.CREDIT_LINE)),
        arrears=Sum("amount", filter=Q(account__purpose=Purpose.ARREARS)),
        credits=Sum("amount", filter=Q(account__purpose=Purpose.PROMO_CREDIT)),
    )
    gross = LedgerTransaction.objects.filter(
        advertiser=advertiser, kind__in=SPEND_KINDS, occurred_at__lt=end
    ).aggregate(s=Sum("amount"))["s"]
    return sums["line"] or ZERO, sums["arrears"] or ZERO, gross or ZERO, sums["credits"] or ZERO


def invoice_issue(*, advertiser, at: datetime) -> Bill | None:
    """Issue the invoice for the month before `at` (local), once. Caller holds the advertiser lock."""
    start, end = month_bounds(advertiser, at)
    if Bill.objects.filter(advertiser=advertiser, kind=BillKind.MONTHLY_INVOICE, period_end=end).exists():
        return None
    line, arrears, gross, credits = _own_money_before(advertiser, end)
    before = Bill.objects.filter(advertiser=advertiser, kind=BillKind.MONTHLY_INVOICE).aggregate(
        line=Sum("line_amount"), total=Sum("amount"), gross=Sum("gross_spend"), credits=Sum("credits_applied")
    )
    new_line = line - (before["line"] or ZERO)
    new_total = line + arrears - (before["total"] or ZERO)
    new_gross = gross - (before["gross"] or ZERO)
    new_credits = credits - (before["credits"] or ZERO)
    month = start.strftime("%B %Y")
    source_key = f"invoice:{end.date():%Y-%m}"
    if new_total <= 0:
        if new_gross > 0:  # R41: spend fully paid by credit is invoiced as "No need to pay"
            document_issue(document_build(
                advertiser=advertiser, kind=DocumentKind.INVOICE, source_key=source_key, issued_at=at,
                lines=[Line(f"Advertising, {month}: spend {fmt(new_gross, advertiser.currency)}, "
                            f"paid by credit {fmt(new_credits, advertiser.currency)}", ZERO)],
                period_start=start, period_end=end))
        return None
    # R38: tax on own money only — the invoice is spend net of credits, plus tax on that
    tax, treatment = tax_for(advertiser, new_total, at.date())
    bill = Bill.objects.create(
        advertiser=advertiser,
        kind=BillKind.MONTHLY_INVOICE,
        number=invoice_number_take(settings.INVOICE_ISSUER),
        amount=new_total,
        line_amount=new_line,
        gross_spend=new_gross,
        credits_applied=new_credits,
        currency=advertiser.currency,
        issued_at=at,
        due_at=at + timedelta(days=settings.INVOICE_DUE_DAYS),
        period_start=start,
        period_end=end,
        tax=tax, tax_rate=treatment.rate, tax_note=treatment.note,
    )
    document_issue(document_build(
        advertiser=advertiser, kind=DocumentKind.INVOICE, source_key=source_key, issued_at=at, treatment=treatment,
        lines=[Line(f"Advertising, {month}: spend {fmt(new_gross, advertiser.currency)} less credits "
                    f"{fmt(new_credits, advertiser.currency)} (invoice {bill.number})", new_total, tax)],
        period_start=start, period_end=end, due_at=bill.due_at, bill=bill))
    return bill


def issue_monthly_invoices(*, at: datetime | None = None, chunk: int = 200) -> dict:
    """Job (R27, R33): on the 1st (account time zone) invoice last month; mark overdue invoices
    and pause their delivery. Safe to run again or concurrently: one invoice per account and month."""
    at = at or timezone.now()
    counts = {"issued": 0, "overdue": 0}
    accounts = Advertiser.objects.filter(billing_method=BillingMethod.MONTHLY_INVOICE).exclude(
        status=AdvertiserStatus.CLOSED
    )
    after = 0
    while True:
        ids = list(accounts.filter(pk__gt=after).order_by("pk").values_list("pk", flat=True)[:chunk])
        if not ids:
            break
        after = ids[-1]
        issued = []
        with transaction.atomic():
            for pk, adv in lock_advertisers(ids).items():
                bill = invoice_issue(advertiser=adv, at=at)
                if bill is not None:
                    issued.append((adv, bill))
            _notify_invoices(issued)
        counts["issued"] += len(issued)
    overdue = Bill.objects.filter(
        kind=BillKind.MONTHLY_INVOICE, status__in=[BillStatus.OPEN, BillStatus.FAILED], due_at__lte=at
    )
    for adv_id in set(overdue.values_list("advertiser_id", flat=True)):
        with transaction.atomic():
            adv = lock_advertisers([adv_id])[adv_id]
            late = list(overdue.filter(advertiser=adv).select_for_update().order_by("pk"))
            n = Bill.objects.filter(pk__in=[b.pk for b in late]).update(status=BillStatus.OVERDUE)
            campaigns_pause(advertiser=adv)
            _notify_overdue(adv, late)
            counts["overdue"] += n
    return counts


def _invoice_context(adv, bill: Bill, amount) -> dict:
    """What an invoice's emails say of it: the amount, its number, its bill and the due date."""
    return {"amount": f"{bill.currency} {fmt(amount, bill.currency)}", "number": bill.number, "bill_id": bill.pk,
            "due": bill.due_at.astimezone(adv.tz).strftime("%b %-d, %Y")}


def _notify_overdue(adv, bills: list[Bill]) -> None:
    """"Invoice … is overdue: delivery is paused" (R27, R36), once per invoice: the job marks an
    invoice overdue once, and the key is the invoice's."""
    docs = {d.bill_id: d for d in with_state(Document.objects.filter(kind=DocumentKind.INVOICE, bill__in=bills))}
    owed = {bill.pk: amount_due(docs[bill.pk]) if bill.pk in docs else bill.charge_amount for bill in bills}
    notify_many([
        Draft(adv, "invoice_overdue", f"invoice_overdue:{bill.pk}", _invoice_context(adv, bill, owed[bill.pk]))
        for bill in bills
    ], skip_existing=True)


def _notify_invoices(issued) -> None:
    notify_many([
        Draft(adv, "invoice_issued", f"invoice_issued:{bill.pk}", {
            **_invoice_context(adv, bill, bill.charge_amount),
            "month": bill.period_start.astimezone(adv.tz).strftime("%B %Y"),
        })
        for adv, bill in issued
    ])
