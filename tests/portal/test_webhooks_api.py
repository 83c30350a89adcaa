"""Portal API: webhooks (SPEC R45, API.md; portal/webhooks_api.py, decision 0033)."""

import pytest

from portal.models import AuditLog, WebhookDelivery, WebhookEndpoint
from portal.webhooks import webhook_create, webhooks_fan_out
from tests.api_helpers import api, error_of, world  # noqa: F401
from tests.api_matrix import Endpoint, database_state, matrix
from tests.portal.webhook_helpers import emit

ALLOWED = ("admin", "bc_admin", "staff")
FORBIDDEN = ("finance", "operator", "analyst", "bc_finance")
URL = "http://127.0.0.1:9/hook"  # outside production mode a local URL is accepted


def with_webhook(w):
    w.webhook = webhook_create(advertiser=w.adv, url="https://hooks.example.com/a", events=["deposit.received"],
                               by=None)
    w.note_id = emit(w.adv, "deposit_received")
    webhooks_fan_out()
    w.delivery = WebhookDelivery.objects.get(endpoint=w.webhook)
    WebhookDelivery.objects.filter(pk=w.delivery.pk).update(status="delivered", attempts=1, last_status_code=200)


def check_created(w, body):
    assert set(body) == {"id", "url", "events", "secret", "created_at"}
    assert body["url"] == URL and body["events"] == ["deposit.received", "bill.paid"]
    assert body["secret"].startswith("whsec_")
    assert WebhookEndpoint.objects.get(pk=body["id"], advertiser=w.adv).secret == body["secret"]


def check_list(w, body):
    assert body == [{"id": str(w.webhook.pk), "url": "https://hooks.example.com/a", "events": ["deposit.received"],
                     "created_at": body[0]["created_at"]}]  # no secret


def check_deleted(w, body):
    assert body == {"id": str(w.webhook.pk), "deleted": True}
    assert WebhookEndpoint.objects.get(pk=w.webhook.pk).disabled_at is not None


def check_deliveries(w, body):
    (row,) = body
    assert {k: row[k] for k in ("id", "event_id", "event_type", "status", "attempts", "last_status_code")} == {
        "id": str(w.delivery.pk), "event_id": f"evt_{w.note_id}", "event_type": "deposit.received",
        "status": "delivered", "attempts": 1, "last_status_code": 200}
    assert row["created_at"]


def check_redelivered(w, body):
    assert body["id"] == str(w.delivery.pk) and body["event_id"] == f"evt_{w.note_id}"
    assert body["status"] == "pending"
    assert WebhookDelivery.objects.get(pk=w.delivery.pk).status == "pending"


ENDPOINTS = [
    Endpoint("create", "post", lambda w: f"/advertisers/{w.adv.pk}/webhooks",
             body=lambda w: {"url": URL, "events": ["bill.paid", "deposit.received"]},
             allowed=ALLOWED, forbidden=FORBIDDEN, ok_status=201, check=check_created),
    Endpoint("list", "get", lambda w: f"/advertisers/{w.adv.pk}/webhooks", allowed=ALLOWED, forbidden=FORBIDDEN,
             check=check_list, prepare=with_webhook),
    Endpoint("delete", "delete", lambda w: f"/advertisers/{w.adv.pk}/webhooks/{w.webhook.pk}",
             allowed=ALLOWED, forbidden=FORBIDDEN, check=check_deleted, prepare=with_webhook),
    Endpoint("deliveries", "get", lambda w: f"/advertisers/{w.adv.pk}/webhooks/{w.webhook.pk}/deliveries",
             allowed=ALLOWED, forbidden=FORBIDDEN, check=check_deliveries, prepare=with_webhook),
    Endpoint("redeliver", "post",
             lambda w: f"/advertisers/{w.adv.pk}/webhooks/{w.webhook.pk}/deliveries/{w.delivery.pk}/redeliver",
             allowed=ALLOWED, forbidden=FORBIDDEN, check=check_redelivered, prepare=with_webhook),
]

(test_no_token_is_401, test_right_role_passes, test_wrong_role_is_403_and_changes_nothing,
 test_other_advertisers_user_gets_404) = matrix(ENDPOINTS)


def test_the_secret_is_shown_only_in_the_creation_answer(api, world):
    created = api.post(f"/advertisers/{world.adv.pk}/webhooks", {"url": URL, "events": ["credit.issued"]},
                       token=world.tokens["admin"])
    assert created.status_code == 201
    secret = created.json()["secret"]
    listing = api.get(f"/advertisers/{world.adv.pk}/webhooks", token=world.tokens["admin"])
    assert secret not in listing.content.decode() and "secret" not in listing.json()[0]
    assert secret not in str(list(AuditLog.objects.values()))
    assert AuditLog.objects.filter(action="webhook_create", advertiser=world.adv).count() == 1


@pytest.mark.parametrize("body,code", [
    ({"url": "ftp://x.example.com/", "events": ["bill.paid"]}, "invalid_webhook_url"),
    ({"url": "https://", "events": ["bill.paid"]}, "invalid_webhook_url"),
    ({"events": ["bill.paid"]}, "invalid_webhook_url"),
    ({"url": 42, "events": ["bill.paid"]}, "invalid_webhook_url"),
    ({"url": URL}, "invalid_events"),
    ({"url": URL, "events": []}, "invalid_events"),
    ({"url": URL, "events": ["bill.paid", "charge.made"]}, "invalid_events"),
    ({"url": URL, "events": "bill.paid"}, "invalid_events"),
])
def test_bad_input_is_400_with_its_code_and_writes_nothing(api, world, body, code):
    before = database_state()
    response = api.post(f"/advertisers/{world.adv.pk}/webhooks", body, token=world.tokens["admin"])
    assert response.status_code == 400, response.content
    assert error_of(response)["code"] == code
    assert database_state() == before


def test_production_mode_refuses_a_private_address_with_400(api, world, settings):
    settings.PRODUCTION = True
    for url in ("https://10.0.0.1/hook", "https://169.254.169.254/", "https://[::1]/", "https://127.0.0.1/"):
        response = api.post(f"/advertisers/{world.adv.pk}/webhooks", {"url": url, "events": ["bill.paid"]},
                            token=world.tokens["admin"])
        assert response.status_code == 400 and error_of(response)["code"] == "webhook_url_refused", url
    response = api.post(f"/advertisers/{world.adv.pk}/webhooks", {"url": URL, "events": ["bill.paid"]},
                        token=world.tokens["admin"])
    assert error_of(response)["code"] == "invalid_webhook_url"  # http
    assert not WebhookEndpoint.objects.exists()


def test_a_deleted_webhook_and_another_endpoints_delivery_are_404(api, world):
    with_webhook(world)
    other = webhook_create(advertiser=world.adv, url="https://hooks.example.com/b", events=["bill.paid"], by=None)
    admin = world.tokens["admin"]
    base = f"/advertisers/{world.adv.pk}/webhooks"
    # a delivery of one endpoint through another endpoint's path
    response = api.post(f"{base}/{other.pk}/deliveries/{world.delivery.pk}/redeliver", token=admin)
    assert response.status_code == 404 and error_of(response)["code"] == "not_found"
    assert api.client.delete(f"/api/v1{base}/{world.webhook.pk}", headers={"Access-Token": admin}).status_code == 200
    for path in (f"{base}/{world.webhook.pk}/deliveries", f"{base}/{world.webhook.pk}/deliveries/"
                 f"{world.delivery.pk}/redeliver"):
        response = api.get(path, token=admin) if path.endswith("deliveries") else api.post(path, token=admin)
        assert response.status_code == 404, path
    assert [w["id"] for w in api.get(base, token=admin).json()] == [str(other.pk)]
