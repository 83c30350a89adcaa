"""Property tests of the money rules (SPEC R7, R9–R15, R23).

(a) Pure: random credits and charges through `billing.waterfall.allocate` — the parts add up, no
    balance goes negative, a discount stays within its percentage and cap, and the independent
    reference model (tests/reference_model.py) pays every charge the same way.
(b) Database: random sequences of grants, coupon assignments, freezes, deposits, batches of
    charges, replays, expiry sweeps and (last) a refund through the real services on PostgreSQL — same allocations as the model, every stored
    balance equals the sum of its entries (recomputed with SQL), every transaction sums to zero,
    no balance is negative, campaigns pause and resume as the model says.
"""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.conf import settings as django_settings
from django.utils import timezone
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from billing.deposits import cash_refund, deposit_create
from billing.models import LedgerTransaction, Purpose, SpendEvent
from billing.money import MINOR_UNITS, round_down
from billing.selectors import advertiser_balances
from billing.spend import spend_record_batch
from billing.waterfall import Charge, CreditState, Funds, allocate
from portal.errors import BusinessError
from portal.models import Advertiser, Campaign
from portal.services import advertiser_create, campaign_create
from promotions.credits import credit_assign, credit_grant
from promotions.expiry import expire_credits
from promotions.freeze import credit_freeze, credit_unfreeze
from promotions.models import Credit
from tests.reference_model import RefAccount, RefCampaign, RefCredit, ledger_problems, normalise, purpose_balance

D = Decimal
T0 = datetime(2026, 1, 5, tzinfo=UTC)
OBJECTIVES = ["REACH", "TRAFFIC", "PRODUCT_SALES"]
SOURCES = ["NONE", "TIKTOK_SHOP", "CATALOG"]


def money(currency: str, min_units: int = 1, max_units: int = 20_000):
    q = D(1).scaleb(-MINOR_UNITS[currency])
    return st.integers(min_units, max_units).map(lambda n: (D(n) * q).quantize(q))


@st.composite
def credit_specs(draw, currency, campaign_ids, *, hours=48, broad=False):
    """A credit as plain data: kind, amount (cap), percent, window in whole hours (ties happen), eligibility.

    `broad`: valid for every campaign through most of the charges' time span (so charges use it)."""
    kind = draw(st.sampled_from(["free", "assignable", "discount"]))
    if broad:
        start = draw(st.integers(0, 4))
        return {
            "kind": kind,
            "amount": draw(money(currency, 100, 5_000)),
            "percent": draw(st.integers(1, 10_000).map(lambda n: D(n) / 100)) if kind == "discount" else None,
            "valid_from": T0 + timedelta(hours=start),
            "expires_at": T0 + timedelta(hours=start + draw(st.integers(40, 100))),
            "objectives": set(),
            "product_source": "",
            "campaigns": draw(st.sets(st.sampled_from(campaign_ids), min_size=1)) if kind == "assignable" else set(),
        }
    start = draw(st.integers(0, hours))
    return {
        "kind": kind,
        "amount": draw(money(currency, 1, 5_000)),
        "percent": draw(st.integers(1, 10_000).map(lambda n: D(n) / 100)) if kind == "discount" else None,
        "valid_from": T0 + timedelta(hours=start),
        "expires_at": T0 + timedelta(hours=start + draw(st.integers(1, 2 * hours))),
        "objectives": draw(st.one_of(st.just(set()), st.sets(st.sampled_from(OBJECTIVES), min_size=1, max_size=2))),
        "product_source": draw(st.sampled_from(["", "", "", *SOURCES])),
        "campaigns": draw(st.sets(st.sampled_from(campaign_ids))) if kind == "assignable" else set(),
    }


@st.composite
def charge_specs(draw, currency, campaign_ids, *, hours=80):
    return {
        "amount": draw(money(currency, 1, 3_000)),
        "campaign": draw(st.sampled_from(campaign_ids)),
        "at": T0 + timedelta(minutes=draw(st.integers(0, hours * 60))),
        "kind": draw(st.sampled_from(["ad_spend"] * 5 + ["fee"])),
    }


# --- (a) pure ------------------------------------------------------------------------------------


@st.composite
def pure_scenarios(draw):
    currency = draw(st.sampled_from(["USD", "JPY", "KWD"]))
    campaigns = {
        cid: (draw(st.sampled_from(OBJECTIVES)), draw(st.sampled_from(SOURCES))) for cid in (11, 12, 13)
    }
    ids = list(campaigns)
    credits = draw(st.lists(st.one_of(credit_specs(currency, ids), credit_specs(currency, ids, broad=True)),
                            min_size=1, max_size=10))
    usable = draw(st.lists(st.sampled_from([True, True, True, False]), min_size=len(credits), max_size=len(credits)))
    charges = draw(st.lists(charge_specs(currency, ids), min_size=2, max_size=12))
    # R9 boundaries: some charges occur exactly when a credit starts or expires, or just before
    edges = [t for c in credits for t in (c["valid_from"], c["expires_at"], c["expires_at"] - timedelta(microseconds=1))]
    for ch in charges:
        if draw(st.integers(0, 2)) == 0:
            ch["at"] = draw(st.sampled_from(edges))
    method = draw(st.sampled_from(["manual", "automatic", "monthly_invoice"]))
    cash = draw(money(currency, 0, 50_000))
    line = draw(money(currency, 0, 50_000))
    return currency, campaigns, credits, usable, charges, method, cash, line


@settings(max_examples=150, deadline=None)
@given(pure_scenarios())
def test_r10_r11_allocate_agrees_with_the_reference_model_and_never_breaks_a_limit(scenario):
    currency, campaigns, specs, usable, charges, method, cash, line = scenario
    # given the same credits in the real waterfall's shape and in the model's
    states = [
        CreditState(id=i + 1, kind=s["kind"], remaining=s["amount"], valid_from=s["valid_from"],
                    expires_at=s["expires_at"], percent=s["percent"], eligible_objectives=tuple(s["objectives"]),
                    eligible_product_source=s["product_source"], campaign_ids=frozenset(s["campaigns"]),
                    usable=usable[i])
        for i, s in enumerate(specs)
    ]
    model = RefAccount(currency=currency, billing_method=method, credit_line_limit=line)
    model.cash = cash
    for cid, (objective, source) in campaigns.items():
        model.campaigns[cid] = RefCampaign(cid, objective, source)
    for i, s in enumerate(specs):
        model.credits[i + 1] = RefCredit(
            id=i + 1, kind=s["kind"], left=s["amount"], valid_from=s["valid_from"], expires_at=s["expires_at"],
            percent=s["percent"], objectives=frozenset(s["objectives"]), product_source=s["product_source"],
            campaigns=set(s["campaigns"]), active=usable[i],
        )
    funds = Funds(billing_method=method, cash=cash, credit_line_available=line)
    caps_before = {c.id: c.remaining for c in states}

    for ch in charges:
        objective, source = campaigns[ch["campaign"]]
        before = {c.id: c.remaining for c in states}
        # when each charge is paid by both, in order
        got = allocate(Charge(ch["amount"], currency, ch["campaign"], objective, source, ch["at"], ch["kind"]),
                       states, funds)
        want = model.charge(amount=ch["amount"], campaign_id=ch["campaign"], at=ch["at"], kind=ch["kind"])

        # then the parts add up to the charge exactly, to the minor unit
        assert got.total() == ch["amount"]
        parts = [got.discount, got.cash, got.accrued, got.credit_line, got.arrears,
                 *(a for _, a in got.coupons + got.credits)]
        assert all(p >= 0 for p in parts)
        assert all(p == p.quantize(D(1).scaleb(-MINOR_UNITS[currency])) for p in parts)
        # and no credit, cap, cash or credit line goes below zero
        assert all(c.remaining >= 0 for c in states)
        assert funds.cash >= 0 and funds.credit_line_available >= 0
        # and each credit lost exactly what it paid
        used = {cid: a for cid, a in got.coupons + got.credits}
        if got.discount:
            used[got.discount_credit_id] = got.discount
        assert {c.id: before[c.id] - c.remaining for c in states if before[c.id] != c.remaining} == used
        # and a discount never exceeds round_down(A × P / 100) or its cap
        if got.discount:
            disc = next(c for c in states if c.id == got.discount_credit_id)
            assert got.discount <= round_down(ch["amount"] * disc.percent / 100, currency)
            assert got.discount <= before[disc.id] <= caps_before[disc.id]
        # and a fee is never paid by credit (R8); an unusable credit never pays (R12)
        if ch["kind"] == "fee":
            assert used == {}
        assert not any(not c.usable for c in states if c.id in used)
        # and the independent model paid it the same way
        assert normalise(got) == want
        for part, label in ((want.discount, "discount"), (want.coupons, "coupon"), (want.credits, "free credit")):
            if part:
                event(f"a charge used {label}")
    assert funds.cash == model.cash


# --- (b) against the database ----------------------------------------------------------------------

CHARGE_AT = timezone.now().replace(microsecond=0) - timedelta(days=6)  # validity windows are in the past


@st.composite
def db_scenarios(draw):
    method = draw(st.sampled_from(["manual", "manual", "automatic", "monthly_invoice"]))
    currency = draw(st.sampled_from(["USD", "USD", "JPY", "KWD"]))
    campaigns = [(draw(st.sampled_from(OBJECTIVES)), draw(st.sampled_from(SOURCES))) for _ in range(3)]
    # a few grants first, so that charges have credit to use; then anything in any order
    ops = []
    for _ in range(draw(st.integers(1, 4))):
        spec = draw(credit_specs(currency, [0, 1, 2], broad=draw(st.booleans())))
        ops.append(("grant", spec))
        if spec["kind"] == "assignable" and spec["campaigns"]:
            ops.append(("assign", -1, spec["campaigns"]))  # -1: the coupon just granted
    for _ in range(draw(st.integers(2, 10))):
        op = draw(st.sampled_from(["grant", "charges", "charges", "charges", "deposit", "assign", "assign",
                                   "replay", "freeze", "expire"]))
        if op == "grant":
            ops.append(("grant", draw(credit_specs(currency, [0, 1, 2]))))
        elif op == "charges":
            ops.append(("charges", draw(st.lists(charge_specs(currency, [0, 1, 2]), min_size=1, max_size=5))))
        elif op == "deposit":
            low = {"USD": 2_000, "JPY": 2_000, "KWD": 6_000}[currency]
            ops.append(("deposit", draw(money(currency, low, low * 10))))
        elif op == "assign":
            ops.append(("assign", draw(st.integers(0, 20)), draw(st.sets(st.sampled_from([0, 1, 2])))))
        elif op == "replay":
            ops.append(("replay", draw(st.integers(0, 50))))
        elif op == "expire":  # the sweep, run as of some hours around the charges' times
            ops.append(("expire", draw(st.integers(-24, 24 * 12))))
        else:
            ops.append(("freeze", draw(st.booleans())))
    if draw(st.integers(0, 3)) == 0:
        ops.append(("refund",))  # R23 closes the account: the last thing that can happen to it
    line = draw(money(currency, 0, 20_000))
    return method, currency, campaigns, ops, line


@pytest.mark.django_db(transaction=True)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(db_scenarios())
def test_r10_r14_services_on_postgresql_agree_with_the_model_and_the_ledger_stays_sound(scenario):
    method, currency, campaign_specs, ops, line = scenario
    # given a fresh advertiser (data is made here: hypothesis examples share one test's database)
    adv = advertiser_create(name="prop", currency=currency, billing_method=method)
    if method == "monthly_invoice":
        Advertiser.objects.filter(pk=adv.pk).update(credit_line_limit=line)
        adv.refresh_from_db()
    model = RefAccount(currency=currency, billing_method=method, credit_line_limit=adv.credit_line_limit)
    camps = []
    for objective, source in campaign_specs:
        c = campaign_create(advertiser=adv, name="c", objective=objective, product_source=source)
        camps.append(c)
        model.campaigns[c.pk] = RefCampaign(c.pk, objective, source)
    coupons, sent = [], []
    shift = CHARGE_AT - T0  # specs are drawn around T0; move them into the recent past

    # when the operations run through the real services and the model
    for n, op in enumerate(ops):
        if op[0] == "grant":
            s = op[1]
            if not model.credit_takes_part:
                # R30: frozen credit can neither be used nor issued
                with pytest.raises(BusinessError) as refused:
                    credit_grant(advertiser=adv, kind=s["kind"], amount=str(s["amount"]), reason="property",
                                 idempotency_key=f"g{n}", percent=s["percent"])
                assert refused.value.code == "credit_frozen"
                continue
            credit = credit_grant(
                advertiser=adv, kind=s["kind"], amount=str(s["amount"]), reason="property", idempotency_key=f"g{n}",
                percent=s["percent"], valid_from=s["valid_from"] + shift, expires_at=s["expires_at"] + shift,
                eligible_objectives=sorted(s["objectives"]), eligible_product_source=s["product_source"],
            )
            model.credits[credit.pk] = RefCredit(
                id=credit.pk, kind=s["kind"], left=s["amount"], valid_from=s["valid_from"] + shift,
                expires_at=s["expires_at"] + shift, percent=s["percent"], objectives=frozenset(s["objectives"]),
                product_source=s["product_source"],
            )
            if s["kind"] == "assignable":
                coupons.append(credit)
        elif op[0] == "assign" and coupons:
            coupon = coupons[op[1] % len(coupons)]  # -1 is the latest
            ids = sorted(camps[i].pk for i in op[2])
            credit_assign(credit=coupon, campaign_ids=ids)
            model.credits[coupon.pk].campaigns = set(ids)
        elif op[0] == "freeze" and op[1] == model.credit_takes_part:
            # R30 through the staff services: frozen credits take no part (R12) until unfrozen
            (credit_freeze if op[1] else credit_unfreeze)(advertiser=adv, reason="property")
            model.credit_takes_part = not op[1]
        elif op[0] == "deposit":
            if method == "manual":
                deposit_create(advertiser=adv, amount=str(op[1]), idempotency_key=f"d{n}")
                model.deposit(op[1])
        elif op[0] == "charges":
            events = []
            for k, ch in enumerate(op[1]):
                events.append({
                    "event_id": f"p{adv.pk}-{n}-{k}", "advertiser_id": adv.pk, "campaign_id": camps[ch["campaign"]].pk,
                    "amount": str(ch["amount"]), "currency": currency, "occurred_at": (ch["at"] + shift).isoformat(),
                    "kind": ch["kind"],
                })
            results = spend_record_batch(events=events)
            for ev, ch, res in zip(events, op[1], results):
                want = model.charge(amount=ch["amount"], campaign_id=int(ev["campaign_id"]), at=ch["at"] + shift,
                                    kind=ch["kind"])
                # then every charge is paid exactly as the model pays it, parts summing to the charge
                assert res.status == "applied"
                assert normalise(res.allocation) == want, (ev, ch)
                assert res.allocation.total() == ch["amount"]
                sent.append((ev, res.allocation))
                for part, label in ((want.discount, "discount"), (want.coupons, "coupon"),
                                    (want.credits, "free credit"), (want.arrears, "arrears")):
                    if part:
                        event(f"a charge used {label}")
        elif op[0] == "expire":
            at = CHARGE_AT + timedelta(hours=op[1])
            expire_credits(at=at)
            model.expire(cutoff=at - timedelta(seconds=django_settings.CREDIT_EXPIRY_GRACE_SECONDS))
            event("an expiry sweep")
        elif op[0] == "refund":
            if model.refundable():
                # then the refund is exactly the cash left (R23), booked with the forfeitures
                assert cash_refund(advertiser=adv) == model.refund()
                event("a refund")
            else:
                with pytest.raises(BusinessError):
                    cash_refund(advertiser=adv)
        elif op[0] == "replay" and sent:
            ev, first = sent[op[1] % len(sent)]
            tx_count = LedgerTransaction.objects.count()
            (res,) = spend_record_batch(events=[ev])
            # then a replay is a duplicate with the first allocation, and nothing new is booked (R15)
            assert res.status == "duplicate"
            assert normalise(res.allocation) == normalise(first)
            assert LedgerTransaction.objects.count() == tx_count
            event("a replay")

    # then the stored state is the model's state, and the ledger recomputed with SQL agrees
    assert ledger_problems() == []
    bal = advertiser_balances(advertiser=adv)
    assert bal.cash_balance == model.cash == purpose_balance(adv.pk, Purpose.CASH)
    assert bal.arrears == model.arrears == purpose_balance(adv.pk, Purpose.ARREARS)
    assert bal.accrued == model.accrued == purpose_balance(adv.pk, Purpose.ACCRUED)
    assert bal.credit_line_used == model.credit_line_used == purpose_balance(adv.pk, Purpose.CREDIT_LINE)
    for credit in Credit.objects.filter(advertiser=adv).select_related("ledger_account"):
        assert credit.ledger_account.balance == model.credits[credit.pk].left
        if model.credits[credit.pk].ended:  # forfeited by the sweep or the refund
            assert credit.status == model.credits[credit.pk].ended, credit
            continue
        assert (credit.status == "used_up") == (model.credits[credit.pk].left == 0)
    assert {c.pk: c.status for c in Campaign.objects.filter(advertiser=adv)} == {
        c.id: c.status for c in model.campaigns.values()
    }
    assert SpendEvent.objects.filter(advertiser=adv).count() == len(sent)
