"""The Transactions page's Cash balance column and the CSV's `cash_balance_after` (issue 13,
decision 0030): after each transaction, what the advertiser's cash account held once it was
booked — the same figure on any filter and any page, at a constant number of queries."""

import csv
import io
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Case, F, Sum, When
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.history import transaction_rows, transactions_csv_rows, transactions_query
from billing.models import CREDIT, LedgerAccount, LedgerEntry, LedgerTransaction, Purpose
from billing.selectors import advertiser_balances
from promotions.credits import credit_assign
from tests.factories import AdvertiserFactory, CampaignFactory, deposit, grant
from tests.pages_helpers import fast_password_hashing, make_team, spend, team, text  # noqa: F401

pytestmark = pytest.mark.django_db

D = Decimal
HTMX = {"HX-Request": "true"}
ROW = re.compile(r'<tr data-kind="(\w+)" data-tx="(\d+)">.*?<td class="num cash-balance">(.*?)</td>', re.S)


def page_url(adv, query="") -> str:
    return f"/a/{adv.pk}/payments/transactions/" + (f"?{query}" if query else "")


def shown_balances(response) -> list[tuple[int, Decimal]]:
    """(transaction id, cash balance) of each row, in the page's order, parsed from what it shows."""
    return [(int(tx), money(cell)) for _, tx, cell in ROW.findall(response.content.decode())]


def money(shown: str) -> Decimal:
    return D(text(shown).replace("−", "-").replace("$", "").replace(",", ""))


def ledger_cash_after(adv, tx_id: int) -> Decimal:
    """The cash account's balance once transaction `tx_id` was booked, summed straight from the
    ledger's entries (every transaction booked up to it) — the test's own reference."""
    signed = Case(When(side=CREDIT, then=F("amount")), default=-F("amount"))
    total = LedgerEntry.objects.filter(account__advertiser=adv, account__purpose=Purpose.CASH,
                                       transaction_id__lte=tx_id).aggregate(s=Sum(signed))["s"]
    return total or D(0)


def csv_export(client, adv, query="") -> list[dict]:
    response = client.get(f"/a/{adv.pk}/payments/transactions.csv" + (f"?{query}" if query else ""))
    assert response.status_code == 200
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


# --- a random sequence of deposits and charges against a sequential model ------------------------

operations = st.lists(
    st.one_of(
        st.tuples(st.just("deposit"), st.integers(2_000, 40_000)),  # cents; deposits are 20 to 50,000 (R23)
        st.tuples(st.sampled_from(["charge", "fee"]), st.integers(1, 30_000)),
    ),
    min_size=1, max_size=12,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(ops=operations)
def test_cash_balance_equals_the_sequential_sum(db, ops):
    # given a manual account and a random sequence of deposits, charges and fees: a charge the cash
    # cannot cover runs into arrears, and the next deposit pays those first (R13)
    adv = AdvertiserFactory()
    campaign = CampaignFactory(advertiser=adv)
    cash, arrears, expected = D(0), D(0), []
    start = timezone.now() - timedelta(hours=1)
    for i, (op, cents) in enumerate(ops):
        amount = D(cents) / 100
        if op == "deposit":
            deposit(adv, f"{amount:.2f}", key=f"seq-{i}")
            paid = min(arrears, amount)
            arrears, cash = arrears - paid, cash + amount - paid
        else:
            spend(campaign, f"{amount:.2f}", occurred_at=start + timedelta(seconds=i),
                  kind="fee" if op == "fee" else None)
            used = min(cash, amount)
            cash, arrears = cash - used, arrears + amount - used
        expected.append(cash)
    # when the rows are read, as the page and the CSV read them
    rows = transaction_rows(transactions_query(advertiser=adv))
    exported = list(transactions_csv_rows(advertiser=adv))[1:]
    # then in booking order each row's cash balance is the model's after that step, and the last the stored one
    booked = sorted(rows, key=lambda r: r.id)
    assert [r.cash_balance for r in booked] == expected
    assert booked[-1].cash_balance == advertiser_balances(advertiser=adv).cash_balance
    assert {int(r[1]): D(r[-1]) for r in exported} == {r.id: r.cash_balance for r in rows}


# --- what a row shows --------------------------------------------------------------------------

def test_column_shows_cash_after_deposits_credit_and_charges(team):
    # given a deposit, credit that pays part of a charge, a coupon, a fee and a charge into arrears
    adv = team.advertiser
    now = timezone.now()
    deposit(adv, "100.00")
    grant(adv, "free", "5.00")
    credit_assign(credit=grant(adv, "assignable", "3.00"), campaign_ids=[team.campaign.pk])
    spend(team.campaign, "20.00", occurred_at=now)  # coupon 3, credit 5, cash 12
    spend(team.campaign, "4.00", occurred_at=now, kind="fee")  # cash 4
    spend(team.campaign, "90.00", occurred_at=now)  # cash 84, owed 6
    # when the analyst opens Transactions
    response = team.client("analyst").get(page_url(adv))
    body = text(response)
    # then the column is last and each row reads with the cash left after it
    assert "Amount Funding source Cash balance" in body
    assert "Ad spend Spring sale −$90.00 Cash $84.00 · Owed (arrears) $6.00 $0.00" in body
    assert "Fee Spring sale −$4.00 Cash $4.00 $84.00" in body
    assert "Ad spend Spring sale −$20.00 Coupon $3.00 · Credit $5.00 · Cash $12.00 $88.00" in body
    assert "Promotion issued — +$3.00 Coupon $3.00 $100.00" in body  # credit moves no cash
    assert "Deposit — +$100.00 Deposit via API $100.00 $100.00" in body
    # and the next deposit settles the arrears first: the cash grows by what is left
    deposit(adv, "50.00", key="second")
    assert "Deposit — +$50.00 Deposit via API $50.00 $44.00" in text(team.admin.get(page_url(adv)))
    # the table is named for screen readers, and its headers are column headers
    html = response.content.decode()
    caption = "Transactions, newest first, with the cash balance after each"
    assert f'<caption class="visually-hidden">{caption}</caption>' in html
    assert '<th scope="col" class="num">Cash balance</th>' in html


def test_a_charge_reported_late_shows_the_balance_it_was_booked_against(team):
    # given cash of 10, a deposit of 100, then a charge of 30 that occurred before the deposit but
    # was reported after it (the cash it used was there when it was booked)
    adv = team.advertiser
    deposit(adv, "20.00", key="first")
    spend(team.campaign, "10.00", occurred_at=timezone.now() - timedelta(hours=2))
    deposit(adv, "100.00", key="second")
    spend(team.campaign, "30.00", occurred_at=timezone.now() - timedelta(hours=1))
    # when the page lists them by date
    rows = shown_balances(team.admin.get(page_url(adv)))
    # then the late charge sits at its date, with the balance the ledger had once it was booked —
    # never below zero — and every row's balance is the ledger's
    listed = [(tx.kind, tx.amount) for tx in (LedgerTransaction.objects.get(pk=pk) for pk, _ in rows)]
    assert [(kind, amount, cash) for (kind, amount), (_, cash) in zip(listed, rows)] == [
        ("deposit", D("100"), D("110.00")),  # booked third
        ("deposit", D("20"), D("20.00")),  # booked first
        ("charge", D("30"), D("80.00")),  # booked last, dated an hour ago
        ("charge", D("10"), D("10.00")),  # booked second, dated two hours ago
    ]
    assert all(cash == ledger_cash_after(adv, tx) for tx, cash in rows)


def test_automatic_payment_account_shows_its_cash_only(db, fast_password_hashing):
    from billing.autopay import charge_thresholds, payment_method_set, threshold_set

    # given an automatic-payment account whose spend went to the bill its card paid
    t = make_team(billing_method="automatic")
    payment_method_set(advertiser=t.advertiser, card_number="4242424242424242", expiry="12/39")
    threshold_set(advertiser=t.advertiser, amount="50.00", reason="test")
    spend(t.campaign, "60.00")
    charge_thresholds()
    # when the admin opens Transactions
    response = t.admin.get(page_url(t.advertiser))
    body = text(response)
    # then no row moved cash: the column stays at the (empty) cash balance, and says where the bills are
    assert [cash for _, cash in shown_balances(response)] == [D(0)] * 3
    assert "Payment — +$50.00 Card ···· 4242 $50.00 $0.00" in body
    assert "Spend charged to your card is not part of it: what you owe is on Bills & invoices" in body
    assert f'href="/a/{t.advertiser.pk}/payments/bills/"' in response.content.decode()
    assert "cash_balance_after" in csv_export(t.admin, t.advertiser)[0]


def test_overview_lists_recent_activity_without_the_column(team):
    deposit(team.advertiser, "100.00")
    spend(team.campaign, "10.00")
    recent = text(team.admin.get(f"/a/{team.advertiser.pk}/payments/")).split("Recent activity")[1]
    assert "Deposit — +$100.00 Deposit via API $100.00" in recent and "Cash balance" not in recent


# --- filters and pages -------------------------------------------------------------------------

def _mixed_history(team, charges: int):
    """A deposit before every 10 charges, and charges of varied amounts, some of them running into
    arrears; each dated when it is booked."""
    adv = team.advertiser
    for i in range(charges):
        if i % 10 == 0:
            deposit(adv, "60.00", key=f"mix-{i}")
        spend(team.campaign, f"{(i % 7) + 1}.50", occurred_at=timezone.now())


def test_filtered_second_page_shows_the_accounts_true_balance(team):
    # given 120 charges with deposits between them
    adv = team.advertiser
    _mixed_history(team, 120)
    # when the second page of charges is shown (50 a page), by htmx and as a full page
    for headers in ({}, HTMX):
        response = team.admin.get(page_url(adv, "kind=charge&page=2"), headers=headers)
        rows = shown_balances(response)
        # then it holds 50 charges, each with the ledger's cash balance once it was booked — the
        # deposits the filter hides are in it
        assert len(rows) == 50 and "120 transactions · page 2 of 3" in text(response)
        assert {LedgerTransaction.objects.get(pk=tx).kind for tx, _ in rows} == {"charge"}
        assert [cash for _, cash in rows] == [ledger_cash_after(adv, tx) for tx, _ in rows]
        assert len({cash for _, cash in rows}) > 10  # a real sequence, not one figure repeated
    # and the same rows unfiltered show the same balance
    everything = dict(shown_balances(team.admin.get(page_url(adv, "page=2")))
                      + shown_balances(team.admin.get(page_url(adv, "page=3"))))
    for tx, cash in rows:
        if tx in everything:
            assert everything[tx] == cash


def test_date_filter_and_csv_agree_with_the_ledger(team):
    adv = team.advertiser
    _mixed_history(team, 30)
    since = timezone.localdate() - timedelta(days=1)
    page = shown_balances(team.admin.get(page_url(adv, f"kind=charge&date_from={since}")))
    exported = csv_export(team.client("finance"), adv, f"kind=charge&date_from={since}")
    assert len(exported) == 30
    assert [(int(r["transaction_id"]), D(r["cash_balance_after"])) for r in exported] == page
    assert all(D(r["cash_balance_after"]) == ledger_cash_after(adv, int(r["transaction_id"])) for r in exported)
    # the column is the CSV's last, after the ones it already had
    header = next(csv.reader(io.StringIO(b"".join(team.admin.get(f"/a/{adv.pk}/payments/transactions.csv")
                                                    .streaming_content).decode())))
    assert header[-3:] == ["funding_source", "card_last4", "cash_balance_after"]


def test_the_newest_row_is_the_stored_balance(team):
    adv = team.advertiser
    _mixed_history(team, 25)
    ((_, newest), *_) = shown_balances(team.admin.get(page_url(adv)))
    assert newest == LedgerAccount.objects.get(advertiser=adv, purpose=Purpose.CASH).balance


# --- a constant number of queries --------------------------------------------------------------

def _queries(client, path, headers=None) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(path, headers=headers or {})
        if response.streaming:
            b"".join(response.streaming_content)
        assert response.status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.parametrize("query,headers", [
    ("", None), ("kind=charge", HTMX), ("kind=charge&page=2", None), ("csv", None), ("csv:kind=deposit", None),
])
def test_same_queries_for_10_or_100_rows(db, fast_password_hashing, query, headers):
    small, large = make_team(), make_team()
    _mixed_history(small, 10)
    _mixed_history(large, 100)
    counts = []
    for t in (small, large):
        if query.startswith("csv"):
            path = f"/a/{t.advertiser.pk}/payments/transactions.csv?{query[4:]}"
        else:
            path = page_url(t.advertiser, query)
        counts.append(_queries(t.admin, path, headers))
    assert counts[0] == counts[1], counts
    assert counts[1] <= 12


def test_a_page_reads_its_balances_in_one_query(team):
    _mixed_history(team, 60)
    txs = list(transactions_query(advertiser=team.advertiser)[:50])
    with CaptureQueriesContext(connection) as ctx:
        rows = transaction_rows(txs)
    assert len(ctx.captured_queries) == 1
    assert all(r.cash_balance is not None for r in rows)
    assert " OVER (" in ctx.captured_queries[0]["sql"]  # summed by a window in SQL, not row by row
