"""Shared set-up for the `/open_api/v1.3/` tests (decision 0012): a Business Center with one
advertiser per billing method and a token for every kind of caller, and a client that speaks
TikTok's conventions (JSON-encoded GET filters, the `Access-Token` header, the envelope)."""

import json
from decimal import Decimal

from django.test import Client

from billing.bc import bc_deposit_create
from portal.models import Membership
from tests.api_helpers import api_user, bc_role_token, role_token, stranger_token
from tests.factories import AdvertiserFactory, BusinessCenterFactory, CampaignFactory, deposit, grant, token_for

BASE = "/open_api/v1.3"


class TikTokClient:
    """`tt.get("/bc/balance/get/", token, bc_id=...)` → the parsed envelope (amounts as Decimal)."""

    def __init__(self, client: Client | None = None):
        self.client = client or Client()
        self.last = None

    @staticmethod
    def _query(params: dict) -> dict:
        return {k: json.dumps(v) if isinstance(v, (list, dict)) else str(v) for k, v in params.items()}

    def _parse(self, response) -> dict:
        self.last = response
        assert response.status_code == 200, response.content
        assert response["Content-Type"] == "application/json"
        body = json.loads(response.content, parse_float=Decimal)
        assert set(body) == {"code", "message", "request_id", "data"}, body
        assert isinstance(body["request_id"], str) and body["request_id"]
        assert response["X-Request-Id"] == body["request_id"]
        return body

    def get(self, path: str, token: str | None, **params) -> dict:
        headers = {"Access-Token": token} if token is not None else {}
        return self._parse(self.client.get(BASE + path, self._query(params), headers=headers))

    def post(self, path: str, token: str | None, body=None, *, raw: str | None = None) -> dict:
        headers = {"Access-Token": token} if token is not None else {}
        data = raw if raw is not None else json.dumps(body or {})
        return self._parse(self.client.post(BASE + path, data=data, content_type="application/json", headers=headers))


def ok(envelope: dict) -> dict:
    assert (envelope["code"], envelope["message"]) == (0, "OK"), envelope
    return envelope["data"]


def refused(envelope: dict, code: int, reason: str | None = None) -> dict:
    assert envelope["code"] == code, envelope
    assert isinstance(envelope["message"], str) and envelope["message"] and envelope["message"] != "OK"
    if reason is not None:
        assert envelope["data"] == {"error_code": reason}, envelope
    return envelope


class World:
    """Business Center `bc` (USD, 5,000.00 BC cash) holding `manual` (1,000.00 cash, a free credit
    of 100.00, a coupon of 50.00, a discount capped at 30.00), `automatic` and `invoiced`; another
    BC `other_bc` with `other_adv`. Tokens: staff · bc_admin, bc_finance · admin, finance,
    analyst, operator (of `manual`) · other (admin of `other_adv`) · stranger."""

    def __init__(self):
        self.bc = BusinessCenterFactory(name="Agency BC")
        bc_deposit_create(business_center=self.bc, amount="5000.00", idempotency_key="world-bc")
        self.manual = AdvertiserFactory(name="Manual Shop", business_center=self.bc, timezone_name="America/New_York")
        self.automatic = AdvertiserFactory(name="Auto Apparel", business_center=self.bc, billing_method="automatic")
        self.invoiced = AdvertiserFactory(name="Invoiced Games", business_center=self.bc,
                                          billing_method="monthly_invoice")
        self.campaign = CampaignFactory(advertiser=self.manual)
        deposit(self.manual, "1000.00", key="world-deposit")
        self.free = grant(self.manual, "free", "100.00", key="world-free")
        self.coupon = grant(self.manual, "assignable", "50.00", key="world-coupon")
        self.discount = grant(self.manual, "discount", "30.00", percent="50", key="world-discount")
        self.other_bc = BusinessCenterFactory(name="Other BC")
        self.other_adv = AdvertiserFactory(name="Other Co", business_center=self.other_bc)
        self.tokens = {
            "staff": token_for(api_user(is_staff=True)),
            "bc_admin": bc_role_token(self.bc, "admin"),
            "bc_finance": bc_role_token(self.bc, "finance"),
            **{role: role_token(self.manual, role) for role in ("admin", "finance", "analyst", "operator")},
            "other": role_token(self.other_adv, "admin"),
            "stranger": stranger_token(),
        }

    def member_user(self, role: str):
        return Membership.objects.get(advertiser=self.manual, role=role).user
