"""The database itself guards the ledger (SPEC R11, R14, R15, R23) — raw SQL, bypassing the application.

Migration 0002 installs a deferred constraint trigger (a transaction's entries sum to zero per
currency, checked at commit) and immutability triggers; the models carry CHECK constraints
(balances ≥ 0, entries > 0) and unique constraints (deposit key, spend event_id).
"""

from decimal import Decimal

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from billing.ledger import LedgerError, Posting, advertiser_accounts, ledger_post
from billing.models import Deposit, LedgerAccount, LedgerEntry, LedgerTransaction, Purpose, SpendEvent
from billing.spend import spend_record
from tests.factories import AdvertiserFactory, CampaignFactory, deposit
from tests.reference_model import ledger_problems

D = Decimal


def sql(query, params=()):
    with connection.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall() if cur.description else None


def raw_transaction(adv, memo="raw", currency="USD") -> int:
    return sql(
        "INSERT INTO billing_ledgertransaction (kind, advertiser_id, amount, currency, occurred_at, created_at, memo) "
        "VALUES ('deposit', %s, 10, %s, now(), now(), %s) RETURNING id",
        [adv.pk, currency, memo],
    )[0][0]


def raw_entry(tx_id, account, side, amount):
    sql("INSERT INTO billing_ledgerentry (transaction_id, account_id, side, amount) VALUES (%s, %s, %s, %s)",
        [tx_id, account.pk, side, amount])


def accounts(adv):
    return advertiser_accounts([adv.pk])[adv.pk]


# --- the deferred zero-sum trigger, checked at commit ------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_r14_an_unbalanced_transaction_is_refused_at_commit_and_nothing_remains():
    adv = AdvertiserFactory()
    acc = accounts(adv)
    reached_commit = False
    # when a transaction with a single credit entry is written straight to the database
    with pytest.raises(IntegrityError) as e:
        with transaction.atomic():
            tx_id = raw_transaction(adv, "unbalanced")
            raw_entry(tx_id, acc[Purpose.CASH], "C", "10.00")
            # the check is deferred: inside the transaction the insert went through
            assert sql("SELECT count(*) FROM billing_ledgerentry WHERE transaction_id = %s", [tx_id]) == [(1,)]
            reached_commit = True
    # then the commit is refused, naming the imbalance, and nothing of it remains
    assert reached_commit
    assert "does not balance" in str(e.value)
    assert "-10" in str(e.value)
    assert not LedgerTransaction.objects.filter(memo="unbalanced").exists()
    assert LedgerEntry.objects.count() == 0
    assert ledger_problems() == []


@pytest.mark.django_db(transaction=True)
def test_r14_a_balanced_raw_transaction_commits_the_control_case():
    adv = AdvertiserFactory()
    acc = accounts(adv)
    with transaction.atomic():
        tx_id = raw_transaction(adv, "balanced")
        raw_entry(tx_id, acc[Purpose.SETTLEMENT], "D", "10.00")
        raw_entry(tx_id, acc[Purpose.CASH], "C", "10.00")
    assert LedgerEntry.objects.filter(transaction_id=tx_id).count() == 2


@pytest.mark.django_db(transaction=True)
def test_r14_a_transaction_balanced_overall_but_not_per_currency_is_refused():
    usd, jpy = AdvertiserFactory(currency="USD"), AdvertiserFactory(currency="JPY")
    with pytest.raises(IntegrityError) as e:
        with transaction.atomic():
            tx_id = raw_transaction(usd, "cross-currency")
            raw_entry(tx_id, accounts(usd)[Purpose.SETTLEMENT], "D", "10")
            raw_entry(tx_id, accounts(jpy)[Purpose.CASH], "C", "10")
    assert "does not balance" in str(e.value)
    assert not LedgerTransaction.objects.filter(memo="cross-currency").exists()


@pytest.mark.django_db(transaction=True)
def test_r14_an_extra_entry_that_unbalances_a_transaction_is_refused_with_the_whole_transaction():
    adv = AdvertiserFactory()
    acc = accounts(adv)
    with pytest.raises(IntegrityError):
        with transaction.atomic():
            tx_id = raw_transaction(adv, "three-legs")
            raw_entry(tx_id, acc[Purpose.SETTLEMENT], "D", "10.00")
            raw_entry(tx_id, acc[Purpose.CASH], "C", "10.00")
            raw_entry(tx_id, acc[Purpose.CASH], "C", "0.01")
    assert not LedgerTransaction.objects.filter(memo="three-legs").exists()
    assert LedgerEntry.objects.count() == 0


@pytest.mark.django_db
def test_r14_the_application_refuses_an_unbalanced_posting_before_the_database_sees_it():
    adv = AdvertiserFactory()
    acc = accounts(adv)
    p = Posting(kind="deposit", currency="USD", amount=D("10"), lines=[], advertiser_id=adv.pk)
    p.move(debit=acc[Purpose.SETTLEMENT], credit=acc[Purpose.CASH], amount=D("10"))
    p.lines.pop()
    with pytest.raises(LedgerError, match="unbalanced"):
        ledger_post(p)
    assert LedgerTransaction.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("owner", ["other", "none"])
def test_r39_an_advertisers_account_moves_only_in_that_advertisers_transactions(owner):
    """Statements read what was booked on an account by its advertiser's transactions
    (decision 0025): the writer refuses a posting of another advertiser, or of none, that moves it."""
    adv, other = AdvertiserFactory(), AdvertiserFactory()
    acc = accounts(adv)
    p = Posting(kind="deposit", currency="USD", amount=D("10"), lines=[],
                advertiser_id=other.pk if owner == "other" else None)
    p.move(debit=acc[Purpose.SETTLEMENT], credit=acc[Purpose.CASH], amount=D("10"))
    with pytest.raises(LedgerError, match=f"moves Payments received · adv {adv.pk} "):
        ledger_post(p)
    assert LedgerTransaction.objects.count() == 0
    # the control case: the advertiser's own transaction
    p.advertiser_id = adv.pk
    ledger_post(p)
    assert LedgerAccount.objects.get(pk=acc[Purpose.CASH].pk).balance == D("10")


# --- CHECK constraints -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_r11_an_update_that_makes_a_stored_balance_negative_is_refused():
    adv = AdvertiserFactory()
    deposit(adv, "50.00")
    cash = accounts(adv)[Purpose.CASH]
    with pytest.raises(IntegrityError) as e:
        with transaction.atomic():
            sql("UPDATE billing_ledgeraccount SET balance = balance - 50.01 WHERE id = %s", [cash.pk])
    assert "ledger_account_balance_gte_0" in str(e.value)
    assert LedgerAccount.objects.get(pk=cash.pk).balance == D("50.00")
    # while the same statement down to exactly zero is allowed (the control case)
    with transaction.atomic():
        sql("UPDATE billing_ledgeraccount SET balance = balance - 50.00 WHERE id = %s", [cash.pk])
    assert LedgerAccount.objects.get(pk=cash.pk).balance == D("0")


@pytest.mark.django_db
def test_r11_the_application_refuses_a_posting_that_would_overdraw():
    adv = AdvertiserFactory()
    deposit(adv, "20.00")
    acc = accounts(adv)
    p = Posting(kind="refund", currency="USD", amount=D("20.01"), lines=[], advertiser_id=adv.pk)
    p.move(debit=acc[Purpose.CASH], credit=acc[Purpose.SETTLEMENT], amount=D("20.01"))
    before = LedgerTransaction.objects.count()
    with pytest.raises(LedgerError, match="negative"):
        ledger_post(p)
    assert LedgerTransaction.objects.count() == before
    assert LedgerAccount.objects.get(pk=acc[Purpose.CASH].pk).balance == D("20.00")


@pytest.mark.django_db
@pytest.mark.parametrize("amount", ["0", "-1.00"])
def test_r14_an_entry_with_a_zero_or_negative_amount_is_refused(amount):
    adv = AdvertiserFactory()
    tx_id = raw_transaction(adv)
    with pytest.raises(IntegrityError) as e:
        with transaction.atomic():
            raw_entry(tx_id, accounts(adv)[Purpose.CASH], "C", amount)
    assert "ledger_entry_amount_gt_0" in str(e.value)


@pytest.mark.django_db
def test_r14_an_entry_with_an_unknown_side_is_refused():
    adv = AdvertiserFactory()
    tx_id = raw_transaction(adv)
    with pytest.raises(IntegrityError) as e:
        with transaction.atomic():
            raw_entry(tx_id, accounts(adv)[Purpose.CASH], "X", "1.00")
    assert "ledger_entry_side" in str(e.value)


# --- immutability ----------------------------------------------------------------------------------


@pytest.fixture
def booked(db, spend_event):
    adv = AdvertiserFactory()
    deposit(adv, "100.00")
    spend_record(event=spend_event(CampaignFactory(advertiser=adv), "10.00"))
    return adv


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE billing_ledgerentry SET amount = amount + 1 WHERE id = (SELECT max(id) FROM billing_ledgerentry)",
        "UPDATE billing_ledgerentry SET side = 'D'",
        "DELETE FROM billing_ledgerentry WHERE id = (SELECT min(id) FROM billing_ledgerentry)",
        "UPDATE billing_ledgertransaction SET amount = 0.01",
        "UPDATE billing_ledgertransaction SET memo = 'edited'",
        "DELETE FROM billing_ledgertransaction WHERE id = (SELECT max(id) FROM billing_ledgertransaction)",
    ],
    ids=["entry-amount", "entry-side", "entry-delete", "tx-amount", "tx-memo", "tx-delete"],
)
def test_r14_ledger_rows_are_immutable(booked, statement):
    entries = sorted(LedgerEntry.objects.values_list("id", "transaction_id", "account_id", "side", "amount"))
    txs = sorted(LedgerTransaction.objects.values_list("id", "kind", "amount", "memo"))
    with pytest.raises(DatabaseError) as e:
        with transaction.atomic():
            sql(statement)
    assert "ledger rows are immutable" in str(e.value)
    assert sorted(LedgerEntry.objects.values_list("id", "transaction_id", "account_id", "side", "amount")) == entries
    assert sorted(LedgerTransaction.objects.values_list("id", "kind", "amount", "memo")) == txs


# --- unique constraints behind idempotency ----------------------------------------------------------


@pytest.mark.django_db
def test_r23_a_duplicate_deposit_key_is_refused_by_the_database():
    adv = AdvertiserFactory()
    deposit(adv, "50.00", key="same")
    tx_id = raw_transaction(adv)
    with pytest.raises(IntegrityError) as e:
        with transaction.atomic():
            sql("INSERT INTO billing_deposit (advertiser_id, amount, idempotency_key, source, card_last4, transaction_id,"
                " created_at) VALUES (%s, 50, 'same', 'api', '', %s, now())", [adv.pk, tx_id])
    assert "deposit_idempotency_key_unique" in str(e.value)
    assert Deposit.objects.count() == 1


@pytest.mark.django_db
def test_r15_a_duplicate_spend_event_id_is_refused_by_the_database(spend_event):
    adv = AdvertiserFactory()
    camp = CampaignFactory(advertiser=adv)
    spend_record(event=spend_event(camp, "5.00", event_id="evt-unique"))
    tx_id = raw_transaction(adv)
    with pytest.raises(IntegrityError) as e:
        with transaction.atomic():
            sql("INSERT INTO billing_spendevent (event_id, advertiser_id, campaign_id, amount, currency, occurred_at,"
                " kind, transaction_id, created_at) VALUES ('evt-unique', %s, %s, 5, 'USD', now(), 'ad_spend', %s, now())",
                [adv.pk, camp.pk, tx_id])
    assert "event_id" in str(e.value)
    assert SpendEvent.objects.count() == 1


@pytest.mark.django_db
def test_r15_a_spend_event_of_zero_is_refused_by_the_database():
    adv = AdvertiserFactory()
    camp = CampaignFactory(advertiser=adv)
    tx_id = raw_transaction(adv)
    with pytest.raises(IntegrityError) as e:
        with transaction.atomic():
            sql("INSERT INTO billing_spendevent (event_id, advertiser_id, campaign_id, amount, currency, occurred_at,"
                " kind, transaction_id, created_at) VALUES ('evt-zero', %s, %s, 0, 'USD', now(), 'ad_spend', %s, now())",
                [adv.pk, camp.pk, tx_id])
    assert "spend_amount_gt_0" in str(e.value)


@pytest.mark.django_db(transaction=True)
def test_r14_a_committed_transaction_is_sealed_against_later_entries():
    # given a deposit booked and committed
    adv = AdvertiserFactory()
    booked = deposit(adv, "50.00")
    acc = accounts(adv)
    before = LedgerEntry.objects.filter(transaction=booked.transaction).count()
    # when raw SQL later slips a balanced pair into that old transaction
    with pytest.raises(DatabaseError) as e:
        with transaction.atomic():
            raw_entry(booked.transaction_id, acc[Purpose.SETTLEMENT], "D", "5.00")
            raw_entry(booked.transaction_id, acc[Purpose.CASH], "C", "5.00")
    # then the database refuses it and the transaction keeps its entries
    assert "is sealed" in str(e.value)
    assert LedgerEntry.objects.filter(transaction=booked.transaction).count() == before
    assert ledger_problems() == []
