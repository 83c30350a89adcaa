"""`reconcile_ledger` (SPEC R14, R33) reports, and never fixes, a tampered balance."""

import pytest
from django.db import connection

from billing.models import LedgerAccount, Purpose, ReconciliationRun
from billing.reconcile import reconcile_ledger
from billing.spend import spend_record
from tests.factories import AdvertiserFactory, CampaignFactory, deposit, grant


@pytest.mark.django_db
def test_clean_ledger_reconciles(spend_event):
    adv = AdvertiserFactory()
    camp = CampaignFactory(advertiser=adv)
    deposit(adv, "100.00")
    grant(adv, "free", "20.00")
    spend_record(event=spend_event(camp, "50.00"))
    counts = reconcile_ledger()
    run = ReconciliationRun.objects.get()
    assert counts["differences"] == 0 and run.ok and run.accounts_checked >= 10


@pytest.mark.django_db
def test_tampered_balance_is_reported_not_fixed(spend_event):
    adv = AdvertiserFactory()
    deposit(adv, "100.00")
    cash = LedgerAccount.objects.get(advertiser=adv, purpose=Purpose.CASH)
    with connection.cursor() as cur:
        cur.execute("UPDATE billing_ledgeraccount SET balance = balance + 7 WHERE id = %s", [cash.pk])
    counts = reconcile_ledger()
    run = ReconciliationRun.objects.get()
    assert counts["differences"] == 1 and not run.ok
    diff = run.differences[0]
    assert (diff["kind"], diff["account_id"], diff["purpose"]) == ("balance", cash.pk, "cash")
    assert (diff["stored"], diff["from_entries"]) == ("107.0000", "100.0000")
    cash.refresh_from_db()
    assert str(cash.balance) == "107.0000"  # reported, never silently fixed


@pytest.mark.django_db
def test_a_reconciliation_that_does_not_finish_is_not_ok(monkeypatch):
    # issue 11: a killed run used to show "ok" with no finished_at
    from billing import reconcile
    from billing.models import ReconciliationRun

    def killed():
        raise RuntimeError("worker killed")

    monkeypatch.setattr(reconcile, "out_of_range_rows", killed)
    with pytest.raises(RuntimeError):
        reconcile.reconcile_ledger()
    run = ReconciliationRun.objects.latest("pk")
    assert (run.ok, run.finished_at, run.outcome) == (False, None, "did not finish")
    assert "did not finish" in str(run)
