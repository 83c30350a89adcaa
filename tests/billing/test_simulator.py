"""The demo delivery simulator: spend goes through the real waterfall and ledger (R10–R14), paused
campaigns get none, and manual demo accounts are topped up so delivery resumes (R13)."""

import random
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.db.models import Sum
from django.utils import timezone

from billing.models import CREDIT, DEBIT, Deposit, LedgerAccount, LedgerTransaction, SpendEvent, TxKind
from billing.selectors import advertiser_balances
from billing.simulator import simulate_delivery
from billing.spend import spend_record
from billing.tasks import simulate_delivery as simulate_delivery_task
from portal.celery import app as celery_app
from portal.models import Advertiser, Campaign, CampaignStatus
from tests.factories import AdvertiserFactory, CampaignFactory, deposit, grant

pytestmark = pytest.mark.django_db


def revenue(adv) -> Decimal:
    return LedgerAccount.objects.get(advertiser=adv, purpose="revenue").balance


def spent(adv) -> Decimal:
    return SpendEvent.objects.filter(advertiser=adv).aggregate(s=Sum("amount"))["s"] or Decimal(0)


def assert_ledger_balanced():
    for tx in LedgerTransaction.objects.prefetch_related("entries"):
        d = sum((e.amount for e in tx.entries.all() if e.side == DEBIT), Decimal(0))
        c = sum((e.amount for e in tx.entries.all() if e.side == CREDIT), Decimal(0))
        assert d == c and d > 0, tx
    for account in LedgerAccount.objects.all():
        on = account.entries.filter(side=account.normal).aggregate(s=Sum("amount"))["s"] or 0
        off = account.entries.exclude(side=account.normal).aggregate(s=Sum("amount"))["s"] or 0
        assert account.balance == on - off, account


@pytest.fixture
def accounts():
    manual = AdvertiserFactory(name="Manual Co", billing_method="manual")
    deposit(manual, "2000.00", key="seed")
    grant(manual, "free", "0.50")
    automatic = AdvertiserFactory(name="Auto Co", billing_method="automatic")
    invoiced = AdvertiserFactory(name="Invoice Co", billing_method="monthly_invoice")
    Advertiser.objects.filter(pk=invoiced.pk).update(credit_line_limit=Decimal("5000"))
    invoiced.refresh_from_db()
    camps = {
        "manual": [CampaignFactory(advertiser=manual, objective="PRODUCT_SALES"),
                   CampaignFactory(advertiser=manual, objective="REACH")],
        "automatic": [CampaignFactory(advertiser=automatic, objective="TRAFFIC")],
        "invoiced": [CampaignFactory(advertiser=invoiced, objective="APP_PROMOTION")],
    }
    return {"manual": manual, "automatic": automatic, "invoiced": invoiced, "campaigns": camps}


def test_a_round_posts_one_event_per_active_campaign_and_the_ledger_records_it(accounts):
    manual, automatic, invoiced = accounts["manual"], accounts["automatic"], accounts["invoiced"]
    before = {k: advertiser_balances(advertiser=a) for k, a in (("m", manual), ("a", automatic), ("i", invoiced))}
    # when one round runs
    counts = simulate_delivery(rng=random.Random(7))
    # then each of the 4 active campaigns got one charge, booked as ad spend
    assert counts["campaigns"] == counts["events"] == 4
    assert SpendEvent.objects.count() == 4
    for camp in sum(accounts["campaigns"].values(), []):
        ev = SpendEvent.objects.get(campaign=camp)
        assert ev.event_id.startswith("sim-")
        assert Decimal("0.01") <= ev.amount <= Decimal("5.00")
        assert ev.transaction.kind == TxKind.CHARGE and ev.transaction.amount == ev.amount
    total = sum((spent(a) for a in (manual, automatic, invoiced)), Decimal(0))
    assert list(counts["spend"]) == ["USD"] and Decimal(counts["spend"]["USD"]) == total > 0
    # and the balances moved by exactly the spend: credit first, then cash / bill / credit line
    m, a, i = (advertiser_balances(advertiser=x) for x in (manual, automatic, invoiced))
    assert (before["m"].cash_balance - m.cash_balance) + (before["m"].credit_balance - m.credit_balance) == spent(manual)
    assert before["m"].credit_balance - m.credit_balance == min(Decimal("0.50"), spent(manual))
    assert a.accrued - before["a"].accrued == spent(automatic)
    assert i.credit_line_used - before["i"].credit_line_used == spent(invoiced)
    for adv in (manual, automatic, invoiced):
        assert revenue(adv) == spent(adv)
    assert counts["deposits"] == 0 and Deposit.objects.count() == 1
    assert_ledger_balanced()


def test_rounds_use_fresh_event_ids(accounts):
    simulate_delivery(rng=random.Random(1))
    simulate_delivery(rng=random.Random(1))
    assert SpendEvent.objects.count() == 8
    assert SpendEvent.objects.values("event_id").distinct().count() == 8


def test_paused_campaigns_and_inactive_accounts_get_no_spend(accounts):
    invoiced = accounts["invoiced"]
    paused_funds = CampaignFactory(advertiser=invoiced, objective="TRAFFIC")
    paused_by_user = CampaignFactory(advertiser=invoiced, objective="REACH")
    Campaign.objects.filter(pk=paused_funds.pk).update(status=CampaignStatus.PAUSED_FUNDS)
    Campaign.objects.filter(pk=paused_by_user.pk).update(status=CampaignStatus.PAUSED)
    suspended = AdvertiserFactory(billing_method="automatic")
    suspended_camp = CampaignFactory(advertiser=suspended)
    Advertiser.objects.filter(pk=suspended.pk).update(status="suspended")
    counts = simulate_delivery(rng=random.Random(3))
    assert counts["events"] == 4
    assert not SpendEvent.objects.filter(campaign__in=[paused_funds, paused_by_user, suspended_camp]).exists()
    assert advertiser_balances(advertiser=suspended).accrued == 0
    paused_funds.refresh_from_db()
    assert paused_funds.status == CampaignStatus.PAUSED_FUNDS  # invoiced accounts are not topped up


def test_a_manual_account_running_low_is_topped_up(spend_event):
    adv = AdvertiserFactory(billing_method="manual")
    camp = CampaignFactory(advertiser=adv)
    deposit(adv, "60.00", key="small")
    counts = simulate_delivery(rng=random.Random(5))
    # cash fell under the low-water mark (100): one simulator deposit of 1000 follows the spend
    top_up = Deposit.objects.get(advertiser=adv, source="simulator")
    assert top_up.amount == Decimal("1000.00")
    assert top_up.transaction.kind == TxKind.DEPOSIT
    assert counts["deposits"] == 1 and counts["deposited"] == {"USD": "1000.00"}
    b = advertiser_balances(advertiser=adv)
    assert b.cash_balance == Decimal("1060.00") - spent(adv)
    # and with enough cash the next round deposits nothing
    assert simulate_delivery(rng=random.Random(6))["deposits"] == 0
    assert Deposit.objects.filter(advertiser=adv, source="simulator").count() == 1
    assert_ledger_balanced()


def test_a_paused_manual_account_is_settled_and_resumed_but_not_charged_that_round(spend_event):
    # given a manual account whose spend ran past its cash: arrears, campaigns paused by billing
    adv = AdvertiserFactory(billing_method="manual")
    camp = CampaignFactory(advertiser=adv)
    deposit(adv, "20.00", key="tiny")
    spend_record(event=spend_event(camp, "50.00"))
    camp.refresh_from_db()
    assert camp.status == CampaignStatus.PAUSED_FUNDS
    assert advertiser_balances(advertiser=adv).arrears == Decimal("30.00")
    # when the simulator runs
    counts = simulate_delivery(rng=random.Random(9))
    # then the paused campaign got no new spend, the top-up settled the arrears first and resumed it
    assert counts["events"] == 0
    assert SpendEvent.objects.filter(campaign=camp).count() == 1
    top_up = Deposit.objects.get(advertiser=adv, source="simulator")
    assert top_up.amount == Decimal("1030.00")
    b = advertiser_balances(advertiser=adv)
    assert (b.arrears, b.cash_balance) == (Decimal("0"), Decimal("1000.00"))
    camp.refresh_from_db()
    assert camp.status == CampaignStatus.ACTIVE
    # and the next round charges it again
    assert simulate_delivery(rng=random.Random(10))["events"] == 1
    assert SpendEvent.objects.filter(campaign=camp).count() == 2
    assert_ledger_balanced()


def test_spend_is_in_the_currency_minor_unit():
    yen = AdvertiserFactory(currency="JPY", billing_method="automatic")
    CampaignFactory(advertiser=yen, objective="REACH")
    simulate_delivery(rng=random.Random(11))
    ev = SpendEvent.objects.get(advertiser=yen)
    assert ev.currency == "JPY" and ev.amount == ev.amount.to_integral_value() and ev.amount >= 1
    assert advertiser_balances(advertiser=yen).accrued == ev.amount


def test_the_celery_task_runs_eagerly(accounts):
    # tests run Celery eagerly (tests/conftest.py): .delay() runs the task in-process
    assert celery_app.conf.task_always_eager
    result = simulate_delivery_task.delay(at=timezone.now().isoformat())
    counts = result.get()
    assert counts["events"] == 4
    assert SpendEvent.objects.count() == 4
    assert revenue(accounts["manual"]) == spent(accounts["manual"]) > 0
    # the name the DEMO_SIMULATOR beat entry uses resolves to this task
    assert celery_app.tasks["billing.tasks.simulate_delivery"].delay().get()["events"] == 4
    assert SpendEvent.objects.count() == 8


def test_the_management_command_runs_rounds(accounts):
    out = StringIO()
    call_command("simulate_delivery", rounds=2, interval=0, stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("round 1: 4 events, spend ") and lines[1].startswith("round 2: 4 events, spend ")
    assert SpendEvent.objects.count() == 8
    assert_ledger_balanced()
