"""Reads for the billing pages: the Overview's billing panel, Bills & invoices, the printable
invoice (HTML and PDF share one `InvoiceDocument`) and the billing method choices (SPEC R24–R28).

Each read costs a constant number of queries however many bills the account has.
"""

import operator
import zoneinfo
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import reduce

from django.conf import settings
from django.db.models import Count, Q, QuerySet, Sum
from django.urls import reverse
from django.utils import timezone

from billing.documents import amount_due, credited, document_status, paid_amount, with_state
from billing.models import Bill, BillKind, BillStatus, Document, DocumentKind, PaymentMethod
from billing.money import ZERO, format_money
from billing.switching import ALLOWED
from portal.models import Advertiser, BillingMethod

PROBLEM = [BillStatus.FAILED, BillStatus.OVERDUE]  # the "Payment failed" banner
PAYABLE = [BillStatus.OPEN, BillStatus.FAILED, BillStatus.OVERDUE]  # "Pay now"
BANNER_BILLS = 5


def bill_label(bill: Bill) -> str:
    """What the advertiser calls a bill: the invoice number, or an automatic bill's number in the
    account ("3": the account's 3rd bill; decision 0031)."""
    return bill.label


def bill_title(bill: Bill) -> str:
    """"Invoice ADC-000001", "Threshold bill 3", "Bill 4"."""
    return bill.title


def _local_day(at: datetime | None, tz):
    return at.astimezone(tz).date() if at else None


def bill_period(bill: Bill, tz) -> tuple:
    """(first day, last day) of the spend the bill covers, local dates; either may be None.

    Periods are stored half-open [start, end): the last day shown is the day before `end`."""
    start = _local_day(bill.period_start, tz)
    end = _local_day(bill.period_end - timedelta(microseconds=1), tz) if bill.period_end else None
    return start, end


# --- the Overview's billing panel (R24, R26, R27) -----------------------------------------------

@dataclass
class BillingPanel:
    payment_method: PaymentMethod | None = None
    problem_bills: list[Bill] = field(default_factory=list)  # failed or overdue, oldest first
    problem_count: int = 0
    failed_count: int = 0  # of those, failed payments (the rest are overdue invoices)
    problem_total: Decimal = ZERO
    open_invoice_count: int = 0
    open_invoice_total: Decimal = ZERO
    next_invoice_at: datetime | None = None

    @property
    def more_problems(self) -> int:
        return self.problem_count - len(self.problem_bills)

    @property
    def next_invoice_covers(self) -> datetime | None:
        """A moment in the month the next invoice is for (the one before it is issued)."""
        return self.next_invoice_at - timedelta(days=1) if self.next_invoice_at else None


def next_invoice_date(advertiser, at: datetime | None = None) -> datetime:
    """The next 1st of the month, local midnight: when `issue_monthly_invoices` invoices (R27)."""
    tz = advertiser.tz
    local = (at or timezone.now()).astimezone(tz).date()
    first = (local.replace(day=1) + timedelta(days=32)).replace(day=1)
    return datetime.combine(first, time(0), tzinfo=tz)


def billing_panel(*, advertiser, at: datetime | None = None) -> BillingPanel:
    """Card on file, failed/overdue bills and open invoices: at most three queries; none for a
    manual-payment account, which has no bills."""
    if advertiser.billing_method == BillingMethod.MANUAL:
        return BillingPanel()
    panel = BillingPanel(payment_method=PaymentMethod.objects.filter(advertiser=advertiser).first())
    problem = Q(status__in=PROBLEM)
    invoice = Q(kind=BillKind.MONTHLY_INVOICE)
    sums = Bill.objects.filter(advertiser=advertiser, status__in=PAYABLE).aggregate(
        problem_count=Count("pk", filter=problem),
        failed_count=Count("pk", filter=Q(status=BillStatus.FAILED)),
        problem_total=Sum("amount", filter=problem),
        invoice_count=Count("pk", filter=invoice),
        invoice_total=Sum("amount", filter=invoice),
    )
    panel.problem_count = sums["problem_count"]
    panel.failed_count = sums["failed_count"]
    panel.problem_total = sums["problem_total"] or ZERO
    panel.open_invoice_count = sums["invoice_count"]
    panel.open_invoice_total = sums["invoice_total"] or ZERO
    if panel.problem_count:
        panel.problem_bills = list(
            Bill.objects.filter(advertiser=advertiser, status__in=PROBLEM).order_by("issued_at", "pk")[:BANNER_BILLS]
        )
    if advertiser.billing_method == BillingMethod.MONTHLY_INVOICE:
        panel.next_invoice_at = next_invoice_date(advertiser, at)
    return panel


# --- Bills & invoices ---------------------------------------------------------------------------

def bills_query(*, advertiser) -> QuerySet:
    """Every bill and invoice of the account, newest first."""
    return Bill.objects.filter(advertiser=advertiser).order_by("-issued_at", "-pk")


@dataclass
class BillRow:
    bill: Bill
    label: str
    period_start: object
    period_end: object
    payable: bool


def bill_rows(bills, *, advertiser) -> list[BillRow]:
    tz = advertiser.tz
    return [
        BillRow(b, bill_label(b), *bill_period(b, tz), payable=b.status in PAYABLE)
        for b in bills
    ]


# --- the invoice document (one source for the page and the PDF) --------------------------------

@dataclass
class InvoiceLine:
    label: str
    detail: str
    amount: Decimal  # signed: credits and prepaid cash reduce what is due


@dataclass
class InvoiceDocument:
    bill: Bill
    advertiser: object
    title: str  # "Invoice" or "Bill"
    number: str
    issuer_name: str
    issuer_code: str
    issuer_email: str
    issued_on: object
    due_on: object
    period_start: object
    period_end: object
    lines: list[InvoiceLine]
    total: Decimal
    paid: Decimal
    balance_due: Decimal
    status: str
    status_label: str
    status_note: str

    @property
    def currency(self) -> str:
        return self.bill.currency


def _fmt_day(d) -> str:
    return f"{d:%b} {d.day}, {d:%Y}" if d else ""


def invoice_document(*, bill: Bill, advertiser) -> InvoiceDocument:
    """What an invoice or bill says: issuer, number, local dates, lines that add up to the total,
    and its status. No queries beyond the bill itself (and its advertiser, already loaded)."""

    tz = advertiser.tz
    cur = bill.currency
    start, end = bill_period(bill, tz)
    issued = timezone.localtime(bill.issued_at, tz)
    if bill.is_invoice:
        prepaid = bill.gross_spend - bill.credits_applied - bill.amount
        period = f"{_fmt_day(start)} – {_fmt_day(end)}" if start and end else "the month"
        lines = [
            InvoiceLine("Gross ad spend", f"Ad spend that occurred {period}", bill.gross_spend),
            InvoiceLine("Credits applied", "Promotional credit, coupons and discounts", -bill.credits_applied),
        ]
        if prepaid > 0:
            lines.append(InvoiceLine("Paid from cash balance", "Prepaid funds used before the credit line", -prepaid))
        elif prepaid < 0:
            lines.append(InvoiceLine("Earlier spend not yet invoiced", "Spend that was recorded late", -prepaid))
    else:
        if bill.kind == BillKind.THRESHOLD:
            detail = (
                f"Ad spend after credits, billed when it reached your {format_money(bill.amount, cur)} billing "
                "threshold; anything above the threshold rolls over to your next bill"
            )
        elif bill.kind == BillKind.BILL_DATE:
            detail = f"All ad spend after credits accrued up to your bill date, {_fmt_day(_local_day(bill.period_end, tz))}"
        else:
            detail = "Ad spend after credits accrued until the account moved to monthly invoicing"
        lines = [InvoiceLine(f"Ad spend — {bill.get_kind_display().lower()}", detail, bill.amount)]
    paid = bill.amount if bill.status == BillStatus.PAID else ZERO
    if bill.status == BillStatus.PAID:
        paid_at = timezone.localtime(bill.paid_at, tz) if bill.paid_at else None
        card = f" with the card ending {bill.card_last4}" if bill.card_last4 else ""
        note = f"Paid{f' on {_fmt_day(paid_at.date())}' if paid_at else ''}{card}."
        if bill.gateway_reference:
            note += f" Payment reference {bill.gateway_reference}."
    elif bill.status == BillStatus.FAILED:
        note = f"Payment failed after {bill.attempts} attempt{'s' if bill.attempts != 1 else ''}: {bill.last_error}"
    elif bill.status == BillStatus.OVERDUE:
        note = f"Overdue since {_fmt_day(_local_day(bill.due_at, tz))}. Delivery is paused until it is paid."
    elif bill.is_invoice:
        note = f"Due {_fmt_day(_local_day(bill.due_at, tz))}. Paying it restores your credit line."
    else:
        note = "Being charged to your card on file."
    return InvoiceDocument(
        bill=bill,
        advertiser=advertiser,
        title="Invoice" if bill.is_invoice else "Bill",
        number=bill_label(bill),
        issuer_name=getattr(settings, "INVOICE_ISSUER_NAME", "Ads Manager Billing"),
        issuer_code=settings.INVOICE_ISSUER,
        issuer_email=settings.DEFAULT_FROM_EMAIL,
        issued_on=issued.date(),
        due_on=_local_day(bill.due_at, tz),
        period_start=start,
        period_end=end,
        lines=lines,
        total=bill.amount,
        paid=paid,
        balance_due=bill.amount - paid,
        status=bill.status,
        status_label=bill.get_status_display(),
        status_note=note,
    )


# --- billing method choices (R28, decision 0006) -----------------------------------------------

@dataclass
class SwitchOption:
    target: str
    label: str
    explanation: str  # what gets settled when switching
    needs: str


EXPLANATIONS = {
    (BillingMethod.MANUAL, BillingMethod.AUTOMATIC): (
        "Your card on file is charged when spend reaches the billing threshold or on the bill date. "
        "Cash you prepaid keeps paying spend first; arrears must be paid by a deposit before switching.",
        "Needs a card on file.",
    ),
    (BillingMethod.MANUAL, BillingMethod.MONTHLY_INVOICE): (
        "A credit line funds your spend and you are invoiced on the 1st of each month, due in 30 days. "
        "Cash you prepaid keeps paying spend first; arrears must be paid by a deposit before switching.",
        "Needs staff approval and a credit line.",
    ),
    (BillingMethod.AUTOMATIC, BillingMethod.MONTHLY_INVOICE): (
        "Spend accrued on your current bill is billed and charged to your card at once; failed bills must be "
        "paid first. After that a credit line funds your spend, invoiced on the 1st of each month.",
        "Needs staff approval and a credit line.",
    ),
}

METHOD_DESCRIPTIONS = {
    BillingMethod.MANUAL: "You prepay with deposits. Ad credit is used first, then your cash balance.",
    BillingMethod.AUTOMATIC: (
        "Spend left after ad credit accrues to your current bill; your card is charged when it reaches the "
        "billing threshold or on the bill date, whichever comes first."
    ),
    BillingMethod.MONTHLY_INVOICE: (
        "A credit line funds spend left after ad credit; an invoice for last month's spend is issued on the "
        "1st, due in 30 days."
    ),
}


def switch_options(*, advertiser) -> list[SwitchOption]:
    """The switches R28 allows from the current method, in a fixed order."""
    current = advertiser.billing_method
    out = []
    for target in (BillingMethod.AUTOMATIC, BillingMethod.MONTHLY_INVOICE):
        if (current, target) in ALLOWED:
            explanation, needs = EXPLANATIONS[(current, target)]
            out.append(SwitchOption(target.value, target.label, explanation, needs))
    return out


# --- Billing documents (R39) --------------------------------------------------------------------

DOCUMENT_STATUS_LABELS = {
    "issued": "Issued", "paid": "Paid", "partly_paid": "Partly paid", "overdue": "Overdue",
    "no_need_to_pay": "No need to pay", "credited": "Credited",
}
DOCUMENT_STATUS_BADGES = {
    "issued": "badge-neutral", "paid": "badge-success", "partly_paid": "badge-warning", "overdue": "badge-danger",
    "no_need_to_pay": "badge-success", "credited": "badge-neutral",
}


LIST_DEFERRED = ("lines", "seller", "billed_to", "data", "reason")  # JSON and text only the PDF reads
KIND_LABELS = dict(DocumentKind.choices)


def _month_range(month: tuple[int, int], tz) -> tuple[datetime, datetime]:
    """[local midnight of the 1st, that of the next month's 1st) in `tz`."""
    year, mon = month
    return datetime(year, mon, 1, tzinfo=tz), datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=tz)


def _listed(documents: QuerySet, kind: str | None) -> QuerySet:
    """Newest first, with what each row's state is computed from (`with_state`: a constant number of
    queries for a page) and without the JSON and text no row shows."""
    qs = (with_state(documents).select_related("refers_to")  # a credit note's row names what it corrects
          .defer(*LIST_DEFERRED, *(f"refers_to__{f}" for f in LIST_DEFERRED))
          .order_by("-issued_at", "-pk"))  # index document_*_issued_id
    return qs.filter(kind=kind) if kind else qs


def documents_query(*, advertiser, kind: str | None = None, month: tuple[int, int] | None = None) -> QuerySet:
    """The advertiser's documents, newest first; `month` is (year, month) in the account time zone.
    Prefetches what `document_rows` needs so a page costs the same queries however long it is."""
    qs = _listed(Document.objects.filter(advertiser=advertiser), kind)
    if month:
        start, end = _month_range(month, advertiser.tz)
        qs = qs.filter(issued_at__gte=start, issued_at__lt=end)
    return qs


def business_center_accounts(*, business_center) -> list[Advertiser]:
    """The Business Center's advertisers by name: the Account filter's choices, and each document
    row's account name, time zone and PDF address. One query."""
    return list(Advertiser.objects.filter(business_center=business_center)
                .only("id", "name", "timezone", "business_center_id").order_by("name", "pk"))


def bc_documents_query(*, business_center, accounts: list[Advertiser], kind: str | None = None,
                       month: tuple[int, int] | None = None, account: int | None = None) -> QuerySet:
    """Every document of every advertiser in the Business Center, newest first (R39). `month` is
    (year, month) in each document's own account time zone, as its row shows its date; `account`
    one advertiser of `accounts` (the BC's, from `business_center_accounts`)."""
    # Issued under this BC (the index) and of an advertiser in it now (whose PDF the reader may
    # open): the same documents while an advertiser's BC cannot change; never another BC's.
    qs = _listed(Document.objects.filter(business_center=business_center,
                                         advertiser_id__in=[a.pk for a in accounts]), kind)
    if account:
        qs = qs.filter(advertiser_id=account)
    if month:
        by_zone: dict[str, list[int]] = {}
        for a in accounts:
            if not account or a.pk == account:
                by_zone.setdefault(a.timezone, []).append(a.pk)
        ranges = []
        for zone, ids in by_zone.items():
            start, end = _month_range(month, zoneinfo.ZoneInfo(zone))
            in_month = Q(issued_at__gte=start, issued_at__lt=end)
            ranges.append(in_month if len(by_zone) == 1 else in_month & Q(advertiser_id__in=ids))
        qs = qs.filter(reduce(operator.or_, ranges)) if ranges else qs.none()
    return qs


class IdsFirst:
    """Documents for `Paginator` that reads a page by its ids first: the OFFSET walks the index
    (`document_*_issued_id`) alone, and only the page's documents are read, joined to their bills
    and prefetched — a deep page costs about what the first does, instead of a sort of them all."""

    ordered = True

    def __init__(self, documents: QuerySet):
        self.documents = documents

    def count(self) -> int:
        return self.documents.count()

    def __len__(self) -> int:
        return self.count()

    def __getitem__(self, page: slice) -> QuerySet:
        return self.documents.filter(pk__in=self.documents.values("pk")[page])


@dataclass
class DocumentRow:
    """A document as a list row and its PDF show it: its state, and every text the row prints
    (formatted here, once, so the template only prints strings)."""

    doc: Document
    status: str
    amount_due: Decimal
    issued_on: date | None = None  # the local date
    id: str = ""
    number: str = ""
    kind: str = ""
    status_label: str = ""
    badge: str = ""
    kind_label: str = ""
    issued_iso: str = ""  # 2026-11-01
    issued_text: str = ""  # Nov 1, 2026
    net_text: str = ""
    tax_text: str = ""
    total_text: str = ""
    due_text: str = ""  # "" when nothing is due
    pdf_url: str = ""
    account: str = ""  # the advertiser's name, on the Business Center's page
    account_id: str = ""
    corrects: str = ""  # a credit note: the number of the document it corrects


def document_row(doc: Document, *, tz, at: datetime | None = None, pdf_url: str = "", account: str = "") -> DocumentRow:
    paid, credit = paid_amount(doc), credited(doc)
    at = at or timezone.now()
    status = document_status(doc, paid=paid, credit=credit, at=at)
    due = amount_due(doc, paid=paid, credit=credit)
    issued_on = _local_day(doc.issued_at, tz)
    cur = doc.currency
    return DocumentRow(
        doc=doc,
        status=status,
        amount_due=due,
        issued_on=issued_on,
        id=str(doc.pk),
        number=doc.number,
        kind=doc.kind,
        status_label=DOCUMENT_STATUS_LABELS.get(status, status.replace("_", " ").capitalize()),
        badge=DOCUMENT_STATUS_BADGES.get(status, "badge-neutral"),
        kind_label=KIND_LABELS.get(doc.kind, doc.kind),
        issued_iso=issued_on.isoformat() if issued_on else "",
        issued_text=_fmt_day(issued_on),
        net_text=format_money(doc.net, cur),
        tax_text=format_money(doc.tax, cur),
        total_text=format_money(doc.total, cur),
        due_text=format_money(due, cur) if due else "",
        pdf_url=pdf_url,
        account=account,
        account_id=str(doc.advertiser_id),
        corrects=doc.refers_to.number if doc.refers_to_id else "",
    )


_URL_SLOT = 918273645  # a document id to reverse with, then cut out: the last number in the path


def _pdf_urls(advertiser_id: int):
    """document id → the address of its PDF under the advertiser: reversed once, not once a row."""
    prefix, suffix = reverse("payments_document_pdf", args=[advertiser_id, _URL_SLOT]).rsplit(str(_URL_SLOT), 1)
    return lambda document_id: f"{prefix}{document_id}{suffix}"


def document_rows(docs, *, advertiser, at: datetime | None = None) -> list[DocumentRow]:
    at = at or timezone.now()
    tz, pdf_url = advertiser.tz, _pdf_urls(advertiser.pk)
    return [document_row(d, tz=tz, at=at, pdf_url=pdf_url(d.pk)) for d in docs]


def bc_document_rows(docs, *, accounts: list[Advertiser], at: datetime | None = None) -> list[DocumentRow]:
    """Rows of the Business Center's page: each in its own account's time zone, named after it,
    with the PDF address of its advertiser's Billing documents page."""
    at = at or timezone.now()
    of = {a.pk: (a.tz, a.name, _pdf_urls(a.pk)) for a in accounts}
    rows = []
    for d in docs:
        tz, name, pdf_url = of[d.advertiser_id]
        rows.append(document_row(d, tz=tz, at=at, pdf_url=pdf_url(d.pk), account=name))
    return rows
