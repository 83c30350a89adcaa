"""In a real browser (SPEC R37–R40): an advertiser's admin sets the billing profile with a VAT ID
(a wrong one is refused under its field), pays a failed bill with Pay now and downloads the
receipt's PDF, billed to that profile with Irish VAT on top; a Billing manager issues a credit
note on a monthly invoice in the admin, and the advertiser finds it on Billing documents with the
invoice credited."""

import re
from datetime import date
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from playwright.sync_api import expect
from pypdf import PdfReader

from billing.models import Bill, BillingProfile, BillStatus, Document, DocumentKind, GatewayCharge, Refund, TaxRate
from billing.profile import profile_set
from portal.permissions import BILLING_MANAGER
from tests.billing.bill_pages_helpers import DECLINE, auto_team, invoiced_team, last_month_invoice, threshold_bill
from tests.factories import UserFactory
from tests.pages_helpers import PASSWORD, browser_login, browser_page, fast_password_hashing  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LEGAL_NAME = "Acme Shoes Limited"
VAT_ID = "IE6388047V"  # a real Irish VAT number: the seller is Irish, so 23 % is added (R38)
REFUSED_FORM = "Failed to load resource: the server responded with a status of 422 (Unprocessable Entity)"


def irish_vat():
    """Transactional tests start from a flushed database, without the migration's EU rates."""
    TaxRate.objects.get_or_create(country="IE", effective_from=date(2024, 1, 1), defaults={"rate": Decimal("23")})


def pdf_text(path) -> str:
    return " ".join(" ".join(p.extract_text().split()) for p in PdfReader(path).pages)


def local_day(doc, adv) -> str:
    """The issue date as the documents page shows it: the day in the account's time zone."""
    return doc.issued_at.astimezone(adv.tz).strftime("%b %-d, %Y")


def second_page(page):
    """A page for another user: a fresh context of the same browser (its own cookies)."""
    context = page.context.browser.new_context(viewport={"width": 1360, "height": 900})
    other = context.new_page()
    other.set_default_timeout(15000)
    other.console_errors = []
    other.on("console", lambda m: m.type == "error" and other.console_errors.append(m.text))
    other.on("pageerror", lambda e: other.console_errors.append(str(e)))
    return other


def test_admin_sets_the_billing_profile_pays_a_bill_and_downloads_the_receipt(live_server, browser_page,
                                                                             fast_password_hashing):
    # given an automatic-payment account in euros, no billing profile yet, whose card declines
    irish_vat()
    team = auto_team(card=DECLINE, threshold="50.00", name="Acme Shoes", currency="EUR", tz="Europe/Dublin")
    adv = team.advertiser
    page = browser_page
    base = f"{live_server.url}/a/{adv.pk}/payments"
    # when the admin opens Billing profile from the menu
    browser_login(page, live_server.url, team.users["admin"])
    page.goto(f"{base}/")
    page.get_by_role("link", name="Billing profile").first.click()
    expect(page).to_have_url(f"{base}/billing-profile/")
    expect(page.locator("#profile-none")).to_be_visible()
    # and fills it in with a VAT number whose check digits are wrong
    page.get_by_label("Legal name").fill(LEGAL_NAME)
    page.get_by_label("Address line 1").fill("12 Grafton Street")
    page.get_by_label("City").fill("Dublin")
    page.get_by_label("Postal code").fill("D02 XY45")
    page.get_by_label("Country").select_option("IE")
    page.get_by_label("Tax ID (optional)").fill("IE6388047W")
    page.get_by_role("button", name="Save billing profile").click()
    # then the error is under the Tax ID field, the field points at it, and nothing is saved
    tax_id = page.get_by_label("Tax ID (optional)")
    field = page.locator(".field.has-error")
    expect(field).to_have_count(1)
    expect(field.locator("label")).to_have_text("Tax ID (optional)")
    expect(page.locator("#id_tax_id_error")).to_contain_text("is not a valid Ireland tax ID")
    expect(tax_id).to_have_attribute("aria-invalid", "true")
    expect(tax_id).to_have_value("IE6388047W")
    expect(page.get_by_label("Legal name")).to_have_value(LEGAL_NAME)  # what was typed is kept
    expect(page.locator("#profile-none")).to_be_visible()
    expect(page.get_by_role("status")).to_have_count(0)
    assert not BillingProfile.objects.filter(advertiser=adv).exists()
    page.screenshot(path="/tmp/billing-profile-error.png", full_page=True)
    # when they correct it (spaces as printed on a letterhead) and save
    tax_id.fill("IE 6388047 V")
    page.get_by_role("button", name="Save billing profile").click()
    # then it is saved as the account's own profile, the VAT number compacted
    expect(page).to_have_url(f"{base}/billing-profile/")
    expect(page.get_by_role("status")).to_contain_text(
        "Billing profile saved. Documents issued from now on are billed to it.")
    expect(page.locator("#profile-own")).to_be_visible()
    expect(page.locator(".field-error")).to_have_count(0)
    expect(page.get_by_label("Tax ID (optional)")).to_have_value(VAT_ID)
    expect(page.get_by_label("Country")).to_have_value("IE")
    saved = BillingProfile.objects.get(advertiser=adv)
    assert (saved.legal_name, saved.country, saved.tax_id, saved.postal_code) == (LEGAL_NAME, "IE", VAT_ID, "D02 XY45")
    page.screenshot(path="/tmp/billing-profile-saved.png", full_page=True)

    # given a 50.00 threshold bill, taxed at Ireland's 23 %, that the card declined
    bill = threshold_bill(team)
    assert (bill.status, bill.tax) == (BillStatus.FAILED, Decimal("11.50"))
    # when the admin puts a card that works on file and presses Pay now on the bill
    page.goto(f"{base}/payment-method/")
    page.get_by_label("Card number").fill("4242424242424242")
    page.get_by_label("Expiry (MM/YY)").fill("11/31")
    page.get_by_role("button", name="Save card").click()
    expect(page.get_by_role("status")).to_contain_text("Card ending 4242 (expires 11/31) is now your payment method.")
    page.get_by_role("link", name="Bills & invoices").first.click()
    row = page.locator(f'tr[data-bill="{bill.pk}"]')
    expect(row).to_contain_text("Payment failed")
    row.get_by_role("button", name="Pay now").click()
    # then the bill is paid: its amount and the tax on it were charged, and the message says so
    expect(row).to_have_attribute("data-status", "paid")
    assert [(c.amount, c.currency) for c in GatewayCharge.objects.all()] == [(Decimal("61.50"), "EUR")]
    expect(page.get_by_role("status")).to_contain_text(
        f"Threshold bill {bill.seq} paid: €61.50 charged to the card ending 4242.")
    expect(row).to_contain_text("Paid")
    expect(row.get_by_role("button", name="Pay now")).to_have_count(0)
    assert Bill.objects.get(pk=bill.pk).status == BillStatus.PAID
    # when they open Billing documents
    page.get_by_role("link", name="Billing documents").first.click()
    expect(page).to_have_url(f"{base}/documents/")
    receipt = Document.objects.get(advertiser=adv, kind=DocumentKind.RECEIPT)
    assert receipt.number.startswith(f"RCT-{receipt.issued_at.year}-")
    expect(page.locator("#document-count")).to_have_text("1 document")
    doc_row = page.locator(f'tr[data-document="{receipt.pk}"]')
    # then the receipt is listed with its net, tax and total, paid
    expect(doc_row.locator("td")).to_have_text([receipt.number, "Receipt", local_day(receipt, adv),
                                                "€50.00", "€11.50", "€61.50", "Paid", "PDF"])
    page.screenshot(path="/tmp/documents-receipt.png", full_page=True)
    # and its PDF downloads, billed to the profile with its VAT number, with the tax and the total
    with page.expect_download() as download:
        doc_row.get_by_role("link", name=f"PDF of {receipt.number}").click()
    assert download.value.suggested_filename == f"{receipt.number}.pdf"
    text = pdf_text(download.value.path())
    assert f"Receipt {receipt.number}" in text
    assert LEGAL_NAME in text and "12 Grafton Street" in text and "D02 XY45 Dublin" in text
    assert f"Tax ID {VAT_ID}" in text
    assert "Tax at 23 % €11.50" in text and "Total €61.50" in text
    # the refused save answered 422, which Chromium logs; nothing else went wrong on any page
    assert page.console_errors == [REFUSED_FORM]


def test_billing_manager_issues_a_credit_note_and_the_advertiser_sees_it_on_billing_documents(
        live_server, browser_page, fast_password_hashing):
    # given an invoiced account billed to an Irish profile, with last month's 300.00 invoice (+ 23 % VAT)
    irish_vat()
    team = invoiced_team(name="Acme Shoes", currency="EUR", tz="Europe/Dublin")
    adv = team.advertiser
    profile_set(actor=None, reason="test", advertiser=adv, data={
        "legal_name": LEGAL_NAME, "address_line1": "12 Grafton Street", "city": "Dublin", "postal_code": "D02 XY45",
        "country": "IE", "tax_id": VAT_ID})
    bill = last_month_invoice(team, amount="300.00")
    invoice = Document.objects.get(advertiser=adv, kind=DocumentKind.INVOICE)
    assert (invoice.bill_id, invoice.net, invoice.tax, invoice.total) == (bill.pk, Decimal("300.00"), Decimal("69.00"),
                                                                          Decimal("369.00"))
    manager = UserFactory(is_staff=True, username="bm-jane")
    manager.groups.add(Group.objects.get_or_create(name=BILLING_MANAGER)[0])
    base = f"{live_server.url}/a/{adv.pk}/payments"
    # and the advertiser's admin sees the invoice as issued, all of it due
    page = browser_page
    browser_login(page, live_server.url, team.users["admin"])
    page.goto(f"{base}/documents/")
    inv_row = page.locator(f'tr[data-document="{invoice.pk}"]')
    expect(inv_row).to_contain_text(invoice.number)
    expect(inv_row).to_contain_text("€369.00 due")
    expect(inv_row.locator(".badge")).to_have_text(re.compile(r"^(Issued|Overdue)$"))  # due on the 31st

    # when the Billing manager logs in to the admin and finds the invoice by its number
    staff = second_page(page)
    staff.goto(f"{live_server.url}/admin/login/?next=/admin/billing/document/")
    staff.fill("#id_username", manager.username)
    staff.fill("#id_password", PASSWORD)
    staff.click("input[type=submit], button[type=submit]")
    expect(staff).to_have_url(f"{live_server.url}/admin/billing/document/")
    staff.locator("#searchbar").fill(invoice.number)
    staff.locator("#searchbar").press("Enter")
    result = staff.locator("#result_list tbody tr")
    expect(result).to_have_count(1)
    expect(result).to_contain_text("369.00 EUR")
    # and runs "Issue a credit note" on it
    result.locator('input[name="_selected_action"]').check()
    staff.locator('select[name="action"]').select_option(label="Issue a credit note")
    staff.get_by_role("button", name="Run").click()
    expect(staff.locator("#content")).to_contain_text("It cannot exceed what the document still counts")
    expect(staff.locator("#content table").first).to_contain_text(invoice.number)
    # with more than the invoice counts
    staff.get_by_label("Amount (tax included)").fill("369.01")
    staff.get_by_label("Reason").fill("Campaign delivered to the wrong country")
    staff.get_by_role("button", name="Issue credit note").click()
    # then it is refused and nothing is issued
    expect(staff.locator(".messagelist .error")).to_have_text(
        f"Invoice {invoice.number}: 369.01 is more than the 369.00 {invoice.number} still counts.")
    assert not Document.objects.filter(kind=DocumentKind.CREDIT_NOTE).exists()
    # when they issue one for the whole invoice
    staff.locator("#result_list tbody tr", has_text=invoice.number).locator('input[name="_selected_action"]').check()
    staff.locator('select[name="action"]').select_option(label="Issue a credit note")
    staff.get_by_role("button", name="Run").click()
    staff.get_by_label("Amount (tax included)").fill("369.00")
    staff.get_by_label("Reason").fill("Campaign delivered to the wrong country")
    staff.get_by_role("button", name="Issue credit note").click()
    # then the admin says which credit note was issued for the invoice
    expect(staff.locator(".messagelist")).to_contain_text(
        re.compile(rf"Credit note CN-\d{{4}}-\d{{6}} issued for {invoice.number}\."))
    expect(staff.locator(".messagelist .error")).to_have_count(0)
    note = Document.objects.get(kind=DocumentKind.CREDIT_NOTE)
    assert note.number.startswith(f"CN-{note.issued_at.year}-") and note.refers_to_id == invoice.pk
    assert (note.net, note.tax, note.total, note.created_by) == (Decimal("300.00"), Decimal("69.00"),
                                                                 Decimal("369.00"), manager)
    expect(staff.locator(".messagelist")).to_contain_text(f"Credit note {note.number} issued for {invoice.number}.")
    staff.screenshot(path="/tmp/admin-credit-note.png", full_page=True)

    # when the advertiser's admin looks at Billing documents again
    page.reload()
    # then the credit note is listed with the invoice's net, tax and total, and the invoice is credited
    expect(page.locator("#document-count")).to_have_text("2 documents")
    cn_row = page.locator(f'tr[data-document="{note.pk}"]')
    expect(cn_row.locator("td")).to_have_text([note.number, f"Credit note for {invoice.number}", local_day(note, adv),
                                               "€300.00", "€69.00", "€369.00", "Issued", "PDF"])
    expect(inv_row.locator(".badge")).to_have_text("Credited")
    expect(inv_row).not_to_contain_text("due")
    page.screenshot(path="/tmp/documents-credit-note.png", full_page=True)
    # and the credit note's PDF names the invoice it corrects and the reason
    with page.expect_download() as download:
        cn_row.get_by_role("link", name=f"PDF of {note.number}").click()
    assert download.value.suggested_filename == f"{note.number}.pdf"
    text = pdf_text(download.value.path())
    assert f"Credit note {note.number} Billed to Issued Corrects {LEGAL_NAME}" in text
    assert f"Dates in Europe/Dublin {invoice.number}" in text  # under "Corrects"
    assert f"Credit for {invoice.number}: Campaign delivered to the wrong country €300.00 €69.00 €369.00" in text
    assert LEGAL_NAME in text and f"Tax ID {VAT_ID}" in text and "Total €369.00" in text
    assert "Reason: Campaign delivered to the wrong country" in text
    # and on Bills & invoices the invoice is settled: nothing is left to pay, and no card was charged
    page.get_by_role("link", name="Bills & invoices").first.click()
    bill_row = page.locator(f'tr[data-bill="{bill.pk}"]')
    expect(bill_row).to_contain_text(bill.number)
    expect(bill_row.get_by_role("button", name="Pay now")).to_have_count(0)
    assert not GatewayCharge.objects.exists() and not Refund.objects.exists()  # nothing was paid, nothing goes back
    assert page.console_errors == [] and staff.console_errors == []
