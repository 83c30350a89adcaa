"""The Webhooks section of the API access page and the webhook pages (SPEC R45, decision 0033)."""

import re

import pytest
from django.test import Client

from portal.models import WebhookDelivery, WebhookEndpoint
from portal.webhooks import webhook_create, webhooks_deliver, webhooks_fan_out
from tests.api_matrix import database_state
from tests.factories import UserFactory
from tests.pages_helpers import element, fast_password_hashing, logged_in, team, text  # noqa: F401
from tests.portal.webhook_helpers import emit, receiver, verify  # noqa: F401

SECRET = re.compile(r'id="new-webhook-secret"[^>]*>(whsec_[^<]+)<')


def api_access(adv):
    return f"/a/{adv.pk}/api-access/"


def webhooks_url(adv):
    return f"/a/{adv.pk}/api-access/webhooks/"


def log_url(adv, e):
    return f"/a/{adv.pk}/api-access/webhooks/{e.pk}/"


def delete_url(adv, e):
    return f"/a/{adv.pk}/api-access/webhooks/{e.pk}/delete/"


def redeliver_url(adv, e, d):
    return f"/a/{adv.pk}/api-access/webhooks/{e.pk}/deliveries/{d.pk}/redeliver/"


@pytest.fixture
def hooked(team):
    """The team's advertiser with one endpoint and one delivered event."""
    adv = team.advertiser
    e = webhook_create(advertiser=adv, url="https://hooks.example.com/x", events=["deposit.received"], by=None)
    emit(adv)
    webhooks_fan_out()
    d = WebhookDelivery.objects.get()
    WebhookDelivery.objects.filter(pk=d.pk).update(status="delivered", attempts=1, last_status_code=200)
    return team, e, d


def test_r45_admins_and_staff_manage_webhooks_other_roles_403_another_advertiser_404_anonymous_login(hooked):
    team, e, d = hooked
    adv = team.advertiser
    gets = [webhooks_url(adv), log_url(adv, e), delete_url(adv, e)]
    posts = [(webhooks_url(adv), {"url": "http://127.0.0.1:9/h", "events": ["bill.paid"]}),
             (redeliver_url(adv, e, d), {}), (delete_url(adv, e), {})]
    staff = logged_in(UserFactory(is_staff=True, is_superuser=True))
    for client in (team.admin, staff):
        for url in gets:
            assert client.get(url).status_code == 200, url
    # the admin sees the section on the API access page
    section = text(element(team.admin.get(api_access(adv)).content.decode(), "webhooks"))
    assert "https://hooks.example.com/x deposit.received" in section and "Add an endpoint" in section
    before = database_state()
    for role in ("finance", "operator", "analyst"):
        client = team.client(role)
        for url in gets:
            response = client.get(url)
            assert response.status_code == 403 and "for the account's admins" in text(response), (role, url)
        for url, data in posts:
            assert client.post(url, data).status_code == 403, (role, url)
    for url in gets:
        assert logged_in(team.outsider).get(url).status_code == 404, url
        anonymous = Client().get(url)
        assert anonymous.status_code == 302 and anonymous["Location"].startswith("/login/"), url
    for url, data in posts:
        assert logged_in(team.outsider).post(url, data).status_code == 404, url
        assert Client().post(url, data).status_code == 302, url
    assert database_state() == before
    # staff may change them
    assert staff.post(redeliver_url(adv, e, d)).status_code == 302
    assert WebhookDelivery.objects.get().status == "pending"


def test_adding_an_endpoint_shows_its_secret_once_with_the_verification_hint(team):
    adv, admin = team.advertiser, team.admin  # one client: one session
    response = admin.post(webhooks_url(adv), {"url": "http://127.0.0.1:9/hook",
                                                   "events": ["deposit.received", "credit.issued"]})
    # the POST redirects, so a reload sends nothing twice
    assert response.status_code == 302 and response["Location"] == webhooks_url(adv)
    page = admin.get(webhooks_url(adv))
    e = WebhookEndpoint.objects.get(advertiser=adv)
    assert SECRET.search(page.content.decode()).group(1) == e.secret
    assert "no-store" in page["Cache-Control"]
    hint = text(element(page.content.decode(), "webhook-verify-hint"))
    assert "HMAC-SHA256" in hint and "compare_digest" in hint and "5 minutes" in hint
    assert e.events == ["deposit.received", "credit.issued"]
    # shown once
    again = admin.get(webhooks_url(adv))
    assert e.secret not in again.content.decode() and SECRET.search(again.content.decode()) is None
    assert e.secret not in admin.get(api_access(adv)).content.decode()
    assert "http://127.0.0.1:9/hook" in text(element(again.content.decode(), "webhook-list"))


@pytest.mark.parametrize("data,field,message", [
    ({"url": "ftp://hooks.example.com/", "events": ["bill.paid"]}, "url", "must start with https://"),
    ({"url": "", "events": ["bill.paid"]}, "url", "This field is required."),
    ({"url": "https://hooks.example.com/"}, "events", "Choose at least one event."),
    ({"url": "https://hooks.example.com/", "events": ["nope"]}, "events", "Select a valid choice."),
])
def test_a_refused_endpoint_shows_the_error_beside_its_field_and_records_nothing(team, data, field, message):
    response = team.admin.post(webhooks_url(team.advertiser), data)
    assert response.status_code == 422
    html = response.content.decode()
    error_id = "id_url_error" if field == "url" else "webhook-events-error"
    assert message in text(element(html, error_id))
    assert not WebhookEndpoint.objects.exists()


def test_production_mode_refuses_a_private_address_on_the_form(team, settings):
    settings.PRODUCTION = True
    response = team.admin.post(webhooks_url(team.advertiser), {"url": "https://10.1.2.3/hook", "events": ["bill.paid"]})
    assert response.status_code == 422
    assert "private address" in text(element(response.content.decode(), "id_url_error"))
    assert not WebhookEndpoint.objects.exists()


def test_delete_asks_then_deletes(hooked):
    team, e, _ = hooked
    adv, admin = team.advertiser, team.admin
    confirm = admin.get(delete_url(adv, e))
    assert "Delete the webhook to https://hooks.example.com/x?" in text(element(confirm.content.decode(), f"webhook-{e.pk}"))
    assert WebhookEndpoint.objects.get().disabled_at is None
    response = admin.post(delete_url(adv, e))
    assert response.status_code == 302
    assert WebhookEndpoint.objects.get().disabled_at is not None
    page = admin.get(response["Location"])
    assert "is deleted" in text(page) and "No webhooks yet" in text(element(page.content.decode(), "webhook-list"))
    assert team.admin.get(log_url(adv, e)).status_code == 404


def test_the_delivery_log_shows_each_delivery_and_redeliver_sends_the_same_event(team, receiver):
    adv = team.advertiser
    e = webhook_create(advertiser=adv, url=receiver.url(), events=["deposit.received"], by=None)
    note_id = emit(adv)
    webhooks_fan_out()
    receiver.answers["/hook"] = lambda: (503, {})
    webhooks_deliver()
    d = WebhookDelivery.objects.get()
    log = text(element(team.admin.get(log_url(adv, e)).content.decode(), f"delivery-{d.pk}"))
    assert f"evt_{note_id} deposit.received Pending 1 HTTP 503" in log and "Redeliver" in log
    receiver.answers["/hook"] = lambda: (200, {})
    webhooks_deliver()  # not due yet: backoff
    assert len(receiver.requests) == 1
    admin = team.admin
    response = admin.post(redeliver_url(adv, e, d))
    assert response.status_code == 302
    assert "will be sent again" in text(admin.get(response["Location"]))
    webhooks_deliver()
    assert receiver.ids() == [f"evt_{note_id}"] * 2
    assert receiver.requests[0].body == receiver.requests[1].body
    assert verify(e.secret, receiver.requests[1].headers, receiver.requests[1].body)
    log = text(element(team.admin.get(log_url(adv, e)).content.decode(), f"delivery-{d.pk}"))
    assert "Delivered 2 HTTP 200" in log
