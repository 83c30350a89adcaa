"""Helpers for portal API tests: a JSON client that sends a token, and users with roles.

Import the fixtures you use into a test module (`from tests.api_helpers import api, staff`).
"""

import json

import pytest
from django.test import Client

from billing.models import LedgerTransaction, SpendEvent
from portal.models import BCMembership
from tests.factories import UserFactory, member, token_for

BASE = "/api/v1"


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
    return token_for(UserFactory(is_staff=True))


def role_token(advertiser, role: str) -> str:
    return token_for(member(advertiser, role))


def bc_role_token(business_center, role: str) -> str:
    user = UserFactory()
    BCMembership.objects.create(user=user, business_center=business_center, role=role)
    return token_for(user)


def stranger_token() -> str:
    """A user who belongs to no advertiser and no Business Center."""
    return token_for(UserFactory())


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


def ledger_counts() -> tuple[int, int]:
    return SpendEvent.objects.count(), LedgerTransaction.objects.count()
