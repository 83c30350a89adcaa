"""Tools → Payments → Payment method (the card on file, R29) and Billing method (switching,
R28; what is settled, decision 0006)."""

import re
from decimal import Decimal

import pytest
from django.test import Client

from billing.autopay import payment_method_set
from billing.models import Bill, BillKind, BillStatus, GatewayCharge, PaymentMethod
from billing.selectors import advertiser_balances
from billing.switching import billing_settings_set
from portal.models import Advertiser
from tests.billing.bill_pages_helpers import DECLINE, GOOD, auto_team, invoiced_team, threshold_bill
from tests.factories import deposit
from tests.pages_helpers import (  # noqa: F401
    element,
    fast_password_hashing,
    logged_in,
    make_team,
    spend,
    team,
    text,
)

pytestmark = pytest.mark.django_db


def pm_url(t):
    return f"/a/{t.advertiser.pk}/payments/payment-method/"


def bm_url(t):
    return f"/a/{t.advertiser.pk}/payments/billing-method/"


def method_of(t) -> str:
    return Advertiser.objects.get(pk=t.advertiser.pk).billing_method


# --- Payment method ----------------------------------------------------------------------------
@pytest.mark.parametrize("role,status", [("admin", 200), ("finance", 200), ("analyst", 403), ("operator", 403)])
def test_payment_method_role_matrix(team, role, status):
    client = team.client(role)
    assert client.get(pm_url(team)).status_code == status
    response = client.post(pm_url(team), {"card_number": GOOD, "expiry": "12/39"})
    assert response.status_code == (302 if status == 200 else 403)
    assert PaymentMethod.objects.filter(advertiser=team.advertiser).exists() == (status == 200)


def test_payment_method_other_advertiser_404_and_anonymous_to_login(team):
    outsider = logged_in(team.outsider)
    assert outsider.get(pm_url(team)).status_code == 404
    assert outsider.post(pm_url(team), {"card_number": GOOD, "expiry": "12/39"}).status_code == 404
    anonymous = Client().get(pm_url(team))
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/login/?next=")
    assert not PaymentMethod.objects.exists()


def test_saving_a_card_replaces_the_one_on_file_and_shows_only_the_last_four(db, fast_password_hashing):
    # given an automatic account whose card declines
    t = auto_team(card=DECLINE)
    page = t.admin.get(pm_url(t))
    assert "Card on file •••• 0002 · expires 12/30" in text(element(page.content.decode(), "current-card"))
    # when the finance member saves the good card
    response = t.client("finance").post(pm_url(t), {"card_number": "4242 4242 4242 4242", "expiry": "08/31"},
                                        follow=True)
    # then they are back on the Overview, told which card is on file, and only its last four are kept
    assert response.redirect_chain == [(f"/a/{t.advertiser.pk}/payments/", 302)]
    assert "Card ending 4242 (expires 08/31) is now your payment method." in text(response)
    assert "•••• 4242 · expires 08/31" in text(element(response.content.decode(), "card-on-file"))
    pm = PaymentMethod.objects.get(advertiser=t.advertiser)
    assert (pm.last4, pm.expiry) == ("4242", "08/31") and GOOD not in pm.token
    assert not GatewayCharge.objects.exists()  # nothing is charged by saving a card


@pytest.mark.parametrize("card,expiry,field,message", [
    ("4111 1111 1111 1111", "12/39", "card_number", "This card number is not valid."),
    ("4242", "12/39", "card_number", "Enter the card number as printed on the card"),
    (GOOD, "13/39", "expiry", "expiry must be MM/YY"),
    (GOOD, "01/20", "expiry", "This card has expired."),
    (GOOD, "", "expiry", "This field is required."),
])
def test_card_errors_are_shown_under_their_field_and_the_number_is_not_echoed(team, card, expiry, field, message):
    response = team.admin.post(pm_url(team), {"card_number": card, "expiry": expiry})
    assert response.status_code == 422
    html = response.content.decode()
    block = re.search(rf'<div class="field has-error">\s*<label for="id_{field}">.*?</div>', html, re.S).group(0)
    assert message in text(block)
    card_input = re.search(r'<input[^>]*name="card_number"[^>]*>', html).group(0)
    assert "value=" not in card_input
    if len(card) > 4:  # (the sandbox note lists the test cards spaced: "4242 4242 …")
        assert card.replace(" ", "") not in html and (card == card.replace(" ", "") or card not in html)
    assert not PaymentMethod.objects.exists()


# --- Billing method: who sees what -------------------------------------------------------------
@pytest.mark.parametrize("role,get,post", [
    ("admin", 200, 302), ("finance", 200, 403), ("analyst", 200, 403), ("operator", 403, 403),
])
def test_billing_method_role_matrix(team, role, get, post):
    payment_method_set(advertiser=team.advertiser, card_number=GOOD, expiry="12/30")
    client = team.client(role)
    page = client.get(bm_url(team))
    assert page.status_code == get
    if get == 200:
        has_form = 'class="form switch-form"' in page.content.decode()
        assert has_form == (role == "admin")
        if role != "admin":
            assert "Only an admin of the account can change its billing method." in text(page)
    response = client.post(bm_url(team), {"billing_method": "automatic", "confirm": "on"})
    assert response.status_code == post
    assert method_of(team) == ("automatic" if post == 302 else "manual")


def test_billing_method_other_advertiser_404_and_anonymous_to_login(team):
    outsider = logged_in(team.outsider)
    assert outsider.get(bm_url(team)).status_code == 404
    assert outsider.post(bm_url(team), {"billing_method": "automatic", "confirm": "on"}).status_code == 404
    anonymous = Client().post(bm_url(team), {"billing_method": "automatic", "confirm": "on"})
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/login/?next=")
    assert method_of(team) == "manual"


# --- Billing method: what each method offers ---------------------------------------------------
def test_manual_offers_automatic_and_invoicing_with_what_is_settled(team):
    html = team.admin.get(bm_url(team)).content.decode()
    assert "Current billing method Manual payment You prepay with deposits." in text(element(html, "current-method"))
    automatic = text(element(html, "switch-automatic"))
    assert automatic.startswith("Automatic payment Your card on file is charged when spend reaches the billing "
                                "threshold or on the bill date.")
    assert "arrears must be paid by a deposit before switching" in automatic and "Needs a card on file." in automatic
    assert "Switch to automatic payment" in automatic
    invoicing = text(element(html, "switch-monthly_invoice"))
    assert "invoiced on the 1st of each month, due in 30 days" in invoicing
    assert "Needs staff approval and a credit line." in invoicing
    assert "Card on file: none · Add a card" in text(element(html, "method-card"))


def test_automatic_offers_only_invoicing_and_says_accrued_spend_is_charged(db, fast_password_hashing):
    t = auto_team()
    html = t.admin.get(bm_url(t)).content.decode()
    assert 'id="switch-automatic"' not in html
    invoicing = text(element(html, "switch-monthly_invoice"))
    assert "Spend accrued on your current bill is billed and charged to your card at once" in invoicing
    assert "failed bills must be paid first" in invoicing
    assert "Card on file: •••• 4242, expires 12/30 · Change card" in text(element(html, "method-card"))


def test_invoicing_offers_nothing(db, fast_password_hashing):
    t = invoiced_team()
    body = text(t.admin.get(bm_url(t)))
    assert "No other billing method is available" in body
    assert "never switches back to manual or automatic payment" in body
    assert "Switch to" not in body


def test_a_switch_the_account_may_not_make_says_why_before_anyone_clicks(team):
    """Issue 13: the page shows the switch's own refusal (`switch_refusal`) next to a disabled
    button; once the condition is met the button is enabled and the note is gone."""
    html = team.admin.get(bm_url(team)).content.decode()
    invoicing = element(html, "switch-monthly_invoice")
    assert "Not available yet: Monthly invoicing needs staff approval for this account." in text(
        element(invoicing, "switch-blocked-monthly_invoice"))
    button = re.search(r"<button[^>]*>Switch to monthly invoicing</button>", invoicing).group(0)
    assert "disabled" in button and 'aria-describedby="switch-blocked-monthly_invoice"' in button
    automatic = element(html, "switch-automatic")
    assert "Add a payment method before switching to automatic payment." in text(automatic)
    # when staff approve it and set a credit line, and a card is on file
    Advertiser.objects.filter(pk=team.advertiser.pk).update(invoicing_eligible=True, credit_line_limit=Decimal("500"))
    payment_method_set(advertiser=team.advertiser, card_number=GOOD, expiry="12/30")
    html = team.admin.get(bm_url(team)).content.decode()
    assert 'id="switch-blocked-' not in html
    button = re.search(r"<button[^>]*>Switch to monthly invoicing</button>", html).group(0)
    assert "disabled" not in button


# --- Billing method: switching -----------------------------------------------------------------
def test_switch_manual_to_automatic_with_a_card(team):
    deposit(team.advertiser, "60.00")
    payment_method_set(advertiser=team.advertiser, card_number=GOOD, expiry="12/30")
    response = team.admin.post(bm_url(team), {"billing_method": "automatic", "confirm": "on"}, follow=True)
    assert response.redirect_chain == [(f"/a/{team.advertiser.pk}/payments/", 302)]
    assert "This account now pays by automatic payment." in text(response)
    assert method_of(team) == "automatic"
    html = response.content.decode()
    assert 'id="automatic-panel"' in html  # the Overview now shows the automatic panel
    assert "Cash balance $60.00" in text(element(html, "cash-balance"))  # prepaid cash stays


def test_switch_refused_without_a_card_shows_the_services_message(team):
    response = team.admin.post(bm_url(team), {"billing_method": "automatic", "confirm": "on"})
    assert response.status_code == 409
    option = element(response.content.decode(), "switch-automatic")
    assert "Add a payment method before switching to automatic payment." in text(element(option, "switch-refused"))
    assert method_of(team) == "manual"


def test_switch_to_invoicing_refused_without_staff_approval(team):
    response = team.admin.post(bm_url(team), {"billing_method": "monthly_invoice", "confirm": "on"})
    assert response.status_code == 409
    option = element(response.content.decode(), "switch-monthly_invoice")
    assert "Monthly invoicing needs staff approval for this account." in text(option)
    assert method_of(team) == "manual"


def test_switch_refused_while_arrears_are_owed(team):
    payment_method_set(advertiser=team.advertiser, card_number=GOOD, expiry="12/30")
    spend(team.campaign, "25.00")  # no cash: arrears
    response = team.admin.post(bm_url(team), {"billing_method": "automatic", "confirm": "on"})
    assert response.status_code == 409
    assert "Pay the arrears with a deposit before switching." in text(response)
    assert method_of(team) == "manual"


def test_switch_back_to_manual_is_refused(db, fast_password_hashing):
    t = auto_team()
    response = t.admin.post(bm_url(t), {"billing_method": "manual", "confirm": "on"})
    assert response.status_code == 409
    assert "An account never switches back to manual payment." in text(element(response.content.decode(),
                                                                                "switch-refused"))
    assert method_of(t) == "automatic"


def test_switch_needs_the_confirmation_box(team):
    payment_method_set(advertiser=team.advertiser, card_number=GOOD, expiry="12/30")
    response = team.admin.post(bm_url(team), {"billing_method": "automatic"})
    assert response.status_code == 422
    option = element(response.content.decode(), "switch-automatic")
    assert "Tick the box to confirm the switch." in text(option)
    assert method_of(team) == "manual"


def test_automatic_to_invoicing_refused_while_a_bill_failed(db, fast_password_hashing):
    t = auto_team(card=DECLINE, threshold="50.00")
    threshold_bill(t)
    billing_settings_set(advertiser=t.advertiser, credit_line_limit="500.00", invoicing_eligible=True)
    response = t.admin.post(bm_url(t), {"billing_method": "monthly_invoice", "confirm": "on"})
    assert response.status_code == 409
    assert "Pay the failed bills before switching." in text(response)
    assert method_of(t) == "automatic"


def test_automatic_to_invoicing_bills_and_charges_accrued_spend(db, fast_password_hashing):
    # given an approved automatic account with 42.00 accrued
    t = auto_team(threshold="500.00")
    billing_settings_set(advertiser=t.advertiser, credit_line_limit="500.00", invoicing_eligible=True)
    spend(t.campaign, "42.00")
    # when the admin confirms the switch
    response = t.admin.post(bm_url(t), {"billing_method": "monthly_invoice", "confirm": "on"}, follow=True)
    # then the accrued spend was billed (a switch bill) and charged, and the Overview says so
    body = text(response)
    assert "This account now pays by monthly invoicing." in body
    assert "Spend accrued on automatic payment, $42.00, was billed and charged to your card." in body
    bill = Bill.objects.get(advertiser=t.advertiser, kind=BillKind.SWITCH)
    assert bill.status == BillStatus.PAID and bill.amount == Decimal("42.00")
    assert advertiser_balances(advertiser=t.advertiser).accrued == 0
    assert method_of(t) == "monthly_invoice" and 'id="invoicing-panel"' in response.content.decode()


def test_switch_bill_declined_is_reported(db, fast_password_hashing):
    t = auto_team(card=DECLINE, threshold="500.00")
    billing_settings_set(advertiser=t.advertiser, credit_line_limit="500.00", invoicing_eligible=True)
    spend(t.campaign, "42.00")
    response = t.admin.post(bm_url(t), {"billing_method": "monthly_invoice", "confirm": "on"}, follow=True)
    body = text(response)
    assert "was billed but the card was not charged: Your card was declined." in body
    assert "Payment failed — Pay now." in text(element(response.content.decode(), "payment-failed"))
