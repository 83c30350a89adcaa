"""Posting to the double-entry ledger (SPEC R14).

`ledger_post` / `ledger_post_many` — and `ledger_post_moves`, their set-based path for the sweeps'
two-entry transactions — are the only writers of entries and stored balances. They check in
Python that each transaction balances and that no balance goes negative, then insert the
transaction and its entries and move the stored balances in one UPDATE. PostgreSQL checks the same
two rules again (deferred zero-sum trigger, CHECK balance >= 0), so a bug or a raw SQL write
cannot break them. Callers lock the owning advertiser first (`lock_advertisers`), so the
in-memory balances they pass are current.
"""

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


def signed(account: LedgerAccount, side: str, amount: Decimal) -> Decimal:
    return amount if side == account.normal else -amount


def ledger_post_many(postings: list[Posting]) -> list[LedgerTransaction]:
    """Book several balanced transactions with a constant number of queries."""
    deltas: dict[int, Decimal] = defaultdict(Decimal)
    accounts: dict[int, LedgerAccount] = {}
    now = timezone.now()
    for posting in postings:
        per_currency: dict[str, Decimal] = defaultdict(Decimal)
        for line in posting.lines:
            if line.amount <= 0:
                raise LedgerError(f"entry amount must be positive, got {line.amount}")
            if line.side not in (DEBIT, CREDIT):
                raise LedgerError(f"bad side {line.side!r}")
            per_currency[line.account.currency] += line.amount if line.side == DEBIT else -line.amount
            deltas[line.account.pk] += signed(line.account, line.side, line.amount)
            accounts[line.account.pk] = line.account
        unbalanced = {c: s for c, s in per_currency.items() if s}
        if unbalanced:
            raise LedgerError(f"unbalanced {posting.kind} transaction: {unbalanced}")
    for pk, delta in deltas.items():
        if accounts[pk].balance + delta < 0:
            raise LedgerError(f"{accounts[pk]} would go negative ({accounts[pk].balance} {delta:+})")

    # No savepoint: callers already hold a transaction (the advertiser lock), and nobody
    # recovers from a failed posting inside it — the savepoint cost two round trips per post.
    with transaction.atomic(savepoint=False):
        txs = LedgerTransaction.objects.bulk_create(
            [
                LedgerTransaction(
                    kind=p.kind,
                    advertiser_id=p.advertiser_id,
                    business_center_id=p.business_center_id,
                    campaign_id=p.campaign_id,
                    amount=p.amount,
                    currency=p.currency,
                    occurred_at=p.occurred_at or now,
                    created_at=now,
                    memo=p.memo[:300],
                )
                for p in postings
            ]
        )
        entries = []
        for p, tx in zip(postings, txs):
            p.transaction = tx
            entries.extend(LedgerEntry(transaction=tx, account_id=ln.account.pk, side=ln.side, amount=ln.amount) for ln in p.lines)
        LedgerEntry.objects.bulk_create(entries)
        moved = {pk: d for pk, d in deltas.items() if d}
        if moved:
            _balances_add(moved)
    for pk, delta in deltas.items():
        accounts[pk].balance += delta
    return txs


def _balances_add(deltas: dict[int, Decimal]) -> None:
    """`balance = balance + delta` for every account, in one UPDATE.

    Written as SQL because building the same statement with the ORM
    (`Case(*[When(pk=…, then=…)])`) costs about 0.2 ms of Python per account — 40–50 ms for the
    ~250 accounts a batch of 100 charges moves, the largest single cost of a batch.
    """
    qn = connection.ops.quote_name
    table, id_col = qn(LedgerAccount._meta.db_table), qn(LedgerAccount._meta.pk.column)
    whens = " ".join(["WHEN %s THEN %s"] * len(deltas))
    ids = ", ".join(["%s"] * len(deltas))
    params = [x for pk, delta in deltas.items() for x in (pk, delta)] + list(deltas)
    new_balance = f"balance + CASE {id_col} {whens} END"
    if connection.vendor == "sqlite":
        # SQLite keeps decimals as binary floats: without rounding back to the 4 stored places,
        # using up a balance exactly (64.41 − 64.41) can leave −1e-14 and trip the CHECK.
        new_balance = f"ROUND({new_balance}, 4)"
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET balance = {new_balance} WHERE {id_col} IN ({ids})", params)


def ledger_post(posting: Posting) -> LedgerTransaction:
    return ledger_post_many([posting])[0]


@dataclass(slots=True)
class AccountRef:
    """What `ledger_post_moves` reads of an account, for callers that select rows with
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
    """Book many two-entry transactions of one kind: the bulk path of the sweeps.

    Same checks, same rows and same balances as `ledger_post_many` with one Posting per move,
    but on PostgreSQL in four statements built from arrays — no model instances, no per-row SQL
    — since a sweep books a thousand transactions a chunk. (Through `ledger_post_many`, an
    expiry chunk of 1,000 credits spent most of its time creating and compiling 3,000 model
    instances.) Other databases take `ledger_post_many`.
    """
    if connection.vendor != "postgresql":
        postings = []
        for m in moves:
            p = Posting(kind=kind, currency=m.debit.currency, amount=m.amount, lines=[], advertiser_id=m.advertiser_id,
                        occurred_at=m.occurred_at, memo=m.memo)
            p.move(debit=m.debit, credit=m.credit, amount=m.amount)
            postings.append(p)
        ledger_post_many(postings)
        return
    deltas: dict[int, Decimal] = defaultdict(Decimal)
    accounts: dict[int, LedgerAccount] = {}
    for m in moves:
        if m.amount <= 0:
            raise LedgerError(f"entry amount must be positive, got {m.amount}")
        if m.debit.currency != m.credit.currency:
            raise LedgerError(f"unbalanced {kind} transaction: {m.debit.currency} {m.amount} against {m.credit.currency}")
        deltas[m.debit.pk] += signed(m.debit, DEBIT, m.amount)
        deltas[m.credit.pk] += signed(m.credit, CREDIT, m.amount)
        accounts[m.debit.pk], accounts[m.credit.pk] = m.debit, m.credit
    for pk, delta in deltas.items():
        if accounts[pk].balance + delta < 0:
            raise LedgerError(f"{accounts[pk]} would go negative ({accounts[pk].balance} {delta:+})")
    if not moves:
        return
    now = timezone.now()
    qn = connection.ops.quote_name
    tx_table, entry_table = qn(LedgerTransaction._meta.db_table), qn(LedgerEntry._meta.db_table)
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        # Ids first, so the entries can name their transaction without relying on RETURNING's order.
        cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                       [LedgerTransaction._meta.db_table, len(moves)])
        tx_ids = [row[0] for row in cursor.fetchall()]
        cursor.execute(
            f"""INSERT INTO {tx_table} (id, kind, advertiser_id, amount, currency, occurred_at, created_at, memo)
                SELECT m.id, %s, m.advertiser_id, m.amount, m.currency, m.occurred_at, %s, m.memo
                  FROM unnest(%s::bigint[], %s::bigint[], %s::numeric[], %s::text[], %s::timestamptz[], %s::text[])
                       AS m(id, advertiser_id, amount, currency, occurred_at, memo)""",
            [kind, now, tx_ids, [m.advertiser_id for m in moves], [m.amount for m in moves],
             [m.debit.currency for m in moves], [m.occurred_at or now for m in moves], [m.memo[:300] for m in moves]],
        )
        cursor.execute(
            f"""INSERT INTO {entry_table} (transaction_id, account_id, side, amount)
                SELECT m.id, e.account_id, e.side, m.amount
                  FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::numeric[]) WITH ORDINALITY
                       AS m(id, debit_id, credit_id, amount, n),
                       LATERAL (VALUES (1, m.debit_id, %s), (2, m.credit_id, %s)) AS e(k, account_id, side)
                 ORDER BY m.n, e.k""",
            [tx_ids, [m.debit.pk for m in moves], [m.credit.pk for m in moves], [m.amount for m in moves],
             DEBIT, CREDIT],
        )
        moved = {pk: d for pk, d in deltas.items() if d}
        if moved:
            table, id_col = qn(LedgerAccount._meta.db_table), qn(LedgerAccount._meta.pk.column)
            cursor.execute(
                f"UPDATE {table} AS a SET balance = a.balance + d.delta"
                f" FROM unnest(%s::bigint[], %s::numeric[]) AS d(id, delta) WHERE a.{id_col} = d.id",
                [list(moved), list(moved.values())],
            )
    for pk, delta in deltas.items():
        accounts[pk].balance += delta


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


def credit_account_open(advertiser) -> LedgerAccount:
    return LedgerAccount.objects.create(
        advertiser=advertiser, purpose=Purpose.PROMO_CREDIT, currency=advertiser.currency, normal=CREDIT
    )


def lock_advertisers(ids):
    """Lock advertiser rows in id order: the first lock every money write takes (no deadlocks)."""
    from portal.models import Advertiser

    return {a.pk: a for a in Advertiser.objects.select_for_update().filter(pk__in=sorted(set(ids))).order_by("pk")}
