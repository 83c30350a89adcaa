"""`manage.py load_demo`: an idempotent, realistic demo data set built through the services."""

import time
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db.models import Count, Max, Min, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from billing.models import (
    CREDIT,
    DEBIT,
    Bill,
    Deposit,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    Purpose,
    SpendEvent,
    TxKind,
)
from billing.selectors import advertiser_balances
from portal.models import Advertiser, BCMembership, BusinessCenter, Campaign, Membership
from promotions.models import Credit, Enrollment

pytestmark = pytest.mark.django_db

DEMO_LOGIN = "Demo login: http://127.0.0.1:8000/  user demo_admin  password demo-pass-2026"
STAFF_LOGIN = "Staff login: http://127.0.0.1:8000/admin/  user support  password demo-pass-2026"


def load_demo(monkeypatch) -> str:
    monkeypatch.delenv("HOST", raising=False)
    monkeypatch.delenv("PORT", raising=False)
    out = StringIO()
    call_command("load_demo", stdout=out)
    return out.getvalue()


def snapshot() -> dict:
    return {
        "users": get_user_model().objects.count(),
        "bcs": BusinessCenter.objects.count(),
        "advertisers": Advertiser.objects.count(),
        "campaigns": Campaign.objects.count(),
        "memberships": Membership.objects.count(),
        "credits": Credit.objects.count(),
        "deposits": Deposit.objects.count(),
        "events": SpendEvent.objects.count(),
        "transactions": LedgerTransaction.objects.count(),
        "entries": LedgerEntry.objects.count(),
        "bills": Bill.objects.count(),
        "enrollments": Enrollment.objects.count(),
        "balances": sorted(LedgerAccount.objects.values_list("pk", "balance")),
        "passwords": sorted(get_user_model().objects.values_list("username", "password")),
    }


def test_load_demo_twice_changes_nothing_and_prints_the_same_logins(monkeypatch):
    started = time.monotonic()
    first = load_demo(monkeypatch)
    elapsed = time.monotonic() - started
    before = snapshot()
    second = load_demo(monkeypatch)
    assert snapshot() == before
    for out in (first, second):
        assert DEMO_LOGIN in out and STAFF_LOGIN in out
    assert "Loaded Demo Agency BC: 5 advertisers" in first
    assert "already loaded" in second
    assert elapsed < 30


def test_demo_accounts_users_and_campaigns(client, monkeypatch):
    load_demo(monkeypatch)
    bc = BusinessCenter.objects.get(name="Demo Agency BC")
    everyone = list(Advertiser.objects.filter(business_center=bc).order_by("pk"))
    assert {a.billing_method for a in everyone} == {"manual", "automatic", "monthly_invoice"}
    advertisers = {a.billing_method: a for a in reversed(everyone)}  # the first of each method
    assert all(a.currency == "USD" and a.status == "active" for a in advertisers.values())
    assert advertisers["monthly_invoice"].credit_line_limit == Decimal("5000")
    assert advertisers["monthly_invoice"].invoicing_eligible
    assert advertisers["automatic"].payment_method.last4 == "4242"
    # one user per role, on every advertiser; a BC admin; a staff superuser
    for adv in everyone:
        roles = dict(Membership.objects.filter(advertiser=adv).values_list("user__username", "role"))
        assert roles == {"demo_admin": "admin", "demo_finance": "finance", "demo_operator": "operator",
                         "demo_analyst": "analyst"}
    assert BCMembership.objects.get(business_center=bc).user.username == "demo_bc_admin"
    User = get_user_model()
    support = User.objects.get(username="support")
    assert support.is_staff and support.is_superuser
    assert not User.objects.filter(username__startswith="demo_", is_staff=True).exists()
    # every demo user has the same password (one hash); logging in works with it
    hashes = dict(User.objects.filter(username__in=[*roles, "demo_bc_admin", "support"]).values_list("username",
                                                                                                    "password"))
    assert len(hashes) == 6 and len(set(hashes.values())) == 1
    assert client.login(username="demo_admin", password="demo-pass-2026")
    assert not client.login(username="demo_admin", password="wrong")
    # the support user sees the demo accounts in the admin
    assert client.login(username="support", password="demo-pass-2026")
    page = client.get("/admin/portal/advertiser/")
    assert page.status_code == 200
    for adv in everyone:
        assert adv.name in page.text
    # campaigns with varied objectives and product sources, a Shop campaign selling the linked shop
    campaigns = Campaign.objects.filter(advertiser__business_center=bc)
    assert campaigns.values("objective").distinct().count() >= 6
    assert set(campaigns.values_list("product_source", flat=True)) == {"NONE", "TIKTOK_SHOP", "CATALOG"}
    shop = campaigns.get(product_source="TIKTOK_SHOP")
    assert shop.shop_id and shop.shop_id == shop.advertiser.shop_id
    assert not campaigns.filter(status="paused_funds").exists()


def test_demo_credits_of_every_kind(monkeypatch):
    load_demo(monkeypatch)
    now = timezone.now()
    credits = Credit.objects.filter(advertiser__business_center__name="Demo Agency BC").select_related("ledger_account")
    assert set(credits.values_list("kind", flat=True)) == {"free", "assignable", "discount"}
    discount = credits.get(kind="discount")
    assert (discount.percent, discount.amount) == (Decimal("50.00"), Decimal("100.00"))
    assert 0 < discount.remaining < discount.amount  # it has paid half of some charges
    assigned = [c for c in credits.filter(kind="assignable") if c.campaigns.exists()]
    assert len(assigned) == 1 and assigned[0].campaigns.count() == 1
    coupon_paid = LedgerEntry.objects.filter(account=assigned[0].ledger_account, side=DEBIT,
                                             transaction__kind=TxKind.CHARGE)
    assert set(coupon_paid.values_list("transaction__campaign", flat=True)) == {assigned[0].campaigns.get().pk}
    expiring = [c for c in credits if c.status == "active" and now < c.expires_at <= now + timedelta(days=7)]
    assert expiring and all(c.remaining > 0 for c in expiring)
    # credits paid for part of the history: the ledger shows charges drawn from credit accounts
    paid_by_credit = LedgerEntry.objects.filter(account__purpose=Purpose.PROMO_CREDIT, side=DEBIT,
                                                transaction__kind=TxKind.CHARGE).aggregate(s=Sum("amount"))["s"]
    assert paid_by_credit > Decimal("500")
    assert credits.filter(status="used_up").exists()


def test_demo_spend_history_and_ledger(monkeypatch):
    load_demo(monkeypatch)
    now = timezone.now()
    events = SpendEvent.objects.filter(advertiser__business_center__name="Demo Agency BC")
    span = events.aggregate(first=Min("occurred_at"), last=Max("occurred_at"))
    # 30 days of history; the invoiced account's also reaches at least 12 hours into last month
    # (its time zone), which 30 days do not on the 31st, so it always has last month's invoice
    invoiced = Advertiser.objects.get(billing_method="monthly_invoice")
    first_others = events.exclude(advertiser=invoiced).aggregate(m=Min("occurred_at"))["m"]
    assert now - timedelta(days=30) <= first_others <= now - timedelta(days=29)
    this_month = month_of(invoiced, now)[1]
    first_invoiced = events.filter(advertiser=invoiced).aggregate(m=Min("occurred_at"))["m"]
    assert min(now - timedelta(days=30), this_month - timedelta(hours=12)) <= first_invoiced <= now - timedelta(days=29)
    assert first_invoiced < this_month and span["first"] == min(first_others, first_invoiced)
    assert now - timedelta(hours=8) <= span["last"] < now
    assert events.count() > 1000
    assert events.values("amount").distinct().count() > 300  # varied amounts
    per_campaign = events.values("campaign").annotate(
        n=Count("pk"), days=Count(TruncDate("occurred_at"), distinct=True)
    )
    assert len(per_campaign) == Campaign.objects.filter(status="active").count()
    assert all(row["n"] >= 100 and row["days"] >= 29 for row in per_campaign)
    assert not events.filter(campaign__status="paused").exists()
    # R14: every transaction balances and every stored balance equals its entries
    for tx in LedgerTransaction.objects.prefetch_related("entries"):
        debits = sum((e.amount for e in tx.entries.all() if e.side == DEBIT), Decimal(0))
        credits = sum((e.amount for e in tx.entries.all() if e.side == CREDIT), Decimal(0))
        assert debits == credits > 0, tx
    for account in LedgerAccount.objects.all():
        on = account.entries.filter(side=account.normal).aggregate(s=Sum("amount"))["s"] or 0
        off = account.entries.exclude(side=account.normal).aggregate(s=Sum("amount"))["s"] or 0
        assert account.balance == on - off, account
    # every charge is recorded in full as revenue
    for adv in Advertiser.objects.all():
        spent = events.filter(advertiser=adv).aggregate(s=Sum("amount"))["s"] or 0
        assert LedgerAccount.objects.get(advertiser=adv, purpose=Purpose.REVENUE).balance == spent
    # manual: deposits loaded cash, spend drew it down without arrears
    manual = Advertiser.objects.get(name="Demo Shop US")
    deposited = Deposit.objects.filter(advertiser=manual).aggregate(s=Sum("amount"))["s"]
    cash_spent = LedgerEntry.objects.filter(account__advertiser=manual, account__purpose=Purpose.CASH, side=DEBIT,
                                            transaction__kind=TxKind.CHARGE).aggregate(s=Sum("amount"))["s"]
    b = advertiser_balances(advertiser=manual)
    assert deposited == Decimal("5500.00")
    assert b.cash_balance == deposited - cash_spent > 0 and b.arrears == 0
    # automatic: threshold bills were raised and paid along the way; what is left is under the threshold
    auto = Advertiser.objects.get(name="Demo Apparel Co")
    bills = Bill.objects.filter(advertiser=auto)
    assert bills.count() >= 3 and not bills.exclude(status="paid").exists()
    assert advertiser_balances(advertiser=auto).accrued < auto.billing_threshold
    # monthly invoicing: spend used the credit line, within its limit
    invoiced = Advertiser.objects.get(billing_method="monthly_invoice")
    b = advertiser_balances(advertiser=invoiced)
    assert 0 < b.credit_line_used <= b.credit_line_limit and b.arrears == 0
    # the new-advertiser ladder counted the manual account's own-money spend (R17)
    enrollment = Enrollment.objects.get(advertiser=manual, program__kind="new_advertiser")
    assert enrollment.status == "open" and enrollment.qualifying_spend == cash_spent


def test_demo_shop_has_a_monthly_spending_limit_it_has_not_reached_and_a_low_balance_alert(monkeypatch):
    """Issue 14 demo data: the Billing method page's meter (R43) and a member's alert level (R44)."""
    from billing.limits import limit_view
    from portal.models import AlertPreference

    load_demo(monkeypatch)
    shop = Advertiser.objects.get(name="Demo Shop US")
    view = limit_view(shop)
    assert view.period == "monthly" and view.amount >= 500 and view.spent < view.amount
    assert not Campaign.objects.filter(advertiser=shop, status="paused_limit").exists()
    pref = AlertPreference.objects.get(advertiser=shop, alert="low_balance", user__username="demo_admin")
    assert pref.amount == Decimal("500.00") and pref.email and pref.in_app


def test_demo_shows_every_billing_state_and_a_code_to_redeem(monkeypatch):
    """Issue 3 and 4 demo data: a promo code a fresh account can redeem, an automatic account near its
    threshold, one whose last payment failed, last month's invoice."""
    from billing.models import Bill, LedgerAccount, Purpose
    from promotions.models import Enrollment, Program
    from promotions.programs import enrollment_create

    load_demo(monkeypatch)
    apparel = Advertiser.objects.get(name="Demo Apparel Co")
    accrued = LedgerAccount.objects.get(advertiser=apparel, purpose=Purpose.ACCRUED).balance
    assert apparel.billing_threshold * Decimal("0.85") <= accrued < apparel.billing_threshold
    outdoor = Advertiser.objects.get(name="Demo Outdoor Gear")
    failed = Bill.objects.get(advertiser=outdoor, status="failed")
    assert "declined" in failed.last_error and outdoor.failed_payments == 1
    assert Bill.objects.filter(advertiser__business_center__name="Demo Agency BC", kind="monthly_invoice").exists()
    startup = Advertiser.objects.get(name="Demo Startup Lab")
    enrollment = enrollment_create(advertiser=startup, code="welcome100")
    assert enrollment.program == Program.objects.get(code="WELCOME100")
    assert Enrollment.objects.filter(advertiser__business_center__name="Demo Agency BC").count() >= 3



def month_of(adv, end):
    """[1st of the month before `end`, `end`) at local midnight in the account's time zone; `end`
    is itself a local 1st (or any moment of the month after the one wanted)."""
    from datetime import datetime, time

    tz = adv.tz
    first_this = end.astimezone(tz).date().replace(day=1)
    first_prev = (first_this - timedelta(days=1)).replace(day=1)
    return datetime.combine(first_prev, time(0), tzinfo=tz), datetime.combine(first_this, time(0), tzinfo=tz)


def own_money_spend(adv, start, end) -> tuple[Decimal, Decimal]:
    """(gross spend, part paid by credit) of the charges that occurred in [start, end)."""
    gross = SpendEvent.objects.filter(advertiser=adv, occurred_at__gte=start, occurred_at__lt=end).aggregate(
        s=Sum("amount"))["s"] or Decimal(0)
    credits = LedgerEntry.objects.filter(
        account__advertiser=adv, account__purpose=Purpose.PROMO_CREDIT, side=DEBIT, transaction__kind=TxKind.CHARGE,
        transaction__occurred_at__gte=start, transaction__occurred_at__lt=end,
    ).aggregate(s=Sum("amount"))["s"] or Decimal(0)
    return gross, credits


# The demo loaded now, and as of moments where 30 days of history alone would not reach back into
# last month (Singapore time: late on the 31st, just after midnight on the 31st, late on the 30th),
# and one where it reaches back into the month before last (2 March, after a 28-day February).
DEMO_MOMENTS = {
    "now": None,
    "31st_late": "2026-10-31T15:00:00+00:00",
    "31st_early": "2026-08-30T16:30:00+00:00",
    "30th_late": "2026-07-30T14:30:00+00:00",
    "2_march": "2026-03-01T18:00:00+00:00",
}


@pytest.mark.parametrize("moment", DEMO_MOMENTS.values(), ids=DEMO_MOMENTS.keys())
def test_r27_demo_invoicing_advertiser_always_has_last_months_invoice(moment, monkeypatch):
    from datetime import datetime

    from django.db import transaction

    from portal.management.commands.load_demo import demo_load

    # given the demo, loaded now or as of a moment late in a month
    if moment is None:
        load_demo(monkeypatch)
        now = timezone.now()
    else:
        now = datetime.fromisoformat(moment)
        with transaction.atomic():
            demo_load(now=now)
    invoiced = Advertiser.objects.get(name="Demo Games Studio", billing_method="monthly_invoice")
    start, end = month_of(invoiced, now)

    # then it has an invoice for the previous calendar month in its time zone, issued on the 1st
    # at local midnight, due 30 days later, open
    invoice = Bill.objects.get(advertiser=invoiced, kind="monthly_invoice", period_end=end)
    assert (invoice.period_start, invoice.issued_at, invoice.status) == (start, end, "open")
    assert invoice.due_at == end + timedelta(days=30)
    assert invoice.number.startswith("ADC-") and len(invoice.number) == len("ADC-000001")
    # and its amount is that month's spend net of the credits that paid part of it
    gross, credits = own_money_spend(invoiced, start, end)
    assert gross > 0 and credits > 0
    assert (invoice.gross_spend, invoice.credits_applied, invoice.amount) == (gross, credits, gross - credits)
    # and spend of any earlier month of the history is on that month's own invoice, as the job
    # would have issued it on the 1st: every invoice covers exactly its month
    invoices = list(Bill.objects.filter(advertiser=invoiced, kind="monthly_invoice").order_by("period_end"))
    assert invoices[-1] == invoice
    for bill in invoices:
        assert (bill.period_start, bill.issued_at) == (month_of(invoiced, bill.period_end)[0], bill.period_end)
        gross, credits = own_money_spend(invoiced, bill.period_start, bill.period_end)
        assert bill.amount == gross - credits > 0
    first_spend = SpendEvent.objects.filter(advertiser=invoiced).aggregate(m=Min("occurred_at"))["m"]
    assert first_spend >= invoices[0].period_start
