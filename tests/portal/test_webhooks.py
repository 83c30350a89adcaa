"""Webhooks (SPEC R45) delivered from the outbox (R46): fan-out, delivery workers, retries,
signatures, redelivery and the SSRF guard (portal/webhooks.py, decision 0033)."""

import json
import socket
import threading
import time
from datetime import UTC, timedelta

import pytest
import urllib3
from django.db import connection, transaction
from django.utils import timezone

from portal import webhooks
from portal.errors import BadInput
from portal.models import DeliveryStatus, Notification, WebhookDelivery, WebhookEndpoint
from portal.notifications import Draft, notify_many
from portal.webhooks import (
    BACKOFF,
    GIVE_UP_AFTER,
    delivery_of,
    event_body,
    lease,
    webhook_create,
    webhook_delete,
    webhook_redeliver,
    webhooks_deliver,
    webhooks_fan_out,
)
from tests.factories import AdvertiserFactory, UserFactory
from tests.portal.webhook_helpers import emit, receiver, verify  # noqa: F401

ALL = ["deposit.received", "credit.issued", "campaigns.paused"]


def endpoint(advertiser, url, events=ALL):
    return webhook_create(advertiser=advertiser, url=url, events=events, by=None)


def run_in_threads(target, n: int = 2):
    """Run `target` in `n` threads started together; each closes its own connection."""
    barrier = threading.Barrier(n)
    errors, results = [], []

    def body():
        try:
            barrier.wait()
            results.append(target())
        except Exception as e:  # noqa: BLE001 — reported below
            errors.append(e)
        finally:
            connection.close()

    threads = [threading.Thread(target=body) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


# --- the outbox: a rolled-back change emits nothing, a committed one once per endpoint -----------

@pytest.mark.django_db(transaction=True)
def test_r46_a_rolled_back_change_emits_nothing_a_committed_one_once_per_endpoint(receiver):
    adv = AdvertiserFactory()
    endpoint(adv, receiver.url("/a"))
    endpoint(adv, receiver.url("/b"))
    # given a change that writes its event, then rolls back
    with pytest.raises(RuntimeError), transaction.atomic():
        emit(adv)
        raise RuntimeError("the change failed")
    assert webhooks_fan_out() == {"events": 0, "deliveries": 0}
    # when a committed change's event is relayed twice, and by two relays at once
    ids = [emit(adv) for _ in range(5)]
    run_in_threads(webhooks_fan_out)
    webhooks_fan_out()
    # then each event has one delivery per endpoint
    assert WebhookDelivery.objects.count() == 10
    assert sorted(WebhookDelivery.objects.values_list("notification_id", flat=True)) == sorted(ids * 2)
    assert not Notification.objects.filter(webhooks_at__isnull=True).exists()
    # and the receivers get each once
    run_in_threads(webhooks_deliver)
    assert sorted((r.path, r.headers["Webhook-Id"]) for r in receiver.requests) == sorted(
        (path, f"evt_{i}") for i in ids for path in ("/a", "/b"))


def test_fan_out_sends_only_subscribed_types_to_endpoints_that_existed_and_skips_private_alerts(db, receiver):
    adv, other = AdvertiserFactory(), AdvertiserFactory()
    deposits = endpoint(adv, receiver.url("/deposits"), ["deposit.received"])
    everything = endpoint(adv, receiver.url("/all"), list(webhooks.TYPES))
    endpoint(other, receiver.url("/other"))
    deposit = emit(adv, "deposit_received")
    credit = emit(adv, "credit_issued")
    paused = emit(adv, "campaigns_paused_arrears")
    reminder = emit(adv, "invoice_reminder", number="ADC-1", when="is due tomorrow")  # not a webhook event
    private = notify_many([Draft(adv, "deposit_received", "private-one", {"amount": "$1.00"})])[0]
    Notification.objects.filter(pk=private).update(user=UserFactory())  # a member's own alert
    # an endpoint created after the events gets none of them
    later = endpoint(adv, receiver.url("/later"))
    WebhookEndpoint.objects.filter(pk=later.pk).update(created_at=timezone.now() + timedelta(seconds=5))
    # when the relay runs
    counts = webhooks_fan_out(at=timezone.now() + timedelta(seconds=1))
    # then
    got = set(WebhookDelivery.objects.values_list("endpoint_id", "notification_id"))
    assert got == {(deposits.pk, deposit), (everything.pk, deposit), (everything.pk, credit), (everything.pk, paused)}
    assert counts == {"events": 5, "deliveries": 4}
    assert not Notification.objects.filter(pk__in=[reminder, private], webhooks_at__isnull=True).exists()
    # the paused event names its cause
    note = Notification.objects.get(pk=paused)
    assert json.loads(event_body(note))["data"] == {"amount": "$10.00", "reason": "arrears"}
    assert json.loads(event_body(note))["type"] == "campaigns.paused"


def test_a_deleted_endpoint_gets_nothing_more(db, receiver):
    adv = AdvertiserFactory()
    e = endpoint(adv, receiver.url())
    emit(adv)
    webhooks_fan_out()
    assert webhook_delete(endpoint=e, by=None) is True
    assert webhook_delete(endpoint=e, by=None) is False
    emit(adv)
    webhooks_fan_out()
    assert webhooks_deliver() == {"delivered": 0, "retrying": 0, "failed": 0}
    assert receiver.requests == []
    e.refresh_from_db()
    assert e.disabled_at is not None and e.secret == ""
    assert list(WebhookDelivery.objects.values_list("status", flat=True)) == [DeliveryStatus.FAILED]


# --- two workers at once, a killed worker -----------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_two_delivery_workers_at_once_deliver_each_event_once_per_endpoint(receiver):
    adv = AdvertiserFactory()
    endpoints = [endpoint(adv, receiver.url(f"/e{i}")) for i in range(2)]
    ids = [emit(adv, "credit_issued") for _ in range(8)]
    webhooks_fan_out()
    receiver.delay = 0.02  # the workers overlap for the whole run
    # when two workers run at once
    results = run_in_threads(webhooks_deliver)
    # then the receivers got each event exactly once per endpoint, and both workers worked
    assert len(receiver.requests) == 16
    assert sorted((r.path, r.headers["Webhook-Id"]) for r in receiver.requests) == sorted(
        (f"/e{i}", f"evt_{n}") for n in ids for i in range(2))
    assert sum(r["delivered"] for r in results) == 16 and all(r["delivered"] for r in results)
    rows = WebhookDelivery.objects.all()
    assert {(d.status, d.attempts, d.last_status_code, d.claimed_until) for d in rows} == {
        (DeliveryStatus.DELIVERED, 1, 200, None)}
    assert {d.endpoint_id for d in rows} == {e.pk for e in endpoints}


def test_a_worker_killed_mid_delivery_is_retried_by_the_next_run_with_the_same_event_id(db, receiver):
    adv = AdvertiserFactory()
    endpoint(adv, receiver.url())
    note_id = emit(adv)
    t0 = timezone.now()
    webhooks_fan_out(at=t0)
    # given a worker that claimed the delivery (committed) and died before recording anything
    stale = webhooks._claim(now=t0)
    assert stale is not None and WebhookDelivery.objects.get().claimed_until == t0 + lease()
    # then while its lease lasts no other run sends it
    assert webhooks_deliver(at=t0 + timedelta(seconds=5))["delivered"] == 0
    assert receiver.requests == []
    # and once the lease has lapsed, the next run does
    after = t0 + lease() + timedelta(seconds=1)
    assert webhooks_deliver(at=after)["delivered"] == 1
    assert receiver.ids() == [f"evt_{note_id}"]
    # the dead worker, were it to wake up, records nothing over the new answer
    assert webhooks.delivery_attempt(delivery=stale, now=after) is True
    d = WebhookDelivery.objects.get()
    assert (d.status, d.attempts, d.delivered_at) == (DeliveryStatus.DELIVERED, 1, after)
    assert receiver.ids() == [f"evt_{note_id}"] * 2  # at least once: receivers deduplicate by id


# --- the signature, the body, redelivery ------------------------------------------------------

def test_the_receiver_verifies_the_signature_and_a_redelivery_carries_the_same_event_id_and_body(db, receiver):
    adv = AdvertiserFactory()
    e = endpoint(adv, receiver.url())
    assert e.secret.startswith("whsec_") and len(e.secret) > 40
    note_id = emit(adv, "deposit_received", amount="$25.00")
    webhooks_fan_out()
    assert webhooks_deliver()["delivered"] == 1
    first = receiver.requests[0]
    # the receiver checks it as docs/webhooks.md says
    assert first.method == "POST" and first.headers["Content-Type"] == "application/json"
    assert verify(e.secret, first.headers, first.body)
    assert not verify("whsec_wrong", first.headers, first.body)
    assert not verify(e.secret, first.headers, first.body + b" ")
    assert not verify(e.secret, first.headers, first.body, now=time.time() + 301)  # too old: a replay
    payload = json.loads(first.body)
    note = Notification.objects.get(pk=note_id)
    assert payload == {"id": f"evt_{note_id}", "type": "deposit.received", "advertiser_id": str(adv.pk),
                       "created_at": note.created_at.astimezone(UTC).isoformat(),
                       "data": {"amount": "$25.00"}}
    assert first.headers["Webhook-Id"] == f"evt_{note_id}"
    # when the admin asks for it again
    delivery = delivery_of(endpoint=e, delivery_id=WebhookDelivery.objects.get().pk)
    assert webhook_redeliver(delivery=delivery).status == DeliveryStatus.PENDING
    assert webhooks_deliver()["delivered"] == 1
    # then the same event id and the very same bytes, signed again
    second = receiver.requests[1]
    assert second.headers["Webhook-Id"] == first.headers["Webhook-Id"] and second.body == first.body
    assert verify(e.secret, second.headers, second.body)
    assert WebhookDelivery.objects.get().attempts == 2


# --- retries, giving up, redirects, timeouts ----------------------------------------------------

def test_failures_back_off_and_give_up_24_hours_after_the_event(db, receiver):
    adv = AdvertiserFactory()
    endpoint(adv, receiver.url())
    receiver.answers["/hook"] = lambda: (500, {})
    emit(adv)
    created = Notification.objects.get().created_at
    webhooks_fan_out(at=created)
    now = created
    for n, wait in enumerate(BACKOFF[:4], start=1):
        counts = webhooks_deliver(at=now)
        assert counts == {"delivered": 0, "retrying": 1, "failed": 0}
        d = WebhookDelivery.objects.get()
        assert (d.status, d.attempts, d.last_status_code, d.next_attempt_at) == ("pending", n, 500, now + wait)
        # a run before the wait is over sends nothing
        assert webhooks_deliver(at=now + wait - timedelta(seconds=1)) == {"delivered": 0, "retrying": 0, "failed": 0}
        now += wait
    assert len(receiver.requests) == 4
    # the waits are capped, and the last try is at 24 hours
    webhooks_deliver(at=created + timedelta(hours=23))
    assert WebhookDelivery.objects.get().next_attempt_at == created + GIVE_UP_AFTER
    counts = webhooks_deliver(at=created + GIVE_UP_AFTER)
    assert counts == {"delivered": 0, "retrying": 0, "failed": 1}
    d = WebhookDelivery.objects.get()
    assert (d.status, d.attempts, d.last_error) == (DeliveryStatus.FAILED, 6, "HTTP 500")
    # nothing more is tried
    sent = len(receiver.requests)
    assert webhooks_deliver(at=created + timedelta(days=3)) == {"delivered": 0, "retrying": 0, "failed": 0}
    assert len(receiver.requests) == sent == 6


def test_a_redirect_is_a_failure_and_is_not_followed(db, receiver):
    adv = AdvertiserFactory()
    endpoint(adv, receiver.url())
    receiver.answers["/hook"] = lambda: (302, {"Location": "/elsewhere"})
    emit(adv)
    webhooks_fan_out()
    assert webhooks_deliver()["retrying"] == 1
    assert [r.path for r in receiver.requests] == ["/hook"]
    d = WebhookDelivery.objects.get()
    assert d.status == "pending" and d.last_status_code == 302 and "not followed" in d.last_error


def test_a_slow_endpoint_times_out(db, receiver, settings):
    settings.WEBHOOK_TIMEOUT_READ = 0.3
    adv = AdvertiserFactory()
    endpoint(adv, receiver.url())
    receiver.delay = 1.5
    emit(adv)
    webhooks_fan_out()
    started = time.monotonic()
    assert webhooks_deliver()["retrying"] == 1
    assert time.monotonic() - started < 1.2
    d = WebhookDelivery.objects.get()
    assert d.status == "pending" and d.last_status_code is None and d.last_error.startswith("Timed out")
    assert d.attempts == 1 and d.claimed_until is None


def test_a_refused_connection_is_retried(db):
    adv = AdvertiserFactory()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there
    endpoint(adv, f"http://127.0.0.1:{port}/hook")
    emit(adv)
    webhooks_fan_out()
    assert webhooks_deliver()["retrying"] == 1
    d = WebhookDelivery.objects.get()
    assert d.status == "pending" and d.last_status_code is None and d.last_error


# --- validation and the SSRF guard -----------------------------------------------------------

@pytest.mark.parametrize("url,events,code", [
    ("", ALL, "invalid_webhook_url"),
    ("ftp://hooks.example.com/x", ALL, "invalid_webhook_url"),
    ("https://", ALL, "invalid_webhook_url"),
    ("https://user:pw@hooks.example.com/", ALL, "invalid_webhook_url"),
    ("https://hooks.example.com/a b", ALL, "invalid_webhook_url"),
    ("https://hooks.example.com:99999/", ALL, "invalid_webhook_url"),
    ("https://hooks.example.com/" + "x" * 500, ALL, "invalid_webhook_url"),
    ("https://hooks.example.com/", [], "invalid_events"),
    ("https://hooks.example.com/", ["deposit.received", "nope"], "invalid_events"),
    ("https://hooks.example.com/", "deposit.received", "invalid_events"),
])
def test_bad_urls_and_events_are_refused_and_nothing_is_recorded(db, url, events, code):
    with pytest.raises(BadInput) as e:
        webhook_create(advertiser=AdvertiserFactory(), url=url, events=events, by=None)
    assert e.value.code == code and e.value.message
    assert not WebhookEndpoint.objects.exists()


@pytest.fixture
def production(settings, monkeypatch):
    """Production mode, with a DNS whose answers the test sets: name → addresses."""
    settings.PRODUCTION = True
    dns = {"hooks.example.com": ["93.184.216.34"]}
    asked = []
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        asked.append(host)
        if host in dns:
            return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                     (a, port) if ":" not in a else (a, port, 0, 0)) for a in dns[host]]
        if host.replace(".", "").isdigit() or ":" in host:
            return real(host, port, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    dns["asked"] = asked
    return dns


REFUSED_URLS = [
    "https://127.0.0.1/hook", "https://127.1.2.3:8443/hook", "https://10.0.0.1/hook", "https://10.255.3.4/hook",
    "https://169.254.169.254/latest/meta-data/", "https://[::1]/hook", "https://[::ffff:10.0.0.1]/hook",
    "https://[::ffff:127.0.0.1]/hook", "https://[fe80::1]/hook", "https://[fd00::1]/hook", "https://0.0.0.0/hook",
    "https://192.168.1.1/", "https://172.16.0.1/", "https://100.64.0.1/", "https://224.0.0.1/",
    "https://localhost/hook", "https://loopback.example.com/", "https://private.example.com/",
    "https://metadata.example.com/", "https://mixed.example.com/", "https://v6.example.com/",
    "https://nowhere.example.com/",
]


def test_production_refuses_private_loopback_link_local_and_metadata_hosts_at_creation(db, production):
    production.update({
        "localhost": ["127.0.0.1", "::1"], "loopback.example.com": ["127.0.0.1"],
        "private.example.com": ["10.1.2.3"], "metadata.example.com": ["169.254.169.254"],
        "mixed.example.com": ["93.184.216.34", "10.0.0.7"],  # ANY private address refuses it
        "v6.example.com": ["::ffff:169.254.169.254"],
    })
    adv = AdvertiserFactory()
    for url in REFUSED_URLS:
        with pytest.raises(BadInput) as e:
            webhook_create(advertiser=adv, url=url, events=ALL, by=None)
        assert e.value.code == "webhook_url_refused", url
    # http is refused in production, even to a public host
    with pytest.raises(BadInput) as e:
        webhook_create(advertiser=adv, url="http://hooks.example.com/hook", events=ALL, by=None)
    assert e.value.code == "invalid_webhook_url"
    assert not WebhookEndpoint.objects.exists()
    # a public host is accepted
    ok = webhook_create(advertiser=adv, url="https://hooks.example.com/hook", events=ALL, by=None)
    assert WebhookEndpoint.objects.get() == ok


class FakePool:
    """Stands in for urllib3's HTTPS pool: records how the connection would be made."""

    made = []

    def __init__(self, host, port, **kwargs):
        self.host, self.port, self.kwargs = host, port, kwargs
        FakePool.made.append(self)

    def urlopen(self, method, path, **kwargs):
        self.request = (method, path, kwargs)
        raise urllib3.exceptions.NewConnectionError(None, "test: no network")

    def close(self):
        pass


def test_production_checks_again_at_delivery_and_connects_to_the_checked_address(db, production, monkeypatch,
                                                                                 receiver):
    adv = AdvertiserFactory()
    e = endpoint(adv, "https://hooks.example.com:8443/hook?x=1")
    emit(adv)
    webhooks_fan_out()
    FakePool.made = []
    monkeypatch.setattr(webhooks.urllib3, "HTTPSConnectionPool", FakePool)
    # when the name still resolves to a public address: the connection goes to that address, with
    # the name for SNI, the certificate and Host — the name is resolved once, by the guard
    production["asked"].clear()
    webhooks_deliver()
    (pool,) = FakePool.made
    assert (pool.host, pool.port) == ("93.184.216.34", 8443)
    assert pool.kwargs["server_hostname"] == pool.kwargs["assert_hostname"] == "hooks.example.com"
    assert pool.kwargs["cert_reqs"] == "CERT_REQUIRED" and pool.kwargs["retries"] is False
    method, path, kwargs = pool.request
    assert (method, path) == ("POST", "/hook?x=1") and kwargs["redirect"] is False
    assert kwargs["headers"]["Host"] == "hooks.example.com:8443"
    assert production["asked"] == ["hooks.example.com"]
    # when the name now resolves to a private address (DNS rebinding), nothing is sent
    for address in ("127.0.0.1", "10.9.8.7", "169.254.169.254", "::1"):
        production["hooks.example.com"] = [address]
        FakePool.made = []
        WebhookDelivery.objects.update(next_attempt_at=timezone.now(), status="pending")
        assert webhooks_deliver()["retrying"] == 1
        assert FakePool.made == []
        assert "public addresses only" in WebhookDelivery.objects.get().last_error, address
    # and an endpoint to the local receiver (made outside production) is refused at delivery
    WebhookEndpoint.objects.filter(pk=e.pk).update(url=receiver.url().replace("http:", "https:"))
    WebhookDelivery.objects.update(next_attempt_at=timezone.now())
    assert webhooks_deliver()["retrying"] == 1
    assert receiver.requests == [] and "loopback" in WebhookDelivery.objects.get().last_error


@pytest.mark.parametrize("address,refused", [
    ("93.184.216.34", False), ("2606:2800:220:1:248:1893:25c8:1946", False), ("8.8.8.8", False),
    ("127.0.0.1", True), ("10.0.0.1", True), ("169.254.169.254", True), ("::1", True), ("::", True),
    ("::ffff:10.0.0.1", True), ("::ffff:93.184.216.34", False), ("2002:0a00:0001::1", True),
    ("fe80::1%eth0", True), ("fc00::1", True), ("ff02::1", True), ("192.0.2.1", True), ("240.0.0.1", True),
])
def test_address_rules(address, refused):
    assert (webhooks.address_refused(address) is not None) is refused


def test_the_beat_job_relays_and_delivers(db, receiver):
    from django.conf import settings

    from portal.jobs import job_run

    adv = AdvertiserFactory()
    endpoint(adv, receiver.url())
    note_id = emit(adv)
    assert job_run(name="deliver_webhooks") == {"events": 1, "deliveries": 1, "delivered": 1, "retrying": 0,
                                                "failed": 0}
    assert receiver.ids() == [f"evt_{note_id}"]
    entry = settings.CELERY_BEAT_SCHEDULE["deliver-webhooks"]
    assert entry["args"] == ["deliver_webhooks"] and entry["options"]["expires"] < entry["schedule"] <= 30
