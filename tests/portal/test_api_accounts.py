"""Accounts through the portal API (SPEC R1–R3): Business Centers and their members, advertisers,
members and campaigns."""

import pytest

from billing.models import LedgerAccount, Purpose
from portal.models import Advertiser, BCMembership, Campaign, Membership
from tests.api_helpers import api, error_of, role_token, staff  # noqa: F401
from tests.factories import AdvertiserFactory, BusinessCenterFactory, CampaignFactory, token_for

pytestmark = pytest.mark.django_db


def test_staff_creates_a_business_center_with_its_ledger_accounts(api, staff):
    response = api.post("/business-centers", {"name": "Agency One", "currency": "EUR"}, token=staff)
    assert response.status_code == 201
    body = response.json()
    assert body == {"id": body["id"], "name": "Agency One", "currency": "EUR"}
    assert isinstance(body["id"], str)
    assert set(LedgerAccount.objects.filter(business_center_id=int(body["id"])).values_list("purpose", flat=True)) == {
        Purpose.BC_CASH, Purpose.BC_SETTLEMENT}


def test_business_center_with_unknown_currency_is_400(api, staff):
    response = api.post("/business-centers", {"name": "X", "currency": "ZZZ"}, token=staff)
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_currency"


def test_bc_member_added_by_staff_acts_on_every_advertiser_of_the_bc(api, staff):
    # given a BC with an advertiser
    bc = BusinessCenterFactory()
    adv = AdvertiserFactory(business_center=bc)
    # when staff make "carol" its finance member
    response = api.post(f"/business-centers/{bc.pk}/members", {"username": "carol", "role": "finance"}, token=staff)
    # then she is, and her token reads the advertiser's balances but cannot add members
    assert response.status_code == 201
    assert response.json() == {"business_center_id": str(bc.pk), "username": "carol", "role": "finance"}
    carol = BCMembership.objects.get(business_center=bc).user
    raw = token_for(carol)
    assert api.get(f"/advertisers/{adv.pk}/balances", token=raw).status_code == 200
    assert api.post(f"/advertisers/{adv.pk}/members", {"username": "x", "role": "admin"}, token=raw).status_code == 403


def test_bc_member_role_must_be_admin_or_finance(api, staff):
    bc = BusinessCenterFactory()
    response = api.post(f"/business-centers/{bc.pk}/members", {"username": "dave", "role": "operator"}, token=staff)
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_role"
    assert not BCMembership.objects.exists()


def test_staff_create_an_advertiser_with_every_field(api, staff):
    bc = BusinessCenterFactory()
    response = api.post("/advertisers", {
        "name": "Shop Co", "currency": "JPY", "timezone": "Asia/Tokyo", "billing_method": "automatic",
        "business_center_id": str(bc.pk), "registered_at": "2025-03-01T09:00:00+09:00",
        "signup_source": "official_offer", "shop_id": "SHOP-7",
    }, token=staff)
    assert response.status_code == 201
    body = response.json()
    assert body == {
        "id": body["id"], "name": "Shop Co", "currency": "JPY", "timezone": "Asia/Tokyo",
        "billing_method": "automatic", "status": "active", "registered_at": "2025-03-01T00:00:00+00:00",
        "signup_source": "official_offer", "shop_id": "SHOP-7", "credit_frozen": False,
        "business_center_id": str(bc.pk),
    }
    adv = Advertiser.objects.get(pk=int(body["id"]))
    assert adv.business_center == bc
    # and GET answers the same advertiser
    assert api.get(f"/advertisers/{adv.pk}", token=staff).json() == body


def test_advertiser_defaults(api, staff):
    body = api.post("/advertisers", {"name": "Plain", "currency": "USD"}, token=staff).json()
    assert (body["timezone"], body["billing_method"], body["signup_source"], body["shop_id"],
            body["business_center_id"]) == ("UTC", "manual", "organic", None, None)
    assert body["registered_at"].endswith("+00:00")


@pytest.mark.parametrize("change,code", [
    ({"currency": "US"}, "invalid_currency"),
    ({"timezone": "Mars/Olympus"}, "invalid_timezone"),
    ({"billing_method": "barter"}, "invalid_billing_method"),
    ({"signup_source": "billboard"}, "invalid_signup_source"),
    ({"business_center_id": "999999"}, "unknown_business_center"),
    ({"registered_at": "2025-03-01T09:00:00"}, "invalid_timestamp"),
    ({"registered_at": "yesterday"}, "invalid_timestamp"),
    ({"name": "   "}, "invalid_name"),
])
def test_advertiser_bad_input_is_400_and_creates_nothing(api, staff, change, code):
    response = api.post("/advertisers", {"name": "Acme", "currency": "USD", **change}, token=staff)
    assert response.status_code == 400
    assert error_of(response)["code"] == code
    assert not Advertiser.objects.exists()


def test_admin_adds_a_member_who_can_then_use_the_api(api):
    adv = AdvertiserFactory()
    admin = role_token(adv, "admin")
    # when the admin adds "erin" as an operator
    response = api.post(f"/advertisers/{adv.pk}/members", {"username": "erin", "role": "operator"}, token=admin)
    assert response.status_code == 201
    assert response.json() == {"advertiser_id": str(adv.pk), "username": "erin", "role": "operator"}
    erin = token_for(Membership.objects.get(advertiser=adv, user__username="erin").user)
    # then erin creates campaigns but sees no payment data (R1)
    assert api.post(f"/advertisers/{adv.pk}/campaigns", {"name": "C", "objective": "REACH"}, token=erin).status_code == 201
    assert api.get(f"/advertisers/{adv.pk}/balances", token=erin).status_code == 403
    # when the admin changes her role, she has one role only
    api.post(f"/advertisers/{adv.pk}/members", {"username": "erin", "role": "analyst"}, token=admin)
    assert list(Membership.objects.filter(advertiser=adv, user__username="erin").values_list("role", flat=True)) == [
        "analyst"]
    assert api.get(f"/advertisers/{adv.pk}/balances", token=erin).status_code == 200


def test_member_role_must_be_known(api):
    adv = AdvertiserFactory()
    response = api.post(f"/advertisers/{adv.pk}/members", {"username": "x", "role": "owner"},
                        token=role_token(adv, "admin"))
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_role"
    assert "admin, finance, operator, analyst" in error_of(response)["message"]


@pytest.mark.parametrize("username", ["?c3\u00e6R", "has space", "a/b"])
def test_member_username_must_be_a_valid_login_name(api, username):
    # found by schemathesis: a name create_user could not store was a 500 and poisoned the request
    adv = AdvertiserFactory()
    admin = role_token(adv, "admin")
    users_before = Membership.objects.count()
    response = api.post(f"/advertisers/{adv.pk}/members", {"username": username, "role": "analyst"}, token=admin)
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_username"
    assert Membership.objects.count() == users_before


def test_operator_creates_campaigns_listed_newest_first(api):
    adv = AdvertiserFactory(shop_id="SHOP-1")
    operator = role_token(adv, "operator")
    first = api.post(f"/advertisers/{adv.pk}/campaigns", {"name": "First", "objective": "TRAFFIC"}, token=operator)
    second = api.post(f"/advertisers/{adv.pk}/campaigns",
                      {"name": "Shop", "objective": "PRODUCT_SALES", "product_source": "TIKTOK_SHOP"}, token=operator)
    assert (first.status_code, second.status_code) == (201, 201)
    body = second.json()
    assert {k: body[k] for k in ("name", "objective", "product_source", "status", "shop_id")} == {
        "name": "Shop", "objective": "PRODUCT_SALES", "product_source": "TIKTOK_SHOP", "status": "active",
        "shop_id": "SHOP-1"}
    listed = api.get(f"/advertisers/{adv.pk}/campaigns", token=role_token(adv, "analyst")).json()
    assert [c["name"] for c in listed] == ["Shop", "First"]
    assert listed[1] == first.json()


def test_campaign_list_shows_only_the_advertisers_own(api):
    adv, other = AdvertiserFactory(), AdvertiserFactory()
    mine = CampaignFactory(advertiser=adv)
    CampaignFactory(advertiser=other)
    listed = api.get(f"/advertisers/{adv.pk}/campaigns", token=role_token(adv, "analyst")).json()
    assert [c["id"] for c in listed] == [str(mine.pk)]


@pytest.mark.parametrize("body,code", [
    ({"name": "C", "objective": "WIN"}, "invalid_objective"),
    ({"name": "C", "objective": "REACH", "product_source": "MALL"}, "invalid_product_source"),
    ({"name": "", "objective": "REACH"}, "invalid_name"),
])
def test_campaign_bad_input_is_400(api, body, code):
    adv = AdvertiserFactory()
    response = api.post(f"/advertisers/{adv.pk}/campaigns", body, token=role_token(adv, "admin"))
    assert response.status_code == 400
    assert error_of(response)["code"] == code
    assert not Campaign.objects.exists()


def test_campaign_missing_objective_names_the_field(api):
    adv = AdvertiserFactory()
    response = api.post(f"/advertisers/{adv.pk}/campaigns", {"name": "C"}, token=role_token(adv, "admin"))
    assert response.status_code == 400
    assert error_of(response) == {"code": "missing_field", "message": "objective is required.", "field": "objective"}
