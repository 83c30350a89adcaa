"""Portal API: webhooks (SPEC R45, API.md; services in portal/webhooks.py, decision 0033).

The advertiser's admins (and staff) register endpoints, list them, delete them, read an endpoint's
delivery log and ask for a delivery again. The secret is in the creation's answer only.
"""

from typing import Annotated, Any

from ninja import Router, Schema, Status
from pydantic import WithJsonSchema

from portal.api_schemas import ERRORS, Timestamp, iso
from portal.permissions import advertiser_for
from portal.webhooks import (
    TYPES,
    URL_MAX_LENGTH,
    deliveries_of,
    delivery_of,
    event_id,
    event_type,
    webhook_create,
    webhook_delete,
    webhook_of,
    webhook_redeliver,
    webhooks_of,
)

router = Router(tags=["webhooks"])

UrlIn = Annotated[Any, WithJsonSchema({"type": "string", "format": "uri", "maxLength": URL_MAX_LENGTH,
                                       "description": "https:// URL of a public host."})]
EventsIn = Annotated[Any, WithJsonSchema({"type": "array", "minItems": 1,
                                          "items": {"type": "string", "enum": list(TYPES)}})]


class WebhookIn(Schema):
    url: UrlIn = None
    events: EventsIn = None


class WebhookOut(Schema):
    id: str
    url: str
    events: list[str]
    created_at: Timestamp


class WebhookCreatedOut(WebhookOut):
    secret: str


class DeliveryOut(Schema):
    id: str
    event_id: str
    event_type: str | None
    status: str
    attempts: int
    last_status_code: int | None
    created_at: Timestamp
    next_attempt_at: Timestamp | None
    delivered_at: Timestamp | None
    last_error: str


class DeletedOut(Schema):
    id: str
    deleted: bool


def webhook_json(endpoint) -> dict:
    return {"id": str(endpoint.pk), "url": endpoint.url, "events": list(endpoint.events),
            "created_at": iso(endpoint.created_at)}


def delivery_json(d) -> dict:
    return {
        "id": str(d.pk),
        "event_id": event_id(d.notification),
        "event_type": event_type(d.notification),
        "status": d.status,
        "attempts": d.attempts,
        "last_status_code": d.last_status_code,
        "created_at": iso(d.created_at),
        "next_attempt_at": iso(d.next_attempt_at) if d.status == "pending" else None,
        "delivered_at": iso(d.delivered_at),
        "last_error": d.last_error,
    }


def _endpoint(request, id: str, webhook_id: str):
    adv, _ = advertiser_for(request.auth, id, need="admin")
    return webhook_of(advertiser=adv, webhook_id=webhook_id)


@router.post("/advertisers/{id}/webhooks", response={201: WebhookCreatedOut, **ERRORS},
             summary="Register a webhook endpoint; the answer holds its signing secret, shown only here (admin, staff)")
def webhook_create_view(request, id: str, payload: WebhookIn):
    adv, _ = advertiser_for(request.auth, id, need="admin")
    endpoint = webhook_create(advertiser=adv, url=payload.url, events=payload.events, by=request.auth)
    return Status(201, {**webhook_json(endpoint), "secret": endpoint.secret})


@router.get("/advertisers/{id}/webhooks", response={200: list[WebhookOut], **ERRORS},
            summary="The account's webhook endpoints, newest first, without secrets (admin, staff)")
def webhook_list(request, id: str):
    adv, _ = advertiser_for(request.auth, id, need="admin")
    return [webhook_json(e) for e in webhooks_of(advertiser=adv)]


@router.delete("/advertisers/{id}/webhooks/{webhook_id}", response={200: DeletedOut, **ERRORS},
               summary="Delete a webhook endpoint: nothing more is sent to it (admin, staff)")
def webhook_delete_view(request, id: str, webhook_id: str):
    endpoint = _endpoint(request, id, webhook_id)
    webhook_delete(endpoint=endpoint, by=request.auth)
    return {"id": str(endpoint.pk), "deleted": True}


@router.get("/advertisers/{id}/webhooks/{webhook_id}/deliveries", response={200: list[DeliveryOut], **ERRORS},
            summary="An endpoint's delivery log, newest first (admin, staff)")
def webhook_deliveries(request, id: str, webhook_id: str):
    endpoint = _endpoint(request, id, webhook_id)
    return [delivery_json(d) for d in deliveries_of(endpoint=endpoint)]


@router.post("/advertisers/{id}/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
             response={200: DeliveryOut, **ERRORS},
             summary="Send a delivery's event again, with the same event id and body (admin, staff)")
def webhook_redeliver_view(request, id: str, webhook_id: str, delivery_id: str):
    endpoint = _endpoint(request, id, webhook_id)
    delivery = delivery_of(endpoint=endpoint, delivery_id=delivery_id)
    return delivery_json(webhook_redeliver(delivery=delivery, by=request.auth))
