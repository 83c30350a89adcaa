"""The spending limit on Tools → Payments → Billing method (SPEC R43, decision 0032)."""

from decimal import Decimal

import pytest
from django.test import Client

from billing.limits import spending_limit_set
from portal.models import Advertiser, AuditLog, CampaignStatus
from tests.factories import deposit
from tests.pages_helpers import element, fast_password_hashing, logged_in, spend, team, text  # noqa: F401

pytestmark = pytest.mark.django_db


def url(t):
    return f"/a/{t.advertiser.pk}/payments/billing-method/"


def limit_of(t):
    return Advertiser.objects.get(pk=t.advertiser.pk).spending_limit


def test_r43_an_admin_sets_a_monthly_limit_and_sees_its_progress(team):
    deposit(team.advertiser, "500.00", key="page-lim")
    spend(team.campaign, "30.00")
    response = team.admin.post(url(team), {"form": "spending_limit", "amount": "120.00", "period": "monthly"})
    assert response.status_code == 302 and response["Location"].endswith("#spending-limit")
    assert limit_of(team) == Decimal("120.00")
    page = team.admin.get(url(team)).content.decode()
    section = text(element(page, "spending-limit"))
    assert "$30.00 of $120.00 spent this month — $90.00 left" in section
    assert '<progress class="meter" max="120.0000" value="30.00"' in page or 'max="120.0000"' in page
    assert AuditLog.objects.get(action="spending_limit").reason == "Set on the Billing method page"


def test_r43_the_page_says_campaigns_are_paused_by_the_limit_and_removing_it_resumes_them(team):
    deposit(team.advertiser, "500.00", key="page-lim-2")
    spending_limit_set(advertiser=team.advertiser, amount="20.00", period="lifetime")
    spend(team.campaign, "25.00")
    section = text(element(team.admin.get(url(team)).content.decode(), "spending-limit"))
    assert "1 campaign paused: the spending limit is reached. Raise or remove it to resume." in section
    assert "in the account's lifetime — $0.00 left" in section
    team.admin.post(url(team), {"form": "spending_limit", "amount": "", "period": "lifetime"})
    team.campaign.refresh_from_db()
    assert (limit_of(team), team.campaign.status) == (None, CampaignStatus.ACTIVE)
    assert "No spending limit" in text(element(team.admin.get(url(team)).content.decode(), "spending-limit"))


@pytest.mark.parametrize("amount, message", [
    ("-5", "amount must be zero or more, got -5."),
    ("12.345", "places"),
    ("lots", "is not a decimal number written like \"12.50\"."),
])
def test_r43_a_bad_amount_is_explained_beside_the_field_and_nothing_is_saved(team, amount, message):
    response = team.admin.post(url(team), {"form": "spending_limit", "amount": amount, "period": "monthly"})
    assert response.status_code == 422
    field = element(response.content.decode(), "id_amount_error")
    assert message.lower() in text(field).lower(), text(field)
    assert 'aria-invalid="true"' in response.content.decode()
    assert limit_of(team) is None and not AuditLog.objects.filter(action="spending_limit").exists()


@pytest.mark.parametrize("role", ["finance", "analyst"])
def test_r43_only_an_admin_sets_the_limit_others_see_it(team, role):
    spending_limit_set(advertiser=team.advertiser, amount="50.00", period="monthly")
    client = team.client(role)
    page = client.get(url(team))
    assert "Only an admin of the account can set its spending limit." in text(element(page.content.decode(), "spending-limit"))
    assert client.post(url(team), {"form": "spending_limit", "amount": "", "period": "monthly"}).status_code == 403
    assert limit_of(team) == Decimal("50.00")


def test_r43_another_advertisers_admin_gets_404_and_anonymous_goes_to_login(team):
    body = {"form": "spending_limit", "amount": "10.00", "period": "monthly"}
    assert logged_in(team.outsider).post(url(team), body).status_code == 404
    anonymous = Client().post(url(team), body)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/login/?next=")
    assert limit_of(team) is None


def test_r43_campaigns_and_the_dashboard_say_why_campaigns_paused_and_where_to_lift_the_limit(team):
    deposit(team.advertiser, "500.00", key="page-lim-3")
    spending_limit_set(advertiser=team.advertiser, amount="20.00", period="monthly")
    spend(team.campaign, "25.00")
    for path in (f"/a/{team.advertiser.pk}/campaigns/", f"/a/{team.advertiser.pk}/"):
        page = team.admin.get(path).content.decode()
        banner = element(page, "limit-banner")
        assert "1 campaign paused: the account's spending limit is reached." in text(banner)
        assert f'href="/a/{team.advertiser.pk}/payments/billing-method/#spending-limit"' in banner, path
    campaigns = team.admin.get(f"/a/{team.advertiser.pk}/campaigns/").content.decode()
    assert "Paused — spending limit" in text(campaigns)
    # an operator sees no payment pages: told who can lift it instead of a link it cannot open
    operator = text(element(team.client("operator").get(f"/a/{team.advertiser.pk}/campaigns/").content.decode(),
                            "limit-banner"))
    assert "Delivery resumes when an admin raises or removes the limit" in operator
