"""`reconcile_ledger` (SPEC R14, R33): recompute every stored balance from its entries and check
that every transaction sums to zero per currency. Differences are logged and recorded in a
ReconciliationRun for the support console — never silently fixed.

It also lists rows holding values the doors no longer accept (issue 9, decision 0018): a
timestamp outside `portal.inputs.TIMESTAMP_MIN`…`TIMESTAMP_MAX` in any table of the portal's
apps, and a ladder program whose window or reward validity is longer than the programs' bound.
Such rows were written before the bounds; pages read them (portal/dbtypes.py), staff correct them.

Each chunk reads the stored balances and the entries in one REPEATABLE READ snapshot (on
PostgreSQL), so charges booked while it runs never show up as false differences.
"""

import logging
from datetime import timedelta
from decimal import Decimal

from django.apps import apps
from django.db import connection, models, transaction
from django.utils import timezone

from billing.models import LedgerAccount, LedgerTransaction, ReconciliationRun
from portal import inputs

CHECKED_APPS = ("portal", "billing", "promotions")

log = logging.getLogger(__name__)

BALANCES = """
SELECT a.id, a.purpose, a.advertiser_id, a.business_center_id, a.balance,
       COALESCE(SUM(CASE WHEN e.side = a.normal THEN e.amount ELSE -e.amount END), 0) AS computed
  FROM billing_ledgeraccount a
  LEFT JOIN billing_ledgerentry e ON e.account_id = a.id
 WHERE a.id > %s AND a.id <= %s
 GROUP BY a.id, a.purpose, a.advertiser_id, a.business_center_id, a.balance
HAVING a.balance <> COALESCE(SUM(CASE WHEN e.side = a.normal THEN e.amount ELSE -e.amount END), 0)
"""

UNBALANCED = """
SELECT e.transaction_id, a.currency, SUM(CASE WHEN e.side = 'D' THEN e.amount ELSE -e.amount END) AS total
  FROM billing_ledgerentry e
  JOIN billing_ledgeraccount a ON a.id = e.account_id
 WHERE e.transaction_id > %s AND e.transaction_id <= %s
 GROUP BY e.transaction_id, a.currency
HAVING SUM(CASE WHEN e.side = 'D' THEN e.amount ELSE -e.amount END) <> 0
"""


def _snapshot(outer_atomic: bool):
    """Make this chunk's transaction one snapshot (not possible inside a caller's transaction)."""
    if connection.vendor == "postgresql" and not outer_atomic:
        with connection.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")


def _max_id(model) -> int:
    last = model.objects.order_by("-pk").values_list("pk", flat=True).first()
    return last or 0


def out_of_range_rows(limit: int = 100) -> list[dict]:
    """Rows whose timestamps lie outside the accepted range, one scan per table (at most `limit`
    rows a table), and programs with out-of-range day counts."""
    found = []
    for config in (apps.get_app_config(label) for label in CHECKED_APPS):
        for model in config.get_models():
            columns = [f.column for f in model._meta.concrete_fields if isinstance(f, models.DateTimeField)]
            if not columns:
                continue
            table = model._meta.db_table
            outside = " OR ".join(f"({c} < %s OR {c} >= %s)" for c in columns)
            flags = ", ".join(f"({c} < %s OR {c} >= %s)" for c in columns)
            bounds = [inputs.TIMESTAMP_MIN, inputs.TIMESTAMP_MAX] * len(columns)
            with connection.cursor() as cur:
                cur.execute(f"SELECT {model._meta.pk.column}, {flags} FROM {table} WHERE {outside} "
                            f"ORDER BY 1 LIMIT {int(limit)}", bounds + bounds)
                for pk, *bad in cur.fetchall():
                    found.append({"kind": "timestamp_out_of_range", "table": table, "row": pk,
                                  "model": model._meta.label_lower,
                                  "columns": [c for c, b in zip(columns, bad) if b]})
    Program = apps.get_model("promotions", "Program")
    for pk, window, validity in (Program.objects.filter(models.Q(window_days__gt=inputs.PROGRAM_DAYS_MAX)
                                                        | models.Q(reward_validity_days__gt=inputs.PROGRAM_DAYS_MAX))
                                 .values_list("pk", "window_days", "reward_validity_days")[:limit]):
        found.append({"kind": "program_out_of_range", "table": Program._meta.db_table, "row": pk,
                      "model": Program._meta.label_lower, "window_days": window, "reward_validity_days": validity})
    return found


SAFE_AFTER = timedelta(minutes=10)  # a transaction is committed this long after its created_at (see below)
RECONCILE_LOCK = 7_340_311_824  # the advisory lock a run holds: two runs take turns, never race their checkpoints

CHECKPOINT_UPSERT = """
  INSERT INTO billing_ledgercheckpoint (account_id, upto, total)
  SELECT id, upto, computed FROM res WHERE {where}
  ON CONFLICT (account_id) DO UPDATE SET upto = EXCLUDED.upto, total = EXCLUDED.total"""

# every account of an id range, summed from all its entries; the sums that agree become checkpoints
FULL_BALANCES = """
WITH res AS (
  SELECT a.id, a.purpose, a.advertiser_id, a.business_center_id, a.balance,
         COALESCE(SUM(CASE WHEN e.side = a.normal THEN e.amount ELSE -e.amount END), 0) AS computed,
         COALESCE(MAX(e.id), 0) AS upto, COUNT(e.id) AS n
    FROM billing_ledgeraccount a
    LEFT JOIN billing_ledgerentry e ON e.account_id = a.id
   WHERE {accounts}
   GROUP BY a.id, a.purpose, a.advertiser_id, a.business_center_id, a.balance
), saved AS ({upsert})
SELECT id, purpose, advertiser_id, business_center_id, balance, computed, n FROM res
""".format(accounts="{accounts}", upsert=CHECKPOINT_UPSERT.format(where="computed = balance"))

# the changed accounts: their checkpoint plus the entries after it (an index range each)
DELTA_BALANCES = """
WITH cur AS (
  SELECT a.id, a.purpose, a.advertiser_id, a.business_center_id, a.balance, a.normal,
         COALESCE(c.upto, 0) AS upto0, COALESCE(c.total, 0) AS total0
    FROM billing_ledgeraccount a LEFT JOIN billing_ledgercheckpoint c ON c.account_id = a.id
   WHERE a.id = ANY(%s::bigint[])
), d AS (
  SELECT cur.id, SUM(CASE WHEN e.side = cur.normal THEN e.amount ELSE -e.amount END) AS delta,
         MAX(e.id) AS upto, COUNT(*) AS n
    FROM cur JOIN billing_ledgerentry e ON e.account_id = cur.id AND e.id > cur.upto0
   GROUP BY cur.id
), res AS (
  SELECT cur.id, cur.purpose, cur.advertiser_id, cur.business_center_id, cur.balance, cur.upto0,
         cur.total0 + COALESCE(d.delta, 0) AS computed, COALESCE(d.upto, cur.upto0) AS upto, COALESCE(d.n, 0) AS n
    FROM cur LEFT JOIN d ON d.id = cur.id
), saved AS ({upsert})
SELECT id, purpose, advertiser_id, business_center_id, balance, computed, n FROM res
""".format(upsert=CHECKPOINT_UPSERT.format(where="computed = balance AND upto > upto0"))


def _difference(acc_id, purpose, adv_id, bc_id, stored, computed) -> dict:
    return {"kind": "balance", "account_id": acc_id, "purpose": purpose, "advertiser_id": adv_id,
            "business_center_id": bc_id, "stored": str(Decimal(stored)), "from_entries": str(Decimal(computed))}


def _safe_point(started_at) -> int:
    """The last transaction id at or before which every transaction has committed (or never
    will): the newest one created SAFE_AFTER before the run. A money write's transaction commits
    within seconds of its created_at (the slowest, a billing chunk, in under a minute); one
    still open after SAFE_AFTER would be missed by the incremental runs, and is found by the
    full run (`reconcile_ledger_full`, weekly)."""
    last = (LedgerTransaction.objects.filter(created_at__lte=started_at - SAFE_AFTER)
            .order_by("-pk").values_list("pk", flat=True).first())
    return last or 0


def reconcile_ledger(*, at=None, chunk: int = 20000, full: bool = False) -> dict:
    """Check stored balances against entries and every transaction's zero sum (R14).

    Incremental (the hourly job, issue 11): on PostgreSQL, after a first full run, a run reads
    only what changed since the last run's safe point — the accounts moved by the transactions
    after it, each summed from its checkpoint (`LedgerCheckpoint`: its entries summed once, up
    to an id) plus the entries after it, and those transactions' zero sums — so its cost follows
    the traffic since the last run, not the ledger's history. An account whose sum disagrees is
    summed again from all its entries before anything is reported (a late commit below its
    checkpoint heals the checkpoint; a real difference is reported as before). Entries never
    change (sealed), which is what lets a checkpoint stand; `full` (the weekly job, and every run
    on other databases) re-reads everything, re-proves that and lists out-of-range rows."""
    started = at or timezone.now()
    postgres = connection.vendor == "postgresql"
    previous = (ReconciliationRun.objects.filter(finished_at__isnull=False, transactions_upto__isnull=False)
                .order_by("-pk").first())
    incremental = postgres and not full and previous is not None
    run = ReconciliationRun.objects.create(started_at=started, mode="incremental" if incremental else "full")
    outer = connection.in_atomic_block
    if postgres:
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", [RECONCILE_LOCK])
    try:
        safe = _safe_point(started)
        if incremental:
            since = previous.transactions_upto
            differences, accounts, entries = _balances_changed(since, chunk, outer)
            transactions = LedgerTransaction.objects.filter(pk__gt=since).count()
            differences += _unbalanced(since, chunk)
            safe = max(safe, since)
        else:
            differences, accounts, entries = _balances_all(chunk, outer, postgres)
            transactions = LedgerTransaction.objects.count()
            differences += _unbalanced(0, chunk)
            differences += out_of_range_rows()
    finally:
        if postgres:
            with connection.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", [RECONCILE_LOCK])
    for d in differences:
        log.error("ledger reconciliation difference: %s", d)
    run.accounts_checked, run.transactions_checked, run.entries_read = accounts, transactions, entries
    run.transactions_upto = safe
    run.differences = differences
    run.ok = not differences
    run.finished_at = timezone.now()
    run.save()
    return {"accounts": accounts, "transactions": transactions, "differences": len(differences), "mode": run.mode,
            "entries_read": entries}


def reconcile_ledger_full(*, at=None) -> dict:
    """Job: the full reconciliation (weekly), everything from every entry."""
    return reconcile_ledger(at=at, full=True)


def _balances_all(chunk: int, outer: bool, postgres: bool) -> tuple[list, int, int]:
    differences, entries = [], 0
    top = _max_id(LedgerAccount)
    for low in range(0, top, chunk):
        with transaction.atomic():
            _snapshot(outer)
            with connection.cursor() as cur:
                if postgres:
                    cur.execute(FULL_BALANCES.format(accounts="a.id > %s AND a.id <= %s"), [low, low + chunk])
                    for acc_id, purpose, adv_id, bc_id, stored, computed, n in cur.fetchall():
                        entries += n
                        if stored != computed:
                            differences.append(_difference(acc_id, purpose, adv_id, bc_id, stored, computed))
                else:
                    cur.execute(BALANCES, [low, low + chunk])
                    differences += [_difference(*row) for row in cur.fetchall()]
    return differences, LedgerAccount.objects.count(), entries


def _balances_changed(since: int, chunk: int, outer: bool) -> tuple[list, int, int]:
    """The accounts moved by the transactions after `since`, from their checkpoints."""
    with connection.cursor() as cur:
        cur.execute("SELECT DISTINCT account_id FROM billing_ledgerentry WHERE transaction_id > %s", [since])
        changed = sorted(row[0] for row in cur.fetchall())
    differences, entries = [], 0
    for low in range(0, len(changed), chunk):
        ids = changed[low:low + chunk]
        with transaction.atomic():
            _snapshot(outer)
            with connection.cursor() as cur:
                cur.execute(DELTA_BALANCES, [ids])
                rows = cur.fetchall()
                entries += sum(row[6] for row in rows)
                disagree = [row[0] for row in rows if row[4] != row[5]]
                if disagree:  # summed again from every entry, in the same snapshot: heal or report
                    cur.execute(FULL_BALANCES.format(accounts="a.id = ANY(%s::bigint[])"), [disagree])
                    for acc_id, purpose, adv_id, bc_id, stored, computed, n in cur.fetchall():
                        entries += n
                        if stored != computed:
                            differences.append(_difference(acc_id, purpose, adv_id, bc_id, stored, computed))
    return differences, len(changed), entries


def _unbalanced(since: int, chunk: int) -> list:
    differences = []
    top_tx = _max_id(LedgerTransaction)
    for low in range(since, top_tx, chunk):
        with connection.cursor() as cur:
            cur.execute(UNBALANCED, [low, low + chunk])
            for tx_id, currency, total in cur.fetchall():
                differences.append({"kind": "unbalanced", "transaction_id": tx_id, "currency": currency,
                                    "debits_minus_credits": str(Decimal(total))})
    return differences
