"""Automatic payment, invoicing and switching through the portal API (SPEC R24–R29): the card on
file, billing method, staff billing settings, bills and "Pay now", the balances they show — and
Business Center deposits keyed by a unique constraint (R23, STYLE: every idempotency key)."""

import importlib
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.apps import apps as django_apps
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.autopay import charge_thresholds, payment_method_set
from billing.bc import bc_deposit_create
from billing.invoicing import issue_monthly_invoices
from billing.models import BCDeposit, Bill, BillStatus, LedgerTransaction, PaymentMethod, TxKind
from billing.spend import spend_record
from billing.switching import billing_method_switch, billing_settings_set
from portal.models import Advertiser, AuditLog, CampaignStatus
from tests.api_helpers import api, error_of, role_token, staff, world  # noqa: F401
from tests.api_matrix import Endpoint, database_state, matrix
from tests.factories import AdvertiserFactory, BusinessCenterFactory, CampaignFactory

pytestmark = pytest.mark.django_db

GOOD = "4242 4242 4242 4242"
DECLINE = "4000 0000 0000 0002"
TIMEOUT = "4000 0000 0000 0119"
FUTURE = "12/39"


def _spend(adv, campaign, amount, *, at=None, event_id=None):
    return spend_record(event={
        "event_id": event_id or f"bill-ev-{LedgerTransaction.objects.count()}-{amount}",
        "advertiser_id": adv.pk, "campaign_id": campaign.pk, "amount": amount, "currency": adv.currency,
        "occurred_at": (at or timezone.now() - timedelta(minutes=1)).isoformat(),
    })


def automatic_account(card=GOOD, **kw):
    """An automatic-payment account (threshold 50.00 USD, the first step) and a campaign."""
    adv = AdvertiserFactory(**kw)
    payment_method_set(advertiser=adv, card_number=card, expiry=FUTURE)
    billing_method_switch(advertiser=adv, billing_method="automatic")
    adv.refresh_from_db()
    return adv, CampaignFactory(advertiser=adv)


def _failed_bills(w):
    """The world's account moves to automatic payment with a card that declines; it spends 600
    (490 from its prepaid cash, 110 accrued): two threshold bills of 50 fail, 10 rolls over.
    Then a good card is put on file, so "Pay now" can succeed."""
    payment_method_set(advertiser=w.adv, card_number=DECLINE, expiry=FUTURE)
    billing_method_switch(advertiser=w.adv, billing_method="automatic")
    _spend(w.adv, w.campaign, "600.00")
    charge_thresholds()
    w.bills = list(Bill.objects.filter(advertiser=w.adv).order_by("pk"))
    assert [(b.amount, b.status) for b in w.bills] == [(Decimal("50.00"), "failed")] * 2
    w.bill = w.bills[0]
    payment_method_set(advertiser=w.adv, card_number=GOOD, expiry=FUTURE)


def _adv(w):
    return f"/advertisers/{w.adv.pk}"


def _check_pay(w, j):
    assert (j["id"], j["status"], j["amount"], j["attempts"]) == (str(w.bill.pk), "paid", "50.00", 2)
    assert Bill.objects.get(pk=w.bill.pk).status == BillStatus.PAID


def _check_settings(w, j):
    adv = Advertiser.objects.get(pk=w.adv.pk)
    assert (j["credit_line_limit"], j["invoicing_eligible"]) == ("1000.00", True)
    assert (adv.credit_line_limit, adv.invoicing_eligible) == (Decimal("1000.00"), True)


ENDPOINTS = [
    Endpoint("payment method", "post", lambda w: _adv(w) + "/payment-method",
             lambda w: {"card_number": GOOD, "expiry": FUTURE},
             allowed=("staff", "admin", "finance", "bc_admin", "bc_finance"), forbidden=("operator", "analyst"),
             check=lambda w, j: (j == {"last4": "4242", "expiry": FUTURE, "status": "valid"}
                                 and PaymentMethod.objects.get(advertiser=w.adv).last4 == "4242") or pytest.fail(j)),
    Endpoint("billing method", "post", lambda w: _adv(w) + "/billing-method", lambda w: {"billing_method": "automatic"},
             prepare=lambda w: payment_method_set(advertiser=w.adv, card_number=GOOD, expiry=FUTURE),
             allowed=("staff", "admin", "bc_admin"), forbidden=("finance", "operator", "analyst", "bc_finance"),
             check=lambda w, j: (j["id"] == str(w.adv.pk) and j["billing_method"] == "automatic"
                                 and Advertiser.objects.get(pk=w.adv.pk).billing_method == "automatic")
             or pytest.fail(j)),
    Endpoint("billing settings", "post", lambda w: _adv(w) + "/billing-settings",
             lambda w: {"credit_line_limit": "1000.00", "invoicing_eligible": True},
             allowed=("staff",), forbidden=("admin", "finance", "analyst", "bc_admin", "bc_finance"),
             check=_check_settings),
    Endpoint("list bills", "get", lambda w: _adv(w) + "/bills", prepare=_failed_bills,
             allowed=("staff", "admin", "finance", "analyst", "bc_admin", "bc_finance"), forbidden=("operator",),
             check=lambda w, j: [(b["id"], b["status"]) for b in j] == [(str(b.pk), "failed") for b in reversed(w.bills)]
             or pytest.fail(j)),
    Endpoint("pay bill", "post", lambda w: f"/bills/{w.bill.pk}/pay", prepare=_failed_bills,
             allowed=("staff", "admin", "finance", "bc_admin", "bc_finance"), forbidden=("operator", "analyst"),
             check=_check_pay),
]

(test_no_token_is_401, test_right_role_passes, test_wrong_role_is_403_and_changes_nothing,
 test_other_advertisers_user_gets_404) = matrix(ENDPOINTS)


# --- the card on file ------------------------------------------------------------------------------

def _texts_in_database() -> str:
    """Every stored value of the project's tables, as one string."""
    return repr(database_state())


def test_payment_method_keeps_only_the_last_four_digits(api):
    # given an admin of a manual-payment account
    adv = AdvertiserFactory()
    admin = role_token(adv, "admin")
    # when they put a card on file
    response = api.post(f"/advertisers/{adv.pk}/payment-method", {"card_number": GOOD, "expiry": "08/39"},
                        token=admin)
    # then the answer shows the last four digits, never the number
    assert response.status_code == 200
    assert response.json() == {"last4": "4242", "expiry": "08/39", "status": "valid"}
    pm = PaymentMethod.objects.get(advertiser=adv)
    assert pm.last4 == "4242" and pm.token.startswith("tok_sbx_")
    # and the number is stored nowhere, with or without its spaces
    stored = _texts_in_database()
    assert "4242424242424242" not in stored and GOOD not in stored
    assert "4242424242424242" not in response.content.decode()


def test_payment_method_replaces_the_previous_card(api):
    adv = AdvertiserFactory()
    finance = role_token(adv, "finance")
    api.post(f"/advertisers/{adv.pk}/payment-method", {"card_number": GOOD, "expiry": FUTURE}, token=finance)
    response = api.post(f"/advertisers/{adv.pk}/payment-method", {"card_number": DECLINE, "expiry": "01/38"},
                        token=finance)
    assert response.json() == {"last4": "0002", "expiry": "01/38", "status": "valid"}
    assert PaymentMethod.objects.filter(advertiser=adv).count() == 1
    assert "4000000000000002" not in _texts_in_database()


@pytest.mark.parametrize("body,status,code", [
    ({"expiry": FUTURE}, 400, "missing_field"),
    ({"card_number": GOOD}, 400, "missing_field"),
    ({"card_number": 4242424242424242, "expiry": FUTURE}, 400, "invalid_card"),
    ({"card_number": GOOD, "expiry": "13/39"}, 400, "invalid_expiry"),
    ({"card_number": GOOD, "expiry": "tomorrow"}, 400, "invalid_expiry"),
    ({"card_number": GOOD, "expiry": "01/20"}, 400, "card_expired"),
    ({"card_number": "1234 5678 9012 3456", "expiry": FUTURE}, 422, "card_refused"),
])
def test_bad_card_input_is_refused_and_nothing_is_stored(api, body, status, code):
    adv = AdvertiserFactory()
    before = database_state()
    response = api.post(f"/advertisers/{adv.pk}/payment-method", body, token=role_token(adv, "admin"))
    assert response.status_code == status
    assert error_of(response)["code"] == code
    assert not PaymentMethod.objects.exists()
    assert "1234567890123456" not in response.content.decode() + _texts_in_database()
    assert database_state()["billing.PaymentMethod"] == before["billing.PaymentMethod"] == []


# --- switching billing method (R28) ----------------------------------------------------------------

def test_admin_switches_manual_to_automatic_and_balances_show_the_threshold_and_bill_date(api):
    # given a manual account with a card on file
    adv = AdvertiserFactory(timezone_name="Europe/Paris")
    admin = role_token(adv, "admin")
    api.post(f"/advertisers/{adv.pk}/payment-method", {"card_number": GOOD, "expiry": FUTURE}, token=admin)
    # when its admin switches to automatic payment
    response = api.post(f"/advertisers/{adv.pk}/billing-method", {"billing_method": "automatic"}, token=admin)
    # then the advertiser answers on automatic payment
    assert response.status_code == 200
    assert response.json()["billing_method"] == "automatic"
    assert set(response.json()) >= {"id", "name", "currency", "timezone", "billing_method", "status",
                                    "registered_at", "signup_source", "shop_id", "credit_frozen"}
    # and the balances show the first threshold step and the next bill date (1st of next month, Paris midnight)
    balances = api.get(f"/advertisers/{adv.pk}/balances", token=admin).json()
    assert balances["billing_threshold"] == "50.00"
    bill_date = datetime.fromisoformat(balances["next_bill_date"])
    local = bill_date.astimezone(adv.tz)
    assert (local.day, local.hour, local.minute) == (1, 0, 0) and bill_date > timezone.now()


def _switch(api, adv, method, token):
    return api.post(f"/advertisers/{adv.pk}/billing-method", {"billing_method": method}, token=token)


def _refused(response, code, adv, method_before):
    assert response.status_code == 422, response.content
    assert error_of(response)["code"] == code
    assert Advertiser.objects.get(pk=adv.pk).billing_method == method_before


def test_switch_refusals_name_the_rule_and_change_nothing(api, staff):
    # never back to manual
    adv, _ = automatic_account()
    _refused(_switch(api, adv, "manual", staff), "switch_to_manual_not_allowed", adv, "automatic")
    # the same method again
    _refused(_switch(api, adv, "automatic", staff), "billing_method_unchanged", adv, "automatic")
    # automatic needs a payment method
    plain = AdvertiserFactory()
    _refused(_switch(api, plain, "automatic", staff), "payment_method_required", plain, "manual")
    # invoicing needs staff eligibility, then a credit line
    _refused(_switch(api, plain, "monthly_invoice", staff), "invoicing_not_eligible", plain, "manual")
    billing_settings_set(advertiser=plain, invoicing_eligible=True)
    _refused(_switch(api, plain, "monthly_invoice", staff), "no_credit_line", plain, "manual")
    # invoicing → automatic is not a path
    billing_settings_set(advertiser=plain, credit_line_limit="500.00")
    assert _switch(api, plain, "monthly_invoice", staff).status_code == 200
    payment_method_set(advertiser=plain, card_number=GOOD, expiry=FUTURE)
    _refused(_switch(api, plain, "automatic", staff), "switch_not_allowed", plain, "monthly_invoice")


def test_switch_with_arrears_or_failed_bills_is_refused(api, world):
    staff = world.tokens["staff"]
    # manual arrears must be paid first
    adv = AdvertiserFactory()
    camp = CampaignFactory(advertiser=adv)
    _spend(adv, camp, "30.00")
    payment_method_set(advertiser=adv, card_number=GOOD, expiry=FUTURE)
    _refused(_switch(api, adv, "automatic", staff), "arrears_outstanding", adv, "manual")
    # failed automatic bills must be paid before moving to invoicing
    _failed_bills(world)
    billing_settings_set(advertiser=world.adv, invoicing_eligible=True, credit_line_limit="1000.00")
    _refused(_switch(api, world.adv, "monthly_invoice", staff), "bills_outstanding", world.adv, "automatic")


def test_switch_to_an_unknown_method_is_400(api, staff):
    adv = AdvertiserFactory()
    response = _switch(api, adv, "cash", staff)
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_billing_method"
    response = api.post(f"/advertisers/{adv.pk}/billing-method", {}, token=staff)
    assert response.status_code == 400 and error_of(response)["message"] == "billing_method is required."
    assert Advertiser.objects.get(pk=adv.pk).billing_method == "manual"


def test_automatic_to_invoicing_bills_the_accrued_spend_as_a_switch_bill(api, staff):
    # given an automatic account with 30 accrued
    adv, camp = automatic_account()
    _spend(adv, camp, "30.00")
    billing_settings_set(advertiser=adv, invoicing_eligible=True, credit_line_limit="1000.00")
    # when it moves to monthly invoicing
    response = _switch(api, adv, "monthly_invoice", staff)
    assert response.status_code == 200 and response.json()["billing_method"] == "monthly_invoice"
    # then the accrued spend was billed and paid at once, and the bills list shows a `switch` bill
    bills = api.get(f"/advertisers/{adv.pk}/bills", token=staff).json()
    assert [(b["kind"], b["amount"], b["status"]) for b in bills] == [("switch", "30.00", "paid")]
    balances = api.get(f"/advertisers/{adv.pk}/balances", token=staff).json()
    assert (balances["accrued"], balances["outstanding_bills"], balances["credit_line_limit"],
            balances["billing_threshold"], balances["next_bill_date"]) == ("0.00", "0.00", "1000.00", None, None)


# --- staff billing settings (R25, R27) -------------------------------------------------------------

def test_staff_billing_settings_are_answered_and_audited_with_the_staff_user(api, staff):
    adv, _ = automatic_account()
    response = api.post(f"/advertisers/{adv.pk}/billing-settings",
                        {"billing_threshold": "250.00", "bill_cycle": "weekly", "reason": "good history"},
                        token=staff)
    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in ("advertiser_id", "billing_method", "billing_threshold", "bill_cycle",
                                 "credit_line_limit", "invoicing_eligible")} == {
        "advertiser_id": str(adv.pk), "billing_method": "automatic", "billing_threshold": "250.00",
        "bill_cycle": "weekly", "credit_line_limit": "0.00", "invoicing_eligible": False}
    # a weekly cycle bills on Monday, local midnight
    next_bill = datetime.fromisoformat(body["next_bill_date"]).astimezone(adv.tz)
    assert (next_bill.weekday(), next_bill.hour) == (0, 0)
    log = AuditLog.objects.get(action="billing_settings", advertiser=adv)
    assert log.actor.is_staff and log.reason == "good history"
    assert (log.before["billing_threshold"], log.after["billing_threshold"]) == ("50.0000", "250.0000")
    assert (log.before["bill_cycle"], log.after["bill_cycle"]) == ("monthly", "weekly")
    balances = api.get(f"/advertisers/{adv.pk}/balances", token=staff).json()
    assert balances["billing_threshold"] == "250.00" and balances["next_bill_date"] == body["next_bill_date"]


@pytest.mark.parametrize("body,code", [
    ({}, "invalid_field"),
    ({"reason": "nothing else"}, "invalid_field"),
    ({"bill_cycle": "daily"}, "invalid_bill_cycle"),
    ({"credit_line_limit": "-5.00"}, "invalid_amount"),
    ({"credit_line_limit": "10.001"}, "invalid_amount"),
    ({"billing_threshold": "0"}, "invalid_amount"),
    ({"invoicing_eligible": "yes"}, "invalid_invoicing_eligible"),
])
def test_bad_billing_settings_are_400_and_change_nothing(api, staff, body, code):
    adv, _ = automatic_account()
    before = database_state()
    response = api.post(f"/advertisers/{adv.pk}/billing-settings", body, token=staff)
    assert response.status_code == 400, response.content
    assert error_of(response)["code"] == code
    assert database_state() == before


def test_a_fourth_threshold_change_in_a_month_is_422(api, staff):
    # given an automatic account whose threshold staff changed 3 times this month
    adv, _ = automatic_account()
    for amount in ("100.00", "250.00", "500.00"):
        assert api.post(f"/advertisers/{adv.pk}/billing-settings", {"billing_threshold": amount},
                        token=staff).status_code == 200
    assert adv.threshold_changes.count() == 3
    # when staff try a 4th change
    response = api.post(f"/advertisers/{adv.pk}/billing-settings", {"billing_threshold": "1000.00"}, token=staff)
    assert response.status_code == 422
    assert error_of(response)["code"] == "threshold_change_limit"
    assert Advertiser.objects.get(pk=adv.pk).billing_threshold == Decimal("500.00")


# --- bills and Pay now (R24, R26, R27) -------------------------------------------------------------

def test_bills_newest_first_and_pay_now_with_a_good_card(api, world):
    # given two failed threshold bills and a good card now on file
    _failed_bills(world)
    finance = world.tokens["finance"]
    balances = api.get(f"/advertisers/{world.adv.pk}/balances", token=finance).json()
    assert (balances["accrued"], balances["outstanding_bills"], balances["cash_balance"]) == ("10.00", "100.00", "0.00")
    bills = api.get(f"/advertisers/{world.adv.pk}/bills", token=finance).json()
    newest, oldest = bills
    assert newest["id"] == str(world.bills[1].pk) and oldest["id"] == str(world.bills[0].pk)
    assert set(oldest) >= {"id", "kind", "number", "amount", "status", "attempts", "issued_at", "due_at"}
    assert (oldest["kind"], oldest["number"], oldest["amount"], oldest["status"], oldest["attempts"]) == (
        "threshold", None, "50.00", "failed", 1)
    assert oldest["issued_at"].endswith("+00:00")
    # when finance pays the older bill now
    response = api.post(f"/bills/{oldest['id']}/pay", token=finance)
    # then it is paid with the card on file, once, on the ledger
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["attempts"]) == ("paid", 2)
    assert response.json()["paid_at"] is not None
    payments = LedgerTransaction.objects.filter(advertiser=world.adv, kind=TxKind.PAYMENT)
    assert [p.amount for p in payments] == [Decimal("50.00")]
    balances = api.get(f"/advertisers/{world.adv.pk}/balances", token=finance).json()
    assert balances["outstanding_bills"] == "50.00"
    # and paying it again is refused without a second charge
    again = api.post(f"/bills/{oldest['id']}/pay", token=finance)
    assert again.status_code == 422 and error_of(again)["code"] == "bill_already_paid"
    assert payments.count() == 1


@pytest.mark.parametrize("card,message", [
    (DECLINE, "Your card was declined"), (TIMEOUT, "did not answer in time"),
])
def test_pay_now_with_a_failing_card_is_422_and_counts_the_attempt(api, world, card, message):
    _failed_bills(world)
    payment_method_set(advertiser=world.adv, card_number=card, expiry=FUTURE)
    response = api.post(f"/bills/{world.bill.pk}/pay", token=world.tokens["admin"])
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "payment_failed" and message in error["message"]
    assert (error["bill_id"], error["bill_status"]) == (str(world.bill.pk), "failed")
    bill = Bill.objects.get(pk=world.bill.pk)
    assert (bill.status, bill.attempts) == (BillStatus.FAILED, 2)
    assert not LedgerTransaction.objects.filter(advertiser=world.adv, kind=TxKind.PAYMENT).exists()
    # three failed payments in a row: more than two pause delivery (R26)
    world.campaign.refresh_from_db()
    assert world.campaign.status == CampaignStatus.PAUSED_FUNDS


def test_pay_now_without_a_card_is_422(api, staff):
    adv, camp = automatic_account()
    _spend(adv, camp, "60.00")
    PaymentMethod.objects.filter(advertiser=adv).delete()
    charge_thresholds()
    bill = Bill.objects.get(advertiser=adv)
    response = api.post(f"/bills/{bill.pk}/pay", token=staff)
    assert response.status_code == 422 and error_of(response)["code"] == "payment_method_required"


def test_unknown_bill_is_404_and_another_advertisers_admin_cannot_tell(api, world):
    _failed_bills(world)
    for path in ("/bills/999999/pay", "/bills/abc/pay"):
        r = api.post(path, token=world.tokens["staff"])
        assert r.status_code == 404 and error_of(r) == {"code": "not_found", "message": "No such bill."}
    r = api.post(f"/bills/{world.bill.pk}/pay", token=world.tokens["other"])
    assert r.status_code == 404 and error_of(r) == {"code": "not_found", "message": "No such bill."}
    assert Bill.objects.get(pk=world.bill.pk).attempts == 1


def test_invoices_are_listed_with_their_number_and_balances_show_the_credit_line(api, staff):
    # given an invoiced account that spent 300 of its 1000 line in October (Tokyo time)
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Asia/Tokyo")
    adv = AdvertiserFactory(billing_method="monthly_invoice", timezone_name="Asia/Tokyo")
    api.post(f"/advertisers/{adv.pk}/billing-settings", {"credit_line_limit": "1000.00"}, token=staff)
    camp = CampaignFactory(advertiser=adv)
    _spend(adv, camp, "300.00", at=datetime(2026, 10, 10, 12, tzinfo=tz))
    balances = api.get(f"/advertisers/{adv.pk}/balances", token=staff).json()
    assert (balances["credit_line_limit"], balances["credit_line_used"], balances["outstanding_bills"]) == (
        "1000.00", "300.00", "0.00")
    # when the invoice job runs on the 1st
    issue_monthly_invoices(at=datetime(2026, 11, 1, 0, 5, tzinfo=tz))
    # then the bills list shows a numbered monthly invoice due in 30 days, and it is outstanding
    [invoice] = api.get(f"/advertisers/{adv.pk}/bills", token=staff).json()
    assert (invoice["kind"], invoice["amount"], invoice["status"]) == ("monthly_invoice", "300.00", "open")
    assert invoice["number"] and invoice["number"].endswith("000001")
    issued, due = datetime.fromisoformat(invoice["issued_at"]), datetime.fromisoformat(invoice["due_at"])
    assert due - issued == timedelta(days=30)
    balances = api.get(f"/advertisers/{adv.pk}/balances", token=staff).json()
    assert (balances["credit_line_used"], balances["outstanding_bills"]) == ("300.00", "300.00")
    # and paying it with a card restores the line
    payment_method_set(advertiser=adv, card_number=GOOD, expiry=FUTURE)
    assert api.post(f"/bills/{invoice['id']}/pay", token=staff).json()["status"] == "paid"
    balances = api.get(f"/advertisers/{adv.pk}/balances", token=staff).json()
    assert (balances["credit_line_used"], balances["outstanding_bills"]) == ("0.00", "0.00")


# --- Business Center deposits: the key is unique in the database ------------------------------------

def test_bc_deposit_is_a_row_unique_by_business_center_and_key():
    bc = BusinessCenterFactory()
    first = bc_deposit_create(business_center=bc, amount="100.00", idempotency_key="bc-key")
    again = bc_deposit_create(business_center=bc, amount="100.00", idempotency_key="bc-key")
    assert again.pk == first.pk and first.transaction.kind == TxKind.BC_DEPOSIT
    assert BCDeposit.objects.filter(business_center=bc).count() == 1
    # a raw duplicate insert, bypassing the service, is refused by the database
    with pytest.raises(IntegrityError), transaction.atomic():
        BCDeposit.objects.create(business_center=bc, amount=Decimal("100.00"), idempotency_key="bc-key",
                                 transaction=LedgerTransaction.objects.create(
                                     kind=TxKind.BC_DEPOSIT, business_center=bc, amount=Decimal("100.00"),
                                     currency="USD"))
    # the same key at another Business Center is another deposit
    other = BusinessCenterFactory()
    assert bc_deposit_create(business_center=other, amount="100.00", idempotency_key="bc-key").pk != first.pk


def test_bc_deposit_amount_must_be_positive_in_the_database():
    bc = BusinessCenterFactory()
    tx = bc_deposit_create(business_center=bc, amount="100.00", idempotency_key="k").transaction
    BCDeposit.objects.all().delete()
    with pytest.raises(IntegrityError), transaction.atomic():
        BCDeposit.objects.create(business_center=bc, amount=Decimal("0"), idempotency_key="k2", transaction=tx)


def test_bc_deposits_made_before_the_table_keep_their_key():
    # given a BC deposit whose key is known only from its ledger memo (as before migration 0006)
    bc = BusinessCenterFactory()
    first = bc_deposit_create(business_center=bc, amount="250.00", idempotency_key="old key [1]")
    BCDeposit.objects.all().delete()
    # when the migration's copy step runs
    migration = importlib.import_module("billing.migrations.0006_bc_deposits")
    migration.keys_from_memos(django_apps, None)
    # then the deposit is keyed again, and a replay books nothing new
    restored = BCDeposit.objects.get(business_center=bc)
    assert (restored.idempotency_key, restored.amount, restored.transaction_id) == (
        "old key [1]", Decimal("250.00"), first.transaction_id)
    bc_deposit_create(business_center=bc, amount="250.00", idempotency_key="old key [1]")
    assert LedgerTransaction.objects.filter(kind=TxKind.BC_DEPOSIT, business_center=bc).count() == 1
