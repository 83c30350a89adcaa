"""`reconcile_ledger` (SPEC R14, R33; issue 5 §5) reports what the database was made to accept
behind the ledger's back — in the log at ERROR and on the ReconciliationRun admin page — and fixes
nothing."""

import logging
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.db import DatabaseError, connection, transaction
from django.urls import reverse
from django.utils import timezone

from billing.models import LedgerAccount, LedgerEntry, LedgerTransaction, Purpose, ReconciliationRun
from billing.reconcile import reconcile_ledger
from portal.permissions import SUPPORT_AGENT
from tests.factories import AdvertiserFactory, UserFactory, deposit

pytestmark = pytest.mark.django_db


def raw_one_sided_transaction(account: LedgerAccount, amount: str) -> int:
    """Insert a transaction with a single credit entry — unbalanced — straight into the tables."""
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO billing_ledgertransaction (kind, advertiser_id, amount, currency, occurred_at, created_at, memo)"
            " VALUES ('deposit', %s, %s, %s, %s, %s, 'raw sql') RETURNING id",
            [account.advertiser_id, amount, account.currency, timezone.now(), timezone.now()],
        )
        tx_id = cur.fetchone()[0]
        cur.execute("INSERT INTO billing_ledgerentry (transaction_id, account_id, side, amount) VALUES (%s, %s, 'C', %s)",
                    [tx_id, account.pk, amount])
    return tx_id


@pytest.fixture
def cash():
    adv = AdvertiserFactory()
    deposit(adv, "100.00")
    return LedgerAccount.objects.get(advertiser=adv, purpose=Purpose.CASH)


def test_r14_the_database_refuses_an_unbalanced_transaction(cash):
    # with the triggers on, the zero-sum check (deferred to commit) refuses it once it is checked
    with pytest.raises(DatabaseError, match="(?i)balance|sum"):
        with transaction.atomic():
            raw_one_sided_transaction(cash, "5.00")
            with connection.cursor() as cur:
                cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
    assert not LedgerTransaction.objects.filter(memo="raw sql").exists()


@pytest.fixture
def unbalanced(cash):
    """An unbalanced transaction slipped in with the ledger triggers off (as bench loads data), its
    stored balance moved to match so that only the zero-sum rule is broken."""
    with connection.cursor() as cur:
        cur.execute("SET LOCAL session_replication_role = replica")
        tx_id = raw_one_sided_transaction(cash, "5.00")
        cur.execute("UPDATE billing_ledgeraccount SET balance = balance + 5 WHERE id = %s", [cash.pk])
        cur.execute("SET LOCAL session_replication_role = origin")
    return cash, tx_id


def test_r33_an_unbalanced_transaction_is_reported_and_logged_at_error(unbalanced, caplog):
    cash, tx_id = unbalanced
    with caplog.at_level(logging.ERROR, logger="billing.reconcile"):
        counts = reconcile_ledger()
    # reported: exactly the unbalanced transaction, with its currency and how far off it is
    run = ReconciliationRun.objects.get()
    assert counts["differences"] == 1 and not run.ok
    assert run.differences == [{"kind": "unbalanced", "transaction_id": tx_id, "currency": "USD",
                                "debits_minus_credits": "-5.0000"}]
    # logged: one ERROR line naming the transaction
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "billing.reconcile"]
    assert len(errors) == 1
    assert "ledger reconciliation difference" in errors[0].getMessage()
    assert f"'transaction_id': {tx_id}" in errors[0].getMessage()
    # and never fixed: the entry and the balance are as they were
    assert LedgerEntry.objects.filter(transaction_id=tx_id).count() == 1
    cash.refresh_from_db()
    assert cash.balance == Decimal("105.00")


def test_r33_a_tampered_balance_is_logged_at_error(cash, caplog):
    with connection.cursor() as cur:
        cur.execute("UPDATE billing_ledgeraccount SET balance = balance + 7 WHERE id = %s", [cash.pk])
    with caplog.at_level(logging.ERROR, logger="billing.reconcile"):
        reconcile_ledger()
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert f"'account_id': {cash.pk}" in line and "'stored': '107.0000'" in line and "'from_entries': '100.0000'" in line


def test_a_clean_run_logs_no_error(cash, caplog):
    with caplog.at_level(logging.ERROR, logger="billing.reconcile"):
        assert reconcile_ledger()["differences"] == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_the_reconciliation_admin_page_shows_each_difference(client, unbalanced):
    cash, tx_id = unbalanced
    with connection.cursor() as cur:  # and a second, plain balance tamper on another account
        cur.execute("UPDATE billing_ledgeraccount SET balance = balance + 3 WHERE advertiser_id = %s AND purpose = %s",
                    [cash.advertiser_id, Purpose.SETTLEMENT])
    settlement = LedgerAccount.objects.get(advertiser_id=cash.advertiser_id, purpose=Purpose.SETTLEMENT)
    reconcile_ledger()
    run = ReconciliationRun.objects.get()
    user = UserFactory(is_staff=True)
    user.groups.add(Group.objects.get_or_create(name=SUPPORT_AGENT)[0])
    client.force_login(user)
    # the list says how many differences each run found
    listing = client.get(reverse("admin:billing_reconciliationrun_changelist"))
    assert listing.status_code == 200 and '<td class="field-difference_count">2</td>' in listing.text
    # the run's page lists each one, linked to what is wrong
    page = client.get(reverse("admin:billing_reconciliationrun_change", args=[run.pk]))
    assert page.status_code == 200
    html = page.text
    assert 'class="reconciliation-differences"' in html
    assert reverse("admin:billing_ledgertransaction_change", args=[tx_id]) in html
    assert f"transaction #{tx_id}" in html and "debits − credits = -5.0000 USD" in html
    assert reverse("admin:billing_ledgeraccount_change", args=[settlement.pk]) in html
    assert f"account #{settlement.pk} (settlement, advertiser {cash.advertiser_id})" in html
    assert "stored 103.0000, from entries 100.0000" in html
    # read-only: nothing to save
    assert 'name="_save"' not in html
