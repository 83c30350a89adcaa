"""Tools → Payments → Add funds: a card deposit through the sandbox gateway (SPEC R13, R23, R26,
R29). Approve → balance and transaction shown; decline or timeout → error, nothing recorded;
double submit → one deposit; bad amount → an error under the field."""

import re
from decimal import Decimal

import pytest

from billing.gateway import SandboxGateway
from billing.models import Deposit, GatewayCharge, LedgerTransaction
from billing.selectors import advertiser_balances
from portal.models import CampaignStatus
from tests.factories import deposit
from tests.pages_helpers import element, fast_password_hashing, make_team, spend, team, text  # noqa: F401

pytestmark = pytest.mark.django_db

GOOD, DECLINE, TIMEOUT = "4242 4242 4242 4242", "4000 0000 0000 0002", "4000 0000 0000 0119"


def form_key(client, team) -> str:
    html = client.get(f"/a/{team.advertiser.pk}/payments/add-funds/").content.decode()
    return re.search(r'name="idempotency_key" value="([0-9a-f]{32})"', html).group(1)


def pay(client, team, *, amount="150.00", card=GOOD, expiry="12/39", key=None, follow=False):
    key = key or form_key(client, team)
    return client.post(
        f"/a/{team.advertiser.pk}/payments/add-funds/",
        {"amount": amount, "card_number": card, "expiry": expiry, "idempotency_key": key},
        follow=follow,
    )


def test_form_shows_amount_card_expiry_and_a_fresh_key(team):
    client = team.admin
    html = client.get(f"/a/{team.advertiser.pk}/payments/add-funds/").content.decode()
    assert 'name="amount"' in html and 'name="card_number"' in html and 'name="expiry"' in html
    assert "Between $20.00 and $50,000.00 per deposit." in text(html)
    assert form_key(client, team) != form_key(client, team)  # one key per form shown


def test_approved_card_adds_funds_and_shows_them(team):
    # given an admin on the Add funds form
    client = team.admin
    # when they pay 150.00 with the good sandbox card
    response = pay(client, team, follow=True)
    # then they land on the Overview with a success message, the new balance and the transaction
    assert response.redirect_chain == [(f"/a/{team.advertiser.pk}/payments/", 302)]
    body = text(response)
    assert "$150.00 added with the card ending 4242." in body
    assert "Cash balance $150.00" in text(element(response.content.decode(), "cash-balance"))
    assert "Deposit — +$150.00 Card ···· 4242 $150.00" in body
    # and the ledger holds exactly one web deposit, with only the last four digits
    dep = Deposit.objects.get(advertiser=team.advertiser)
    assert (dep.amount, dep.source, dep.card_last4) == (Decimal("150.00"), "web", "4242")
    assert GatewayCharge.objects.get().card == "4242"


def test_finance_can_add_funds_too(team):
    response = pay(team.client("finance"), team, amount="20.00")
    assert response.status_code == 302
    assert advertiser_balances(advertiser=team.advertiser).cash_balance == Decimal("20.00")


def test_declined_card_shows_an_error_and_records_nothing(team):
    # when the admin pays with the card that declines
    response = pay(team.admin, team, card=DECLINE)
    # then the form is shown again with a clear error and nothing is on the ledger
    assert response.status_code == 422
    error = text(element(response.content.decode(), "payment-error"))
    assert "Your card was declined." in error
    assert not Deposit.objects.exists() and not LedgerTransaction.objects.filter(kind="deposit").exists()
    assert advertiser_balances(advertiser=team.advertiser).cash_balance == 0
    # the amount is kept, the card number is not echoed back
    html = response.content.decode()
    card_input = re.search(r'<input[^>]*name="card_number"[^>]*>', html).group(0)
    assert 'value="150.00"' in html and "value=" not in card_input and "4000000000000002" not in html


def test_timeout_shows_an_error_and_records_nothing_then_a_retry_succeeds_once(team):
    client = team.admin
    key = form_key(client, team)
    response = pay(client, team, card=TIMEOUT, key=key)
    assert response.status_code == 422
    assert "did not answer in time" in text(element(response.content.decode(), "payment-error"))
    assert not Deposit.objects.exists() and not GatewayCharge.objects.exists()
    # the re-shown form keeps its key, so retrying with a good card is still one payment
    assert f'value="{key}"' in response.content.decode()
    assert pay(client, team, key=key).status_code == 302
    assert pay(client, team, key=key).status_code == 302
    assert Deposit.objects.count() == 1 and GatewayCharge.objects.count() == 1


def test_invalid_card_number_is_declined(team):
    response = pay(team.admin, team, card="4111 1111 1111 1111")
    assert "This card number is not valid." in text(response)
    assert not Deposit.objects.exists()


def test_double_submit_deposits_once(team):
    # given one form (one key) submitted twice, as a double click does
    client = team.admin
    key = form_key(client, team)
    first = pay(client, team, key=key)
    second = pay(client, team, key=key, follow=True)
    # then there is one deposit, one gateway charge, and the second submit says so
    assert first.status_code == 302
    assert Deposit.objects.count() == 1 and GatewayCharge.objects.count() == 1
    assert advertiser_balances(advertiser=team.advertiser).cash_balance == Decimal("150.00")
    assert "already received; nothing was charged twice" in text(second)


@pytest.mark.parametrize("amount,message", [
    ("12.345", "has more decimal places than USD allows (2)"),
    ("abc", "is not a decimal number"),
    ("-5", "must be positive"),
    ("0", "must be greater than zero"),
    ("19.99", "A deposit must be between 20.00 and 50000.00 USD."),
    ("50000.01", "A deposit must be between 20.00 and 50000.00 USD."),
])
def test_bad_amount_shows_an_error_under_the_field(team, amount, message):
    response = pay(team.admin, team, amount=amount)
    assert response.status_code == 422
    html = response.content.decode()
    field = re.search(r'<div class="field has-error">\s*<label for="id_amount">.*?</div>', html, re.S).group(0)
    assert message in text(field) and 'class="field-error"' in field
    assert not GatewayCharge.objects.exists() and not Deposit.objects.exists()  # the card was never charged


@pytest.mark.parametrize("field,value,message", [
    ("card_number", "4242", "Enter the card number as printed on the card"),
    ("expiry", "13/30", "Enter the expiry date as MM/YY"),
    ("expiry", "01/20", "This card has expired."),
])
def test_bad_card_details_show_errors_under_the_field(team, field, value, message):
    response = pay(team.admin, team, **{"card": value} if field == "card_number" else {"expiry": value})
    html = response.content.decode()
    block = re.search(rf'<div class="field has-error">\s*<label for="id_{field}">.*?</div>', html, re.S).group(0)
    assert message in text(block)
    assert not GatewayCharge.objects.exists()


def test_deposit_settles_arrears_and_resumes_campaigns(team):
    # given campaigns paused for 30.00 of arrears
    deposit(team.advertiser, "20.00")
    spend(team.campaign, "50.00")
    team.campaign.refresh_from_db()
    assert team.campaign.status == CampaignStatus.PAUSED_FUNDS
    # when the admin adds 100.00
    response = pay(team.admin, team, amount="100.00", follow=True)
    # then the arrears are paid first, the rest is cash, and delivery resumes
    html = response.content.decode()
    assert "Cash balance $70.00" in text(element(html, "cash-balance"))
    assert "Arrears $0.00" in text(element(html, "arrears"))
    assert "Campaigns paused — add funds" not in text(html)
    team.campaign.refresh_from_db()
    assert team.campaign.status == CampaignStatus.ACTIVE


def test_not_for_automatic_or_invoiced_accounts(db, fast_password_hashing):
    t = make_team(billing_method="automatic")
    client = t.client("admin")
    page = client.get(f"/a/{t.advertiser.pk}/payments/add-funds/")
    assert "Deposits are for manual payment" in text(page) and 'name="card_number"' not in page.content.decode()
    response = client.post(f"/a/{t.advertiser.pk}/payments/add-funds/",
                           {"amount": "50.00", "card_number": GOOD, "expiry": "12/39", "idempotency_key": "x" * 32})
    assert response.status_code == 409 and not Deposit.objects.exists() and not GatewayCharge.objects.exists()


@pytest.mark.parametrize("role,status", [("analyst", 403), ("operator", 403)])
def test_read_only_roles_cannot_add_funds(team, role, status):
    client = team.client(role)
    assert client.get(f"/a/{team.advertiser.pk}/payments/add-funds/").status_code == status
    response = client.post(f"/a/{team.advertiser.pk}/payments/add-funds/",
                           {"amount": "50.00", "card_number": GOOD, "expiry": "12/39", "idempotency_key": "k" * 32})
    assert response.status_code == status
    assert not Deposit.objects.exists() and not GatewayCharge.objects.exists()


# --- the sandbox gateway itself (R29) -------------------------------------------------------------
def test_sandbox_gateway_answers_by_test_card():
    gw = SandboxGateway()
    ok = gw.charge(amount=Decimal("10.00"), currency="USD", card_number="4242424242424242", idempotency_key="a")
    declined = gw.charge(amount=Decimal("10.00"), currency="USD", card_number="4000000000000002", idempotency_key="b")
    timeout = gw.charge(amount=Decimal("10.00"), currency="USD", card_number="4000000000000119", idempotency_key="c")
    other = gw.charge(amount=Decimal("10.00"), currency="USD", card_number="5555555555554444", idempotency_key="d")
    assert ok.status == "approved" and ok.reference.startswith("ch_sbx_")
    assert (declined.status, declined.message) == ("declined", "Your card was declined. Use another card or contact your bank.")
    assert timeout.status == "timeout"
    assert other.status == "declined" and "not valid" in other.message
    assert list(GatewayCharge.objects.values_list("idempotency_key", "card")) == [("a", "4242")]


def test_sandbox_gateway_replays_a_key_and_refuses_it_for_another_amount():
    gw = SandboxGateway()
    first = gw.charge(amount=Decimal("10.00"), currency="USD", card_number="4242424242424242", idempotency_key="k")
    again = gw.charge(amount=Decimal("10.00"), currency="USD", card_number="4242424242424242", idempotency_key="k")
    other = gw.charge(amount=Decimal("11.00"), currency="USD", card_number="4242424242424242", idempotency_key="k")
    assert again == first and other.status == "declined"
    assert GatewayCharge.objects.count() == 1


def test_sandbox_tokens_hide_the_number_and_charge_like_the_card():
    gw = SandboxGateway()
    good, bad = gw.tokenize(card_number=GOOD), gw.tokenize(card_number=DECLINE)
    assert good.approved and good.reference.endswith("4242") and "4242424242424242" not in good.reference
    assert bad.approved  # a card that declines still tokenizes; it declines when charged
    assert gw.charge(amount=Decimal("5"), currency="USD", card_number=good.reference, idempotency_key="t1").approved
    assert gw.charge(amount=Decimal("5"), currency="USD", card_number=bad.reference, idempotency_key="t2").status == "declined"
    assert not gw.tokenize(card_number="1234567812345678").approved
