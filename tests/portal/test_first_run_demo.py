"""The demo as a first run shows it (issue 13, decision 0028): its history reads in order — every
credit is issued and every deposit made before the spend it pays for — and the printed logins and
the links in emails use the address the portal is served at (SITE_URL, which follows BIND)."""

import runpy
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from billing.history import transactions_query
from billing.models import LedgerEntry, Purpose, TxKind
from portal.models import Advertiser

ROOT = Path(__file__).resolve().parents[2]


def load_demo() -> str:
    out = StringIO()
    call_command("load_demo", stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_demo_history_is_chronological():
    # given the demo
    load_demo()
    demo = Advertiser.objects.filter(business_center__name="Demo Agency BC")
    # then, replayed in the order the Transactions page lists them (oldest first), no balance an
    # advertiser spends from ever goes below zero: each credit was issued before it paid a charge,
    # each deposit made before the spend its cash paid for
    replayed = 0
    for adv in demo:
        for entry_account in adv.ledger_accounts.filter(purpose__in=[Purpose.CASH, Purpose.PROMO_CREDIT]):
            balance = 0
            entries = (LedgerEntry.objects.filter(account=entry_account)
                       .order_by("transaction__occurred_at", "transaction_id")
                       .values_list("side", "amount", "transaction__kind", "transaction__occurred_at"))
            for side, amount, kind, at in entries:
                balance += amount if side == entry_account.normal else -amount
                assert balance >= 0, f"{adv.name}: {entry_account} is {balance} after a {kind} at {at}"
                replayed += 1
    assert replayed > 500
    # and the shop's Transactions begin with its credit and first deposit, the second deposit
    # (a top-up) comes between charges, and the newest rows are spend, not money arriving
    manual = demo.get(name="Demo Shop US")
    oldest_first = list(transactions_query(advertiser=manual).reverse().values_list("kind", flat=True))
    first_charge = oldest_first.index(TxKind.CHARGE)
    assert set(oldest_first[:first_charge]) == {TxKind.CREDIT_ISSUE, TxKind.DEPOSIT}
    top_up = oldest_first.index(TxKind.DEPOSIT, first_charge)
    assert TxKind.CHARGE in oldest_first[top_up:] and oldest_first.count(TxKind.DEPOSIT) == 2
    assert TxKind.DEPOSIT not in oldest_first[-50:] and TxKind.CHARGE in oldest_first[-5:]


@pytest.mark.django_db
def test_logins_use_the_site_address(settings):
    # given a portal served at another address
    settings.SITE_URL = "http://127.0.0.1:9001"
    # when the demo is loaded, and loaded again
    for out in (load_demo(), load_demo()):
        # then the logins name that address
        assert "Demo login: http://127.0.0.1:9001/  user demo_admin  password demo-pass-2026" in out
        assert "Staff login: http://127.0.0.1:9001/admin/  user support" in out
        assert ":8000" not in out


@pytest.mark.parametrize("env,site_url", [
    ({"BIND": "127.0.0.1:9001"}, "http://127.0.0.1:9001"),
    ({"BIND": "0.0.0.0:9000"}, "http://127.0.0.1:9000"),  # a wildcard bind is reached through 127.0.0.1
    ({"BIND": "unix:/run/portal.sock"}, "http://127.0.0.1:8000"),
    ({}, "http://127.0.0.1:8000"),
    ({"BIND": "127.0.0.1:9001", "SITE_URL": "https://portal.example.com"}, "https://portal.example.com"),
])
def test_site_url_follows_bind_unless_set(monkeypatch, env, site_url):
    # given the environment `make run` would pass
    for name in ("BIND", "SITE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # then the settings' base of email links is the address the portal is served at
    assert runpy.run_path(str(ROOT / "portal" / "settings.py"))["SITE_URL"] == site_url
