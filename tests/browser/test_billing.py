"""In a real browser: an automatic-payment advertiser whose bill failed sees the red "Payment
failed" banner, puts a good card on file, presses Pay now, and the banner is gone and the bill is
paid (SPEC R24, R26, R29). Also: the Bills list, the printable invoice (print CSS hides the
navigation) and the invoicing Overview."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from billing.models import Bill, BillStatus
from tests.billing.bill_pages_helpers import DECLINE, auto_team, invoiced_team, last_month_invoice, threshold_bill
from tests.factories import grant
from tests.pages_helpers import browser_login, browser_page, fast_password_hashing, make_team, spend  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_failed_bill_banner_change_card_and_pay_now(live_server, browser_page, fast_password_hashing):
    # given an automatic-payment account whose card declined a 50.00 threshold bill, and more spend since
    team = auto_team(card=DECLINE, threshold="50.00", tz="America/New_York")
    bill = threshold_bill(team)
    spend(team.campaign, "32.40")
    adv = team.advertiser
    page = browser_page
    # when the admin logs in and opens Payments → Overview
    browser_login(page, live_server.url, team.users["admin"])
    page.goto(f"{live_server.url}/a/{adv.pk}/payments/")
    banner = page.locator("#payment-failed")
    # then the red banner says the payment failed and why
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("Payment failed")
    expect(banner).to_contain_text("Your card was declined.")
    expect(page.locator("#threshold-progress")).to_contain_text("$32.40 of $50.00")
    page.screenshot(path="/tmp/overview-automatic-failed.png", full_page=True)
    # when they change the card to the one that is approved
    page.locator("#card-on-file").get_by_role("link", name="Change card").click()
    expect(page).to_have_url(f"{live_server.url}/a/{adv.pk}/payments/payment-method/")
    page.get_by_label("Card number").fill("4242424242424242")
    page.get_by_label("Expiry (MM/YY)").fill("11/31")
    page.get_by_role("button", name="Save card").click()
    expect(page).to_have_url(f"{live_server.url}/a/{adv.pk}/payments/")
    expect(page.get_by_role("status")).to_contain_text("Card ending 4242 (expires 11/31) is now your payment method.")
    expect(page.locator("#card-on-file")).to_contain_text("•••• 4242")
    # and press Pay now on the banner
    banner.get_by_role("button", name="Pay now").click()
    # then the banner is gone, the payment is confirmed, and the bill shows paid
    expect(page.get_by_role("status")).to_contain_text(f"Threshold bill {bill.seq} paid: $50.00 charged to the card ending 4242.")
    expect(page.locator("#payment-failed")).to_have_count(0)
    expect(page.locator("#unpaid-bills")).to_contain_text("$0.00")
    page.screenshot(path="/tmp/overview-automatic-paid.png", full_page=True)
    page.get_by_role("link", name="Bills & invoices").first.click()
    row = page.locator(f'tr[data-bill="{bill.pk}"]')
    expect(row).to_contain_text("Paid")
    expect(row.get_by_role("button", name="Pay now")).to_have_count(0)
    page.screenshot(path="/tmp/bills.png", full_page=True)
    assert Bill.objects.get(pk=bill.pk).status == BillStatus.PAID
    assert page.console_errors == []


def test_invoice_page_prints_without_navigation_and_downloads_a_pdf(live_server, browser_page, fast_password_hashing):
    # given an invoiced account with last month's invoice, part of it paid by credit
    team = invoiced_team(name="Acme Shoes", tz="Asia/Tokyo")
    grant(team.advertiser, "free", "50.00", valid_from=timezone.now() - timedelta(days=60))
    inv = last_month_invoice(team, amount="300.00")
    spend(team.campaign, "120.00")
    adv = team.advertiser
    page = browser_page
    browser_login(page, live_server.url, team.users["finance"])
    page.goto(f"{live_server.url}/a/{adv.pk}/payments/")
    expect(page.locator("#invoicing-panel")).to_contain_text("$370.00 of $1,000.00 used")
    page.screenshot(path="/tmp/overview-invoicing.png", full_page=True)
    # when they open the invoice from Bills & invoices
    page.get_by_role("link", name="Bills & invoices").first.click()
    page.screenshot(path="/tmp/bills-invoicing.png", full_page=True)
    page.get_by_role("link", name=inv.number, exact=True).click()
    expect(page.locator("#invoice")).to_contain_text(f"Invoice {inv.number}")
    expect(page.locator("#amount-due")).to_have_text("$250.00")
    expect(page.get_by_role("button", name="Print")).to_be_visible()  # shown by print.js
    page.screenshot(path="/tmp/invoice.png", full_page=True)
    # then printing hides the navigation and the page actions, and keeps the invoice
    page.emulate_media(media="print")
    expect(page.locator(".sidebar")).to_be_hidden()
    expect(page.locator(".topbar")).to_be_hidden()
    expect(page.get_by_role("link", name="Download PDF")).to_be_hidden()
    expect(page.locator("#invoice")).to_be_visible()
    page.screenshot(path="/tmp/invoice-print.png", full_page=True)
    page.emulate_media(media="screen")
    # and the PDF downloads
    with page.expect_download() as download:
        page.get_by_role("link", name="Download PDF").click()
    assert download.value.suggested_filename == f"invoice-{inv.number}.pdf"
    assert page.console_errors == []


def test_manual_overview_screenshot_has_no_billing_panel(live_server, browser_page, fast_password_hashing):
    team = make_team(name="Acme Shoes")
    page = browser_page
    browser_login(page, live_server.url, team.users["admin"])
    page.goto(f"{live_server.url}/a/{team.advertiser.pk}/payments/")
    expect(page.locator("#cash-balance")).to_be_visible()
    expect(page.locator("#automatic-panel, #invoicing-panel, #payment-failed")).to_have_count(0)
    page.screenshot(path="/tmp/overview-manual.png", full_page=True)
    page.get_by_role("link", name="Billing method").first.click()
    expect(page.locator("#switch-automatic")).to_be_visible()
    page.screenshot(path="/tmp/billing-method.png", full_page=True)
