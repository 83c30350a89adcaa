"""In a real browser: the Transactions filters swap the table in place with htmx — no full page
reload — and push the filtered URL into the history (SPEC R14)."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from promotions.credits import credit_assign
from tests.factories import deposit, grant
from tests.pages_helpers import browser_login, browser_page, fast_password_hashing, make_team, spend  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_filter_updates_the_table_without_reloading_the_page(live_server, browser_page, fast_password_hashing):
    # given an account with a deposit, credits and charges over two weeks
    team = make_team(name="Acme Shoes")
    adv = team.advertiser
    deposit(adv, "500.00")
    grant(adv, "discount", "20.00", percent="25")
    coupon = grant(adv, "assignable", "30.00", valid_from=timezone.now() - timedelta(days=20))
    credit_assign(credit=coupon, campaign_ids=[team.campaign.pk])
    for days, amount in [(12, "42.00"), (8, "18.50"), (3, "64.00"), (1, "27.25"), (0, "9.99")]:
        spend(team.campaign, amount, occurred_at=timezone.now() - timedelta(days=days, minutes=5))
    page = browser_page
    browser_login(page, live_server.url, team.users["analyst"])
    page.get_by_role("link", name="Transactions").click()
    expect(page.locator("#tx-count")).to_have_text("8 transactions")
    # mark this document: a full reload would drop the mark
    page.evaluate("window.__sameDocument = true")
    # when the analyst picks the Deposit type
    page.get_by_label("Type").select_option("deposit")
    # then the table shows only the deposit, in the same document, and the URL follows
    expect(page.locator("#tx-count")).to_have_text("1 transaction")
    expect(page.locator(".tx-table tbody tr")).to_have_count(1)
    expect(page.locator(".tx-table tbody tr").first).to_contain_text("+$500.00")
    expect(page).to_have_url(f"{live_server.url}/a/{adv.pk}/payments/transactions/?date_from=&date_to=&kind=deposit")
    assert page.evaluate("window.__sameDocument") is True
    # when they switch to ad spend of the last 5 days
    page.get_by_label("Type").select_option("charge")
    expect(page.locator("#tx-count")).to_have_text("5 transactions")
    page.get_by_label("From").fill((timezone.localdate() - timedelta(days=5)).isoformat())  # fires "change"
    expect(page.locator("#tx-count")).to_have_text("3 transactions")
    expect(page.locator(".tx-table")).to_contain_text("Discount $2.49 · Cash $7.50")
    expect(page.locator(".tx-table")).not_to_contain_text("Deposit")
    assert page.evaluate("window.__sameDocument") is True
    # and the CSV link in the swapped table follows the filters
    href = page.get_by_role("link", name="Export CSV").get_attribute("href")
    assert "kind=charge" in href and "date_from=" in href
    page.screenshot(path="/tmp/transactions.png", full_page=True)
    # going back steps through the filters as they were pushed
    page.go_back()
    expect(page.locator("#tx-count")).to_have_text("5 transactions")  # all ad spend, no date yet
    page.go_back()
    expect(page.locator("#tx-count")).to_have_text("1 transaction")  # the deposit
    expect(page.get_by_label("Type")).to_have_value("deposit")
    assert page.console_errors == []
