"""Reads off a replica (issue 11, decision 0022). Run by tests/portal/test_replica.py in a process
started with DATABASE_REPLICA_URL set (the replica is the primary's test database, as a Django
test mirror); not collected on its own (no `test_` prefix). Data is committed (transaction=True)
so both connections see it, as a streaming replica would."""

import pytest
from django.db import connections, transaction
from django.test.utils import CaptureQueriesContext

from portal import replica
from tests.factories import deposit
from tests.pages_helpers import fast_password_hashing, logged_in, make_team  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "replica"])


def ledger_reads(captured) -> int:
    return sum("billing_ledger" in q["sql"] for q in captured.captured_queries)


@pytest.fixture(autouse=True)
def replica_fresh():
    replica._down_until[0] = 0.0
    yield
    replica._down_until[0] = 0.0


@pytest.fixture
def team(fast_password_hashing):  # noqa: F811
    t = make_team(name="Replica Co")
    deposit(t.advertiser, "100.00", key="replica")
    return t


def page(client, team):
    with CaptureQueriesContext(connections["default"]) as primary, CaptureQueriesContext(connections["replica"]) as rep:
        response = client.get(f"/a/{team.advertiser.pk}/payments/transactions/")
    assert response.status_code == 200
    return primary, rep


def test_the_dashboard_reads_the_ledger_off_the_replica(team):
    primary, rep = page(logged_in(team.users["admin"]), team)
    assert ledger_reads(rep) > 0 and ledger_reads(primary) == 0


def test_after_a_change_the_browser_reads_its_own_writes_on_the_primary(team):
    client = logged_in(team.users["admin"])
    client.post(f"/a/{team.advertiser.pk}/notifications/read/")  # any POST
    assert replica.STICKY_COOKIE in client.cookies
    primary, rep = page(client, team)
    assert ledger_reads(primary) > 0 and ledger_reads(rep) == 0


def test_a_replica_that_is_down_sends_the_reads_to_the_primary(team, monkeypatch):
    from django.db.utils import OperationalError

    tried = []

    def refused():
        tried.append(1)
        raise OperationalError("connection refused")

    monkeypatch.setattr(connections["replica"], "ensure_connection", refused)
    client = logged_in(team.users["admin"])
    with CaptureQueriesContext(connections["default"]) as primary:
        assert client.get(f"/a/{team.advertiser.pk}/payments/transactions/").status_code == 200
        assert client.get(f"/a/{team.advertiser.pk}/payments/").status_code == 200
    # then the pages answer from the primary, and the replica is tried once, not at every read
    assert ledger_reads(primary) > 0
    assert len(tried) == 1


def test_the_api_and_money_decisions_read_the_primary(team):
    from billing.selectors import advertiser_balances
    from tests.api_helpers import Api
    from tests.factories import token_for

    with CaptureQueriesContext(connections["replica"]) as rep:
        response = Api().get(f"/advertisers/{team.advertiser.pk}/balances", token=token_for(team.users["admin"]))
        assert response.status_code == 200
        token = replica._reading.set(True)  # even a replica read marked by a page, inside a transaction
        try:
            with transaction.atomic():
                advertiser_balances(advertiser=team.advertiser)
        finally:
            replica._reading.reset(token)
    assert rep.captured_queries == []
