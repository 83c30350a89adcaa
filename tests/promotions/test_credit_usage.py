"""A credit's usage history on the Promotions page (issue 13, decision 0030): its issue, every
charge it paid part of with what was left after, its expiry or withdrawal — the ledger entries of
the credit's own account, paged, for whoever may open Promotions, at a constant number of queries."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing.models import CREDIT, LedgerEntry
from promotions.credits import credit_assign, credit_withdraw
from promotions.expiry import expire_credits
from promotions.selectors import USAGE_PAGE_SIZE
from tests.factories import UserFactory, deposit, grant
from tests.pages_helpers import (  # noqa: F401
    axe_violations,
    browser_login,
    browser_page,
    describe_violations,
    element,
    fast_password_hashing,
    logged_in,
    make_team,
    outside_viewport,
    spend,
    team,
    text,
)

pytestmark = pytest.mark.django_db

D = Decimal
HTMX = {"HX-Request": "true"}
ROW = re.compile(r'<tr data-kind="(\w+)" data-entry="(\d+)">(.*?)</tr>', re.S)


def usage_url(team, credit, query="") -> str:
    return f"/a/{team.advertiser.pk}/payments/promotions/credits/{credit.pk}/usage/{query}"


def money(shown: str) -> Decimal:
    return D(shown.replace("−", "-").replace("+", "").replace("$", "").replace(",", ""))


def usage_rows(response) -> list[dict]:
    """Each row as the reader sees it: its entry, kind, cells' text, amount and remaining after."""
    out = []
    for kind, entry, cells in ROW.findall(response.content.decode()):
        tds = [text(td) for td in re.findall(r"<td\b[^>]*>(.*?)</td>", cells, re.S)]
        out.append({"entry": int(entry), "kind": kind, "cells": tds,
                    "amount": money(tds[3].split(" of ")[0]), "remaining": money(tds[4])})
    return out


def ledger_signed(entry_id: int) -> Decimal:
    e = LedgerEntry.objects.get(pk=entry_id)
    return e.amount if e.side == CREDIT else -e.amount


# --- what it shows -----------------------------------------------------------------------------

def test_usage_lists_issue_charges_and_remaining_after_each(team):
    # given a coupon of 10 on the campaign, then three charges it pays (the last only in part)
    adv = team.advertiser
    deposit(adv, "100.00")
    coupon = grant(adv, "assignable", "10.00", valid_from=timezone.now() - timedelta(days=1))
    credit_assign(credit=coupon, campaign_ids=[team.campaign.pk])
    for amount in ("3.00", "4.50", "6.00"):
        spend(team.campaign, amount, occurred_at=timezone.now())
    # when the analyst opens the coupon's usage
    response = team.client("analyst").get(usage_url(team, coupon))
    assert response.status_code == 200
    rows = usage_rows(response)
    # then newest first: what each charge took, what was left after it, and the issue
    assert [(r["kind"], r["amount"], r["remaining"]) for r in rows] == [
        ("charge", D("-2.50"), D("0.00")),  # the coupon ran out: cash paid the rest
        ("charge", D("-4.50"), D("2.50")),
        ("charge", D("-3.00"), D("7.00")),
        ("credit_issue", D("10.00"), D("10.00")),
    ]
    assert rows[0]["cells"][1:4] == ["Used for ad spend", "Spring sale", "−$2.50 of a $6.00 charge"]
    assert rows[-1]["cells"][1:4] == ["Issued", "—", "+$10.00"]
    # and every amount is the ledger entry of the coupon's own account
    entries = LedgerEntry.objects.filter(account=coupon.ledger_account).order_by("-transaction_id")
    assert [r["entry"] for r in rows] == [e.pk for e in entries]
    assert [r["amount"] for r in rows] == [ledger_signed(r["entry"]) for r in rows]
    body = text(response)
    assert "Usage of Coupon #{} Issued $10.00 · used for ad spend $10.00 · $0.00 left".format(coupon.pk) in body
    assert "Tools › Payments › Promotions › Coupon #{}".format(coupon.pk) in body


def test_expiry_and_withdrawal_are_events_with_what_they_took(team):
    adv = team.advertiser
    deposit(adv, "100.00")
    start = timezone.now() - timedelta(days=3)
    expiring = grant(adv, "free", "8.00", valid_from=start, expires_at=start + timedelta(days=1))
    spend(team.campaign, "5.00", occurred_at=start + timedelta(hours=2))  # the free credit pays 5
    expire_credits(at=timezone.now())
    withdrawn = grant(adv, "free", "7.00", key="w")
    credit_withdraw(credit=withdrawn, reason="policy")
    # the expired credit: issued, used, and the 3 left forfeited
    rows = usage_rows(team.admin.get(usage_url(team, expiring)))
    assert [(r["kind"], r["amount"], r["remaining"]) for r in rows] == [
        ("credit_expire", D("-3.00"), D("0.00")), ("charge", D("-5.00"), D("3.00")),
        ("credit_issue", D("8.00"), D("8.00"))]
    body = text(team.admin.get(usage_url(team, expiring)))
    assert "Issued $8.00 · used for ad spend $5.00 · forfeited unused $3.00 · $0.00 left" in body
    assert "Expired" in body
    # the withdrawn one: issued, then withdrawn whole
    response = team.admin.get(usage_url(team, withdrawn))
    assert [(r["kind"], r["cells"][1], r["amount"]) for r in usage_rows(response)] == [
        ("credit_withdraw", "Withdrawn", D("-7.00")), ("credit_issue", "Issued", D("7.00"))]
    assert "withdrawn $7.00" in text(response)


def test_a_charge_reported_late_still_follows_the_issue(team):
    # given a credit valid since yesterday, issued now, that pays a charge which occurred an hour ago
    adv = team.advertiser
    credit = grant(adv, "free", "20.00", valid_from=timezone.now() - timedelta(days=1))
    spend(team.campaign, "6.00", occurred_at=timezone.now() - timedelta(hours=1))
    # then the rows follow the ledger's booking: the charge (dated earlier) above the issue, and
    # what was left after it is what the credit had once it was paid
    rows = usage_rows(team.admin.get(usage_url(team, credit)))
    assert [(r["kind"], r["amount"], r["remaining"]) for r in rows] == [
        ("charge", D("-6.00"), D("14.00")), ("credit_issue", D("20.00"), D("20.00"))]


def test_discount_shows_what_it_took_off_each_charge(team):
    adv = team.advertiser
    deposit(adv, "100.00")
    discount = grant(adv, "discount", "5.00", percent="50")
    spend(team.campaign, "4.00", occurred_at=timezone.now())  # 2 off
    spend(team.campaign, "10.00", occurred_at=timezone.now())  # 3 off: the cap is reached
    rows = usage_rows(team.admin.get(usage_url(team, discount)))
    assert [(r["amount"], r["remaining"]) for r in rows] == [(D("-3.00"), D("0.00")), (D("-2.00"), D("3.00")),
                                                             (D("5.00"), D("5.00"))]
    assert "Cap $5.00 · used for ad spend $5.00" in text(team.admin.get(usage_url(team, discount)))


def test_long_history_is_paged_and_remaining_counts_every_page(team):
    # given a free credit that paid 60 charges
    adv = team.advertiser
    credit = grant(adv, "free", "1000.00")
    for _ in range(60):
        spend(team.campaign, "1.25", occurred_at=timezone.now())
    # when the second page is read, by htmx and without it
    for headers in ({}, HTMX):
        response = team.admin.get(usage_url(team, credit, "?page=2"), headers=headers)
        rows = usage_rows(response)
        # then it holds the next 25, each with what was left after it — the newer pages' charges
        # are not in what it had then
        assert len(rows) == USAGE_PAGE_SIZE
        assert [r["remaining"] for r in rows] == [D("1000") - D("1.25") * n for n in range(35, 10, -1)]
        html = response.content.decode()
        assert f'href="{usage_url(team, credit)}?page=3"' in html and 'rel="prev"' in html
        assert "page 2 of 3" in text(response)
    last = usage_rows(team.admin.get(usage_url(team, credit, "?page=3")))
    assert [r["kind"] for r in last][-1] == "credit_issue" and len(last) == 11


# --- the Promotions page opens it --------------------------------------------------------------

def test_each_credit_on_promotions_links_to_its_usage(team):
    adv = team.advertiser
    credit = grant(adv, "free", "12.00")
    html = team.client("finance").get(f"/a/{adv.pk}/payments/promotions/").content.decode()
    row = element(html, f"credit-{credit.pk}")
    url = usage_url(team, credit)
    # a plain link that htmx turns into the panel under the list, named for screen readers
    assert f'href="{url}" hx-get="{url}" hx-target="#credit-usage"' in row
    assert "Usage of Free credit #{}".format(credit.pk) in text(row)
    assert '<div id="credit-usage" class="credit-usage-slot"></div>' in html


def test_htmx_gets_the_panel_only_and_a_plain_link_the_page(team):
    credit = grant(team.advertiser, "free", "12.00")
    partial = team.admin.get(usage_url(team, credit), headers=HTMX)
    html = partial.content.decode()
    assert html.lstrip().startswith('<section id="credit-usage-panel"')
    assert "<html" not in html and "sidebar" not in html
    assert 'tabindex="-1" autofocus>Usage of Free credit' in html  # focus moves to the panel
    assert "HX-Request" in partial["Vary"]
    full = team.admin.get(usage_url(team, credit))
    assert "<html" in full.content.decode() and "autofocus" not in element(full.content.decode(), "usage-title")
    # the table is named and its headers are column headers
    assert '<caption class="visually-hidden">Events of Free credit #{}'.format(credit.pk) in html
    assert html.count('<th scope="col"') == 5


# --- who may see it ----------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["admin", "finance", "analyst", "staff"])
def test_roles_that_see_promotions_see_usage(team, role):
    credit = grant(team.advertiser, "free", "12.00")
    client = logged_in(UserFactory(is_staff=True)) if role == "staff" else team.client(role)
    assert client.get(f"/a/{team.advertiser.pk}/payments/promotions/").status_code == 200
    response = client.get(usage_url(team, credit))
    assert response.status_code == 200 and "Usage of Free credit" in text(response)


def test_operator_403_stranger_and_other_advertisers_credit_404_anonymous_login(team):
    credit = grant(team.advertiser, "free", "12.00")
    url = usage_url(team, credit)
    # an operator sees no payment data (as on Promotions)
    forbidden = team.client("operator").get(url)
    assert forbidden.status_code == 403 and "$12.00" not in text(forbidden)
    # a member of another advertiser: 404 for this advertiser
    assert logged_in(team.outsider).get(url).status_code == 404
    # another advertiser's credit under this advertiser's address: 404, even for this admin
    other = make_team()
    theirs = grant(other.advertiser, "free", "99.00")
    assert team.admin.get(usage_url(team, theirs)).status_code == 404
    assert team.admin.get(usage_url(team, theirs), headers=HTMX).status_code == 404
    # and the outsider's own advertiser address with this credit: 404 too
    assert other.admin.get(usage_url(other, credit)).status_code == 404
    anonymous = Client().get(url)
    assert anonymous.status_code == 302 and anonymous["Location"] == f"/login/?next={url}"
    assert team.admin.post(url).status_code == 405


# --- a constant number of queries --------------------------------------------------------------

def _queries(client, url, headers=None) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url, headers=headers or {}).status_code == 200
    return len(ctx.captured_queries)


def test_same_queries_for_3_or_80_charges(db, fast_password_hashing):
    teams = []
    for n in (3, 80):
        t = make_team()
        credit = grant(t.advertiser, "free", "500.00")
        deposit(t.advertiser, "100.00")
        for _ in range(n):
            spend(t.campaign, "1.00", occurred_at=timezone.now())
        teams.append((t, credit))
    for query, headers in (("", None), ("", HTMX), ("?page=2", HTMX)):
        counts = [_queries(t.admin, usage_url(t, c, query), headers) for t, c in teams]
        assert counts[0] == counts[1], (query, counts)
        assert counts[1] <= 10, (query, counts)


# --- in a browser: the Promotions page opens it in place ---------------------------------------

@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("width", [1366, 375])
def test_usage_opens_under_the_list_pages_in_place_and_passes_axe(live_server, browser_page, width):
    from playwright.sync_api import expect

    # given a coupon that paid 30 charges
    t = make_team(name="Acme Shoes")
    deposit(t.advertiser, "500.00")
    coupon = grant(t.advertiser, "assignable", "100.00")
    credit_assign(credit=coupon, campaign_ids=[t.campaign.pk])
    for _ in range(30):
        spend(t.campaign, "2.00", occurred_at=timezone.now())
    page, base = browser_page, live_server.url
    page.set_viewport_size({"width": width, "height": 800})
    browser_login(page, base, t.users["analyst"])
    promotions = f"{base}/a/{t.advertiser.pk}/payments/promotions/"
    page.goto(promotions)
    # when the analyst opens the coupon's usage
    page.locator(f"#credit-{coupon.pk}").get_by_role("link", name=f"Usage of Coupon #{coupon.pk}").click()
    # then it opens under the list, on the same page, with focus on its heading
    panel = page.locator("#credit-usage #credit-usage-panel")
    expect(panel).to_be_visible()
    expect(page.locator("#usage-title")).to_be_focused()
    expect(page).to_have_url(promotions)
    expect(panel.locator("tbody tr")).to_have_count(USAGE_PAGE_SIZE)
    expect(panel.locator("tbody tr").first).to_contain_text("$40.00")  # 100 less 30 charges of 2
    # and its older page replaces it in place
    panel.get_by_role("link", name="Older →").click()
    expect(panel.locator("tbody tr")).to_have_count(6)
    expect(panel.locator("tbody tr").last).to_contain_text("Issued")
    expect(page).to_have_url(promotions)
    violations = axe_violations(page, base)
    assert not violations, describe_violations(violations)
    assert outside_viewport(page, "#credit-usage td, #credit-usage .btn") == []
    assert page.console_errors == []
