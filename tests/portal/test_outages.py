"""Faults outside the database never stop money intake or lose a committed effect (issue 11).

The cache: the rate limiter counts per process while Redis does not answer (decision 0021), so
`POST /api/v1/spend` is still booked — and still limited.
"""

import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from billing.models import SpendEvent
from tests.api_helpers import Api, api_user, error_of
from tests.factories import AdvertiserFactory, CampaignFactory, deposit, token_for

pytestmark = pytest.mark.django_db

NOWHERE = "redis://127.0.0.1:1/0"  # nothing listens on port 1: every cache call is refused


@pytest.fixture
def cache_down(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": NOWHERE,
                                   "OPTIONS": {"socket_connect_timeout": 0.2}}}


def _event(camp, n):
    return {"event_id": f"outage-{camp.pk}-{n}", "advertiser_id": camp.advertiser_id, "campaign_id": camp.pk,
            "amount": "1.00", "currency": "USD", "occurred_at": (timezone.now() - timedelta(minutes=1)).isoformat()}


def test_spend_is_booked_while_the_cache_is_down_and_the_outage_is_logged(cache_down, settings, caplog):
    settings.API_RATE_LIMIT = "3/minute"
    adv = AdvertiserFactory(currency="USD")
    camp = CampaignFactory(advertiser=adv)
    deposit(adv, "100.00", key="outage")
    api, token = Api(), token_for(api_user(is_staff=True))
    with caplog.at_level(logging.ERROR, logger="portal.ratelimit"):
        answers = [api.post("/spend", {"events": [_event(camp, n)]}, token=token) for n in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 201], [a.content[:200] for a in answers]
    assert SpendEvent.objects.filter(advertiser=adv).count() == 3
    assert any("cache does not answer" in r.getMessage() for r in caplog.records)
    # and the token is still held to its limit, by this process's own count
    over = api.post("/spend", {"events": [_event(camp, 9)]}, token=token)
    assert (over.status_code, error_of(over)["code"]) == (429, "rate_limited")
    assert SpendEvent.objects.filter(advertiser=adv).count() == 3


# --- the broker and the mail server: a committed change's notice is delayed, never lost --------

def test_a_grant_commits_and_answers_while_the_broker_is_down_and_its_email_goes_once_later(
        monkeypatch, mailoutbox, django_capture_on_commit_callbacks):
    from kombu.exceptions import OperationalError

    from portal import notifications
    from portal.models import Membership, Notification, Role
    from promotions.models import Credit

    adv = AdvertiserFactory(currency="USD")
    finance = api_user()
    finance.email = "finance@example.com"
    finance.save()
    Membership.objects.create(user=finance, advertiser=adv, role=Role.FINANCE)

    def broker_down(ids):
        raise OperationalError("[Errno 111] Connection refused")

    monkeypatch.setattr(notifications.send_notifications, "delay", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        response = Api().post(f"/advertisers/{adv.pk}/credits", {
            "kind": "free", "amount": "10.00", "reason": "goodwill", "idempotency_key": "outage-grant"},
            token=token_for(api_user(is_staff=True)))
    # then the grant is committed and answered, its notice written but not sent
    assert response.status_code == 201, response.content
    assert Credit.objects.filter(advertiser=adv).count() == 1
    note = Notification.objects.get(advertiser=adv)
    assert note.emailed_at is None and mailoutbox == []
    # when the broker is back, the job sends it — once, however often it runs
    later = timezone.now() + timedelta(minutes=2)
    assert notifications.notifications_send_due(at=later) == {"sent": 1, "failed": 0}
    assert notifications.notifications_send_due(at=later) == {"sent": 0, "failed": 0}
    assert [m.to for m in mailoutbox] == [["finance@example.com"]]


def test_a_mail_outage_gives_the_notice_back_for_the_next_run(monkeypatch, mailoutbox):
    from django.core.mail import EmailMultiAlternatives

    from portal import notifications
    from portal.models import Membership, Notification, Role

    adv = AdvertiserFactory(currency="USD")
    finance = api_user()
    finance.email = "finance@example.com"
    finance.save()
    Membership.objects.create(user=finance, advertiser=adv, role=Role.FINANCE)
    note = Notification.objects.create(advertiser=adv, kind="credit_issued", key="outage-mail", subject="Credit",
                                       context={"amount": "10.00", "currency": "USD", "kind": "Free credit",
                                                "expires_at": "2027-01-01"},
                                       created_at=timezone.now() - timedelta(minutes=5))
    real_send = EmailMultiAlternatives.send

    def refused(self, *a, **kw):
        raise ConnectionRefusedError("SMTP down")

    monkeypatch.setattr(EmailMultiAlternatives, "send", refused)
    assert notifications.notifications_send_due() == {"sent": 0, "failed": 1}
    note.refresh_from_db()
    assert note.emailed_at is None  # not lost: still due
    monkeypatch.setattr(EmailMultiAlternatives, "send", real_send)
    assert notifications.notifications_send_due() == {"sent": 1, "failed": 0}
    assert len(mailoutbox) == 1


def test_one_run_of_the_relay_sends_every_due_notice_however_many_chunks(mailoutbox):
    # the soak found it: after a broker outage thousands of notices are due, and one run of a
    # chunk a minute fell behind
    from portal import notifications
    from portal.models import Membership, Notification, Role

    adv = AdvertiserFactory(currency="USD")
    finance = api_user()
    finance.email = "finance@example.com"
    finance.save()
    Membership.objects.create(user=finance, advertiser=adv, role=Role.FINANCE)
    for n in range(7):
        Notification.objects.create(advertiser=adv, kind="credit_issued", key=f"backlog-{n}", subject="Credit",
                                    context={"amount": "10.00", "currency": "USD", "kind": "Free credit",
                                             "expires_at": "2027-01-01"},
                                    created_at=timezone.now() - timedelta(minutes=5))
    assert notifications.notifications_send_due(chunk=3) == {"sent": 7, "failed": 0}
    assert not Notification.objects.filter(emailed_at__isnull=True).exists() and len(mailoutbox) == 7


def test_a_database_that_does_not_answer_is_a_503_with_retry_after_not_a_500(monkeypatch):
    # the soak's primary restart: requests in flight lost their connection
    from django.db import OperationalError

    from billing import api as billing_api

    def cut(**kw):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(billing_api, "spend_record_batch", cut)
    adv = AdvertiserFactory(currency="USD")
    response = Api().post("/spend", {"events": [{"event_id": "db-gone", "advertiser_id": adv.pk, "campaign_id": 1,
                                                 "amount": "1.00", "currency": "USD",
                                                 "occurred_at": timezone.now().isoformat()}]},
                          token=token_for(api_user(is_staff=True)))
    assert response.status_code == 503, response.content
    assert response["Retry-After"] == "1"
    assert response.json()["error"]["code"] == "database_unavailable"
