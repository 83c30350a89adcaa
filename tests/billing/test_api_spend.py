"""Spend ingestion through `POST /spend` and `GET /advertisers/{id}/charges/{event_id}`
(SPEC R4, R10, R11, R15): all-or-nothing batches, idempotency by event_id, allocations."""

from datetime import timedelta

import pytest
from django.utils import timezone

from billing.models import SpendEvent
from tests.api_helpers import api, error_of, ledger_counts, role_token, staff  # noqa: F401
from tests.factories import AdvertiserFactory, CampaignFactory, deposit, grant

pytestmark = pytest.mark.django_db

NO_ALLOCATION = {"discount": "0.00", "discount_credit_id": None, "coupons": [], "credits": [], "cash": "0.00",
                 "accrued": "0.00", "credit_line": "0.00", "arrears": "0.00"}


@pytest.fixture
def funded(db):
    adv = AdvertiserFactory()
    camp = CampaignFactory(advertiser=adv)
    deposit(adv, "1000.00")
    return camp


def post_spend(api, token, *events):
    return api.post("/spend", {"events": list(events)}, token=token)


def test_spend_is_applied_and_answers_the_allocation(api, staff, funded, spend_event):
    credit = grant(funded.advertiser, "free", "4.00")
    response = post_spend(api, staff, spend_event(funded, "12.50", event_id="e-1"))
    assert response.status_code == 201
    assert response.json() == {"results": [{"event_id": "e-1", "status": "applied", "allocation": {
        **NO_ALLOCATION, "credits": [{"credit_id": str(credit.pk), "amount": "4.00"}], "cash": "8.50"}}]}
    balances = api.get(f"/advertisers/{funded.advertiser_id}/balances", token=staff).json()
    assert (balances["cash_balance"], balances["credit_balance"]) == ("991.50", "0.00")


def test_spend_replay_is_a_duplicate_with_the_same_allocation_and_books_nothing(api, staff, funded, spend_event):
    grant(funded.advertiser, "free", "4.00")
    event = spend_event(funded, "12.50")
    first = post_spend(api, staff, event).json()["results"][0]
    before = ledger_counts()
    # when the same event is sent again, alone and inside a batch
    again = post_spend(api, staff, event)
    batch = post_spend(api, staff, spend_event(funded, "1.00", event_id="new-1"), event)
    # then it is reported as a duplicate with the first allocation, and booked once
    assert again.status_code == 201
    assert again.json()["results"][0] == {**first, "status": "duplicate"}
    assert [r["status"] for r in batch.json()["results"]] == ["applied", "duplicate"]
    assert batch.json()["results"][1]["allocation"] == first["allocation"]
    assert ledger_counts() == (before[0] + 1, before[1] + 1)  # only new-1
    assert api.get(f"/advertisers/{funded.advertiser_id}/balances", token=staff).json()["cash_balance"] == "990.50"


def test_same_event_id_with_other_content_is_409_and_nothing_is_recorded(api, staff, funded, spend_event):
    post_spend(api, staff, spend_event(funded, "10.00", event_id="dup"))
    before = ledger_counts()
    response = post_spend(api, staff, spend_event(funded, "5.00", event_id="fresh"),
                          spend_event(funded, "11.00", event_id="dup"))
    assert response.status_code == 409
    assert error_of(response)["code"] == "event_id_conflict"
    assert error_of(response)["index"] == 1
    assert ledger_counts() == before
    assert not SpendEvent.objects.filter(event_id="fresh").exists()


def test_an_event_repeated_in_one_batch_with_other_content_is_409(api, staff, funded, spend_event):
    response = post_spend(api, staff, spend_event(funded, "1.00", event_id="x"),
                          spend_event(funded, "2.00", event_id="x"))
    assert response.status_code == 409
    assert ledger_counts() == (0, 1)  # just the deposit


BAD = [
    ("three decimals", {"amount": "10.005"}, "invalid_amount", "more decimal places than USD allows"),
    ("negative", {"amount": "-10.00"}, "invalid_amount", "must be positive"),
    ("zero", {"amount": "0.00"}, "invalid_amount", "greater than zero"),
    ("other currency", {"currency": "EUR"}, "currency_mismatch", "not the account's currency USD"),
    ("unknown campaign", {"campaign_id": "999999"}, "unknown_campaign", "campaign 999999 does not exist"),
    ("unknown advertiser", {"advertiser_id": "999999"}, "unknown_advertiser", "advertiser 999999 does not exist"),
    ("no offset", {"occurred_at": "2024-01-01T00:00:00"}, "invalid_timestamp", "no UTC offset"),
    ("future", {"occurred_at": (timezone.now() + timedelta(days=1)).isoformat()}, "invalid_timestamp", "future"),
    ("bad kind", {"kind": "tip"}, "invalid_event", "kind must be ad_spend or fee"),
    ("missing amount", {"amount": None}, "invalid_event", "amount is required"),
    ("float with too many places", {"amount": 10.005}, "invalid_amount", "more decimal places"),
]


@pytest.mark.parametrize("change,code,fragment", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_a_bad_event_is_400_with_its_index_and_nothing_is_recorded(api, staff, funded, spend_event, change, code,
                                                                   fragment):
    before = ledger_counts()
    response = post_spend(api, staff, {**spend_event(funded, "10.00"), **change})
    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["index"]) == (code, 0)
    assert fragment in error["message"] and error["message"].startswith("events[0]: ")
    assert ledger_counts() == before


def test_a_campaign_of_another_advertiser_is_refused(api, staff, funded, spend_event):
    stranger = CampaignFactory()
    response = post_spend(api, staff, {**spend_event(funded, "10.00"), "campaign_id": str(stranger.pk)})
    assert response.status_code == 400
    assert error_of(response)["code"] == "unknown_campaign"


def test_a_bad_third_event_fails_the_batch_and_the_first_two_are_not_recorded(api, staff, funded, spend_event):
    before = ledger_counts()
    good = [spend_event(funded, "1.00", event_id="ok-1"), spend_event(funded, "2.00", event_id="ok-2")]
    response = post_spend(api, staff, *good, spend_event(funded, "3.001", event_id="bad-3"))
    assert response.status_code == 400
    assert error_of(response)["index"] == 2
    assert error_of(response)["message"].startswith("events[2]: ")
    assert ledger_counts() == before
    assert not SpendEvent.objects.filter(event_id__in=["ok-1", "ok-2"]).exists()
    assert api.get(f"/advertisers/{funded.advertiser_id}/balances", token=staff).json()["cash_balance"] == "1000.00"


def test_an_event_that_is_not_an_object_is_400_with_its_index(api, staff, funded, spend_event):
    response = post_spend(api, staff, spend_event(funded, "1.00"), "not-an-event")
    assert response.status_code == 400
    assert error_of(response)["index"] == 1
    assert "events[1]" in error_of(response)["message"]
    assert ledger_counts() == (0, 1)


def test_malformed_json_is_400_and_nothing_is_recorded(api, staff, funded):
    before = ledger_counts()
    response = api.post("/spend", raw='{"events": [{"event_id": "a",', token=staff)
    assert response.status_code == 400
    assert error_of(response)["code"] == "malformed_json"
    assert ledger_counts() == before


@pytest.mark.parametrize("body,code", [({"events": []}, "invalid_events"), ({}, "missing_field"),
                                       ({"events": "e1"}, "invalid_field")])
def test_events_must_be_a_non_empty_list(api, staff, body, code):
    response = api.post("/spend", body, token=staff)
    assert response.status_code == 400
    assert error_of(response)["code"] == code
    assert "events" in error_of(response)["message"]


def test_1001_events_are_refused_and_nothing_is_recorded(api, staff, funded, spend_event):
    before = ledger_counts()
    events = [spend_event(funded, "0.01") for _ in range(1001)]
    response = post_spend(api, staff, *events)
    assert response.status_code == 400
    assert error_of(response)["code"] == "too_many_events"
    assert "at most 1000" in error_of(response)["message"]
    assert ledger_counts() == before


def test_1000_events_are_accepted_in_one_request(api, staff, funded, spend_event):
    events = [spend_event(funded, "0.01") for _ in range(1000)]
    response = post_spend(api, staff, *events)
    assert response.status_code == 201
    assert [r["status"] for r in response.json()["results"]] == ["applied"] * 1000
    assert api.get(f"/advertisers/{funded.advertiser_id}/balances", token=staff).json()["cash_balance"] == "990.00"


def test_spend_in_jpy_answers_whole_yen(api, staff, spend_event):
    adv = AdvertiserFactory(currency="JPY")
    camp = CampaignFactory(advertiser=adv)
    deposit(adv, "3000")
    response = post_spend(api, staff, spend_event(camp, "1200"))
    assert response.json()["results"][0]["allocation"]["cash"] == "1200"
    assert response.json()["results"][0]["allocation"]["arrears"] == "0"
    refused = post_spend(api, staff, spend_event(camp, "12.5"))
    assert refused.status_code == 400 and "JPY allows (0)" in error_of(refused)["message"]


def test_spend_across_advertisers_in_one_batch(api, staff, funded, spend_event):
    other = CampaignFactory()
    response = post_spend(api, staff, spend_event(funded, "5.00"), spend_event(other, "7.00"))
    a, b = response.json()["results"]
    assert a["allocation"]["cash"] == "5.00"
    assert b["allocation"]["arrears"] == "7.00"  # the other account has no cash (R13)
    assert api.get(f"/advertisers/{other.advertiser_id}/balances", token=staff).json()["arrears"] == "7.00"


# --- charges -------------------------------------------------------------------------------------

def test_charge_answers_the_same_allocation_as_spend(api, staff, funded, spend_event):
    adv = funded.advertiser
    discount = grant(adv, "discount", "100.00", percent="50")
    coupon = grant(adv, "assignable", "3.00")
    coupon.campaigns.set([funded])
    free = grant(adv, "free", "2.00")
    result = post_spend(api, staff, spend_event(funded, "20.00", event_id="ev/with:odd chars")).json()["results"][0]
    assert result["allocation"] == {
        **NO_ALLOCATION, "discount": "10.00", "discount_credit_id": str(discount.pk),
        "coupons": [{"credit_id": str(coupon.pk), "amount": "3.00"}],
        "credits": [{"credit_id": str(free.pk), "amount": "2.00"}], "cash": "5.00"}
    # when finance asks how the charge was paid
    response = api.get(f"/advertisers/{adv.pk}/charges/ev/with:odd chars", token=role_token(adv, "finance"))
    assert response.status_code == 200
    assert response.json() == result["allocation"]
