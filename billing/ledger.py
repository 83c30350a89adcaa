"""Posting to the double-entry ledger (SPEC R14).

`ledger_write` is the only writer of transactions, entries and stored balances (issue 10);
`ledger_post`, `ledger_post_many` and `ledger_post_moves` (the sweeps' two-entry transactions) are
its shapes. It checks in Python that each transaction balances and that no balance goes negative,
then books everything in one statement. PostgreSQL checks the same two rules again (zero-sum
trigger, CHECK balance >= 0), so a bug or a raw SQL write cannot break them. Callers lock the owning advertiser first (`lock_advertisers`), so the
in-memory balances they pass are current.
"""

import functools
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

from billing.models import (
    ADVERTISER_PURPOSES,
    BC_PURPOSES,
    CREDIT,
    DEBIT,
    NORMAL_SIDE,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    Purpose,
)
from portal.dbtypes import prepared_cursor
from portal.models import Advertiser


class LedgerError(Exception):
    """A posting that would break the ledger's invariants: a bug, never a user error."""


@dataclass
class Line:
    account: LedgerAccount
    side: str
    amount: Decimal


@dataclass
class Posting:
    kind: str
    currency: str
    amount: Decimal
    lines: list[Line]
    advertiser_id: int | None = None
    business_center_id: int | None = None
    campaign_id: int | None = None
    occurred_at: datetime | None = None
    memo: str = ""
    # filled in by ledger_post_many
    transaction: LedgerTransaction | None = field(default=None, repr=False)

    def move(self, *, debit: LedgerAccount, credit: LedgerAccount, amount: Decimal) -> None:
        """Add a debit/credit pair; zero amounts are left out (entries are always positive)."""
        if amount:
            self.lines.append(Line(debit, DEBIT, amount))
            self.lines.append(Line(credit, CREDIT, amount))


def signed(account, side: str, amount: Decimal) -> Decimal:
    return amount if side == account.normal else -amount


@dataclass
class Rider:
    """More rows to write in the same statement as a booking (issue 10): on PostgreSQL `sql` is
    one more data-modifying `name AS (…)` of the booking's WITH, which may name `ids` (the new
    transactions' ids `id`, by the posting's 1-based position `n`); `params` are its parameters.
    Other databases call `orm(tx_ids)` after the booking. The statement's text never depends
    on the batch's size, so PostgreSQL prepares it once per connection."""

    sql: str
    params: list
    orm: object  # callable(list[int]) -> None


def _checked(postings: list[Posting]) -> tuple[dict, dict]:
    """The balance move of every account the postings touch, after checking each posting
    balances, every entry is positive, an advertiser's accounts move only in that advertiser's
    transactions and no balance goes below zero (LedgerError otherwise)."""
    deltas: dict[int, Decimal] = defaultdict(Decimal)
    accounts: dict[int, object] = {}
    for posting in postings:
        per_currency: dict[str, Decimal] = defaultdict(Decimal)
        for line in posting.lines:
            if line.amount <= 0:
                raise LedgerError(f"entry amount must be positive, got {line.amount}")
            if line.side not in (DEBIT, CREDIT):
                raise LedgerError(f"bad side {line.side!r}")
            owner = line.account.advertiser_id
            if owner is not None and owner != posting.advertiser_id:
                # An advertiser's account moves only in that advertiser's transactions: what was
                # booked on an account is read by (advertiser, created_at) (statements, R39).
                raise LedgerError(f"{posting.kind} transaction of advertiser {posting.advertiser_id} moves {line.account}")
            per_currency[line.account.currency] += line.amount if line.side == DEBIT else -line.amount
            deltas[line.account.pk] += signed(line.account, line.side, line.amount)
            accounts[line.account.pk] = line.account
        unbalanced = {c: s for c, s in per_currency.items() if s}
        if unbalanced:
            raise LedgerError(f"unbalanced {posting.kind} transaction: {unbalanced}")
    for pk, delta in deltas.items():
        if accounts[pk].balance + delta < 0:
            raise LedgerError(f"{accounts[pk]} would go negative ({accounts[pk].balance} {delta:+})")
    return deltas, accounts


def ledger_write(postings: list[Posting], *, riders: tuple = ()) -> list[int]:
    """The one writer of ledger transactions, entries and stored balances: book balanced
    postings (and their riders) and return the new transactions' ids, in order.

    Checked in Python first (`_checked`), then again by PostgreSQL (the statement-level zero-sum
    trigger, CHECK balance >= 0). On PostgreSQL the whole booking is one prepared statement
    built from arrays — transactions, entries, balances and the riders' rows — so a batch of a
    thousand costs what a batch of one does in round trips and in Python (no model instances).
    The in-memory balances of the accounts passed move with the stored ones."""
    deltas, accounts = _checked(postings)
    if not postings:
        return []
    now = timezone.now()
    moved = {pk: d for pk, d in deltas.items() if d}
    # No savepoint: callers already hold a transaction (the advertiser lock), and nobody
    # recovers from a failed posting inside it.
    with transaction.atomic(savepoint=False):
        if connection.vendor == "postgresql":
            ids = _write_postgresql(postings, moved, riders, now)
        else:
            ids = _write_orm(postings, moved, now)
            for rider in riders:
                rider.orm(ids)
    for pk, delta in deltas.items():
        accounts[pk].balance += delta
    return ids


@functools.cache
def _booking_sql() -> str:
    qn = connection.ops.quote_name
    tx, entry, account = (qn(m._meta.db_table) for m in (LedgerTransaction, LedgerEntry, LedgerAccount))
    return f"""
    ids AS MATERIALIZED (
        SELECT nextval(pg_get_serial_sequence('{LedgerTransaction._meta.db_table}', 'id')) AS id, n
          FROM generate_series(1, %s::int) AS n
    ), tx AS (
        INSERT INTO {tx} (id, kind, advertiser_id, business_center_id, campaign_id, amount, currency,
                          occurred_at, created_at, memo)
        SELECT ids.id, t.kind, t.advertiser_id, t.business_center_id, t.campaign_id, t.amount, t.currency,
               t.occurred_at, %s, t.memo
          FROM unnest(%s::text[], %s::bigint[], %s::bigint[], %s::bigint[], %s::numeric[], %s::text[],
                      %s::timestamptz[], %s::text[]) WITH ORDINALITY
               AS t(kind, advertiser_id, business_center_id, campaign_id, amount, currency, occurred_at, memo, n)
          JOIN ids ON ids.n = t.n
    ), entries AS (
        INSERT INTO {entry} (transaction_id, account_id, side, amount)
        SELECT ids.id, e.account_id, e.side, e.amount
          FROM unnest(%s::int[], %s::bigint[], %s::text[], %s::numeric[]) WITH ORDINALITY
               AS e(tx_n, account_id, side, amount, n)
          JOIN ids ON ids.n = e.tx_n
         ORDER BY e.n
    ), balances AS (
        UPDATE {account} AS a SET balance = a.balance + d.delta
          FROM unnest(%s::bigint[], %s::numeric[]) AS d(id, delta)
         WHERE a.id = d.id
    )"""


def _write_postgresql(postings, moved: dict, riders, now) -> list[int]:
    entries = [(n, ln) for n, p in enumerate(postings, 1) for ln in p.lines]
    params = [
        len(postings), now,
        [p.kind for p in postings], [p.advertiser_id for p in postings],
        [p.business_center_id for p in postings], [p.campaign_id for p in postings],
        [p.amount for p in postings], [p.currency for p in postings],
        [p.occurred_at or now for p in postings], [p.memo[:300] for p in postings],
        [n for n, _ in entries], [ln.account.pk for _, ln in entries], [ln.side for _, ln in entries],
        [ln.amount for _, ln in entries],
        list(moved), list(moved.values()),
    ]
    statement = "WITH" + _booking_sql() + "".join(f", {r.sql}" for r in riders) + " SELECT id FROM ids ORDER BY n"
    for r in riders:
        params += r.params
    with prepared_cursor() as cursor:
        cursor.execute(statement, params)
        return [row[0] for row in cursor.fetchall()]


def _write_orm(postings, moved: dict, now) -> list[int]:
    """Other databases (the embedded SQLite of `make run`): the same rows through the ORM."""
    txs = LedgerTransaction.objects.bulk_create([
        LedgerTransaction(kind=p.kind, advertiser_id=p.advertiser_id, business_center_id=p.business_center_id,
                          campaign_id=p.campaign_id, amount=p.amount, currency=p.currency,
                          occurred_at=p.occurred_at or now, created_at=now, memo=p.memo[:300])
        for p in postings
    ])
    LedgerEntry.objects.bulk_create([
        LedgerEntry(transaction=tx, account_id=ln.account.pk, side=ln.side, amount=ln.amount)
        for p, tx in zip(postings, txs) for ln in p.lines
    ])
    if moved:
        qn = connection.ops.quote_name
        table, id_col = qn(LedgerAccount._meta.db_table), qn(LedgerAccount._meta.pk.column)
        whens = " ".join(["WHEN %s THEN %s"] * len(moved))
        # SQLite keeps decimals as binary floats: without rounding back to the 4 stored places,
        # using up a balance exactly (64.41 − 64.41) can leave −1e-14 and trip the CHECK.
        new_balance = f"ROUND(balance + CASE {id_col} {whens} END, 4)"
        params = [x for pk, delta in moved.items() for x in (pk, delta)] + list(moved)
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE {table} SET balance = {new_balance} "
                           f"WHERE {id_col} IN ({', '.join(['%s'] * len(moved))})", params)
    return [tx.pk for tx in txs]


def ledger_post_many(postings: list[Posting]) -> list[LedgerTransaction]:
    """Book several balanced transactions (`ledger_write`); each posting gets its `transaction`."""
    ids = ledger_write(postings)
    now = timezone.now()
    txs = []
    for p, pk in zip(postings, ids):
        tx = LedgerTransaction(id=pk, kind=p.kind, advertiser_id=p.advertiser_id,
                               business_center_id=p.business_center_id, campaign_id=p.campaign_id, amount=p.amount,
                               currency=p.currency, occurred_at=p.occurred_at or now, created_at=now,
                               memo=p.memo[:300])
        tx._state.adding, tx._state.db = False, connection.alias
        p.transaction = tx
        txs.append(tx)
    return txs


def ledger_post(posting: Posting) -> LedgerTransaction:
    return ledger_post_many([posting])[0]


@dataclass(slots=True)
class AccountRef:
    """What the ledger writer reads of an account, for callers that select rows with
    `.values_list` instead of building `LedgerAccount` instances (the expiry sweep reads 1,000
    credit accounts a chunk). Its `balance` must be as current as a locked row's, and it is
    moved like an instance's after the booking."""

    pk: int
    currency: str
    normal: str
    balance: Decimal
    purpose: str
    advertiser_id: int | None = None

    def __str__(self) -> str:  # as LedgerAccount's, for LedgerError messages
        return f"{Purpose(self.purpose).label} · adv {self.advertiser_id} · {self.currency}"


@dataclass
class Move:
    """A transaction of two entries: `amount` debited to `debit` and credited to `credit`
    (`LedgerAccount` instances or `AccountRef`s)."""

    debit: LedgerAccount | AccountRef
    credit: LedgerAccount | AccountRef
    amount: Decimal
    advertiser_id: int | None = None
    occurred_at: datetime | None = None
    memo: str = ""


def ledger_post_moves(kind: str, moves: list[Move]) -> None:
    """Book many two-entry transactions of one kind (the sweeps'), through `ledger_write`."""
    postings = []
    for m in moves:
        if m.debit.currency != m.credit.currency:
            raise LedgerError(f"unbalanced {kind} transaction: {m.debit.currency} {m.amount} against {m.credit.currency}")
        p = Posting(kind=kind, currency=m.debit.currency, amount=m.amount, lines=[], advertiser_id=m.advertiser_id,
                    occurred_at=m.occurred_at, memo=m.memo)
        if m.amount <= 0:
            raise LedgerError(f"entry amount must be positive, got {m.amount}")
        p.move(debit=m.debit, credit=m.credit, amount=m.amount)
        postings.append(p)
    ledger_write(postings)


def accounts_open_for_advertiser(advertiser) -> None:
    LedgerAccount.objects.bulk_create(
        [
            LedgerAccount(advertiser=advertiser, purpose=p, currency=advertiser.currency, normal=NORMAL_SIDE[p])
            for p in ADVERTISER_PURPOSES
        ]
    )


def accounts_open_for_bc(business_center, currency: str) -> None:
    LedgerAccount.objects.bulk_create(
        [
            LedgerAccount(business_center=business_center, purpose=p, currency=currency, normal=NORMAL_SIDE[p])
            for p in BC_PURPOSES
        ]
    )


def advertiser_accounts(advertiser_ids) -> dict[int, dict[str, LedgerAccount]]:
    """The standard accounts of each advertiser, by purpose (one query)."""
    out: dict[int, dict[str, LedgerAccount]] = defaultdict(dict)
    for acct in LedgerAccount.objects.filter(advertiser_id__in=list(advertiser_ids)).exclude(purpose=Purpose.PROMO_CREDIT):
        out[acct.advertiser_id][acct.purpose] = acct
    return out


def tax_account(advertiser) -> LedgerAccount:
    """The advertiser's tax-payable account (R38), opened on first use; call holding its lock."""
    account, _ = LedgerAccount.objects.get_or_create(
        advertiser_id=advertiser.pk, purpose=Purpose.TAX_PAYABLE,
        defaults={"currency": advertiser.currency, "normal": NORMAL_SIDE[Purpose.TAX_PAYABLE]},
    )
    return account


def credit_account_open(advertiser) -> LedgerAccount:
    return LedgerAccount.objects.create(
        advertiser=advertiser, purpose=Purpose.PROMO_CREDIT, currency=advertiser.currency, normal=CREDIT
    )


def lock_advertisers(ids):
    """Lock advertiser rows in id order: the first lock every money write takes (no deadlocks).
    On PostgreSQL a prepared statement (it runs in every money write: no ORM compilation)."""
    ids = sorted(set(ids))
    if connection.vendor != "postgresql":
        return {a.pk: a for a in Advertiser.objects.select_for_update().filter(pk__in=ids).order_by("pk")}
    fields = Advertiser._meta.concrete_fields
    with prepared_cursor() as cursor:
        cursor.execute(_lock_sql(), [ids])
        rows = cursor.fetchall()
    names = [f.attname for f in fields]
    return {row[0]: Advertiser.from_db(connection.alias, names, row) for row in rows}


@functools.cache
def _lock_sql() -> str:
    qn = connection.ops.quote_name
    columns = ", ".join(qn(f.column) for f in Advertiser._meta.concrete_fields)
    return (f"SELECT {columns} FROM {qn(Advertiser._meta.db_table)} WHERE {qn(Advertiser._meta.pk.column)} = ANY(%s::bigint[])"
            f" ORDER BY {qn(Advertiser._meta.pk.column)} FOR UPDATE")
