"""Tools → Payments → Transactions: the ledger as the advertiser reads it (SPEC R10, R14) —
labels, funding source, filters swapped in by htmx, pagination, CSV export, constant queries."""

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing.models import LedgerTransaction
from promotions.credits import credit_assign, credit_withdraw
from tests.factories import deposit, grant
from tests.pages_helpers import element, fast_password_hashing, logged_in, make_team, spend, team, text  # noqa: F401

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def url(team, query=""):
    return f"/a/{team.advertiser.pk}/payments/transactions/" + (f"?{query}" if query else "")


def csv_rows(response) -> list[dict]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


def test_rows_show_date_type_campaign_amount_and_funding(team):
    # given a deposit, a discount, a coupon on the campaign, a free credit and a charge using all
    adv = team.advertiser
    deposit(adv, "100.00")
    grant(adv, "discount", "5.00", percent="50")
    coupon = grant(adv, "assignable", "3.00")
    credit_assign(credit=coupon, campaign_ids=[team.campaign.pk])
    grant(adv, "free", "2.00")
    spend(team.campaign, "20.00")
    spend(team.campaign, "4.00", kind="fee")
    # when the analyst opens Transactions
    response = team.client("analyst").get(url(team))
    body = text(response)
    # then each row reads as the advertiser understands it
    assert response.status_code == 200
    assert "6 transactions" in body
    assert "Ad spend Spring sale −$20.00 Discount $5.00 · Coupon $3.00 · Credit $2.00 · Cash $10.00" in body
    assert "Fee Spring sale −$4.00 Cash $4.00" in body  # a fee is never paid by credit (R8)
    assert "Deposit — +$100.00 Deposit via API $100.00" in body
    assert "Promotion issued — +$3.00 Coupon $3.00" in body
    assert "Promotion issued — +$5.00 Discount $5.00" in body
    today = timezone.localdate()
    assert f"{today:%b} {today.day}, {today.year}" in body


def test_withdrawn_credit_and_arrears_are_labelled(team):
    adv = team.advertiser
    grant(adv, "free", "10.00")
    spend(team.campaign, "15.00")  # 10 credit, 5 owed
    grant(adv, "free", "7.00", key="w")
    credit_withdraw(credit=adv.credits.get(idempotency_key="w"), reason="policy")
    body = text(team.admin.get(url(team)))
    assert "Ad spend Spring sale −$15.00 Credit $10.00 · Owed (arrears) $5.00" in body
    assert "Promotion withdrawn — −$7.00 Credit $7.00" in body


def test_card_deposit_shows_the_card_last_four(team):
    from billing.topups import card_deposit_create

    card_deposit_create(advertiser=team.advertiser, amount="50.00", card_number="4242424242424242",
                        idempotency_key="k-1")
    assert "Deposit — +$50.00 Card ···· 4242 $50.00" in text(team.admin.get(url(team)))


def _history(team):
    """Deposit and charges on three different days."""
    now = timezone.now()
    deposit(team.advertiser, "1000.00")
    spend(team.campaign, "11.00", occurred_at=now - timedelta(days=10))
    spend(team.campaign, "22.00", occurred_at=now - timedelta(days=5))
    spend(team.campaign, "33.00", occurred_at=now - timedelta(minutes=2))
    return timezone.localdate()


def test_filter_by_type_and_date_range(team):
    today = _history(team)
    # when filtering by type
    body = text(team.admin.get(url(team, "kind=charge")))
    assert "3 transactions" in body and "Deposit —" not in body
    # when filtering by a date range that holds only the charge 5 days ago
    start, end = today - timedelta(days=6), today - timedelta(days=4)
    body = text(team.admin.get(url(team, f"date_from={start}&date_to={end}")))
    assert "1 transaction " in body and "−$22.00" in body and "−$11.00" not in body and "−$33.00" not in body
    # the filter form keeps the chosen values
    html = team.admin.get(url(team, f"date_from={start}&kind=charge")).content.decode()
    assert f'value="{start}"' in html and '<option value="charge" selected>' in html


def test_dates_are_local_to_the_advertiser(db, fast_password_hashing):
    # given an advertiser in Tokyo and a charge at 20:00 UTC (05:00 next day in Tokyo)
    t = make_team(timezone_name="Asia/Tokyo")
    deposit(t.advertiser, "100.00")
    at = (timezone.now() - timedelta(days=2)).replace(hour=20, minute=0, second=0, microsecond=0)
    spend(t.campaign, "9.00", occurred_at=at)
    local_day = (at + timedelta(hours=9)).date()
    # then the row shows the Tokyo date and time, and the Tokyo day filter finds it
    body = text(t.client("admin").get(f"/a/{t.advertiser.pk}/payments/transactions/?date_from={local_day}&date_to={local_day}"))
    assert "1 transaction " in body and "05:00" in body and f"{local_day:%b} {local_day.day}," in body
    # the htmx partial, rendered without the page around it, uses the same local time
    partial = text(t.client("admin").get(f"/a/{t.advertiser.pk}/payments/transactions/?kind=charge", headers=HTMX))
    assert "05:00" in partial and "20:00" not in partial
    before = local_day - timedelta(days=1)
    body = text(t.client("admin").get(f"/a/{t.advertiser.pk}/payments/transactions/?date_from={before}&date_to={before}"))
    assert "No transactions match these filters." in body


def test_bad_filter_is_reported_and_ignored(team):
    _history(team)
    body = text(team.admin.get(url(team, "date_from=2026-13-45&kind=nonsense")))
    assert "Enter a valid date." in body and "This filter is not applied." in body
    assert "4 transactions" in body
    today = timezone.localdate()
    body = text(team.admin.get(url(team, f"date_from={today}&date_to={today - timedelta(days=3)}")))
    assert "The end date is before the start date." in body


def test_htmx_request_returns_only_the_table(team):
    _history(team)
    # when htmx asks for the filtered list
    response = team.admin.get(url(team, "kind=deposit"), headers=HTMX)
    html = response.content.decode()
    # then only the table section comes back — no page shell, no filter form
    assert response.status_code == 200
    assert html.lstrip().startswith('<section id="tx-table"')
    assert "<html" not in html and "sidebar" not in html and "<form" not in html
    assert "1 transaction " in text(html) and "+$1,000.00" in html
    # the CSV link in the partial follows the filter
    assert f'href="/a/{team.advertiser.pk}/payments/transactions.csv?kind=deposit"' in html
    assert "HX-Request" in response["Vary"]
    # and the full page (what a history restore or a plain link gets) has the shell
    full = team.admin.get(url(team, "kind=deposit"), headers={**HTMX, "HX-History-Restore-Request": "true"})
    assert "<html" in full.content.decode()


def test_filter_form_and_links_work_with_and_without_htmx(team):
    html = team.admin.get(url(team)).content.decode()
    assert element(html, "tx-table").startswith('<section id="tx-table"')  # the partial, inline in the page
    assert 'hx-get="/a/{}/payments/transactions/"'.format(team.advertiser.pk) in html
    assert 'hx-target="#tx-table"' in html and 'hx-push-url="true"' in html
    assert 'action="/a/{}/payments/transactions/"'.format(team.advertiser.pk) in html  # plain GET form too


def test_pagination_fifty_per_page_keeps_the_filters(team):
    # given 120 charges
    deposit(team.advertiser, "10000.00")
    base = timezone.now() - timedelta(minutes=30)
    for i in range(120):
        spend(team.campaign, f"{i + 1}.00", occurred_at=base + timedelta(seconds=i))
    # when the first page of charges is shown
    page1 = team.admin.get(url(team, "kind=charge"))
    body, html = text(page1), page1.content.decode()
    # then it holds the 50 newest, and links to the next page with the same filter
    assert "120 transactions · page 1 of 3" in body
    assert body.count("Ad spend Spring sale") == 50
    assert "−$120.00" in body and "−$71.00" in body and "−$70.00" not in body
    assert 'href="?kind=charge&amp;page=2"' in html
    # and page 3 holds the 20 oldest, through htmx too
    page3 = team.admin.get(url(team, "kind=charge&page=3"), headers=HTMX)
    assert text(page3).count("Ad spend Spring sale") == 20 and "−$1.00" in text(page3)
    assert 'rel="prev"' in page3.content.decode() and 'rel="next"' not in page3.content.decode()


def test_csv_export_of_the_filtered_rows(team):
    # given a coupon-and-cash charge, an older charge and a deposit
    adv = team.advertiser
    today = _history(team)
    coupon = grant(adv, "assignable", "4.00")
    credit_assign(credit=coupon, campaign_ids=[team.campaign.pk])
    spend(team.campaign, "10.00", occurred_at=timezone.now())
    # when the charges of the last two days are exported
    response = team.client("finance").get(
        f"/a/{adv.pk}/payments/transactions.csv?kind=charge&date_from={today - timedelta(days=1)}"
    )
    # then the CSV holds exactly those charges with their funding split
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith(f'attachment; filename="transactions-{adv.pk}-')
    rows = csv_rows(response)
    assert [r["amount"] for r in rows] == ["-10.00", "-33.00"]
    newest = rows[0]
    assert newest["type"] == "Ad spend" and newest["campaign"] == "Spring sale" and newest["currency"] == "USD"
    assert (newest["coupon"], newest["cash"], newest["discount"]) == ("4.00", "6.00", "0.00")
    assert newest["funding_source"] == "coupon+cash"  # a code, not display text (decision 0028)
    assert int(newest["transaction_id"]) == LedgerTransaction.objects.filter(advertiser=adv, amount=Decimal("10")).get().pk
    # and without filters every transaction is exported
    everything = csv_rows(team.admin.get(f"/a/{adv.pk}/payments/transactions.csv"))
    assert len(everything) == LedgerTransaction.objects.filter(advertiser=adv).count() == 6


def test_csv_is_forbidden_to_operators_and_hidden_from_strangers(team):
    deposit(team.advertiser, "100.00")
    csv_url = f"/a/{team.advertiser.pk}/payments/transactions.csv"
    assert team.client("operator").get(csv_url).status_code == 403
    assert logged_in(team.outsider).get(csv_url).status_code == 404


def _queries(client, path, headers=None) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(path, headers=headers or {})
        if hasattr(response, "streaming_content"):
            b"".join(response.streaming_content)
        assert response.status_code == 200
    return len(ctx.captured_queries)


def _activity(team, n: int):
    adv = team.advertiser
    deposit(adv, "5000.00", key=f"tq-{n}")
    for i in range(n):
        kind = ("free", "assignable", "discount")[i % 3]
        credit = grant(adv, kind, "1.00", percent="10" if kind == "discount" else None)
        if kind == "assignable":
            credit_assign(credit=credit, campaign_ids=[team.campaign.pk])
        spend(team.campaign, "3.00")


@pytest.mark.parametrize("path,headers", [
    ("payments/transactions/", None),
    ("payments/transactions/?kind=charge", HTMX),
    ("payments/transactions.csv", None),
])
def test_same_queries_with_2_or_30_transactions(db, fast_password_hashing, path, headers):
    small, large = make_team(), make_team()
    _activity(small, 2)
    _activity(large, 30)
    n_small = _queries(small.client("admin"), f"/a/{small.advertiser.pk}/{path}", headers)
    n_large = _queries(large.client("admin"), f"/a/{large.advertiser.pk}/{path}", headers)
    assert n_small == n_large
    assert n_large <= 12


def test_automatic_payment_bill_and_card_payment_rows(db, fast_password_hashing):
    from billing.autopay import charge_thresholds, payment_method_set, threshold_set

    # given an automatic-payment account with a card on file that spends past its threshold
    t = make_team(billing_method="automatic")
    payment_method_set(advertiser=t.advertiser, card_number="4242424242424242", expiry="12/39")
    threshold_set(advertiser=t.advertiser, amount="50.00", reason="test")
    spend(t.campaign, "60.00")
    charge_thresholds()
    # when the admin opens Transactions
    body = text(t.client("admin").get(f"/a/{t.advertiser.pk}/payments/transactions/"))
    # then the spend went to the current bill, the bill is listed unsigned and the card paid it
    assert "Ad spend Spring sale −$60.00 Current bill $60.00" in body
    assert "Bill — $50.00 Current bill $50.00" in body
    assert "Payment — +$50.00 Card ···· 4242 $50.00" in body
    overview = text(t.client("admin").get(f"/a/{t.advertiser.pk}/payments/"))
    assert "Current bill $10.00" in overview
