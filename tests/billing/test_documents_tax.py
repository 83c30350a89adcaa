"""Billing profile, tax and documents (SPEC R37, R38, R39): place of supply, rounding, deposits
taxed on top, receipts, gapless numbers, immutable rows, and the API's role matrix."""

import threading
from datetime import date
from decimal import Decimal

import pytest
from django.db import IntegrityError, InternalError, connection, transaction

from billing.documents import document_build, document_issue, document_numbers_take, Line
from billing.models import Document, DocumentCounter, DocumentKind, GatewayCharge, LedgerAccount, Purpose, TaxRate
from billing.profile import profile_set, profile_snapshot
from billing.reconcile import reconcile_ledger
from billing.tax import OUTSIDE_SCOPE, REVERSE_CHARGE, Treatment, tax_for, tax_rate_on, tax_treatment
from billing.topups import card_deposit_create
from portal.errors import BadInput
from tests.api_helpers import api, error_of, role_token, staff, stranger_token  # noqa: F401
from tests.factories import AdvertiserFactory, BusinessCenterFactory

pytestmark = pytest.mark.django_db
D = Decimal
IE_VAT, DE_VAT = "IE1234567T", "DE136695976"


def profile(adv=None, *, country="IE", tax_id="", bc=None, **kw):
    data = {"legal_name": "Acme GmbH", "address_line1": "Main St 1", "city": "Town", "postal_code": "12345",
            "country": country, "tax_id": tax_id, **kw}
    return profile_set(actor=None, data=data, reason="test", advertiser=adv, business_center=bc)


# ---- R38 place of supply ----

def test_seller_country_pays_its_standard_rate_even_with_a_vat_id():
    adv = AdvertiserFactory(currency="EUR")
    profile(adv, country="IE", tax_id=IE_VAT)
    tax, t = tax_for(adv, D("100.00"), date(2026, 12, 1))
    assert (tax, t.rate, t.note) == (D("23.00"), D("23"), "")


def test_other_eu_country_with_a_valid_vat_id_is_reverse_charge():
    adv = AdvertiserFactory(currency="EUR")
    profile(adv, country="DE", tax_id="136 695 976")  # prefix added, spaces compacted
    snap = profile_snapshot(adv)
    assert (snap["tax_id"], snap["tax_id_valid"]) == (DE_VAT, True)
    tax, t = tax_for(adv, D("100.00"), date(2026, 12, 1))
    assert (tax, t.rate, t.note) == (D("0"), D("0"), REVERSE_CHARGE)


def test_other_eu_country_without_a_vat_id_pays_that_countrys_rate():
    adv = AdvertiserFactory(currency="EUR")
    profile(adv, country="DE")
    assert tax_for(adv, D("100.00"), date(2026, 12, 1))[0] == D("19.00")


def test_an_invalid_vat_id_is_refused_and_a_stored_unverifiable_one_does_not_reverse_charge():
    adv = AdvertiserFactory(currency="EUR")
    with pytest.raises(BadInput) as e:
        profile(adv, country="DE", tax_id="DE123456789")
    assert e.value.code == "invalid_tax_id"
    assert profile_snapshot(adv)["country"] == ""  # nothing saved
    # a number that no longer passes (rules change) is taxed as if there were none
    snap = {"country": "DE", "tax_id": "DE123456789", "tax_id_valid": False}
    assert tax_treatment(snap, date(2026, 12, 1)) == Treatment(D("19"), "", "DE")


def test_outside_the_eu_is_out_of_scope_and_no_address_is_no_tax():
    us = AdvertiserFactory()
    profile(us, country="US")
    tax, t = tax_for(us, D("100.00"), date(2026, 12, 1))
    assert (tax, t.note) == (D("0"), OUTSIDE_SCOPE)
    nobody = AdvertiserFactory()
    assert tax_for(nobody, D("100.00"), date(2026, 12, 1))[0] == 0


def test_rates_are_data_with_effective_dates():
    assert tax_rate_on("FI", date(2024, 8, 31)) == D("24")
    assert tax_rate_on("FI", date(2024, 9, 1)) == D("25.5")
    TaxRate.objects.create(country="IE", rate=D("21"), effective_from=date(2027, 1, 1))
    assert tax_rate_on("IE", date(2026, 12, 31)) == D("23")
    assert tax_rate_on("IE", date(2027, 1, 1)) == D("21")
    assert TaxRate.objects.filter(effective_from=date(2024, 1, 1)).count() == 27  # every EU country


@pytest.mark.parametrize("currency,net,expected", [
    ("JPY", "1999", "459"),       # 459.77 → 459: no minor unit, rounded once toward zero
    ("KWD", "10.001", "2.300"),   # 2.30023 → 2.300: three places
    ("EUR", "0.04", "0.00"),
    ("EUR", "99.99", "22.99"),    # 22.9977
])
def test_tax_is_rounded_once_by_the_money_rule(currency, net, expected):
    t = Treatment(D("23"), "", "IE")
    assert t.tax_on(D(net), currency) == D(expected)


# ---- deposits: the card pays amount + tax, the balance gets the amount ----

def test_card_deposit_charges_tax_on_top_books_it_and_issues_a_receipt():
    adv = AdvertiserFactory(currency="EUR")
    profile(adv, country="IE")
    deposit, new = card_deposit_create(advertiser=adv, amount="100.00", card_number="4242 4242 4242 4242",
                                       idempotency_key="k-1")
    assert new and deposit.tax == D("23.00")
    assert GatewayCharge.objects.get(idempotency_key="k-1").amount == D("123.00")
    acc = {a.purpose: a.balance for a in LedgerAccount.objects.filter(advertiser=adv)}
    assert (acc[Purpose.CASH], acc[Purpose.TAX_PAYABLE], acc[Purpose.SETTLEMENT]) == (D("100"), D("23"), D("123"))
    receipt = Document.objects.get(advertiser=adv)
    assert (receipt.kind, receipt.net, receipt.tax, receipt.total) == ("receipt", D("100"), D("23"), D("123"))
    assert receipt.number.startswith(f"RCT-{receipt.issued_at.year}-")
    assert receipt.billed_to["legal_name"] == "Acme GmbH" and receipt.seller["vat_number"] == IE_VAT
    # a double submit charges and receipts nothing more
    again, new = card_deposit_create(advertiser=adv, amount="100.00", card_number="4242 4242 4242 4242",
                                     idempotency_key="k-1")
    assert (again.pk, new, Document.objects.count()) == (deposit.pk, False, 1)
    assert reconcile_ledger()["differences"] == 0


def test_a_snapshot_is_kept_when_the_profile_changes_later():
    adv = AdvertiserFactory(currency="EUR")
    profile(adv, country="IE")
    card_deposit_create(advertiser=adv, amount="50.00", card_number="4242 4242 4242 4242", idempotency_key="k")
    profile(adv, country="IE", legal_name="Renamed Ltd")
    assert Document.objects.get().billed_to["legal_name"] == "Acme GmbH"


def test_a_business_centers_profile_is_inherited_until_the_account_sets_its_own():
    bc = BusinessCenterFactory()
    adv = AdvertiserFactory(business_center=bc)
    profile(bc=bc, country="FR", legal_name="BC SAS")
    assert profile_snapshot(adv)["legal_name"] == "BC SAS" and profile_snapshot(adv)["inherited"]
    profile(adv, country="FR", legal_name="Own SARL")
    assert profile_snapshot(adv)["legal_name"] == "Own SARL" and not profile_snapshot(adv)["inherited"]


# ---- R39 numbers and immutability ----

def _doc(adv, key):
    return document_build(advertiser=adv, kind=DocumentKind.CREDIT_NOTE, source_key=key, lines=[Line("x", D("1"))])


def test_numbers_are_per_series_and_year_and_a_source_is_issued_once():
    adv = AdvertiserFactory()
    a = document_issue(_doc(adv, "a"))
    b = document_issue(_doc(adv, "b"))
    again = document_issue(_doc(adv, "a"))
    year = a.issued_at.year
    assert (a.number, b.number, again.pk) == (f"CN-{year}-000001", f"CN-{year}-000002", a.pk)
    assert document_numbers_take(DocumentKind.CREDIT_NOTE, year + 1) == [f"CN-{year + 1}-000001"]
    assert document_numbers_take(DocumentKind.INVOICE, year, 2) == [f"INV-{year}-000001", f"INV-{year}-000002"]


def test_a_rolled_back_issue_gives_its_number_back():
    adv = AdvertiserFactory()
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            document_issue(_doc(adv, "lost"))
            raise RuntimeError("crash before commit")
    assert document_issue(_doc(adv, "kept")).number.endswith("-000001")


def test_the_database_refuses_to_change_or_delete_a_document():
    adv = AdvertiserFactory()
    doc = document_issue(_doc(adv, "a"))
    for attempt in (lambda: Document.objects.filter(pk=doc.pk).update(total=D("0")),
                    lambda: Document.objects.filter(pk=doc.pk).delete()):
        with pytest.raises((IntegrityError, InternalError)), transaction.atomic():
            attempt()
    assert Document.objects.get(pk=doc.pk).total == D("1")


@pytest.mark.django_db(transaction=True)
def test_concurrent_issuers_take_gapless_distinct_numbers():
    advertisers = [AdvertiserFactory() for _ in range(4)]
    errors, barrier = [], threading.Barrier(8)

    def work(i):
        try:
            barrier.wait(timeout=30)
            for n in range(10):
                with transaction.atomic():
                    document_issue(_doc(advertisers[i % 4], f"t{i}-{n}"))
                    if n == 5 and i % 2:
                        raise RuntimeError("rolled back")  # its number goes back
        except RuntimeError:
            pass
        except Exception as e:  # noqa: BLE001
            errors.append(e)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not errors
    numbers = sorted(int(n.rsplit("-", 1)[1]) for n in Document.objects.values_list("number", flat=True))
    assert numbers == list(range(1, len(numbers) + 1))
    assert len(numbers) == 8 * 10 - 4 * 5  # the four rolled-back threads stopped at their 6th
    assert DocumentCounter.objects.get(series="CN").last_number == len(numbers)


# ---- API (API.md): billing profile and documents ----

PROFILE = {"legal_name": "Acme GmbH", "address_line1": "Main St 1", "address_line2": "", "city": "Berlin",
           "postal_code": "10115", "country": "DE", "tax_id": "136695976", "invoice_emails": ["ap@acme.test"],
           "po_number": "PO-7"}


def test_api_billing_profile_put_and_get(api, staff):
    adv = AdvertiserFactory(currency="EUR")
    r = api.put(f"/advertisers/{adv.pk}/billing-profile", PROFILE, token=role_token(adv, "finance"))
    assert r.status_code == 200, r.content
    assert r.json() == {**PROFILE, "tax_id": DE_VAT, "tax_id_valid": True, "inherited": False}
    assert api.get(f"/advertisers/{adv.pk}/billing-profile", token=role_token(adv, "analyst")).json()["city"] == "Berlin"
    assert api.put(f"/advertisers/{adv.pk}/billing-profile", PROFILE, token=staff).status_code == 200
    from portal.models import AuditLog
    assert AuditLog.objects.filter(action="billing_profile_set", advertiser=adv).count() == 2


@pytest.mark.parametrize("field,value,code", [
    ("tax_id", "DE123456789", "invalid_tax_id"), ("country", "XX", "invalid_country"),
    ("country", "Germany", "invalid_country"), ("invoice_emails", ["not-an-email"], "invalid_invoice_emails"),
    ("legal_name", "", "invalid_legal_name"), ("legal_name", "a\x00b", "invalid_text"),
])
def test_api_billing_profile_refuses_bad_input_and_records_nothing(api, field, value, code):
    adv = AdvertiserFactory()
    r = api.put(f"/advertisers/{adv.pk}/billing-profile", {**PROFILE, field: value}, token=role_token(adv, "admin"))
    assert r.status_code == 400 and error_of(r)["code"] == code
    from billing.models import BillingProfile
    assert not BillingProfile.objects.exists()


def test_api_billing_profile_and_documents_role_matrix(api):
    adv, other = AdvertiserFactory(), AdvertiserFactory()
    doc = document_issue(_doc(adv, "a"))
    paths = [f"/advertisers/{adv.pk}/billing-profile", f"/advertisers/{adv.pk}/documents", f"/documents/{doc.pk}"]
    for path in paths:
        assert api.get(path).status_code == 401
        assert api.get(path, token=role_token(other, "admin")).status_code == 404
        assert api.get(path, token=stranger_token()).status_code == 404
        assert api.get(path, token=role_token(adv, "operator")).status_code == 403  # no payment data
        assert api.get(path, token=role_token(adv, "analyst")).status_code == 200
    put = f"/advertisers/{adv.pk}/billing-profile"
    assert api.put(put, PROFILE, token=role_token(adv, "analyst")).status_code == 403
    assert api.put(put, PROFILE, token=role_token(other, "admin")).status_code == 404
    assert api.put(put, PROFILE).status_code == 401


def test_api_documents_list_and_detail(api):
    adv = AdvertiserFactory(currency="EUR")
    profile(adv, country="IE")
    card_deposit_create(advertiser=adv, amount="50.00", card_number="4242 4242 4242 4242", idempotency_key="k")
    token = role_token(adv, "finance")
    [row] = api.get(f"/advertisers/{adv.pk}/documents", token=token).json()
    assert {k: row[k] for k in ("kind", "net", "tax", "total", "tax_rate", "status", "amount_due")} == {
        "kind": "receipt", "net": "50.00", "tax": "11.50", "total": "61.50", "tax_rate": "23", "status": "paid",
        "amount_due": "0.00"}
    assert api.get(f"/advertisers/{adv.pk}/documents?kind=invoice", token=token).json() == []
    bad = api.get(f"/advertisers/{adv.pk}/documents?kind=bogus", token=token)
    assert bad.status_code == 400 and error_of(bad)["code"] == "invalid_kind"
    detail = api.get(f"/documents/{row['id']}", token=token).json()
    assert detail["lines"] == [{"description": "Deposit to the cash balance · card ···· 4242", "net": "50.00",
                                "tax": "11.50", "total": "61.50"}]
    assert detail["seller"]["country"] == "IE" and detail["billed_to"]["legal_name"] == "Acme GmbH"
    assert api.get("/documents/99999999999", token=token).status_code == 404


# ---- automatic payment and monthly invoicing: tax on own money only ----

def _auto(threshold="180.00", currency="EUR"):
    from billing.autopay import payment_method_set, threshold_set
    from tests.factories import CampaignFactory
    adv = AdvertiserFactory(billing_method="automatic", currency=currency)
    payment_method_set(advertiser=adv, card_number="4242424242424242", expiry="12/30")
    threshold_set(advertiser=adv, amount=threshold, reason="test")
    adv.refresh_from_db()
    return adv, CampaignFactory(advertiser=adv)


def _balances(adv):
    return {a.purpose: a.balance for a in LedgerAccount.objects.filter(advertiser=adv)}


def test_a_threshold_bill_charges_its_tax_books_it_and_issues_a_receipt(spend_event):
    from billing.autopay import charge_thresholds
    from billing.models import Bill
    from billing.spend import spend_record
    from tests.factories import grant
    adv, camp = _auto()
    profile(adv, country="IE")
    grant(adv, "free", "50.00")
    spend_record(event=spend_event(camp, "230.00"))  # 50 paid by credit, 180 accrued: only that is taxed
    assert charge_thresholds()["paid"] == 1
    bill = Bill.objects.get(advertiser=adv)
    assert (bill.amount, bill.tax, bill.tax_rate) == (D("180.00"), D("41.40"), D("23"))
    assert GatewayCharge.objects.get().amount == D("221.40")
    bal = _balances(adv)
    assert (bal[Purpose.SETTLEMENT], bal[Purpose.TAX_PAYABLE], bal[Purpose.BILLED]) == (D("221.40"), D("41.40"), 0)
    receipt = Document.objects.get(advertiser=adv, kind="receipt")
    assert (receipt.net, receipt.tax, receipt.total, receipt.bill_id) == (D("180"), D("41.40"), D("221.40"), bill.pk)
    assert charge_thresholds()["bills"] == 0 and Document.objects.count() == 1
    assert reconcile_ledger()["differences"] == 0


def test_a_bill_in_jpy_and_a_reverse_charge_bill(spend_event):
    from billing.autopay import charge_thresholds
    from billing.models import Bill
    from billing.spend import spend_record
    jp, camp = _auto(threshold="20000", currency="JPY")
    profile(jp, country="IE")
    spend_record(event=spend_event(camp, "20001"))
    de, camp2 = _auto()
    profile(de, country="DE", tax_id=DE_VAT)
    spend_record(event=spend_event(camp2, "180.00"))
    charge_thresholds()
    jp_bill, de_bill = Bill.objects.get(advertiser=jp), Bill.objects.get(advertiser=de)
    assert (jp_bill.amount, jp_bill.tax) == (D("20000"), D("4600"))
    assert (de_bill.tax, de_bill.tax_note) == (D("0"), REVERSE_CHARGE)
    assert Document.objects.get(advertiser=de).tax_note == REVERSE_CHARGE


def test_a_monthly_invoice_is_net_of_credits_plus_tax_and_paying_it_books_the_tax(spend_event):
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    from billing.autopay import bill_pay, payment_method_set
    from billing.invoicing import issue_monthly_invoices
    from billing.models import Bill
    from billing.spend import spend_record
    from billing.switching import billing_settings_set
    from tests.factories import CampaignFactory, grant
    tz = ZoneInfo("Europe/Berlin")
    adv = AdvertiserFactory(billing_method="monthly_invoice", currency="KWD", timezone_name="Europe/Berlin")
    billing_settings_set(advertiser=adv, credit_line_limit="1000.000")
    payment_method_set(advertiser=adv, card_number="4242424242424242", expiry="12/30")
    profile(adv, country="DE")  # no VAT ID: Germany's 19 %
    camp = CampaignFactory(advertiser=adv)
    grant(adv, "free", "50.000", valid_from=datetime(2026, 9, 1, tzinfo=tz))
    spend_record(event=spend_event(camp, "150.001", occurred_at=datetime(2026, 10, 10, 12, tzinfo=tz)))
    issue_monthly_invoices(at=datetime(2026, 11, 1, 0, 5, tzinfo=tz))
    inv = Bill.objects.get(advertiser=adv)
    assert (inv.amount, inv.tax) == (D("100.001"), D("19.000"))  # 19.00019 rounded once
    doc = Document.objects.get(advertiser=adv, kind="invoice")
    assert (doc.net, doc.tax, doc.total, doc.bill_id) == (D("100.001"), D("19.000"), D("119.001"), inv.pk)
    assert doc.number == "INV-2026-000001" and doc.due_at == inv.due_at
    from billing.documents import document_status
    assert document_status(doc, at=inv.due_at - timedelta(days=1)) == "issued"
    bill_pay(bill=inv)
    assert GatewayCharge.objects.get().amount == D("119.001")
    assert _balances(adv)[Purpose.TAX_PAYABLE] == D("19.000") and _balances(adv)[Purpose.CREDIT_LINE] == 0
    doc.refresh_from_db()
    assert document_status(doc) == "paid"
    assert reconcile_ledger()["differences"] == 0


def test_an_invoice_fully_covered_by_credit_is_no_need_to_pay(spend_event):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from billing.documents import document_status
    from billing.invoicing import issue_monthly_invoices
    from billing.models import Bill
    from billing.spend import spend_record
    from billing.switching import billing_settings_set
    from tests.factories import CampaignFactory, grant
    tz = ZoneInfo("UTC")
    adv = AdvertiserFactory(billing_method="monthly_invoice", currency="EUR")
    billing_settings_set(advertiser=adv, credit_line_limit="1000.00")
    camp = CampaignFactory(advertiser=adv)
    grant(adv, "free", "100.00", valid_from=datetime(2026, 9, 1, tzinfo=tz))
    spend_record(event=spend_event(camp, "60.00", occurred_at=datetime(2026, 10, 10, 12, tzinfo=tz)))
    issue_monthly_invoices(at=datetime(2026, 11, 1, 0, 5, tzinfo=tz))
    issue_monthly_invoices(at=datetime(2026, 11, 1, 1, 5, tzinfo=tz))  # again: still one
    assert not Bill.objects.filter(advertiser=adv).exists()
    doc = Document.objects.get(advertiser=adv)
    assert (doc.kind, doc.total, document_status(doc)) == ("invoice", D("0"), "no_need_to_pay")


# ---- R41 bank transfers and R40 disputes ----

def _invoiced(spend_event, amount="100.00"):
    from datetime import datetime, timedelta

    from billing.invoicing import issue_monthly_invoices
    from billing.spend import spend_record
    from billing.switching import billing_settings_set
    from django.utils import timezone
    from tests.factories import CampaignFactory
    adv = AdvertiserFactory(billing_method="monthly_invoice", currency="EUR")
    billing_settings_set(advertiser=adv, credit_line_limit="1000.00")
    profile(adv, country="IE")
    camp = CampaignFactory(advertiser=adv)
    now = timezone.now()
    last_month = (now.replace(day=1) - timedelta(days=3)).replace(hour=12)
    spend_record(event=spend_event(camp, amount, occurred_at=last_month))
    issue_monthly_invoices(at=now)
    return adv, Document.objects.get(advertiser=adv, kind="invoice")


def test_api_bank_transfers_pay_an_invoice_in_parts_once_per_reference(api, staff, spend_event):
    from billing.models import Bill, InvoicePayment
    adv, doc = _invoiced(spend_event)  # 100.00 + 23.00 Irish VAT
    path = f"/documents/{doc.pk}/payments"
    first = api.post(path, {"amount": "100.00", "reference": "BANK-1", "paid_at": "2026-12-01T10:00:00Z"}, token=staff)
    assert first.status_code == 200, first.content
    assert (first.json()["status"], first.json()["amount_due"]) in {("partly_paid", "23.00"), ("overdue", "23.00")}
    again = api.post(path, {"amount": "100.00", "reference": "BANK-1", "paid_at": "2026-12-01T10:00:00Z"}, token=staff)
    assert again.status_code == 200 and InvoicePayment.objects.count() == 1
    reused = api.post(path, {"amount": "5.00", "reference": "BANK-1"}, token=staff)
    assert reused.status_code == 409 and error_of(reused)["code"] == "reference_reused"
    too_much = api.post(path, {"amount": "23.01", "reference": "BANK-2"}, token=staff)
    assert too_much.status_code == 422 and error_of(too_much)["code"] == "payment_exceeds_amount_due"
    bal = _balances(adv)
    # tax is due on what is received, in proportion (decision 0024): 100.00 of 123.00 carries 18.69
    assert (bal[Purpose.CREDIT_LINE], bal[Purpose.TAX_PAYABLE]) == (D("18.69"), D("18.69"))
    # "Pay now" by card is refused once a transfer paid part of it: nobody pays twice
    from billing.autopay import bill_pay
    from portal.errors import BusinessError
    with pytest.raises(BusinessError) as e:
        bill_pay(bill=doc.bill)
    assert e.value.code == "invoice_partly_paid"
    rest = api.post(path, {"amount": "23.00", "reference": "BANK-2"}, token=staff)
    assert (rest.json()["status"], rest.json()["amount_due"]) == ("paid", "0.00")
    assert Bill.objects.get(pk=doc.bill_id).status == "paid"
    assert _balances(adv)[Purpose.TAX_PAYABLE] == D("23.00")
    receipts = Document.objects.filter(advertiser=adv, kind="receipt").order_by("pk")
    assert [r.total for r in receipts] == [D("100.00"), D("23.00")] and receipts[0].refers_to_id == doc.pk
    assert [(r.net, r.tax) for r in receipts] == [(D("81.31"), D("18.69")), (D("18.69"), D("4.31"))]
    assert reconcile_ledger()["differences"] == 0
    # only staff record transfers; another advertiser's document is 404
    assert api.post(path, {"amount": "1.00", "reference": "X"}, token=role_token(adv, "admin")).status_code == 403
    assert api.post(path, {"amount": "1.00", "reference": "X"}).status_code == 401
    bad = api.post(path, {"amount": "-1", "reference": "X"}, token=staff)
    assert bad.status_code == 400 and error_of(bad)["code"] == "invalid_amount"


def test_api_disputes_within_seven_days_one_open_at_a_time(api, spend_event):
    from datetime import timedelta
    from unittest import mock

    from billing.models import Dispute
    from django.utils import timezone
    from portal.models import AuditLog
    adv, doc = _invoiced(spend_event)
    path = f"/documents/{doc.pk}/disputes"
    r = api.post(path, {"reason": "We paused that campaign on the 3rd"}, token=role_token(adv, "finance"))
    assert r.status_code == 201 and r.json()["status"] == "open"
    assert AuditLog.objects.filter(action="invoice_dispute_open", advertiser=adv).exists()
    twice = api.post(path, {"reason": "again"}, token=role_token(adv, "admin"))
    assert twice.status_code == 409 and error_of(twice)["code"] == "dispute_open"
    assert api.post(path, {"reason": "x"}, token=role_token(adv, "analyst")).status_code == 403
    assert api.post(path, {"reason": "x"}, token=role_token(AdvertiserFactory(), "admin")).status_code == 404
    empty = api.post(path, {"reason": " "}, token=role_token(adv, "admin"))
    assert empty.status_code == 400 and error_of(empty)["code"] == "invalid_reason"
    Dispute.objects.all().update(status="rejected")
    with mock.patch("billing.disputes.timezone.now", return_value=doc.issued_at + timedelta(days=7, seconds=1)):
        late = api.post(path, {"reason": "late"}, token=role_token(adv, "admin"))
    assert late.status_code == 422 and error_of(late)["code"] == "dispute_window_closed"
    assert Dispute.objects.count() == 1
