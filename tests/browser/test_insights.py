"""In a real browser (SPEC R47–R50): the expiry forecast, the runway, the ladder pace and the
"Why?" explainer swapped in with htmx, at desktop and phone width, with no console or CSP error."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from promotions.credits import credit_assign
from promotions.models import Enrollment
from promotions.programs import program_create
from tests.factories import CampaignFactory, deposit, grant
from tests.pages_helpers import browser_login, browser_page, fast_password_hashing, make_team, spend  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("width", [1360, 375])
def test_forecast_runway_pace_and_why_are_seen(live_server, browser_page, fast_password_hashing, width):
    now = timezone.now()
    team = make_team(name="Acme Shoes")
    adv = team.advertiser
    deposit(adv, "500.00")
    reach = CampaignFactory(advertiser=adv, name="Brand reach", objective="REACH")
    grant(adv, "free", "200.00", eligible_objectives=["REACH"], valid_from=now - timedelta(days=30),
          expires_at=now + timedelta(days=10))
    coupon = grant(adv, "assignable", "5.00", valid_from=now - timedelta(days=2))
    credit_assign(credit=coupon, campaign_ids=[team.campaign.pk])
    for d in range(7):
        spend(reach, "10.00", occurred_at=now - timedelta(days=d, hours=1))
    spend(team.campaign, "8.00", occurred_at=now - timedelta(minutes=5))
    program = program_create(name="Spend more", kind="new_advertiser", window_days=30,
                             tiers=[{"threshold": "2000.00", "reward": "100.00"},
                                    {"threshold": "6000.00", "reward": "500.00"}])
    Enrollment.objects.create(advertiser=adv, program=program, window_start=now - timedelta(days=10),
                              window_end=now + timedelta(days=20), qualifying_spend=Decimal("1000.00"))
    page = browser_page
    page.set_viewport_size({"width": width, "height": 900})
    browser_login(page, live_server.url, team.users["admin"])

    # the Overview shows the runway
    page.goto(f"{live_server.url}/a/{adv.pk}/payments/")
    expect(page.locator("#runway-funds")).to_contain_text("Campaigns pause in about")
    # the Promotions page: each credit's forecast and the enrollment's pace
    page.goto(f"{live_server.url}/a/{adv.pk}/payments/promotions/")
    expect(page.locator(".forecast").first).to_be_visible()
    expect(page.locator(".credits-table")).to_contain_text("lapses on")
    expect(page.locator(".credits-table")).to_contain_text("Brand reach could use it")
    expect(page.locator(".program-pace")).to_contain_text("At this pace you reach the $2,000.00 tier")
    expect(page.locator(".program-pace")).to_contain_text("/day reaches $6,000.00")
    # Transactions: "Why?" swaps the explainer in, in the same document
    page.goto(f"{live_server.url}/a/{adv.pk}/payments/transactions/?kind=charge")
    page.evaluate("window.__sameDocument = true")
    page.locator(".why-link").first.click()
    panel = page.locator("#charge-why #charge-explanation")
    expect(panel).to_be_visible()
    expect(panel).to_contain_text("Paid $5.00 of this charge")
    expect(panel).to_contain_text("Not for this campaign's objective")
    assert page.evaluate("window.__sameDocument") is True
    # nothing off the screen at phone width
    overflow = page.evaluate("document.documentElement.scrollWidth > window.innerWidth + 1")
    assert not overflow
    page.screenshot(path=f"/tmp/insights-{width}.png", full_page=True)
    assert page.console_errors == []
