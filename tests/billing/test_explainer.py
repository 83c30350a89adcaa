"""The charge explainer (SPEC R48): for every credit, `paid` or the first reason it did not pay.

A hand-made account shows each code once; then random accounts (credits of every kind and
restriction, frozen or not, charges booked through `spend_record_batch`) are explained and checked
against a computation written here from the SPEC text — reasons in the order of
docs/decisions/0035-insight.md, balances kept by the reference model — and the paid parts against
the stored allocation.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.explainer import charge_explain
from billing.models import SpendEvent
from billing.spend import allocations_for, spend_record_batch
from portal.services import advertiser_create, campaign_create
from promotions.credits import credit_assign, credit_grant
from promotions.freeze import credit_freeze, credit_unfreeze
from tests.factories import AdvertiserFactory, CampaignFactory, deposit, grant
from tests.promotions.promotions_helpers import bulk_credits
from tests.reference_model import RefAccount, RefCampaign, RefCredit

pytestmark = pytest.mark.django_db

D = Decimal
NOW = timezone.now().replace(microsecond=0)
T0 = NOW - timedelta(days=5)


def book(adv, campaign, amount, at, *, kind="ad_spend", event_id):
    spend_record_batch(events=[{"event_id": event_id, "advertiser_id": adv.pk, "campaign_id": campaign.pk,
                                "amount": amount, "currency": adv.currency, "occurred_at": at.isoformat(),
                                "kind": kind}])
    return SpendEvent.objects.get(event_id=event_id)


def reasons(explanation) -> dict:
    return {c.credit_id: (c.reason, c.paid) for c in explanation.credits}


def test_r48_every_code_on_a_hand_made_account():
    adv = AdvertiserFactory()
    deposit(adv, "1000.00", key="x")
    shop = CampaignFactory(advertiser=adv, name="Shop", objective="PRODUCT_SALES", product_source="TIKTOK_SHOP")
    other = CampaignFactory(advertiser=adv, name="Other", objective="TRAFFIC")
    at = NOW - timedelta(days=1)
    # given credits that each fail one check for a $50 charge on the Shop campaign at `at`
    soon = grant(adv, "discount", "100.00", percent="10", valid_from=T0, expires_at=NOW + timedelta(days=3))
    later = grant(adv, "discount", "100.00", percent="20", valid_from=T0, expires_at=NOW + timedelta(days=9))
    coupon = grant(adv, "assignable", "20.00", valid_from=T0, expires_at=NOW + timedelta(days=4))
    credit_assign(credit=coupon, campaign_ids=[shop.pk])
    unassigned = grant(adv, "assignable", "20.00", valid_from=T0)
    free = grant(adv, "free", "30.00", valid_from=T0, expires_at=NOW + timedelta(days=5))
    spare = grant(adv, "free", "30.00", valid_from=T0, expires_at=NOW + timedelta(days=6))
    future = grant(adv, "free", "30.00", valid_from=NOW - timedelta(hours=1))
    expired = grant(adv, "free", "30.00", valid_from=T0, expires_at=at - timedelta(hours=1))
    reach = grant(adv, "free", "30.00", valid_from=T0, eligible_objectives=["REACH"])
    catalog = grant(adv, "free", "30.00", valid_from=T0, eligible_product_source="CATALOG")
    ev = book(adv, shop, "50.00", at, event_id="hand-1")
    x = charge_explain(event=ev)
    # then the discount expiring soonest took 10% ($5), the coupon $20, the first free credit the
    # last $25, and every other credit says why not
    assert reasons(x) == {
        soon.pk: ("paid", D("5.00")), later.pk: ("one_discount_per_charge", 0), coupon.pk: ("paid", D("20.00")),
        unassigned.pk: ("not_assigned", 0), free.pk: ("paid", D("25.00")), spare.pk: ("nothing_left_to_pay", 0),
        future.pk: ("not_valid_yet", 0), expired.pk: ("expired", 0), reach.pk: ("objective_not_eligible", 0),
        catalog.pk: ("product_source_not_eligible", 0),
    }
    assert x.allocation.cash == 0 and x.credit_paid == D("50.00")
    # a second charge after the coupon is used up, and a fee
    ev2 = book(adv, shop, "30.00", at + timedelta(minutes=1), event_id="hand-2")
    got = reasons(charge_explain(event=ev2))
    assert got[coupon.pk] == ("used_up", 0) and got[free.pk] == ("paid", D("5.00"))
    assert got[spare.pk] == ("paid", D("22.00"))  # 30 − 10% discount 3 − 5
    fee = book(adv, other, "5.00", at + timedelta(minutes=2), kind="fee", event_id="hand-3")
    assert {r for r, _ in reasons(charge_explain(event=fee)).values()} == {"fee_not_payable"}
    # a discount whose cap is reached, and a frozen account
    capped = AdvertiserFactory()
    camp = CampaignFactory(advertiser=capped)
    d = grant(capped, "discount", "1.00", percent="50", valid_from=T0)
    book(capped, camp, "4.00", at, event_id="cap-1")
    assert reasons(charge_explain(event=book(capped, camp, "4.00", at, event_id="cap-2")))[d.pk] == (
        "discount_cap_reached", 0)
    credit_freeze(advertiser=capped, reason="risk")
    f = reasons(charge_explain(event=book(capped, camp, "4.00", at, event_id="cap-3")))
    assert f[d.pk] == ("frozen", 0)
    # and the explanation of the first charge is unchanged by what came after (history replayed)
    assert reasons(charge_explain(event=SpendEvent.objects.get(event_id="cap-1")))[d.pk] == ("paid", D("1.00"))


def test_r48_a_credit_issued_after_the_charge_was_booked_was_not_valid_yet():
    adv = AdvertiserFactory()
    camp = CampaignFactory(advertiser=adv)
    ev = book(adv, camp, "10.00", NOW - timedelta(days=2), event_id="late-credit")
    late = grant(adv, "free", "50.00", valid_from=NOW - timedelta(days=3))  # valid from before the charge
    assert reasons(charge_explain(event=ev)) == {late.pk: ("not_valid_yet", 0)}


@pytest.mark.parametrize("n", [10, 1000])
def test_r48_constant_queries_whatever_the_number_of_credits(n):
    adv = AdvertiserFactory()
    camp = CampaignFactory(advertiser=adv)
    bulk_credits(adv, n, campaign=camp)
    spend_record_batch(events=[{"event_id": f"q{n}-{i}", "advertiser_id": adv.pk, "campaign_id": camp.pk,
                                "amount": "1.00", "currency": "USD", "occurred_at": NOW.isoformat()}
                               for i in range(n)])
    ev = SpendEvent.objects.get(event_id=f"q{n}-{n // 2}")
    with CaptureQueriesContext(connection) as ctx:
        x = charge_explain(event=ev)
    assert len(ctx.captured_queries) == 7
    assert len(x.credits) == n and sum(c.paid for c in x.credits) == D("1.00")


# --- random accounts -----------------------------------------------------------------------------

OBJECTIVES = ["REACH", "TRAFFIC", "PRODUCT_SALES"]
SOURCES = ["NONE", "TIKTOK_SHOP", "CATALOG"]
MONEY = st.integers(1, 4000).map(lambda n: D(n) / 100)


@st.composite
def credit_specs(draw):
    kind = draw(st.sampled_from(["free", "assignable", "discount"]))
    start = draw(st.integers(0, 72))
    return {
        "kind": kind,
        "amount": draw(MONEY),
        "percent": D(draw(st.integers(1, 100))) if kind == "discount" else None,
        "valid_from": T0 + timedelta(hours=start),
        "expires_at": T0 + timedelta(hours=start + draw(st.integers(1, 96))),
        "objectives": draw(st.one_of(st.just([]), st.lists(st.sampled_from(OBJECTIVES), min_size=1, max_size=2,
                                                           unique=True))),
        "product_source": draw(st.sampled_from(["", "", *SOURCES])),
        "campaigns": draw(st.sets(st.integers(0, 2))) if kind == "assignable" else set(),
    }


@st.composite
def scenarios(draw):
    campaigns = [(draw(st.sampled_from(OBJECTIVES)), draw(st.sampled_from(SOURCES))) for _ in range(3)]
    credits = draw(st.lists(credit_specs(), min_size=1, max_size=5))
    batches = draw(st.lists(st.lists(st.tuples(MONEY, st.integers(0, 2), st.integers(0, 100 * 60),
                                               st.sampled_from(["ad_spend"] * 5 + ["fee"])),
                                     min_size=1, max_size=6), min_size=1, max_size=4))
    freezes = draw(st.lists(st.booleans(), min_size=len(batches), max_size=len(batches)))  # before each batch
    return campaigns, credits, batches, freezes


def expected_reason(c: RefCredit, *, left, frozen, amount, kind, campaign: RefCampaign, at, paid, discounts):
    """R48 from the SPEC, in the documented order."""
    if kind == "fee":
        return "fee_not_payable"
    if at < c.valid_from:
        return "not_valid_yet"
    if frozen:
        return "frozen"
    if left <= 0:
        return "discount_cap_reached" if c.kind == "discount" else "used_up"
    if at >= c.expires_at:
        return "expired"
    if c.objectives and campaign.objective not in c.objectives:
        return "objective_not_eligible"
    if c.product_source and campaign.product_source != c.product_source:
        return "product_source_not_eligible"
    if c.kind == "assignable" and campaign.id not in c.campaigns:
        return "not_assigned"
    if c.id in paid:
        return "paid"
    if c.kind == "discount" and any(d != c.id for d in discounts[:1]):
        return "one_discount_per_charge"  # an eligible discount expiring sooner took the charge
    return "nothing_left_to_pay"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(scenarios())
def test_r48_reasons_agree_with_an_independent_computation_and_paid_parts_with_the_ledger(scenario):
    campaign_specs, credit_specs_, batches, freezes = scenario
    # given a fresh account (hypothesis examples share the test's database)
    adv = advertiser_create(name="explain", currency="USD", billing_method="automatic")
    model = RefAccount(currency="USD", billing_method="automatic")
    camps = []
    for objective, source in campaign_specs:
        camp = campaign_create(advertiser=adv, name="c", objective=objective, product_source=source)
        camps.append(camp)
        model.campaigns[camp.pk] = RefCampaign(camp.pk, objective, source)
    for n, s in enumerate(credit_specs_):
        credit = credit_grant(advertiser=adv, kind=s["kind"], amount=str(s["amount"]), reason="explain",
                              idempotency_key=f"e{n}", percent=s["percent"], valid_from=s["valid_from"],
                              expires_at=s["expires_at"], eligible_objectives=s["objectives"],
                              eligible_product_source=s["product_source"])
        ids = {camps[i].pk for i in s["campaigns"]}
        if ids:
            credit_assign(credit=credit, campaign_ids=sorted(ids))
        model.credits[credit.pk] = RefCredit(
            id=credit.pk, kind=s["kind"], left=s["amount"], valid_from=s["valid_from"], expires_at=s["expires_at"],
            percent=s["percent"], objectives=frozenset(s["objectives"]), product_source=s["product_source"],
            campaigns=ids)
    expected = {}
    for b, (batch, frozen) in enumerate(zip(batches, freezes)):
        # the account's credit frozen (or unfrozen) before some batches
        if frozen == model.credit_takes_part:
            (credit_freeze if frozen else credit_unfreeze)(advertiser=adv, reason="explain")
            model.credit_takes_part = not frozen
        events = []
        for k, (amount, camp_i, minutes, kind) in enumerate(batch):
            at = T0 + timedelta(minutes=minutes)
            campaign = model.campaigns[camps[camp_i].pk]
            left = {pk: c.left for pk, c in model.credits.items()}
            eligible_discounts = sorted(
                (c for c in model.credits.values() if c.kind == "discount" and model._eligible(c, campaign, at)),
                key=model._order)
            pay = model.charge(amount=amount, campaign_id=campaign.id, at=at, kind=kind)
            paid = {pk: a for pk, a in pay.coupons + pay.credits}
            if pay.discount:
                paid[pay.discount[0]] = pay.discount[1]
            event_id = f"x{adv.pk}-{b}-{k}"
            expected[event_id] = {
                pk: (expected_reason(c, left=left[pk], frozen=not model.credit_takes_part, amount=amount, kind=kind,
                                     campaign=campaign, at=at, paid=paid,
                                     discounts=[d.id for d in eligible_discounts]), paid.get(pk, D(0)))
                for pk, c in model.credits.items()
            }
            events.append({"event_id": event_id, "advertiser_id": adv.pk, "campaign_id": campaign.id,
                           "amount": str(amount), "currency": "USD", "occurred_at": at.isoformat(), "kind": kind})
        spend_record_batch(events=events)

    # when every charge is explained
    for event in SpendEvent.objects.filter(advertiser=adv).order_by("pk"):
        x = charge_explain(event=event)
        # then each credit's reason is the independent one, and what it paid is what it paid
        assert reasons(x) == expected[event.event_id], event.event_id
        # and the paid parts are exactly the stored allocation
        stored = allocations_for([event])[event.event_id]
        parts = {pk: a for pk, a in stored.coupons + stored.credits}
        if stored.discount_credit_id:
            parts[stored.discount_credit_id] = stored.discount
        assert {c.credit_id: c.paid for c in x.credits if c.reason == "paid"} == parts
        assert x.allocation == stored
