"""The spend hot path's cost, counted (issue 10; SPEC R10–R15): statements and Redis round trips.

A single-event `POST /api/v1/spend` runs at most 5 SQL statements (today 4: the token, the
advertiser lock, one read of everything the batch needs, one booking statement) and one Redis
round trip (the rate limit and the token's last use, one script). A batch's statement count does
not depend on its size. SAVEPOINT / RELEASE are left out of the counts: they are the test's own
transaction around the request; in production the request's transaction is BEGIN and COMMIT.
"""

from datetime import timedelta

import pytest
import redis.connection
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing.models import SpendEvent
from tests.api_helpers import Api, api_user
from tests.factories import AdvertiserFactory, CampaignFactory, deposit, grant, token_for

pytestmark = pytest.mark.django_db

REDIS = "redis://127.0.0.1:6379/1"


def statements(captured) -> list[str]:
    return [q["sql"] for q in captured.captured_queries
            if not q["sql"].startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT"))]


@pytest.fixture
def redis_cache(settings):
    """The portal's production cache, Redis (as `make test` runs it), whatever this run's default."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": settings.CACHES["default"].get("LOCATION") or REDIS}}
    if "redis" not in settings.CACHES["default"]["LOCATION"]:
        settings.CACHES["default"]["LOCATION"] = REDIS


@pytest.fixture
def round_trips(monkeypatch):
    """Counts what is sent to Redis: one `send_packed_command` is one round trip (a pipeline or a
    script is one)."""
    sent = []
    original = redis.connection.AbstractConnection.send_packed_command

    def counting(self, command, check_health=True):
        sent.append(command)
        return original(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
    return sent


@pytest.fixture
def world(db):
    """Three advertisers: cash, a free credit and a coupon on a campaign, a discount."""
    advertisers = []
    for n in range(3):
        adv = AdvertiserFactory()
        camp = CampaignFactory(advertiser=adv)
        deposit(adv, "5000.00", key=f"hot-{n}")
        grant(adv, "free", "20.00", key=f"hot-free-{n}")
        grant(adv, "discount", "30.00", percent="10", key=f"hot-discount-{n}")
        advertisers.append((adv, camp))
    return advertisers


class Events:
    def __init__(self):
        self.n = 0

    def __call__(self, adv, camp, amount="1.00"):
        self.n += 1
        return {"event_id": f"hot-{self.n}", "advertiser_id": adv.pk, "campaign_id": camp.pk, "amount": amount,
                "currency": adv.currency, "occurred_at": (timezone.now() - timedelta(minutes=1)).isoformat()}


def test_a_single_event_request_is_at_most_5_statements_and_one_redis_round_trip(world, redis_cache, round_trips):
    api, token, events = Api(), token_for(api_user(is_staff=True)), Events()
    adv, camp = world[0]
    assert api.post("/spend", {"events": [events(adv, camp)]}, token=token).status_code == 201  # warm: connections
    round_trips.clear()
    with CaptureQueriesContext(connection) as captured:
        response = api.post("/spend", {"events": [events(adv, camp)]}, token=token)
    assert response.status_code == 201, response.content
    assert response.json()["results"][0]["status"] == "applied"
    assert len(statements(captured)) <= 5, "\n".join(statements(captured))
    assert len(round_trips) <= 1, round_trips


def test_a_batchs_statements_do_not_grow_with_its_size(world):
    api, token, events = Api(), token_for(api_user(is_staff=True)), Events()

    def cost(size: int) -> int:
        batch = [events(*world[i % len(world)], amount="3.00") for i in range(size)]
        with CaptureQueriesContext(connection) as captured:
            response = api.post("/spend", {"events": batch}, token=token)
        assert response.status_code == 201, response.content
        assert [r["status"] for r in response.json()["results"]] == ["applied"] * size
        return len(statements(captured))

    one, hundred = cost(1), cost(100)
    # the credits were used up along the way (the batch of 100 pays 300 on 3 accounts): the rows
    # it writes differ, the statements do not
    assert one == hundred, (one, hundred)
    assert SpendEvent.objects.count() == 101


def test_a_replay_and_a_conflict_cost_no_more_than_a_booking_plus_the_replays_read(world):
    api, token, events = Api(), token_for(api_user(is_staff=True)), Events()
    adv, camp = world[0]
    event = events(adv, camp)
    assert api.post("/spend", {"events": [event]}, token=token).status_code == 201
    with CaptureQueriesContext(connection) as captured:
        response = api.post("/spend", {"events": [event]}, token=token)
    assert response.json()["results"][0]["status"] == "duplicate"
    assert len(statements(captured)) <= 4, "\n".join(statements(captured))  # token, lock, read, the replay's entries
    response = api.post("/spend", {"events": [{**event, "amount": "2.00"}]}, token=token)
    assert (response.status_code, response.json()["error"]["code"]) == (409, "event_id_conflict")


def test_postgresql_prepares_the_engines_statements_once_per_connection(world):
    # decision 0020: after prepare_threshold runs the lock, the read and the booking are prepared,
    # each with one generic plan (not re-planned per run)
    from billing.spend import spend_record

    events = Events()
    adv, camp = world[0]
    for _ in range(7):
        spend_record(event=events(adv, camp))
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements")
        prepared = cursor.fetchall()
    kinds = {"lock": "FOR UPDATE", "read": "WITH camp AS", "booking": "ids AS MATERIALIZED"}
    for kind, marker in kinds.items():
        rows = [r for r in prepared if marker in r[0]]
        assert rows, (kind, [r[0][:60] for r in prepared])
        assert all(generic > 0 and custom == 0 for _, generic, custom in rows), (kind, rows)
