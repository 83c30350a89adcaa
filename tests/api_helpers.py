"""Helpers for portal API tests: a JSON client that sends a token, and users with roles.

Import the fixtures you use into a test module (`from tests.api_helpers import api, staff`).
"""

import itertools
import json

import pytest
from django.test import Client

from billing.models import LedgerTransaction, SpendEvent
from portal.models import BCMembership
from django.contrib.auth import get_user_model

from portal.models import Membership
from tests.factories import token_for

BASE = "/api/v1"
_users = itertools.count(1)


def api_user(*, is_staff: bool = False, username: str | None = None):
    """A user without a password: API callers authenticate by token, and hashing is slow."""
    return get_user_model().objects.create(username=username or f"api-user-{next(_users)}", is_staff=is_staff)


class Api:
    """`api.post("/spend", body, token=t)` → response; `.json()` parses the body."""

    def __init__(self):
        self.client = Client()

    def _headers(self, token, bearer):
        if token is None:
            return {}
        if bearer:
            return {"Authorization": f"Bearer {token}"}
        return {"Access-Token": token}

    def get(self, path, *, token=None, bearer=False):
        return self.client.get(BASE + path, headers=self._headers(token, bearer))

    def put(self, path, body=None, *, token=None, bearer=False):
        return self.client.put(BASE + path, data=json.dumps(body if body is not None else {}),
                               content_type="application/json", headers=self._headers(token, bearer))

    def post(self, path, body=None, *, token=None, bearer=False, raw=None):
        data = raw if raw is not None else json.dumps(body if body is not None else {})
        return self.client.post(BASE + path, data=data, content_type="application/json",
                                headers=self._headers(token, bearer))


@pytest.fixture
def api():
    return Api()


@pytest.fixture
def staff(db):
    """A support/service user's token."""
    return token_for(api_user(is_staff=True))


def role_token(advertiser, role: str) -> str:
    user = api_user()
    Membership.objects.create(user=user, advertiser=advertiser, role=role)
    return token_for(user)


def bc_role_token(business_center, role: str) -> str:
    user = api_user()
    BCMembership.objects.create(user=user, business_center=business_center, role=role)
    return token_for(user)


def stranger_token() -> str:
    """A user who belongs to no advertiser and no Business Center."""
    return token_for(api_user())


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    # every error quotes the response's request id (an addition, portal/request_id.py); the rest
    # is compared by the tests
    error = dict(body["error"])
    assert error.pop("request_id") == response["X-Request-Id"]
    return error


def ledger_counts() -> tuple[int, int]:
    return SpendEvent.objects.count(), LedgerTransaction.objects.count()


class World:
    """Advertiser `adv` (in Business Center `bc`, 500.00 cash, one campaign, one coupon, one
    recorded charge) and a token for every kind of caller:

    staff · admin, finance, operator, analyst (of `adv`) · bc_admin, bc_finance (of `bc`) ·
    other (admin of `other_adv`, another BC-less advertiser) · stranger (belongs to nothing).
    """

    def __init__(self):
        from billing.spend import spend_record
        from tests.factories import AdvertiserFactory, BusinessCenterFactory, CampaignFactory, deposit, grant

        self.bc = BusinessCenterFactory()
        self.adv = AdvertiserFactory(business_center=self.bc)
        self.campaign = CampaignFactory(advertiser=self.adv)
        deposit(self.adv, "500.00", key="world-deposit")
        self.coupon = grant(self.adv, "assignable", "50.00", key="world-coupon")
        self.event_id = "world-charge-1"
        spend_record(event={
            "event_id": self.event_id, "advertiser_id": self.adv.pk, "campaign_id": self.campaign.pk,
            "amount": "10.00", "currency": "USD", "occurred_at": "2024-01-01T00:00:00+00:00",
        })
        self.other_adv = AdvertiserFactory()
        self.tokens = {
            "staff": token_for(api_user(is_staff=True)),
            **{role: role_token(self.adv, role) for role in ("admin", "finance", "operator", "analyst")},
            "bc_admin": bc_role_token(self.bc, "admin"),
            "bc_finance": bc_role_token(self.bc, "finance"),
            "other": role_token(self.other_adv, "admin"),
            "stranger": stranger_token(),
        }


@pytest.fixture
def world(db):
    return World()
