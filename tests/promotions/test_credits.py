"""Credit writes (SPEC R5–R8, R22): grant, assign, withdraw; transfer is always refused."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing.models import LedgerEntry, LedgerTransaction, Purpose
from billing.selectors import advertiser_balances
from billing.spend import spend_record
from portal.errors import BadInput, BusinessError, Conflict
from portal.models import Advertiser
from promotions.credits import credit_assign, credit_grant, credit_transfer, credit_withdraw
from promotions.models import Credit
from tests.factories import AdvertiserFactory, CampaignFactory, grant
from tests.reference_model import ledger_problems, purpose_balance

pytestmark = pytest.mark.django_db
D = Decimal


def issue(adv, **kw):
    args = dict(advertiser=adv, kind="free", amount="100.00", reason="goodwill", idempotency_key="key-1")
    args.update(kw)
    return credit_grant(**args)


def ledger_rows():
    return LedgerTransaction.objects.count(), LedgerEntry.objects.count(), Credit.objects.count()


# --- R22: grant ------------------------------------------------------------------------------------


def test_r22_a_grant_is_booked_promotion_expense_to_the_credit_and_expires_by_default_in_90_days(advertiser):
    before = timezone.now()
    credit = issue(advertiser)
    assert (credit.kind, credit.source, credit.status, credit.amount, credit.remaining) == (
        "free", "managed", "active", D("100.00"), D("100.00"))
    assert before <= credit.valid_from <= timezone.now()
    assert credit.expires_at - credit.valid_from == timedelta(days=90)
    tx = LedgerTransaction.objects.get(kind="credit_issue")
    entries = sorted((e.account.purpose, e.side, e.amount) for e in tx.entries.select_related("account"))
    assert entries == [("credit", "C", D("100.00")), ("promotion_expense", "D", D("100.00"))]
    assert credit.ledger_account.pk == tx.entries.get(side="C").account_id
    assert purpose_balance(advertiser.pk, Purpose.PROMOTION_EXPENSE) == D("100.00")
    assert advertiser_balances(advertiser=advertiser).credit_balance == D("100.00")


def test_r22_the_same_key_returns_the_first_credit_and_books_nothing_new(advertiser):
    first = issue(advertiser)
    after_first = ledger_rows()
    # a replay computes its default validity from a later "now": still the same grant
    again = issue(advertiser, amount="100")
    assert again.pk == first.pk
    assert ledger_rows() == after_first
    assert advertiser_balances(advertiser=advertiser).credit_balance == D("100.00")


@pytest.mark.parametrize(
    "change",
    [{"amount": "100.01"}, {"kind": "assignable"}, {"kind": "discount", "percent": "50"},
     {"eligible_objectives": ["REACH"]}, {"eligible_product_source": "TIKTOK_SHOP"}, {"source": "promo_code"}],
    ids=["amount", "kind", "discount", "objectives", "product_source", "source"],
)
def test_r22_the_same_key_with_other_content_is_a_conflict(advertiser, change):
    issue(advertiser)
    before = ledger_rows()
    with pytest.raises(Conflict) as e:
        issue(advertiser, **change)
    assert (e.value.code, e.value.status) == ("idempotency_key_reused", 409)
    assert ledger_rows() == before


def test_r22_a_discount_replay_must_match_its_percent(advertiser):
    issue(advertiser, kind="discount", percent="50")
    assert issue(advertiser, kind="discount", percent="50.00").amount == D("100.00")
    with pytest.raises(Conflict):
        issue(advertiser, kind="discount", percent="40")


def test_r22_keys_are_per_advertiser_and_a_grant_without_a_key_is_refused(advertiser):
    """R22: the grant is idempotent by a key, so there is no grant without one (issue 9: a
    missing key granted twice)."""
    other = AdvertiserFactory()
    assert issue(advertiser).pk != issue(other).pk
    for key in (None, "", "   ", 12, {"k": 1}):
        with pytest.raises(BadInput) as refused:
            issue(advertiser, idempotency_key=key)
        assert refused.value.code == "invalid_idempotency_key"
    assert advertiser_balances(advertiser=advertiser).credit_balance == D("100.00")


@pytest.mark.parametrize(
    ("kw", "code"),
    [
        ({"kind": "cash"}, "invalid_kind"),
        ({"amount": "0"}, "invalid_amount"),
        ({"amount": "-5.00"}, "invalid_amount"),
        ({"amount": "1.005"}, "invalid_amount"),
        ({"kind": "discount"}, "invalid_percent"),
        ({"kind": "discount", "percent": "0"}, "invalid_percent"),
        ({"kind": "discount", "percent": "100.01"}, "invalid_percent"),
        ({"kind": "discount", "percent": "12.345"}, "invalid_percent"),
        ({"kind": "discount", "percent": "NaN"}, "invalid_percent"),
        ({"kind": "free", "percent": "10"}, "invalid_percent"),
        ({"reason": "  "}, "invalid_reason"),
        ({"source": "gift"}, "invalid_source"),
        ({"eligible_objectives": ["SHOPPING"]}, "invalid_objective"),
        ({"eligible_product_source": "AMAZON"}, "invalid_product_source"),
    ],
)
def test_r5_r22_a_bad_grant_is_refused_and_records_nothing(advertiser, kw, code):
    with pytest.raises(BadInput) as e:
        issue(advertiser, **kw)
    assert e.value.code == code
    assert ledger_rows() == (0, 0, 0)


def test_r5_expiry_must_be_after_the_start(advertiser):
    now = timezone.now()
    with pytest.raises(BadInput) as e:
        issue(advertiser, valid_from=now, expires_at=now)
    assert e.value.code == "invalid_validity"
    assert ledger_rows() == (0, 0, 0)


@pytest.mark.parametrize("status", ["suspended", "closed"])
def test_r22_credit_is_not_issued_to_an_account_that_is_not_active(advertiser, status):
    Advertiser.objects.filter(pk=advertiser.pk).update(status=status)
    with pytest.raises(BusinessError) as e:
        issue(advertiser)
    assert e.value.code == "account_not_active"
    assert ledger_rows() == (0, 0, 0)


def test_r7_a_discount_credit_holds_its_cap_and_percent(advertiser):
    disc = issue(advertiser, kind="discount", amount="100.00", percent="50")
    assert (disc.percent, disc.remaining) == (D("50.00"), D("100.00"))
    bal = advertiser_balances(advertiser=advertiser)
    assert (bal.discount_cap_remaining, bal.credit_balance) == (D("100.00"), D("0"))


# --- R8: transfer ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [{}, {"to_advertiser": "other"}, {"to_business_center": 1}, {"to": "cash"}, {"amount": "10.00"}],
    ids=["bare", "advertiser", "bc", "cash", "amount"],
)
def test_r8_a_transfer_is_always_refused_and_moves_nothing(advertiser, kw):
    credit = issue(advertiser)
    other = AdvertiserFactory()
    if kw.get("to_advertiser"):
        kw["to_advertiser"] = other
    before = ledger_rows()
    with pytest.raises(BusinessError) as e:
        credit_transfer(credit=credit, **kw)
    assert (e.value.code, e.value.status) == ("credit_not_transferable", 422)
    assert ledger_rows() == before
    assert Credit.objects.get(pk=credit.pk).remaining == D("100.00")
    assert advertiser_balances(advertiser=other).credit_balance == D("0")


# --- R6: assign ------------------------------------------------------------------------------------


def test_r6_assign_sets_exactly_the_listed_campaigns(advertiser):
    c1, c2, c3 = (CampaignFactory(advertiser=advertiser) for _ in range(3))
    coupon = grant(advertiser, "assignable", "20.00")
    credit_assign(credit=coupon, campaign_ids=[c1.pk, str(c2.pk)])
    assert set(coupon.campaigns.values_list("pk", flat=True)) == {c1.pk, c2.pk}
    credit_assign(credit=coupon, campaign_ids=[c3.pk])
    assert set(coupon.campaigns.values_list("pk", flat=True)) == {c3.pk}
    credit_assign(credit=coupon, campaign_ids=[])
    assert coupon.campaigns.count() == 0


@pytest.mark.parametrize("kind", ["free", "discount"])
def test_r6_only_a_coupon_can_be_assigned(advertiser, kind):
    camp = CampaignFactory(advertiser=advertiser)
    credit = grant(advertiser, kind, "20.00", **({"percent": "10"} if kind == "discount" else {}))
    with pytest.raises(BusinessError) as e:
        credit_assign(credit=credit, campaign_ids=[camp.pk])
    assert e.value.code == "credit_not_assignable"
    assert credit.campaigns.count() == 0


def test_r6_a_coupon_cannot_be_assigned_to_another_advertisers_campaign(advertiser, spend_event):
    mine = CampaignFactory(advertiser=advertiser)
    theirs = CampaignFactory()
    coupon = grant(advertiser, "assignable", "20.00")
    with pytest.raises(BadInput) as e:
        credit_assign(credit=coupon, campaign_ids=[mine.pk, theirs.pk])
    assert e.value.code == "unknown_campaign"
    assert coupon.campaigns.count() == 0
    # and so it never pays the other advertiser's spend
    assert spend_record(event=spend_event(theirs, "5.00")).allocation.coupons == []


@pytest.mark.parametrize("ids", ["1,2", [1, "x"], None])
def test_r6_campaign_ids_must_be_a_list_of_ids(advertiser, ids):
    coupon = grant(advertiser, "assignable", "20.00")
    with pytest.raises(BadInput) as e:
        credit_assign(credit=coupon, campaign_ids=ids)
    assert e.value.code == "invalid_campaign_ids"


# --- withdraw (staff) ------------------------------------------------------------------------------


def test_r8_staff_withdrawal_forfeits_what_is_left_on_the_ledger(advertiser, spend_event):
    camp = CampaignFactory(advertiser=advertiser)
    credit = grant(advertiser, "free", "30.00")
    spend_record(event=spend_event(camp, "12.00"))
    withdrawn = credit_withdraw(credit=credit, reason="policy violation")
    assert (withdrawn.status, withdrawn.remaining) == ("withdrawn", D("0"))
    assert withdrawn.ended_at is not None
    tx = LedgerTransaction.objects.get(kind="credit_withdraw")
    assert tx.amount == D("18.00")
    assert purpose_balance(advertiser.pk, Purpose.FORFEITURE) == D("18.00")
    assert ledger_problems() == []
    # and it no longer pays
    assert spend_record(event=spend_event(camp, "1.00")).allocation.credits == []
    # and it cannot be withdrawn twice
    with pytest.raises(BusinessError) as e:
        credit_withdraw(credit=credit, reason="again")
    assert e.value.code == "credit_not_active"
    assert LedgerTransaction.objects.filter(kind="credit_withdraw").count() == 1


def test_r8_a_withdrawal_needs_a_reason(advertiser):
    credit = grant(advertiser, "free", "30.00")
    with pytest.raises(BadInput) as e:
        credit_withdraw(credit=credit, reason=" ")
    assert e.value.code == "invalid_reason"
    assert Credit.objects.get(pk=credit.pk).status == "active"
