"""Credit notes (SPEC R40, decision 0024): never more than the document still counts, idempotent
by key, tax reversed in proportion, what was owed reduced and what was paid given back — to the
card exactly once, even when retried concurrently, or by bank transfer; never as credit."""

import threading
from decimal import Decimal

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.credit_notes import credit_note_issue, refunds_send
from billing.documents import amount_due, document_status, with_state
from billing.invoice_payments import invoice_transfer_record
from billing.money import fmt
from billing.models import (
    Bill,
    Document,
    DocumentKind,
    GatewayRefund,
    LedgerTransaction,
    Purpose,
    Refund,
    RefundMethod,
    RefundStatus,
)
from billing.reconcile import reconcile_ledger
from billing.topups import card_deposit_create
from portal.errors import BusinessError, Conflict
from portal.models import AuditLog, Notification
from promotions.models import Credit
from tests.api_helpers import api, error_of, role_token, staff  # noqa: F401
from tests.billing.test_documents_tax import _auto, _balances, _invoiced, profile
from tests.factories import AdvertiserFactory

pytestmark = pytest.mark.django_db
D = Decimal


def fresh(doc):
    return with_state(Document.objects.filter(pk=doc.pk)).get()


def card_deposit(amount="100.00", key="k-1"):
    adv = AdvertiserFactory(currency="EUR")
    profile(adv, country="IE")
    deposit, _ = card_deposit_create(advertiser=adv, amount=amount, card_number="4242 4242 4242 4242",
                                     idempotency_key=key)
    return adv, Document.objects.get(deposit=deposit)


# ---- an unpaid invoice: the credit note takes off what is owed ----

def test_a_credit_note_on_an_unpaid_invoice_reduces_what_is_owed_with_its_tax_in_proportion(spend_event):
    adv, inv = _invoiced(spend_event)  # 100.00 + 23.00
    note, new = credit_note_issue(actor=None, document=inv, amount="61.50", reason="Campaign ran twice",
                                  idempotency_key="cn-1")
    assert new and note.kind == DocumentKind.CREDIT_NOTE and note.number.startswith(f"CN-{note.issued_at.year}-")
    assert (note.net, note.tax, note.total, note.refers_to_id) == (D("50.00"), D("11.50"), D("61.50"), inv.pk)
    assert (note.tax_rate, note.billed_to["legal_name"]) == (inv.tax_rate, "Acme GmbH")
    assert not Refund.objects.exists()  # nothing was paid: nothing goes back
    bal = _balances(adv)
    assert (bal[Purpose.CREDIT_LINE], bal.get(Purpose.TAX_PAYABLE, 0)) == (D("50.00"), 0)  # tax books when paid
    assert amount_due(fresh(inv)) == D("61.50")
    # the rest paid by transfer carries the rest of the tax: the books say 23.00 - 11.50
    invoice_transfer_record(actor=None, document=inv, amount="61.50", reference="BANK-1")
    bal = _balances(adv)
    assert (bal[Purpose.CREDIT_LINE], bal[Purpose.TAX_PAYABLE]) == (0, D("11.50"))
    assert Bill.objects.get(pk=inv.bill_id).status == "paid" and document_status(fresh(inv)) == "paid"
    assert reconcile_ledger()["differences"] == 0
    assert AuditLog.objects.filter(action="credit_note_issue", advertiser=adv).count() == 1
    assert Notification.objects.filter(advertiser=adv, kind="credit_note_issued").count() == 1


def test_a_credit_note_for_the_whole_unpaid_invoice_settles_it_and_never_more(spend_event):
    adv, inv = _invoiced(spend_event)
    with pytest.raises(BusinessError) as e:
        credit_note_issue(actor=None, document=inv, amount="123.01", reason="x", idempotency_key="too-much")
    assert e.value.code == "credit_note_exceeds_document"
    credit_note_issue(actor=None, document=inv, amount="23.00", reason="part", idempotency_key="a")
    with pytest.raises(BusinessError) as e:
        credit_note_issue(actor=None, document=inv, amount="100.01", reason="x", idempotency_key="b")
    assert e.value.code == "credit_note_exceeds_document"
    credit_note_issue(actor=None, document=inv, amount="100.00", reason="rest", idempotency_key="c")
    inv = fresh(inv)
    assert (document_status(inv), amount_due(inv)) == ("credited", 0)
    assert Bill.objects.get(pk=inv.bill_id).status == "paid"
    assert sum(n.tax for n in inv.corrections.all()) == inv.tax  # the shares add up to the tax exactly
    assert _balances(adv)[Purpose.CREDIT_LINE] == 0 and not Refund.objects.exists()
    with pytest.raises(BusinessError) as e:
        credit_note_issue(actor=None, document=inv, amount="0.01", reason="x", idempotency_key="d")
    assert e.value.code == "credit_note_exceeds_document"
    # and "Pay now" never charges a card for an invoice a credit note touched
    from billing.autopay import bill_pay
    _, other = _invoiced(spend_event)
    credit_note_issue(actor=None, document=other, amount="1.00", reason="x", idempotency_key="e")
    with pytest.raises(BusinessError) as e:
        bill_pay(bill=other.bill)
    assert e.value.code == "invoice_partly_paid"


def test_a_credit_note_is_idempotent_by_key(spend_event):
    adv, inv = _invoiced(spend_event)
    first, new = credit_note_issue(actor=None, document=inv, amount="10.00", reason="x", idempotency_key="k")
    again, new_again = credit_note_issue(actor=None, document=inv, amount="10.00", reason="x", idempotency_key="k")
    assert (new, new_again, again.pk) == (True, False, first.pk)
    with pytest.raises(Conflict) as e:
        credit_note_issue(actor=None, document=inv, amount="11.00", reason="x", idempotency_key="k")
    assert e.value.code == "idempotency_key_reused"
    assert Document.objects.filter(kind=DocumentKind.CREDIT_NOTE).count() == 1
    assert LedgerTransaction.objects.filter(kind="credit_note").count() == 1


# ---- paid documents: the money goes back, never as credit ----

def test_a_card_deposit_receipt_refunds_the_card_once_and_takes_back_the_cash():
    adv, receipt = card_deposit()  # card charged 123.00: 100.00 cash, 23.00 tax
    note, _ = credit_note_issue(actor=None, document=receipt, amount="50.00", reason="Wrong amount",
                                idempotency_key="cn")
    assert (note.net, note.tax) == (D("40.66"), D("9.34"))  # round_down(50 × 23 / 123) = 9.34
    refund = Refund.objects.get()
    assert (refund.method, refund.status, refund.amount, refund.charge_key) == (
        RefundMethod.CARD, RefundStatus.PENDING, D("50.00"), "k-1")
    assert refunds_send() == {"refunded": 1, "failed": 0}
    assert refunds_send() == {"refunded": 0, "failed": 0}  # sent once
    refund.refresh_from_db()
    assert refund.status == RefundStatus.REFUNDED and refund.gateway_reference.startswith("re_sbx_")
    assert GatewayRefund.objects.get().amount == D("50.00")
    bal = _balances(adv)
    assert (bal[Purpose.CASH], bal[Purpose.TAX_PAYABLE], bal[Purpose.SETTLEMENT]) == (D("59.34"), D("13.66"), D("73.00"))
    assert not Credit.objects.filter(advertiser=adv).exists()  # never promotional credit
    assert document_status(fresh(receipt)) == "paid"
    credit_note_issue(actor=None, document=receipt, amount="73.00", reason="Rest", idempotency_key="cn2")
    assert document_status(fresh(receipt)) == "credited"
    assert _balances(adv)[Purpose.TAX_PAYABLE] == 0 and _balances(adv)[Purpose.CASH] == 0
    refunds_send()
    assert sum(GatewayRefund.objects.values_list("amount", flat=True)) == D("123.00")
    assert reconcile_ledger()["differences"] == 0


def test_cash_already_spent_is_not_given_back(spend_event):
    from billing.spend import spend_record
    from tests.factories import CampaignFactory
    adv, receipt = card_deposit()
    spend_record(event=spend_event(CampaignFactory(advertiser=adv), "90.00"))
    with pytest.raises(BusinessError) as e:
        credit_note_issue(actor=None, document=receipt, amount="123.00", reason="x", idempotency_key="cn")
    assert e.value.code == "credit_note_exceeds_cash"
    assert not Document.objects.filter(kind=DocumentKind.CREDIT_NOTE).exists() and not Refund.objects.exists()


def test_a_threshold_bill_receipt_refunds_its_card_charge(spend_event):
    from billing.autopay import charge_thresholds
    from billing.spend import spend_record
    adv, camp = _auto()
    profile(adv, country="IE")
    spend_record(event=spend_event(camp, "180.00"))
    charge_thresholds()
    bill = Bill.objects.get(advertiser=adv)
    receipt = Document.objects.get(advertiser=adv, kind="receipt")
    credit_note_issue(actor=None, document=receipt, amount=fmt(bill.charge_amount, "EUR"), reason="Billing error",
                      idempotency_key="cn")
    refunds_send()
    refund = Refund.objects.get()
    assert (refund.charge_key, refund.status, refund.card_last4) == (bill.charge_key, RefundStatus.REFUNDED, "4242")
    bal = _balances(adv)
    assert (bal[Purpose.SETTLEMENT], bal[Purpose.TAX_PAYABLE]) == (0, 0)
    # a payment a credit note gave back is not charged back in full as well
    from billing.chargebacks import chargeback_record
    with pytest.raises(BusinessError) as e:
        chargeback_record(bill=bill, reference="cb-1", reason="fraud")
    assert e.value.code == "payment_refunded"
    assert reconcile_ledger()["differences"] == 0


def test_an_invoice_paid_by_card_is_refunded_to_the_card(spend_event):
    from billing.autopay import bill_pay, payment_method_set
    adv, inv = _invoiced(spend_event)
    payment_method_set(advertiser=adv, card_number="4242424242424242", expiry="12/30")
    bill_pay(bill=inv.bill)
    note, _ = credit_note_issue(actor=None, document=fresh(inv), amount="123.00", reason="Duplicate delivery",
                                idempotency_key="cn")
    assert (note.net, note.tax) == (D("100.00"), D("23.00"))
    assert Refund.objects.get().method == RefundMethod.CARD
    assert _balances(adv)[Purpose.TAX_PAYABLE] == 0
    # the receipt of that card payment is corrected through the invoice, never twice
    receipt = Document.objects.get(advertiser=adv, kind="receipt")
    with pytest.raises(BusinessError) as e:
        credit_note_issue(actor=None, document=receipt, amount="1.00", reason="x", idempotency_key="cn2")
    assert e.value.code == "credit_the_invoice"


def test_an_invoice_part_paid_by_transfer_is_reduced_then_the_rest_goes_back_by_bank_transfer(spend_event):
    adv, inv = _invoiced(spend_event)
    invoice_transfer_record(actor=None, document=inv, amount="100.00", reference="BANK-1")  # 23.00 still due
    note, _ = credit_note_issue(actor=None, document=inv, amount="50.00", reason="Goodwill", idempotency_key="cn")
    assert (note.data["reduced"], note.data["refunded"], note.data["refund_method"]) == ("23.00", "27.00",
                                                                                         "bank_transfer")
    refund = Refund.objects.get()
    assert (refund.method, refund.status, refund.amount) == (RefundMethod.BANK_TRANSFER, RefundStatus.TO_SEND, D("27.00"))
    assert refunds_send() == {"refunded": 0, "failed": 0}  # staff send a bank transfer, not the gateway
    inv = fresh(inv)
    assert (document_status(inv), amount_due(inv)) == ("paid", 0) and inv.bill.status == "paid"
    # the ledger's tax is the documents' tax: invoice less credit note
    assert _balances(adv)[Purpose.TAX_PAYABLE] == inv.tax - note.tax
    assert _balances(adv)[Purpose.CREDIT_LINE] == 0
    assert reconcile_ledger()["differences"] == 0


def test_documents_a_credit_note_cannot_correct():
    adv, receipt = card_deposit()
    note, _ = credit_note_issue(actor=None, document=receipt, amount="1.00", reason="x", idempotency_key="cn")
    with pytest.raises(BusinessError) as e:
        credit_note_issue(actor=None, document=note, amount="1.00", reason="x", idempotency_key="cn2")
    assert e.value.code == "not_creditable"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(st.sampled_from(["transfer", "credit"]), st.integers(1, 12300)), min_size=1,
                      max_size=6))
def test_property_tax_on_the_books_is_the_documents_tax_whatever_the_order(spend_event, steps):
    """Random transfers and credit notes on one invoice: nothing negative, never more than the
    invoice, and once it is settled the tax payable is the invoice's tax less its credit notes'."""
    adv, inv = _invoiced(spend_event)
    for n, (what, cents) in enumerate(steps):
        amount = D(cents) / 100
        try:
            if what == "transfer":
                invoice_transfer_record(actor=None, document=inv, amount=str(amount), reference=f"B-{n}")
            else:
                credit_note_issue(actor=None, document=inv, amount=str(amount), reason="r", idempotency_key=f"c-{n}")
        except BusinessError as e:
            assert e.code in {"payment_exceeds_amount_due", "nothing_due", "credit_note_exceeds_document"}
    inv = fresh(inv)
    notes = [c for c in inv.corrections.all() if c.kind == DocumentKind.CREDIT_NOTE]
    paid = sum((p.amount for p in inv.payments.all()), D(0))
    credited = sum((c.total for c in notes), D(0))
    assert credited <= inv.total and all(c.net >= 0 and c.tax >= 0 for c in notes)
    bal = _balances(adv)
    assert all(v >= 0 for v in bal.values()), bal
    assert sum((r.amount for r in Refund.objects.filter(advertiser=adv)), D(0)) <= paid  # only what was paid goes back
    owed = amount_due(inv)
    if owed == 0:  # settled: the books' tax is the documents' tax
        assert bal.get(Purpose.TAX_PAYABLE, 0) == inv.tax - sum(c.tax for c in notes)
        assert bal[Purpose.CREDIT_LINE] == 0
    else:
        assert owed == inv.total - paid - credited


# ---- concurrency: the card is refunded exactly once ----

@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_of_one_credit_note_refund_the_card_once():
    from datetime import date

    from billing.models import TaxRate
    # a transactional test starts from a flushed database: the seeded rate is put back
    TaxRate.objects.get_or_create(country="IE", effective_from=date(2024, 1, 1), defaults={"rate": D("23")})
    adv, receipt = card_deposit()
    errors, notes, barrier = [], [], threading.Barrier(6)

    def work():
        try:
            barrier.wait(timeout=30)
            note, _ = credit_note_issue(actor=None, document=receipt, amount="123.00", reason="Retry storm",
                                        idempotency_key="same")
            notes.append(note.pk)
            refunds_send()
        except Exception as e:  # noqa: BLE001
            errors.append(e)
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(set(notes)) == 1 and Document.objects.filter(kind=DocumentKind.CREDIT_NOTE).count() == 1
    assert Refund.objects.get().status == RefundStatus.REFUNDED
    assert GatewayRefund.objects.count() == 1 and GatewayRefund.objects.get().amount == D("123.00")
    assert LedgerTransaction.objects.filter(kind="credit_note").count() == 1
    assert reconcile_ledger()["differences"] == 0


# ---- API (API.md: POST /documents/{id}/credit-notes) ----

def test_api_credit_notes_staff_only_validated_and_idempotent(api, staff, spend_event):
    adv, inv = _invoiced(spend_event)
    path = f"/documents/{inv.pk}/credit-notes"
    body = {"amount": "23.00", "reason": "Disputed clicks", "idempotency_key": "api-1"}
    r = api.post(path, body, token=staff)
    assert r.status_code == 201, r.content
    out = r.json()
    assert (out["kind"], out["total"], out["tax"], out["refers_to"], out["status"]) == (
        "credit_note", "23.00", "4.30", str(inv.pk), "issued")
    assert api.post(path, body, token=staff).json()["id"] == out["id"]
    over = api.post(path, {**body, "amount": "100.01", "idempotency_key": "api-2"}, token=staff)
    assert over.status_code == 422 and error_of(over)["code"] == "credit_note_exceeds_document"
    reused = api.post(path, {**body, "amount": "1.00"}, token=staff)
    assert reused.status_code == 409 and error_of(reused)["code"] == "idempotency_key_reused"
    for field, value, code in [("amount", "-1", "invalid_amount"), ("amount", "abc", "invalid_amount"),
                               ("reason", " ", "invalid_reason"), ("idempotency_key", "", "invalid_idempotency_key")]:
        bad = api.post(path, {**body, field: value, "idempotency_key": body["idempotency_key"] + field
                              if field != "idempotency_key" else value}, token=staff)
        assert bad.status_code == 400 and error_of(bad)["code"] == code, (field, bad.content)
    assert Document.objects.filter(kind=DocumentKind.CREDIT_NOTE).count() == 1  # nothing else recorded
    assert api.post(path, body, token=role_token(adv, "admin")).status_code == 403
    assert api.post(path, body, token=role_token(AdvertiserFactory(), "admin")).status_code == 403
    assert api.post(path, body).status_code == 401
    assert api.post("/documents/99999999/credit-notes", body, token=staff).status_code == 404
    # the advertiser sees it in its list
    rows = api.get(f"/advertisers/{adv.pk}/documents?kind=credit_note", token=role_token(adv, "finance")).json()
    assert [row["id"] for row in rows] == [out["id"]]


# ---- the admin: credit notes, disputes and refunds (staff) ----

def _staff_client(client, role):
    from django.contrib.auth.models import Group

    from tests.factories import UserFactory
    user = UserFactory(is_staff=True)
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    client.force_login(user)
    return user


def test_a_billing_manager_issues_a_credit_note_from_the_document_admin(client, spend_event):
    from django.urls import reverse

    from portal.permissions import BILLING_MANAGER, SUPPORT_AGENT
    adv, inv = _invoiced(spend_event)
    changelist = reverse("admin:billing_document_changelist")
    _staff_client(client, SUPPORT_AGENT)
    assert "issue_credit_note" not in client.get(changelist).text  # a support agent cannot give money back
    manager = _staff_client(client, BILLING_MANAGER)
    listing = client.get(changelist).text
    assert "issue_credit_note" in listing and inv.number in listing and "123.00 EUR" in listing
    post = {"action": "issue_credit_note", "_selected_action": [str(inv.pk)]}
    page = client.post(changelist, post)
    assert page.status_code == 200 and 'name="amount"' in page.text and "123.00 EUR" in page.text
    key = page.context["form"]["idempotency_key"].value()
    assert key
    # too much: the error is shown, nothing is issued
    client.post(changelist, {**post, "confirm": "yes", "amount": "200.00", "reason": "x", "idempotency_key": key},
                follow=True)
    assert not Document.objects.filter(kind=DocumentKind.CREDIT_NOTE).exists()
    done = {**post, "confirm": "yes", "amount": "12.30", "reason": "Clicks from a bot", "idempotency_key": key}
    assert client.post(changelist, done).status_code == 302
    assert client.post(changelist, done).status_code == 302  # a double submit issues one
    note = Document.objects.get(kind=DocumentKind.CREDIT_NOTE)
    assert (note.total, note.created_by, note.reason) == (D("12.30"), manager, "Clicks from a bot")
    assert AuditLog.objects.get(action="credit_note_issue").actor == manager


def test_staff_resolve_a_dispute_with_a_credit_note_or_reject_it(client, spend_event):
    from django.urls import reverse

    from billing.disputes import dispute_open
    from billing.models import Dispute
    from portal.permissions import BILLING_MANAGER
    adv, inv = _invoiced(spend_event)
    dispute = dispute_open(actor=None, document=inv, reason="Paused on the 3rd")
    _staff_client(client, BILLING_MANAGER)
    changelist = reverse("admin:billing_dispute_changelist")
    post = {"action": "resolve_with_credit_note", "_selected_action": [str(dispute.pk)]}
    key = client.post(changelist, post).context["form"]["idempotency_key"].value()
    client.post(changelist, {**post, "confirm": "yes", "amount": "24.60", "reason": "Agreed: 3 days", "idempotency_key": key})
    dispute.refresh_from_db()
    assert dispute.status == "credited" and dispute.credit_note.total == D("24.60")
    assert Notification.objects.filter(advertiser=adv, kind="dispute_decided").count() == 1
    assert AuditLog.objects.filter(action="invoice_dispute_credit").exists()
    # another dispute, rejected with a note that the advertiser gets
    other = dispute_open(actor=None, document=inv, reason="And the 4th")
    client.post(changelist, {"action": "reject", "_selected_action": [str(other.pk)], "confirm": "yes",
                             "reason": "Delivery on the 4th was billed correctly"})
    other.refresh_from_db()
    assert (other.status, other.resolution) == ("rejected", "Delivery on the 4th was billed correctly")
    assert Notification.objects.filter(advertiser=adv, kind="dispute_decided").count() == 2
    assert Dispute.objects.filter(status="open").count() == 0


def test_a_bank_transfer_refund_is_marked_paid_back_in_the_admin(client, spend_event):
    from django.urls import reverse

    from portal.permissions import BILLING_MANAGER
    adv, inv = _invoiced(spend_event)
    invoice_transfer_record(actor=None, document=inv, amount="123.00", reference="BANK-1")
    credit_note_issue(actor=None, document=inv, amount="10.00", reason="x", idempotency_key="cn")
    refund = Refund.objects.get()
    assert refund.status == RefundStatus.TO_SEND
    _staff_client(client, BILLING_MANAGER)
    client.post(reverse("admin:billing_refund_changelist"), {
        "action": "mark_sent", "_selected_action": [str(refund.pk)], "confirm": "yes", "reason": "SEPA ref 88120"})
    refund.refresh_from_db()
    assert (refund.status, refund.gateway_reference) == (RefundStatus.REFUNDED, "SEPA ref 88120")
    assert AuditLog.objects.filter(action="refund_mark_sent").exists()
