"""Money in and out through the portal API (SPEC R4, R13, R23): deposits, Business Center
deposits, refunds and the balances the ledger holds."""

from decimal import Decimal

import pytest

from billing.models import Deposit, LedgerTransaction, Purpose, TxKind
from billing.spend import spend_record
from portal.models import Advertiser, AdvertiserStatus, Campaign, CampaignStatus
from promotions.models import Credit, CreditStatus
from tests.api_helpers import api, bc_role_token, error_of, role_token, staff  # noqa: F401
from tests.factories import AdvertiserFactory, BusinessCenterFactory, CampaignFactory, deposit, grant

pytestmark = pytest.mark.django_db

ZERO_BALANCES = {
    "currency": "USD", "cash_balance": "0.00", "arrears": "0.00", "credit_balance": "0.00",
    "frozen_credit_balance": "0.00", "discount_cap_remaining": "0.00", "accrued": "0.00",
    "outstanding_bills": "0.00", "credit_line_limit": "0.00", "credit_line_used": "0.00",
    "billing_threshold": None, "next_bill_date": None,
}


def test_finance_deposit_answers_the_balances(api):
    adv = AdvertiserFactory()
    response = api.post(f"/advertisers/{adv.pk}/deposits", {"amount": "250.50", "idempotency_key": "k1"},
                        token=role_token(adv, "finance"))
    assert response.status_code == 201
    assert response.json() == {**ZERO_BALANCES, "cash_balance": "250.50"}
    assert Deposit.objects.get().amount == Decimal("250.50")


def test_deposit_replay_returns_the_same_and_books_once(api):
    adv = AdvertiserFactory()
    admin = role_token(adv, "admin")
    first = api.post(f"/advertisers/{adv.pk}/deposits", {"amount": "100.00", "idempotency_key": "same"}, token=admin)
    again = api.post(f"/advertisers/{adv.pk}/deposits", {"amount": "100.00", "idempotency_key": "same"}, token=admin)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["cash_balance"] == "100.00"
    assert Deposit.objects.count() == 1
    assert LedgerTransaction.objects.filter(kind=TxKind.DEPOSIT).count() == 1


def test_deposit_key_reused_with_another_amount_is_409(api):
    adv = AdvertiserFactory()
    admin = role_token(adv, "admin")
    api.post(f"/advertisers/{adv.pk}/deposits", {"amount": "100.00", "idempotency_key": "same"}, token=admin)
    response = api.post(f"/advertisers/{adv.pk}/deposits", {"amount": "200.00", "idempotency_key": "same"}, token=admin)
    assert response.status_code == 409
    assert error_of(response)["code"] == "idempotency_key_reused"
    assert api.get(f"/advertisers/{adv.pk}/balances", token=admin).json()["cash_balance"] == "100.00"


@pytest.mark.parametrize("amount,code,fragment", [
    ("10.005", "invalid_amount", "more decimal places than USD allows (2)"),
    ("-50.00", "invalid_amount", "must be positive"),
    ("0", "invalid_amount", "greater than zero"),
    ("ten", "invalid_amount", "not a decimal number"),
    (None, "invalid_amount", "decimal string"),
    (True, "invalid_amount", "decimal string"),
])
def test_deposit_bad_amount_is_400_and_books_nothing(api, amount, code, fragment):
    adv = AdvertiserFactory()
    before = LedgerTransaction.objects.count()
    response = api.post(f"/advertisers/{adv.pk}/deposits", {"amount": amount, "idempotency_key": "k"},
                        token=role_token(adv, "admin"))
    assert response.status_code == 400
    assert error_of(response)["code"] == code
    assert fragment in error_of(response)["message"]
    assert LedgerTransaction.objects.count() == before and not Deposit.objects.exists()


def test_deposit_amount_may_be_an_integer(api):
    adv = AdvertiserFactory()
    response = api.post(f"/advertisers/{adv.pk}/deposits", {"amount": 40, "idempotency_key": "int"},
                        token=role_token(adv, "admin"))
    assert response.status_code == 201 and response.json()["cash_balance"] == "40.00"


def test_deposit_without_key_names_the_field(api):
    adv = AdvertiserFactory()
    response = api.post(f"/advertisers/{adv.pk}/deposits", {"amount": "40.00"}, token=role_token(adv, "admin"))
    assert response.status_code == 400
    assert error_of(response)["message"] == "idempotency_key is required."
    assert not Deposit.objects.exists()


@pytest.mark.parametrize("amount", ["19.99", "50000.01"])
def test_deposit_out_of_limits_is_422(api, amount):
    adv = AdvertiserFactory()
    response = api.post(f"/advertisers/{adv.pk}/deposits", {"amount": amount, "idempotency_key": "k"},
                        token=role_token(adv, "admin"))
    assert response.status_code == 422
    assert error_of(response)["code"] == "deposit_out_of_range"
    assert not Deposit.objects.exists()


def test_deposit_on_an_automatic_account_is_422(api):
    adv = AdvertiserFactory(billing_method="automatic")
    response = api.post(f"/advertisers/{adv.pk}/deposits", {"amount": "100.00", "idempotency_key": "k"},
                        token=role_token(adv, "admin"))
    assert response.status_code == 422
    assert error_of(response)["code"] == "deposit_not_allowed"


def test_deposit_settles_arrears_first_and_resumes_campaigns(api, staff, spend_event):
    # given an account that spent 30 with no cash: 30 in arrears, campaign paused (R13)
    adv = AdvertiserFactory()
    camp = CampaignFactory(advertiser=adv)
    api.post("/spend", {"events": [spend_event(camp, "30.00")]}, token=staff)
    camp.refresh_from_db()
    assert camp.status == CampaignStatus.PAUSED_FUNDS
    # when finance deposits 100
    response = api.post(f"/advertisers/{adv.pk}/deposits", {"amount": "100.00", "idempotency_key": "k"},
                        token=role_token(adv, "finance"))
    # then the arrears are paid first, the rest is cash, and delivery resumes
    assert response.json()["arrears"] == "0.00"
    assert response.json()["cash_balance"] == "70.00"
    assert Campaign.objects.get(pk=camp.pk).status == CampaignStatus.ACTIVE


# --- Business Center deposits --------------------------------------------------------------------

def test_bc_admin_deposit_loads_bc_cash_and_replays(api):
    bc = BusinessCenterFactory()
    token = bc_role_token(bc, "admin")
    first = api.post(f"/business-centers/{bc.pk}/deposits", {"amount": "1000.00", "idempotency_key": "b1"}, token=token)
    again = api.post(f"/business-centers/{bc.pk}/deposits", {"amount": "1000.00", "idempotency_key": "b1"}, token=token)
    other = api.post(f"/business-centers/{bc.pk}/deposits", {"amount": "20.00", "idempotency_key": "b2"}, token=token)
    assert [r.status_code for r in (first, again, other)] == [201, 201, 201]
    assert first.json() == {"business_center_id": str(bc.pk), "currency": "USD", "cash_balance": "1000.00"}
    assert again.json()["cash_balance"] == "1000.00"
    assert other.json()["cash_balance"] == "1020.00"
    assert LedgerTransaction.objects.filter(kind=TxKind.BC_DEPOSIT, business_center=bc).count() == 2
    assert bc.ledger_accounts.get(purpose=Purpose.BC_CASH).balance == Decimal("1020.00")
    assert bc.ledger_accounts.get(purpose=Purpose.BC_SETTLEMENT).balance == Decimal("1020.00")


def test_bc_deposit_key_reused_with_another_amount_is_409(api, staff):
    bc = BusinessCenterFactory()
    api.post(f"/business-centers/{bc.pk}/deposits", {"amount": "100.00", "idempotency_key": "b1"}, token=staff)
    response = api.post(f"/business-centers/{bc.pk}/deposits", {"amount": "101.00", "idempotency_key": "b1"},
                        token=staff)
    assert response.status_code == 409
    assert error_of(response)["code"] == "idempotency_key_reused"
    assert LedgerTransaction.objects.filter(kind=TxKind.BC_DEPOSIT).count() == 1


@pytest.mark.parametrize("amount,status,code", [
    ("100.001", 400, "invalid_amount"), ("-5", 400, "invalid_amount"), ("0.00", 400, "invalid_amount"),
    ("10.00", 422, "deposit_out_of_range"),
])
def test_bc_deposit_bad_amount_books_nothing(api, staff, amount, status, code):
    bc = BusinessCenterFactory()
    response = api.post(f"/business-centers/{bc.pk}/deposits", {"amount": amount, "idempotency_key": "b"}, token=staff)
    assert response.status_code == status
    assert error_of(response)["code"] == code
    assert not LedgerTransaction.objects.filter(kind=TxKind.BC_DEPOSIT).exists()


def test_bc_deposit_of_unknown_bc_is_404(api, staff):
    response = api.post("/business-centers/999999/deposits", {"amount": "100.00", "idempotency_key": "b"}, token=staff)
    assert response.status_code == 404
    assert error_of(response) == {"code": "not_found", "message": "No such business center."}


# --- refund --------------------------------------------------------------------------------------

def test_admin_refund_returns_all_cash_closes_the_account_and_forfeits_credit(api):
    adv = AdvertiserFactory()
    camp = CampaignFactory(advertiser=adv)
    deposit(adv, "300.00")
    credit = grant(adv, "free", "40.00")
    admin = role_token(adv, "admin")
    response = api.post(f"/advertisers/{adv.pk}/refund", {}, token=admin)
    assert response.status_code == 200
    assert response.json() == {"refunded": "300.00", "status": "closed"}
    assert Advertiser.objects.get(pk=adv.pk).status == AdvertiserStatus.CLOSED
    assert Campaign.objects.get(pk=camp.pk).status == CampaignStatus.PAUSED
    credit = Credit.objects.select_related("ledger_account").get(pk=credit.pk)
    assert (credit.status, credit.remaining) == (CreditStatus.EXPIRED, Decimal("0"))
    balances = api.get(f"/advertisers/{adv.pk}/balances", token=admin).json()
    assert (balances["cash_balance"], balances["credit_balance"]) == ("0.00", "0.00")
    # a second refund is refused: the account is closed
    again = api.post(f"/advertisers/{adv.pk}/refund", {}, token=admin)
    assert again.status_code == 422 and error_of(again)["code"] == "not_in_good_standing"


def test_refund_with_no_cash_is_422_and_keeps_the_account_open(api):
    adv = AdvertiserFactory()
    response = api.post(f"/advertisers/{adv.pk}/refund", {}, token=role_token(adv, "admin"))
    assert response.status_code == 422
    assert error_of(response)["code"] == "nothing_to_refund"
    assert Advertiser.objects.get(pk=adv.pk).status == AdvertiserStatus.ACTIVE


def test_refund_accepts_an_empty_body(api):
    adv = AdvertiserFactory()
    deposit(adv, "50.00")
    response = api.post(f"/advertisers/{adv.pk}/refund", raw="", token=role_token(adv, "admin"))
    assert response.status_code == 200 and response.json()["refunded"] == "50.00"


# --- balances ------------------------------------------------------------------------------------

def test_balances_equal_what_the_ledger_holds(api, spend_event):
    # given cash 100, a free credit 30, a 50% discount capped at 20 and a 60.00 charge
    adv = AdvertiserFactory()
    camp = CampaignFactory(advertiser=adv)
    deposit(adv, "100.00")
    grant(adv, "free", "30.00")
    grant(adv, "discount", "20.00", percent="50")
    spend_record(event=spend_event(camp, "60.00"))
    # when the analyst reads the balances
    body = api.get(f"/advertisers/{adv.pk}/balances", token=role_token(adv, "analyst")).json()
    # then: discount 20 (cap), free credit 30, cash 10
    assert body == {**ZERO_BALANCES, "cash_balance": "90.00", "credit_balance": "0.00",
                    "discount_cap_remaining": "0.00"}


@pytest.mark.parametrize("currency,amount,shown", [("JPY", "5000", "5000"), ("KWD", "12.345", "12.345")])
def test_balances_use_the_currencys_places(api, currency, amount, shown):
    adv = AdvertiserFactory(currency=currency)
    deposit(adv, amount)
    body = api.get(f"/advertisers/{adv.pk}/balances", token=role_token(adv, "finance")).json()
    assert body["currency"] == currency
    assert body["cash_balance"] == shown
    assert body["arrears"] == ("0" if currency == "JPY" else "0.000")


def test_balances_show_threshold_and_credit_line_when_set(api):
    adv = AdvertiserFactory()
    Advertiser.objects.filter(pk=adv.pk).update(billing_threshold=Decimal("180"), credit_line_limit=Decimal("5000"))
    admin = role_token(adv, "admin")
    body = api.get(f"/advertisers/{adv.pk}/balances", token=admin).json()
    # a threshold applies to automatic payment only (R24)
    assert (body["billing_threshold"], body["credit_line_limit"]) == (None, "5000.00")
    Advertiser.objects.filter(pk=adv.pk).update(billing_method="automatic")
    body = api.get(f"/advertisers/{adv.pk}/balances", token=admin).json()
    assert (body["billing_threshold"], body["credit_line_limit"]) == ("180.00", "5000.00")
