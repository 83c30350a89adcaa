"""The source document's examples, driven end to end through the portal API (SPEC R6–R10, R13):
everything is set up, spent and read back over HTTP, and checked against the balances the ledger
holds."""

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.api_helpers import api, role_token, staff  # noqa: F401

pytestmark = pytest.mark.django_db


class Portal:
    """An advertiser set up through the API: staff creates it, its admin adds a campaign and cash."""

    def __init__(self, api, staff, currency="USD"):
        self.api, self.staff = api, staff
        self.adv = api.post("/advertisers", {"name": "Seed", "currency": currency}, token=staff).json()["id"]
        from portal.models import Advertiser
        self.admin = role_token(Advertiser.objects.get(pk=int(self.adv)), "admin")
        self.campaign = self.new_campaign("Main")
        self._n = 0

    def new_campaign(self, name, objective="TRAFFIC"):
        r = self.api.post(f"/advertisers/{self.adv}/campaigns", {"name": name, "objective": objective},
                          token=self.admin)
        assert r.status_code == 201
        return r.json()["id"]

    def deposit(self, amount):
        r = self.api.post(f"/advertisers/{self.adv}/deposits",
                          {"amount": amount, "idempotency_key": f"dep-{amount}-{self._next()}"}, token=self.admin)
        assert r.status_code == 201, r.content
        return r.json()

    def grant(self, kind, amount, **fields):
        r = self.api.post(f"/advertisers/{self.adv}/credits", {
            "kind": kind, "amount": amount, "reason": "seed example", "idempotency_key": f"g-{self._next()}",
            "valid_from": (timezone.now() - timedelta(days=1)).isoformat(), **fields}, token=self.staff)
        assert r.status_code == 201, r.content
        return r.json()["id"]

    def spend(self, amount, *, campaign=None, occurred_at=None, kind=None):
        event = {"event_id": f"seed-{self.adv}-{self._next()}", "advertiser_id": self.adv,
                 "campaign_id": campaign or self.campaign, "amount": amount, "currency": "USD",
                 "occurred_at": (occurred_at or timezone.now() - timedelta(minutes=1)).isoformat()}
        if kind:
            event["kind"] = kind
        r = self.api.post("/spend", {"events": [event]}, token=self.staff)
        assert r.status_code == 201, r.content
        return r.json()["results"][0]["allocation"]

    def balances(self):
        return self.api.get(f"/advertisers/{self.adv}/balances", token=self.admin).json()

    def credit(self, credit_id):
        return next(c for c in self.api.get(f"/advertisers/{self.adv}/credits", token=self.admin).json()
                    if c["id"] == credit_id)

    def _next(self):
        self._n += 1
        return self._n


@pytest.fixture
def portal(api, staff):
    return Portal(api, staff)


def paid(allocation) -> dict:
    """The non-zero parts of an allocation, for compact assertions."""
    out = {k: v for k, v in allocation.items() if k in ("discount", "cash", "accrued", "credit_line", "arrears")
           and v != "0.00"}
    for k in ("coupons", "credits"):
        if allocation[k]:
            out[k] = [p["amount"] for p in allocation[k]]
    return out


def test_50_percent_off_up_to_100_pays_half_of_each_charge_until_100_then_full_price(portal):
    # given "50% off up to $100" and 1000.00 cash
    portal.deposit("1000.00")
    discount = portal.grant("discount", "100.00", percent="50")
    # when the account spends 50, 100, 60 and 40
    allocations = [paid(portal.spend(a)) for a in ("50.00", "100.00", "60.00", "40.00")]
    # then half of each charge is discounted until 100 has been paid, then full price
    assert allocations == [
        {"discount": "25.00", "cash": "25.00"},
        {"discount": "50.00", "cash": "50.00"},
        {"discount": "25.00", "cash": "35.00"},  # only 25 of the cap was left
        {"cash": "40.00"},
    ]
    balances = portal.balances()
    assert (balances["discount_cap_remaining"], balances["cash_balance"]) == ("0.00", "850.00")
    assert (portal.credit(discount)["remaining"], portal.credit(discount)["status"]) == ("0.00", "used_up")


def test_free_credit_is_used_before_cash(portal):
    portal.deposit("100.00")
    free = portal.grant("free", "30.00")
    allocation = portal.spend("50.00")
    assert allocation["credits"] == [{"credit_id": free, "amount": "30.00"}]
    assert paid(allocation) == {"credits": ["30.00"], "cash": "20.00"}
    balances = portal.balances()
    assert (balances["credit_balance"], balances["cash_balance"]) == ("0.00", "80.00")


def test_a_coupon_pays_only_for_the_campaigns_it_is_assigned_to(portal, api):
    portal.deposit("100.00")
    other = portal.new_campaign("Other")
    coupon = portal.grant("assignable", "40.00")
    # until assigned, it pays nothing (R6)
    assert paid(portal.spend("10.00")) == {"cash": "10.00"}
    # when the admin assigns it to the main campaign
    r = api.post(f"/credits/{coupon}/assign", {"campaign_ids": [portal.campaign]}, token=portal.admin)
    assert r.status_code == 200
    # then it pays for the main campaign, never for the other one
    assert paid(portal.spend("10.00", campaign=other)) == {"cash": "10.00"}
    assert portal.spend("15.00")["coupons"] == [{"credit_id": coupon, "amount": "15.00"}]
    balances = portal.balances()
    assert (balances["credit_balance"], balances["cash_balance"]) == ("25.00", "80.00")


def test_spend_after_expiry_does_not_use_the_credit_but_late_spend_from_before_does(portal):
    # given a credit that expired an hour ago (still inside the sweep's grace period)
    portal.deposit("100.00")
    now = timezone.now()
    credit = portal.grant("free", "50.00", valid_from=(now - timedelta(days=2)).isoformat(),
                          expires_at=(now - timedelta(hours=1)).isoformat())
    # when spend that occurred after expiry arrives, it is paid by cash
    assert paid(portal.spend("10.00", occurred_at=now - timedelta(minutes=5))) == {"cash": "10.00"}
    # and a late event that occurred before expiry still uses the credit (R9)
    late = portal.spend("8.00", occurred_at=now - timedelta(hours=2))
    assert late["credits"] == [{"credit_id": credit, "amount": "8.00"}]
    assert portal.credit(credit)["remaining"] == "42.00"
    assert portal.balances()["cash_balance"] == "90.00"


def test_a_fee_is_never_paid_by_credit(portal):
    portal.deposit("100.00")
    portal.grant("free", "50.00")
    portal.grant("discount", "50.00", percent="50")
    allocation = portal.spend("12.00", kind="fee")
    assert paid(allocation) == {"cash": "12.00"}
    balances = portal.balances()
    assert (balances["credit_balance"], balances["discount_cap_remaining"], balances["cash_balance"]) == (
        "50.00", "50.00", "88.00")


def test_uncovered_spend_becomes_arrears_and_the_next_deposit_settles_it(portal, api):
    # given 20.00 cash and no credit
    portal.deposit("20.00")
    # when 50.00 is spent
    assert paid(portal.spend("50.00")) == {"cash": "20.00", "arrears": "30.00"}
    campaigns = api.get(f"/advertisers/{portal.adv}/campaigns", token=portal.admin).json()
    assert [c["status"] for c in campaigns] == ["paused_funds"]
    # then a deposit pays the arrears first and delivery resumes (R13)
    balances = portal.deposit("100.00")
    assert (balances["arrears"], balances["cash_balance"]) == ("0.00", "70.00")
    campaigns = api.get(f"/advertisers/{portal.adv}/campaigns", token=portal.admin).json()
    assert [c["status"] for c in campaigns] == ["active"]


def test_waterfall_order_discount_then_coupon_then_free_then_cash(portal, api):
    portal.deposit("100.00")
    discount = portal.grant("discount", "100.00", percent="10")
    free = portal.grant("free", "5.00")
    coupon = portal.grant("assignable", "5.00")
    api.post(f"/credits/{coupon}/assign", {"campaign_ids": [portal.campaign]}, token=portal.admin)
    allocation = portal.spend("30.00")
    assert allocation["discount"] == "3.00" and allocation["discount_credit_id"] == discount
    assert allocation["coupons"] == [{"credit_id": coupon, "amount": "5.00"}]
    assert allocation["credits"] == [{"credit_id": free, "amount": "5.00"}]
    assert allocation["cash"] == "17.00"
    assert portal.balances()["cash_balance"] == "83.00"
