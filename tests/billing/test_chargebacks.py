"""Chargebacks (SPEC R13, R14, R26, R30, R36; docs/decisions/0010): a reversed card payment is
booked back once per gateway reference, the amount is owed again, and the credit freezes by the
automatic rule `chargeback`. Doors: the sandbox gateway's report and the bill's admin action."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.core import mail
from django.urls import reverse

from billing.autopay import bill_pay, charge_thresholds, payment_method_set, retry_payments, threshold_set
from billing.chargebacks import chargeback_record
from billing.deposits import deposit_create
from billing.gateway import SandboxGateway
from billing.models import Bill, BillStatus, Chargeback, GatewayCharge, LedgerAccount, LedgerTransaction, Purpose, TxKind
from billing.reconcile import reconcile_ledger
from billing.spend import spend_record
from billing.topups import card_deposit_create
from portal.errors import BadInput, BusinessError, Conflict
from portal.models import AuditLog, Notification
from portal.permissions import BILLING_MANAGER, SUPPORT_AGENT
from promotions.freeze import credit_freeze
from promotions.models import Credit, CreditStatus, FreezeEvent
from tests.factories import AdvertiserFactory, CampaignFactory, UserFactory, grant, member

pytestmark = pytest.mark.django_db

GOOD = "4242424242424242"


def balance(adv, purpose) -> Decimal:
    return LedgerAccount.objects.get(advertiser=adv, purpose=purpose).balance


def assert_ledger_reconciles():
    """Every transaction sums to zero and every stored balance equals its entries (R14)."""
    assert reconcile_ledger()["differences"] == 0


@pytest.fixture
def paid_bill(spend_event):
    """An automatic-payment account whose threshold bill of 180 was paid by card, with 40 of credit."""
    adv = AdvertiserFactory(billing_method="automatic")
    member(adv, "admin", username="owner")
    payment_method_set(advertiser=adv, card_number=GOOD, expiry="12/30")
    threshold_set(advertiser=adv, amount="180.00", reason="test")
    camp = CampaignFactory(advertiser=adv)
    spend_record(event=spend_event(camp, "185.00"))
    charge_thresholds()
    bill = Bill.objects.get(advertiser=adv)
    assert bill.status == BillStatus.PAID and bill.gateway_reference.startswith("ch_sbx_")
    credit = grant(adv, "free", "40.00")
    adv.refresh_from_db()
    return adv, camp, bill, credit


def test_r30_a_chargeback_on_a_paid_bill_reverses_the_payment_and_freezes_credit(
        paid_bill, django_capture_on_commit_callbacks):
    adv, _, bill, credit = paid_bill
    mail.outbox.clear()
    # when the sandbox gateway reports that the bill's card payment was charged back
    with django_capture_on_commit_callbacks(execute=True):
        chargeback, created = SandboxGateway().chargeback(charge_reference=bill.gateway_reference, reason="fraudulent")
    # then the payment is reversed: the 180 is billed again, nothing is counted as received
    assert created and chargeback.bill == bill and chargeback.amount == Decimal("180.00")
    assert chargeback.charge_reference == bill.gateway_reference
    tx = chargeback.transaction
    assert (tx.kind, tx.amount) == (TxKind.REFUND, Decimal("180.00"))
    assert {(e.account.purpose, e.side, e.amount) for e in tx.entries.select_related("account")} == {
        (Purpose.BILLED, "D", Decimal("180.00")), (Purpose.SETTLEMENT, "C", Decimal("180.00"))}
    assert balance(adv, Purpose.BILLED) == Decimal("180.00") and balance(adv, Purpose.SETTLEMENT) == 0
    assert_ledger_reconciles()
    # the bill is failed, so the retry schedule and Pay now collect it again
    bill.refresh_from_db()
    assert (bill.status, bill.paid_at, bill.next_retry_at is not None) == (BillStatus.FAILED, None, True)
    assert "Charged back" in bill.last_error
    # the credit is frozen by the automatic rule, audited as the system
    adv.refresh_from_db()
    credit.refresh_from_db()
    assert adv.credit_frozen and credit.status == CreditStatus.FROZEN
    freeze = FreezeEvent.objects.get(advertiser=adv)
    assert (freeze.frozen, freeze.rule, freeze.by) == (True, "chargeback", None)
    assert chargeback.reference in freeze.reason
    record = AuditLog.objects.get(action="chargeback_record")
    assert (record.actor_name, record.advertiser, record.reason) == ("system", adv, "fraudulent")
    assert record.before["status"] == "paid" and record.after["status"] == "failed"
    # and the advertiser is told about both, by one email each
    assert set(Notification.objects.filter(advertiser=adv).values_list("kind", flat=True)) >= {
        "chargeback", "credit_frozen"}
    subjects = sorted(m.subject for m in mail.outbox)
    assert subjects == ["A card payment of USD 180.00 was charged back", "Your ad credit has been frozen"]
    body = next(m.body for m in mail.outbox if "charged back" in m.subject)
    assert f"threshold bill {bill.seq}" in body and "Pay now" in body and chargeback.reference in body


def test_r26_pay_now_after_a_chargeback_charges_the_card_again(paid_bill):
    adv, _, bill, _ = paid_bill
    chargeback_record(bill=bill, reference="dp_1001", reason="product not received")
    bill.refresh_from_db()
    # the sandbox no longer answers the bill's key with the reversed approval: a new charge is made
    paid = bill_pay(bill=bill)
    assert paid.status == BillStatus.PAID and paid.gateway_reference != bill.gateway_reference
    assert GatewayCharge.objects.filter(amount=Decimal("180.00")).count() == 2
    assert balance(adv, Purpose.BILLED) == 0 and balance(adv, Purpose.SETTLEMENT) == Decimal("180.00")
    assert_ledger_reconciles()


def test_r26_r29_collecting_after_a_chargeback_uses_a_new_gateway_key(paid_bill, monkeypatch):
    """A gateway may remember an idempotency key for as long as it likes: the collection after a
    chargeback is a new payment under a new key, never a replay of the reversed approval."""
    adv, _, bill, _ = paid_bill
    keys = []
    charge = SandboxGateway.charge

    def remembering_charge(self, **kw):
        keys.append(kw["idempotency_key"])
        return charge(self, **kw)

    monkeypatch.setattr(SandboxGateway, "charge", remembering_charge)
    chargeback_record(bill=bill, reference="dp_1003", reason="fraudulent")
    bill.refresh_from_db()
    assert bill.charge_key == f"bill-{bill.pk}-1"
    # the first charge is still on record under the bill's first key, and keeps it
    first = GatewayCharge.objects.get(reference=bill.gateway_reference)
    assert first.idempotency_key == f"bill-{bill.pk}"
    paid = bill_pay(bill=bill)
    assert keys == [f"bill-{bill.pk}-1"]
    assert paid.status == BillStatus.PAID and paid.gateway_reference != first.reference
    assert GatewayCharge.objects.get(reference=paid.gateway_reference).idempotency_key == f"bill-{bill.pk}-1"
    # a retry of that collection replays it: still one new charge
    replay = SandboxGateway().charge(amount=bill.amount, currency=bill.currency, card_number=adv.payment_method.token,
                                             idempotency_key=f"bill-{bill.pk}-1")
    assert replay.reference == paid.gateway_reference
    assert GatewayCharge.objects.filter(amount=Decimal("180.00")).count() == 2
    # the new charge can itself be charged back, and is found by its key
    cb, created = SandboxGateway().chargeback(charge_reference=paid.gateway_reference, reason="again")
    assert created and cb.bill == bill
    bill.refresh_from_db()
    assert bill.charge_key == f"bill-{bill.pk}-2" and balance(adv, Purpose.BILLED) == Decimal("180.00")
    assert_ledger_reconciles()


def test_r26_the_retry_job_collects_a_charged_back_bill(paid_bill):
    adv, _, bill, _ = paid_bill
    chargeback_record(bill=bill, reference="dp_1002", reason="duplicate")
    bill.refresh_from_db()
    assert retry_payments(at=bill.next_retry_at) == {"retried": 1, "paid": 1}
    bill.refresh_from_db()
    assert bill.status == BillStatus.PAID and balance(adv, Purpose.BILLED) == 0


def test_r14_the_same_chargeback_reference_twice_books_once(paid_bill, django_capture_on_commit_callbacks):
    adv, _, bill, _ = paid_bill
    with django_capture_on_commit_callbacks(execute=True):
        # the gateway reports the same chargeback twice, and staff record it a third time
        first, created = SandboxGateway().chargeback(charge_reference=bill.gateway_reference)
        again, created_again = SandboxGateway().chargeback(charge_reference=bill.gateway_reference)
        third, created_third = chargeback_record(bill=bill, reference=first.reference, reason="fraudulent")
    assert created and not created_again and not created_third and again.pk == first.pk == third.pk
    refunds = LedgerTransaction.objects.filter(advertiser=adv, kind=TxKind.REFUND)
    assert refunds.count() == 1 and Chargeback.objects.count() == 1  # the bill is no longer paid
    assert balance(adv, Purpose.BILLED) == Decimal("180.00")
    assert Notification.objects.filter(advertiser=adv, kind="chargeback").count() == 1
    assert FreezeEvent.objects.filter(advertiser=adv).count() == 1
    assert_ledger_reconciles()


def test_r14_a_chargeback_reference_reused_for_another_payment_is_a_conflict(paid_bill, spend_event):
    adv, camp, bill, _ = paid_bill
    chargeback_record(bill=bill, reference="dp_7", reason="fraudulent")
    spend_record(event=spend_event(camp, "180.00"))
    charge_thresholds()
    other = Bill.objects.filter(advertiser=adv, status=BillStatus.PAID).get()
    with pytest.raises(Conflict) as e:
        chargeback_record(bill=other, reference="dp_7", reason="fraudulent")
    assert e.value.code == "chargeback_reference_reused"
    other.refresh_from_db()
    assert other.status == BillStatus.PAID and Chargeback.objects.count() == 1


def test_r30_only_a_paid_bill_can_be_charged_back_and_a_reason_is_required(paid_bill):
    _, _, bill, _ = paid_bill
    chargeback_record(bill=bill, reference="dp_8", reason="fraudulent")
    with pytest.raises(BusinessError) as e:
        chargeback_record(bill=bill, reference="dp_9", reason="fraudulent")
    assert e.value.code == "bill_not_paid"
    with pytest.raises(BadInput) as e:
        chargeback_record(bill=bill, reference="dp_10", reason="  ")
    assert e.value.code == "invalid_reason"
    assert Chargeback.objects.count() == 1


def test_r30_a_chargeback_on_an_already_frozen_account_books_without_a_second_freeze(paid_bill):
    adv, _, bill, _ = paid_bill
    credit_freeze(advertiser=adv, reason="manual review", by=UserFactory(is_staff=True, is_superuser=True))
    chargeback_record(bill=bill, reference="dp_11", reason="fraudulent")
    assert FreezeEvent.objects.filter(advertiser=adv, frozen=True).count() == 1
    assert balance(adv, Purpose.BILLED) == Decimal("180.00")


@pytest.fixture
def card_topup():
    """A manual account with 200 deposited by API, 100 topped up by card, and 50 of free credit."""
    adv = AdvertiserFactory()
    camp = CampaignFactory(advertiser=adv)
    deposit_create(advertiser=adv, amount="200.00", idempotency_key="api-1")
    topup, _ = card_deposit_create(advertiser=adv, amount="100.00", card_number=GOOD, idempotency_key="form-1")
    credit = grant(adv, "free", "50.00")
    charge = GatewayCharge.objects.get(idempotency_key="form-1")
    return adv, camp, topup, credit, charge


def test_r13_a_charged_back_top_up_takes_the_cash_back_and_spend_then_uses_cash_not_credit(card_topup, spend_event):
    adv, camp, topup, credit, charge = card_topup
    # when the sandbox reports the card top-up charged back
    chargeback, _ = SandboxGateway().chargeback(charge_reference=charge.reference)
    # then the 100 leaves the cash balance, and the credit is frozen
    assert chargeback.deposit == topup and chargeback.bill is None
    assert balance(adv, Purpose.CASH) == Decimal("200.00") and balance(adv, Purpose.ARREARS) == 0
    assert_ledger_reconciles()
    # and the next charge is paid with cash, not with the frozen credit
    allocation = spend_record(event=spend_event(camp, "30.00")).allocation
    assert (allocation.cash, allocation.credits, allocation.discount) == (Decimal("30.00"), [], 0)
    credit.refresh_from_db()
    assert credit.status == CreditStatus.FROZEN and credit.ledger_account.balance == Decimal("50.00")
    assert balance(adv, Purpose.CASH) == Decimal("170.00")


def test_r13_what_cash_cannot_cover_becomes_arrears_and_pauses_delivery(spend_event):
    adv = AdvertiserFactory()
    camp = CampaignFactory(advertiser=adv)
    card_deposit_create(advertiser=adv, amount="100.00", card_number=GOOD, idempotency_key="form-2")
    spend_record(event=spend_event(camp, "80.00"))  # 20 of cash left
    SandboxGateway().chargeback(charge_reference=GatewayCharge.objects.get().reference)
    assert balance(adv, Purpose.CASH) == 0 and balance(adv, Purpose.ARREARS) == Decimal("80.00")
    camp.refresh_from_db()
    assert camp.status == "paused_funds"
    assert_ledger_reconciles()
    # the next deposit settles the arrears first and resumes delivery (R13)
    deposit_create(advertiser=adv, amount="100.00", idempotency_key="api-2")
    camp.refresh_from_db()
    assert camp.status == "active" and balance(adv, Purpose.CASH) == Decimal("20.00")


def test_a_deposit_not_paid_by_card_cannot_be_charged_back():
    adv = AdvertiserFactory()
    plain = deposit_create(advertiser=adv, amount="100.00", idempotency_key="api-3")
    with pytest.raises(BusinessError) as e:
        chargeback_record(deposit=plain, reference="dp_12", reason="fraudulent")
    assert e.value.code == "not_a_card_payment" and balance(adv, Purpose.CASH) == Decimal("100.00")


# --- the admin action on a bill ---------------------------------------------------------------

def staff_client(client, role):
    user = UserFactory(is_staff=True)
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    client.force_login(user)
    return user


CHANGELIST = reverse("admin:billing_bill_changelist")


def action_post(bill, **extra):
    return {"action": "record_chargeback", "_selected_action": [str(bill.pk)], **extra}


def test_a_billing_manager_records_a_chargeback_from_the_bill_admin_with_a_reason(client, paid_bill):
    adv, _, bill, credit = paid_bill
    manager = staff_client(client, BILLING_MANAGER)
    # the action asks for the gateway reference and a reason first
    page = client.post(CHANGELIST, action_post(bill))
    assert page.status_code == 200
    assert 'name="reference"' in page.text and 'name="reason"' in page.text and "Record chargeback" in page.text
    assert not Chargeback.objects.exists()
    # an empty reason books nothing
    client.post(CHANGELIST, action_post(bill, confirm="yes", reference="dp_55", reason=""))
    assert not Chargeback.objects.exists()
    # with both, the chargeback is booked, the credit frozen, the audit line names the manager
    response = client.post(CHANGELIST, action_post(bill, confirm="yes", reference="dp_55", reason="issuer dispute"))
    assert response.status_code == 302
    chargeback = Chargeback.objects.get()
    assert (chargeback.reference, chargeback.created_by, chargeback.reason) == ("dp_55", manager, "issuer dispute")
    assert AuditLog.objects.get(action="chargeback_record").actor == manager
    credit.refresh_from_db()
    bill.refresh_from_db()
    assert credit.status == CreditStatus.FROZEN and bill.status == BillStatus.FAILED
    # the bill page lists it
    assert "dp_55" in client.get(reverse("admin:billing_bill_change", args=[bill.pk])).text


def test_a_support_agent_cannot_record_a_chargeback(client, paid_bill):
    adv, _, bill, credit = paid_bill
    staff_client(client, SUPPORT_AGENT)
    page = client.get(CHANGELIST)
    assert page.status_code == 200 and "record_chargeback" not in page.text
    client.post(CHANGELIST, action_post(bill, confirm="yes", reference="dp_56", reason="issuer dispute"))
    assert not Chargeback.objects.exists()
    bill.refresh_from_db()
    credit.refresh_from_db()
    assert bill.status == BillStatus.PAID and credit.status == CreditStatus.ACTIVE
    assert not Credit.objects.filter(status=CreditStatus.FROZEN).exists()
