"""Credits through the portal API (SPEC R5–R8, R22): list, grant (idempotent), assign coupons,
transfer (always refused), withdraw."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing.models import LedgerTransaction, TxKind
from billing.spend import spend_record
from promotions.models import Credit, CreditStatus
from tests.api_helpers import api, error_of, role_token, staff  # noqa: F401
from tests.factories import AdvertiserFactory, CampaignFactory, grant

pytestmark = pytest.mark.django_db


def _grant(api, token, adv, **fields):
    body = {"kind": "free", "amount": "100.00", "reason": "welcome", "idempotency_key": "g-1", **fields}
    return api.post(f"/advertisers/{adv.pk}/credits", body, token=token)


def test_staff_grant_a_free_credit(api, staff):
    adv = AdvertiserFactory()
    response = _grant(api, staff, adv, valid_from="2030-01-01T00:00:00+00:00",
                      eligible_objectives=["TRAFFIC", "REACH"], eligible_product_source="TIKTOK_SHOP")
    assert response.status_code == 201
    body = response.json()
    assert body == {
        "id": body["id"], "advertiser_id": str(adv.pk), "kind": "free", "source": "managed", "amount": "100.00",
        "remaining": "100.00", "percent": None, "status": "active", "valid_from": "2030-01-01T00:00:00+00:00",
        "expires_at": "2030-04-01T00:00:00+00:00",  # 90 days by default (R5)
        "eligible_objectives": ["REACH", "TRAFFIC"], "eligible_product_source": "TIKTOK_SHOP", "campaign_ids": [],
    }
    credit = Credit.objects.get(pk=int(body["id"]))
    assert credit.reason == "welcome" and credit.granted_by.is_staff
    assert LedgerTransaction.objects.filter(kind=TxKind.CREDIT_ISSUE, advertiser=adv).count() == 1
    assert api.get(f"/advertisers/{adv.pk}/balances", token=staff).json()["credit_balance"] == "100.00"


def test_staff_grant_a_discount(api, staff):
    adv = AdvertiserFactory()
    body = _grant(api, staff, adv, kind="discount", amount="100.00", percent="50").json()
    assert (body["kind"], body["amount"], body["remaining"], body["percent"]) == ("discount", "100.00", "100.00",
                                                                                  "50.00")
    balances = api.get(f"/advertisers/{adv.pk}/balances", token=staff).json()
    assert (balances["discount_cap_remaining"], balances["credit_balance"]) == ("100.00", "0.00")


def test_grant_replay_returns_the_first_credit_and_books_once(api, staff):
    adv = AdvertiserFactory()
    first = _grant(api, staff, adv)
    again = _grant(api, staff, adv)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert Credit.objects.count() == 1
    assert LedgerTransaction.objects.filter(kind=TxKind.CREDIT_ISSUE).count() == 1


def test_grant_key_reused_with_other_content_is_409(api, staff):
    adv = AdvertiserFactory()
    _grant(api, staff, adv)
    response = _grant(api, staff, adv, amount="150.00")
    assert response.status_code == 409
    assert error_of(response)["code"] == "idempotency_key_reused"
    assert Credit.objects.count() == 1


@pytest.mark.parametrize("fields,code", [
    ({"amount": "10.001"}, "invalid_amount"),
    ({"amount": "-10"}, "invalid_amount"),
    ({"amount": "0"}, "invalid_amount"),
    ({"kind": "cash"}, "invalid_kind"),
    ({"kind": "discount"}, "invalid_percent"),
    ({"kind": "discount", "percent": "150"}, "invalid_percent"),
    ({"percent": "10"}, "invalid_percent"),
    ({"reason": " "}, "invalid_reason"),
    ({"valid_from": "2030-02-01T00:00:00+00:00", "expires_at": "2030-01-01T00:00:00+00:00"}, "invalid_validity"),
    ({"expires_at": "2030-01-01"}, "invalid_timestamp"),
    ({"eligible_objectives": ["FAME"]}, "invalid_objective"),
    ({"eligible_objectives": "TRAFFIC"}, "invalid_objective"),
    ({"eligible_product_source": "MALL"}, "invalid_product_source"),
])
def test_grant_bad_input_is_400_and_issues_nothing(api, staff, fields, code):
    adv = AdvertiserFactory()
    response = _grant(api, staff, adv, **fields)
    assert response.status_code == 400
    assert error_of(response)["code"] == code
    assert not Credit.objects.exists()
    assert not LedgerTransaction.objects.filter(kind=TxKind.CREDIT_ISSUE).exists()


def test_grant_needs_a_key_and_a_reason(api, staff):
    adv = AdvertiserFactory()
    response = api.post(f"/advertisers/{adv.pk}/credits", {"kind": "free", "amount": "5.00", "reason": "r"},
                        token=staff)
    assert response.status_code == 400
    assert error_of(response)["message"] == "idempotency_key is required."
    assert not Credit.objects.exists()


def test_credit_list_newest_first_with_what_remains(api, spend_event):
    adv = AdvertiserFactory()
    camp = CampaignFactory(advertiser=adv)
    older = grant(adv, "free", "30.00")
    newer = grant(adv, "assignable", "20.00")
    newer.campaigns.set([camp])
    spend_record(event=spend_event(camp, "25.00"))  # coupon 20, then free credit 5
    listed = api.get(f"/advertisers/{adv.pk}/credits", token=role_token(adv, "analyst")).json()
    assert [c["id"] for c in listed] == [str(newer.pk), str(older.pk)]
    assert [(c["remaining"], c["status"]) for c in listed] == [("0.00", "used_up"), ("25.00", "active")]
    assert listed[0]["campaign_ids"] == [str(camp.pk)]
    assert listed[0]["kind"] == "assignable"


def test_credit_list_shows_only_the_advertisers_own(api):
    adv, other = AdvertiserFactory(), AdvertiserFactory()
    grant(other, "free", "30.00")
    assert api.get(f"/advertisers/{adv.pk}/credits", token=role_token(adv, "admin")).json() == []


# --- assign --------------------------------------------------------------------------------------

def test_admin_assigns_a_coupon_and_can_reassign_it(api):
    adv = AdvertiserFactory()
    a, b = CampaignFactory(advertiser=adv), CampaignFactory(advertiser=adv)
    coupon = grant(adv, "assignable", "20.00")
    admin = role_token(adv, "admin")
    response = api.post(f"/credits/{coupon.pk}/assign", {"campaign_ids": [str(a.pk), b.pk]}, token=admin)
    assert response.status_code == 200
    assert response.json()["campaign_ids"] == sorted([str(a.pk), str(b.pk)], key=int)
    response = api.post(f"/credits/{coupon.pk}/assign", {"campaign_ids": [str(b.pk)]}, token=admin)
    assert response.json()["campaign_ids"] == [str(b.pk)]
    assert list(coupon.campaigns.values_list("pk", flat=True)) == [b.pk]


def test_only_a_coupon_can_be_assigned(api):
    adv = AdvertiserFactory()
    camp = CampaignFactory(advertiser=adv)
    free = grant(adv, "free", "20.00")
    response = api.post(f"/credits/{free.pk}/assign", {"campaign_ids": [str(camp.pk)]}, token=role_token(adv, "admin"))
    assert response.status_code == 422
    assert error_of(response)["code"] == "credit_not_assignable"
    assert not free.campaigns.exists()


@pytest.mark.parametrize("ids", ["not-a-list", ["abc"]])
def test_assign_needs_a_list_of_ids(api, ids):
    adv = AdvertiserFactory()
    coupon = grant(adv, "assignable", "20.00")
    response = api.post(f"/credits/{coupon.pk}/assign", {"campaign_ids": ids}, token=role_token(adv, "admin"))
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_campaign_ids"


def test_a_coupon_cannot_be_assigned_to_another_advertisers_campaign(api):
    adv = AdvertiserFactory()
    theirs = CampaignFactory()
    coupon = grant(adv, "assignable", "20.00")
    response = api.post(f"/credits/{coupon.pk}/assign", {"campaign_ids": [str(theirs.pk)]},
                        token=role_token(adv, "admin"))
    assert response.status_code == 400
    assert error_of(response)["code"] == "unknown_campaign"
    assert not coupon.campaigns.exists()


# --- transfer ------------------------------------------------------------------------------------

@pytest.mark.parametrize("who", ["staff", "admin", "finance"])
def test_transfer_is_always_refused(api, staff, who):
    adv = AdvertiserFactory()
    credit = grant(adv, "free", "20.00")
    token = staff if who == "staff" else role_token(adv, who)
    before = LedgerTransaction.objects.count()
    for path in (f"/credits/{credit.pk}/transfer", "/credits/999999/transfer"):
        response = api.post(path, {"to_advertiser_id": "1"}, token=token)
        assert response.status_code == 422
        assert error_of(response)["code"] == "credit_not_transferable"
    assert LedgerTransaction.objects.count() == before
    assert Credit.objects.select_related("ledger_account").get(pk=credit.pk).remaining == Decimal("20.00")


def test_transfer_without_a_token_is_401(api, db):
    response = api.post("/credits/1/transfer", {})
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"


# --- withdraw ------------------------------------------------------------------------------------

def test_staff_withdraw_what_is_left_of_a_credit(api, staff, spend_event):
    adv = AdvertiserFactory()
    camp = CampaignFactory(advertiser=adv)
    credit = grant(adv, "free", "20.00")
    spend_record(event=spend_event(camp, "5.00"))
    response = api.post(f"/credits/{credit.pk}/withdraw", {"reason": "policy violation"}, token=staff)
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["remaining"], response.json()["amount"]) == (
        "withdrawn", "0.00", "20.00")
    withdrawal = LedgerTransaction.objects.get(kind=TxKind.CREDIT_WITHDRAW)
    assert withdrawal.amount == Decimal("15.00")
    assert api.get(f"/advertisers/{adv.pk}/balances", token=staff).json()["credit_balance"] == "0.00"
    # a second withdrawal is refused
    again = api.post(f"/credits/{credit.pk}/withdraw", {"reason": "again"}, token=staff)
    assert again.status_code == 422 and error_of(again)["code"] == "credit_not_active"
    assert Credit.objects.get(pk=credit.pk).status == CreditStatus.WITHDRAWN


def test_withdraw_needs_a_reason(api, staff):
    credit = grant(AdvertiserFactory(), "free", "20.00")
    response = api.post(f"/credits/{credit.pk}/withdraw", {"reason": ""}, token=staff)
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_reason"
    assert Credit.objects.get(pk=credit.pk).status == CreditStatus.ACTIVE


def test_granted_dates_round_trip(api, staff):
    # dates round-trip exactly as granted
    adv = AdvertiserFactory()
    valid_from = (timezone.now() - timedelta(days=10)).replace(microsecond=0)
    expires_at = valid_from + timedelta(days=3)
    body = _grant(api, staff, adv, valid_from=valid_from.isoformat(), expires_at=expires_at.isoformat()).json()
    assert (body["valid_from"], body["expires_at"]) == (valid_from.isoformat(), expires_at.isoformat())
