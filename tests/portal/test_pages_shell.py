"""The dashboard shell (SPEC R1–R3): login, the account picker, navigation by role, Dashboard and
Campaigns pages, and who may open which page."""

import pytest
from django.test import Client

from portal.models import BCMembership, CampaignStatus
from tests.factories import AdvertiserFactory, BusinessCenterFactory, CampaignFactory, UserFactory, deposit
from tests.pages_helpers import PASSWORD, fast_password_hashing, logged_in, spend, team, text  # noqa: F401

pytestmark = pytest.mark.django_db

PAGES = [
    "/a/{id}/",
    "/a/{id}/campaigns/",
    "/a/{id}/payments/",
    "/a/{id}/payments/transactions/",
    "/a/{id}/payments/transactions.csv",
    "/a/{id}/payments/add-funds/",
    "/a/{id}/payments/promotions/",
    "/a/{id}/shop/coupon-progress/",
]
PAYMENT_PAGES = [p for p in PAGES if "/payments/" in p or "/shop/" in p]


def test_login_page_logs_in_and_lands_on_the_only_account(team):
    # given a user who is admin of one advertiser
    user = team.users["admin"]
    client = Client()
    # when they open the login page
    page = client.get("/login/")
    # then they see a login form
    assert page.status_code == 200
    assert "Log in" in text(page) and 'name="username"' in page.content.decode()
    # when they log in with their password
    response = client.post("/login/", {"username": user.username, "password": PASSWORD}, follow=True)
    # then they land on their advertiser's dashboard
    assert response.redirect_chain[-1][0] == f"/a/{team.advertiser.pk}/"
    assert "Dashboard" in text(response) and "Acme Shoes" in text(response)


def test_login_with_a_wrong_password_shows_an_error(team):
    response = Client().post("/login/", {"username": team.users["admin"].username, "password": "nope"})
    assert response.status_code == 200
    assert "Please enter a correct username and password" in text(response)


def test_logout_is_a_post_and_returns_to_login(team):
    client = team.admin
    response = client.post("/logout/")
    assert response.status_code == 302 and response["Location"] == "/login/"
    assert client.get("/").status_code == 302  # logged out: back to login


def test_anonymous_is_sent_to_login_from_every_page(team):
    client = Client()
    for page in ["/", *PAGES]:
        url = page.format(id=team.advertiser.pk)
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"] == f"/login/?next={url}", url


def test_another_advertisers_user_gets_404_on_every_page(team):
    client = logged_in(team.outsider)
    for page in PAGES:
        url = page.format(id=team.advertiser.pk)
        assert client.get(url).status_code == 404, url
    # posting is refused the same way, and nothing says the account exists
    response = client.post(f"/a/{team.advertiser.pk}/payments/add-funds/", {})
    assert response.status_code == 404
    assert "Acme Shoes" not in text(response)


def test_unknown_advertiser_is_404(team):
    assert team.admin.get("/a/999999/").status_code == 404


def test_operator_sees_campaigns_but_no_payment_data(team):
    # given an account with money on it
    deposit(team.advertiser, "500.00")
    client = team.client("operator")
    # when the operator opens the dashboard
    page = client.get(f"/a/{team.advertiser.pk}/")
    # then the Payments navigation and the balances are not there
    body = text(page)
    assert page.status_code == 200
    assert "Campaigns" in body
    assert "Payments" not in body and "Cash balance" not in body and "$500.00" not in body
    assert client.get(f"/a/{team.advertiser.pk}/campaigns/").status_code == 200
    # and every payments page is forbidden, with a page saying so
    for page in PAYMENT_PAGES:
        response = client.get(page.format(id=team.advertiser.pk))
        assert response.status_code == 403, page
    forbidden = client.get(f"/a/{team.advertiser.pk}/payments/")
    assert "You don't have access to this page" in text(forbidden)
    assert "$500.00" not in text(forbidden)


def test_analyst_reads_payments_without_add_funds(team):
    deposit(team.advertiser, "500.00")
    client = team.client("analyst")
    for page in PAYMENT_PAGES:
        expected = 403 if "add-funds" in page else 200
        assert client.get(page.format(id=team.advertiser.pk)).status_code == expected, page
    overview = client.get(f"/a/{team.advertiser.pk}/payments/")
    assert "$500.00" in text(overview)
    assert "Add funds" not in text(overview)  # neither the button nor the navigation item
    assert client.post(f"/a/{team.advertiser.pk}/payments/add-funds/", {}).status_code == 403


@pytest.mark.parametrize("role", ["admin", "finance"])
def test_admin_and_finance_see_every_payments_page(team, role):
    client = team.client(role)
    for page in PAGES:
        assert client.get(page.format(id=team.advertiser.pk)).status_code == 200, page
    nav = text(client.get(f"/a/{team.advertiser.pk}/"))
    for item in ("Dashboard", "Campaigns", "Tools", "Payments", "Overview", "Transactions", "Add funds", "Promotions"):
        assert item in nav


def test_root_shows_a_picker_when_the_user_has_several_accounts(team):
    # given a user in two advertisers, one of them through a Business Center
    user = team.users["finance"]
    bc = BusinessCenterFactory(name="Acme Group")
    other = AdvertiserFactory(name="Acme Outlet", business_center=bc, currency="EUR")
    BCMembership.objects.create(user=user, business_center=bc, role="admin")
    client = logged_in(user)
    # when they open "/"
    response = client.get("/")
    # then both accounts are offered, and each opens
    body = text(response)
    assert response.status_code == 200
    assert "Acme Shoes" in body and "Acme Outlet" in body and "Someone else" not in body
    assert f'href="/a/{other.pk}/"' in response.content.decode()
    assert client.get(f"/a/{other.pk}/").status_code == 200
    # and the header offers a switcher between them
    page = client.get(f"/a/{team.advertiser.pk}/").content.decode()
    assert 'class="switcher"' in page and f'href="/a/{other.pk}/"' in page


def test_root_with_no_account_explains_it(db):
    client = logged_in(UserFactory())
    assert "You are not a member of any advertiser account" in text(client.get("/"))


def test_dashboard_summarises_campaigns_and_money(team):
    # given an account that ran out of money: 30 cash, 50 spend
    deposit(team.advertiser, "30.00")
    CampaignFactory(advertiser=team.advertiser, name="Autumn")
    spend(team.campaign, "50.00")
    # when the admin opens the dashboard
    body = text(team.admin.get(f"/a/{team.advertiser.pk}/"))
    # then it shows what is owed, the paused campaigns and the spend
    assert "2 campaigns paused for lack of funds." in body
    assert "Cash balance $0.00 $20.00 owed" in body
    assert "Spend, last 30 days $50.00 $0.00 paid by credit · $50.00 own money" in body
    assert "Billing method Manual payment" in body and "Your role Admin" in body


def test_campaigns_page_lists_objective_source_and_status(team):
    # given campaigns in every delivery state
    shop = CampaignFactory(advertiser=team.advertiser, name="Shop live", objective="PRODUCT_SALES",
                           product_source="TIKTOK_SHOP", shop_id="S-77")
    paused = CampaignFactory(advertiser=team.advertiser, name="Old promo", objective="REACH")
    paused.status = CampaignStatus.PAUSED
    paused.save()
    deposit(team.advertiser, "20.00")
    spend(team.campaign, "25.00")  # runs out of money: Spring sale and Shop live pause
    # when the operator opens Campaigns
    response = team.client("operator").get(f"/a/{team.advertiser.pk}/campaigns/")
    body = text(response)
    # then each row shows objective, product source and status; paused_funds stands out
    assert "3 campaigns" in body
    assert "2 campaigns paused because the account is out of funds." in body
    assert "Shop live" in body and "Product sales TikTok Shop · shop S-77 Paused — add funds" in body
    assert "Spring sale" in body and "Traffic None Paused — add funds" in body
    assert "Old promo" in body and "Reach None Paused" in body
    # the operator cannot add funds, so the banner does not link there
    assert "/payments/add-funds/" not in response.content.decode()
    assert shop.pk and body.index("Shop live") < body.index("Old promo")  # paused_funds first


def test_pages_carry_csrf_in_hx_headers_and_no_inline_script(team):
    html = team.admin.get(f"/a/{team.advertiser.pk}/payments/").content.decode()
    assert "hx-headers='{\"X-CSRFToken\": \"" in html
    assert "<script>" not in html and "<script " in html  # only src= scripts
    assert 'src="/static/vendor/htmx.min.js"' in html


def test_bc_admin_acts_as_admin_of_bc_advertisers(db):
    bc = BusinessCenterFactory()
    adv = AdvertiserFactory(business_center=bc)
    user = UserFactory()
    BCMembership.objects.create(user=user, business_center=bc, role="finance")
    client = logged_in(user)
    # BC finance acts as finance of every advertiser of the BC: it may add funds, not assign coupons
    assert client.get(f"/a/{adv.pk}/payments/add-funds/").status_code == 200
    assert "Finance" in text(client.get(f"/a/{adv.pk}/"))
    # and an advertiser outside the BC stays invisible
    assert client.get(f"/a/{AdvertiserFactory().pk}/").status_code == 404
