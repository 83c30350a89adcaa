"""Reads for the Payments pages: the ledger as the advertiser understands it (SPEC R14).

Every function here runs a constant number of queries however many transactions, entries or
credits exist: lists prefetch their entries with each entry's account and credit, and the spend
chart is one aggregate grouped by day in SQL.

Each listed transaction carries the cash balance after it (decision 0030): what the advertiser's
cash account held once that transaction was booked — the same figure whatever filter or page
shows the row. One query per page (or per CSV): the stored balance, less the cash movements booked
after the row, summed by a window in the same statement.
"""

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.db.models import (
    BooleanField,
    Case,
    DecimalField,
    ExpressionWrapper,
    F,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    RowRange,
    Subquery,
    Sum,
    Value,
    When,
    Window,
)
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from billing.models import CREDIT, DEBIT, NORMAL_SIDE, LedgerAccount, LedgerEntry, LedgerTransaction, Purpose, TxKind
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
    text: str = ""  # "Coupon $3.00", as the Transactions page prints it


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
    cash_balance: Decimal | None = None  # the cash balance after it, as of its date (decision 0030)
    amount_text: str = ""  # as printed: "+$50.00", "−$12.00"
    ref: str = ""  # the id as the page prints it in its ids and links

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
    sums: dict[str, dict[str, Decimal]] = {DEBIT: {}, CREDIT: {}}
    for e in tx.entries.all():
        key = _entry_key(e)  # None off the advertiser's side (revenue, expense, settlement, ...)
        if key:
            sums[e.side][key] = sums[e.side].get(key, ZERO) + e.amount
    return _balance_parts(sums[DEBIT], sums[CREDIT])


def _balance_parts(debited: dict[str, Decimal], credited: dict[str, Decimal]) -> list[FundingPart]:
    """The advertiser's balances a transaction moved, by funding key, in waterfall order. Money
    leaving them is debited from them, money arriving is credited: the debited parts if there are
    any, else the credited ones. The page and the CSV both decide with this."""
    sums = debited or credited
    return [FundingPart(k, FUNDING_LABELS[k], sums[k]) for k in FUNDING_ORDER if sums.get(k)]


def transaction_row(tx: LedgerTransaction, *, cash_balance: Decimal | None = None) -> TxRow:
    direction = "in" if tx.kind in MONEY_IN else "neutral" if tx.kind in NEUTRAL else "out"
    amount = -tx.amount if direction == "out" else tx.amount
    funding = _funding(tx)
    for part in funding:  # the page's strings, formatted once here rather than by the template per row
        part.text = f"{part.label} {format_money(part.amount, tx.currency)}"
    return TxRow(
        id=tx.pk,
        occurred_at=tx.occurred_at,
        kind=tx.kind,
        label=tx.get_kind_display(),
        campaign=tx.campaign.name if tx.campaign_id else "",
        amount=amount,
        currency=tx.currency,
        funding=funding,
        direction=direction,
        cash_balance=cash_balance,
        amount_text=("+" if direction == "in" else "") + format_money(amount, tx.currency),
        ref=str(tx.pk),
    )


def _day_start(d: date, tz) -> datetime:
    return datetime.combine(d, time.min, tzinfo=tz)


def _listed(*, advertiser, kind: str = "", date_from: date | None = None, date_to: date | None = None) -> Q:
    """Which of the advertiser's transactions the list shows: its kinds, filtered by type and
    local dates."""
    q = Q(kind__in=ADVERTISER_KINDS)
    if kind:
        q &= Q(kind=kind)
    if date_from:
        q &= Q(occurred_at__gte=_day_start(date_from, advertiser.tz))
    if date_to:
        q &= Q(occurred_at__lt=_day_start(date_to + timedelta(days=1), advertiser.tz))
    return q


def transactions_filtered(*, advertiser, **filters) -> QuerySet:
    """The advertiser's ledger transactions, filtered by type and local dates (unordered)."""
    return LedgerTransaction.objects.filter(_listed(advertiser=advertiser, **filters), advertiser=advertiser)


def transactions_query(**filters) -> QuerySet:
    """The advertiser's ledger transactions, newest first, with what `transaction_row` reads."""
    return (
        transactions_filtered(**filters).select_related("campaign", "deposit")
        .prefetch_related(
            Prefetch("entries", queryset=LedgerEntry.objects.select_related("account__credit").order_by("pk"))
        )
        .order_by("-occurred_at", "-pk")
    )


def transaction_rows(transactions, *, cash_balance: bool = True) -> list[TxRow]:
    """Rows for transactions of `transactions_query` (a page, in its order), each with the cash
    balance after it (`cash_balances_after`: one query more, however many rows) unless
    `cash_balance` is False."""
    txs = list(transactions)
    after: dict[int, Decimal] = {}
    if cash_balance:
        by_advertiser: dict[int, list[LedgerTransaction]] = {}
        for tx in txs:
            if tx.advertiser_id is not None:
                by_advertiser.setdefault(tx.advertiser_id, []).append(tx)
        for advertiser_id, listed in by_advertiser.items():  # every list we show is one advertiser's
            after.update(cash_balances_after(advertiser_id=advertiser_id, transactions=listed))
    return [transaction_row(tx, cash_balance=after.get(tx.pk)) for tx in txs]


# --- the cash balance after each transaction (issue 13, decision 0030) -------------------------
# The balance after a transaction T is what the cash account held once T was booked: its stored
# balance now, less the cash every transaction booked after T moved. Transactions of one advertiser
# are booked under its lock, so their ids are in booking order, and "booked after T" is "id > T".
# One statement reads the stored balance and those movements (a window sum over them, in SQL), so
# they are one snapshot: a charge booked meanwhile is in both or in neither.
_CASH_SIDE = NORMAL_SIDE[Purpose.CASH]  # the side that adds to the cash balance (credit)
_MONEY = DecimalField(max_digits=20, decimal_places=4)


def _cash_rows(*, advertiser_id: int, shown: Q, since_pk: int | None = None, fields=(), sums=None) -> QuerySet:
    """As values, newest first: the advertiser's transactions `shown` selects — and every
    transaction that moved its cash (from id `since_pk` on, if given), which the balance needs —
    with `fields`, the entry sums `sums`, `shown`, and the cash balance after each as `cash_now`
    (the stored balance) less `cash_later` (what the transactions booked after it moved)."""
    cash = LedgerAccount.objects.filter(advertiser_id=advertiser_id, purpose=Purpose.CASH)
    cash_entries = LedgerEntry.objects.filter(account__in=cash)
    moved = Q(pk__in=cash_entries.values("transaction_id"))
    if since_pk is not None:
        moved &= Q(pk__gte=since_pk)
    signed = Case(When(side=_CASH_SIDE, then=F("amount")), default=-F("amount"), output_field=_MONEY)
    delta = (cash_entries.filter(transaction_id=OuterRef("pk")).order_by().values("transaction_id")
             .annotate(s=Sum(signed)).values("s")[:1])
    qs = LedgerTransaction.objects.filter(shown | moved, advertiser_id=advertiser_id).values("pk", *fields)
    if sums:
        qs = qs.annotate(**sums)
    return qs.alias(cash_delta=Coalesce(Subquery(delta), Value(ZERO), output_field=_MONEY)).annotate(
        shown=ExpressionWrapper(shown, output_field=BooleanField()),
        cash_now=Subquery(cash.values("balance")[:1]),
        cash_later=Window(Sum("cash_delta"), order_by=F("pk").desc(), frame=RowRange(start=None, end=-1)),
    ).order_by("-occurred_at", "-pk")


def _shown_with_cash_balance(rows):
    """(row, the cash balance after it) for each shown row of `_cash_rows`, in their order."""
    for r in rows:
        if r["shown"]:
            yield r, (r["cash_now"] or ZERO) - (r["cash_later"] or ZERO)


def cash_balances_after(*, advertiser_id: int, transactions: list[LedgerTransaction]) -> dict[int, Decimal]:
    """{transaction id: the advertiser's cash balance once it was booked} for some of its
    transactions (a page of any filter). One query, on the database they were read from; it reads
    only the cash movements from the oldest of them on, so page 1 costs about its own length."""
    if not transactions:
        return {}
    rows = _cash_rows(advertiser_id=advertiser_id, shown=Q(pk__in=[t.pk for t in transactions]),
                      since_pk=min(t.pk for t in transactions))
    return {r["pk"]: after for r, after in _shown_with_cash_balance(rows.using(transactions[0]._state.db))}


# --- the CSV export (issue 13, decision 0028) ---------------------------------------------------
# Machine values only: `kind` is the transaction's type code, a column per waterfall source holds
# what it paid, `funding_source` names the sources (several joined by "+", in waterfall order) and
# `card_last4` the card of a card deposit or payment. The page's "credit" is `free_credit` here.
CSV_NAMES = {"credit": "free_credit"}
CSV_SOURCES = [CSV_NAMES.get(k, k) for k in FUNDING_ORDER]
CSV_HEADER = ["date", "transaction_id", "type", "kind", "campaign", "amount", "currency", *CSV_SOURCES,
              "funding_source", "card_last4", "cash_balance_after"]
DEPOSIT_SOURCE_VALUES = {"web": "card", "api": "api", "bc_transfer": "bc_transfer"}

# The entries `_entry_key` gives a funding key, as filters on a transaction's entries.
_KEY_FILTERS = {
    **{key: Q(entries__account__purpose=Purpose.PROMO_CREDIT, entries__account__credit__kind=kind)
       for kind, key in CREDIT_KIND_KEY.items()},
    **{purpose: Q(entries__account__purpose=purpose) for purpose in sorted(ADVERTISER_SIDE - {Purpose.PROMO_CREDIT})},
}
_SUMS = {f"{side}_{key}": Sum("entries__amount", filter=q & Q(entries__side=side))
         for key, q in _KEY_FILTERS.items() for side in (DEBIT, CREDIT)}


def _outside_source(kind: str, memo: str, deposit_source: str | None, deposit_card: str | None) -> tuple[str, str]:
    """(funding_source, card_last4) of money that came from outside the balances: a deposit (by its
    source) or a payment of a bill or invoice (the card in its memo, or a bank transfer)."""
    if kind == TxKind.DEPOSIT:
        source = deposit_source or "api"
        return DEPOSIT_SOURCE_VALUES.get(source, source), deposit_card or ""
    m = CARD_IN_MEMO.search(memo)
    if m:
        return "card", m.group(1)
    return ("bank_transfer" if memo.startswith("Bank transfer") else "payment_method"), ""


def transactions_csv_rows(*, advertiser, **filters):
    """The header, then one row per transaction, newest first, in the advertiser's local time with
    exact amounts and the cash balance after each. One query however long the history: the
    database sums each transaction's funding parts (one group per transaction, no entry or account
    becomes a model instance) and reads the stored cash balance with them; the rows stream from a
    server-side cursor on PostgreSQL. Transactions that moved cash but are filtered out are read
    too (the balance counts them), not written."""
    cur, tz = advertiser.currency, advertiser.tz
    labels = dict(TxKind.choices)
    zero = fmt(ZERO, cur)
    yield CSV_HEADER
    rows = _cash_rows(
        advertiser_id=advertiser.pk, shown=_listed(advertiser=advertiser, **filters), sums=_SUMS,
        fields=("occurred_at", "kind", "campaign__name", "amount", "memo", "deposit__source", "deposit__card_last4"),
    )
    for r, cash_after in _shown_with_cash_balance(rows.iterator(chunk_size=2000)):
        kind, card_last4 = r["kind"], ""
        if kind in (TxKind.DEPOSIT, TxKind.PAYMENT):
            parts = []
            source, card_last4 = _outside_source(kind, r["memo"], r["deposit__source"], r["deposit__card_last4"])
        else:
            parts = _balance_parts({k: r[f"{DEBIT}_{k}"] for k in _KEY_FILTERS if r[f"{DEBIT}_{k}"]},
                                   {k: r[f"{CREDIT}_{k}"] for k in _KEY_FILTERS if r[f"{CREDIT}_{k}"]})
            source = "+".join(CSV_NAMES.get(p.key, p.key) for p in parts)
        paid = {p.key: p.amount for p in parts}
        direction_out = kind not in MONEY_IN and kind not in NEUTRAL
        yield [
            timezone.localtime(r["occurred_at"], tz).isoformat(timespec="seconds"), r["pk"], labels.get(kind, kind),
            kind, r["campaign__name"] or "", fmt(-r["amount"] if direction_out else r["amount"], cur), cur,
            *(fmt(paid[k], cur) if k in paid else zero for k in FUNDING_ORDER), source, card_last4,
            fmt(cash_after, cur),
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
    """Balances, 30 days of spend and the last transactions: five queries in all (no cash balance column)."""
    return PaymentsOverview(
        balances=advertiser_balances(advertiser=advertiser),
        spend=spend_by_day(advertiser=advertiser),
        # the Overview lists no balance: its cards show the balances now
        recent=transaction_rows(transactions_query(advertiser=advertiser)[:recent], cash_balance=False),
    )
