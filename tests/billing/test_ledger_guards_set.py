"""The ledger's guards checked once per INSERT statement (migration 0011, decision 0003) refuse what
the per-entry triggers refused — raw SQL, bypassing the application.

The zero-sum check sums every transaction a statement touched; one left unbalanced is checked
again at commit (deferred constraint trigger `ledger_entry_balanced`). These cases are the ones a
once-per-transaction check could get wrong: entries added after the check already ran
(`SET CONSTRAINTS ALL IMMEDIATE`), savepoints, several transactions in one statement.
"""

from datetime import timedelta

import pytest
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from billing.models import LedgerEntry, LedgerTransaction, Purpose
from promotions.expiry import expire_credits
from tests.billing.test_ledger_guards import accounts, raw_entry, raw_transaction, sql
from tests.factories import AdvertiserFactory, deposit, grant
from tests.reference_model import ledger_problems

pytestmark = pytest.mark.django_db(transaction=True)


def pending():
    return sql("SELECT count(*) FROM billing_ledger_pending_check")[0][0]


def raw_entries(rows):
    """One INSERT statement of several entries: (transaction id, account, side, amount)."""
    values = ", ".join(["(%s, %s, %s, %s)"] * len(rows))
    sql(f"INSERT INTO billing_ledgerentry (transaction_id, account_id, side, amount) VALUES {values}",
        [x for tx, acc, side, amount in rows for x in (tx, acc.pk, side, amount)])


def test_an_entry_added_after_set_constraints_immediate_is_still_checked():
    # given a raw transaction that balances and has been checked (SET CONSTRAINTS ALL IMMEDIATE)
    adv = AdvertiserFactory()
    acc = accounts(adv)
    with pytest.raises(IntegrityError) as e:
        with transaction.atomic():
            tx_id = raw_transaction(adv, "late-entry")
            raw_entry(tx_id, acc[Purpose.SETTLEMENT], "D", "10.00")
            raw_entry(tx_id, acc[Purpose.CASH], "C", "10.00")
            sql("SET CONSTRAINTS ALL IMMEDIATE")
            # when a third entry unbalances it afterwards
            raw_entry(tx_id, acc[Purpose.CASH], "C", "0.01")
    # then it is refused, and nothing of the transaction remains
    assert "does not balance" in str(e.value)
    assert not LedgerTransaction.objects.filter(memo="late-entry").exists()
    assert LedgerEntry.objects.count() == 0


def test_an_entry_added_after_the_check_ran_and_checks_were_deferred_again_is_refused_at_commit():
    adv = AdvertiserFactory()
    acc = accounts(adv)
    reached_commit = False
    with pytest.raises(IntegrityError) as e:
        with transaction.atomic():
            tx_id = raw_transaction(adv, "late-deferred")
            raw_entries([(tx_id, acc[Purpose.SETTLEMENT], "D", "10.00"), (tx_id, acc[Purpose.CASH], "C", "10.00")])
            sql("SET CONSTRAINTS ALL IMMEDIATE")
            sql("SET CONSTRAINTS ALL DEFERRED")
            raw_entry(tx_id, acc[Purpose.CASH], "C", "5.00")
            reached_commit = True
    assert reached_commit
    assert "does not balance" in str(e.value) and "-5" in str(e.value)
    assert not LedgerTransaction.objects.filter(memo="late-deferred").exists()


def test_in_immediate_mode_a_balanced_statement_commits_and_a_one_sided_one_is_refused_at_once():
    adv = AdvertiserFactory()
    acc = accounts(adv)
    with transaction.atomic():
        sql("SET CONSTRAINTS ALL IMMEDIATE")
        tx_id = raw_transaction(adv, "immediate")
        raw_entries([(tx_id, acc[Purpose.SETTLEMENT], "D", "10.00"), (tx_id, acc[Purpose.CASH], "C", "10.00")])
    assert LedgerEntry.objects.filter(transaction_id=tx_id).count() == 2
    reached = False
    with pytest.raises(IntegrityError) as e:
        with transaction.atomic():
            sql("SET CONSTRAINTS ALL IMMEDIATE")
            tx_id = raw_transaction(adv, "immediate-one-sided")
            raw_entry(tx_id, acc[Purpose.CASH], "C", "10.00")
            reached = True
    assert not reached  # refused by the statement itself, not at commit
    assert "does not balance" in str(e.value)
    assert not LedgerTransaction.objects.filter(memo="immediate-one-sided").exists()


def test_one_unbalanced_transaction_among_several_in_one_statement_refuses_the_commit():
    adv = AdvertiserFactory()
    acc = accounts(adv)
    with pytest.raises(IntegrityError) as e:
        with transaction.atomic():
            good, bad = raw_transaction(adv, "many"), raw_transaction(adv, "many")
            raw_entries([(good, acc[Purpose.SETTLEMENT], "D", "3.00"), (good, acc[Purpose.CASH], "C", "3.00"),
                         (bad, acc[Purpose.SETTLEMENT], "D", "4.00"), (bad, acc[Purpose.CASH], "C", "3.99")])
    assert f"ledger transaction {bad} does not balance" in str(e.value)
    assert not LedgerTransaction.objects.filter(memo="many").exists()


def test_a_balancing_entry_rolled_back_with_its_savepoint_leaves_the_transaction_refused():
    adv = AdvertiserFactory()
    acc = accounts(adv)
    with pytest.raises(IntegrityError):
        with transaction.atomic():
            tx_id = raw_transaction(adv, "savepoint")
            raw_entry(tx_id, acc[Purpose.SETTLEMENT], "D", "10.00")
            try:
                with transaction.atomic():
                    raw_entry(tx_id, acc[Purpose.CASH], "C", "10.00")
                    raise RuntimeError("roll back the savepoint")
            except RuntimeError:
                pass
    assert not LedgerTransaction.objects.filter(memo="savepoint").exists()


def test_an_unbalanced_entry_rolled_back_with_its_savepoint_does_not_refuse_the_commit():
    adv = AdvertiserFactory()
    acc = accounts(adv)
    with transaction.atomic():
        tx_id = raw_transaction(adv, "savepoint-ok")
        try:
            with transaction.atomic():
                raw_entry(tx_id, acc[Purpose.CASH], "C", "1.00")
                raise RuntimeError("roll back the savepoint")
        except RuntimeError:
            pass
        raw_entries([(tx_id, acc[Purpose.SETTLEMENT], "D", "10.00"), (tx_id, acc[Purpose.CASH], "C", "10.00")])
    assert LedgerEntry.objects.filter(transaction_id=tx_id).count() == 2
    assert pending() == 0


def test_one_sealed_transaction_in_a_statement_refuses_the_whole_statement():
    # given a committed deposit
    adv = AdvertiserFactory()
    old = deposit(adv, "50.00").transaction_id
    acc = accounts(adv)
    before = LedgerEntry.objects.count()
    # when one INSERT adds a balanced new transaction and a balanced pair to the old one
    with pytest.raises(DatabaseError) as e:
        with transaction.atomic():
            new = raw_transaction(adv, "with-sealed")
            raw_entries([(new, acc[Purpose.SETTLEMENT], "D", "5.00"), (new, acc[Purpose.CASH], "C", "5.00"),
                         (old, acc[Purpose.SETTLEMENT], "D", "5.00"), (old, acc[Purpose.CASH], "C", "5.00")])
    # then the statement is refused, naming the sealed one, and nothing is added
    assert f"ledger transaction {old} is sealed" in str(e.value)
    assert LedgerEntry.objects.count() == before
    assert not LedgerTransaction.objects.filter(memo="with-sealed").exists()


def test_an_entry_for_a_transaction_that_does_not_exist_is_refused_as_sealed():
    adv = AdvertiserFactory()
    with pytest.raises(DatabaseError) as e:
        with transaction.atomic():
            raw_entry(10**9, accounts(adv)[Purpose.CASH], "C", "1.00")
    assert "is sealed" in str(e.value)


def test_the_services_leave_nothing_to_check_at_commit_and_the_ledger_balanced():
    # given a deposit, a credit and its expiry — ledger_post_many and ledger_post_moves
    adv = AdvertiserFactory()
    deposit(adv, "40.00")
    expires = timezone.now() - timedelta(days=1)
    grant(adv, "free", "12.00", valid_from=expires - timedelta(days=3), expires_at=expires)
    assert expire_credits()["forfeited_entries"] == 1
    # then nothing was left pending (every transaction's entries came in one statement)
    assert pending() == 0
    assert ledger_problems() == []


def test_a_raw_transaction_balanced_over_two_statements_commits_and_leaves_nothing_pending():
    adv = AdvertiserFactory()
    acc = accounts(adv)
    with transaction.atomic():
        tx_id = raw_transaction(adv, "two-statements")
        raw_entry(tx_id, acc[Purpose.SETTLEMENT], "D", "10.00")
        assert pending() == 1  # unbalanced so far: to be checked again at commit
        raw_entry(tx_id, acc[Purpose.CASH], "C", "10.00")
    assert pending() == 0
    assert LedgerEntry.objects.filter(transaction_id=tx_id).count() == 2
