"""Spend through the real services (SPEC R6–R15): the seed examples end to end, on PostgreSQL."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing.deposits import deposit_create
from billing.models import LedgerEntry, LedgerTransaction, Purpose, SpendEvent
from billing.selectors import advertiser_balances
from billing.spend import spend_record, spend_record_batch
from portal.errors import BadInput, Conflict
from portal.models import Advertiser, Campaign
from promotions.credits import credit_assign
from promotions.models import Credit
from tests.factories import AdvertiserFactory, CampaignFactory, deposit, grant
from tests.reference_model import ledger_problems, purpose_balance

pytestmark = pytest.mark.django_db
D = Decimal


def ago(**kw):
    return timezone.now() - timedelta(**kw)


def balances(adv):
    adv.refresh_from_db()
    return advertiser_balances(advertiser=adv)


def statuses(adv):
    return sorted(Campaign.objects.filter(advertiser=adv).values_list("status", flat=True))


# --- R7: the seed example ------------------------------------------------------------------------


def test_r7_fifty_percent_off_up_to_100_covers_half_of_each_charge_until_100_then_full_price(campaign, spend_event):
    # given "50% off, up to $100" and $1,000 of cash
    adv = campaign.advertiser
    disc = grant(adv, "discount", "100.00", percent="50")
    deposit(adv, "1000.00")
    # when five charges of $60 occur
    allocs = [spend_record(event=spend_event(campaign, "60.00")).allocation for _ in range(5)]
    # then the discount pays half of each until it has paid $100 in total, then billing is full price
    assert [a.discount for a in allocs] == [D("30.00"), D("30.00"), D("30.00"), D("10.00"), D("0")]
    assert [a.cash for a in allocs] == [D("30.00"), D("30.00"), D("30.00"), D("50.00"), D("60.00")]
    assert [a.discount_credit_id for a in allocs] == [disc.pk] * 4 + [None]
    disc.refresh_from_db()
    assert (disc.remaining, disc.status) == (D("0"), "used_up")
    bal = balances(adv)
    assert (bal.cash_balance, bal.discount_cap_remaining) == (D("800.00"), D("0"))
    # and the ledger holds it: the discount's account paid $100 of revenue, cash $200
    assert purpose_balance(adv.pk, Purpose.REVENUE) == D("300.00")
    assert ledger_problems() == []


def test_r7_discount_rounds_down_and_the_advertiser_pays_the_odd_cent(campaign, spend_event):
    adv = campaign.advertiser
    grant(adv, "discount", "100.00", percent="50")
    deposit(adv, "100.00")
    a = spend_record(event=spend_event(campaign, "33.33")).allocation
    assert (a.discount, a.cash) == (D("16.66"), D("16.67"))


# --- R10: free credit before cash; the whole order ------------------------------------------------


def test_r13_free_credit_is_used_before_cash(campaign, spend_event):
    adv = campaign.advertiser
    free = grant(adv, "free", "25.00")
    deposit(adv, "100.00")
    a = spend_record(event=spend_event(campaign, "40.00")).allocation
    assert (a.credits, a.cash, a.arrears) == ([(free.pk, D("25.00"))], D("15.00"), D("0"))
    bal = balances(adv)
    assert (bal.credit_balance, bal.cash_balance) == (D("0"), D("85.00"))
    free.refresh_from_db()
    assert free.status == "used_up"


def test_r10_discount_then_coupon_then_free_credits_by_expiry_start_and_id_then_cash(campaign, spend_event):
    # given, for one campaign: two discounts, two coupons, three free credits, and cash
    adv = campaign.advertiser
    now = timezone.now()
    disc_late = grant(adv, "discount", "500.00", percent="50", expires_at=now + timedelta(days=60))
    disc_soon = grant(adv, "discount", "500.00", percent="10", expires_at=now + timedelta(days=5))
    coupon_late = grant(adv, "assignable", "7.00", expires_at=now + timedelta(days=40))
    coupon_soon = grant(adv, "assignable", "3.00", expires_at=now + timedelta(days=4))
    for c in (coupon_late, coupon_soon):
        credit_assign(credit=c, campaign_ids=[campaign.pk])
    end = now + timedelta(days=9)
    free_c = grant(adv, "free", "10.00", expires_at=now + timedelta(days=30))
    free_b = grant(adv, "free", "10.00", valid_from=ago(days=1), expires_at=end)
    free_a = grant(adv, "free", "10.00", valid_from=ago(days=2), expires_at=end)
    free_a2 = grant(adv, "free", "10.00", valid_from=ago(days=2), expires_at=end)
    deposit(adv, "100.00")
    # when a charge of $200 occurs
    a = spend_record(event=spend_event(campaign, "200.00")).allocation
    # then: the soonest-expiring discount only (10% = 20), coupons by expiry, free credits by expiry,
    # then earliest start, then lowest id; the 200 − 20 − 10 − 40 = 130 left: 100 cash, 30 arrears
    assert (a.discount, a.discount_credit_id) == (D("20.00"), disc_soon.pk)
    assert a.coupons == [(coupon_soon.pk, D("3.00")), (coupon_late.pk, D("7.00"))]
    assert a.credits == [(free_a.pk, D("10.00")), (free_a2.pk, D("10.00")), (free_b.pk, D("10.00")),
                         (free_c.pk, D("10.00"))]
    assert (a.cash, a.arrears) == (D("100.00"), D("30.00"))
    assert Credit.objects.get(pk=disc_late.pk).remaining == D("500.00")
    # and the charge's ledger transaction has one debit per part, crediting revenue with 200
    tx = SpendEvent.objects.get(advertiser=adv).transaction
    debits = sorted((e.account.purpose, e.amount) for e in tx.entries.filter(side="D").select_related("account"))
    assert debits == sorted([("credit", D("20")), ("credit", D("3")), ("credit", D("7"))] + [("credit", D("10"))] * 4
                            + [("cash", D("100")), ("arrears", D("30"))])
    assert [(e.account.purpose, e.amount) for e in tx.entries.filter(side="C").select_related("account")] == [
        ("revenue", D("20"))] + [("revenue", D(x)) for x in ("3", "7", "10", "10", "10", "10", "100", "30")]
    assert ledger_problems() == []


# --- R6: assignable coupons ------------------------------------------------------------------------


def test_r6_a_coupon_pays_nothing_until_assigned_then_only_its_campaigns(spend_event):
    # given a coupon and two campaigns, and cash
    adv = AdvertiserFactory()
    camp_a, camp_b = CampaignFactory(advertiser=adv), CampaignFactory(advertiser=adv)
    coupon = grant(adv, "assignable", "50.00")
    deposit(adv, "100.00")
    # when a charge occurs before it is assigned: cash pays
    before = spend_record(event=spend_event(camp_a, "10.00")).allocation
    assert (before.coupons, before.cash) == ([], D("10.00"))
    # when an admin assigns it to campaign A
    credit_assign(credit=coupon, campaign_ids=[camp_a.pk])
    on_b = spend_record(event=spend_event(camp_b, "10.00")).allocation
    on_a = spend_record(event=spend_event(camp_a, "10.00")).allocation
    # then it pays campaign A's charge only
    assert (on_b.coupons, on_b.cash) == ([], D("10.00"))
    assert (on_a.coupons, on_a.cash) == ([(coupon.pk, D("10.00"))], D("0"))
    # and unassigning it stops it again
    credit_assign(credit=coupon, campaign_ids=[])
    assert spend_record(event=spend_event(camp_a, "5.00")).allocation.coupons == []
    assert Credit.objects.get(pk=coupon.pk).remaining == D("40.00")


# --- R9: validity by occurred_at -------------------------------------------------------------------


def test_r9_spend_that_occurred_inside_validity_uses_the_credit_even_when_processed_after_expiry(campaign, spend_event):
    # given a credit that expired 10 minutes ago (not yet swept)
    adv = campaign.advertiser
    credit = grant(adv, "free", "50.00", valid_from=ago(days=3), expires_at=ago(minutes=10))
    # when a late event for spend that occurred 20 minutes ago arrives now
    late = spend_record(event=spend_event(campaign, "8.00", occurred_at=ago(minutes=20))).allocation
    # and one for spend that occurred 5 minutes ago, after the expiry
    after = spend_record(event=spend_event(campaign, "8.00", occurred_at=ago(minutes=5))).allocation
    # then only the first is paid by the credit: judged by occurred_at, not processing time
    assert late.credits == [(credit.pk, D("8.00"))]
    assert (after.credits, after.arrears) == ([], D("8.00"))


def test_r9_spend_before_valid_from_does_not_use_the_credit_and_expiry_is_exclusive(campaign, spend_event):
    adv = campaign.advertiser
    start, end = ago(hours=5), ago(hours=2)
    credit = grant(adv, "free", "50.00", valid_from=start, expires_at=end)
    deposit(adv, "100.00")
    results = [
        spend_record(event=spend_event(campaign, "1.00", occurred_at=t)).allocation.credits
        for t in (start - timedelta(microseconds=1), start, end - timedelta(microseconds=1), end)
    ]
    assert results == [[], [(credit.pk, D("1.00"))], [(credit.pk, D("1.00"))], []]


def test_r9_an_event_from_the_future_is_refused(campaign, spend_event):
    grant(campaign.advertiser, "free", "50.00", expires_at=timezone.now() + timedelta(days=9))
    with pytest.raises(BadInput) as e:
        spend_record(event=spend_event(campaign, "1.00", occurred_at=timezone.now() + timedelta(hours=2)))
    assert e.value.code == "invalid_timestamp"
    assert SpendEvent.objects.count() == 0


# --- R8: fees --------------------------------------------------------------------------------------


def test_r8_a_fee_is_never_paid_by_credit(campaign, spend_event):
    adv = campaign.advertiser
    grant(adv, "free", "50.00")
    grant(adv, "discount", "50.00", percent="50")
    coupon = grant(adv, "assignable", "50.00")
    credit_assign(credit=coupon, campaign_ids=[campaign.pk])
    deposit(adv, "20.00")
    a = spend_record(event=spend_event(campaign, "30.00", kind="fee")).allocation
    assert (a.discount, a.coupons, a.credits, a.cash, a.arrears) == (D("0"), [], [], D("20.00"), D("10.00"))
    assert purpose_balance(adv.pk, Purpose.FEE_REVENUE) == D("30.00")
    assert purpose_balance(adv.pk, Purpose.REVENUE) == D("0")
    assert [c.remaining for c in Credit.objects.filter(advertiser=adv)] == [D("50.00")] * 3
    assert LedgerTransaction.objects.get(spend_event__isnull=False).kind == "fee"


# --- R5: eligibility -------------------------------------------------------------------------------


def test_r5_credit_pays_only_campaigns_of_its_objectives_and_product_source(spend_event):
    adv = AdvertiserFactory()
    reach = CampaignFactory(advertiser=adv, objective="REACH")
    traffic = CampaignFactory(advertiser=adv, objective="TRAFFIC")
    shop_sales = CampaignFactory(advertiser=adv, objective="PRODUCT_SALES", product_source="TIKTOK_SHOP")
    catalog_sales = CampaignFactory(advertiser=adv, objective="PRODUCT_SALES", product_source="CATALOG")
    reach_only = grant(adv, "free", "50.00", eligible_objectives=["REACH"])
    shop_only = grant(adv, "free", "50.00", eligible_product_source="TIKTOK_SHOP")
    deposit(adv, "100.00")
    paid = {c.name: spend_record(event=spend_event(c, "2.00")).allocation.credits
            for c in (reach, traffic, shop_sales, catalog_sales)}
    assert paid == {reach.name: [(reach_only.pk, D("2.00"))], traffic.name: [],
                    shop_sales.name: [(shop_only.pk, D("2.00"))], catalog_sales.name: []}


# --- R12: frozen, suspended, closed ---------------------------------------------------------------


@pytest.mark.parametrize(
    "change", [{"credit_frozen": True}, {"status": "suspended"}, {"status": "closed"}],
    ids=["frozen", "suspended", "closed"],
)
def test_r12_credits_of_a_frozen_suspended_or_closed_account_take_no_part(change, campaign, spend_event):
    # given free credit, a discount, an assigned coupon and $5 of cash
    adv = campaign.advertiser
    grant(adv, "free", "50.00")
    grant(adv, "discount", "50.00", percent="50")
    coupon = grant(adv, "assignable", "50.00")
    credit_assign(credit=coupon, campaign_ids=[campaign.pk])
    deposit(adv, "20.00")
    spend_record(event=spend_event(campaign, "15.00", kind="fee"))  # leaves $5 cash
    # when the account's credit is frozen / the account is suspended / closed
    Advertiser.objects.filter(pk=adv.pk).update(**change)
    a = spend_record(event=spend_event(campaign, "12.00")).allocation
    # then spend is still recorded (delivery happened) but only money pays it
    assert (a.discount, a.coupons, a.credits, a.cash, a.arrears) == (D("0"), [], [], D("5.00"), D("7.00"))
    assert [c.remaining for c in Credit.objects.filter(advertiser=adv)] == [D("50.00")] * 3
    # and once it takes part again, credit pays
    Advertiser.objects.filter(pk=adv.pk).update(credit_frozen=False, status="active")
    assert spend_record(event=spend_event(campaign, "10.00")).allocation.discount == D("5.00")


def test_r12_a_frozen_or_pending_credit_takes_no_part(campaign, spend_event):
    adv = campaign.advertiser
    frozen = grant(adv, "free", "50.00")
    grant(adv, "free", "50.00", status="pending")
    Credit.objects.filter(pk=frozen.pk).update(status="frozen")
    a = spend_record(event=spend_event(campaign, "4.00")).allocation
    assert (a.credits, a.arrears) == ([], D("4.00"))


# --- R13: manual payment, arrears and recovery -----------------------------------------------------


def test_r13_arrears_when_cash_runs_out_then_the_next_deposit_settles_them_and_resumes(spend_event):
    # given a manual account with two active campaigns, one manually paused, and $30 of cash
    adv = AdvertiserFactory()
    c1, c2, c3 = (CampaignFactory(advertiser=adv) for _ in range(3))
    Campaign.objects.filter(pk=c3.pk).update(status="paused")
    deposit(adv, "30.00")
    # when it spends $50
    a = spend_record(event=spend_event(c1, "50.00")).allocation
    # then cash pays 30, 20 is arrears, and billing pauses the active campaigns
    assert (a.cash, a.arrears) == (D("30.00"), D("20.00"))
    bal = balances(adv)
    assert (bal.cash_balance, bal.arrears) == (D("0"), D("20.00"))
    assert statuses(adv) == ["paused", "paused_funds", "paused_funds"]
    # when spend still arrives while paused (late events), it adds to arrears — nothing is lost
    spend_record(event=spend_event(c2, "5.00"))
    assert balances(adv).arrears == D("25.00")
    # when a deposit smaller than the arrears arrives, it all goes to arrears and delivery stays paused
    deposit_create(advertiser=adv, amount="20.00", idempotency_key="d-small")
    bal = balances(adv)
    assert (bal.cash_balance, bal.arrears) == (D("0"), D("5.00"))
    assert statuses(adv) == ["paused", "paused_funds", "paused_funds"]
    # when the next deposit covers them, arrears are settled first, the rest is cash, campaigns resume
    deposit_create(advertiser=adv, amount="100.00", idempotency_key="d-big")
    bal = balances(adv)
    assert (bal.cash_balance, bal.arrears) == (D("95.00"), D("0"))
    assert statuses(adv) == ["active", "active", "paused"]
    # and the ledger holds the spend, the arrears and the recovery
    assert purpose_balance(adv.pk, Purpose.REVENUE) == D("55.00")
    assert purpose_balance(adv.pk, Purpose.SETTLEMENT) == D("150.00")
    arrears_moves = sorted(
        (e.transaction.kind, e.side, e.amount)
        for e in LedgerEntry.objects.filter(account__advertiser=adv, account__purpose="arrears").select_related("transaction")
    )
    assert arrears_moves == [("charge", "D", D("5")), ("charge", "D", D("20")), ("deposit", "C", D("5")),
                             ("deposit", "C", D("20"))]
    assert ledger_problems() == []


def test_r13_credit_covers_a_charge_so_no_arrears_and_no_pause(campaign, spend_event):
    adv = campaign.advertiser
    grant(adv, "free", "10.00")
    a = spend_record(event=spend_event(campaign, "10.00")).allocation
    assert (a.arrears, statuses(adv)) == (D("0"), ["active"])


# --- R15: idempotency by event_id ------------------------------------------------------------------


def test_r15_a_replay_returns_the_first_allocation_and_changes_nothing(campaign, spend_event):
    # given a charge paid partly by credit and partly by cash
    adv = campaign.advertiser
    credit = grant(adv, "free", "4.00")
    deposit(adv, "100.00")
    ev = spend_event(campaign, "10.00")
    first = spend_record(event=ev)
    ledger_rows = (LedgerTransaction.objects.count(), LedgerEntry.objects.count())
    # when the state changes (more credit) and the same event is sent again
    grant(adv, "free", "50.00")
    ledger_rows = (LedgerTransaction.objects.count(), LedgerEntry.objects.count())
    again = spend_record(event=ev)
    # then it is a duplicate with the first result, rebuilt from the ledger; nothing new is booked
    assert (first.status, again.status) == ("applied", "duplicate")
    assert again.allocation.credits == [(credit.pk, D("4.00"))] == first.allocation.credits
    assert again.allocation.cash == D("6.00") == first.allocation.cash
    assert (LedgerTransaction.objects.count(), LedgerEntry.objects.count()) == ledger_rows
    assert SpendEvent.objects.count() == 1
    assert balances(adv).cash_balance == D("94.00")


def test_r15_the_same_event_id_with_other_content_is_a_conflict_and_changes_nothing(spend_event):
    adv = AdvertiserFactory()
    camp, other_camp = CampaignFactory(advertiser=adv), CampaignFactory(advertiser=adv)
    other_adv_camp = CampaignFactory()
    t = ago(minutes=3)
    ev = spend_event(camp, "10.00", occurred_at=t, event_id="evt-1")
    spend_record(event=ev)
    rows = (LedgerTransaction.objects.count(), LedgerEntry.objects.count(), SpendEvent.objects.count())
    variants = [
        {**ev, "amount": "10.01"},
        {**ev, "campaign_id": str(other_camp.pk)},
        {**ev, "occurred_at": (t + timedelta(seconds=1)).isoformat()},
        {**ev, "kind": "fee"},
        spend_event(other_adv_camp, "10.00", occurred_at=t, event_id="evt-1"),
    ]
    for variant in variants:
        with pytest.raises(Conflict) as e:
            spend_record(event=variant)
        assert e.value.code == "event_id_conflict"
        assert e.value.status == 409
    assert (LedgerTransaction.objects.count(), LedgerEntry.objects.count(), SpendEvent.objects.count()) == rows
    # the same instant written with another offset, and the same amount written differently, are the same event
    same = {**ev, "amount": "10.0", "occurred_at": t.astimezone(timezone.get_fixed_timezone(120)).isoformat()}
    assert spend_record(event=same).status == "duplicate"


def test_r15_duplicates_inside_one_batch_are_booked_once(campaign, spend_event):
    deposit(campaign.advertiser, "100.00")
    ev = spend_event(campaign, "7.00")
    other = spend_event(campaign, "1.00")
    results = spend_record_batch(events=[ev, other, dict(ev)])
    assert [r.status for r in results] == ["applied", "applied", "duplicate"]
    assert results[2].allocation.cash == D("7.00") == results[0].allocation.cash
    assert SpendEvent.objects.count() == 2
    assert balances(campaign.advertiser).cash_balance == D("92.00")


def test_r15_a_batch_repeating_an_id_with_other_content_is_refused_whole(campaign, spend_event):
    ev = spend_event(campaign, "7.00")
    with pytest.raises(Conflict) as e:
        spend_record_batch(events=[spend_event(campaign, "1.00"), ev, {**ev, "amount": "8.00"}])
    assert (e.value.code, e.value.details) == ("event_id_conflict", {"index": 2})
    assert (SpendEvent.objects.count(), LedgerTransaction.objects.filter(kind="charge").count()) == (0, 0)


def test_r15_a_batch_mixing_new_events_and_replays(campaign, spend_event):
    deposit(campaign.advertiser, "100.00")
    old = spend_event(campaign, "3.00")
    spend_record(event=old)
    new = spend_event(campaign, "4.00")
    results = spend_record_batch(events=[old, new])
    assert [(r.status, r.allocation.cash) for r in results] == [("duplicate", D("3.00")), ("applied", D("4.00"))]
    assert balances(campaign.advertiser).cash_balance == D("93.00")


# --- batches across advertisers --------------------------------------------------------------------


def test_r11_one_batch_for_two_advertisers_pays_each_from_its_own_funds(spend_event):
    a1, a2 = AdvertiserFactory(), AdvertiserFactory()
    c1, c2 = CampaignFactory(advertiser=a1), CampaignFactory(advertiser=a2)
    credit1 = grant(a1, "free", "5.00")
    deposit(a2, "20.00")
    results = spend_record_batch(events=[spend_event(c2, "8.00"), spend_event(c1, "8.00"), spend_event(c2, "15.00")])
    got = [(r.allocation.credits, r.allocation.cash, r.allocation.arrears) for r in results]
    assert got == [([], D("8.00"), D("0")), ([(credit1.pk, D("5.00"))], D("0"), D("3.00")),
                   ([], D("12.00"), D("3.00"))]
    assert (balances(a1).arrears, balances(a2).arrears, balances(a2).cash_balance) == (D("3.00"), D("3.00"), D("0"))
    assert ledger_problems() == []


# --- input that is refused whole -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patch", "code"),
    [
        ({"advertiser_id": "999999"}, "unknown_advertiser"),
        ({"campaign_id": "OTHER"}, "unknown_campaign"),
        ({"kind": "refund"}, "invalid_event"),
        ({"event_id": ""}, "invalid_event"),
        ({"event_id": "e" * 129}, "invalid_event"),
        ({"occurred_at": "2026-01-01T00:00:00"}, "invalid_timestamp"),
        ({"occurred_at": "yesterday"}, "invalid_timestamp"),
        ({"amount": None}, "invalid_event"),
    ],
)
def test_r15_a_malformed_event_is_refused_with_its_index_and_nothing_is_recorded(campaign, spend_event, patch, code):
    other = CampaignFactory()
    if patch.get("campaign_id") == "OTHER":
        patch = {"campaign_id": str(other.pk)}  # a campaign of another advertiser
    deposit(campaign.advertiser, "50.00")
    good, bad = spend_event(campaign, "1.00"), {**spend_event(campaign, "2.00"), **patch}
    before = (LedgerTransaction.objects.count(), SpendEvent.objects.count())
    with pytest.raises(BadInput) as e:
        spend_record_batch(events=[good, bad])
    assert (e.value.code, e.value.details) == (code, {"index": 1})
    assert (LedgerTransaction.objects.count(), SpendEvent.objects.count()) == before
    assert balances(campaign.advertiser).cash_balance == D("50.00")


@pytest.mark.parametrize(("events", "code"), [([], "invalid_events"), ("x", "invalid_events"),
                                              ([{}] * 1001, "too_many_events")])
def test_r15_a_batch_must_be_a_list_of_1_to_1000_events(events, code):
    with pytest.raises(BadInput) as e:
        spend_record_batch(events=events)
    assert e.value.code == code
