"""Monthly statements (SPEC R39; docs/decisions/0025-monthly-statements.md).

`issue_statements` (beat, `run_job issue_statements`) gives every account a statement of its
previous calendar month in its own time zone: opening balances, deposits, spend by funding
source, credit issued, used and expired, payments and refunds, closing balances. It works in
chunks of accounts in id order; each chunk is a constant number of statements whatever its size:

- the accounts and which of them already have this month's statement (`statement:YYYY-MM`, so a
  rerun or a concurrent run issues nothing twice),
- the stored balances of their ledger accounts,
- one aggregate of the ledger entries booked since the month began, split into those in the month
  and those after it,
- their billing profiles, the numbers (one statement per series and year) and one INSERT.

Balances are the ledger's by construction: closing = the stored balance less what was booked
after the month; opening = closing less what was booked in it. "Booked" is the ledger
transaction's `created_at`, the moment the balance changed (decision 0025).
"""

from collections import defaultdict
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.db.models import BooleanField, Case, Sum, Value, When
from django.utils import timezone

from billing.documents import document_build, documents_issue
from billing.invoicing import month_bounds
from billing.models import NORMAL_SIDE, Document, DocumentKind, LedgerAccount, LedgerEntry, Purpose, TxKind
from billing.money import ZERO, fmt
from billing.profile import profile_snapshots
from portal.models import Advertiser
from promotions.models import Credit

# What a statement shows, in order: (key, label). Balances are own money and credit by kind.
BALANCES = [
    ("cash", "Cash balance"),
    ("arrears", "Arrears"),
    ("accrued", "Current bill (accrued spend)"),
    ("billed", "Bills outstanding"),
    ("credit_line", "Credit line used"),
    ("free", "Free credit"),
    ("assignable", "Coupons"),
    ("discount", "Discount cap left"),
]
ACTIVITY = [
    ("deposits", "Deposits"),
    ("spend_discount", "Spend paid by discount"),
    ("spend_assignable", "Spend paid by coupons"),
    ("spend_free", "Spend paid by free credit"),
    ("spend_cash", "Spend paid from the cash balance"),
    ("spend_accrued", "Spend billed to the card"),
    ("spend_credit_line", "Spend on the credit line"),
    ("spend_arrears", "Spend owed as arrears"),
    ("credit_issued", "Credit issued"),
    ("credit_used", "Credit used"),
    ("credit_expired", "Credit expired"),
    ("credit_withdrawn", "Credit withdrawn or forfeited"),
    ("payments", "Payments received"),
    ("refunds", "Refunds"),
]
OWN = {Purpose.CASH: "cash", Purpose.ARREARS: "arrears", Purpose.ACCRUED: "accrued", Purpose.BILLED: "billed",
       Purpose.CREDIT_LINE: "credit_line"}
SPEND_KINDS = (TxKind.CHARGE, TxKind.FEE)


def statement_key(start: datetime) -> str:
    return f"statement:{start:%Y-%m}"


def issue_statements(*, at: datetime | None = None, chunk: int = 2000) -> dict:
    """Job (R39): a statement of the previous month for every account that has none yet."""
    at = at or timezone.now()
    issued = after = 0
    while True:
        advertisers = list(Advertiser.objects.filter(pk__gt=after, created_at__lt=at).order_by("pk")[:chunk])
        if not advertisers:
            return {"statements": issued}
        after = advertisers[-1].pk
        issued += statements_issue(advertisers, at=at)


def statements_issue(advertisers: list, *, at: datetime) -> int:
    """The statements of these accounts for the month before `at` (in each one's time zone), in
    one transaction; accounts that have theirs already are skipped."""
    periods = {a.pk: month_bounds(a, at) for a in advertisers}
    todo = [a for a in advertisers if a.created_at < periods[a.pk][1]]
    if not todo:
        return 0
    with transaction.atomic():
        done = set(Document.objects.filter(
            advertiser_id__in=[a.pk for a in todo], kind=DocumentKind.STATEMENT,
            source_key__in={statement_key(periods[a.pk][0]) for a in todo},
        ).values_list("advertiser_id", "source_key"))
        todo = [a for a in todo if (a.pk, statement_key(periods[a.pk][0])) not in done]
        if not todo:
            return 0
        figures = statement_figures(todo, periods)
        billed_to = profile_snapshots(todo)
        docs = []
        for adv in todo:
            start, end = periods[adv.pk]
            data = figures[adv.pk]
            docs.append(document_build(
                advertiser=adv, kind=DocumentKind.STATEMENT, source_key=statement_key(start), lines=[],
                issued_at=at, billed_to=billed_to[adv.pk], period_start=start, period_end=end,
                data={"month": f"{start:%Y-%m}", **{k: {n: fmt(v, adv.currency) for n, v in part.items()}
                                                    for k, part in data.items()}},
            ))
        issued = documents_issue(docs)
        return sum(1 for d, i in zip(docs, issued) if d is i)


def statement_figures(advertisers: list, periods: dict) -> dict[int, dict[str, dict[str, Decimal]]]:
    """{advertiser id: {"opening": {...}, "activity": {...}, "closing": {...}}} from the ledger."""
    ids = [a.pk for a in advertisers]
    kinds = dict(Credit.objects.filter(advertiser_id__in=ids).values_list("ledger_account_id", "kind"))
    closing = {pk: defaultdict(Decimal) for pk in ids}
    for adv_id, purpose, account_id, balance in LedgerAccount.objects.filter(advertiser_id__in=ids).values_list(
            "advertiser_id", "purpose", "pk", "balance"):
        key = _balance_key(purpose, kinds.get(account_id))
        if key:
            closing[adv_id][key] += balance
    opening = {pk: defaultdict(Decimal, closing[pk]) for pk in ids}
    activity = {pk: defaultdict(Decimal) for pk in ids}
    for adv_id, purpose, account_id, kind, side, booked_after, amount in _movements(ids, periods):
        key = _balance_key(purpose, kinds.get(account_id))
        signed = amount if side == NORMAL_SIDE[purpose] else -amount
        if key:
            if booked_after:
                closing[adv_id][key] -= signed
            opening[adv_id][key] -= signed
        if not booked_after:
            _count(activity[adv_id], purpose, kinds.get(account_id), kind, side, amount)
    out = {}
    for pk in ids:
        out[pk] = {
            "opening": {k: opening[pk][k] for k, _ in BALANCES},
            "activity": {k: activity[pk][k] for k, _ in ACTIVITY},
            "closing": {k: closing[pk][k] for k, _ in BALANCES},
        }
    return out


def _balance_key(purpose: str, credit_kind: str | None) -> str | None:
    if purpose == Purpose.PROMO_CREDIT:
        return credit_kind
    return OWN.get(purpose)


def _count(activity: dict, purpose: str, credit_kind: str | None, kind: str, side: str, amount: Decimal) -> None:
    """What one aggregated movement in the month adds to the statement's activity."""
    debit = side == "D"
    if purpose == Purpose.PROMO_CREDIT:
        if kind in SPEND_KINDS and debit:
            activity[f"spend_{credit_kind}"] += amount
            activity["credit_used"] += amount
        elif kind == TxKind.CREDIT_ISSUE and not debit:
            activity["credit_issued"] += amount
        elif kind == TxKind.CREDIT_EXPIRE and debit:
            activity["credit_expired"] += amount
        elif kind in (TxKind.CREDIT_WITHDRAW, TxKind.CREDIT_FORFEIT) and debit:
            activity["credit_withdrawn"] += amount
    elif purpose in OWN and kind in SPEND_KINDS and debit:
        activity[f"spend_{OWN[purpose]}"] += amount
    elif purpose in (Purpose.CASH, Purpose.ARREARS) and kind in (TxKind.DEPOSIT, TxKind.BC_TRANSFER) and not debit:
        activity["deposits"] += amount
    elif purpose == Purpose.SETTLEMENT:
        activity["payments" if debit else "refunds"] += amount


def _movements(ids: list[int], periods: dict):
    """The entries of these accounts booked since their month began, summed by account,
    transaction kind, side and whether they were booked after the month: one aggregate per
    distinct month (accounts in time zones on the same side of midnight share one)."""
    by_period = defaultdict(list)
    for pk in ids:
        by_period[periods[pk]].append(pk)
    for (start, end), group in sorted(by_period.items()):
        yield from LedgerEntry.objects.filter(
            account__advertiser_id__in=group, transaction__created_at__gte=start,
        ).annotate(
            after=Case(When(transaction__created_at__gte=end, then=Value(True)), default=Value(False),
                       output_field=BooleanField()),
        ).values("account__advertiser_id", "account__purpose", "account_id", "transaction__kind", "side", "after").annotate(
            total=Sum("amount"),
        ).order_by().values_list("account__advertiser_id", "account__purpose", "account_id", "transaction__kind",
                                 "side", "after", "total")
