"""Reads for the Payments pages: the ledger as the advertiser understands it (SPEC R14).

Every function here runs a constant number of queries however many transactions, entries or
credits exist: lists prefetch their entries with each entry's account and credit, and the spend
chart is one aggregate grouped by day in SQL.
"""

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.db.models import Prefetch, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from billing.models import DEBIT, LedgerEntry, LedgerTransaction, Purpose, TxKind
from billing.money import ZERO, fmt, format_money
from billing.selectors import Balances, advertiser_balances

# Where the money of a transaction came from, in the order the waterfall uses it (R10).
FUNDING_LABELS = {
    "discount": "Discount",
    "coupon": "Coupon",
    "credit": "Credit",
    "cash": "Cash",
    "credit_line": "Credit line",
    "accrued": "Current bill",
    "arrears": "Owed (arrears)",
}
FUNDING_ORDER = list(FUNDING_LABELS)
CREDIT_KIND_KEY = {"discount": "discount", "assignable": "coupon", "free": "credit"}
ADVERTISER_SIDE = {Purpose.PROMO_CREDIT, Purpose.CASH, Purpose.ARREARS, Purpose.ACCRUED, Purpose.CREDIT_LINE}
DEPOSIT_SOURCES = {"api": "Deposit via API", "bc_transfer": "From Business Center", "web": "Card"}

# Transactions that add to what the advertiser holds are shown with "+", the rest with "−".
MONEY_IN = {TxKind.DEPOSIT, TxKind.CREDIT_ISSUE, TxKind.PAYMENT, TxKind.BC_DEPOSIT}
NEUTRAL = {TxKind.BILL}
SPEND_KINDS = [TxKind.CHARGE, TxKind.FEE]
ADVERTISER_KINDS = [k for k in TxKind if k not in (TxKind.BC_DEPOSIT, TxKind.BC_TRANSFER)]


@dataclass
class FundingPart:
    key: str
    label: str
    amount: Decimal


@dataclass
class TxRow:
    id: int
    occurred_at: datetime
    kind: str
    label: str
    campaign: str
    amount: Decimal  # signed from the advertiser's point of view (a bill is not signed)
    currency: str
    funding: list[FundingPart] = field(default_factory=list)
    direction: str = "out"  # in | out | neutral

    def part(self, key: str) -> Decimal:
        return sum((p.amount for p in self.funding if p.key == key), ZERO)


def _entry_key(entry: LedgerEntry) -> str | None:
    purpose = entry.account.purpose
    if purpose == Purpose.PROMO_CREDIT:
        return CREDIT_KIND_KEY.get(entry.account.credit.kind, "credit")
    return purpose if purpose in FUNDING_LABELS else None


CARD_IN_MEMO = re.compile(r"•••\s*(\d{4})\s*$")


def _funding(tx: LedgerTransaction) -> list[FundingPart]:
    if tx.kind == TxKind.PAYMENT:  # a bill or invoice paid by the payment method on file
        m = CARD_IN_MEMO.search(tx.memo)
        return [FundingPart("card", f"Card ···· {m.group(1)}" if m else "Payment method", tx.amount)]
    if tx.kind == TxKind.DEPOSIT:
        deposit = getattr(tx, "deposit", None)
        source = deposit.source if deposit else "api"
        label = DEPOSIT_SOURCES.get(source, source.title())
        if deposit and deposit.card_last4:
            label = f"Card ···· {deposit.card_last4}"
        return [FundingPart("card" if source == "web" else source, label, tx.amount)]
    entries = [e for e in tx.entries.all() if e.account.purpose in ADVERTISER_SIDE]
    # Money leaving the advertiser's balances is debited from them; money arriving is credited.
    chosen = [e for e in entries if e.side == DEBIT] or entries
    sums: dict[str, Decimal] = {}
    for e in chosen:
        key = _entry_key(e)
        if key:
            sums[key] = sums.get(key, ZERO) + e.amount
    return [FundingPart(k, FUNDING_LABELS[k], sums[k]) for k in FUNDING_ORDER if k in sums]


def transaction_row(tx: LedgerTransaction) -> TxRow:
    direction = "in" if tx.kind in MONEY_IN else "neutral" if tx.kind in NEUTRAL else "out"
    return TxRow(
        id=tx.pk,
        occurred_at=tx.occurred_at,
        kind=tx.kind,
        label=tx.get_kind_display(),
        campaign=tx.campaign.name if tx.campaign_id else "",
        amount=-tx.amount if direction == "out" else tx.amount,
        currency=tx.currency,
        funding=_funding(tx),
        direction=direction,
    )


def _day_start(d: date, tz) -> datetime:
    return datetime.combine(d, time.min, tzinfo=tz)


def transactions_query(
    *, advertiser, kind: str = "", date_from: date | None = None, date_to: date | None = None
) -> QuerySet:
    """The advertiser's ledger transactions, newest first, filtered by type and local dates."""
    qs = LedgerTransaction.objects.filter(advertiser=advertiser, kind__in=ADVERTISER_KINDS)
    if kind:
        qs = qs.filter(kind=kind)
    if date_from:
        qs = qs.filter(occurred_at__gte=_day_start(date_from, advertiser.tz))
    if date_to:
        qs = qs.filter(occurred_at__lt=_day_start(date_to + timedelta(days=1), advertiser.tz))
    return (
        qs.select_related("campaign", "deposit")
        .prefetch_related(
            Prefetch("entries", queryset=LedgerEntry.objects.select_related("account__credit").order_by("pk"))
        )
        .order_by("-occurred_at", "-pk")
    )


def transaction_rows(transactions) -> list[TxRow]:
    return [transaction_row(tx) for tx in transactions]


CSV_HEADER = ["date", "transaction_id", "type", "campaign", "amount", "currency", *FUNDING_ORDER, "funding_source"]


def transactions_csv_rows(*, advertiser, **filters):
    """The header, then one row per transaction (local time, exact amounts, a column per funding
    source). Reads in chunks of 500 with their entries: a constant number of queries per chunk."""

    cur, tz = advertiser.currency, advertiser.tz
    yield CSV_HEADER
    for tx in transactions_query(advertiser=advertiser, **filters).iterator(chunk_size=500):
        row = transaction_row(tx)
        yield [
            timezone.localtime(row.occurred_at, tz).isoformat(timespec="seconds"), row.id, row.label, row.campaign,
            fmt(row.amount, cur), cur, *(fmt(row.part(k), cur) for k in FUNDING_ORDER),
            " · ".join(f"{p.label} {format_money(p.amount, cur)}" for p in row.funding),
        ]


@dataclass
class DaySpend:
    day: date
    credit: Decimal  # paid by discounts, coupons and free credit
    own: Decimal  # paid with the advertiser's own money (cash, bill, credit line, arrears)

    @property
    def total(self) -> Decimal:
        return self.credit + self.own


def spend_by_day(*, advertiser, days: int = 30, today: date | None = None) -> list[DaySpend]:
    """Daily spend over the last `days` local days, split by funding. One aggregate query."""
    tz = advertiser.tz
    today = today or timezone.localdate(timezone=tz)
    first = today - timedelta(days=days - 1)
    totals = {
        row["day"]: row
        for row in LedgerEntry.objects.filter(
            transaction__advertiser=advertiser,
            transaction__kind__in=SPEND_KINDS,
            transaction__occurred_at__gte=_day_start(first, tz),
            transaction__occurred_at__lt=_day_start(today + timedelta(days=1), tz),
            side=DEBIT,
        )
        .annotate(day=TruncDate("transaction__occurred_at", tzinfo=tz))
        .values("day")
        .annotate(
            credit=Sum("amount", filter=Q(account__purpose=Purpose.PROMO_CREDIT)),
            own=Sum("amount", filter=~Q(account__purpose=Purpose.PROMO_CREDIT)),
        )
        .order_by()
    }
    out = []
    for i in range(days):
        d = first + timedelta(days=i)
        row = totals.get(d, {})
        out.append(DaySpend(d, row.get("credit") or ZERO, row.get("own") or ZERO))
    return out


@dataclass
class PaymentsOverview:
    balances: Balances
    spend: list[DaySpend]
    recent: list[TxRow]

    @property
    def spend_total(self) -> Decimal:
        return sum((d.total for d in self.spend), ZERO)

    @property
    def spend_credit(self) -> Decimal:
        return sum((d.credit for d in self.spend), ZERO)

    @property
    def spend_own(self) -> Decimal:
        return sum((d.own for d in self.spend), ZERO)


def payments_overview(*, advertiser, recent: int = 10) -> PaymentsOverview:
    """Balances, 30 days of spend and the last transactions: five queries in all."""
    return PaymentsOverview(
        balances=advertiser_balances(advertiser=advertiser),
        spend=spend_by_day(advertiser=advertiser),
        recent=transaction_rows(transactions_query(advertiser=advertiser)[:recent]),
    )
