"""Tools → Payments → Refund & close (SPEC R42, R23, R8): the account's admin asks for the refund of
the unspent cash balance, after a confirmation that shows the credit that will be forfeited. Only
the admin may; finance, analyst and operator get 403, another advertiser's user 404."""

import re
from decimal import Decimal

import pytest
from django.test import Client

from billing.models import LedgerAccount, LedgerTransaction, Purpose
from portal.models import Advertiser, Campaign
from promotions.models import Credit
from tests.api_matrix import database_state
from tests.factories import deposit, grant
from tests.pages_helpers import (  # noqa: F401
    element,
    fast_password_hashing,
    logged_in,
    spend,
    team,
    text,
)

pytestmark = pytest.mark.django_db
D = Decimal


def url(t):
    return f"/a/{t.advertiser.pk}/payments/refund/"


def cash(t) -> Decimal:
    return LedgerAccount.objects.get(advertiser=t.advertiser, purpose=Purpose.CASH).balance


def status(t) -> str:
    return Advertiser.objects.get(pk=t.advertiser.pk).status


def submit_button(html: str) -> str:
    return re.search(r"<button[^>]*type=\"submit\"[^>]*>.*?</button>", element(html, "refund-form"), re.S).group(0)


@pytest.fixture
def funded(team):
    """$250 of cash, a free credit, a discount and a pending coupon — and a used-up credit that is
    not forfeited (nothing is left of it)."""
    deposit(team.advertiser, "250.00")
    team.free = grant(team.advertiser, "free", "30.00")
    team.discount = grant(team.advertiser, "discount", "40.00", percent="10")
    team.coupon = grant(team.advertiser, "assignable", "25.00", status="pending")
    return team


# --- what the admin sees -----------------------------------------------------------------------

def test_admin_sees_the_cash_refunded_and_every_credit_forfeited(funded):
    page = funded.admin.get(url(funded))

    assert page.status_code == 200
    html = page.content.decode()
    assert text(element(html, "refund-amount")) == "$250.00"
    rows = {int(m.group(1)): text(m.group(0)) for m in
            re.finditer(r'<tr data-credit="(\d+)">.*?</tr>', element(html, "forfeited-credits"), re.S)}
    expires = funded.free.expires_at.strftime("%b %-d, %Y")
    assert rows == {
        funded.free.pk: f"Free credit #{funded.free.pk} Active $30.00 {expires}",
        funded.discount.pk: f"Discount (10% off) #{funded.discount.pk} Active $40.00 cap left {expires}",
        funded.coupon.pk: f"Coupon #{funded.coupon.pk} Pending $25.00 {expires}",
    }
    assert "$95.00" in text(element(html, "forfeited-total"))
    warning = text(element(html, "refund-warning"))
    assert "The account will be closed." in warning and "1 campaign that is not paused will be stopped" in warning
    assert "Ad credit is never refunded or paid out in cash." in text(page)
    # the admin can confirm: an enabled box and button, no refusal
    assert 'name="confirm"' in html and "disabled" not in re.search(r'<input[^>]*name="confirm"[^>]*>', html).group(0)
    button = submit_button(html)
    assert "disabled" not in button and "Refund $250.00 and close the account" in text(button)
    assert 'id="refund-refused"' not in html


def test_used_up_and_expired_credit_is_not_listed(team):
    deposit(team.advertiser, "100.00")
    used = grant(team.advertiser, "free", "5.00")
    spend(team.campaign, "5.00")  # the credit pays it all
    assert Credit.objects.get(pk=used.pk).status == "used_up"

    html = team.admin.get(url(team)).content.decode()

    assert 'id="forfeited-credits"' not in html
    assert "This account holds no ad credit: nothing is forfeited." in text(element(html, "no-credit"))


def test_the_page_is_in_the_payments_navigation_for_the_admin_only(funded):
    html = funded.admin.get(f"/a/{funded.advertiser.pk}/payments/").content.decode()
    assert f'href="{url(funded)}"' in html
    page = funded.admin.get(url(funded)).content.decode()
    assert re.search(rf'<a href="{re.escape(url(funded))}" class="nav-item nav-sub is-active" aria-current="page">'
                     r"Refund &amp; close</a>", page)
    for role in ("finance", "analyst", "operator"):
        html = funded.client(role).get(f"/a/{funded.advertiser.pk}/").content.decode()
        assert f'href="{url(funded)}"' not in html, role


# --- the refund --------------------------------------------------------------------------------

def test_post_refunds_the_cash_closes_the_account_and_forfeits_the_credit(funded):
    response = funded.admin.post(url(funded), {"confirm": "on"}, follow=True)

    assert response.redirect_chain == [(url(funded), 302)]
    assert "$250.00 refunded. The account is closed, its campaigns are stopped and its ad credit was forfeited." \
        in text(response)
    assert "This account is closed" in text(element(response.content.decode(), "refund-closed"))
    assert 'id="refund-form"' not in response.content.decode()
    # the ledger: no cash left, one refund of all of it, each credit's remainder forfeited
    assert cash(funded) == D("0")
    assert status(funded) == "closed"
    assert list(Campaign.objects.filter(advertiser=funded.advertiser).values_list("status", flat=True)) == ["paused"]
    credits = {c.pk: (c.status, c.remaining) for c in
               Credit.objects.filter(advertiser=funded.advertiser).select_related("ledger_account")}
    assert credits == {funded.free.pk: ("expired", D("0")), funded.discount.pk: ("expired", D("0")),
                       funded.coupon.pk: ("expired", D("0"))}
    moves = sorted(LedgerTransaction.objects.filter(advertiser=funded.advertiser, kind__in=["refund", "credit_forfeit"])
                   .values_list("kind", "amount"))
    assert moves == [("credit_forfeit", D("25")), ("credit_forfeit", D("30")), ("credit_forfeit", D("40")),
                     ("refund", D("250"))]
    assert LedgerAccount.objects.get(advertiser=funded.advertiser, purpose=Purpose.FORFEITURE).balance == D("95.00")


def test_a_second_post_is_refused_and_refunds_nothing_more(funded):
    funded.admin.post(url(funded), {"confirm": "on"})
    before = database_state()

    response = funded.admin.post(url(funded), {"confirm": "on"})

    assert response.status_code == 409
    assert database_state() == before
    assert LedgerTransaction.objects.filter(advertiser=funded.advertiser, kind="refund").count() == 1


# --- refusals: said before anyone clicks, and nothing recorded ---------------------------------

def test_nothing_to_refund_is_said_up_front_and_the_button_is_disabled(team):
    grant(team.advertiser, "free", "30.00")  # credit, but no cash

    page = team.admin.get(url(team))

    assert page.status_code == 200
    html = page.content.decode()
    refused = element(html, "refund-refused")
    assert 'role="alert"' in refused and 'data-code="nothing_to_refund"' in refused
    assert "There is no unspent cash balance to refund." in text(refused)
    button = submit_button(html)
    assert "disabled" in button and 'aria-describedby="refund-refused"' in button
    assert "disabled" in re.search(r'<input[^>]*name="confirm"[^>]*>', html).group(0)


def test_arrears_refuse_the_refund_with_the_reason_and_nothing_is_recorded(team):
    deposit(team.advertiser, "20.00")
    spend(team.campaign, "25.00")  # 5.00 in arrears
    grant(team.advertiser, "free", "10.00")

    page = team.admin.get(url(team))
    assert page.status_code == 200
    assert "The account has unpaid arrears." in text(element(page.content.decode(), "refund-refused"))
    assert "disabled" in submit_button(page.content.decode())

    before = database_state()
    response = team.admin.post(url(team), {"confirm": "on"})  # posted anyway

    assert response.status_code == 409
    html = response.content.decode()
    refused = element(html, "refund-refused")
    assert 'data-code="not_in_good_standing"' in refused and "The account has unpaid arrears." in text(refused)
    assert database_state() == before
    assert status(team) == "active"
    assert Credit.objects.get(advertiser=team.advertiser).status == "active"


def test_a_suspended_account_is_refused(team):
    deposit(team.advertiser, "50.00")
    Advertiser.objects.filter(pk=team.advertiser.pk).update(status="suspended")

    html = team.admin.get(url(team)).content.decode()

    assert "A refund needs an active account; this one is suspended." in text(element(html, "refund-refused"))
    before = database_state()
    assert team.admin.post(url(team), {"confirm": "on"}).status_code == 409
    assert database_state() == before
    assert cash(team) == D("50.00")


# --- the confirmation and CSRF -----------------------------------------------------------------

def test_post_without_confirmation_records_nothing_and_says_so_at_the_box(funded):
    client = Client(enforce_csrf_checks=True)
    client.force_login(funded.users["admin"])
    page = client.get(url(funded)).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', element(page, "refund-form")).group(1)
    before = database_state()

    # without the CSRF token: refused by Django's CSRF check
    assert client.post(url(funded), {"confirm": "on"}).status_code == 403
    assert database_state() == before

    # with the token but without the box ticked
    response = client.post(url(funded), {"csrfmiddlewaretoken": token})

    assert response.status_code == 422
    html = response.content.decode()
    box = re.search(r'<input[^>]*name="confirm"[^>]*>', html).group(0)
    assert 'aria-invalid="true"' in box and 'aria-describedby="id_confirm_error"' in box
    assert "Tick the box to confirm the refund and the closing of the account." in text(element(html, "id_confirm_error"))
    assert database_state() == before
    assert cash(funded) == D("250.00") and status(funded) == "active"


# --- who may -----------------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["finance", "analyst", "operator"])
def test_other_roles_get_403_and_cannot_refund(funded, role):
    client = funded.client(role)
    page = client.get(url(funded))
    assert page.status_code == 403
    assert "You don't have access to this page" in text(page)
    before = database_state()
    assert client.post(url(funded), {"confirm": "on"}).status_code == 403
    assert database_state() == before
    assert cash(funded) == D("250.00")


def test_admin_gets_200(funded):
    assert funded.admin.get(url(funded)).status_code == 200


def test_another_advertisers_user_gets_404_and_anonymous_goes_to_login(funded):
    outsider = logged_in(funded.outsider)
    before = database_state()
    assert outsider.get(url(funded)).status_code == 404
    assert outsider.post(url(funded), {"confirm": "on"}).status_code == 404
    for method in ("get", "post"):
        response = getattr(Client(), method)(url(funded))
        assert response.status_code == 302
        assert response["Location"] == f"/login/?next={url(funded)}"
    assert database_state() == before
    assert status(funded) == "active"
