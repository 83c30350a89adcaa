"""Manual payment (SPEC R13, R23): deposit limits and idempotency, refunds of unspent cash."""

from datetime import timedelta
from decimal import Decimal

import pytest

from billing.deposits import cash_refund, deposit_create
from billing.models import Deposit, LedgerEntry, LedgerTransaction, Purpose
from billing.selectors import advertiser_balances
from billing.spend import spend_record
from portal.errors import BadInput, BusinessError, Conflict
from portal.models import Advertiser, Campaign
from promotions.models import Credit
from tests.factories import AdvertiserFactory, CampaignFactory, deposit, grant
from tests.reference_model import ledger_problems, purpose_balance

pytestmark = pytest.mark.django_db
D = Decimal


def rows():
    return LedgerTransaction.objects.count(), LedgerEntry.objects.count(), Deposit.objects.count()


# --- limits ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "low", "high", "below", "above"),
    [
        ("USD", "20.00", "50000.00", "19.99", "50000.01"),
        ("JPY", "2000", "5000000", "1999", "5000001"),
        ("KWD", "6.000", "15000.000", "5.999", "15000.001"),
        ("CAD", "20.00", "50000.00", "19.99", "50000.01"),  # not listed: the default limits
    ],
)
def test_r23_deposit_limits_per_currency_are_inclusive(currency, low, high, below, above):
    adv = AdvertiserFactory(currency=currency)
    for n, amount in enumerate((below, above)):
        with pytest.raises(BusinessError) as e:
            deposit_create(advertiser=adv, amount=amount, idempotency_key=f"out-{n}")
        assert e.value.code == "deposit_out_of_range"
    assert rows() == (0, 0, 0)
    deposit_create(advertiser=adv, amount=low, idempotency_key="low")
    deposit_create(advertiser=adv, amount=high, idempotency_key="high")
    assert advertiser_balances(advertiser=adv).cash_balance == D(low) + D(high)


def test_r23_limits_come_from_settings(settings):
    settings.DEPOSIT_LIMITS = {**settings.DEPOSIT_LIMITS, "USD": ("100", "200")}
    adv = AdvertiserFactory()
    with pytest.raises(BusinessError) as e:
        deposit_create(advertiser=adv, amount="99.99", idempotency_key="a")
    assert e.value.code == "deposit_out_of_range"
    assert "100.00" in e.value.message and "200.00" in e.value.message
    assert deposit_create(advertiser=adv, amount="150.00", idempotency_key="b").amount == D("150.00")


# --- idempotency -----------------------------------------------------------------------------------


def test_r23_same_key_same_amount_is_the_same_deposit_booked_once():
    adv = AdvertiserFactory()
    first = deposit_create(advertiser=adv, amount="100.00", idempotency_key="top-up-1")
    after_first = rows()
    again = deposit_create(advertiser=adv, amount="100", idempotency_key="top-up-1")
    assert again.pk == first.pk
    assert rows() == after_first == (1, 2, 1)
    assert advertiser_balances(advertiser=adv).cash_balance == D("100.00")


def test_r23_same_key_other_amount_is_a_conflict_and_records_nothing():
    adv = AdvertiserFactory()
    deposit_create(advertiser=adv, amount="100.00", idempotency_key="top-up-1")
    before = rows()
    with pytest.raises(Conflict) as e:
        deposit_create(advertiser=adv, amount="100.01", idempotency_key="top-up-1")
    assert (e.value.code, e.value.status) == ("idempotency_key_reused", 409)
    assert "100.00" in e.value.message
    assert rows() == before
    assert advertiser_balances(advertiser=adv).cash_balance == D("100.00")


def test_r23_keys_are_per_advertiser():
    a1, a2 = AdvertiserFactory(), AdvertiserFactory()
    d1 = deposit_create(advertiser=a1, amount="50.00", idempotency_key="k")
    d2 = deposit_create(advertiser=a2, amount="70.00", idempotency_key="k")
    assert d1.pk != d2.pk
    assert (advertiser_balances(advertiser=a1).cash_balance, advertiser_balances(advertiser=a2).cash_balance) == (
        D("50.00"), D("70.00"))


@pytest.mark.parametrize("key", ["", "   ", None, 7, "k" * 101])
def test_r23_a_deposit_needs_an_idempotency_key(key):
    with pytest.raises(BadInput) as e:
        deposit_create(advertiser=AdvertiserFactory(), amount="50.00", idempotency_key=key)
    assert e.value.code == "invalid_idempotency_key"
    assert rows() == (0, 0, 0)


# --- who may deposit -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["automatic", "monthly_invoice"])
def test_r23_deposits_are_refused_for_accounts_not_on_manual_payment(method):
    adv = AdvertiserFactory(billing_method=method)
    with pytest.raises(BusinessError) as e:
        deposit_create(advertiser=adv, amount="50.00", idempotency_key="k")
    assert e.value.code == "deposit_not_allowed"
    assert rows() == (0, 0, 0)


def test_r23_a_closed_account_takes_no_deposit():
    adv = AdvertiserFactory()
    Advertiser.objects.filter(pk=adv.pk).update(status="closed")
    with pytest.raises(BusinessError) as e:
        deposit_create(advertiser=adv, amount="50.00", idempotency_key="k")
    assert e.value.code == "account_closed"
    assert rows() == (0, 0, 0)


def test_r23_a_deposit_is_booked_settlement_to_cash():
    adv = AdvertiserFactory()
    dep = deposit_create(advertiser=adv, amount="42.50", idempotency_key="k")
    entries = sorted((e.account.purpose, e.side, e.amount) for e in dep.transaction.entries.select_related("account"))
    assert entries == [("cash", "C", D("42.50")), ("settlement", "D", D("42.50"))]
    assert (dep.transaction.kind, dep.transaction.amount) == ("deposit", D("42.50"))


# --- refunds ---------------------------------------------------------------------------------------


def test_r23_refund_returns_all_cash_closes_the_account_and_forfeits_credits_on_the_ledger(spend_event):
    # given cash, a half-used free credit, a discount, a pending credit and a used-up credit
    adv = AdvertiserFactory()
    camp = CampaignFactory(advertiser=adv)
    deposit(adv, "200.00")
    free = grant(adv, "free", "30.00")
    disc = grant(adv, "discount", "40.00", percent="10")
    pending = grant(adv, "assignable", "25.00", status="pending")
    spend_record(event=spend_event(camp, "20.00"))  # discount 2, free 18
    used_up = grant(adv, "free", "5.00", expires_at=free.expires_at - timedelta(days=1))
    spend_record(event=spend_event(camp, "10.00"))  # discount 1, used_up 5, free 4
    assert Credit.objects.get(pk=used_up.pk).status == "used_up"
    # when the advertiser asks for a refund
    refunded = cash_refund(advertiser=adv)
    # then the whole cash balance comes back, and only the cash
    assert refunded == D("200.00")
    adv.refresh_from_db()
    bal = advertiser_balances(advertiser=adv)
    assert (bal.cash_balance, bal.credit_balance, bal.discount_cap_remaining) == (D("0"), D("0"), D("0"))
    # and the account is closed with its campaigns paused
    assert adv.status == "closed"
    assert list(Campaign.objects.filter(advertiser=adv).values_list("status", flat=True)) == ["paused"]
    # and every live credit is forfeited on the ledger (never refunded, R8)
    statuses = {c.pk: (c.status, c.remaining) for c in Credit.objects.filter(advertiser=adv).select_related("ledger_account")}
    assert statuses == {free.pk: ("expired", D("0")), disc.pk: ("expired", D("0")), pending.pk: ("expired", D("0")),
                        used_up.pk: ("used_up", D("0"))}
    assert purpose_balance(adv.pk, Purpose.FORFEITURE) == D("8.00") + D("37.00") + D("25.00")
    kinds = sorted(LedgerTransaction.objects.filter(advertiser=adv, kind__in=["refund", "credit_forfeit"])
                   .values_list("kind", "amount"))
    assert kinds == [("credit_forfeit", D("8")), ("credit_forfeit", D("25")), ("credit_forfeit", D("37")),
                     ("refund", D("200"))]
    assert purpose_balance(adv.pk, Purpose.SETTLEMENT) == D("0")
    assert ledger_problems() == []
    # and nothing more can be refunded or deposited
    with pytest.raises(BusinessError) as e:
        cash_refund(advertiser=adv)
    assert e.value.code == "not_in_good_standing"
    with pytest.raises(BusinessError) as e:
        deposit_create(advertiser=adv, amount="50.00", idempotency_key="after")
    assert e.value.code == "account_closed"


def test_r23_no_refund_while_in_arrears(spend_event):
    adv = AdvertiserFactory()
    camp = CampaignFactory(advertiser=adv)
    deposit(adv, "20.00")
    spend_record(event=spend_event(camp, "25.00"))
    before = rows()
    with pytest.raises(BusinessError) as e:
        cash_refund(advertiser=adv)
    assert e.value.code == "not_in_good_standing"
    assert rows() == before
    adv.refresh_from_db()
    assert adv.status == "active"


def test_r23_no_refund_for_a_suspended_account():
    adv = AdvertiserFactory()
    deposit(adv, "50.00")
    Advertiser.objects.filter(pk=adv.pk).update(status="suspended")
    before = rows()
    with pytest.raises(BusinessError) as e:
        cash_refund(advertiser=adv)
    assert e.value.code == "not_in_good_standing"
    assert rows() == before
    assert advertiser_balances(advertiser=adv).cash_balance == D("50.00")


def test_r23_no_refund_without_cash_and_the_account_stays_open():
    adv = AdvertiserFactory()
    grant(adv, "free", "30.00")
    with pytest.raises(BusinessError) as e:
        cash_refund(advertiser=adv)
    assert e.value.code == "nothing_to_refund"
    adv.refresh_from_db()
    assert adv.status == "active"
    assert Credit.objects.get(advertiser=adv).status == "active"


@pytest.mark.parametrize("method", ["automatic", "monthly_invoice"])
def test_r23_an_account_that_never_prepaid_has_nothing_to_refund(method):
    adv = AdvertiserFactory(billing_method=method)
    with pytest.raises(BusinessError) as e:
        cash_refund(advertiser=adv)
    assert e.value.code == "nothing_to_refund"


def test_r23_r28_cash_left_after_switching_is_refundable_once_nothing_is_owed(spend_event):
    from billing.autopay import payment_method_set
    from billing.spend import spend_record
    from billing.switching import billing_method_switch

    adv = AdvertiserFactory()
    deposit(adv, "100.00")
    payment_method_set(advertiser=adv, card_number="4242424242424242", expiry="12/30")
    billing_method_switch(advertiser=adv, billing_method="automatic")
    camp = CampaignFactory(advertiser=adv)
    spend_record(event=spend_event(camp, "30.00"))  # paid from the cash left over
    assert cash_refund(advertiser=adv) == Decimal("70.00")
    adv.refresh_from_db()
    assert adv.status == "closed"


def test_r23_no_refund_while_a_bill_is_accruing(spend_event):
    from billing.autopay import payment_method_set
    from billing.spend import spend_record
    from billing.switching import billing_method_switch

    adv = AdvertiserFactory()
    deposit(adv, "20.00")
    payment_method_set(advertiser=adv, card_number="4242424242424242", expiry="12/30")
    billing_method_switch(advertiser=adv, billing_method="automatic")
    spend_record(event=spend_event(CampaignFactory(advertiser=adv), "25.00"))  # 20 cash, 5 accrued
    with pytest.raises(BusinessError) as e:
        cash_refund(advertiser=adv)
    assert e.value.code == "not_in_good_standing"
