"""Tools → Payments → Credits: every credit with its balance, validity, eligibility, campaigns and
status; admins assign coupons (SPEC R1, R5–R7, R34) — at a constant number of queries."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from promotions.credits import credit_assign, credit_withdraw
from promotions.models import CreditStatus
from tests.factories import CampaignFactory, deposit, grant
from tests.pages_helpers import element, fast_password_hashing, logged_in, make_team, spend, team, text  # noqa: F401

pytestmark = pytest.mark.django_db


def credits_page(team, role="admin"):
    return team.client(role).get(f"/a/{team.advertiser.pk}/payments/credits/")


def row(response, credit) -> str:
    return text(element(response.content.decode(), f"credit-{credit.pk}"))


def test_each_credit_shows_type_source_amounts_validity_eligibility_and_status(team):
    # given a discount, a Shop-only coupon and a free credit, partly used by one charge
    adv = team.advertiser
    deposit(adv, "100.00")
    now = timezone.now()
    discount = grant(adv, "discount", "100.00", percent="50", source="discount")
    coupon = grant(adv, "assignable", "40.00", source="promo_code", eligible_objectives=["PRODUCT_SALES"],
                   eligible_product_source="TIKTOK_SHOP")
    free = grant(adv, "free", "30.00", source="ladder", valid_from=now - timedelta(days=2),
                 expires_at=now + timedelta(days=20))
    spend(team.campaign, "60.00")  # discount 30, free credit 30
    # when the analyst opens Credits
    response = credits_page(team, "analyst")
    assert response.status_code == 200
    # then each credit's row reads as the advertiser expects
    d = row(response, discount)
    assert "Discount #{} 50% off each charge".format(discount.pk) in d
    assert "Discount offer $100.00 cap $70.00 30% $30.00 used" in d
    assert "All objectives Any product source All eligible campaigns Active" in d
    c = row(response, coupon)
    assert "Coupon #{}".format(coupon.pk) in c and "Promo code $40.00 $40.00 0% $0.00 used" in c
    assert "Product sales TikTok Shop products only" in c
    assert "Not assigned — pays for nothing yet" in c
    f = row(response, free)
    assert "Free credit #{} Ladder reward $30.00 $0.00 100% $30.00 used".format(free.pk) in f
    assert "Used up" in f
    expires = timezone.localtime(free.expires_at)
    assert f"until {expires:%b} {expires.day}, {expires.year}" in f
    # the usage is a native progress bar, no inline style
    html = element(response.content.decode(), f"credit-{discount.pk}")
    assert '<progress class="usage" max="100" value="30"' in html and "style=" not in html


def test_expiry_within_seven_days_is_highlighted(team):
    now = timezone.now()
    soon = grant(team.advertiser, "free", "10.00", valid_from=now - timedelta(days=80), expires_at=now + timedelta(days=3))
    later = grant(team.advertiser, "free", "10.00", valid_from=now, expires_at=now + timedelta(days=30))
    response = credits_page(team)
    assert "Expires soon" in row(response, soon) and "Expires soon" not in row(response, later)
    assert 'class="row-warning' in element(response.content.decode(), f"credit-{soon.pk}")
    # open credits are listed soonest expiry first
    body = text(response)
    assert body.index(f"#{soon.pk}") < body.index(f"#{later.pk}")


def test_closed_credits_come_after_open_ones(team):
    withdrawn = grant(team.advertiser, "free", "10.00", key="gone")
    credit_withdraw(credit=withdrawn, reason="policy")
    active = grant(team.advertiser, "free", "5.00", expires_at=timezone.now() + timedelta(days=200))
    response = credits_page(team)
    assert "Withdrawn" in row(response, withdrawn) and "$0.00 used" in row(response, withdrawn)
    body = text(response)
    assert body.index(f"#{active.pk}") < body.index(f"#{withdrawn.pk}")


def test_admin_assigns_a_coupon_to_campaigns(team):
    # given a coupon for Product sales, and campaigns of which one is eligible
    adv = team.advertiser
    shop = CampaignFactory(advertiser=adv, name="Shop live", objective="PRODUCT_SALES", product_source="TIKTOK_SHOP")
    coupon = grant(adv, "assignable", "25.00", eligible_objectives=["PRODUCT_SALES"])
    client = team.admin
    # when the admin opens Credits, the coupon offers only the eligible campaign
    html = element(client.get(f"/a/{adv.pk}/payments/credits/").content.decode(), f"credit-{coupon.pk}")
    assert "Assign campaigns" in text(html)
    assert f'value="{shop.pk}"' in html and f'value="{team.campaign.pk}"' not in html
    # when they assign it
    response = client.post(f"/a/{adv.pk}/payments/credits/{coupon.pk}/assign/", {"campaigns": [shop.pk]}, follow=True)
    # then the coupon pays for that campaign, and the page says so
    assert list(coupon.campaigns.all()) == [shop]
    assert f"Coupon #{coupon.pk} now pays for 1 campaign." in text(response)
    assert "Shop live" in row(response, coupon)
    assert f'value="{shop.pk}" checked' in element(response.content.decode(), f"credit-{coupon.pk}")
    # and unassigning everything is allowed, with a warning
    response = client.post(f"/a/{adv.pk}/payments/credits/{coupon.pk}/assign/", {}, follow=True)
    assert coupon.campaigns.count() == 0
    assert "pays for nothing until you assign it" in text(response)


def test_assigned_coupon_then_pays_the_campaigns_charges(team):
    adv = team.advertiser
    deposit(adv, "100.00")
    coupon = grant(adv, "assignable", "8.00")
    team.admin.post(f"/a/{adv.pk}/payments/credits/{coupon.pk}/assign/", {"campaigns": [team.campaign.pk]})
    result = spend(team.campaign, "10.00")
    assert result.allocation.coupons == [(coupon.pk, Decimal("8.00"))]
    assert "Spring sale" in row(credits_page(team), coupon)


@pytest.mark.parametrize("role", ["finance", "analyst"])
def test_other_roles_see_coupons_read_only(team, role):
    coupon = grant(team.advertiser, "assignable", "25.00")
    response = credits_page(team, role)
    assert "Assign campaigns" not in text(response) and "/assign/" not in response.content.decode()
    post = team.client(role).post(
        f"/a/{team.advertiser.pk}/payments/credits/{coupon.pk}/assign/", {"campaigns": [team.campaign.pk]}
    )
    assert post.status_code == 403 and coupon.campaigns.count() == 0


def test_operator_and_strangers_cannot_see_or_assign(team):
    coupon = grant(team.advertiser, "assignable", "25.00")
    assign = f"/a/{team.advertiser.pk}/payments/credits/{coupon.pk}/assign/"
    assert credits_page(team, "operator").status_code == 403
    assert team.client("operator").post(assign, {"campaigns": [team.campaign.pk]}).status_code == 403
    stranger = logged_in(team.outsider)
    assert stranger.get(f"/a/{team.advertiser.pk}/payments/credits/").status_code == 404
    assert stranger.post(assign, {"campaigns": [team.campaign.pk]}).status_code == 404
    assert coupon.campaigns.count() == 0


def test_admin_cannot_assign_another_advertisers_coupon_or_campaign(team):
    other = make_team()
    their_coupon = grant(other.advertiser, "assignable", "25.00")
    mine = grant(team.advertiser, "assignable", "25.00")
    client = team.admin
    # someone else's coupon under my advertiser's URL does not exist
    assert client.post(f"/a/{team.advertiser.pk}/payments/credits/{their_coupon.pk}/assign/",
                       {"campaigns": [team.campaign.pk]}).status_code == 404
    # and someone else's campaign is refused with the service's message
    response = client.post(f"/a/{team.advertiser.pk}/payments/credits/{mine.pk}/assign/",
                           {"campaigns": [other.campaign.pk]}, follow=True)
    assert "does not belong to this advertiser" in text(response)
    assert mine.campaigns.count() == 0 and their_coupon.campaigns.count() == 0


def test_free_credit_cannot_be_assigned(team):
    free = grant(team.advertiser, "free", "25.00")
    response = team.admin.post(f"/a/{team.advertiser.pk}/payments/credits/{free.pk}/assign/",
                               {"campaigns": [team.campaign.pk]}, follow=True)
    assert "Only a coupon can be assigned" in text(response)


def test_frozen_credit_is_flagged(team):
    grant(team.advertiser, "free", "25.00", status=CreditStatus.FROZEN)
    team.advertiser.credit_frozen = True
    team.advertiser.save()
    body = text(credits_page(team))
    assert "Your ad credit is frozen." in body and "Frozen" in body


def test_no_credit_yet(team):
    assert "No ad credit yet" in text(credits_page(team))


def _credits(team, n: int):
    for i in range(n):
        kind = ("free", "assignable", "discount")[i % 3]
        credit = grant(team.advertiser, kind, "10.00", percent="10" if kind == "discount" else None)
        if kind == "assignable":
            credit_assign(credit=credit, campaign_ids=[team.campaign.pk])
    deposit(team.advertiser, "1000.00", key=f"c-{n}")
    for _ in range(n):
        spend(team.campaign, "2.00")


@pytest.mark.parametrize("role", ["admin", "analyst"])
def test_same_queries_with_2_or_30_credits(db, fast_password_hashing, role):
    small, large = make_team(), make_team()
    _credits(small, 2)
    _credits(large, 30)
    counts = []
    for t in (small, large):
        CampaignFactory(advertiser=t.advertiser, name="Second")
        client = t.client(role)
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(f"/a/{t.advertiser.pk}/payments/credits/").status_code == 200
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1]
    assert counts[1] <= 10
