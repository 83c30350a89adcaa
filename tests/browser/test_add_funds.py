"""In a real browser: log in, open Payments Overview, add funds with the good sandbox card and see
the new balance and transaction (SPEC R13, R23, R29)."""

import re

import pytest
from playwright.sync_api import expect

from billing.models import Deposit
from tests.factories import deposit, grant
from tests.pages_helpers import browser_login, browser_page, fast_password_hashing, make_team, spend  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_add_funds_with_the_good_card_shows_the_new_balance(live_server, browser_page, fast_password_hashing):
    # given an admin whose account has 40.00 cash, some credit and spend
    team = make_team(name="Acme Shoes")
    adv = team.advertiser
    deposit(adv, "40.00")
    grant(adv, "free", "15.00")
    spend(team.campaign, "25.00")  # 15 credit + 10 cash → 30.00 cash left
    page = browser_page
    # when they log in and open Tools → Payments → Overview
    browser_login(page, live_server.url, team.users["admin"])
    page.get_by_role("link", name="Overview").click()
    expect(page).to_have_url(f"{live_server.url}/a/{adv.pk}/payments/")
    expect(page.locator("#cash-balance")).to_contain_text("$30.00")
    # and add 250.00 with the sandbox card that is approved
    page.get_by_role("link", name="Add funds").first.click()
    page.get_by_label("Amount (USD)").fill("250.00")
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    page.get_by_label("Expiry (MM/YY)").fill("12/39")
    page.get_by_role("button", name="Pay and add funds").click()
    # then they are back on the Overview with the new balance and the deposit on top of the activity
    expect(page).to_have_url(f"{live_server.url}/a/{adv.pk}/payments/")
    expect(page.get_by_role("status")).to_contain_text("$250.00 added with the card ending 4242.")
    expect(page.locator("#cash-balance")).to_contain_text("$280.00")
    first_row = page.locator(".tx-table tbody tr").first
    expect(first_row).to_contain_text("Deposit")
    expect(first_row).to_contain_text("+$250.00")
    expect(first_row).to_contain_text("Card ···· 4242")
    assert Deposit.objects.filter(advertiser=adv, source="web", card_last4="4242").count() == 1
    page.screenshot(path="/tmp/overview.png", full_page=True)
    assert page.console_errors == []


def test_declined_card_shows_the_error_and_the_balance_is_unchanged(live_server, browser_page, fast_password_hashing):
    team = make_team()
    page = browser_page
    browser_login(page, live_server.url, team.users["finance"])
    page.goto(f"{live_server.url}/a/{team.advertiser.pk}/payments/add-funds/")
    page.get_by_label("Amount (USD)").fill("100.00")
    page.get_by_label("Card number").fill("4000 0000 0000 0002")
    page.get_by_label("Expiry (MM/YY)").fill("12/39")
    page.get_by_role("button", name="Pay and add funds").click()
    expect(page.locator("#payment-error")).to_contain_text("Your card was declined.")
    expect(page.get_by_label("Amount (USD)")).to_have_value("100.00")
    expect(page.get_by_label("Card number")).to_have_value("")
    assert not Deposit.objects.filter(advertiser=team.advertiser).exists()
    page.get_by_role("link", name="Overview").click()
    expect(page.locator("#cash-balance")).to_contain_text("$0.00")
    assert re.search(r"/payments/$", page.url)
