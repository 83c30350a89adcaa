"""Tools → Payments → Billing documents costs the same queries however many documents the account
has (SPEC R39; the aim of bench/documents_page): 3 documents and 60 (two pages), each issued by
the real services — monthly invoices with their bills, a bank transfer and its receipt, credit
notes, an invoice paid by card, card-deposit receipts and a statement — so every row's state
(bill, payments, credit notes) comes from what the page prefetched, not a query per row."""

import re
from datetime import datetime, time, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing.autopay import bill_pay, payment_method_set
from billing.credit_notes import credit_note_issue
from billing.invoice_payments import invoice_transfer_record
from billing.invoicing import issue_monthly_invoices
from billing.models import Document, DocumentKind
from billing.profile import profile_set
from billing.spend import spend_record
from billing.statements import statements_issue
from billing.switching import billing_method_switch, billing_settings_set
from billing.topups import card_deposit_create
from tests.pages_helpers import fast_password_hashing, make_team  # noqa: F401

pytestmark = pytest.mark.django_db

CARD = "4242 4242 4242 4242"
PROFILE = {"legal_name": "Acme GmbH", "address_line1": "Main St 1", "city": "Dublin", "postal_code": "D02",
           "country": "IE"}
ROW = re.compile(r'<tr data-document="(\d+)" data-kind="([a-z_]+)" data-status="([a-z_]+)"')


def month_start(months_back: int, tz) -> datetime:
    """Local midnight of the 1st, `months_back` months before this month."""
    first = timezone.now().astimezone(tz).date().replace(day=1)
    for _ in range(months_back):
        first = (first - timedelta(days=1)).replace(day=1)
    return datetime.combine(first, time(0), tzinfo=tz)


def invoice(t, months_back: int, amount: str) -> Document:
    """The real monthly invoice of spend `amount` in the month before `month_start(months_back)`."""
    tz = t.advertiser.tz
    issued = month_start(months_back, tz)
    spent = issued - timedelta(days=10)
    spend_record(event={"event_id": f"ev-{t.advertiser.pk}-{months_back}", "advertiser_id": str(t.advertiser.pk),
                        "campaign_id": str(t.campaign.pk), "amount": amount, "currency": "EUR",
                        "occurred_at": spent.isoformat()})
    issue_monthly_invoices(at=issued + timedelta(hours=1))
    return Document.objects.get(advertiser=t.advertiser, kind=DocumentKind.INVOICE, period_end=issued)


def invoiced_team():
    """A EUR account on monthly invoicing with a credit line, billed to an Irish profile (23 % VAT)."""
    t = make_team(currency="EUR", timezone_name="Europe/Dublin", billing_method="monthly_invoice")
    billing_settings_set(advertiser=t.advertiser, credit_line_limit="100000.00")
    profile_set(actor=None, data=dict(PROFILE), reason="t", advertiser=t.advertiser)
    return t


def small_account():
    """3 documents: an invoice, a bank transfer's receipt for part of it, a credit note on it."""
    t = invoiced_team()
    inv = invoice(t, 1, "100.00")
    invoice_transfer_record(actor=None, document=inv, amount="23.00", reference="BANK-1")
    credit_note_issue(actor=None, document=inv, amount="10.00", reason="Overbilled", idempotency_key="cn-1")
    return t


def large_account(n: int = 60):
    """`n` documents: card deposits' receipts while the account paid manually, then on monthly
    invoicing 12 invoices (one paid by card with its receipt, four part paid by bank transfer with
    their receipts, four with credit notes, the rest unpaid and overdue) and a statement."""
    t = make_team(currency="EUR", timezone_name="Europe/Dublin")
    adv = t.advertiser
    adv.created_at = month_start(14, adv.tz)
    adv.save(update_fields=["created_at"])
    profile_set(actor=None, data=dict(PROFILE), reason="t", advertiser=adv)
    for i in range(n - 22):  # the other 22: 12 invoices, 5 receipts, 4 credit notes, a statement
        card_deposit_create(advertiser=adv, amount="20.00", card_number=CARD, idempotency_key=f"dep-{i}")
    billing_settings_set(advertiser=adv, credit_line_limit="100000.00", invoicing_eligible=True)
    billing_method_switch(advertiser=adv, billing_method="monthly_invoice")
    invoices = [invoice(t, k, f"{1000 + k * 10}.00") for k in range(12, 0, -1)]
    payment_method_set(advertiser=adv, card_number="4242424242424242", expiry="12/30")
    bill_pay(bill=invoices[-1].bill)
    for i, inv in enumerate(invoices[:4]):
        invoice_transfer_record(actor=None, document=inv, amount="50.00", reference=f"BANK-{i}")
    for i, inv in enumerate(invoices[3:7]):
        credit_note_issue(actor=None, document=inv, amount="20.00", reason="Overbilled", idempotency_key=f"cn-{i}")
    statements_issue([adv], at=timezone.now())
    return t


def url(t) -> str:
    return f"/a/{t.advertiser.pk}/payments/documents/"


def page_queries(client, path, params=None) -> tuple[int, list]:
    """The queries of one request (after a warm-up request) and the rows it shows."""
    assert client.get(path, params or {}).status_code == 200
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(path, params or {})
    assert response.status_code == 200
    return len(ctx.captured_queries), ROW.findall(response.content.decode())


@pytest.mark.parametrize("role", ["finance", "admin"])
def test_the_documents_page_runs_the_same_queries_with_3_or_60_documents(django_assert_num_queries, role):
    small, large = small_account(), large_account()
    assert Document.objects.filter(advertiser=small.advertiser).count() == 3
    assert Document.objects.filter(advertiser=large.advertiser).count() == 60
    n, rows = page_queries(small.client(role), url(small))
    assert len(rows) == 3

    client = large.client(role)
    client.get(url(large))  # warm-up, as for the small account
    with django_assert_num_queries(n):
        first = client.get(url(large))
    rows = ROW.findall(first.content.decode())
    assert len(rows) == 50 and "page 1 of 2" in first.content.decode()
    n_last, last_rows = page_queries(client, url(large), {"page": 2})
    assert n_last == n and len(last_rows) == 10

    # what the rows were computed from: every kind and the states bills, payments and credit
    # notes give (all read from what the page prefetched)
    shown = rows + last_rows
    assert len({pk for pk, _, _ in shown}) == 60
    assert {kind for _, kind, _ in shown} == {"invoice", "receipt", "credit_note", "statement"}
    invoice_states = {status for _, kind, status in shown if kind == "invoice"}
    assert {"paid", "overdue"} <= invoice_states, invoice_states


def test_a_rows_pdf_link_is_the_reversed_url_though_reversed_once_a_page():
    # `document_rows` reverses the PDF route once and puts each document's id in it; whatever the
    # ids — even the advertiser's being the number it reverses with
    from django.urls import reverse

    from billing.page_selectors import _URL_SLOT, _pdf_urls

    for advertiser_id in (1, 42, _URL_SLOT, int(f"{_URL_SLOT}{_URL_SLOT}")):
        pdf_url = _pdf_urls(advertiser_id)
        for document_id in (1, 7, _URL_SLOT, 10**12):
            assert pdf_url(document_id) == reverse("payments_document_pdf", args=[advertiser_id, document_id])


def test_a_credit_notes_row_names_the_document_it_corrects_with_no_query_a_row():
    """The list says which invoice a credit note corrects ("Credit note for INV-…"), read with
    the page's documents (the 3 vs 60 test above holds the query count)."""
    from tests.pages_helpers import text

    t = small_account()
    note = Document.objects.get(advertiser=t.advertiser, kind=DocumentKind.CREDIT_NOTE)
    html = t.client("finance").get(url(t)).content.decode()
    row = re.search(rf'<tr data-document="{note.pk}".*?</tr>', html, re.S).group(0)
    assert f"Credit note for {note.refers_to.number}" in text(row)
    invoice_row = re.search(rf'<tr data-document="{note.refers_to_id}".*?</tr>', html, re.S).group(0)
    assert " for " not in text(invoice_row)
