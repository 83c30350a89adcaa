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


def reconcile_ledger(*, at=None, chunk: int = 20000) -> dict:
    run = ReconciliationRun.objects.create(started_at=at or timezone.now())
    differences = []
    top = _max_id(LedgerAccount)
    outer = connection.in_atomic_block
    for low in range(0, top, chunk):
        with transaction.atomic():
            _snapshot(outer)
            with connection.cursor() as cur:
                cur.execute(BALANCES, [low, low + chunk])
                for acc_id, purpose, adv_id, bc_id, stored, computed in cur.fetchall():
                    differences.append({
                        "kind": "balance", "account_id": acc_id, "purpose": purpose, "advertiser_id": adv_id,
                        "business_center_id": bc_id, "stored": str(Decimal(stored)), "from_entries": str(Decimal(computed)),
                    })
    top_tx = _max_id(LedgerTransaction)
    for low in range(0, top_tx, chunk):
        with connection.cursor() as cur:
            cur.execute(UNBALANCED, [low, low + chunk])
            for tx_id, currency, total in cur.fetchall():
                differences.append({"kind": "unbalanced", "transaction_id": tx_id, "currency": currency,
                                    "debits_minus_credits": str(Decimal(total))})
    differences += out_of_range_rows()
    for d in differences:
        log.error("ledger reconciliation difference: %s", d)
    run.accounts_checked = LedgerAccount.objects.count()
    run.transactions_checked = LedgerTransaction.objects.count()
    run.differences = differences
    run.ok = not differences
    run.finished_at = timezone.now()
    run.save()
    return {"accounts": run.accounts_checked, "transactions": run.transactions_checked, "differences": len(differences)}
