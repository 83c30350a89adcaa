"""Ladder programs (SPEC R16–R20): qualifying spend, highest tier, immediate tiers, window close."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing.spend import spend_record
from portal.errors import BusinessError
from promotions.models import CreditStatus, EnrollmentStatus
from promotions.programs import close_ladder_windows, enrollment_create
from tests.factories import AdvertiserFactory, BusinessCenterFactory, CampaignFactory, deposit, grant
from tests.promotions.ladder_helpers import new_program

pytestmark = pytest.mark.django_db


def new_advertiser(**kw):
    fields = dict(signup_source="official_offer", registered_at=timezone.now() - timedelta(days=3))
    fields.update(kw)
    return AdvertiserFactory(**fields)


def test_r17_only_own_money_qualifies_and_r18_reward_waits_for_window(spend_event):
    # given an enrolled new advertiser with cash and a free credit
    adv = new_advertiser()
    camp = CampaignFactory(advertiser=adv)
    deposit(adv, "1000.00")
    enrollment = enrollment_create(advertiser=adv, program=new_program())
    grant(adv, "free", "40.00", valid_from=enrollment.window_start - timedelta(days=1))
    # when it spends 150 inside the window (40 of it paid by credit)
    spend_record(event=spend_event(camp, "150.00", occurred_at=timezone.now()))
    enrollment.refresh_from_db()
    # then only the 110 paid by cash qualifies, and no reward is issued before the window closes
    assert enrollment.qualifying_spend == Decimal("110.00")
    assert enrollment.status == EnrollmentStatus.OPEN
    assert close_ladder_windows(at=timezone.now())["awarded"] == 0
    # when the window (and its grace) has passed
    counts = close_ladder_windows(at=enrollment.window_end + timedelta(hours=2))
    enrollment.refresh_from_db()
    # then the highest tier reached (100 → 50) is paid once, as a new credit
    assert counts["awarded"] == 1
    assert enrollment.status == EnrollmentStatus.AWARDED
    assert enrollment.credit.amount == Decimal("50.00")
    assert enrollment.credit.status == CreditStatus.ACTIVE
    assert close_ladder_windows(at=enrollment.window_end + timedelta(hours=3))["awarded"] == 0


def test_r17_arrears_never_qualify_not_even_once_settled(spend_event):
    # decision 0019: R17 counts cash, the payment method and the credit line; arrears are owed
    adv = new_advertiser()
    camp = CampaignFactory(advertiser=adv)
    deposit(adv, "30.00")
    enrollment = enrollment_create(advertiser=adv, program=new_program())
    # when it spends 100 with 30 of cash: 70 goes to arrears
    spend_record(event=spend_event(camp, "100.00", occurred_at=timezone.now()))
    enrollment.refresh_from_db()
    assert enrollment.qualifying_spend == Decimal("30.00")
    # and a deposit settling the arrears does not make them qualify afterwards
    deposit(adv, "100.00")
    enrollment.refresh_from_db()
    assert enrollment.qualifying_spend == Decimal("30.00")


def test_r18_immediate_tier_pays_at_once_and_ends_window(spend_event):
    adv = new_advertiser()
    camp = CampaignFactory(advertiser=adv)
    deposit(adv, "5000.00")
    enrollment = enrollment_create(advertiser=adv, program=new_program())
    before = timezone.now()
    spend_record(event=spend_event(camp, "2100.00", occurred_at=before))
    enrollment.refresh_from_db()
    assert enrollment.status == EnrollmentStatus.AWARDED
    assert enrollment.credit.amount == Decimal("1500.00")
    assert enrollment.window_end <= timezone.now()
    # the reward never pays for spend that occurred before its issue
    late = spend_record(event=spend_event(camp, "10.00", occurred_at=before))
    assert late.allocation.credits == []


def test_r20_shop_program_counts_only_its_shop_campaigns(spend_event):
    adv = AdvertiserFactory(shop_id="shop-1")
    mine = CampaignFactory(advertiser=adv, objective="PRODUCT_SALES", product_source="TIKTOK_SHOP")
    other_shop = CampaignFactory(advertiser=adv, objective="PRODUCT_SALES", product_source="TIKTOK_SHOP", shop_id="shop-2")
    plain = CampaignFactory(advertiser=adv)
    deposit(adv, "1000.00")
    enrollment = enrollment_create(advertiser=adv, program=new_program(kind="shop"))
    for c in (mine, other_shop, plain):
        spend_record(event=spend_event(c, "30.00", occurred_at=timezone.now()))
    enrollment.refresh_from_db()
    assert enrollment.shop_id == "shop-1"
    assert enrollment.qualifying_spend == Decimal("30.00")


def test_r21_shop_reward_on_automatic_payment_waits_for_a_paid_bill(spend_event):
    from billing.autopay import charge_thresholds, payment_method_set

    # given an automatic-payment Shop seller enrolled in a Shop program with an immediate tier
    adv = AdvertiserFactory(shop_id="shop-1", billing_method="automatic")
    payment_method_set(advertiser=adv, card_number="4242424242424242", expiry="12/30")
    camp = CampaignFactory(advertiser=adv, objective="PRODUCT_SALES", product_source="TIKTOK_SHOP")
    enrollment = enrollment_create(advertiser=adv, program=new_program(
        kind="shop", tiers=[{"threshold": "40.00", "reward": "20.00", "immediate": True}]))
    # when its spend crosses the tier
    spend_record(event=spend_event(camp, "60.00", occurred_at=timezone.now()))
    # then the reward is issued but waits, pending, for the current bill to be paid
    enrollment.refresh_from_db()
    assert enrollment.status == EnrollmentStatus.AWARDED
    assert enrollment.credit.status == CreditStatus.PENDING
    # and the next successful bill payment makes it usable
    charge_thresholds()
    enrollment.credit.refresh_from_db()
    assert enrollment.credit.status == CreditStatus.ACTIVE


@pytest.mark.parametrize(
    "setup, code",
    [
        (lambda: new_advertiser(signup_source="organic"), "not_official_offer"),
        (lambda: new_advertiser(registered_at=timezone.now() - timedelta(days=61)), "account_too_old"),
    ],
)
def test_r19_refusals_name_the_rule(setup, code):
    program = new_program()
    with pytest.raises(BusinessError) as exc:
        enrollment_create(advertiser=setup(), program=program)
    assert exc.value.code == code


def test_r19_recent_spend_refused(spend_event):
    adv = new_advertiser()
    camp = CampaignFactory(advertiser=adv)
    deposit(adv, "100.00")
    spend_record(event=spend_event(camp, "5.00"))
    with pytest.raises(BusinessError) as exc:
        enrollment_create(advertiser=adv, program=new_program())
    assert exc.value.code == "recent_spend"


def test_r19_one_enrollment_per_business_center():
    bc = BusinessCenterFactory()
    program = new_program()
    enrollment_create(advertiser=new_advertiser(business_center=bc), program=program)
    with pytest.raises(BusinessError) as exc:
        enrollment_create(advertiser=new_advertiser(business_center=bc), program=program)
    assert exc.value.code == "already_enrolled_bc"


def test_r19_promo_code_rules():
    program = new_program(code="WELCOME50", max_redemptions=1, ends_at=timezone.now() + timedelta(days=10))
    first = enrollment_create(advertiser=new_advertiser(), code="welcome50")
    assert first.program_id == program.pk and first.via_code
    with pytest.raises(BusinessError) as exc:
        enrollment_create(advertiser=new_advertiser(), code="WELCOME50")
    assert exc.value.code == "code_redemption_limit"
    with pytest.raises(BusinessError) as exc:
        enrollment_create(advertiser=new_advertiser(registered_at=timezone.now() - timedelta(days=15)), code="WELCOME50")
    assert exc.value.code == "code_activation_expired"
    with pytest.raises(BusinessError) as exc:
        enrollment_create(advertiser=new_advertiser(), code="NOPE")
    assert exc.value.code == "unknown_code"
    with pytest.raises(BusinessError) as exc:
        enrollment_create(advertiser=new_advertiser(), program=program, at=timezone.now() + timedelta(days=11))
    assert exc.value.code == "program_ended"
