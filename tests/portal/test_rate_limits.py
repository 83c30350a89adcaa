"""Rate limits per API token (portal/ratelimit.py, decision 0013): a fixed window in the cache,
429 on the portal API, code 42900 in TikTok's envelope on /open_api/v1.3/."""

import pytest
from django.test import Client, override_settings

from portal.ratelimit import RateLimited, parse_rate, token_hit
from tests.api_helpers import api, api_user, error_of, staff  # noqa: F401
from tests.factories import AdvertiserFactory, token_for

pytestmark = pytest.mark.django_db


@override_settings(API_RATE_LIMIT="3/minute")
def test_portal_api_answers_429_with_retry_after_once_over_the_limit(api, staff):
    adv = AdvertiserFactory()
    statuses = [api.get(f"/advertisers/{adv.pk}", token=staff).status_code for _ in range(3)]
    refused = api.get(f"/advertisers/{adv.pk}", token=staff, bearer=True)  # same token, other header
    assert statuses == [200, 200, 200]
    assert refused.status_code == 429
    error = error_of(refused)
    assert error["code"] == "rate_limited"
    assert "3 requests per 60 seconds" in error["message"]
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert error["retry_after"] == int(refused["Retry-After"])


@override_settings(API_RATE_LIMIT="2/minute")
def test_the_limit_is_per_token(api):
    adv = AdvertiserFactory()
    user = api_user(is_staff=True)
    first, second = token_for(user), token_for(user)
    assert [api.get(f"/advertisers/{adv.pk}", token=first).status_code for _ in range(3)] == [200, 200, 429]
    # another token, even of the same user, has its own window
    assert api.get(f"/advertisers/{adv.pk}", token=second).status_code == 200


@override_settings(API_RATE_LIMIT="1/minute")
def test_requests_without_a_valid_token_are_not_counted_and_stay_401(api, staff):
    adv = AdvertiserFactory()
    for _ in range(3):
        assert api.get(f"/advertisers/{adv.pk}", token="act_unknown").status_code == 401
    assert api.get(f"/advertisers/{adv.pk}", token=staff).status_code == 200
    assert api.get(f"/advertisers/{adv.pk}", token=staff).status_code == 429


@override_settings(API_RATE_LIMIT="2/minute")
def test_tiktok_surface_answers_its_envelope_with_42900(db):
    user = api_user(is_staff=True)
    raw = token_for(user)
    adv = AdvertiserFactory()
    client = Client()
    url = "/open_api/v1.3/advertiser/info/"
    params = {"advertiser_ids": f'["{adv.pk}"]'}
    answers = [client.get(url, params, headers={"Access-Token": raw}) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.json()["code"] for a in answers] == [0, 0, 42900]
    refused = answers[2].json()
    assert refused["data"] == {"error_code": "rate_limited"}
    assert refused["request_id"] == answers[2]["X-Request-Id"]
    assert 1 <= int(answers[2]["Retry-After"]) <= 60


@override_settings(API_RATE_LIMIT="2/minute")
def test_both_surfaces_share_one_counter_per_token(api, staff):
    adv = AdvertiserFactory()
    client = Client()
    tiktok = client.get("/open_api/v1.3/advertiser/info/", {"advertiser_ids": f'["{adv.pk}"]'},
                        headers={"Access-Token": staff})
    assert tiktok.json()["code"] == 0
    assert api.get(f"/advertisers/{adv.pk}", token=staff).status_code == 200
    assert api.get(f"/advertisers/{adv.pk}", token=staff).status_code == 429


@override_settings(API_RATE_LIMIT="2/minute")
def test_the_window_resets_at_the_next_minute(db):
    start = 1_800_000_000 - (1_800_000_000 % 60)  # a minute boundary
    token_hit("act_x", now=start + 1)
    token_hit("act_x", now=start + 30)
    with pytest.raises(RateLimited) as refused:
        token_hit("act_x", now=start + 50)
    assert refused.value.retry_after == 10
    token_hit("act_x", now=start + 60)  # a new window: allowed again


@pytest.mark.parametrize("rate, parsed", [("600/minute", (600, 60)), ("5/second", (5, 1)),
                                          ("1000/hours", (1000, 3600)), ("10/day", (10, 86400))])
def test_parse_rate(rate, parsed):
    assert parse_rate(rate) == parsed


@pytest.mark.parametrize("rate", ["600", "0/minute", "x/minute", "10/fortnight"])
def test_parse_rate_refuses_nonsense(rate):
    with pytest.raises(ValueError):
        parse_rate(rate)
