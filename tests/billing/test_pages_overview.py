"""Tools → Payments → Overview: balances, arrears warning, 30-day spend chart, recent activity
(SPEC R7, R13, R14) — at a constant number of queries."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from promotions.credits import credit_assign
from tests.factories import deposit, grant
from tests.pages_helpers import element, fast_password_hashing, logged_in, make_team, spend, team, text  # noqa: F401

pytestmark = pytest.mark.django_db


def overview(team, role="admin"):
    return team.client(role).get(f"/a/{team.advertiser.pk}/payments/")


def test_balances_shown_to_the_owner(team):
    # given cash 200, a free credit of 30, a 50% discount capped at 40, and a 60 charge
    adv = team.advertiser
    deposit(adv, "200.00")
    grant(adv, "free", "30.00")
    grant(adv, "discount", "40.00", percent="50")
    spend(team.campaign, "60.00")  # discount 30, free credit 30, cash 0
    # when the admin opens the overview
    response = overview(team)
    html = response.content.decode()
    # then each balance card shows what the ledger holds
    assert response.status_code == 200
    assert "Cash balance $200.00" in text(element(html, "cash-balance"))
    assert "Ad credit $0.00" in text(element(html, "credit-balance"))
    assert "Discount cap left $10.00" in text(element(html, "discount-left"))
    assert "Arrears $0.00 Nothing owed" in text(element(html, "arrears"))
    assert "Campaigns paused — add funds" not in text(response)


def test_arrears_show_a_paused_campaigns_warning(team):
    # given a charge larger than the cash
    deposit(team.advertiser, "20.00")
    spend(team.campaign, "75.50")
    # when the finance member opens the overview
    html = overview(team, "finance").content.decode()
    # then the arrears are shown with a clear warning that links to Add funds
    warning = element(html, "arrears-warning")
    assert "Campaigns paused — add funds." in text(warning)
    assert "$55.50" in text(warning)
    assert f'href="/a/{team.advertiser.pk}/payments/add-funds/"' in warning
    assert "Arrears $55.50 Campaigns paused until paid" in text(element(html, "arrears"))


def test_analyst_sees_the_warning_without_an_add_funds_link(team):
    deposit(team.advertiser, "20.00")
    spend(team.campaign, "30.00")
    html = overview(team, "analyst").content.decode()
    warning = element(html, "arrears-warning")
    assert "Campaigns paused — add funds." in text(warning) and "/add-funds/" not in warning
    assert "an admin or finance member can add funds" in text(warning)


def test_recent_activity_lists_the_last_ten_transactions(team):
    # given a deposit, a credit, then twelve charges of 10.00 … 21.00
    adv = team.advertiser
    deposit(adv, "500.00")
    grant(adv, "free", "3.00")
    base = timezone.now()
    for i in range(12):
        spend(team.campaign, f"{10 + i}.00", occurred_at=base + timedelta(seconds=i + 1))
    # when the admin opens the overview
    body = text(overview(team))
    # then the ten newest are listed, newest first, and older ones are left to Transactions
    activity = body[body.index("Recent activity"):]
    assert activity.count("Ad spend Spring sale") == 10
    assert activity.index("−$21.00") < activity.index("−$12.00")
    assert "−$11.00" not in activity and "−$10.00" not in activity
    assert "Deposit" not in activity and "Promotion issued" not in activity
    assert "All transactions" in activity


def test_coupon_and_cash_split_is_shown_on_the_row(team):
    adv = team.advertiser
    deposit(adv, "100.00")
    coupon = grant(adv, "assignable", "3.00")
    credit_assign(credit=coupon, campaign_ids=[team.campaign.pk])
    grant(adv, "discount", "5.00", percent="50")
    grant(adv, "free", "2.00")
    spend(team.campaign, "20.00")  # discount 5 (cap), coupon 3, credit 2, cash 10
    body = text(overview(team))
    assert "Ad spend Spring sale −$20.00 Discount $5.00 · Coupon $3.00 · Credit $2.00 · Cash $10.00" in body
    assert "Deposit — +$100.00 Deposit via API $100.00" in body


def test_spend_chart_has_thirty_days_split_by_funding(team):
    # given spend today (part credit) and 3 days ago (own money), and spend 40 days ago
    adv = team.advertiser
    deposit(adv, "1000.00")
    now = timezone.now()
    grant(adv, "free", "25.00", valid_from=now - timedelta(days=60))
    spend(team.campaign, "40.00", occurred_at=now - timedelta(days=40))  # 25 credit + 15 cash: outside the chart
    spend(team.campaign, "100.00", occurred_at=now - timedelta(days=3))
    spend(team.campaign, "50.00", occurred_at=now - timedelta(minutes=5))
    # when the overview is rendered
    html = overview(team).content.decode()
    chart = element(html, "spend-chart")
    # then it is an inline SVG with one column per day of the last 30
    assert chart.startswith("<svg") and chart.count('<g class="bar"') == 30
    assert len(re.findall(r'class="bar-own"', chart)) == 2
    assert len(re.findall(r'class="bar-credit"', chart)) == 0  # the credit was used up 40 days ago
    today = timezone.localdate()
    three_ago = today - timedelta(days=3)
    assert f"{three_ago:%b} {three_ago.day}: $0.00 credit, $100.00 own money" in chart
    assert f"{today:%b} {today.day}: $0.00 credit, $50.00 own money" in chart
    # and the legend totals cover only the last 30 days
    assert "Last 30 days · $150.00 in all" in text(html)
    assert "Own money $150.00" in text(html) and "Paid by credit $0.00" in text(html)


def test_spend_chart_bars_split_credit_and_own_money(team):
    adv = team.advertiser
    deposit(adv, "100.00")
    grant(adv, "free", "30.00")
    spend(team.campaign, "80.00")  # 30 credit, 50 cash
    chart = element(overview(team).content.decode(), "spend-chart")
    credit = re.search(r'<rect class="bar-credit" x="[\d.]+" y="([\d.]+)" width="[\d.]+" height="([\d.]+)"', chart)
    own = re.search(r'<rect class="bar-own" x="[\d.]+" y="([\d.]+)" width="[\d.]+" height="([\d.]+)"', chart)
    # own money sits on top of credit, and the heights are in proportion 30 : 50
    assert float(own.group(1)) + float(own.group(2)) == pytest.approx(float(credit.group(1)))
    assert float(credit.group(2)) / float(own.group(2)) == pytest.approx(30 / 50, rel=0.01)
    # the y axis is labelled in round steps up to the tallest bar (80 → 0, 20, 40, 60, 80)
    labels = re.findall(r'<text class="axis" x="[\d.]+" y="[\d.]+" text-anchor="end"[^>]*>([^<]+)</text>', chart)
    assert labels == ["$0", "$20", "$40", "$60", "$80"]
    assert "<script" not in chart


def test_overview_without_activity(team):
    body = text(overview(team))
    assert "No ad spend in the last 30 days." in body
    assert "No transactions yet." in body


def test_automatic_payment_account_shows_the_current_bill(db, fast_password_hashing):
    t = make_team(billing_method="automatic")
    spend(t.campaign, "12.34")
    body = text(t.client("admin").get(f"/a/{t.advertiser.pk}/payments/"))
    assert "Current bill $12.34" in body and "Cash balance" not in body
    assert "Add funds" not in body  # no deposits on automatic payment


def test_overview_in_another_currency_uses_its_minor_unit(db, fast_password_hashing):
    t = make_team(currency="JPY")
    deposit(t.advertiser, "25000")
    body = text(t.client("admin").get(f"/a/{t.advertiser.pk}/payments/"))
    assert "Cash balance ¥25,000" in body


def _queries(client, url) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def _activity(team, n: int):
    adv = team.advertiser
    deposit(adv, "5000.00", key=f"q-{n}")
    for i in range(n):
        kind = ("free", "assignable", "discount")[i % 3]
        credit = grant(adv, kind, "1.00", percent="10" if kind == "discount" else None)
        if kind == "assignable":
            credit_assign(credit=credit, campaign_ids=[team.campaign.pk])
        spend(team.campaign, "3.00", occurred_at=timezone.now() - timedelta(days=i % 20, minutes=1))


def test_overview_runs_the_same_queries_with_2_or_30_transactions_and_credits(db, fast_password_hashing):
    small, large = make_team(), make_team()
    _activity(small, 2)
    _activity(large, 30)
    n_small = _queries(small.client("admin"), f"/a/{small.advertiser.pk}/payments/")
    n_large = _queries(large.client("admin"), f"/a/{large.advertiser.pk}/payments/")
    assert n_small == n_large
    assert n_large <= 12
