"""Webhooks (SPEC R45), delivered from the outbox (R46) — decision 0033, docs/webhooks.md.

An advertiser's admin registers endpoints (`webhook_create`): a URL and the event types it wants.
The events are the outbox rows (`Notification`) the changes already write in their own
transaction, so a rolled-back change emits nothing. Two jobs move them on:

- `webhooks_fan_out` (the relay) claims events not yet relayed (`webhooks_at IS NULL`, `FOR UPDATE
  SKIP LOCKED`, in chunks), writes one `WebhookDelivery` per subscribed endpoint (the unique
  (endpoint, notification) pair and `ON CONFLICT DO NOTHING` make it idempotent) and marks them.
- `webhooks_deliver` claims due pending deliveries one at a time with a lease (`claimed_until`,
  longer than a request can take), commits the claim, POSTs outside any transaction, and records
  the answer only while it still holds that lease. A worker that dies mid-delivery leaves a lease
  that lapses: the next run sends the same event again (at least once; receivers deduplicate by
  the event id). Failures are retried with backoff until 24 hours after the event, then `failed`.

The body of an event is built from its row alone (`event_body`), so every retry and manual
redelivery sends the same bytes; each attempt signs `f"{timestamp}.{body}"` with the endpoint's
secret (HMAC-SHA256). In production mode (`settings.PRODUCTION`) the URL must be https and its host
must resolve only to public addresses — checked when the endpoint is created and again at each
delivery, whose connection goes to the very address that was checked (no second DNS answer) with
the original name for TLS SNI, certificate and Host. Redirects are never followed.
"""

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import urllib3
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from portal.audit import audit_record
from portal.errors import BadInput, NotFound
from portal.models import Advertiser, DeliveryStatus, Notification, WebhookDelivery, WebhookEndpoint

log = logging.getLogger("portal.webhooks")

# --- event types ----------------------------------------------------------------------------------

# Notification kind (portal.notifications.KINDS) → the public event type a receiver subscribes to.
# A kind not listed here (reminders, appeals, settings changes) is not a webhook event.
EVENT_TYPES: dict[str, str] = {
    "deposit_received": "deposit.received",
    "bill_paid": "bill.paid",
    "payment_failed": "payment.failed",
    "invoice_issued": "invoice.issued",
    "document_issued": "document.issued",
    "credit_issued": "credit.issued",
    "credit_expired": "credit.expired",
    "credit_used_up": "credit.used_up",  # an addition to R45's list (issue 14: "credit used up")
    "credit_frozen": "credit.frozen",
    "credit_unfrozen": "credit.unfrozen",
    "campaigns_paused_arrears": "campaigns.paused",
    "campaigns_paused_credit_line": "campaigns.paused",
    "campaigns_resumed": "campaigns.resumed",
    "spending_limit_reached": "spending_limit.reached",
}
# Why campaigns paused, added to the event's data (one type, two causes).
PAUSE_REASONS = {"campaigns_paused_arrears": "arrears", "campaigns_paused_credit_line": "credit_line"}

EVENT_TYPE_LABELS: dict[str, str] = {
    "deposit.received": "Deposit received",
    "bill.paid": "Bill paid",
    "payment.failed": "Payment failed",
    "invoice.issued": "Invoice issued",
    "document.issued": "Document issued",
    "credit.issued": "Credit issued",
    "credit.expired": "Credit expired",
    "credit.used_up": "Credit used up",
    "credit.frozen": "Credit frozen",
    "credit.unfrozen": "Credit unfrozen",
    "campaigns.paused": "Campaigns paused",
    "campaigns.resumed": "Campaigns resumed",
    "spending_limit.reached": "Spending limit reached",
}
TYPES: tuple[str, ...] = tuple(EVENT_TYPE_LABELS)
assert set(EVENT_TYPES.values()) == set(TYPES)

URL_MAX_LENGTH = 500  # WebhookEndpoint.url
ENDPOINTS_MAX = 20  # per advertiser
SECRET_PREFIX = "whsec_"
METADATA_ADDRESSES = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}

# Retries: the wait after the 1st, 2nd, … failed attempt; the last one repeats. Given up 24 hours
# after the event was created.
BACKOFF = (timedelta(seconds=30), timedelta(minutes=2), timedelta(minutes=10), timedelta(minutes=30),
           timedelta(hours=1), timedelta(hours=2), timedelta(hours=4))
GIVE_UP_AFTER = timedelta(hours=24)


def _connect_timeout() -> float:
    return float(getattr(settings, "WEBHOOK_TIMEOUT_CONNECT", 3.0))


def _read_timeout() -> float:
    return float(getattr(settings, "WEBHOOK_TIMEOUT_READ", 10.0))


def lease() -> timedelta:
    """How long a claim holds a delivery: longer than any one request can take (DNS, connect, read)."""
    return timedelta(seconds=_connect_timeout() + _read_timeout() + 30)


def _production() -> bool:
    return bool(getattr(settings, "PRODUCTION", False))


# --- the SSRF guard -------------------------------------------------------------------------------

class UrlRefused(BadInput):
    """The URL's host is, or resolves to, an address the portal does not call."""

    def __init__(self, message: str):
        super().__init__("webhook_url_refused", message)


def address_refused(address: str) -> str | None:
    """Why the portal must not connect to `address`, or None when it is a public unicast address.
    IPv4-mapped and 6to4/Teredo IPv6 addresses are judged by the IPv4 address they carry."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d is a.b.c.d
            return address_refused(str(ip.ipv4_mapped))
        embedded = ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:
            reason = address_refused(str(embedded))
            if reason:
                return reason
    if ip in METADATA_ADDRESSES:
        return "the cloud metadata address"
    for test, what in ((ip.is_unspecified, "an unspecified address"), (ip.is_loopback, "a loopback address"),
                       (ip.is_link_local, "a link-local address"), (ip.is_multicast, "a multicast address"),
                       (ip.is_private, "a private address"), (ip.is_reserved, "a reserved address")):
        if test:
            return what
    if not ip.is_global:
        return "an address that is not public"
    return None


def resolve_public(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, all public, or UrlRefused naming the first that is not
    (or that the name does not resolve)."""
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError, OSError):
            raise UrlRefused(f"The host {host} does not resolve.") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise UrlRefused(f"The host {host} does not resolve.")
    for address in addresses:
        reason = address_refused(address)
        if reason:
            shown = host if literal is not None else f"{host} ({address})"
            raise UrlRefused(f"The URL's host {shown} is {reason}: webhooks are sent to public addresses only.")
    return addresses


@dataclass(frozen=True)
class Target:
    url: str
    https: bool
    host: str  # the name (or address) in the URL, without brackets
    port: int
    netloc: str  # for the Host header
    path: str  # path and query


def parse_url(value) -> Target:
    """The URL, checked for shape (scheme, host, port, no credentials, no fragment), or BadInput
    `invalid_webhook_url`. http is accepted outside production mode only."""
    if not isinstance(value, str) or not value.strip():
        raise BadInput("invalid_webhook_url", "Give the URL of your webhook endpoint, starting with https://.")
    url = value.strip()
    if len(url) > URL_MAX_LENGTH:
        raise BadInput("invalid_webhook_url", f"The URL is longer than {URL_MAX_LENGTH} characters.")
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise BadInput("invalid_webhook_url", "The URL holds a space or a control character.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise BadInput("invalid_webhook_url", "The URL is not valid (check the host and port).") from None
    scheme = parts.scheme.lower()
    if scheme != "https" and not (scheme == "http" and not _production()):
        raise BadInput("invalid_webhook_url", "The URL must start with https://.")
    host = parts.hostname or ""
    if not host:
        raise BadInput("invalid_webhook_url", "The URL has no host.")
    if parts.username is not None or parts.password is not None:
        raise BadInput("invalid_webhook_url", "The URL must not hold a user name or password.")
    if parts.fragment:
        raise BadInput("invalid_webhook_url", "The URL must not have a #fragment.")
    try:
        host.encode("idna")
    except UnicodeError:
        raise BadInput("invalid_webhook_url", "The URL's host is not a valid name.") from None
    if port == 0:
        raise BadInput("invalid_webhook_url", "The URL's port is not valid.")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(url=url, https=scheme == "https", host=host, port=port or (443 if scheme == "https" else 80),
                  netloc=parts.netloc, path=path)


def parse_events(value) -> list[str]:
    if not isinstance(value, list) or not value:
        raise BadInput("invalid_events", f"Choose at least one event type: {', '.join(TYPES)}.")
    unknown = [v for v in value if not isinstance(v, str) or v not in TYPES]
    if unknown:
        shown = ", ".join(str(v)[:40] for v in unknown[:5])
        raise BadInput("invalid_events", f"Unknown event type {shown}; the types are {', '.join(TYPES)}.")
    return [t for t in TYPES if t in value]  # in the documented order, once each


# --- endpoints ------------------------------------------------------------------------------------

def webhook_create(*, advertiser: Advertiser, url, events, by) -> WebhookEndpoint:
    """Register an endpoint; its secret (`endpoint.secret`) is for the creator's eyes, once."""
    events = parse_events(events)
    target = parse_url(url)
    if _production():
        resolve_public(target.host, target.port)
    with transaction.atomic():
        Advertiser.objects.select_for_update().filter(pk=advertiser.pk).first()  # counts one at a time
        if WebhookEndpoint.objects.filter(advertiser=advertiser, disabled_at__isnull=True).count() >= ENDPOINTS_MAX:
            raise BadInput("too_many_webhooks", f"An account has at most {ENDPOINTS_MAX} webhook endpoints; "
                                                "delete one first.")
        endpoint = WebhookEndpoint.objects.create(
            advertiser=advertiser, url=target.url, events=events, secret=SECRET_PREFIX + secrets.token_urlsafe(32),
            created_by=by if by is not None and by.is_authenticated else None,
        )
        audit_record(actor=by, action="webhook_create", advertiser=advertiser, target=f"Webhook {endpoint.pk}",
                     reason=target.url[:200], after={"url": target.url, "events": events})
    return endpoint


def webhook_delete(*, endpoint: WebhookEndpoint, by) -> bool:
    """Disable the endpoint: it gets nothing more, its pending deliveries are dropped (failed) and
    its secret is forgotten; its delivery log stays in the database. Twice changes nothing."""
    at = timezone.now()
    with transaction.atomic():
        done = WebhookEndpoint.objects.filter(pk=endpoint.pk, disabled_at__isnull=True).update(disabled_at=at,
                                                                                              secret="") == 1
        if done:
            WebhookDelivery.objects.filter(endpoint=endpoint, status=DeliveryStatus.PENDING).update(
                status=DeliveryStatus.FAILED, claimed_until=None, last_error="The endpoint was deleted.")
            audit_record(actor=by, action="webhook_delete", advertiser=endpoint.advertiser,
                         target=f"Webhook {endpoint.pk}", reason=endpoint.url[:200],
                         before={"url": endpoint.url, "events": endpoint.events})
    endpoint.disabled_at = endpoint.disabled_at or at
    return done


def webhooks_of(*, advertiser: Advertiser) -> list[WebhookEndpoint]:
    """The advertiser's live endpoints, newest first."""
    return list(WebhookEndpoint.objects.filter(advertiser=advertiser, disabled_at__isnull=True)
                .order_by("-created_at", "-pk"))


def webhook_of(*, advertiser: Advertiser, webhook_id) -> WebhookEndpoint:
    """One live endpoint of the advertiser, or NotFound (another advertiser's reads as unknown)."""
    try:
        endpoint = WebhookEndpoint.objects.get(pk=int(str(webhook_id)), advertiser=advertiser,
                                               disabled_at__isnull=True)
    except (WebhookEndpoint.DoesNotExist, ValueError, TypeError, OverflowError):
        raise NotFound("webhook") from None
    endpoint.advertiser = advertiser
    return endpoint


def deliveries_of(*, endpoint: WebhookEndpoint, limit: int = 100) -> list[WebhookDelivery]:
    """The endpoint's delivery log, newest first, with each event (one query)."""
    return list(WebhookDelivery.objects.filter(endpoint=endpoint).select_related("notification")
                .order_by("-created_at", "-pk")[:limit])


def delivery_of(*, endpoint: WebhookEndpoint, delivery_id) -> WebhookDelivery:
    try:
        delivery = WebhookDelivery.objects.select_related("notification").get(pk=int(str(delivery_id)),
                                                                              endpoint=endpoint)
    except (WebhookDelivery.DoesNotExist, ValueError, TypeError, OverflowError):
        raise NotFound("delivery") from None
    delivery.endpoint = endpoint
    return delivery


def webhook_redeliver(*, delivery: WebhookDelivery, by=None, at: datetime | None = None) -> WebhookDelivery:
    """Send the event again, now: the same event id and body. A delivery being sent right now keeps
    its lease, so it is not sent twice at once."""
    at = at or timezone.now()
    with transaction.atomic():
        WebhookDelivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.PENDING, next_attempt_at=at)
        if by is not None:
            audit_record(actor=by, action="webhook_redeliver", advertiser=delivery.endpoint.advertiser,
                         target=f"Webhook {delivery.endpoint_id}", reason=event_id(delivery.notification))
    delivery.refresh_from_db()
    return delivery


# --- the event body and its signature -------------------------------------------------------------

def event_id(note: Notification) -> str:
    return f"evt_{note.pk}"


def event_type(note: Notification) -> str | None:
    return None if note.user_id is not None else EVENT_TYPES.get(note.kind)


def event_body(note: Notification) -> bytes:
    """The JSON a receiver gets, from the event's row alone: the same bytes on every attempt."""
    data = dict(note.context or {})
    if note.kind in PAUSE_REASONS:
        data.setdefault("reason", PAUSE_REASONS[note.kind])
    payload = {
        "id": event_id(note),
        "type": event_type(note),
        "created_at": note.created_at.astimezone(UTC).isoformat(),
        "advertiser_id": str(note.advertiser_id),
        "data": data,
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`v1=` and the hex HMAC-SHA256 of `"{timestamp}.{body}"` keyed with the whole secret."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def signed_headers(*, secret: str, note: Notification, body: bytes, at: datetime) -> dict[str, str]:
    timestamp = int(at.timestamp())
    return {
        "Content-Type": "application/json",
        "User-Agent": "AdCredit-Webhooks/1",
        "Webhook-Id": event_id(note),
        "Webhook-Timestamp": str(timestamp),
        "Webhook-Signature": signature(secret, timestamp, body),
    }


# --- the relay: events → deliveries ---------------------------------------------------------------

def webhooks_fan_out(*, at: datetime | None = None, chunk: int = 500) -> dict:
    """Job: write the deliveries of every event not relayed yet, a chunk per transaction. Two runs
    at once skip each other's rows; a run that dies rolls its chunk back for the next one."""
    at = at or timezone.now()
    counts = {"events": 0, "deliveries": 0}
    while True:
        with transaction.atomic():
            notes = list(
                Notification.objects.filter(webhooks_at__isnull=True, created_at__lte=at)
                .order_by("pk").select_for_update(skip_locked=True)
                .only("pk", "advertiser_id", "kind", "user_id", "created_at")[:chunk]
            )
            if not notes:
                break
            wanted = [n for n in notes if event_type(n) is not None]
            by_advertiser = defaultdict(list)
            if wanted:
                for endpoint in WebhookEndpoint.objects.filter(
                    advertiser_id__in={n.advertiser_id for n in wanted}, disabled_at__isnull=True
                ).only("pk", "advertiser_id", "events", "created_at"):
                    by_advertiser[endpoint.advertiser_id].append(endpoint)
            rows = [
                WebhookDelivery(endpoint_id=e.pk, notification_id=n.pk, next_attempt_at=at, created_at=at)
                for n in wanted for e in by_advertiser[n.advertiser_id]
                if event_type(n) in e.events and e.created_at <= n.created_at
            ]
            if rows:
                WebhookDelivery.objects.bulk_create(rows, ignore_conflicts=True)
            Notification.objects.filter(pk__in=[n.pk for n in notes]).update(webhooks_at=at)
        counts["events"] += len(notes)
        counts["deliveries"] += len(rows)
        if len(notes) < chunk:
            break
    return counts


# --- the worker: deliveries → HTTP ----------------------------------------------------------------

@dataclass
class Answer:
    status: int | None  # the HTTP status, None when there was none
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def http_post(url: str, body: bytes, headers: dict[str, str]) -> Answer:
    """POST once, with the connect/read timeouts, never following a redirect. In production mode
    the host is resolved and checked here, and the connection goes to the checked address."""
    try:
        target = parse_url(url)
        # the checked address itself (IPv4 first), never the name again: a second DNS answer could differ
        connect_to = (sorted(resolve_public(target.host, target.port), key=lambda a: ":" in a)[0]
                      if _production() else target.host)
    except BadInput as e:
        return Answer(None, e.message)
    timeout = urllib3.Timeout(connect=_connect_timeout(), read=_read_timeout())
    if target.https:
        pool = urllib3.HTTPSConnectionPool(
            connect_to, target.port, timeout=timeout, retries=False, maxsize=1,
            cert_reqs="CERT_REQUIRED", server_hostname=target.host, assert_hostname=target.host,
        )
    else:
        pool = urllib3.HTTPConnectionPool(connect_to, target.port, timeout=timeout, retries=False, maxsize=1)
    try:
        response = pool.urlopen("POST", target.path, body=body, headers={**headers, "Host": target.netloc},
                                redirect=False, retries=False, preload_content=False, assert_same_host=False)
        status = response.status
        response.close()  # the answer's body is not read
    except urllib3.exceptions.NewConnectionError as e:  # a subclass of the timeout below
        return Answer(None, f"Could not connect: {e}"[:300])
    except urllib3.exceptions.TimeoutError as e:
        return Answer(None, f"Timed out: {e}"[:300])
    except (urllib3.exceptions.HTTPError, OSError) as e:
        return Answer(None, f"{type(e).__name__}: {e}"[:300])
    finally:
        pool.close()
    if 300 <= status < 400:
        return Answer(status, f"Redirect ({status}) not followed: answer 2xx at the registered URL.")
    if not 200 <= status < 300:
        return Answer(status, f"HTTP {status}")
    return Answer(status)


def _claim(*, now: datetime) -> WebhookDelivery | None:
    """Claim the next due delivery: lock it (skipping rows another worker holds), give it a lease,
    commit. Returns it with its endpoint and event, or None when nothing is due."""
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now,
                                           endpoint__disabled_at__isnull=True)
            .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lte=now))
            .order_by("next_attempt_at", "pk")
            .select_for_update(skip_locked=True, of=("self",))
            .select_related("endpoint", "notification")
            .first()
        )
        if delivery is None:
            return None
        delivery.claimed_until = now + lease()
        WebhookDelivery.objects.filter(pk=delivery.pk).update(claimed_until=delivery.claimed_until)
    return delivery


def _next_attempt(*, attempts: int, now: datetime, deadline: datetime) -> datetime:
    wait = BACKOFF[min(attempts, len(BACKOFF)) - 1]
    return min(now + wait, deadline)


def delivery_attempt(*, delivery: WebhookDelivery, now: datetime) -> bool:
    """Send one claimed delivery and record the answer, if this worker still holds the lease."""
    note, endpoint = delivery.notification, delivery.endpoint
    body = event_body(note)
    answer = http_post(endpoint.url, body, signed_headers(secret=endpoint.secret, note=note, body=body, at=now))
    attempts = delivery.attempts + 1
    mine = WebhookDelivery.objects.filter(pk=delivery.pk, claimed_until=delivery.claimed_until,
                                          status=DeliveryStatus.PENDING)
    if answer.ok:
        mine.update(status=DeliveryStatus.DELIVERED, attempts=attempts, claimed_until=None, delivered_at=now,
                    last_status_code=answer.status, last_error="")
        return True
    deadline = note.created_at + GIVE_UP_AFTER
    if now >= deadline:
        mine.update(status=DeliveryStatus.FAILED, attempts=attempts, claimed_until=None,
                    last_status_code=answer.status, last_error=answer.error[:300])
    else:
        mine.update(attempts=attempts, claimed_until=None, last_status_code=answer.status,
                    last_error=answer.error[:300], next_attempt_at=_next_attempt(attempts=attempts, now=now,
                                                                                 deadline=deadline))
    log.info("webhook delivery %s (%s to endpoint %s) failed: %s", delivery.pk, event_id(note), endpoint.pk,
             answer.error)
    return False


def webhooks_deliver(*, at: datetime | None = None, limit: int = 200, seconds: float = 60.0) -> dict:
    """Job: send due deliveries, each claimed just before it is sent, until none is due, `limit`
    were tried or `seconds` passed. `at` fixes the clock (tests); by default each claim reads it."""
    clock = (lambda: at) if at is not None else timezone.now
    started = timezone.now()
    counts = {"delivered": 0, "retrying": 0, "failed": 0}
    for _ in range(limit):
        if (timezone.now() - started).total_seconds() > seconds:
            break
        now = clock()
        delivery = _claim(now=now)
        if delivery is None:
            break
        if delivery_attempt(delivery=delivery, now=now):
            counts["delivered"] += 1
        else:
            status = WebhookDelivery.objects.filter(pk=delivery.pk).values_list("status", flat=True).first()
            counts["failed" if status == DeliveryStatus.FAILED else "retrying"] += 1
    return counts


def deliver_webhooks(*, at: datetime | None = None) -> dict:
    """Job: relay new events, then send what is due — one beat entry for both."""
    return {**webhooks_fan_out(at=at), **webhooks_deliver(at=at)}
