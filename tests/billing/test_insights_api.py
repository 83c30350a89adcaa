"""GET /advertisers/{id}/insights and GET /advertisers/{id}/charges/{event_id}/explanation
(API.md, SPEC R47–R50): shapes, values and the role matrix."""

from datetime import timedelta

import pytest
from django.utils import timezone

from billing.spend import spend_record
from promotions.credits import credit_assign
from tests.api_helpers import api, error_of, world  # noqa: F401
from tests.api_matrix import Endpoint, matrix

pytestmark = pytest.mark.django_db

PAYMENTS = ("staff", "admin", "finance", "analyst", "bc_admin", "bc_finance")  # BC members act on its accounts
NOT_PAYMENTS = ("operator",)


def _insights_check(w, body):
    assert set(body) == {"runway", "credits", "enrollments"}
    assert set(body["runway"]) == {"funds_pause_at", "limit_reached_at", "pace_per_day"}
    (credit,) = body["credits"]  # the world's unassigned coupon: pays nothing, all of it lapses
    assert credit == {"credit_id": str(w.coupon.pk), "pace_per_day": "0.00", "used_up_at": None,
                      "lapse_amount": "50.00"}
    assert body["enrollments"] == []


def _explanation_check(w, body):
    assert body["allocation"]["cash"] == "10.00"
    # the world's charge occurred in 2024, before its coupon was valid
    assert body["credits"] == [{"credit_id": str(w.coupon.pk), "paid": "0.00", "reason": "not_valid_yet"}]


ENDPOINTS = [
    Endpoint("insights", "get", lambda w: f"/advertisers/{w.adv.pk}/insights", allowed=PAYMENTS,
             forbidden=NOT_PAYMENTS, check=_insights_check),
    Endpoint("explanation", "get", lambda w: f"/advertisers/{w.adv.pk}/charges/{w.event_id}/explanation",
             allowed=PAYMENTS, forbidden=NOT_PAYMENTS, check=_explanation_check),
]

(test_no_token_is_401, test_right_role_passes, test_wrong_role_is_403_and_changes_nothing,
 test_other_advertisers_user_gets_404) = matrix(ENDPOINTS)


def test_an_unknown_charge_is_404_in_the_apis_shape(api, world):  # noqa: F811
    response = api.get(f"/advertisers/{world.adv.pk}/charges/nope/explanation", token=world.tokens["admin"])
    assert response.status_code == 404 and error_of(response)["code"] == "not_found"
    # another advertiser's charge is unknown here too
    other = api.get(f"/advertisers/{world.other_adv.pk}/charges/{world.event_id}/explanation",
                    token=world.tokens["other"])
    assert other.status_code == 404 and error_of(other)["code"] == "not_found"


def test_the_charge_endpoint_still_answers_its_allocation(api, world):  # noqa: F811
    # the explanation's route sits before /charges/{event_id}: that one still works, slashes and all
    response = api.get(f"/advertisers/{world.adv.pk}/charges/{world.event_id}", token=world.tokens["admin"])
    assert response.status_code == 200 and response.json()["cash"] == "10.00"


def test_insights_values_at_the_current_pace(api, world):  # noqa: F811
    # given the coupon assigned and $24 of spend on its campaign an hour ago (it pays it)
    w = world
    credit_assign(credit=w.coupon, campaign_ids=[w.campaign.pk])
    spend_record(event={"event_id": "api-pace", "advertiser_id": w.adv.pk, "campaign_id": w.campaign.pk,
                        "amount": "24.00", "currency": "USD",
                        "occurred_at": (timezone.now() - timedelta(hours=1)).isoformat()})
    body = api.get(f"/advertisers/{w.adv.pk}/insights", token=w.tokens["finance"]).json()
    # then the runway's pace is $24 a day and the funds ($26 of coupon + $490 cash) last 21.5 days
    assert body["runway"]["pace_per_day"] == "24.00" and body["runway"]["limit_reached_at"] is None
    assert body["runway"]["funds_pause_at"] is not None
    (credit,) = body["credits"]
    # the coupon's pace is its campaign's last 7 days ($24; the world's own charge is from 2024),
    # shown rounded down: $3.428… a day, used up well before it expires
    assert credit["pace_per_day"] == "3.42" and credit["lapse_amount"] == "0.00"
    assert credit["used_up_at"] is not None
    # and the explanation of that charge names the coupon as paid
    x = api.get(f"/advertisers/{w.adv.pk}/charges/api-pace/explanation", token=w.tokens["analyst"]).json()
    assert x["credits"] == [{"credit_id": str(w.coupon.pk), "paid": "24.00", "reason": "paid"}]
    assert x["allocation"]["coupons"] == [{"credit_id": str(w.coupon.pk), "amount": "24.00"}]
