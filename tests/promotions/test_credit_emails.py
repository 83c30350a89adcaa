"""Credit emails (SPEC R36): credit issued and expiring soon, with text and HTML parts, sent only
after the change commits, once per event."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.core import mail
from django.db import transaction
from django.utils import timezone

from billing.spend import spend_record
from portal.models import Notification
from promotions.expiry import remind_expiring
from promotions.models import Credit
from promotions.programs import enrollment_create, program_create
from tests.factories import AdvertiserFactory, CampaignFactory, deposit, grant, member


def with_email(user, email):
    user.email = email
    user.save(update_fields=["email"])
    return user


@pytest.fixture
def team(db):
    adv = AdvertiserFactory(name="Acme Shoes")
    with_email(member(adv, "admin"), "owner@example.com")
    with_email(member(adv, "finance"), "money@example.com")
    with_email(member(adv, "operator"), "ops@example.com")  # no payment data: no email (R1)
    return adv


def html_of(message) -> str:
    [(html, mimetype)] = message.alternatives
    assert mimetype == "text/html"
    return html


@pytest.mark.django_db
def test_r36_credit_issued_email_is_sent_with_text_and_html(team, django_capture_on_commit_callbacks):
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        credit = grant(team, "free", "40.00", eligible_objectives=["TRAFFIC"])
    [message] = mail.outbox
    assert message.subject == "You received USD 40.00 in ad credit"
    assert sorted(message.to) == ["money@example.com", "owner@example.com"]
    assert message.from_email == settings.DEFAULT_FROM_EMAIL
    assert "Hello Acme Shoes," in message.body
    assert "USD 40.00 of free credit has been added to your ad account." in message.body
    assert "It applies to: Traffic campaigns." in message.body
    html = html_of(message)
    assert "<h1" in html and "You received USD 40.00 in ad credit" in html
    assert "USD 40.00 of free credit has been added" in html
    assert f'href="{settings.SITE_URL}/a/{team.pk}/payments/promotions/"' in html
    note = Notification.objects.get(key=f"credit-issued:{credit.pk}")
    assert note.kind == "credit_issued" and note.emailed_at is not None


@pytest.mark.django_db
def test_r36_a_ladder_reward_sends_its_credit_issued_email(spend_event, django_capture_on_commit_callbacks):
    adv = AdvertiserFactory(signup_source="official_offer", registered_at=timezone.now() - timedelta(days=1))
    with_email(member(adv, "admin"), "seller@example.com")
    camp = CampaignFactory(advertiser=adv)
    deposit(adv, "500.00")
    program = program_create(name="Spend 100 get 25", kind="new_advertiser", window_days=30, reward_kind="assignable",
                             tiers=[{"threshold": "100.00", "reward": "25.00", "immediate": True}])
    enrollment_create(advertiser=adv, program=program)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        spend_record(event=spend_event(camp, "120.00", occurred_at=timezone.now()))
    [message] = mail.outbox
    assert message.to == ["seller@example.com"]
    assert message.subject == "You received USD 25.00 in ad credit"
    assert "USD 25.00 of coupon has been added" in message.body
    assert "on the campaigns it is assigned to" in message.body
    assert "USD 25.00 of coupon has been added" in html_of(message)


@pytest.mark.django_db
def test_r36_expiring_soon_email_has_text_and_html(team, django_capture_on_commit_callbacks):
    credit = grant(team, "free", "15.00", expires_at=timezone.now() + timedelta(days=3))
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert remind_expiring(at=timezone.now()) == {"reminded": 1}
    [message] = mail.outbox
    date = credit.expires_at.strftime("%b %-d, %Y")
    assert message.subject == f"USD 15.00 of ad credit expires on {date}"
    assert f"USD 15.00 of free credit (#{credit.pk}) on your ad account expires on {date}." in message.body
    html = html_of(message)
    assert f"USD 15.00 of ad credit expires on {date}" in html
    assert f"(#{credit.pk})" in html
    assert f"/a/{team.pk}/payments/promotions/" in html


@pytest.mark.django_db(transaction=True)
def test_r36_a_rolled_back_grant_sends_nothing_and_a_committed_one_sends_once(team):
    mail.outbox.clear()

    class Abort(Exception):
        pass

    # when the grant's transaction rolls back (say, a later step of the same request fails)
    with pytest.raises(Abort):
        with transaction.atomic():
            grant(team, "free", "40.00", key="rolled-back")
            raise Abort
    # then no credit, no notification and no email exist
    assert not Credit.objects.filter(advertiser=team).exists()
    assert not Notification.objects.filter(advertiser=team).exists()
    assert mail.outbox == []
    # and inside a transaction that commits, nothing is sent until the commit
    with transaction.atomic():
        credit = grant(team, "free", "60.00", key="committed")
        assert mail.outbox == []
    [message] = mail.outbox
    assert message.subject == "You received USD 60.00 in ad credit"
    assert credit.remaining == Decimal("60.00")
    # the same event again (idempotent grant) sends no second email
    grant(team, "free", "60.00", key="committed")
    assert len(mail.outbox) == 1
