"""Tools → Payments → Billing documents: the list with its filters, and each document's PDF
(SPEC R1, R39). Documents are issued by the real services: a card deposit gets a receipt."""

import re
from io import BytesIO

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from pypdf import PdfReader

from billing.models import Document, DocumentKind
from billing.profile import profile_set
from billing.topups import card_deposit_create
from tests.factories import UserFactory
from tests.pages_helpers import element, fast_password_hashing, logged_in, make_team, text  # noqa: F401

pytestmark = pytest.mark.django_db

CARD = "4242 4242 4242 4242"
PROFILE = {"legal_name": "Acme GmbH", "address_line1": "Main St 1", "city": "Dublin", "postal_code": "D02",
           "country": "IE"}


def eu_team(*, receipts: int = 1, tz: str = "Europe/Dublin"):
    """A EUR team billed to an Irish profile, with `receipts` card deposits of 100.00 (23 % VAT)."""
    t = make_team(currency="EUR", timezone_name=tz)
    profile_set(actor=None, data=dict(PROFILE), reason="t", advertiser=t.advertiser)
    for i in range(receipts):
        card_deposit_create(advertiser=t.advertiser, amount="100.00", card_number=CARD, idempotency_key=f"k{i}")
    return t


def list_url(t) -> str:
    return f"/a/{t.advertiser.pk}/payments/documents/"


def pdf_url(t, doc) -> str:
    return f"/a/{t.advertiser.pk}/payments/documents/{doc.pk}/pdf/"


def receipt(t) -> Document:
    return Document.objects.filter(advertiser=t.advertiser, kind=DocumentKind.RECEIPT).latest("issued_at")


def row_ids(html: str) -> list[str]:
    return re.findall(r'<tr data-document="(\d+)"', html)


# --- who may see it (R1) -----------------------------------------------------------------------
@pytest.mark.parametrize("role,status", [("admin", 200), ("finance", 200), ("analyst", 200), ("operator", 403)])
def test_role_matrix(db, role, status):
    t = eu_team()
    doc = receipt(t)
    client = t.client(role)
    assert client.get(list_url(t)).status_code == status
    assert client.get(pdf_url(t, doc)).status_code == status


def test_staff_see_it(db):
    t = eu_team()
    staff = logged_in(UserFactory(is_staff=True))
    assert staff.get(list_url(t)).status_code == 200
    assert staff.get(pdf_url(t, receipt(t))).status_code == 200


def test_other_advertiser_gets_404_and_anonymous_goes_to_login(db):
    t = eu_team()
    doc = receipt(t)
    outsider = logged_in(t.outsider)
    for url in (list_url(t), pdf_url(t, doc)):
        assert outsider.get(url).status_code == 404
        response = Client().get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/?next=")


def test_another_advertisers_document_is_404_under_my_advertiser(db):
    mine, theirs = eu_team(), eu_team()
    other = receipt(theirs)
    assert mine.admin.get(f"/a/{mine.advertiser.pk}/payments/documents/{other.pk}/pdf/").status_code == 404


def test_navigation_links_to_the_page(db):
    t = eu_team()
    html = t.admin.get(f"/a/{t.advertiser.pk}/payments/bills/").content.decode()
    assert f'href="{list_url(t)}"' in html and "Billing documents" in html
    page = t.admin.get(list_url(t)).content.decode()
    assert 'aria-current="page">Billing documents</a>' in page


# --- the list ----------------------------------------------------------------------------------
def test_list_shows_the_receipt_with_number_amounts_status_and_pdf_link(db):
    t = eu_team()
    doc = receipt(t)
    response = t.client("analyst").get(list_url(t))
    assert response.status_code == 200
    html = response.content.decode()
    assert row_ids(html) == [str(doc.pk)]
    row = text(html.split(f'data-document="{doc.pk}"')[1].split("</tr>")[0])
    issued = doc.issued_at.astimezone(t.advertiser.tz)
    assert doc.number in row and doc.number.startswith("RCT-")
    assert "Receipt" in row and "Paid" in row
    assert "100.00" in row and "23.00" in row and "123.00" in row
    assert f"{issued:%b} {issued.day}, {issued:%Y}" in row
    assert f'href="{pdf_url(t, doc)}"' in html


def test_newest_first(db):
    t = eu_team(receipts=3)
    docs = list(Document.objects.filter(advertiser=t.advertiser).order_by("-issued_at", "-pk"))
    assert row_ids(t.admin.get(list_url(t)).content.decode()) == [str(d.pk) for d in docs]


def test_filter_by_kind(db):
    t = eu_team()
    doc = receipt(t)
    assert row_ids(t.admin.get(list_url(t), {"kind": "receipt"}).content.decode()) == [str(doc.pk)]
    html = t.admin.get(list_url(t), {"kind": "invoice"}).content.decode()
    assert row_ids(html) == [] and "No documents match these filters." in html


def test_filter_by_month_in_the_account_time_zone(db):
    t = eu_team(tz="Pacific/Kiritimati")  # UTC+14: the local month can differ from UTC's
    doc = receipt(t)
    local = doc.issued_at.astimezone(t.advertiser.tz)
    this_month = f"{local:%Y-%m}"
    assert row_ids(t.admin.get(list_url(t), {"month": this_month}).content.decode()) == [str(doc.pk)]
    other = f"{local.year - 1}-{local:%m}"
    assert row_ids(t.admin.get(list_url(t), {"month": other}).content.decode()) == []
    both = t.admin.get(list_url(t), {"month": this_month, "kind": "statement"}).content.decode()
    assert row_ids(both) == []


@pytest.mark.parametrize("bad", ["2026-13", "nope", "2026-1", "0000-01"])
def test_a_bad_month_shows_a_message_not_a_500(db, bad):
    t = eu_team()
    response = t.admin.get(list_url(t), {"month": bad})
    assert response.status_code == 200
    html = response.content.decode()
    errors = text(element(html, "document-filter-errors"))
    assert "Enter a month as YYYY-MM" in errors and "This filter is not applied." in errors
    assert row_ids(html) == [str(receipt(t).pk)]  # the list is shown unfiltered


def test_a_bad_kind_shows_a_message_not_a_500(db):
    t = eu_team()
    response = t.admin.get(list_url(t), {"kind": "bogus"})
    assert response.status_code == 200
    assert "This filter is not applied." in text(element(response.content.decode(), "document-filter-errors"))


def _queries(client, url) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def test_list_runs_the_same_queries_with_2_or_12_documents(db):
    small, large = eu_team(receipts=2), eu_team(receipts=12)
    assert Document.objects.filter(advertiser=large.advertiser).count() == 12
    n_small = _queries(small.admin, list_url(small))
    n_large = _queries(large.admin, list_url(large))
    assert n_small == n_large


# --- the PDF -----------------------------------------------------------------------------------
def pdf_text(content: bytes) -> str:
    return " ".join(page.extract_text() for page in PdfReader(BytesIO(content)).pages)


def test_pdf_shows_seller_billed_to_lines_and_totals(db):
    t = eu_team()
    doc = receipt(t)
    response = t.client("finance").get(pdf_url(t, doc))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert f'filename="{doc.number}.pdf"' in response["Content-Disposition"]
    body = pdf_text(response.content)
    for expected in ("AdCredit Europe Limited", "Acme GmbH", "Main St 1", "Dublin", doc.number, "Receipt",
                     "Billed to", "100.00", "23.00", "123.00", "Tax at 23 %"):
        assert expected in body, expected
    issued = doc.issued_at.astimezone(t.advertiser.tz)
    assert f"{issued:%b} {issued.day}, {issued:%Y}" in body


def test_pdf_of_a_missing_document_is_404(db):
    t = eu_team()
    assert t.admin.get(f"/a/{t.advertiser.pk}/payments/documents/999999999/pdf/").status_code == 404
    assert t.admin.get(list_url(t)).status_code == 200
