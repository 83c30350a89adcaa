"""Tools → Payments → Bills & invoices: the list, Pay now, the printable invoice and its PDF
(SPEC R1, R24, R26, R27, R29)."""

import re
from datetime import timedelta
from decimal import Decimal
from io import BytesIO
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from pypdf import PdfReader

from billing.autopay import payment_method_set
from billing.models import Bill, BillKind, BillStatus, GatewayCharge
from billing.selectors import advertiser_balances
from portal.models import CampaignStatus
from tests.billing.bill_pages_helpers import (
    DECLINE,
    GOOD,
    TIMEOUT,
    auto_team,
    bill_rows_only,
    invoiced_team,
    last_month_invoice,
    threshold_bill,
)
from tests.factories import grant
from tests.pages_helpers import element, fast_password_hashing, logged_in, spend, text  # noqa: F401

pytestmark = pytest.mark.django_db


def urls(t, bill) -> dict:
    base = f"/a/{t.advertiser.pk}/payments/bills/"
    return {"list": base, "detail": f"{base}{bill.pk}/", "pdf": f"{base}{bill.pk}.pdf", "pay": f"{base}{bill.pk}/pay/"}


def pdf_text(content: bytes) -> str:
    return " ".join(page.extract_text() for page in PdfReader(BytesIO(content)).pages)


# --- who may see and pay (R1) ------------------------------------------------------------------
@pytest.mark.parametrize("role,read,pay", [
    ("admin", 200, 302), ("finance", 200, 302), ("analyst", 200, 403), ("operator", 403, 403),
])
def test_role_matrix(db, fast_password_hashing, role, read, pay):
    # given an automatic-payment account with a failed bill
    t = auto_team(card=DECLINE, threshold="50.00")
    bill = threshold_bill(t)
    u = urls(t, bill)
    client = t.client(role)
    # then the pages answer by role, and only admin and finance can pay
    for name in ("list", "detail", "pdf"):
        assert client.get(u[name]).status_code == read, name
    assert client.post(u["pay"]).status_code == pay
    assert Bill.objects.get(pk=bill.pk).attempts == (2 if pay == 302 else 1)  # a refused role never charges


def test_other_advertiser_gets_404_and_anonymous_goes_to_login(db, fast_password_hashing):
    t = auto_team(card=DECLINE, threshold="50.00")
    bill = threshold_bill(t)
    u = urls(t, bill)
    outsider = logged_in(t.outsider)
    for name in ("list", "detail", "pdf"):
        assert outsider.get(u[name]).status_code == 404
        response = Client().get(u[name])
        assert response.status_code == 302 and response["Location"].startswith("/login/?next=")
    assert outsider.post(u["pay"]).status_code == 404
    assert Client().post(u["pay"]).status_code == 302
    assert Bill.objects.get(pk=bill.pk).attempts == 1


def test_another_advertisers_bill_is_404_under_my_advertiser(db, fast_password_hashing):
    # given two accounts, each with a bill, and an admin of the first
    mine, theirs = auto_team(threshold="50.00"), auto_team(card=DECLINE, threshold="50.00")
    threshold_bill(mine)
    other_bill = threshold_bill(theirs)
    client = mine.admin
    base = f"/a/{mine.advertiser.pk}/payments/bills/{other_bill.pk}"
    # then the other account's bill is not reachable through my advertiser's URLs
    assert client.get(f"{base}/").status_code == 404
    assert client.get(f"{base}.pdf").status_code == 404
    assert client.post(f"{base}/pay/").status_code == 404
    assert Bill.objects.get(pk=other_bill.pk).status == BillStatus.FAILED


def test_pay_now_needs_post(db, fast_password_hashing):
    t = auto_team(card=DECLINE, threshold="50.00")
    bill = threshold_bill(t)
    assert t.admin.get(urls(t, bill)["pay"]).status_code == 405
    assert Bill.objects.get(pk=bill.pk).attempts == 1


# --- the list ----------------------------------------------------------------------------------
def test_list_shows_each_bill_with_status_attempts_and_dates(db, fast_password_hashing):
    # given a paid threshold bill, then a failed one (card swapped for one that declines)
    t = auto_team(threshold="50.00", tz="Asia/Tokyo")
    paid = threshold_bill(t)
    payment_method_set(advertiser=t.advertiser, card_number=DECLINE, expiry="12/30")
    failed = threshold_bill(t)
    # when the finance member opens Bills & invoices
    response = t.client("finance").get(f"/a/{t.advertiser.pk}/payments/bills/")
    html = response.content.decode()
    assert response.status_code == 200
    rows = re.findall(r'<tr data-bill="(\d+)" data-status="(\w+)"', html)
    # then both bills are listed, newest first, with their status, attempts and local dates
    assert rows == [(str(failed.pk), "failed"), (str(paid.pk), "paid")]
    failed_row = text(element(html, "bills").split(f'data-bill="{failed.pk}"')[1].split("</tr>")[0])
    issued = failed.issued_at.astimezone(t.advertiser.tz)
    assert failed.seq == 2 and "2 Threshold bill" in failed_row  # its number in the account and "$50.00" in failed_row
    assert "Payment failed Your card was declined." in failed_row
    assert f"{issued:%b} {issued.day}, {issued:%Y}" in failed_row
    assert "Pay now" in failed_row
    paid_row = text(html.split(f'data-bill="{paid.pk}"')[1].split("</tr>")[0])
    assert "Paid" in paid_row and "Pay now" not in paid_row
    assert '<span class="badge badge-bill-failed">Payment failed</span>' in html
    assert '<span class="badge badge-bill-paid">Paid</span>' in html
    assert "2 bills" in text(html)


def test_invoice_row_shows_number_period_and_due_date(db, fast_password_hashing):
    t = invoiced_team()
    inv = last_month_invoice(t)
    html = t.admin.get(f"/a/{t.advertiser.pk}/payments/bills/").content.decode()
    row = text(html.split(f'data-bill="{inv.pk}"')[1].split("</tr>")[0])
    start = inv.period_start.astimezone(t.advertiser.tz)
    last = (inv.period_end - timedelta(seconds=1)).astimezone(t.advertiser.tz)
    due = inv.due_at.astimezone(t.advertiser.tz)
    assert inv.number in row and "Monthly invoice" in row and "$300.00" in row and "Open" in row
    assert f"{start:%b} 1 – {last:%b} {last.day}, {last:%Y}" in row
    assert f"{due:%b} {due.day}, {due:%Y}" in row
    assert "Pay now" in row  # an open invoice can be paid before its due date


def test_analyst_sees_bills_without_pay_now(db, fast_password_hashing):
    t = auto_team(card=DECLINE, threshold="50.00")
    threshold_bill(t)
    body = text(t.client("analyst").get(f"/a/{t.advertiser.pk}/payments/bills/"))
    assert "Payment failed" in body and "Pay now" not in body
    assert "Read only: an admin or finance member pays bills." in body


def test_list_when_there_are_no_bills(db, fast_password_hashing):
    t = auto_team()
    body = text(t.admin.get(f"/a/{t.advertiser.pk}/payments/bills/"))
    assert "No bills yet" in body and "when your spend reaches the billing threshold" in body


def test_nav_has_bills_and_invoices(db, fast_password_hashing):
    t = auto_team()
    html = t.client("analyst").get(f"/a/{t.advertiser.pk}/payments/bills/").content.decode()
    assert re.search(rf'<a href="/a/{t.advertiser.pk}/payments/bills/" class="nav-item nav-sub is-active"'
                     r' aria-current="page">Bills &amp; invoices</a>', html)
    operator_html = t.client("operator").get(f"/a/{t.advertiser.pk}/campaigns/").content.decode()
    assert "Bills &amp; invoices" not in operator_html


def _queries(client, url) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def test_list_runs_the_same_queries_with_2_or_30_bills(db, fast_password_hashing):
    small, large = auto_team(), auto_team()
    bill_rows_only(small.advertiser, 2)
    bill_rows_only(large.advertiser, 30)
    n_small = _queries(small.admin, f"/a/{small.advertiser.pk}/payments/bills/")
    n_large = _queries(large.admin, f"/a/{large.advertiser.pk}/payments/bills/")
    assert n_small == n_large and n_large <= 8


# --- Pay now (R26) -----------------------------------------------------------------------------
def test_pay_now_approved_pays_the_bill_and_says_so(db, fast_password_hashing):
    # given a failed bill and campaigns paused after three failures
    t = auto_team(card=DECLINE, threshold="50.00")
    bill = threshold_bill(t)
    t.advertiser.failed_payments = 3
    t.advertiser.save(update_fields=["failed_payments"])
    t.campaign.status = CampaignStatus.PAUSED_FUNDS
    t.campaign.save(update_fields=["status"])
    # when the admin puts the good card on file and presses Pay now on the list
    payment_method_set(advertiser=t.advertiser, card_number=GOOD, expiry="12/30")
    u = urls(t, bill)
    response = t.admin.post(u["pay"], {"next": u["list"]}, follow=True)
    # then they are back on the list, told it was paid, and the bill shows paid
    assert response.redirect_chain == [(u["list"], 302)]
    body = text(response)
    assert f"Threshold bill {bill.seq} paid: $50.00 charged to the card ending 4242." in body
    bill.refresh_from_db()
    t.campaign.refresh_from_db()
    assert bill.status == BillStatus.PAID and bill.card_last4 == "4242"
    assert t.campaign.status == CampaignStatus.ACTIVE
    assert advertiser_balances(advertiser=t.advertiser).outstanding_bills == 0
    assert GatewayCharge.objects.filter(idempotency_key=f"bill-{bill.pk}").count() == 1
    assert re.search(rf'data-bill="{bill.pk}" data-status="paid"', response.content.decode())


def test_pay_now_declined_shows_the_gateways_message(db, fast_password_hashing):
    t = auto_team(card=DECLINE, threshold="50.00")
    bill = threshold_bill(t)
    response = t.client("finance").post(urls(t, bill)["pay"], follow=True)
    body = text(response)
    assert response.redirect_chain == [(urls(t, bill)["list"], 302)]  # no `next`: the list
    assert (f"Threshold bill {bill.seq} was not paid: Your card was declined. Use another card or contact your bank."
            in body)
    assert '<div class="alert alert-error">' in response.content.decode()
    bill.refresh_from_db()
    assert bill.status == BillStatus.FAILED and bill.attempts == 2
    assert not GatewayCharge.objects.exists()


def test_pay_now_timeout_says_nothing_was_taken(db, fast_password_hashing):
    t = auto_team(card=TIMEOUT, threshold="50.00")
    bill = threshold_bill(t)
    body = text(t.admin.post(urls(t, bill)["pay"], follow=True))
    assert "was not paid: The card processor did not answer in time" in body
    assert Bill.objects.get(pk=bill.pk).status == BillStatus.FAILED


def test_pay_now_on_a_paid_bill_is_refused_with_the_services_message(db, fast_password_hashing):
    t = auto_team(threshold="50.00")
    bill = threshold_bill(t)
    assert bill.status == BillStatus.PAID
    body = text(t.admin.post(urls(t, bill)["pay"], follow=True))
    assert "This bill is already paid." in body
    assert GatewayCharge.objects.count() == 1


def test_pay_now_ignores_a_next_url_on_another_host(db, fast_password_hashing):
    t = auto_team(card=DECLINE, threshold="50.00")
    bill = threshold_bill(t)
    response = t.admin.post(urls(t, bill)["pay"], {"next": "https://evil.example/phish"})
    assert response["Location"] == urls(t, bill)["list"]


def test_pay_now_on_an_invoice_restores_the_credit_line(db, fast_password_hashing):
    t = invoiced_team()
    inv = last_month_invoice(t, amount="300.00")
    assert advertiser_balances(advertiser=t.advertiser).credit_line_used == Decimal("300.00")
    response = t.admin.post(urls(t, inv)["pay"], {"next": urls(t, inv)["detail"]}, follow=True)
    assert response.redirect_chain == [(urls(t, inv)["detail"], 302)]
    assert f"Invoice {inv.number} paid: $300.00 charged to the card ending 4242." in text(response)
    assert advertiser_balances(advertiser=t.advertiser).credit_line_used == 0
    assert "Paid" in text(element(response.content.decode(), "invoice-status"))


# --- the printable invoice and its PDF ---------------------------------------------------------
def test_invoice_page_shows_issuer_dates_in_the_account_zone_lines_and_totals(db, fast_password_hashing):
    # given an invoiced account in Tokyo with 300.00 of spend last month, 50.00 paid by credit
    t = invoiced_team(name="Acme Shoes")
    tz = t.advertiser.tz
    grant(t.advertiser, "free", "50.00", valid_from=t.advertiser.registered_at - timedelta(days=90))
    inv = last_month_invoice(t, amount="300.00")
    # when the analyst opens it
    response = t.client("analyst").get(urls(t, inv)["detail"])
    html = response.content.decode()
    invoice = text(element(html, "invoice"))
    # then it reads as an invoice: issuer, number, who is billed, local dates, lines and totals
    assert f"Ads Manager Billing Issuer ADC · billing@adcredit.example Invoice {inv.number} Open" in invoice
    assert f"Billed to Acme Shoes Advertiser ID {t.advertiser.pk}" in invoice
    issued = inv.issued_at.astimezone(tz)
    due = inv.due_at.astimezone(tz)
    start = inv.period_start.astimezone(tz)
    last = (inv.period_end - timedelta(seconds=1)).astimezone(tz)
    # issued on the 1st, local time (in UTC it is still the day before)
    assert issued.day == 1 and inv.issued_at.astimezone(ZoneInfo("UTC")).day != 1
    assert f"Issued {issued:%b} 1, {issued:%Y}" in invoice
    assert f"Due {due:%b} {due.day}, {due:%Y}" in invoice
    assert f"Period {start:%b} 1, {start:%Y} – {last:%b} {last.day}, {last:%Y} Dates in Asia/Tokyo" in invoice
    assert "Gross ad spend Ad spend that occurred" in invoice and "$300.00" in invoice
    assert "Credits applied Promotional credit, coupons and discounts −$50.00" in invoice
    assert "Total $250.00 Paid $0.00 Amount due $250.00" in invoice
    assert f"Due {due:%b} {due.day}, {due:%Y}. Paying it restores your credit line." in invoice
    # no Pay now for the analyst, a PDF link for everyone, and print CSS that hides the navigation
    assert "Pay now" not in text(html)
    assert f'href="/a/{t.advertiser.pk}/payments/bills/{inv.pk}.pdf"' in html
    assert 'class="page-header no-print"' in html and "css/billing.css" in html


def test_invoice_lines_show_prepaid_cash_used_before_the_credit_line(db, fast_password_hashing):
    # given an account that prepaid 40.00 as manual payment, then moved to invoicing
    from billing.switching import billing_method_switch, billing_settings_set
    from tests.factories import deposit
    from tests.pages_helpers import make_team

    t = make_team(timezone_name="Asia/Tokyo")
    deposit(t.advertiser, "40.00")
    billing_settings_set(advertiser=t.advertiser, credit_line_limit="1000.00", invoicing_eligible=True)
    billing_method_switch(advertiser=t.advertiser, billing_method="monthly_invoice")
    inv = last_month_invoice(t, amount="100.00")
    invoice = text(element(t.admin.get(urls(t, inv)["detail"]).content.decode(), "invoice"))
    assert "Gross ad spend" in invoice and "$100.00" in invoice
    assert "Paid from cash balance Prepaid funds used before the credit line −$40.00" in invoice
    assert "Total $60.00" in invoice


def test_threshold_bill_page_says_what_the_bill_covered(db, fast_password_hashing):
    t = auto_team(threshold="180.00")
    spend(t.campaign, "185.00")
    from billing.autopay import charge_thresholds

    charge_thresholds()
    bill = Bill.objects.get(advertiser=t.advertiser)
    invoice = text(element(t.admin.get(urls(t, bill)["detail"]).content.decode(), "invoice"))
    assert f"Bill {bill.seq} Paid" in invoice and bill.seq == 1
    assert ("Ad spend — threshold bill Ad spend after credits, billed when it reached your $180.00 billing "
            "threshold; anything above the threshold rolls over to your next bill $180.00") in invoice
    assert "Total $180.00 Paid $180.00 Amount due $0.00" in invoice
    assert "with the card ending 4242. Payment reference ch_sbx_" in invoice


def test_bill_date_bill_page_names_the_bill_date(db, fast_password_hashing):
    from billing.autopay import charge_bill_dates

    t = auto_team(threshold="500.00", tz="America/Los_Angeles")
    spend(t.campaign, "42.50")
    bill_date = t.advertiser.next_bill_at
    charge_bill_dates(at=bill_date + timedelta(minutes=1))
    bill = Bill.objects.get(advertiser=t.advertiser, kind=BillKind.BILL_DATE)
    local = bill_date.astimezone(t.advertiser.tz)
    invoice = text(element(t.admin.get(urls(t, bill)["detail"]).content.decode(), "invoice"))
    assert (f"All ad spend after credits accrued up to your bill date, {local:%b} {local.day}, {local:%Y} $42.50"
            in invoice)
    last_day = (bill_date - timedelta(seconds=1)).astimezone(t.advertiser.tz)  # the period ends at the bill date
    assert f"Period until {last_day:%b} {last_day.day}, {last_day:%Y}" in invoice


def test_failed_bill_page_has_pay_now_for_finance(db, fast_password_hashing):
    t = auto_team(card=DECLINE, threshold="50.00")
    bill = threshold_bill(t)
    html = t.client("finance").get(urls(t, bill)["detail"]).content.decode()
    assert "Payment failed after 1 attempt: Your card was declined." in text(element(html, "invoice-note"))
    assert f'action="/a/{t.advertiser.pk}/payments/bills/{bill.pk}/pay/"' in html


def test_pdf_has_the_invoice_number_amount_and_lines(db, fast_password_hashing):
    t = invoiced_team(name="Acme Shoes")
    grant(t.advertiser, "free", "50.00", valid_from=t.advertiser.registered_at - timedelta(days=90))
    inv = last_month_invoice(t, amount="1300.00")  # past the 1,000 line: 1,000 line + 250 arrears
    response = t.client("finance").get(urls(t, inv)["pdf"])
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == f'attachment; filename="invoice-{inv.number}.pdf"'
    content = response.content
    assert content.startswith(b"%PDF-")
    words = pdf_text(content)
    assert f"Invoice {inv.number}" in words
    assert "Acme Shoes" in words and "ADC" in words
    assert "Gross ad spend" in words and "$1,300.00" in words
    assert "Credits applied" in words and "-$50.00" in words
    assert "$1,250.00" in words and "Amount due" in words
    assert "Dates in Asia/Tokyo" in words
    # the same bill gives the same bytes (ReportLab invariant mode)
    assert t.admin.get(urls(t, inv)["pdf"]).content == content


def test_pdf_of_a_paid_threshold_bill(db, fast_password_hashing):
    t = auto_team(threshold="50.00")
    bill = threshold_bill(t)
    response = t.admin.get(urls(t, bill)["pdf"])
    assert response["Content-Disposition"] == f'attachment; filename="bill-{bill.seq}.pdf"'
    words = pdf_text(response.content)
    assert f"Bill {bill.seq}" in words and "$50.00" in words and "Paid" in words
    assert "card ending 4242" in words


def test_pdf_amounts_in_a_currency_without_a_helvetica_symbol_use_its_code():
    from billing.invoice_pdf import pdf_money

    assert pdf_money(Decimal("-1234.5"), "USD") == "-$1,234.50"
    assert pdf_money(Decimal("1200"), "JPY") == "¥1,200"
    assert pdf_money(Decimal("1200"), "KRW") == "KRW 1,200"
    assert pdf_money(Decimal("-99.5"), "INR") == "-INR 99.50"
    assert pdf_money(Decimal("1.25"), "KWD") == "KWD 1.250"
