"""The transactions CSV as a machine reads it (issue 13, decision 0028): `funding_source` is a code
(`cash`, `card`, `free_credit`, `coupon+cash`, ...), never display text; the card of a deposit or
payment has its own column; the waterfall columns agree with what the Transactions page shows; and
the export is one query however long the history, streamed."""

import csv
import io
import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing.history import CSV_HEADER, transaction_rows, transactions_query
from billing.models import LedgerTransaction
from promotions.credits import credit_assign, credit_withdraw
from tests.factories import deposit, grant
from tests.pages_helpers import fast_password_hashing, make_team, spend, team  # noqa: F401

pytestmark = pytest.mark.django_db

WATERFALL = ["discount", "coupon", "free_credit", "cash", "credit_line", "accrued", "arrears"]
PAGE_KEY = {"free_credit": "credit"}  # the page's name for free credit
SOURCE = re.compile(r"^(?:[a-z_]+(?:\+[a-z_]+)*)?$")


def export(client, advertiser, query="") -> list[dict]:
    response = client.get(f"/a/{advertiser.pk}/payments/transactions.csv" + (f"?{query}" if query else ""))
    assert response.status_code == 200 and response.streaming
    body = b"".join(response.streaming_content).decode()
    reader = csv.DictReader(io.StringIO(body))
    assert reader.fieldnames == CSV_HEADER
    return list(reader)


def test_columns_hold_machine_values(team):
    from billing.topups import card_deposit_create

    # given a card deposit, an API deposit, credit of every kind, charges paid by several sources,
    # a fee, a charge that runs into arrears and a withdrawn credit
    adv = team.advertiser
    card_deposit_create(advertiser=adv, amount="50.00", card_number="4242424242424242", idempotency_key="k-1")
    deposit(adv, "20.00")
    grant(adv, "discount", "5.00", percent="50")
    coupon = grant(adv, "assignable", "3.00")
    credit_assign(credit=coupon, campaign_ids=[team.campaign.pk])
    grant(adv, "free", "2.00")
    spend(team.campaign, "20.00")  # discount 5 (cap), coupon 3, free 2, cash 10
    spend(team.campaign, "4.00", kind="fee")
    spend(team.campaign, "70.00")  # cash 56 (what is left), owed 14
    grant(adv, "free", "7.00", key="w")
    credit_withdraw(credit=adv.credits.get(idempotency_key="w"), reason="policy")

    # when finance exports the transactions
    rows = export(team.client("finance"), adv)

    # then every column is a value, not display text
    assert len(rows) == LedgerTransaction.objects.filter(advertiser=adv).count() == 10
    for r in rows:
        assert SOURCE.match(r["funding_source"]), r
        assert re.fullmatch(r"\d{4}|", r["card_last4"]), r
        assert r["kind"] in {"deposit", "credit_issue", "credit_withdraw", "charge", "fee"}, r
        for column in ["amount", *WATERFALL]:
            Decimal(r[column])  # exact decimal strings
        assert "$" not in "".join(r.values()) and "·" not in "".join(r.values())
    by = lambda kind, amount: next(r for r in rows if r["kind"] == kind and r["amount"] == amount)  # noqa: E731
    card, api = by("deposit", "50.00"), by("deposit", "20.00")
    assert (card["type"], card["funding_source"], card["card_last4"]) == ("Deposit", "card", "4242")
    assert (api["funding_source"], api["card_last4"]) == ("api", "")
    mixed = by("charge", "-20.00")
    assert mixed["funding_source"] == "discount+coupon+free_credit+cash"
    assert [mixed[c] for c in WATERFALL] == ["5.00", "3.00", "2.00", "10.00", "0.00", "0.00", "0.00"]
    assert (mixed["type"], mixed["campaign"]) == ("Ad spend", "Spring sale")
    assert by("fee", "-4.00")["funding_source"] == "cash"
    owed = by("charge", "-70.00")
    assert (owed["funding_source"], owed["cash"], owed["arrears"]) == ("cash+arrears", "56.00", "14.00")
    issued = sorted((r["funding_source"], r["amount"]) for r in rows if r["kind"] == "credit_issue")
    assert issued == [("coupon", "3.00"), ("discount", "5.00"), ("free_credit", "2.00"), ("free_credit", "7.00")]
    withdrawn = by("credit_withdraw", "-7.00")
    assert (withdrawn["funding_source"], withdrawn["free_credit"]) == ("free_credit", "7.00")


def test_card_payment_of_a_bill_names_the_card(db, fast_password_hashing):
    from billing.autopay import charge_thresholds, payment_method_set, threshold_set

    # given an automatic-payment account whose card paid a threshold bill
    t = make_team(billing_method="automatic")
    payment_method_set(advertiser=t.advertiser, card_number="4242424242424242", expiry="12/39")
    threshold_set(advertiser=t.advertiser, amount="50.00", reason="test")
    spend(t.campaign, "60.00")
    charge_thresholds()
    rows = {r["kind"]: r for r in export(t.client("admin"), t.advertiser)}
    # then the spend went to the current bill, the bill moved it, and the card paid it
    assert (rows["charge"]["funding_source"], rows["charge"]["accrued"]) == ("accrued", "60.00")
    assert (rows["bill"]["funding_source"], rows["bill"]["amount"]) == ("accrued", "50.00")
    assert (rows["payment"]["funding_source"], rows["payment"]["card_last4"], rows["payment"]["amount"]) == (
        "card", "4242", "50.00")


def test_credit_line_spend(db, fast_password_hashing):
    from billing.switching import billing_settings_set

    t = make_team(billing_method="monthly_invoice")
    billing_settings_set(advertiser=t.advertiser, credit_line_limit="500.00", reason="test")
    spend(t.campaign, "12.50")
    (row,) = export(t.client("admin"), t.advertiser)
    assert (row["funding_source"], row["credit_line"], row["amount"]) == ("credit_line", "12.50", "-12.50")


def test_waterfall_columns_agree_with_the_transactions_page(team):
    # given a varied history
    adv = team.advertiser
    deposit(adv, "40.00")
    grant(adv, "discount", "6.00", percent="25")
    grant(adv, "free", "4.00")
    for amount in ("8.00", "30.00", "1.00", "25.00"):
        spend(team.campaign, amount)
    # then each CSV row's parts are the page row's parts, under the CSV's names
    rows = export(team.admin, adv)
    page = transaction_rows(transactions_query(advertiser=adv))
    assert [int(r["transaction_id"]) for r in rows] == [p.id for p in page]
    for r, p in zip(rows, page):
        assert {c: Decimal(r[c]) for c in WATERFALL} == {c: p.part(PAGE_KEY.get(c, c)) for c in WATERFALL}
        assert Decimal(r["amount"]) == p.amount


def _history(team, *, coupons: int, charges: int):
    """A deposit, coupons on the campaign and charges they and the cash pay for."""
    adv = team.advertiser
    deposit(adv, "5000.00")
    for _ in range(coupons):
        credit_assign(credit=grant(adv, "assignable", "1.00"), campaign_ids=[team.campaign.pk])
    for _ in range(charges):
        spend(team.campaign, "3.00")


def _export_queries(client, advertiser) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as ctx:
        rows = export(client, advertiser)
    return len(rows), len(ctx.captured_queries)


def test_same_queries_for_10_or_200_transactions(db, fast_password_hashing):
    # given one account with 10 transactions and one with 200 (deposits, coupons, charges)
    small, large = make_team(), make_team()
    _history(small, coupons=1, charges=8)
    _history(large, coupons=19, charges=180)
    # when both export everything
    n_small, q_small = _export_queries(small.client("admin"), small.advertiser)
    n_large, q_large = _export_queries(large.client("admin"), large.advertiser)
    # then the export costs the same queries: the session, the user, the advertiser and its role,
    # and one for the rows
    assert (n_small, n_large) == (10, 200)
    assert q_small == q_large <= 6
