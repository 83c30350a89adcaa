"""The appeals queue and review screen in the support console (SPEC R30, R31; issue 5 §3):
open appeals oldest first; on one page the message, attachments, freeze history, failed payments,
recent spend with its funding and the credits; Approve / Reject / Reject-and-withdraw buttons that
take a decision note and go through `appeal_decide`."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from billing.models import Bill, LedgerTransaction, TxKind
from billing.selectors import advertiser_balances
from billing.spend import spend_record
from portal.models import AuditLog, Notification
from portal.permissions import BILLING_MANAGER, SUPPORT_AGENT
from promotions.appeals import appeal_decide, appeal_file
from promotions.freeze import credit_freeze, credit_unfreeze
from promotions.models import Appeal, CreditStatus
from tests.factories import AdvertiserFactory, CampaignFactory, UserFactory, deposit, grant, member
from tests.pages_helpers import fast_password_hashing  # noqa: F401

pytestmark = pytest.mark.django_db

QUEUE_URL = reverse("admin:promotions_appeal_changelist")
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def staff_client(role: str) -> tuple[Client, object]:
    user = UserFactory(is_staff=True)
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    client = Client()
    client.force_login(user)
    return client, user


@pytest.fixture
def private_media(settings, tmp_path):
    settings.PRIVATE_MEDIA_ROOT = str(tmp_path)


def frozen_account(name: str, *, freezer=None):
    adv = AdvertiserFactory(name=name)
    owner = member(adv, "admin")
    grant(adv, "free", "80.00")
    credit_freeze(advertiser=adv, reason="chargeback pattern", by=freezer or UserFactory(is_staff=True))
    return adv, owner


def file_appeal(adv, owner, message: str, *, filed_at=None) -> Appeal:
    appeal = appeal_file(advertiser=adv, user=owner, message=message,
                         files=[SimpleUploadedFile("invoice.png", PNG, content_type="image/png")])
    if filed_at is not None:
        Appeal.objects.filter(pk=appeal.pk).update(created_at=filed_at)
    return appeal


def test_the_queue_lists_open_appeals_oldest_first(private_media):
    # given three open appeals filed at different times and one already decided
    client, _ = staff_client(SUPPORT_AGENT)
    now = timezone.now()
    filed = {}
    for name, hours_ago in [("Middle Co", 5), ("Newest Co", 1), ("Oldest Co", 30)]:
        adv, owner = frozen_account(name)
        filed[name] = file_appeal(adv, owner, f"{name} appeals", filed_at=now - timedelta(hours=hours_ago))
    adv, owner = frozen_account("Decided Co")
    decided = file_appeal(adv, owner, "old one", filed_at=now - timedelta(days=3))
    appeal_decide(appeal=decided, decision="reject", note="no", by=UserFactory(is_staff=True))
    # when support opens the appeals list
    page = client.get(QUEUE_URL)
    # then they see the open appeals only, the longest-waiting first
    assert page.status_code == 200
    assert list(page.context["cl"].result_list) == [filed["Oldest Co"], filed["Middle Co"], filed["Newest Co"]]
    assert "Open — oldest first" in page.text and "1\xa0day, 6\xa0hours" in page.text  # the oldest one's wait
    # and the decided ones are one filter away, newest first
    decided_page = client.get(QUEUE_URL, {"queue": "decided"})
    assert list(decided_page.context["cl"].result_list) == [decided]
    everything = client.get(QUEUE_URL, {"queue": "all"})
    assert list(everything.context["cl"].result_list)[0] == filed["Newest Co"]


def test_the_review_screen_shows_the_whole_story_on_one_page(private_media, spend_event):
    # given an automatic-payment account with spend paid partly by credit, a failed bill,
    # a freeze history and an open appeal with a file
    adv = AdvertiserFactory(name="Storyline Goods")
    owner = member(adv, "admin")
    camp = CampaignFactory(advertiser=adv, name="Autumn Push")
    deposit(adv, "200.00")
    grant(adv, "free", "30.00")
    spend_record(event=spend_event(camp, "50.00"))  # 30 from credit, 20 cash
    grant(adv, "free", "15.00")
    Bill.objects.create(advertiser=adv, kind="threshold", number="B-77", amount=Decimal("180.00"), currency="USD",
                        status="failed", attempts=2, last_error="card declined (insufficient funds)")
    adv.failed_payments = 2
    adv.save(update_fields=["failed_payments"])
    staff = UserFactory(is_staff=True, username="risk-bot-operator")
    credit_freeze(advertiser=adv, reason="first review", by=staff)
    credit_unfreeze(advertiser=adv, reason="cleared", by=staff)
    credit_freeze(advertiser=adv, reason="second chargeback", by=staff)
    appeal = file_appeal(adv, owner, "These were real customers.\nInvoices attached.")
    client, _ = staff_client(SUPPORT_AGENT)
    # when support opens the appeal
    page = client.get(reverse("admin:promotions_appeal_change", args=[appeal.pk]))
    text = page.text
    # then the message, the attachment link, and the account's history are all there
    assert page.status_code == 200
    assert "These were real customers.<br>Invoices attached." in text
    assert reverse("admin:promotions_appeal_attachment", args=[appeal.pk, appeal.attachments.get().pk]) in text
    assert "first review" in text and "cleared" in text and "second chargeback" in text and "Unfrozen" in text
    assert "Failed payments in a row: 2" in text and "B-77" in text and "card declined (insufficient funds)" in text
    assert "Autumn Push" in text and "50.00 USD" in text and "Credit 30.00 · Cash 20.00" in text
    assert "Free credit #" in text and "15.00 USD" in text and "Frozen" in text
    # and one decision note with the buttons a support agent may press
    assert 'name="decision" value="approve"' in text and 'name="decision" value="reject"' in text
    assert 'value="reject_withdraw"' not in text  # withdrawing credit needs a Billing manager
    assert reverse("admin:promotions_appeal_decide", args=[appeal.pk]) in text


def test_approve_button_needs_a_note_then_unfreezes_audits_and_notifies(private_media):
    adv, owner = frozen_account("Approve Me Co")
    appeal = file_appeal(adv, owner, "please")
    client, agent = staff_client(SUPPORT_AGENT)
    decide = reverse("admin:promotions_appeal_decide", args=[appeal.pk])
    # without a note nothing is decided and the page says why
    empty = client.post(decide, {"decision": "approve", "reason": "  "}, follow=True)
    assert "A decision note is required" in empty.text
    appeal.refresh_from_db()
    assert appeal.status == "open"
    # with a note the appeal is approved through the service
    done = client.post(decide, {"decision": "approve", "reason": "Invoices check out."}, follow=True)
    assert done.redirect_chain[-1][0] == QUEUE_URL
    assert f"Appeal #{appeal.pk} of Approve Me Co approved" in done.text
    appeal.refresh_from_db()
    adv.refresh_from_db()
    assert (appeal.status, appeal.decided_by, appeal.decision_note) == ("approved", agent, "Invoices check out.")
    assert not adv.credit_frozen
    assert advertiser_balances(advertiser=adv).credit_balance == Decimal("80.00")
    assert AuditLog.objects.get(action="appeal_approve", advertiser=adv).actor == agent
    assert Notification.objects.filter(advertiser=adv, kind="appeal_decided").count() == 1
    # the decided appeal has no buttons any more, and a second decision is refused with the reason
    assert 'name="decision"' not in client.get(reverse("admin:promotions_appeal_change", args=[appeal.pk])).text
    again = client.post(decide, {"decision": "reject", "reason": "changed my mind"}, follow=True)
    assert "already approved" in again.text


def test_reject_keeps_the_freeze(private_media):
    adv, owner = frozen_account("Reject Me Co")
    appeal = file_appeal(adv, owner, "please")
    client, _ = staff_client(SUPPORT_AGENT)
    client.post(reverse("admin:promotions_appeal_decide", args=[appeal.pk]),
                {"decision": "reject", "reason": "Documents do not match."})
    appeal.refresh_from_db()
    adv.refresh_from_db()
    assert appeal.status == "rejected" and not appeal.credits_withdrawn and adv.credit_frozen
    assert advertiser_balances(advertiser=adv).frozen_credit_balance == Decimal("80.00")


def test_reject_and_withdraw_is_confirmed_then_books_the_withdrawal(private_media):
    adv, owner = frozen_account("Withdraw Co")
    appeal = file_appeal(adv, owner, "please")
    client, manager = staff_client(BILLING_MANAGER)
    page = client.get(reverse("admin:promotions_appeal_change", args=[appeal.pk]))
    assert 'value="reject_withdraw"' in page.text
    decide = reverse("admin:promotions_appeal_decide", args=[appeal.pk])
    # the button leads to a confirmation that says how much goes
    confirm = client.post(decide, {"decision": "reject_withdraw", "reason": "Fake documents."})
    assert confirm.status_code == 200
    assert "Reject and withdraw 80.00 USD" in confirm.text and "Fake documents." in confirm.text
    appeal.refresh_from_db()
    assert appeal.status == "open"
    # confirming rejects and withdraws on the ledger
    client.post(decide, {"decision": "reject_withdraw", "reason": "Fake documents.", "confirm": "yes"})
    appeal.refresh_from_db()
    assert appeal.status == "rejected" and appeal.credits_withdrawn and appeal.decided_by == manager
    assert adv.credits.get().status == CreditStatus.WITHDRAWN
    assert LedgerTransaction.objects.get(advertiser=adv, kind=TxKind.CREDIT_WITHDRAW).amount == Decimal("80.00")
    assert AuditLog.objects.filter(action="credit_withdraw", advertiser=adv, actor=manager).count() == 1


def test_a_support_agent_cannot_reject_and_withdraw(private_media):
    adv, owner = frozen_account("Guarded Co")
    appeal = file_appeal(adv, owner, "please")
    client, _ = staff_client(SUPPORT_AGENT)
    response = client.post(reverse("admin:promotions_appeal_decide", args=[appeal.pk]),
                           {"decision": "reject_withdraw", "reason": "x", "confirm": "yes"})
    assert response.status_code == 403
    # nor through the list's bulk action, which they are not offered
    listing = client.get(QUEUE_URL)
    assert "reject_and_withdraw_appeal" not in listing.text and "approve_appeal" in listing.text
    client.post(QUEUE_URL, {"action": "reject_and_withdraw_appeal", "_selected_action": [str(appeal.pk)],
                            "confirm": "yes", "reason": "x"})
    appeal.refresh_from_db()
    assert appeal.status == "open" and adv.credits.get().status == CreditStatus.FROZEN


def test_decide_is_a_post_and_unknown_decisions_are_refused(private_media):
    adv, owner = frozen_account("Methodical Co")
    appeal = file_appeal(adv, owner, "please")
    client, _ = staff_client(BILLING_MANAGER)
    decide = reverse("admin:promotions_appeal_decide", args=[appeal.pk])
    assert client.get(decide).status_code == 405
    assert client.post(decide, {"decision": "delete", "reason": "x"}).status_code == 403
    appeal.refresh_from_db()
    assert appeal.status == "open"


def test_an_advertiser_member_cannot_reach_the_review_screen(private_media):
    adv, owner = frozen_account("Curious Co")
    appeal = file_appeal(adv, owner, "please")
    client = Client()
    client.force_login(owner)
    for url in [reverse("admin:promotions_appeal_change", args=[appeal.pk]),
                reverse("admin:promotions_appeal_decide", args=[appeal.pk])]:
        response = client.post(url, {"decision": "approve", "reason": "self-approved"})
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    appeal.refresh_from_db()
    assert appeal.status == "open"
