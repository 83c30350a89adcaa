"""The account spending limit (SPEC R43; API.md `PUT /advertisers/{id}/spending-limit`; decision 0032).

Spend that happened is always recorded; at the limit the account's campaigns go to `paused_limit`
and resume when the limit is raised or removed, or the month turns (account time zone).
"""

import threading
from datetime import datetime, timedelta, timezone as dt_timezone
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing.limits import limit_view, spend_counted, spending_limit_set, spending_limits_roll
from billing.models import SpendEvent
from billing.spend import spend_record, spend_record_batch
from portal.models import Advertiser, AuditLog, Campaign, CampaignStatus, Notification
from tests.api_helpers import Api, api, world  # noqa: F401 — fixtures
from tests.api_matrix import Endpoint, matrix
from tests.factories import AdvertiserFactory, CampaignFactory, deposit, token_for

D = Decimal
_n = iter(range(10**9))


def charge(adv, camp, amount, *, at=None, kind="ad_spend", event_id=None):
    return spend_record(event={
        "event_id": event_id or f"lim-{next(_n)}", "advertiser_id": adv.pk, "campaign_id": camp.pk,
        "amount": amount, "currency": adv.currency, "kind": kind,
        "occurred_at": (at or timezone.now() - timedelta(minutes=1)).isoformat(),
    })


def statuses(adv):
    return sorted(Campaign.objects.filter(advertiser=adv).values_list("status", flat=True))


def reached(adv):
    return Notification.objects.filter(advertiser=adv, kind="spending_limit_reached").count()


@pytest.fixture
def account(db):
    adv = AdvertiserFactory()
    camps = [CampaignFactory(advertiser=adv), CampaignFactory(advertiser=adv)]
    deposit(adv, "1000.00", key=f"lim-dep-{adv.pk}")
    return adv, camps


@pytest.mark.django_db
def test_r43_reaching_a_monthly_limit_pauses_the_campaigns_once_and_spend_is_still_recorded(account):
    adv, (camp, other) = account
    view = spending_limit_set(advertiser=adv, amount="100.00", period="monthly")
    assert (view.amount, view.spent, view.remaining) == (D("100.00"), D(0), D("100.00"))
    charge(adv, camp, "60.00")
    assert statuses(adv) == ["active", "active"]
    charge(adv, camp, "50.00")  # 110: past the limit — booked in full, delivery pauses
    assert statuses(adv) == ["paused_limit", "paused_limit"]
    assert reached(adv) == 1
    charge(adv, other, "7.00")  # a late charge of a paused campaign is still recorded
    adv.refresh_from_db()
    assert adv.limit_spent == D("117.00") == spend_counted(advertiser=adv, period="monthly", at=timezone.now())[0]
    assert reached(adv) == 1  # told once per crossing, not per charge
    assert SpendEvent.objects.filter(advertiser=adv).count() == 3
    view = limit_view(adv)
    assert (view.spent, view.remaining) == (D("117.00"), D(0))


@pytest.mark.django_db
def test_r43_raising_or_removing_the_limit_resumes_and_lowering_it_below_the_spend_pauses_at_once(account):
    adv, (camp, _) = account
    charge(adv, camp, "80.00")
    spending_limit_set(advertiser=adv, amount="50.00", period="lifetime")  # counts what was spent: reached
    assert statuses(adv) == ["paused_limit", "paused_limit"]
    assert reached(adv) == 1
    view = spending_limit_set(advertiser=adv, amount="200.00")
    assert statuses(adv) == ["active", "active"]
    assert (view.period, view.spent, view.remaining) == ("lifetime", D("80.00"), D("120.00"))
    assert Notification.objects.filter(advertiser=adv, kind="campaigns_resumed").count() == 1
    charge(adv, camp, "130.00")
    assert statuses(adv) == ["paused_limit", "paused_limit"]
    view = spending_limit_set(advertiser=adv, amount=None)
    assert statuses(adv) == ["active", "active"]
    assert (view.amount, view.remaining, view.spent) == (None, None, D("210.00"))
    assert AuditLog.objects.filter(advertiser=adv, action="spending_limit").count() == 3


@pytest.mark.django_db
def test_r43_fees_are_not_ad_spend_and_do_not_count(account):
    adv, (camp, _) = account
    spending_limit_set(advertiser=adv, amount="10.00", period="lifetime")
    charge(adv, camp, "25.00", kind="fee")
    adv.refresh_from_db()
    assert adv.limit_spent == 0 and statuses(adv) == ["active", "active"]


@pytest.mark.django_db
def test_r43_campaigns_paused_for_funds_resume_to_the_limit_pause_when_the_limit_is_also_reached(db):
    adv = AdvertiserFactory()
    camp = CampaignFactory(advertiser=adv)
    deposit(adv, "30.00", key="lim-small")
    spending_limit_set(advertiser=adv, amount="40.00", period="lifetime")
    charge(adv, camp, "45.00")  # runs out of cash (15 in arrears) and past the limit in one booking
    assert statuses(adv) == ["paused_limit"]
    deposit(adv, "100.00", key="lim-topup")  # the arrears are paid: the limit still holds them
    assert statuses(adv) == ["paused_limit"]
    assert not Notification.objects.filter(advertiser=adv, kind="campaigns_resumed").exists()
    spending_limit_set(advertiser=adv, amount=None)
    assert statuses(adv) == ["active"]


@pytest.mark.django_db
def test_r43_raising_the_limit_of_an_account_out_of_funds_leaves_it_paused_for_funds(db):
    adv = AdvertiserFactory()
    camp = CampaignFactory(advertiser=adv)
    deposit(adv, "20.00", key="lim-tiny")
    spending_limit_set(advertiser=adv, amount="5.00", period="lifetime")
    charge(adv, camp, "30.00")  # 10 in arrears and past the limit
    spending_limit_set(advertiser=adv, amount="500.00")
    assert statuses(adv) == ["paused_funds"]  # the other reason holds: add funds to resume
    deposit(adv, "50.00", key="lim-tiny-2")
    assert statuses(adv) == ["active"]


@pytest.mark.django_db
def test_r43_a_monthly_limit_turns_with_the_month_in_a_far_time_zone(db, monkeypatch):
    # Kiritimati is UTC+14: its February starts at 10:00 UTC on 31 January
    adv = AdvertiserFactory(timezone_name="Pacific/Kiritimati")
    camp = CampaignFactory(advertiser=adv)
    deposit(adv, "1000.00", key="lim-far")
    jan_late = datetime(2026, 1, 31, 9, 30, tzinfo=dt_timezone.utc)  # 23:30 on 31 Jan there
    monkeypatch.setattr(timezone, "now", lambda: jan_late)
    spending_limit_set(advertiser=adv, amount="100.00", period="monthly")
    charge(adv, camp, "100.00", at=jan_late - timedelta(minutes=5))
    assert statuses(adv) == ["paused_limit"]

    feb_early = datetime(2026, 1, 31, 10, 30, tzinfo=dt_timezone.utc)  # 00:30 on 1 Feb there, still Jan in UTC
    monkeypatch.setattr(timezone, "now", lambda: feb_early)
    adv.refresh_from_db()
    assert limit_view(adv, at=jan_late).spent == D("100.00")
    assert limit_view(adv, at=feb_early).spent == 0  # a new month there: nothing counted yet
    assert limit_view(adv, at=feb_early).resets_at == datetime(2026, 3, 1, tzinfo=adv.tz)
    assert spending_limits_roll(at=feb_early) == {"resumed_accounts": 1, "campaigns": 1}
    assert statuses(adv) == ["active"]
    assert spending_limits_roll(at=feb_early) == {"resumed_accounts": 0, "campaigns": 0}  # twice: nothing

    charge(adv, camp, "9.00", at=jan_late)  # a late January charge counts for nothing in February
    charge(adv, camp, "30.00", at=feb_early - timedelta(minutes=10))  # 00:20 on 1 Feb there
    adv.refresh_from_db()
    assert (adv.limit_month.isoformat(), adv.limit_spent) == ("2026-02-01", D("30.00"))
    assert adv.limit_spent == spend_counted(advertiser=adv, period="monthly", at=feb_early)[0]
    assert statuses(adv) == ["active"]


@pytest.mark.django_db
def test_r43_the_booked_count_equals_the_spend_events_for_a_mixed_batch(account):
    adv, (camp, other) = account
    spending_limit_set(advertiser=adv, amount="1000.00", period="monthly")
    now = timezone.now()
    events = [{"event_id": f"mix-{i}", "advertiser_id": adv.pk, "campaign_id": (camp, other)[i % 2].pk,
               "amount": f"{1 + i % 5}.{i % 100:02d}", "currency": "USD", "kind": ("ad_spend", "fee")[i % 3 == 0],
               "occurred_at": (now - timedelta(minutes=i)).isoformat()} for i in range(40)]
    spend_record_batch(events=events)
    adv.refresh_from_db()
    assert adv.limit_spent == spend_counted(advertiser=adv, period="monthly", at=now)[0] > 0


@pytest.mark.django_db
def test_r43_no_limit_costs_no_statement_and_a_limit_adds_none(account):
    adv, (camp, _) = account
    charge(adv, camp, "1.00")  # warm

    def cost():
        with CaptureQueriesContext(connection) as captured:
            charge(adv, camp, "1.00")
        return len([q for q in captured.captured_queries if "SAVEPOINT" not in q["sql"]])

    without = cost()
    spending_limit_set(advertiser=adv, amount="500.00", period="monthly")
    assert cost() == without


@pytest.mark.django_db(transaction=True)
def test_r43_eight_threads_on_one_account_pause_once_lose_no_spend_and_count_every_charge():
    adv = AdvertiserFactory()
    camps = [CampaignFactory(advertiser=adv) for _ in range(3)]
    deposit(adv, "5000.00", key="lim-threads")
    spending_limit_set(advertiser=adv, amount="300.00", period="monthly")
    barrier, errors = threading.Barrier(8), []

    def work(t):
        try:
            barrier.wait(timeout=30)
            for k in range(10):
                spend_record_batch(events=[{
                    "event_id": f"thr-{t}-{k}-{j}", "advertiser_id": adv.pk, "campaign_id": camps[(t + j) % 3].pk,
                    "amount": "2.50", "currency": "USD",
                    "occurred_at": (timezone.now() - timedelta(seconds=30)).isoformat()} for j in range(2)])
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert errors == []
    adv.refresh_from_db()
    charged = sum(SpendEvent.objects.filter(advertiser=adv).values_list("amount", flat=True))
    assert SpendEvent.objects.filter(advertiser=adv).count() == 160  # nothing lost
    assert adv.limit_spent == charged == D("400.00")
    assert statuses(adv) == ["paused_limit"] * 3
    assert reached(adv) == 1  # paused once


# --- the API ----------------------------------------------------------------------------------

def test_r43_put_sets_the_limit_and_answers_what_it_counts(world_api):
    api, w, token = world_api
    r = api.put(f"/advertisers/{w.adv.pk}/spending-limit", {"amount": "25.00", "period": "lifetime"}, token=token)
    assert r.status_code == 200, r.content
    assert r.json() == {"amount": "25.00", "period": "lifetime", "spent": "10.00", "remaining": "15.00",
                        "resets_at": None}
    r = api.put(f"/advertisers/{w.adv.pk}/spending-limit", {"amount": None}, token=token)
    assert (r.json()["amount"], r.json()["remaining"], r.json()["spent"]) == (None, None, "10.00")
    r = api.get(f"/advertisers/{w.adv.pk}/spending-limit", token=token)
    assert r.status_code == 200 and r.json()["amount"] is None


@pytest.mark.parametrize("body, code", [
    ({"amount": "-5.00", "period": "monthly"}, "invalid_amount"),
    ({"amount": "5.001", "period": "monthly"}, "invalid_amount"),
    ({"amount": "abc"}, "invalid_amount"),
    ({"amount": "5.00", "period": "weekly"}, "invalid_period"),
    ({"period": "monthly"}, None),  # amount is required (null removes)
])
def test_r43_bad_input_is_refused_by_name_and_nothing_is_recorded(world_api, body, code):
    api, w, token = world_api
    r = api.put(f"/advertisers/{w.adv.pk}/spending-limit", body, token=token)
    assert r.status_code == 400, r.content
    if code:
        assert r.json()["error"]["code"] == code, r.json()
    w.adv.refresh_from_db()
    assert w.adv.spending_limit is None
    assert not AuditLog.objects.filter(action="spending_limit").exists()


@pytest.fixture
def world_api(world):
    return Api(), world, world.tokens["admin"]


def _limit_set(w):
    w.adv.refresh_from_db()
    assert w.adv.spending_limit == D("20.00")


ENDPOINTS = [
    Endpoint("set the spending limit", "put", lambda w: f"/advertisers/{w.adv.pk}/spending-limit",
             body=lambda w: {"amount": "20.00", "period": "monthly"},
             allowed=("admin", "staff"), forbidden=("finance", "operator", "analyst"),
             check=lambda w, body: _limit_set(w)),
    Endpoint("read the spending limit", "get", lambda w: f"/advertisers/{w.adv.pk}/spending-limit",
             allowed=("admin", "finance", "analyst", "staff"), forbidden=("operator",),
             check=lambda w, body: body["amount"] is None and body["period"] == "monthly"),
]

(test_no_token_is_401, test_right_role_passes, test_wrong_role_is_403_and_changes_nothing,
 test_other_advertisers_user_gets_404) = matrix(ENDPOINTS)
