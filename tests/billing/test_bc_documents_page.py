"""A Business Center's Billing documents page, /bc/<id>/documents/ (SPEC R39: documents are listed
on the advertiser's page "and on its Business Center's"; docs/decisions/0026): every document of
every advertiser in the BC, newest first, with its account, filters by account, kind and month,
the advertisers' PDFs, for the BC's admins and finance members and for staff. Documents are issued
by the real services: a card deposit gets a receipt, a month gets a statement."""

import re
from datetime import datetime, time, timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing.credit_notes import credit_note_issue
from billing.documents import document_status, with_state
from billing.invoice_payments import invoice_transfer_record
from billing.invoicing import issue_monthly_invoices
from billing.models import Document, DocumentKind
from billing.spend import spend_record
from billing.statements import statements_issue
from billing.switching import billing_settings_set
from billing.topups import card_deposit_create
from portal.models import BCMembership
from tests.factories import BusinessCenterFactory, UserFactory
from tests.pages_helpers import element, fast_password_hashing, logged_in, make_team, text  # noqa: F401

pytestmark = pytest.mark.django_db

CARD = "4242 4242 4242 4242"
ROW = re.compile(r'<tr data-document="(\d+)" data-kind="([a-z_]+)" data-status="([a-z_]+)" data-account="(\d+)"')


def bc_member(bc, role: str):
    user = UserFactory()
    BCMembership.objects.create(user=user, business_center=bc, role=role)
    return user


def receipts(advertiser, n: int, *, amount: str = "20.00") -> None:
    for i in range(n):
        card_deposit_create(advertiser=advertiser, amount=amount, card_number=CARD,
                            idempotency_key=f"bc-dep-{advertiser.pk}-{i}")


def url(bc) -> str:
    return f"/bc/{bc.pk}/documents/"


def pdf_url(doc) -> str:
    return f"/a/{doc.advertiser_id}/payments/documents/{doc.pk}/pdf/"


def rows(html: str) -> list[tuple[str, str, str, str]]:
    return ROW.findall(html)


def ids(html: str) -> list[str]:
    return [pk for pk, _, _, _ in rows(html)]


def newest_first(docs) -> list[str]:
    return [str(d.pk) for d in sorted(docs, key=lambda d: (d.issued_at, d.pk), reverse=True)]


@pytest.fixture
def group():
    """A BC with two accounts (EUR in Dublin, USD in New York) with receipts, its admin and finance
    members, and documents outside it: another BC's account and an account in no BC."""
    bc = BusinessCenterFactory(name="Acme Group")
    shoes = make_team(name="Acme Shoes", currency="EUR", timezone_name="Europe/Dublin", business_center=bc)
    outlet = make_team(name="Acme Outlet", currency="USD", timezone_name="America/New_York", business_center=bc)
    receipts(shoes.advertiser, 2)
    receipts(outlet.advertiser, 1, amount="35.00")
    other_bc = BusinessCenterFactory(name="Globex")
    globex = make_team(name="Globex Shoes", currency="EUR", business_center=other_bc)
    loner = make_team(name="Solo Shop")
    receipts(globex.advertiser, 1)
    receipts(loner.advertiser, 1)
    return {"bc": bc, "shoes": shoes, "outlet": outlet, "other_bc": other_bc, "globex": globex, "loner": loner,
            "admin": bc_member(bc, "admin"), "finance": bc_member(bc, "finance"),
            "other_admin": bc_member(other_bc, "admin")}


# --- who may see it ----------------------------------------------------------------------------
@pytest.mark.parametrize("who", ["admin", "finance"])
def test_bc_admin_and_finance_see_every_document_of_every_account_in_the_bc(group, who):
    bc = group["bc"]
    response = logged_in(group[who]).get(url(bc))
    assert response.status_code == 200
    html = response.content.decode()
    mine = Document.objects.filter(advertiser__business_center=bc)
    assert mine.count() == 3
    assert ids(html) == newest_first(mine)
    assert "3 documents" in text(element(html, "document-count"))


def test_staff_see_it(group):
    staff = logged_in(UserFactory(is_staff=True))
    assert ids(staff.get(url(group["bc"])).content.decode()) == newest_first(
        Document.objects.filter(advertiser__business_center=group["bc"]))


def test_a_member_of_another_bc_or_of_an_account_outside_it_gets_404(group):
    bc = group["bc"]
    for user in (group["other_admin"], group["globex"].users["admin"], group["loner"].users["finance"]):
        assert logged_in(user).get(url(bc)).status_code == 404
    assert logged_in(group["admin"]).get("/bc/999999/documents/").status_code == 404  # no such BC


@pytest.mark.parametrize("role", ["admin", "finance", "analyst", "operator"])
def test_a_member_of_one_of_its_accounts_only_gets_403(group, role):
    # knows the BC exists (their account is in it), so 403 as `business_center_for` answers the API
    response = group["shoes"].client(role).get(url(group["bc"]))
    assert response.status_code == 403
    assert "for its admins and finance members" in text(response)


def test_anonymous_goes_to_login(group):
    response = Client().get(url(group["bc"]))
    assert response.status_code == 302 and response["Location"].startswith("/login/?next=")


# --- what it shows -----------------------------------------------------------------------------
def test_a_row_names_its_account_and_shows_its_own_currency_date_and_pdf(group):
    outlet = group["outlet"].advertiser
    doc = Document.objects.get(advertiser=outlet)
    html = logged_in(group["finance"]).get(url(group["bc"])).content.decode()
    row_html = html.split(f'data-document="{doc.pk}"')[1].split("</tr>")[0]
    cells = [text(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row_html, flags=re.S)]
    issued = doc.issued_at.astimezone(outlet.tz)  # in the account's own time zone
    assert cells == [doc.number, "Acme Outlet", "Receipt", f"{issued:%b} {issued.day}, {issued:%Y}",
                     "$35.00", "$0.00", "$35.00", "Paid", "PDF"]
    assert (str(doc.pk), "receipt", "paid", str(outlet.pk)) in rows(html)
    assert f'href="{pdf_url(doc)}"' in row_html
    assert "<th scope=\"col\">Account</th>" in html


@pytest.mark.parametrize("who", ["admin", "finance"])
def test_the_bc_member_opens_each_accounts_pdf(group, who):
    client = logged_in(group[who])
    for doc in Document.objects.filter(advertiser__business_center=group["bc"]):
        response = client.get(pdf_url(doc))
        assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
        assert response["Content-Disposition"] == f'attachment; filename="{doc.number}.pdf"'


def test_documents_outside_the_bc_never_appear(group):
    html = logged_in(group["admin"]).get(url(group["bc"]), {"kind": "receipt"}).content.decode()
    shown = set(ids(html))
    outside = Document.objects.exclude(advertiser__business_center=group["bc"])
    assert outside.count() == 2 and not shown & {str(d.pk) for d in outside}
    assert "Globex" not in text(html) and "Solo Shop" not in text(html)
    # not even when asked for by account: another BC's account is not a choice
    response = logged_in(group["admin"]).get(url(group["bc"]), {"account": group["globex"].advertiser.pk})
    assert set(ids(response.content.decode())) == {str(d.pk) for d in Document.objects.filter(
        advertiser__business_center=group["bc"])}
    assert "This filter is not applied." in text(element(response.content.decode(), "document-filter-errors"))


def test_an_empty_bc_says_so(db):
    bc = BusinessCenterFactory(name="Empty Group")
    html = logged_in(bc_member(bc, "admin")).get(url(bc)).content.decode()
    assert ids(html) == [] and "No documents yet" in text(html) and "0 documents" in text(html)


# --- filters -----------------------------------------------------------------------------------
def test_filter_by_account_and_kind(group):
    client = logged_in(group["admin"])
    shoes = group["shoes"].advertiser
    html = client.get(url(group["bc"]), {"account": shoes.pk}).content.decode()
    assert ids(html) == newest_first(Document.objects.filter(advertiser=shoes))
    assert {account for _, _, _, account in rows(html)} == {str(shoes.pk)}
    # the choices are the BC's accounts, by name
    select = element(html, "id_account")
    assert re.findall(r"<option[^>]*>([^<]*)</option>", select) == [
        "All accounts", f"Acme Outlet · ID {group['outlet'].advertiser.pk}", f"Acme Shoes · ID {shoes.pk}"]
    none = client.get(url(group["bc"]), {"account": shoes.pk, "kind": "invoice"}).content.decode()
    assert ids(none) == [] and "No documents match these filters." in text(none)


@pytest.mark.parametrize("bad", [{"account": "nope"}, {"kind": "bogus"}, {"month": "2026-13"}])
def test_a_bad_filter_shows_a_message_not_a_500(group, bad):
    response = logged_in(group["admin"]).get(url(group["bc"]), bad)
    assert response.status_code == 200
    assert "This filter is not applied." in text(element(response.content.decode(), "document-filter-errors"))
    assert len(ids(response.content.decode())) == 3


def month_start(tz, months_back: int) -> datetime:
    first = timezone.now().astimezone(tz).date().replace(day=1)
    for _ in range(months_back):
        first = (first - timedelta(days=1)).replace(day=1)
    return datetime.combine(first, time(0), tzinfo=tz)


def test_the_month_filter_uses_each_documents_own_account_time_zone(db):
    # given two accounts 25 hours apart: a statement issued just after midnight on the 1st of month M
    # in Kiritimati (UTC+14: still month M-1 in UTC), and one just before midnight on the last day of
    # month M-1 in Pago Pago (UTC-11: already month M in UTC)
    bc = BusinessCenterFactory(name="Pacific Group")
    east = make_team(name="East", timezone_name="Pacific/Kiritimati", business_center=bc).advertiser
    west = make_team(name="West", timezone_name="Pacific/Pago_Pago", business_center=bc).advertiser
    for adv in (east, west):
        adv.created_at = month_start(adv.tz, 4)
        adv.save(update_fields=["created_at"])
    m = month_start(east.tz, 1)  # month M: last month in Kiritimati
    at_east = m + timedelta(minutes=30)
    at_west = datetime.combine(m.date(), time(0), tzinfo=west.tz) - timedelta(minutes=30)
    statements_issue([east], at=at_east)
    statements_issue([west], at=at_west)
    east_doc, west_doc = Document.objects.get(advertiser=east), Document.objects.get(advertiser=west)
    assert east_doc.issued_at.astimezone(timezone.UTC).month != m.month
    assert west_doc.issued_at.astimezone(timezone.UTC).month == m.month
    client = logged_in(bc_member(bc, "finance"))
    before = (m - timedelta(days=1)).date()
    # when filtering by month M, then by month M-1
    in_m = client.get(url(bc), {"month": f"{m:%Y-%m}"}).content.decode()
    in_before = client.get(url(bc), {"month": f"{before:%Y-%m}"}).content.decode()
    # then each statement is in the month of its own account's calendar
    assert ids(in_m) == [str(east_doc.pk)]
    assert ids(in_before) == [str(west_doc.pk)]
    assert ids(client.get(url(bc), {"month": f"{m:%Y-%m}", "account": west.pk}).content.decode()) == []
    both = client.get(url(bc)).content.decode()
    assert ids(both) == newest_first([east_doc, west_doc])
    assert f"{m:%b} 1, {m:%Y}" in text(both)  # east's date, local


# --- the same queries however many documents -----------------------------------------------------
def invoiced_account(bc):
    """A EUR account in `bc` on monthly invoicing, since three months ago, with the last two
    months invoiced: one part paid by bank transfer (and its receipt), one with a credit note."""
    t = make_team(name="Acme Invoiced", currency="EUR", timezone_name="Europe/Dublin",
                  billing_method="monthly_invoice", business_center=bc)
    adv = t.advertiser
    adv.created_at = month_start(adv.tz, 3)
    adv.save(update_fields=["created_at"])
    billing_settings_set(advertiser=adv, credit_line_limit="100000.00")
    invoices = []
    for k in (2, 1):
        issued = month_start(adv.tz, k)
        spend_record(event={"event_id": f"bc-ev-{adv.pk}-{k}", "advertiser_id": str(adv.pk),
                            "campaign_id": str(t.campaign.pk), "amount": "100.00", "currency": "EUR",
                            "occurred_at": (issued - timedelta(days=10)).isoformat()})
        issue_monthly_invoices(at=issued + timedelta(hours=1))
        invoices.append(Document.objects.get(advertiser=adv, kind=DocumentKind.INVOICE, period_end=issued))
    invoice_transfer_record(actor=None, document=invoices[0], amount="40.00", reference="BC-BANK-1")
    credit_note_issue(actor=None, document=invoices[1], amount="10.00", reason="Overbilled", idempotency_key="bc-cn")
    return t


def page_queries(client, path, params=None) -> tuple[int, str]:
    assert client.get(path, params or {}).status_code == 200  # warm-up
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(path, params or {})
    assert response.status_code == 200
    return len(ctx.captured_queries), response.content.decode()


def test_the_page_runs_the_same_queries_with_3_or_30_documents_over_2_accounts(db, monkeypatch):
    # given a BC with 30 documents on two accounts (invoices, a transfer's receipt, a credit note,
    # card receipts) and another with 3 (card receipts on two accounts)
    large = BusinessCenterFactory(name="Large Group")
    invoiced = invoiced_account(large).advertiser
    manual = make_team(name="Acme Manual", business_center=large).advertiser
    receipts(manual, 26)
    small = BusinessCenterFactory(name="Small Group")
    receipts(make_team(name="Small One", business_center=small).advertiser, 2)
    receipts(make_team(name="Small Two", business_center=small).advertiser, 1)
    assert Document.objects.filter(advertiser=invoiced).count() == 4
    assert Document.objects.filter(advertiser__business_center=large).count() == 30
    assert Document.objects.filter(advertiser__business_center=small).count() == 3
    # when each BC's finance member opens the page
    n_small, html = page_queries(logged_in(bc_member(small, "finance")), url(small))
    assert len(ids(html)) == 3
    client = logged_in(bc_member(large, "finance"))
    n_large, html = page_queries(client, url(large))
    # then the same number of queries: every row's state came from what the page prefetched
    assert n_large == n_small
    shown = rows(html)
    assert [pk for pk, _, _, _ in shown] == newest_first(Document.objects.filter(advertiser__business_center=large))
    assert {kind for _, kind, _, _ in shown} == {"invoice", "receipt", "credit_note"}
    states = {str(d.pk): document_status(d) for d in with_state(Document.objects.filter(advertiser=invoiced))}
    assert {pk: status for pk, _, status, _ in shown if pk in states} == states
    assert {account for _, _, _, account in shown} == {str(invoiced.pk), str(manual.pk)}
    # and so does every page of it, ten rows a page
    monkeypatch.setattr("billing.views.PAGE_SIZE", 10)
    pages = []
    for number in (1, 2, 3):
        n, html = page_queries(client, url(large), {"page": number})
        assert n == n_small and f"page {number} of 3" in text(element(html, "document-count"))
        pages += ids(html)
    assert pages == newest_first(Document.objects.filter(advertiser__business_center=large))
    # and filtered by account and month: the invoice issued two months ago, alone
    two_back = month_start(invoiced.tz, 2)
    older = Document.objects.get(advertiser=invoiced, kind=DocumentKind.INVOICE, period_end=two_back)
    n, html = page_queries(client, url(large), {"account": invoiced.pk, "month": f"{two_back:%Y-%m}"})
    assert n == n_small and ids(html) == [str(older.pk)]


# --- where a BC member finds it ------------------------------------------------------------------
def test_the_picker_lists_the_users_bcs_with_a_link_to_their_documents(group):
    # a BC admin whose BC has two accounts
    client = logged_in(group["admin"])
    response = client.get("/")
    assert response.status_code == 200
    section = element(response.content.decode(), "business-centers")
    assert "Acme Group" in text(section) and "Globex" not in text(section)
    assert f'href="{url(group["bc"])}"' in section and "Billing documents of Acme Group" in text(section)


def test_a_bc_member_with_a_single_account_gets_the_picker_not_the_account(db):
    bc = BusinessCenterFactory(name="Tiny Group")
    make_team(name="Only Account", business_center=bc)
    response = logged_in(bc_member(bc, "finance")).get("/")
    assert response.status_code == 200 and f'href="{url(bc)}"' in response.content.decode()
    assert "Only Account" in text(response)


def test_a_user_with_one_account_and_no_bc_still_goes_straight_to_it(db):
    t = make_team(name="Just Me")
    response = t.admin.get("/")
    assert response.status_code == 302 and response["Location"] == f"/a/{t.advertiser.pk}/"


def test_the_accounts_documents_page_links_to_the_bcs_for_those_who_may_open_it(group):
    shoes = group["shoes"].advertiser
    path = f"/a/{shoes.pk}/payments/documents/"
    link = f'href="{url(group["bc"])}"'
    for client in (logged_in(group["finance"]), logged_in(UserFactory(is_staff=True))):
        assert link in client.get(path).content.decode()
    assert link not in group["shoes"].client("finance").get(path).content.decode()  # an account member only
    loner = group["loner"]
    assert "bc-documents-link" not in loner.admin.get(f"/a/{loner.advertiser.pk}/payments/documents/").content.decode()
