"""Seller Center → Marketing → Shop Ads → Ads Dashboard → Coupon Progress (SPEC R1, R16, R18, R20,
R21): each Shop program as a ladder, where the seller stands, what is left, when the window
closes and the credit issued — pending on automatic payment until the next bill is paid."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from billing.autopay import charge_thresholds, payment_method_set
from promotions.models import CreditStatus
from tests.factories import CampaignFactory, deposit
from tests.pages_helpers import element, fast_password_hashing, logged_in, make_team, spend, text  # noqa: F401
from tests.promotions.promotions_helpers import enroll, program

pytestmark = pytest.mark.django_db

SHOP_TIERS = [
    {"threshold": "50.00", "reward": "10.00"},
    {"threshold": "200.00", "reward": "50.00"},
    {"threshold": "1000.00", "reward": "300.00", "immediate": True},
]


def url(t) -> str:
    return f"/a/{t.advertiser.pk}/shop/coupon-progress/"


def shop_seller(**fields):
    """A TikTok Shop seller (shop S-100) with a Shop Ads campaign of that shop."""
    t = make_team(**{"name": "Acme Shop", "shop_id": "S-100", **fields})
    t.shop_campaign = CampaignFactory(advertiser=t.advertiser, name="Live shopping", objective="PRODUCT_SALES",
                                      product_source="TIKTOK_SHOP", shop_id="S-100")
    return t


def shop_enroll(t, name="Shop Ads credit", **kw):
    return enroll(t.advertiser, name=name, kind="shop", tiers=SHOP_TIERS, **kw)


@pytest.mark.parametrize("role", ["admin", "finance", "analyst"])
def test_payments_roles_open_coupon_progress(db, fast_password_hashing, role):
    t = shop_seller()
    shop_enroll(t)
    response = t.client(role).get(url(t))
    assert response.status_code == 200
    body = text(response)
    assert "Seller Center › Marketing › Shop Ads › Ads Dashboard › Coupon Progress" in body
    assert "Shop Ads credit" in body


def test_operator_stranger_and_anonymous(db, fast_password_hashing):
    t = shop_seller()
    shop_enroll(t)
    assert t.client("operator").get(url(t)).status_code == 403
    assert logged_in(t.outsider).get(url(t)).status_code == 404
    assert Client().get(url(t))["Location"] == f"/login/?next={url(t)}"


def test_navigation_shows_shop_ads_to_sellers_only(db, fast_password_hashing):
    nav_item = 'class="nav-item is-active" aria-current="page">'
    # a seller with a linked shop sees Shop Ads → Coupon Progress
    seller = shop_seller()
    html = seller.admin.get(f"/a/{seller.advertiser.pk}/").content.decode()
    assert "Shop Ads" in text(html) and f'href="{url(seller)}"' in html
    assert nav_item in seller.admin.get(url(seller)).content.decode()
    # the operator sees no payment data, so no Coupon Progress either
    assert f'href="{url(seller)}"' not in seller.client("operator").get(f"/a/{seller.advertiser.pk}/").content.decode()
    # an advertiser without a shop does not see it
    plain = make_team()
    assert "Shop Ads" not in text(plain.admin.get(f"/a/{plain.advertiser.pk}/"))
    # but one whose shop was unlinked after joining a Shop program still does
    former = shop_seller()
    shop_enroll(former)
    former.advertiser.shop_id = ""
    former.advertiser.save()
    assert f'href="{url(former)}"' in former.admin.get(f"/a/{former.advertiser.pk}/").content.decode()


def test_ladder_shows_where_the_seller_stands_and_what_remains(db, fast_password_hashing):
    # given a seller in Tokyo, enrolled in a Shop program, with 120.00 of own-money Shop spend
    t = shop_seller(timezone_name="Asia/Tokyo")
    enrollment = shop_enroll(t)
    deposit(t.advertiser, "1000.00")
    spend(t.shop_campaign, "120.00", occurred_at=timezone.now())
    spend(t.campaign, "80.00", occurred_at=timezone.now())  # not a Shop campaign: does not count (R20)
    # when the analyst opens Coupon Progress
    html = element(t.client("analyst").get(url(t)).content.decode(), f"enrollment-{enrollment.pk}")
    card = text(html)
    # then the ladder shows three steps, the first reached, the second being climbed
    assert html.count('class="step is-reached"') == 1 and html.count('class="step is-current"') == 1
    assert html.count('class="step"') == 1
    assert "Spend $50.00 → $10.00 credit Reached" in card
    assert "Spend $200.00 → $50.00 credit" in card and "Spend $1,000.00 → $300.00 credit (issued at once)" in card
    # the second step is filled in proportion: 70 of the 150 between 50 and 200
    assert 'class="step-fill"' in html and "style=" not in html
    # and the facts say where the seller stands, what remains and when the window closes
    assert "Where you stand $120.00 qualifying spend so far" in card
    assert "Next step $80.00 to go to reach $200.00 and earn $50.00" in card
    assert '<progress class="usage" max="100" value="60"' in html
    end = timezone.localtime(enrollment.window_end, t.advertiser.tz)
    assert f"Window closes {end:%b} {end.day}, {end.year} {end:%H:%M} Asia/Tokyo time · 30 days left" in card
    assert "Your credit $10.00 Issued when the window closes" in card


def test_the_last_day_counts_hours(db, fast_password_hashing):
    t = shop_seller()
    enrollment = shop_enroll(t, window_days=1)
    card = text(element(t.admin.get(url(t)).content.decode(), f"enrollment-{enrollment.pk}"))
    assert "24 hours left" in card


def test_issued_credit_shows_amount_remaining_and_expiry(db, fast_password_hashing):
    # given a manual-payment seller whose spend crossed the immediate top step
    t = shop_seller()
    enrollment = shop_enroll(t)
    deposit(t.advertiser, "2000.00")
    spend(t.shop_campaign, "1000.00", occurred_at=timezone.now())
    enrollment.refresh_from_db()
    credit = enrollment.credit
    spend(t.shop_campaign, "40.00", occurred_at=timezone.now() + timedelta(seconds=1))  # paid by the new credit
    # when the admin opens Coupon Progress
    html = element(t.admin.get(url(t)).content.decode(), f"enrollment-{enrollment.pk}")
    card = text(html)
    # then every step is reached and the credit is shown with what is left and its expiry
    assert html.count('class="step is-reached"') == 3
    assert "Reward issued" in card and "Top step reached" in card and "Window closed" in card
    expires = timezone.localtime(credit.expires_at, t.advertiser.tz)
    assert (f"Your credit $300.00 $260.00 remaining · Active · expires {expires:%b} {expires.day}, {expires.year} "
            "See it in Promotions") in card
    assert f'href="/a/{t.advertiser.pk}/payments/promotions/?status=active#credit-{credit.pk}"' in html


def test_shop_credit_on_automatic_payment_is_pending_until_the_bill_is_paid(db, fast_password_hashing):
    # given an automatic-payment seller whose spend crosses the immediate top step
    t = shop_seller(billing_method="automatic")
    payment_method_set(advertiser=t.advertiser, card_number="4242424242424242", expiry="12/30")
    enrollment = shop_enroll(t)
    spend(t.shop_campaign, "1000.00", occurred_at=timezone.now())
    enrollment.refresh_from_db()
    assert enrollment.credit.status == CreditStatus.PENDING
    # when the seller opens Coupon Progress
    response = t.admin.get(url(t))
    card = text(element(response.content.decode(), f"enrollment-{enrollment.pk}"))
    # then the credit is there, pending until the next bill is paid
    assert "Reward pending" in card
    assert "Your credit $300.00 Pending until your next bill is paid" in card
    assert "Shop credit becomes usable after your next bill is paid" in text(response)
    # and once the bill is paid, it is usable
    charge_thresholds()
    card = text(element(t.admin.get(url(t)).content.decode(), f"enrollment-{enrollment.pk}"))
    assert "$300.00 remaining · Active" in card and "Pending until" not in card


def test_only_shop_programs_are_listed(db, fast_password_hashing):
    t = shop_seller(signup_source="official_offer", registered_at=timezone.now() - timedelta(days=2))
    shop = shop_enroll(t, name="Shop Ads credit")
    other = enroll(t.advertiser, program("New advertiser offer"))
    html = t.admin.get(url(t)).content.decode()
    assert f'id="enrollment-{shop.pk}"' in html and f'id="enrollment-{other.pk}"' not in html
    assert "New advertiser offer" not in text(html)


def test_a_seller_without_a_program_is_told_how_to_join(db, fast_password_hashing):
    t = shop_seller()
    body = text(t.admin.get(url(t)))
    assert "No Shop ad credit program yet" in body and "Have a promo code? Redeem it in Promotions" in body
