"""Incremental reconciliation (issue 11; SPEC R14, R33): after a full run, a run reads only the
accounts and transactions that changed since the last run's safe point, from per-account
checkpoints — its cost follows the change, not the history — and still reports every difference
the full run would for what changed. The weekly full run re-reads everything.
"""

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.utils import timezone

from billing.models import LedgerAccount, LedgerCheckpoint, LedgerEntry, LedgerTransaction, Purpose, ReconciliationRun
from billing.reconcile import reconcile_ledger, reconcile_ledger_full
from billing.spend import spend_record
from tests.factories import AdvertiserFactory, CampaignFactory, deposit

D = Decimal
_n = iter(range(10**9))
HOUR = timedelta(hours=1)


def charge(camp, amount="1.00"):
    spend_record(event={"event_id": f"rec-{next(_n)}", "advertiser_id": camp.advertiser_id, "campaign_id": camp.pk,
                        "amount": amount, "currency": "USD",
                        "occurred_at": (timezone.now() - timedelta(minutes=1)).isoformat()})


def accounts_with_history(n_accounts: int, charges_each: int):
    camps = []
    for _ in range(n_accounts):
        adv = AdvertiserFactory()
        deposit(adv, "1000.00", key=f"rec-dep-{adv.pk}")
        camp = CampaignFactory(advertiser=adv)
        for _ in range(charges_each):
            charge(camp)
        camps.append(camp)
    return camps


def raw(sql, params=()):
    """Write what no door can (a crash, a bug, a hand edit), past the ledger's guards."""
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL session_replication_role = replica")
        cur.execute(sql, params)


@pytest.mark.django_db
def test_the_first_run_is_full_and_the_next_reads_only_what_changed_since_its_safe_point():
    camps = accounts_with_history(3, 4)
    now = timezone.now()
    first = reconcile_ledger(at=now + HOUR)  # every transaction so far is before its safe point
    assert (first["mode"], first["differences"]) == ("full", 0)
    cash = LedgerAccount.objects.get(advertiser=camps[0].advertiser, purpose=Purpose.CASH)
    assert LedgerCheckpoint.objects.get(account=cash).total == cash.balance == D("996.00")
    # when one account is charged twice more
    before = LedgerEntry.objects.count()
    charge(camps[0])
    charge(camps[0])
    second = reconcile_ledger(at=now + 2 * HOUR)
    # then the run reads those entries only (two charges of one account: 2 entries each)
    assert (second["mode"], second["differences"]) == ("incremental", 0)
    assert second["entries_read"] == LedgerEntry.objects.count() - before == 4
    assert second["transactions"] == 2 and second["accounts"] == 2  # cash and revenue of that account
    cash.refresh_from_db()
    assert LedgerCheckpoint.objects.get(account=cash).total == cash.balance == D("994.00")
    assert ReconciliationRun.objects.filter(ok=True).count() == 2


@pytest.mark.django_db
def test_its_cost_follows_the_change_not_the_history():
    def entries_read(history: int) -> int:
        camps = accounts_with_history(2, history)
        reconcile_ledger(at=timezone.now() + HOUR)
        for camp in camps:
            charge(camp)
        return reconcile_ledger(at=timezone.now() + 2 * HOUR)["entries_read"]

    short = entries_read(2)
    long = entries_read(20)
    assert short == long == 4


@pytest.mark.django_db
def test_a_stored_balance_changed_without_entries_is_reported_by_the_incremental_run():
    camps = accounts_with_history(2, 2)
    now = timezone.now()
    reconcile_ledger(at=now + HOUR)
    charge(camps[1])
    cash = LedgerAccount.objects.get(advertiser=camps[1].advertiser, purpose=Purpose.CASH)
    raw("UPDATE billing_ledgeraccount SET balance = balance + 5 WHERE id = %s", [cash.pk])
    out = reconcile_ledger(at=now + 2 * HOUR)
    run = ReconciliationRun.objects.latest("pk")
    assert (out["mode"], run.ok) == ("incremental", False)
    assert run.differences == [{"kind": "balance", "account_id": cash.pk, "purpose": "cash",
                                "advertiser_id": camps[1].advertiser_id, "business_center_id": None,
                                "stored": "1002.0000", "from_entries": "997.0000"}]


@pytest.mark.django_db
def test_an_entry_committed_late_below_a_checkpoint_heals_the_checkpoint_and_is_no_difference():
    # a transaction that took its entry ids before a run and committed after it
    camps = accounts_with_history(1, 3)
    now = timezone.now()
    reconcile_ledger(at=now + HOUR)
    cash = LedgerAccount.objects.get(advertiser=camps[0].advertiser, purpose=Purpose.CASH)
    revenue = LedgerAccount.objects.get(advertiser=camps[0].advertiser, purpose=Purpose.REVENUE)
    low = LedgerEntry.objects.filter(account=cash).order_by("pk").first().pk  # below the checkpoint
    tx = LedgerTransaction.objects.filter(advertiser=camps[0].advertiser).latest("pk")
    raw("""INSERT INTO billing_ledgertransaction (kind, currency, amount, advertiser_id, memo, created_at, occurred_at)
           SELECT kind, currency, 2, advertiser_id, 'late', now(), occurred_at FROM billing_ledgertransaction
            WHERE id = %s""", [tx.pk])
    late = LedgerTransaction.objects.latest("pk")
    free = [i for i in range(1, low) if not LedgerEntry.objects.filter(pk=i).exists()][:2]
    if len(free) < 2:  # the ids below the first entry are taken: make room below the checkpoint
        free = [-2, -1]
    raw("INSERT INTO billing_ledgerentry (id, transaction_id, account_id, side, amount) VALUES "
        "(%s, %s, %s, 'D', 2), (%s, %s, %s, 'C', 2)", [free[0], late.pk, cash.pk, free[1], late.pk, revenue.pk])
    raw("UPDATE billing_ledgeraccount SET balance = balance - 2 WHERE id = %s", [cash.pk])
    raw("UPDATE billing_ledgeraccount SET balance = balance + 2 WHERE id = %s", [revenue.pk])
    out = reconcile_ledger(at=now + 2 * HOUR)
    assert (out["mode"], out["differences"]) == ("incremental", 0)
    cash.refresh_from_db()
    assert LedgerCheckpoint.objects.get(account=cash).total == cash.balance == D("995.00")


@pytest.mark.django_db
def test_an_unbalanced_transaction_after_the_safe_point_is_reported_incrementally():
    camps = accounts_with_history(1, 1)
    now = timezone.now()
    reconcile_ledger(at=now + HOUR)
    charge(camps[0])
    entry = LedgerEntry.objects.filter(side="C").latest("pk")
    raw("UPDATE billing_ledgerentry SET amount = amount + 1 WHERE id = %s", [entry.pk])
    raw("UPDATE billing_ledgeraccount SET balance = balance + 1 WHERE id = %s", [entry.account_id])
    out = reconcile_ledger(at=now + 2 * HOUR)
    run = ReconciliationRun.objects.latest("pk")
    assert out["mode"] == "incremental"
    assert [d["kind"] for d in run.differences] == ["unbalanced"]
    assert run.differences[0]["transaction_id"] == entry.transaction_id


@pytest.mark.django_db
def test_the_full_run_rereads_every_entry_and_finds_what_the_incremental_cannot():
    # entries are sealed: an incremental run trusts a checkpoint; a hand edit of an old entry
    # (and its balance) is outside what changed, and the weekly full run finds it
    camps = accounts_with_history(2, 2)
    now = timezone.now()
    reconcile_ledger(at=now + HOUR)
    old = LedgerEntry.objects.filter(account__advertiser=camps[0].advertiser, side="C").order_by("pk").first()
    raw("UPDATE billing_ledgerentry SET amount = amount + 3 WHERE id = %s", [old.pk])
    assert reconcile_ledger(at=now + 2 * HOUR)["differences"] == 0  # nothing changed since the safe point
    full = reconcile_ledger_full(at=now + 3 * HOUR)
    run = ReconciliationRun.objects.latest("pk")
    assert (full["mode"], run.mode) == ("full", "full")
    assert {d["kind"] for d in run.differences} == {"balance", "unbalanced"}


@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_take_turns_and_both_finish_clean():
    camps = accounts_with_history(3, 2)
    reconcile_ledger(at=timezone.now() + HOUR)
    for camp in camps:
        charge(camp)
    errors, results = [], []
    barrier = threading.Barrier(2)

    def run():
        try:
            barrier.wait(10)
            results.append(reconcile_ledger(at=timezone.now() + 2 * HOUR))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert [r["differences"] for r in results] == [0, 0]
    assert ReconciliationRun.objects.filter(ok=True, finished_at__isnull=False).count() == 3
