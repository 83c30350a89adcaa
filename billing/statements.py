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

import functools
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

from billing.documents import document_build, documents_issue, documents_issued
from billing.invoicing import month_bounds
from billing.ledger import lock_advertisers
from billing.models import NORMAL_SIDE, DocumentKind, LedgerAccount, LedgerEntry, LedgerTransaction, Purpose, TxKind
from billing.money import ZERO, quantum
from billing.profile import profile_snapshots
from portal.models import Advertiser
from portal.dbtypes import prepared_cursor
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


def issue_statements(*, at: datetime | None = None, chunk: int = 2000, workers: int = 2) -> dict:
    """Job (R39): a statement of the previous month for every account that has none yet.

    Chunks are issued by `workers` threads, each on its own connection, so one chunk's reads and
    arithmetic run while another's rows are written and committed (the number counter, locked
    from numbering to commit, keeps the numbers gapless in any order). Inside a caller's open
    transaction, or on SQLite, the chunks run one after another on the caller's connection."""
    at = at or timezone.now()
    chunks = _chunks(at, chunk)
    if workers <= 1 or connection.in_atomic_block or connection.vendor != "postgresql":
        return {"statements": sum(statements_issue(advertisers, at=at) for advertisers in chunks)}
    lock = threading.Lock()

    def work() -> int:
        issued = 0
        try:
            while True:
                with lock:
                    advertisers = next(chunks, None)
                if advertisers is None:
                    return issued
                issued += statements_issue(advertisers, at=at)
        finally:
            connection.close()

    with ThreadPoolExecutor(workers) as pool:
        return {"statements": sum(f.result() for f in [pool.submit(work) for _ in range(workers)])}


def _chunks(at: datetime, size: int):
    """The accounts opened before `at`, `size` at a time in id order (read by whichever worker asks)."""
    after = 0
    while True:
        advertisers = list(Advertiser.objects.filter(pk__gt=after, created_at__lt=at).order_by("pk")
                           .only("pk", "timezone", "created_at")[:size])
        if not advertisers:
            return
        after = advertisers[-1].pk
        yield advertisers


def statements_chunks(*, at: datetime, chunk: int = 2000):
    """The accounts opened before `at`, `chunk` ids at a time: the chunk tasks of beat's run."""
    for advertisers in _chunks(at, chunk):
        yield [a.pk for a in advertisers]


def statements_chunk(*, ids: list[int], at: datetime) -> dict:
    """One chunk task: the statements of these accounts (those that have theirs already skipped)."""
    advertisers = list(Advertiser.objects.filter(pk__in=ids).order_by("pk").only("pk", "timezone", "created_at"))
    return {"statements": statements_issue(advertisers, at=at)}


def statements_issue(advertisers: list, *, at: datetime) -> int:
    """The statements of these accounts for the month before `at` (in each one's time zone), in
    one transaction; accounts that have theirs already are skipped. `advertisers` need only their
    id, time zone and creation time: the statements are made from the rows locked here."""
    periods = {a.pk: month_bounds(a, at) for a in advertisers}
    months = {period: f"{period[0]:%Y-%m}" for period in set(periods.values())}
    keys = {period: statement_key(period[0]) for period in months}
    todo = [a for a in advertisers if a.created_at < periods[a.pk][1]]
    if not todo:
        return 0
    issued = documents_issued([(a.pk, keys[periods[a.pk]]) for a in todo])
    todo = [a for a in todo if (a.pk, keys[periods[a.pk]]) not in issued]  # unlocked: a rerun stops here
    if not todo:
        return 0
    with transaction.atomic():
        # The advertisers' locks (the first lock every money write takes): no booking commits
        # between the balances and the entries read below, and a concurrent run waits here, then
        # `documents_issue` finds its statements and issues none of them again.
        locked = lock_advertisers([a.pk for a in todo])
        todo = [locked[a.pk] for a in todo]
        figures = statement_figures(todo, periods)
        billed_to = profile_snapshots(todo)
        docs = []
        for adv in todo:
            start, end = periods[adv.pk]
            q = quantum(adv.currency)  # the figures as the API writes them (`fmt`); most are zero
            zero = str(ZERO.quantize(q))
            docs.append(document_build(
                advertiser=adv, kind=DocumentKind.STATEMENT, source_key=keys[start, end], lines=[],
                issued_at=at, billed_to=billed_to[adv.pk], period_start=start, period_end=end,
                data={"month": months[start, end], **{k: {n: str(v.quantize(q)) if v else zero for n, v in part.items()}
                                                    for k, part in figures[adv.pk].items()}},
            ))
        issued = documents_issue(docs)
        return sum(1 for d, i in zip(docs, issued) if d is i)


def statement_figures(advertisers: list, periods: dict) -> dict[int, dict[str, dict[str, Decimal]]]:
    """{advertiser id: {"opening": {...}, "activity": {...}, "closing": {...}}} from the ledger."""
    ids = [a.pk for a in advertisers]
    closing = {pk: defaultdict(Decimal) for pk in ids}
    opening = {pk: defaultdict(Decimal) for pk in ids}
    activity = {pk: defaultdict(Decimal) for pk in ids}
    with _cursor() as cursor:
        cursor.execute(_balances_sql(len(ids)), ids)
        for adv_id, purpose, credit_kind, balance in cursor.fetchall():
            key = _balance_key(purpose, credit_kind)
            if key:
                closing[adv_id][key] += _decimal(balance)
                opening[adv_id][key] += _decimal(balance)
        by_period = defaultdict(list)
        for pk in ids:
            by_period[periods[pk]].append(pk)
        for (start, end), group in sorted(by_period.items()):
            adapt = connection.ops.adapt_datetimefield_value
            cursor.execute(_movements_sql(len(group)), [adapt(end), *group, adapt(start)])
            for adv_id, purpose, credit_kind, kind, side, booked_after, amount in cursor.fetchall():
                key = _balance_key(purpose, credit_kind)
                amount = _decimal(amount)
                signed = amount if side == NORMAL_SIDE[purpose] else -amount
                if key:
                    if booked_after:
                        closing[adv_id][key] -= signed
                    opening[adv_id][key] -= signed
                if not booked_after:
                    _count(activity[adv_id], purpose, credit_kind, kind, side, amount)
    return {pk: {"opening": {k: opening[pk][k] for k, _ in BALANCES},
                 "activity": {k: activity[pk][k] for k, _ in ACTIVITY},
                 "closing": {k: closing[pk][k] for k, _ in BALANCES}} for pk in ids}


def _decimal(value) -> Decimal:
    """PostgreSQL returns numerics as Decimal; SQLite keeps them as binary floats (4 places)."""
    return value if isinstance(value, Decimal) else Decimal(str(value)).quantize(Decimal("0.0001"))


def _cursor():
    """Fixed statements: prepared on PostgreSQL, plain elsewhere (the embedded SQLite)."""
    return prepared_cursor() if connection.vendor == "postgresql" else connection.cursor()


def _tables() -> dict[str, str]:
    qn = connection.ops.quote_name
    return {"account": qn(LedgerAccount._meta.db_table), "credit": qn(Credit._meta.db_table),
            "tx": qn(LedgerTransaction._meta.db_table), "entry": qn(LedgerEntry._meta.db_table)}


@functools.cache
def _balances_sql(n: int) -> str:
    """The accounts' stored balances that are not zero, with each credit account's kind."""
    return """SELECT a.advertiser_id, a.purpose, c.kind, a.balance
                FROM {account} a LEFT JOIN {credit} c ON c.ledger_account_id = a.id
               WHERE a.advertiser_id IN ({ids}) AND a.balance <> 0""".format(ids=", ".join(["%s"] * n), **_tables())


@functools.cache
def _movements_sql(n: int) -> str:
    """What was booked on the accounts since their month began, summed by account, transaction
    kind, side and whether it was booked after the month (params: end, the ids, start). Read
    from the advertisers' transactions by (advertiser, created_at), so its cost is the month's
    bookings, not the accounts' whole history: a booking on an advertiser's account is always a
    transaction of that advertiser (the ledger writer refuses any other: `billing.ledger._checked`)."""
    return """SELECT a.advertiser_id, a.purpose, c.kind, t.kind, e.side, t.created_at >= %s, SUM(e.amount)
                FROM {tx} t
                JOIN {entry} e ON e.transaction_id = t.id
                JOIN {account} a ON a.id = e.account_id AND a.advertiser_id = t.advertiser_id
                LEFT JOIN {credit} c ON c.ledger_account_id = a.id
               WHERE t.advertiser_id IN ({ids}) AND t.created_at >= %s
               GROUP BY a.advertiser_id, a.purpose, c.kind, t.kind, e.side, 6""".format(
        ids=", ".join(["%s"] * n), **_tables())


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
