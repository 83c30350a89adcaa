"""Every notification kind is sent once (SPEC R36; issue 13).

One case per kind of `portal.notifications.KINDS` (a test fails if a kind has none): the real
event is triggered through its service or job, and then exactly one Notification of that kind is
written, for the right advertiser, and exactly one email goes to the account's payments people
(its admins and finance members, and its Business Center's; never an operator). The email's
button carries the kind's own label and link, the link opens, and the notification centre lists
it. Repeating the event — the same idempotency key, the job run again, the refused second call —
writes and sends nothing more.
"""

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Callable

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing.autopay import bill_collect, charge_thresholds, payment_method_set, retry_payments, threshold_set
from billing.bc import bc_deposit_create, bc_transfer
from billing.chargebacks import chargeback_record
from billing.credit_notes import credit_note_issue
from billing.deposits import deposit_create
from billing.disputes import dispute_open, dispute_reject
from billing.invoicing import issue_monthly_invoices
from billing.models import Bill, Document
from billing.reminders import remind_invoices
from billing.spend import spend_record
from billing.switching import billing_method_switch, billing_settings_set
from portal.errors import BusinessError, Conflict
from portal.models import Advertiser, BCMembership, Campaign, Notification
from portal.alerts import alert_preferences_set, alerts_check
from portal.notifications import KINDS
from portal.services import business_center_create
from promotions.appeals import appeal_decide, appeal_file
from promotions.credits import credit_grant, credit_withdraw
from promotions.expiry import expire_credits, remind_expiring
from promotions.freeze import credit_freeze, credit_unfreeze
from tests.factories import AdvertiserFactory, CampaignFactory, UserFactory, grant, member
from tests.pages_helpers import logged_in, text

pytestmark = pytest.mark.django_db

GOOD, DECLINE = "4242424242424242", "4000000000000002"


class World:
    """Accounts with an admin (who gets the emails) and an operator (who must not)."""

    def __init__(self, spend_event):
        self.spend_event = spend_event
        self.staff = UserFactory(username="kinds-staff", is_staff=True, is_superuser=True)
        self.n = 0

    def account(self, **kw) -> Advertiser:
        self.n += 1
        adv = AdvertiserFactory(name=f"Kinds Shop {self.n}", **kw)
        adv.owner = member(adv, "admin", username=f"kinds-owner-{self.n}")
        member(adv, "operator", username=f"kinds-ops-{self.n}")
        adv.expected_to = [adv.owner.email]
        adv.campaign = CampaignFactory(advertiser=adv)
        return adv

    def spend(self, adv, amount: str, **kw):
        return spend_record(event=self.spend_event(adv.campaign, amount, **kw))

    def automatic(self, card: str, threshold="180.00") -> Advertiser:
        adv = self.account(billing_method="automatic")
        payment_method_set(advertiser=adv, card_number=card, expiry="12/30")
        threshold_set(advertiser=adv, amount=threshold, reason="test")
        return adv

    def invoiced(self, limit="1000.00") -> Advertiser:
        adv = self.account(billing_method="monthly_invoice")
        billing_settings_set(advertiser=adv, credit_line_limit=limit)
        adv.refresh_from_db()
        return adv

    def with_invoice(self) -> tuple[Advertiser, Document]:
        """An invoiced account with last month's spend invoiced (100.00, issued now)."""
        adv = self.invoiced()
        now = timezone.now()
        self.spend(adv, "100.00", occurred_at=(now.replace(day=1) - timedelta(days=3)).replace(hour=12))
        issue_monthly_invoices(at=now)
        return adv, Document.objects.get(advertiser=adv, kind="invoice")


def refused_or_replayed(*actions: Callable) -> Callable:
    """Run each action again; a business refusal (already frozen, already decided…) is how a
    second call of a one-time event ends, and sends nothing either."""

    def run():
        for action in actions:
            try:
                action()
            except (BusinessError, Conflict):
                pass

    return run


@dataclass
class Case:
    kind: str
    given: Callable  # World -> (advertiser, event, repeat)
    says: str  # a phrase of the email body
    id: str = ""


CASES: list[Case] = []


def case(kind: str, says: str, id: str = ""):
    def register(given):
        CASES.append(Case(kind, given, says, id or kind))
        return given

    return register


# --- credit, freeze and appeals -------------------------------------------------------------------

@case("credit_issued", "USD 40.00 of free credit has been added to your ad account.")
def _(w):
    adv, at = w.account(), timezone.now()

    def issue():
        credit_grant(advertiser=adv, kind="free", amount="40.00", reason="welcome", idempotency_key="kinds-grant",
                     valid_from=at - timedelta(days=1), expires_at=at + timedelta(days=30))

    return adv, issue, issue  # R22: the same key again returns the first credit


@case("credit_expiring", "USD 40.00 of free credit")
def _(w):
    adv, now = w.account(), timezone.now()
    grant(adv, "free", "40.00", valid_from=now - timedelta(days=1), expires_at=now + timedelta(days=3))
    return adv, lambda: remind_expiring(at=now), lambda: remind_expiring(at=now + timedelta(hours=1))


@case("credit_expired", "USD 40.00 forfeited")
def _(w):
    adv, now = w.account(), timezone.now()
    grant(adv, "free", "40.00", valid_from=now - timedelta(days=10), expires_at=now + timedelta(days=1))
    later = now + timedelta(days=1, hours=2)  # past the expiry and its grace
    return adv, lambda: expire_credits(at=later), lambda: expire_credits(at=later + timedelta(hours=1))


@case("credit_used_up", "Your coupon #")
def _(w):
    from promotions.credits import credit_assign

    adv = w.account()
    deposit_create(advertiser=adv, amount="100.00", idempotency_key="kinds-used-up")
    coupon = grant(adv, "assignable", "10.00")
    credit_assign(credit=coupon, campaign_ids=[adv.campaign.pk])
    event = w.spend_event(adv.campaign, "15.00")  # the coupon pays 10.00 of it: used up (R7)
    # the same event again (a replay), and a charge after it
    return adv, lambda: spend_record(event=event), refused_or_replayed(
        lambda: spend_record(event=event), lambda: w.spend(adv, "5.00"))


@case("credit_withdrawn", "Reason: policy violation")
def _(w):
    adv = w.account()
    credit = grant(adv, "free", "40.00")

    def withdraw():
        credit_withdraw(credit=credit, reason="policy violation", by=w.staff)

    return adv, withdraw, refused_or_replayed(withdraw)


@case("credit_frozen", "Reason: unusual activity")
def _(w):
    adv = w.account()
    grant(adv, "free", "40.00")

    def freeze():
        credit_freeze(advertiser=adv, reason="unusual activity", by=w.staff)

    return adv, freeze, refused_or_replayed(freeze)


@case("credit_unfrozen", "1 credit is usable again")
def _(w):
    adv = w.account()
    grant(adv, "free", "40.00")
    credit_freeze(advertiser=adv, reason="unusual activity", by=w.staff)

    def unfreeze():
        credit_unfreeze(advertiser=adv, reason="cleared by risk review", by=w.staff)

    return adv, unfreeze, refused_or_replayed(unfreeze)


@case("appeal_received", "We received your appeal #")
def _(w):
    adv = w.account()
    credit_freeze(advertiser=adv, reason="unusual activity", by=w.staff)

    def file():
        appeal_file(advertiser=adv, user=adv.owner, message="Please look again.")

    return adv, file, refused_or_replayed(file)  # one open appeal at a time (R31)


@case("appeal_decided", "Your ad credit is usable again")
def _(w):
    adv = w.account()
    credit_freeze(advertiser=adv, reason="unusual activity", by=w.staff)
    appeal = appeal_file(advertiser=adv, user=adv.owner, message="Please look again.")

    def decide():
        appeal_decide(appeal=appeal, decision="approve", note="Documents check out.", by=w.staff)

    return adv, decide, refused_or_replayed(decide)


# --- money in, bills, invoices and documents ------------------------------------------------------

@case("deposit_received", "USD 100.00 was added to your ad account from your card ending 4242.")
def _(w):
    adv = w.account()

    def add():
        deposit_create(advertiser=adv, amount="100.00", idempotency_key="kinds-deposit", source="web",
                       card_last4="4242")

    return adv, add, add  # R23: the same key returns the first deposit


@case("deposit_received", "USD 100.00 was added to your ad account by a transfer from your Business Center.",
      id="deposit_received-bc_transfer")
def _(w):
    bc = business_center_create(name="Kinds BC")
    bc_finance = UserFactory(username="kinds-bc-finance")
    BCMembership.objects.create(user=bc_finance, business_center=bc, role="finance")
    adv = w.account(business_center=bc)
    adv.expected_to = sorted([adv.owner.email, bc_finance.email])  # the BC's payments people too
    bc_deposit_create(business_center=bc, amount="500.00", idempotency_key="kinds-bc-load")

    def transfer():
        bc_transfer(business_center=bc, advertiser_id=adv.pk, transfer_type="RECHARGE", cash_amount="100.00",
                    request_id="kinds-transfer")

    return adv, transfer, transfer  # the same request id returns the first transfer


@case("bill_paid", "We charged USD 180.00 to your card ending 4242")
def _(w):
    adv = w.automatic(GOOD)
    w.spend(adv, "180.00")
    return adv, charge_thresholds, refused_or_replayed(
        charge_thresholds, lambda: bill_collect(bill_id=Bill.objects.get(advertiser=adv).pk))


@case("payment_failed", "We could not charge USD 180.00")
def _(w):
    adv = w.automatic(DECLINE)
    w.spend(adv, "180.00")
    # the job again, and the retry job before the retry is due (a due retry is a new attempt)
    return adv, charge_thresholds, refused_or_replayed(charge_thresholds, lambda: retry_payments(at=timezone.now()))


@case("chargeback", "Your card issuer reversed a payment of USD 100.00")
def _(w):
    adv = w.account()
    paid = deposit_create(advertiser=adv, amount="100.00", idempotency_key="kinds-cb", source="web", card_last4="4242")

    def charge_back():
        chargeback_record(reference="CB-KINDS-1", reason="fraudulent", deposit=paid)

    return adv, charge_back, charge_back  # the same reference books once


@case("invoice_issued", "is ready: USD 100.00")
def _(w):
    adv = w.invoiced()
    now = timezone.now()
    w.spend(adv, "100.00", occurred_at=(now.replace(day=1) - timedelta(days=3)).replace(hour=12))
    return adv, lambda: issue_monthly_invoices(at=now), lambda: issue_monthly_invoices(at=now + timedelta(hours=1))


@case("invoice_reminder", "USD 100.00 is still to pay")
def _(w):
    adv, doc = w.with_invoice()
    return (adv, lambda: remind_invoices(at=doc.due_at - timedelta(days=3)),
            lambda: remind_invoices(at=doc.due_at - timedelta(days=2)))


@case("invoice_overdue", "USD 100.00 of it is still unpaid, so your campaigns are paused.")
def _(w):
    adv, doc = w.with_invoice()
    return (adv, lambda: issue_monthly_invoices(at=doc.due_at + timedelta(minutes=1)),
            lambda: issue_monthly_invoices(at=doc.due_at + timedelta(minutes=2)))


@case("credit_note_issued", "We issued credit note")
def _(w):
    adv, doc = w.with_invoice()

    def credit_note():
        credit_note_issue(actor=w.staff, document=doc, amount="10.00", reason="billing error",
                          idempotency_key="kinds-cn")

    return adv, credit_note, credit_note  # the same key answers the first credit note


@case("dispute_decided", "Our billing team's note: The spend is correct.")
def _(w):
    adv, doc = w.with_invoice()
    dispute = dispute_open(actor=adv.owner, document=doc, reason="The amount looks wrong.")

    def reject():
        dispute_reject(actor=w.staff, dispute=dispute, note="The spend is correct.")

    return adv, reject, refused_or_replayed(reject)


# --- delivery paused and resumed by billing -------------------------------------------------------

@case("campaigns_paused_arrears", "USD 10.00 of ad spend is owed")
def _(w):
    adv = w.account()  # manual payment, no cash
    event = w.spend_event(adv.campaign, "10.00")
    # the same event again (a replay), and a charge while already paused
    return adv, lambda: spend_record(event=event), refused_or_replayed(
        lambda: spend_record(event=event), lambda: w.spend(adv, "5.00"))


@case("campaigns_paused_credit_line", "used up your credit line of USD 100.00")
def _(w):
    adv = w.invoiced(limit="100.00")
    event = w.spend_event(adv.campaign, "100.00")
    return adv, lambda: spend_record(event=event), refused_or_replayed(
        lambda: spend_record(event=event), lambda: w.spend(adv, "20.00"))


@case("payment_failed", "so your campaigns are paused until the account is paid up", id="payment_failed-pauses")
def _(w):
    adv = w.automatic(DECLINE)
    w.spend(adv, "180.00")
    charge_thresholds()  # the 1st failure
    bill = Bill.objects.get(advertiser=adv)
    retry_payments(at=Bill.objects.get(pk=bill.pk).next_retry_at)  # the 2nd
    when = {}

    def third_failure():  # more than two failed payments pause delivery (R26): its email says so
        when["at"] = Bill.objects.get(pk=bill.pk).next_retry_at
        retry_payments(at=when["at"])
        assert Campaign.objects.get(pk=adv.campaign.pk).status == "paused_funds"

    return adv, third_failure, lambda: retry_payments(at=when["at"])  # the job again at that moment


@case("campaigns_resumed", "1 campaign paused for funds is delivering again.")
def _(w):
    adv = w.account()
    w.spend(adv, "10.00")  # into arrears: paused
    assert Campaign.objects.get(pk=adv.campaign.pk).status == "paused_funds"

    def pay():
        deposit_create(advertiser=adv, amount="50.00", idempotency_key="kinds-resume")

    return adv, pay, refused_or_replayed(
        pay, lambda: deposit_create(advertiser=adv, amount="20.00", idempotency_key="kinds-resume-2"))


# --- alerts of a level (R44, portal.alerts.alerts_check), limits (R43) and documents (R39) --------

@case("low_balance", "below the USD 50.00 you set for this alert")
def _(w):
    adv = w.account()  # manual payment: the owner's own alert, at 50.00
    alert_preferences_set(user=adv.owner, advertiser=adv, choices={}, low_balance_amount="50.00")
    deposit_create(advertiser=adv, amount="100.00", idempotency_key="kinds-low-balance")
    w.spend(adv, "60.00")  # 40.00 left
    # the job again, and a charge more while still below
    return adv, alerts_check, lambda: (w.spend(adv, "5.00"), alerts_check())


@case("credit_line_high", "used USD 850.00 of your credit line of USD 1000.00 (85 %)")
def _(w):
    adv = w.invoiced(limit="1000.00")
    w.spend(adv, "850.00")
    return adv, alerts_check, lambda: (w.spend(adv, "10.00"), alerts_check())


@case("spending_limit_reached", "reaching its monthly spending limit of USD 50.00. Its campaigns are paused.")
def _(w):
    from billing.limits import spending_limit_set  # R43 (billing/limits.py)

    adv = w.account()
    deposit_create(advertiser=adv, amount="500.00", idempotency_key="kinds-limit")
    spending_limit_set(advertiser=adv, amount="50.00", period="monthly")
    event = w.spend_event(adv.campaign, "60.00")
    # the same event again (a replay), and a charge while already paused by the limit
    return adv, lambda: spend_record(event=event), refused_or_replayed(
        lambda: spend_record(event=event), lambda: w.spend(adv, "5.00"))


@case("document_issued", "for USD 100.00 was issued to your ad account.")
def _(w):
    from portal.alerts import alert_preferences_set

    adv = w.account()
    # an alert a member asks for (decision 0034): the owner turned it on
    alert_preferences_set(user=adv.owner, advertiser=adv, choices={"document_issued": {"email": True, "in_app": True}})

    def pay():  # a payment received gets a receipt (R39), and the receipt is notified
        deposit_create(advertiser=adv, amount="100.00", idempotency_key="kinds-receipt", source="web",
                       card_last4="4242")

    return adv, pay, pay  # the same key returns the first deposit and its receipt


# --- billing settings -----------------------------------------------------------------------------

@case("threshold_changed", "changed from USD 180.00 to USD 300.00.")
def _(w):
    adv = w.automatic(GOOD)

    def change():
        threshold_set(advertiser=adv, amount="300.00", reason="set by staff")

    return adv, change, change  # the same threshold again is no change


@case("threshold_changed", "changed from USD 50.00 to USD 100.00, after a run of successful payments.",
      id="threshold_changed-grown")
def _(w):
    adv = w.automatic(GOOD, threshold="50.00")
    Advertiser.objects.filter(pk=adv.pk).update(successful_payments=1)  # one payment from the next step (R25)
    w.spend(adv, "50.00")
    return adv, charge_thresholds, charge_thresholds


@case("billing_method_changed", "Your ad account now pays by automatic payment (it used manual payment).")
def _(w):
    adv = w.account()
    payment_method_set(advertiser=adv, card_number=GOOD, expiry="12/30")

    def switch():
        billing_method_switch(advertiser=adv, billing_method="automatic")

    return adv, switch, refused_or_replayed(switch)


@case("billing_method_changed", "funded by your credit line of USD 500.00", id="billing_method_changed-invoicing")
def _(w):
    adv = w.account()
    billing_settings_set(advertiser=adv, invoicing_eligible=True, credit_line_limit="500.00")

    def switch():
        billing_method_switch(advertiser=adv, billing_method="monthly_invoice")

    return adv, switch, refused_or_replayed(switch)


# --- the test -------------------------------------------------------------------------------------

@pytest.fixture
def world(spend_event, settings, tmp_path):
    settings.PRIVATE_MEDIA_ROOT = str(tmp_path)  # appeal attachments
    bystander = AdvertiserFactory(name="Bystander")  # another account: never notified
    member(bystander, "admin", username="kinds-bystander")
    return World(spend_event)


@pytest.fixture
def sent(django_capture_on_commit_callbacks):
    """Run an action and return the emails its committed transactions sent (tasks run eagerly)."""

    def run(action):
        mail.outbox.clear()
        with django_capture_on_commit_callbacks(execute=True):
            action()
        return list(mail.outbox)

    return run


def test_every_kind_has_a_case():
    assert {c.kind for c in CASES} == set(KINDS)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_the_event_notifies_once_and_its_repeat_sends_nothing(case, world, sent, settings):
    # given the state before the event (its setup may notify other things, even this kind)
    adv, event, repeat = case.given(world)
    before = set(Notification.objects.filter(kind=case.kind).values_list("pk", flat=True))

    # when the event happens
    emails = sent(event)

    # then one notification of its kind, for this advertiser only
    new = list(Notification.objects.filter(kind=case.kind).exclude(pk__in=before))
    assert [n.advertiser_id for n in new] == [adv.pk], [(n.advertiser_id, n.key) for n in new]
    note = new[0]
    assert note.emailed_at is not None
    # and one email of it, to the account's payments people
    mine = [m for m in emails if m.subject == note.subject]
    assert len(mine) == 1, [m.subject for m in emails]
    email = mine[0]
    assert email.to == adv.expected_to
    assert email.body.startswith(f"Hello {adv.name},") and case.says in email.body, email.body
    assert "{" not in email.body and "None" not in email.body
    # whose button is the kind's own, and leads to a page the recipient can open
    kind = KINDS[case.kind]
    html = email.alternatives[0][0]
    assert f'href="{settings.SITE_URL}{note.link}"' in html and f">{kind.button}</a>" in html
    assert kind.footer in html
    owner = logged_in(adv.owner)
    assert owner.get(note.link).status_code == 200, note.link
    # and the notification centre lists it, with the same link
    page = owner.get(f"/a/{adv.pk}/notifications/")
    assert note.subject in text(page)
    assert f'href="{note.link}">{kind.button}</a>' in page.content.decode()

    # when the event is repeated or retried
    again = sent(repeat)

    # then nothing more of its kind is written or sent
    assert Notification.objects.filter(kind=case.kind).exclude(pk__in=before).count() == 1
    assert [m.subject for m in again if m.subject == note.subject] == []


# --- spend: notified on running out, never per charge ---------------------------------------------

def _statements(action) -> int:
    with CaptureQueriesContext(connection) as captured:
        action()
    return len([q for q in captured.captured_queries
                if not q["sql"].startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT"))])


def test_a_charge_costs_the_same_statements_in_arrears_as_with_cash_and_only_running_out_adds_one(world):
    # given an account with cash and one already in arrears (paused, told once)
    cash, owing, fresh = world.account(), world.account(), world.account()
    deposit_create(advertiser=cash, amount="500.00", idempotency_key="kinds-stmt-cash")
    world.spend(owing, "10.00")
    world.spend(cash, "1.00")  # warm: prepared statements
    # when each is charged
    with_cash = _statements(lambda: world.spend(cash, "1.00"))
    in_arrears = _statements(lambda: world.spend(owing, "1.00"))
    running_out = _statements(lambda: world.spend(fresh, "1.00"))
    # then a charge in arrears costs what a cash charge does; the one that runs out adds the
    # notification's insert
    assert in_arrears == with_cash
    assert running_out == with_cash + 1
    assert Notification.objects.filter(kind="campaigns_paused_arrears", advertiser=owing).count() == 1
    assert Notification.objects.filter(kind="campaigns_paused_arrears", advertiser=fresh).count() == 1
    assert Decimal(Notification.objects.get(kind="campaigns_paused_arrears", advertiser=owing)
                   .context["owed"].split()[1]) == Decimal("10.00")
