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
    # today's spend stays today even in the first minutes after midnight
    midnight = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    spend(team.campaign, "50.00", occurred_at=max(now - timedelta(minutes=5), midnight))
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
    assert n_large <= 13  # 12, and one for the runway's last 24 hours of spend (R49)


# --- per billing method (R24, R26, R27) ----------------------------------------------------------
from datetime import datetime  # noqa: E402
from zoneinfo import ZoneInfo  # noqa: E402

from billing.autopay import payment_method_set  # noqa: E402
from billing.invoicing import issue_monthly_invoices  # noqa: E402
from billing.models import Bill, BillKind, BillStatus  # noqa: E402
from portal.models import Advertiser  # noqa: E402
from tests.billing.bill_pages_helpers import (  # noqa: E402
    DECLINE,
    GOOD,
    auto_team,
    bill_rows_only,
    invoiced_team,
    last_month_invoice,
    threshold_bill,
)

LA = ZoneInfo("America/Los_Angeles")


def test_automatic_shows_threshold_progress_next_bill_date_and_card(db, fast_password_hashing):
    # given an automatic account in Los Angeles: threshold 180, 132.40 accrued, billed on Dec 1
    t = auto_team(threshold="180.00", tz="America/Los_Angeles")
    Advertiser.objects.filter(pk=t.advertiser.pk).update(next_bill_at=datetime(2030, 12, 1, tzinfo=LA))
    spend(t.campaign, "132.40")
    # when the finance member opens the overview
    html = overview(t, "finance").content.decode()
    panel = element(html, "automatic-panel")
    # then the bar shows accrued against the threshold, with the bill date in the account's zone
    assert re.search(r'<progress class="meter" max="180\.0+" value="132\.40+"', panel)
    assert ("$132.40 of $180.00 — billed when it reaches the threshold or on Dec 1, whichever comes first"
            in text(panel))
    assert "Current bill $132.40" in text(panel)
    assert "Next bill date Dec 1, 2030 · 00:00 America/Los_Angeles" in text(element(panel, "next-bill-date"))
    # and the card on file with a link to change it
    card = element(panel, "card-on-file")
    assert "Card on file •••• 4242 · expires 12/30 Change card" in text(card)
    assert f'href="/a/{t.advertiser.pk}/payments/payment-method/"' in card
    assert "Payment failed" not in text(html) and "Cash balance" not in text(html)


def test_automatic_analyst_sees_the_card_without_a_change_link(db, fast_password_hashing):
    t = auto_team()
    card = element(overview(t, "analyst").content.decode(), "card-on-file")
    assert "•••• 4242" in text(card) and "Change card" not in text(card)


def test_automatic_full_bar_when_accrued_reached_the_threshold(db, fast_password_hashing):
    t = auto_team(threshold="50.00")
    spend(t.campaign, "60.00")  # the threshold job has not run yet
    panel = element(overview(t).content.decode(), "automatic-panel")
    assert '<progress class="meter meter-full"' in panel
    assert "$60.00 of $50.00" in text(panel)


def test_failed_bill_shows_the_payment_failed_banner_with_pay_now(db, fast_password_hashing):
    # given a threshold bill the card declined
    t = auto_team(card=DECLINE, threshold="50.00")
    bill = threshold_bill(t)
    # when the admin opens the overview
    html = overview(t).content.decode()
    banner = element(html, "payment-failed")
    # then a red banner says the payment failed, why, and offers Pay now for that bill
    assert 'class="alert alert-error banner pay-banner" role="alert"' in banner
    assert text(banner).startswith("Payment failed — Pay now. $50.00 is unpaid.")
    assert f"Threshold bill {bill.seq} · $50.00 Your card was declined." in text(banner)
    form = re.search(r'<form method="post" action="([^"]+)"[^>]*>.*?</form>', banner, re.S)
    assert form.group(1) == f"/a/{t.advertiser.pk}/payments/bills/{bill.pk}/pay/"
    assert 'name="next" value="/a/%d/payments/"' % t.advertiser.pk in form.group(0)
    assert "Pay now" in form.group(0) and "csrfmiddlewaretoken" in form.group(0)
    assert "Pay now charges the card ending 0002. Change card" in text(banner)
    assert "$50.00" in text(element(html, "unpaid-bills"))


def test_pay_now_from_the_banner_clears_it(db, fast_password_hashing):
    t = auto_team(card=DECLINE, threshold="50.00")
    bill = threshold_bill(t)
    payment_method_set(advertiser=t.advertiser, card_number=GOOD, expiry="12/30")
    url = f"/a/{t.advertiser.pk}/payments/"
    response = t.admin.post(f"{url}bills/{bill.pk}/pay/", {"next": url}, follow=True)
    assert response.redirect_chain == [(url, 302)]
    body = text(response)
    assert f"Threshold bill {bill.seq} paid: $50.00 charged to the card ending 4242." in body
    assert 'id="payment-failed"' not in response.content.decode()


def test_analyst_sees_the_banner_without_pay_now(db, fast_password_hashing):
    t = auto_team(card=DECLINE, threshold="50.00")
    threshold_bill(t)
    banner = element(overview(t, "analyst").content.decode(), "payment-failed")
    assert text(banner).startswith("Payment failed. $50.00 is unpaid.")
    assert "<form" not in banner and "Pay now" not in text(banner)
    assert "An admin or finance member can pay it or change the card." in text(banner)


def test_banner_lists_five_bills_and_counts_the_rest(db, fast_password_hashing):
    t = auto_team()
    bill_rows_only(t.advertiser, 7, failed=7)
    banner = element(overview(t).content.decode(), "payment-failed")
    assert banner.count('class="pay-item"') == 5
    assert "$350.00 is unpaid on 7 bills." in text(banner)
    assert "2 more in Bills & invoices" in text(banner) and f"/a/{t.advertiser.pk}/payments/bills/" in banner


def test_monthly_invoicing_shows_credit_line_next_invoice_and_open_invoices(db, fast_password_hashing):
    # given an invoiced account in Tokyo: a 1,000 line, 300 invoiced last month, 45.50 spent since
    t = invoiced_team(limit="1000.00")
    inv = last_month_invoice(t, amount="300.00")
    spend(t.campaign, "45.50")
    # when the admin opens the overview
    html = overview(t).content.decode()
    panel = element(html, "invoicing-panel")
    # then the credit line bar, the next invoice date (the next local 1st) and the open invoices
    assert re.search(r'<progress class="meter" max="1000\.0+" value="345\.50+"', panel)
    assert "Credit line used $345.50" in text(panel)
    assert "$345.50 of $1,000.00 used — $654.50 available" in text(panel)
    now = datetime.now(t.advertiser.tz)
    first = (now.replace(day=1) + timedelta(days=32)).replace(day=1)
    assert (f"Next invoice {first:%b} 1, {first:%Y} · for {now:%B}'s spend, due 30 days later"
            in text(element(panel, "next-invoice-date")))
    assert "Open invoices $300.00 · 1 invoice Bills & invoices" in text(element(panel, "open-invoices"))
    assert "Card for paying invoices •••• 4242" in text(element(panel, "card-on-file"))
    assert 'id="payment-failed"' not in html  # open, not yet due
    assert inv.status == BillStatus.OPEN


def test_overdue_invoice_shows_the_banner(db, fast_password_hashing):
    t = invoiced_team()
    inv = last_month_invoice(t, amount="300.00")
    issue_monthly_invoices(at=inv.due_at + timedelta(hours=1))
    inv.refresh_from_db()
    assert inv.status == BillStatus.OVERDUE
    banner = element(overview(t, "finance").content.decode(), "payment-failed")
    due = inv.due_at.astimezone(t.advertiser.tz)
    assert text(banner).startswith("Invoice overdue — Pay now. $300.00 is unpaid.")
    assert f"Invoice {inv.number} · $300.00 was due {due:%b} {due.day}, {due:%Y}" in text(banner)
    assert "Delivery is paused until an overdue invoice is paid." in text(banner)
    assert f'action="/a/{t.advertiser.pk}/payments/bills/{inv.pk}/pay/"' in banner


def test_invoicing_over_the_line_explains_the_pause(db, fast_password_hashing):
    t = invoiced_team(limit="100.00")
    spend(t.campaign, "130.00")
    html = overview(t).content.decode()
    assert "Campaigns paused — credit line used up." in text(element(html, "arrears-warning"))
    assert "$30.00" in text(element(html, "arrears-warning"))
    assert "the line is used up" in text(element(html, "invoicing-panel"))


def test_manual_account_has_no_billing_panel_or_banner(team):
    html = overview(team).content.decode()
    assert 'id="automatic-panel"' not in html and 'id="invoicing-panel"' not in html
    assert 'id="payment-failed"' not in html
    assert f'href="/a/{team.advertiser.pk}/payments/billing-method/"' in html


def test_prepaid_cash_still_shown_after_moving_to_automatic(db, fast_password_hashing):
    from billing.switching import billing_method_switch

    t = make_team()
    deposit(t.advertiser, "75.00")
    payment_method_set(advertiser=t.advertiser, card_number=GOOD, expiry="12/30")
    billing_method_switch(advertiser=t.advertiser, billing_method="automatic")
    cash = text(element(overview(t).content.decode(), "cash-balance"))
    assert cash == "Cash balance $75.00 Prepaid: used after your ad credit, before anything is billed"


@pytest.mark.parametrize("kind,make", [
    (BillKind.THRESHOLD, lambda: auto_team()),
    (BillKind.MONTHLY_INVOICE, lambda: invoiced_team()),
])
def test_overview_queries_are_the_same_with_2_or_30_bills(db, fast_password_hashing, kind, make):
    small, large = make(), make()
    bill_rows_only(small.advertiser, 2, kind=kind)
    bill_rows_only(large.advertiser, 30, kind=kind, failed=7)
    n_small = _queries(small.client("admin"), f"/a/{small.advertiser.pk}/payments/")
    n_large = _queries(large.client("admin"), f"/a/{large.advertiser.pk}/payments/")
    assert n_small == n_large
    assert n_large <= 16
    assert Bill.objects.filter(advertiser=large.advertiser).count() == 30
