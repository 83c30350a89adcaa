"""Email notifications (SPEC R36; issues 4 and 5): each event that touches an advertiser's money is
a Notification row and exactly one email to the account's payments people, sent after commit."""

from decimal import Decimal

import pytest
from django.core import mail

from billing.autopay import bill_collect, bill_pay, charge_thresholds, payment_method_set, retry_payments, threshold_set
from billing.models import Bill, BillStatus
from billing.spend import spend_record
from portal.models import Notification
from promotions.appeals import appeal_decide, appeal_file
from promotions.credits import credit_withdraw
from promotions.freeze import credit_freeze
from tests.factories import AdvertiserFactory, CampaignFactory, UserFactory, grant, member

pytestmark = pytest.mark.django_db

GOOD, DECLINE = "4242424242424242", "4000000000000002"


@pytest.fixture
def owner_and_staff():
    adv = AdvertiserFactory(name="Acme Outdoor")
    member(adv, "admin", username="owner")  # owner@example.com
    member(adv, "operator", username="ops")  # sees no payment data: gets no money email
    return adv, UserFactory(username="billing-manager", is_staff=True, is_superuser=True)


@pytest.fixture
def sent(django_capture_on_commit_callbacks):
    """Run the block and return the emails its committed transactions sent."""

    class Sent:
        def __call__(self, action):
            mail.outbox.clear()
            with django_capture_on_commit_callbacks(execute=True):
                action()
            return list(mail.outbox)

    return Sent()


def only(messages, subject_start: str):
    matching = [m for m in messages if m.subject.startswith(subject_start)]
    assert len(matching) == 1, [m.subject for m in messages]
    return matching[0]


def test_r36_staff_withdrawing_a_credit_notifies_and_emails_once(owner_and_staff, sent):
    adv, staff = owner_and_staff
    credit = grant(adv, "free", "40.00")
    emails = sent(lambda: credit_withdraw(credit=credit, reason="policy violation", by=staff))
    note = Notification.objects.get(advertiser=adv, kind="credit_withdrawn")
    assert note.subject == "USD 40.00 of ad credit was withdrawn" and note.emailed_at is not None
    email = only(emails, "USD 40.00 of ad credit was withdrawn")
    assert len(emails) == 1 and email.to == ["owner@example.com"]
    assert "policy violation" in email.body


def test_r36_a_freeze_sends_exactly_one_email(owner_and_staff, sent):
    adv, staff = owner_and_staff
    grant(adv, "free", "40.00")
    emails = sent(lambda: credit_freeze(advertiser=adv, reason="unusual activity", by=staff))
    assert [m.subject for m in emails] == ["Your ad credit has been frozen"]
    assert emails[0].to == ["owner@example.com"] and "unusual activity" in emails[0].body
    assert Notification.objects.get(advertiser=adv, kind="credit_frozen").emailed_at is not None


@pytest.fixture
def frozen(owner_and_staff, settings, tmp_path):
    settings.PRIVATE_MEDIA_ROOT = str(tmp_path)
    adv, staff = owner_and_staff
    grant(adv, "free", "40.00")
    credit_freeze(advertiser=adv, reason="unusual activity", by=staff)
    return adv, staff


def test_r36_filing_an_appeal_sends_exactly_one_email(frozen, sent):
    adv, _ = frozen
    owner = adv.memberships.get(role="admin").user
    box = {}
    emails = sent(lambda: box.setdefault("appeal", appeal_file(advertiser=adv, user=owner, message="Please look again.")))
    appeal = box["appeal"]
    assert [m.subject for m in emails] == [f"We received your appeal #{appeal.pk}"]
    assert emails[0].to == ["owner@example.com"]


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_r36_deciding_an_appeal_sends_exactly_one_email(frozen, sent, decision):
    adv, staff = frozen
    owner = adv.memberships.get(role="admin").user
    appeal = appeal_file(advertiser=adv, user=owner, message="Please look again.")
    emails = sent(lambda: appeal_decide(appeal=appeal, decision=decision, note="Documents reviewed.", by=staff))
    word = "approved" if decision == "approve" else "rejected"
    assert [m.subject for m in emails] == [f"Your appeal #{appeal.pk} was {word}"]
    assert "Documents reviewed." in emails[0].body


# --- issue 4: bills (billing/autopay.py `_notify_bill`) ----------------------------------------

def auto_account(card):
    adv = AdvertiserFactory(billing_method="automatic")
    member(adv, "finance", username=f"finance-{card[-4:]}")
    payment_method_set(advertiser=adv, card_number=card, expiry="12/30")
    threshold_set(advertiser=adv, amount="180.00", reason="test")
    return adv, CampaignFactory(advertiser=adv)


def test_r36_a_paid_bill_sends_one_bill_paid_email(sent, spend_event):
    adv, camp = auto_account(GOOD)
    spend_record(event=spend_event(camp, "180.00"))
    emails = sent(charge_thresholds)
    bill = Bill.objects.get(advertiser=adv)
    assert bill.status == BillStatus.PAID
    email = only(emails, "Payment received: USD 180.00 for threshold bill")
    assert len(emails) == 1 and email.to == ["finance-4242@example.com"]
    # collecting the paid bill again sends nothing more
    assert sent(lambda: bill_collect(bill_id=bill.pk)) == []
    assert Notification.objects.filter(advertiser=adv, kind="bill_paid").count() == 1


def test_r36_a_failed_payment_sends_one_payment_failed_email_per_attempt(sent, spend_event):
    adv, camp = auto_account(DECLINE)
    spend_record(event=spend_event(camp, "180.00"))
    emails = sent(charge_thresholds)
    bill = Bill.objects.get(advertiser=adv)
    assert bill.status == BillStatus.FAILED
    email = only(emails, "Payment failed: USD 180.00 for threshold bill")
    assert len(emails) == 1 and email.to == ["finance-0002@example.com"] and "declined" in email.body
    # a retry run before the retry is due sends nothing; the due retry fails again: one more email
    assert sent(lambda: retry_payments(at=bill.issued_at)) == []
    again = sent(lambda: retry_payments(at=Bill.objects.get(pk=bill.pk).next_retry_at))
    assert [m.subject for m in again] == [email.subject]
    assert Notification.objects.filter(advertiser=adv, kind="payment_failed").count() == 2


def test_r36_pay_now_after_a_failure_sends_the_bill_paid_email(sent, spend_event):
    adv, camp = auto_account(DECLINE)
    spend_record(event=spend_event(camp, "180.00"))
    charge_thresholds()
    payment_method_set(advertiser=adv, card_number=GOOD, expiry="12/30")
    bill = Bill.objects.select_related("advertiser").get(advertiser=adv)
    emails = sent(lambda: bill_pay(bill=bill))
    assert [m.subject.split(" for ")[0] for m in emails] == ["Payment received: USD 180.00"]
    assert Bill.objects.get(pk=bill.pk).amount == Decimal("180.00")
