"""Insight (SPEC R47, R49, R50) on hand-computed examples, and its constant query count."""

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing.autopay import threshold_set
from billing.insights import expiry_forecast, insights, ladder_pace, limit_reached_at, runway
from billing.spend import spend_record_batch
from billing.switching import billing_settings_set
from portal.models import Advertiser
from promotions.credits import credit_assign
from promotions.models import Enrollment, Program, Tier
from promotions.programs import program_create
from tests.factories import AdvertiserFactory, CampaignFactory, deposit, grant
from tests.promotions.promotions_helpers import bulk_credits, freeze

pytestmark = pytest.mark.django_db

D = Decimal
AT = timezone.now().replace(microsecond=0)


def charges(campaign, amounts_and_ages):
    """Book charges through the real spend service: [(amount, how long before AT)]."""
    adv = campaign.advertiser
    spend_record_batch(events=[
        {"event_id": f"ins-{campaign.pk}-{i}-{amount}", "advertiser_id": adv.pk, "campaign_id": campaign.pk,
         "amount": amount, "currency": adv.currency, "occurred_at": (AT - age).isoformat()}
        for i, (amount, age) in enumerate(amounts_and_ages)
    ])


def week_of(amount, days=7):
    """One charge of `amount` a day over the last `days` days."""
    return [(amount, timedelta(days=d, hours=1)) for d in range(days)]


@pytest.fixture
def account():
    adv = AdvertiserFactory(name="Forecast Co")
    deposit(adv, "5000.00", key="ins-dep")
    traffic = CampaignFactory(advertiser=adv, name="Always on", objective="TRAFFIC")
    reach = CampaignFactory(advertiser=adv, name="Brand reach", objective="REACH")
    return adv, traffic, reach


# --- R47 ---------------------------------------------------------------------------------------

def test_r47_a_credit_for_one_objective_is_paced_by_that_objectives_spend_only(account):
    adv, traffic, reach = account
    # given a $200 credit for REACH campaigns only, valid 10 more days
    credit = grant(adv, "free", "200.00", eligible_objectives=["REACH"], valid_from=AT - timedelta(days=30),
                   expires_at=AT + timedelta(days=10))
    # and, over the last 7 days, $10 a day on the REACH campaign (paid by the credit) and $100 a
    # day on the TRAFFIC one (it cannot pay)
    charges(reach, week_of("10.00"))
    charges(traffic, week_of("100.00"))
    (f,) = expiry_forecast(advertiser=adv, at=AT)
    # then its pace is $10 a day: $130 left, $100 used in the 10 days left, $30 lapses
    assert f.credit_id == credit.pk and f.remaining == D("130.00")
    assert f.pace_per_day == D("10")
    assert f.used_up_at is None and f.lapse_amount == D("30.00")
    assert f.campaigns == ["Brand reach"]


def test_r47_used_up_before_expiry_lapses_nothing(account):
    adv, _, reach = account
    grant(adv, "free", "200.00", eligible_objectives=["REACH"], valid_from=AT - timedelta(days=30),
          expires_at=AT + timedelta(days=20))
    charges(reach, week_of("10.00"))
    (f,) = expiry_forecast(advertiser=adv, at=AT)
    # $130 left at $10 a day: used up in 13 days, before the 20 it has
    assert f.used_up_at == AT + timedelta(days=13) and f.lapse_amount == 0 and not f.lapses


def test_r47_a_frozen_accounts_credit_pays_nothing_and_all_of_it_lapses(account):
    adv, traffic, _ = account
    grant(adv, "free", "80.00", valid_from=AT - timedelta(days=30), expires_at=AT + timedelta(days=5))
    charges(traffic, week_of("5.00"))  # $35 paid by the credit before the freeze
    freeze(adv)
    (f,) = expiry_forecast(advertiser=adv, at=AT)
    assert f.frozen and f.pace_per_day == 0 and f.used_up_at is None
    assert f.lapse_amount == f.remaining == D("45.00")


def test_r47_a_credit_not_valid_yet_starts_paying_at_valid_from(account):
    adv, traffic, _ = account
    charges(traffic, week_of("10.00"))  # paid by cash: the credit is not valid yet
    grant(adv, "free", "200.00", valid_from=AT + timedelta(days=2), expires_at=AT + timedelta(days=12))
    (f,) = expiry_forecast(advertiser=adv, at=AT)
    # $10 a day for the 10 days of its validity: $100 used, $100 lapses
    assert f.starts_at == AT + timedelta(days=2)
    assert f.pace_per_day == D("10") and f.lapse_amount == D("100.00") and f.used_up_at is None


def test_r47_a_discount_is_paced_by_its_percentage_of_the_charges(account):
    adv, traffic, _ = account
    disc = grant(adv, "discount", "100.00", percent="50", valid_from=AT - timedelta(days=30),
                 expires_at=AT + timedelta(days=30))
    charges(traffic, week_of("20.00"))  # 50% of $140 = $70 of the $100 cap used
    (f,) = expiry_forecast(advertiser=adv, at=AT)
    assert f.credit_id == disc.pk and f.remaining == D("30.00")
    assert f.pace_per_day == D("10")  # half of $20 a day
    assert f.used_up_at == AT + timedelta(days=3) and f.lapse_amount == 0


def test_r47_a_coupon_paces_only_its_assigned_campaigns(account):
    adv, traffic, reach = account
    coupon = grant(adv, "assignable", "50.00", valid_from=AT - timedelta(days=30), expires_at=AT + timedelta(days=4))
    charges(traffic, week_of("7.00"))
    (f,) = expiry_forecast(advertiser=adv, at=AT)
    assert f.pace_per_day == 0 and f.lapse_amount == D("50.00") and f.campaigns == []  # not assigned
    credit_assign(credit=coupon, campaign_ids=[reach.pk])
    (f,) = expiry_forecast(advertiser=adv, at=AT)
    assert f.pace_per_day == 0 and f.campaigns == ["Brand reach"]  # no spend on its campaign
    credit_assign(credit=coupon, campaign_ids=[traffic.pk])
    (f,) = expiry_forecast(advertiser=adv, at=AT)
    assert f.pace_per_day == 7 and f.lapse_amount == D("22.00")  # $7 a day for the 4 days left


# --- R49 ---------------------------------------------------------------------------------------

def test_r49_manual_campaigns_pause_when_credit_and_cash_run_out():
    adv = AdvertiserFactory()
    camp = CampaignFactory(advertiser=adv)
    deposit(adv, "500.00", key="m")
    grant(adv, "free", "100.00", valid_from=AT - timedelta(days=1))
    charges(camp, [("48.00", timedelta(hours=1))])  # paid by the credit: $52 left, $500 cash
    r = runway(advertiser=adv, at=AT)
    assert r.pace_per_day == D("48")
    assert r.funds_pause_at == AT + timedelta(days=11, hours=12)  # $552 at $48 a day: 11.5 days
    assert r.limit_reached_at is None
    # spend older than 24 hours sets no pace
    assert runway(advertiser=adv, at=AT + timedelta(days=2)).funds_pause_at is None


def test_r49_manual_in_arrears_is_paused_now():
    adv = AdvertiserFactory()
    camp = CampaignFactory(advertiser=adv)
    charges(camp, [("5.00", timedelta(hours=2))])  # no cash: arrears
    r = runway(advertiser=adv, at=AT)
    assert r.already_paused and r.funds_pause_at == AT


def test_r49_monthly_invoicing_pauses_when_the_credit_line_left_runs_out():
    adv = AdvertiserFactory(billing_method="monthly_invoice")
    billing_settings_set(advertiser=adv, credit_line_limit="1000.00")
    adv.refresh_from_db()
    camp = CampaignFactory(advertiser=adv)
    charges(camp, [("120.00", timedelta(hours=3)), ("120.00", timedelta(hours=20))])
    r = runway(advertiser=adv, at=AT)
    # $760 left on the line at $240 a day: 76 hours
    assert r.pace_per_day == D("240") and r.funds_pause_at == AT + timedelta(hours=76)


def test_r49_automatic_the_next_threshold_charge_falls_when_accrued_reaches_the_threshold():
    adv = AdvertiserFactory(billing_method="automatic")
    threshold_set(advertiser=adv, amount="180.00", reason="test")
    adv.refresh_from_db()
    camp = CampaignFactory(advertiser=adv)
    charges(camp, [("120.00", timedelta(hours=5))])
    r = runway(advertiser=adv, at=AT)
    # $60 to go at $120 a day: 12 hours
    assert r.funds_pause_at == AT + timedelta(hours=12) and not r.threshold_due


def _limited(tz: str, *, limit="1000.00", spent="900.00", month=date(2026, 1, 1), period="monthly"):
    return Advertiser(name="L", currency="USD", timezone=tz, spending_limit=D(limit), spending_limit_period=period,
                      limit_spent=D(spent), limit_month=month)


def test_r49_monthly_limit_in_kiritimati_resets_before_the_pace_reaches_it():
    # Pacific/Kiritimati is UTC+14: 31 Jan 08:00 UTC is 22:00 local, two hours before the reset
    adv = _limited("Pacific/Kiritimati")
    at = datetime(2026, 1, 31, 8, 0, tzinfo=UTC)
    # $100 left at $240 a day ($10 an hour) would take 10 hours: past the local month's end
    # (1 Feb 00:00 local = 31 Jan 10:00 UTC), so it is reached in February from zero: $1,000 at
    # $10 an hour, 100 hours after the reset
    assert limit_reached_at(advertiser=adv, at=at, ad_pace_per_day=D("240")) == datetime(2026, 2, 4, 14, 0, tzinfo=UTC)
    # the same account in UTC reaches it this month
    assert limit_reached_at(advertiser=_limited("UTC"), at=at, ad_pace_per_day=D("240")) == at + timedelta(hours=10)


def test_r49_monthly_limit_in_pago_pago_counts_its_own_month():
    # Pacific/Pago_Pago is UTC−11: 1 Feb 00:00 UTC is 31 Jan 13:00 there, so January's $900 counts
    # and the local month ends in 11 hours (1 Feb 11:00 UTC): the 10 hours fit
    adv = _limited("Pacific/Pago_Pago")
    at = datetime(2026, 2, 1, 0, 0, tzinfo=UTC)
    assert limit_reached_at(advertiser=adv, at=at, ad_pace_per_day=D("240")) == at + timedelta(hours=10)
    # in UTC it is February already: nothing counted yet, $1,000 to go
    assert limit_reached_at(advertiser=_limited("UTC"), at=at, ad_pace_per_day=D("240")) == at + timedelta(hours=100)


def test_r49_a_pace_that_never_reaches_a_monthly_limit_within_a_month_is_never():
    adv = _limited("Pacific/Kiritimati")
    at = datetime(2026, 1, 31, 8, 0, tzinfo=UTC)
    assert limit_reached_at(advertiser=adv, at=at, ad_pace_per_day=D("10")) is None
    # a lifetime limit is reached whatever the month
    life = _limited("Pacific/Kiritimati", period="lifetime")
    assert limit_reached_at(advertiser=life, at=at, ad_pace_per_day=D("10")) == at + timedelta(days=10)
    # reached already: now; no limit: never
    assert limit_reached_at(advertiser=_limited("UTC", spent="1000.00"), at=at, ad_pace_per_day=D("1")) == at
    assert limit_reached_at(advertiser=Advertiser(timezone="UTC"), at=at, ad_pace_per_day=D("1")) is None


def test_r49_runway_reads_the_limit_of_the_account():
    adv = AdvertiserFactory(timezone_name="Pacific/Kiritimati")
    camp = CampaignFactory(advertiser=adv)
    deposit(adv, "5000.00", key="l")
    charges(camp, [("48.00", timedelta(hours=1))])
    Advertiser.objects.filter(pk=adv.pk).update(spending_limit=D("100.00"), spending_limit_period="lifetime",
                                                limit_spent=D("52.00"))
    adv.refresh_from_db()
    r = runway(advertiser=adv, at=AT)
    assert r.limit_reached_at == AT + timedelta(days=1)  # $48 left at $48 a day


# --- R50 ---------------------------------------------------------------------------------------

def _program(name="Spend more", tiers=(("500.00", "50.00"), ("2000.00", "200.00"), ("6000.00", "900.00"))):
    return program_create(name=name, kind="new_advertiser", window_days=30,
                          tiers=[{"threshold": t, "reward": r} for t, r in tiers])


def test_r50_expected_tier_and_the_daily_spend_that_reaches_the_next():
    adv = AdvertiserFactory()
    e = Enrollment.objects.create(advertiser=adv, program=_program(), window_start=AT - timedelta(days=10),
                                  window_end=AT + timedelta(days=20), qualifying_spend=D("1000.00"))
    (p,) = ladder_pace(advertiser=adv, at=AT)
    # $100 a day so far: $3,000 by the window's end — the $2,000 tier; $6,000 needs $5,000 more in
    # 20 days, $250 a day
    assert p.enrollment_id == e.pk and p.pace_per_day == D("100")
    assert p.expected_tier_threshold == D("2000.00") and p.next_tier.threshold == D("6000.00")
    assert p.daily_needed_for_next == D("250.00")


def test_r50_the_pace_counts_only_own_money_as_the_ladder_does():
    adv = AdvertiserFactory()
    camp = CampaignFactory(advertiser=adv)
    deposit(adv, "1000.00", key="own")
    grant(adv, "free", "40.00", valid_from=AT - timedelta(days=2))
    Enrollment.objects.create(advertiser=adv, program=_program(), window_start=AT - timedelta(hours=2),
                              window_end=AT + timedelta(days=29, hours=22))
    charges(camp, [("100.00", timedelta(hours=1))])  # $40 by credit, $60 cash
    (p,) = ladder_pace(advertiser=adv, at=AT)
    # $60 in the first (at least one) day: $60 a day, $1,860 expected — the $500 tier
    assert p.pace_per_day == D("60") and p.expected_tier_threshold == D("500.00")
    assert p.daily_needed_for_next == D("64.85")  # ($2,000 − $60) / 29 days 22 hours = 64.846…, rounded up


def test_r50_closed_or_ended_enrollments_have_no_pace():
    adv = AdvertiserFactory()
    Enrollment.objects.create(advertiser=adv, program=_program("A"), window_start=AT - timedelta(days=40),
                              window_end=AT - timedelta(days=10), qualifying_spend=D("900"))
    Enrollment.objects.create(advertiser=adv, program=_program("B"), window_start=AT - timedelta(days=2),
                              window_end=AT + timedelta(days=28), status="closed")
    assert ladder_pace(advertiser=adv, at=AT) == []


# --- a constant number of queries --------------------------------------------------------------

def _busy(n: int):
    adv = AdvertiserFactory()
    camp = CampaignFactory(advertiser=adv)
    other = CampaignFactory(advertiser=adv, objective="REACH")
    deposit(adv, "5000.00", key=f"busy-{n}")
    bulk_credits(adv, n, campaign=camp)
    spend_record_batch(events=[
        {"event_id": f"busy-{n}-{i}", "advertiser_id": adv.pk, "campaign_id": (camp if i % 2 else other).pk,
         "amount": "0.50", "currency": "USD", "occurred_at": (AT - timedelta(minutes=10 + i)).isoformat()}
        for i in range(n)
    ])
    programs = Program.objects.bulk_create([Program(name=f"P{i}", kind="new_advertiser", window_days=30)
                                            for i in range(n)])
    Tier.objects.bulk_create([Tier(program=p, threshold=D(t), reward=D("5")) for p in programs for t in ("10", "50")])
    Enrollment.objects.bulk_create([Enrollment(advertiser=adv, program=p, window_start=AT - timedelta(days=1),
                                               window_end=AT + timedelta(days=29), qualifying_spend=D("3"))
                                    for p in programs])
    return adv


def _count(fn) -> tuple[int, object]:
    with CaptureQueriesContext(connection) as ctx:
        result = fn()
    return len(ctx.captured_queries), result


def test_the_selectors_cost_the_same_queries_with_10_or_1000_credits_charges_and_enrollments():
    small, large = _busy(10), _busy(1000)
    n_small, got_small = _count(lambda: insights(advertiser=small, at=AT))
    n_large, got_large = _count(lambda: insights(advertiser=large, at=AT))
    assert n_small == n_large <= 12
    assert len(got_large.credits) >= 900 and len(got_large.enrollments) == 1000
    assert len(got_small.enrollments) == 10
    assert got_large.runway.pace_per_day == D("500")  # 1000 charges of $0.50 in the last 24 hours
    for fn in (expiry_forecast, ladder_pace, runway):
        assert _count(lambda: fn(advertiser=small, at=AT))[0] == _count(lambda: fn(advertiser=large, at=AT))[0]


# --- where people look: the pages ----------------------------------------------------------------

from tests.pages_helpers import fast_password_hashing, make_team, text  # noqa: E402, F401


def _page_team(n_credits: int, n_charges: int):
    t = make_team(name="Acme Shoes")
    adv = t.advertiser
    deposit(adv, "20000.00", key=f"pg-{n_credits}")
    reach = CampaignFactory(advertiser=adv, name="Brand reach", objective="REACH")
    bulk_credits(adv, n_credits, campaign=t.campaign)
    spend_record_batch(events=[
        {"event_id": f"pg-{adv.pk}-{i}", "advertiser_id": adv.pk, "campaign_id": (t.campaign if i % 2 else reach).pk,
         "amount": "0.40", "currency": "USD", "occurred_at": (AT - timedelta(minutes=5 + i)).isoformat()}
        for i in range(n_charges)
    ])
    programs = Program.objects.bulk_create([Program(name="Ladder", kind="new_advertiser", window_days=30)])
    Tier.objects.bulk_create([Tier(program=programs[0], threshold=D(x), reward=D("5")) for x in ("2000", "6000")])
    Enrollment.objects.create(advertiser=adv, program=programs[0], window_start=AT - timedelta(days=10),
                              window_end=AT + timedelta(days=20), qualifying_spend=D("1000.00"))
    return t


def _page_queries(client, url, headers=None) -> tuple[int, str]:
    client.get(url, headers=headers or {})  # warm-up
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url, headers=headers or {})
    assert response.status_code == 200
    return len(ctx.captured_queries), response.content.decode()


@pytest.mark.parametrize("page", ["payments/promotions/", "payments/", "payments/transactions/?kind=charge"])
def test_the_pages_keep_their_query_count_with_10_or_1000_credits_and_charges(fast_password_hashing, page):
    small, large = _page_team(10, 10), _page_team(1000, 1000)
    n_small, _ = _page_queries(small.admin, f"/a/{small.advertiser.pk}/{page}")
    n_large, html = _page_queries(large.admin, f"/a/{large.advertiser.pk}/{page}")
    assert n_small == n_large, page
    shown = text(html)
    if page == "payments/promotions/":
        assert "At this pace" in shown and ("lapses on" in shown or "used up by" in shown)
        # $100 a day so far: $3,000 expected; ($6,000 − $1,000) over the ~20 days left (a little
        # less by the time the page is read)
        assert re.search(r"At this pace you reach the \$2,000\.00 tier; \$250\.0\d/day reaches \$6,000\.00", shown)
    elif page == "payments/":
        assert "Campaigns pause in about" in shown
    else:
        assert html.count('class="why-link"') == 50  # every charge row of the page


def test_promotions_shows_each_credits_forecast_in_words(fast_password_hashing):
    t = make_team(name="Acme Shoes")
    adv = t.advertiser
    deposit(adv, "5000.00", key="words")
    reach = CampaignFactory(advertiser=adv, name="Brand reach", objective="REACH")
    lapsing = grant(adv, "free", "200.00", eligible_objectives=["REACH"], valid_from=AT - timedelta(days=30),
                    expires_at=AT + timedelta(days=10))
    charges(reach, week_of("10.00"))
    soon_gone = grant(adv, "free", "15.00", eligible_objectives=["REACH"], valid_from=AT - timedelta(hours=1),
                      expires_at=AT + timedelta(days=30))
    html = t.client("analyst").get(f"/a/{adv.pk}/payments/promotions/").content.decode()
    from tests.pages_helpers import element

    lapse = text(element(html, f"forecast-{lapsing.pk}"))
    assert lapse.startswith("At this pace $") and "lapses on" in lapse and "campaign Brand reach could use it" in lapse
    assert "used up by" in text(element(html, f"forecast-{soon_gone.pk}"))


def test_the_why_link_opens_the_explainer_page_and_its_htmx_partial(fast_password_hashing):
    t = make_team(name="Acme Shoes")
    adv = t.advertiser
    deposit(adv, "100.00", key="why")
    coupon = grant(adv, "assignable", "5.00", valid_from=AT - timedelta(days=1))
    free = grant(adv, "free", "2.00", valid_from=AT - timedelta(days=1), eligible_objectives=["REACH"])
    credit_assign(credit=coupon, campaign_ids=[t.campaign.pk])
    charges(t.campaign, [("8.00", timedelta(minutes=3))])
    listing = t.client("finance").get(f"/a/{adv.pk}/payments/transactions/").content.decode()
    from billing.models import SpendEvent

    tx = SpendEvent.objects.get(advertiser=adv).transaction_id
    why = f"/a/{adv.pk}/payments/transactions/{tx}/why/"
    assert f'href="{why}" hx-get="{why}" hx-target="#charge-why"' in listing
    full = t.client("finance").get(why)
    partial = t.client("finance").get(why, headers={"HX-Request": "true"})
    assert full.status_code == partial.status_code == 200
    assert "<html" in full.content.decode() and "<html" not in partial.content.decode()
    shown = text(partial)
    assert "Coupon #%d $5.00 Paid $5.00 of this charge" % coupon.pk in shown
    assert "Free credit #%d $0.00 Did not pay Not for this campaign's objective" % free.pk in shown
    # the operator sees no payment data, another advertiser's admin nothing
    assert t.client("operator").get(why).status_code == 403
    from tests.pages_helpers import logged_in

    assert logged_in(t.outsider).get(why).status_code == 404
