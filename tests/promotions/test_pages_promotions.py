"""Tools → Payments → Promotions (SPEC R1, R5–R7, R16–R19, R34): every credit with its balance,
validity, eligibility, campaigns and status, filtered by status; ladder progress; promo codes;
coupon assignment — for the roles that may, at a constant number of queries."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from portal.models import Notification
from promotions.credits import credit_assign, credit_withdraw
from promotions.models import CreditStatus, Enrollment, EnrollmentStatus
from promotions.programs import close_ladder_windows
from tests.factories import BusinessCenterFactory, CampaignFactory, deposit, grant
from tests.pages_helpers import element, fast_password_hashing, logged_in, make_team, spend, team, text  # noqa: F401
from tests.promotions.promotions_helpers import bulk_credits, enroll, freeze, new_advertiser_team, program

pytestmark = pytest.mark.django_db


def promotions_url(team, query="") -> str:
    return f"/a/{team.advertiser.pk}/payments/promotions/{query}"


def promotions_page(team, role="admin", query=""):
    return team.client(role).get(promotions_url(team, query))


def row(response, credit) -> str:
    return text(element(response.content.decode(), f"credit-{credit.pk}"))


# --- who may open it ---------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["admin", "finance", "analyst"])
def test_payments_roles_open_promotions(team, role):
    grant(team.advertiser, "free", "12.00")
    response = promotions_page(team, role)
    assert response.status_code == 200
    body = text(response)
    assert "Tools › Payments › Promotions Promotions" in body and "Free credit" in body and "$12.00" in body


def test_operator_gets_403_and_strangers_404_and_anonymous_login(team):
    grant(team.advertiser, "free", "12.00")
    forbidden = promotions_page(team, "operator")
    assert forbidden.status_code == 403 and "$12.00" not in text(forbidden)
    assert logged_in(team.outsider).get(promotions_url(team)).status_code == 404
    anonymous = Client().get(promotions_url(team))
    assert anonymous.status_code == 302 and anonymous["Location"] == f"/login/?next={promotions_url(team)}"


def test_navigation_calls_it_promotions(team):
    html = promotions_page(team, "analyst").content.decode()
    assert (f'<a href="{promotions_url(team)}" class="nav-item nav-sub is-active" aria-current="page">Promotions</a>'
            in html)
    assert ">Credits</a>" not in html


def test_old_credits_address_redirects_to_promotions(team):
    old = f"/a/{team.advertiser.pk}/payments/credits/"
    response = team.client("analyst").get(old + "?status=expired")
    assert response.status_code == 302 and response["Location"] == promotions_url(team, "?status=expired")
    assert team.admin.get(old, follow=True).redirect_chain == [(promotions_url(team), 302)]
    # the old address checks the role like the page does
    assert team.client("operator").get(old).status_code == 403
    assert logged_in(team.outsider).get(old).status_code == 404
    assert Client().get(old)["Location"] == f"/login/?next={old}"


def test_emails_link_to_the_promotions_page(team):
    # given a credit issued and then a freeze: both notify the advertiser
    grant(team.advertiser, "free", "10.00")
    freeze(team.advertiser)
    links = set(Notification.objects.filter(advertiser=team.advertiser).values_list("kind", "link"))
    assert links == {("credit_issued", promotions_url(team)), ("credit_frozen", promotions_url(team))}
    # and the link opens the Promotions page
    response = team.admin.get(promotions_url(team))
    assert response.status_code == 200 and "Promotions" in text(element(response.content.decode(), "content"))


# --- the credit list ---------------------------------------------------------------------------

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
    # when the analyst opens Promotions
    response = promotions_page(team, "analyst")
    assert response.status_code == 200
    # then each credit's row reads as the advertiser expects
    d = row(response, discount)
    assert "Discount #{} 50% off each charge".format(discount.pk) in d
    assert "Discount offer $100.00 cap $70.00 70% $30.00 used" in d
    assert "All objectives Any product source All eligible campaigns Active" in d
    c = row(response, coupon)
    assert "Coupon #{}".format(coupon.pk) in c and "Promo code $40.00 $40.00 100% $0.00 used" in c
    assert "Product sales TikTok Shop products only" in c
    assert "Not assigned — pays for nothing yet" in c
    f = row(response, free)
    assert "Free credit #{} Ladder reward $30.00 $0.00 0% $30.00 used".format(free.pk) in f
    assert "Used up" in f
    expires = timezone.localtime(free.expires_at)
    assert f"until {expires:%b} {expires.day}, {expires.year}" in f
    # what is left is a native progress bar, no inline style
    html = element(response.content.decode(), f"credit-{discount.pk}")
    assert '<progress class="usage" max="100" value="70" aria-label="70% left">' in html and "style=" not in html
    # and the summary adds up what can pay now
    body = text(response)
    assert "Available credit $40.00" in body and "Discount left $70.00" in body


def test_expiry_within_seven_days_is_highlighted(team):
    now = timezone.now()
    soon = grant(team.advertiser, "free", "10.00", valid_from=now - timedelta(days=80), expires_at=now + timedelta(days=3))
    later = grant(team.advertiser, "free", "10.00", valid_from=now, expires_at=now + timedelta(days=30))
    response = promotions_page(team)
    assert "Expires soon" in row(response, soon) and "Expires soon" not in row(response, later)
    assert 'class="row-warning' in element(response.content.decode(), f"credit-{soon.pk}")
    assert "Expiring within 7 days $10.00 1 credit — unused credit is forfeited" in text(response)
    # open credits are listed soonest expiry first
    body = text(response)
    assert body.index(f"#{soon.pk}") < body.index(f"#{later.pk}")


def test_closed_credits_come_after_open_ones(team):
    withdrawn = grant(team.advertiser, "free", "10.00", key="gone")
    credit_withdraw(credit=withdrawn, reason="policy")
    active = grant(team.advertiser, "free", "5.00", expires_at=timezone.now() + timedelta(days=200))
    response = promotions_page(team)
    assert "Withdrawn" in row(response, withdrawn) and "$0.00 used" in row(response, withdrawn)
    body = text(response)
    assert body.index(f"#{active.pk}") < body.index(f"#{withdrawn.pk}")


def test_pending_shop_credit_says_when_it_becomes_usable(db, fast_password_hashing):
    t = make_team(billing_method="automatic")
    pending = grant(t.advertiser, "free", "30.00", source="shop", status=CreditStatus.PENDING)
    response = promotions_page(t)
    assert "TikTok Shop program $30.00 $30.00" in row(response, pending)
    assert "Pending Usable after your next bill is paid" in row(response, pending)
    assert "Pending $30.00 Usable once your next bill is paid" in text(response)


def test_status_filter_lists_only_that_status_without_javascript(team):
    # given an active credit and a withdrawn one
    active = grant(team.advertiser, "free", "10.00")
    gone = grant(team.advertiser, "free", "7.00", key="gone")
    credit_withdraw(credit=gone, reason="policy")
    # the tabs name each status the account has, with counts, and are plain links
    html = promotions_page(team).content.decode()
    tabs = text(element(html, "credits").split("</nav>")[0])
    assert "All 2 Active 1 Withdrawn 1" in tabs and "Expired" not in tabs
    assert f'href="{promotions_url(team)}?status=withdrawn"' in html
    # when the analyst follows "Withdrawn"
    response = promotions_page(team, "analyst", "?status=withdrawn")
    html = response.content.decode()
    # then only the withdrawn credit is listed, and the tab is marked
    assert f'id="credit-{gone.pk}"' in html and f'id="credit-{active.pk}"' not in html
    assert text(element(html, "credits-count")) == "1 withdrawn credit"
    assert 'aria-current="true">Withdrawn' in html
    # a status with no credit says so and offers the full list
    empty = promotions_page(team, "admin", "?status=expired")
    assert "No expired credits. Show all credits" in text(element(empty.content.decode(), "credits"))
    # an unknown status is ignored: everything is listed
    everything = promotions_page(team, "admin", "?status=bogus").content.decode()
    assert f'id="credit-{gone.pk}"' in everything and f'id="credit-{active.pk}"' in everything


def test_status_filter_answers_htmx_with_the_list_only(team):
    gone = grant(team.advertiser, "free", "7.00", key="gone")
    credit_withdraw(credit=gone, reason="policy")
    grant(team.advertiser, "free", "10.00")
    html = promotions_page(team).content.decode()
    # the tabs swap the list in place and push the filtered address
    tab = html.split(f'href="{promotions_url(team)}?status=withdrawn"', 1)[1].split(">", 1)[0]
    assert f'hx-get="{promotions_url(team)}?status=withdrawn"' in tab
    assert 'hx-target="#credits"' in tab and 'hx-push-url="true"' in tab
    # when htmx asks for the withdrawn credits
    response = team.client("analyst").get(promotions_url(team, "?status=withdrawn"), headers={"HX-Request": "true"})
    # then it gets the list alone, with times in the advertiser's zone, and caches vary on it
    partial = response.content.decode()
    assert response.status_code == 200 and "HX-Request" in response["Vary"]
    assert partial.lstrip().startswith('<section id="credits"') and "<html" not in partial
    assert f'id="credit-{gone.pk}"' in partial and text(element(partial, "credits-count")) == "1 withdrawn credit"
    # a history restore gets the whole page
    restore = team.admin.get(promotions_url(team, "?status=withdrawn"),
                             headers={"HX-Request": "true", "HX-History-Restore-Request": "true"})
    assert "<html" in restore.content.decode()


def test_long_lists_are_paged(db, fast_password_hashing):
    t = make_team()
    credits = bulk_credits(t.advertiser, 53)
    first = promotions_page(t).content.decode()
    assert text(element(first, "credits-count")) == "53 credits · page 1 of 2"
    assert first.count('<tr id="credit-') == 50
    second = promotions_page(t, "admin", "?page=2").content.decode()
    assert second.count('<tr id="credit-') == 3
    # the latest expiries are on the last page
    assert f'id="credit-{credits[-1].pk}"' in first or f'id="credit-{credits[-1].pk}"' in second
    shown = {c.pk for c in credits if f'id="credit-{c.pk}"' in first + second}
    assert shown == {c.pk for c in credits}
    assert 'rel="next" href="?page=2"' in first


# --- coupon assignment (admin only) ------------------------------------------------------------

def test_admin_assigns_a_coupon_to_campaigns(team):
    # given a coupon for Product sales, and campaigns of which one is eligible
    adv = team.advertiser
    shop = CampaignFactory(advertiser=adv, name="Shop live", objective="PRODUCT_SALES", product_source="TIKTOK_SHOP")
    coupon = grant(adv, "assignable", "25.00", eligible_objectives=["PRODUCT_SALES"])
    client = team.admin
    assign = f"/a/{adv.pk}/payments/promotions/credits/{coupon.pk}/assign/"
    # when the admin opens Promotions, the coupon offers only the eligible campaign
    html = element(client.get(promotions_url(team)).content.decode(), f"credit-{coupon.pk}")
    assert "Assign campaigns" in text(html) and f'action="{assign}"' in html
    assert f'value="{shop.pk}"' in html and f'value="{team.campaign.pk}"' not in html
    # when they assign it
    response = client.post(assign, {"campaigns": [shop.pk]}, follow=True)
    # then the coupon pays for that campaign, and the page says so
    assert response.redirect_chain == [(f"{promotions_url(team)}#credit-{coupon.pk}", 302)]
    assert list(coupon.campaigns.all()) == [shop]
    assert f"Coupon #{coupon.pk} now pays for 1 campaign." in text(response)
    assert "Shop live" in row(response, coupon)
    assert f'value="{shop.pk}" checked' in element(response.content.decode(), f"credit-{coupon.pk}")
    # and unassigning everything is allowed, with a warning
    response = client.post(assign, {}, follow=True)
    assert coupon.campaigns.count() == 0
    assert "pays for nothing until you assign it" in text(response)


def test_assigned_coupon_then_pays_the_campaigns_charges(team):
    adv = team.advertiser
    deposit(adv, "100.00")
    coupon = grant(adv, "assignable", "8.00")
    team.admin.post(f"/a/{adv.pk}/payments/promotions/credits/{coupon.pk}/assign/", {"campaigns": [team.campaign.pk]})
    result = spend(team.campaign, "10.00")
    assert result.allocation.coupons == [(coupon.pk, Decimal("8.00"))]
    assert "Spring sale" in row(promotions_page(team), coupon)


@pytest.mark.parametrize("role", ["finance", "analyst"])
def test_other_roles_see_coupons_read_only(team, role):
    coupon = grant(team.advertiser, "assignable", "25.00")
    response = promotions_page(team, role)
    assert "Assign campaigns" not in text(response) and "/assign/" not in response.content.decode()
    post = team.client(role).post(
        f"/a/{team.advertiser.pk}/payments/promotions/credits/{coupon.pk}/assign/", {"campaigns": [team.campaign.pk]}
    )
    assert post.status_code == 403 and coupon.campaigns.count() == 0


def test_operator_and_strangers_cannot_assign(team):
    coupon = grant(team.advertiser, "assignable", "25.00")
    assign = f"/a/{team.advertiser.pk}/payments/promotions/credits/{coupon.pk}/assign/"
    assert team.client("operator").post(assign, {"campaigns": [team.campaign.pk]}).status_code == 403
    assert logged_in(team.outsider).post(assign, {"campaigns": [team.campaign.pk]}).status_code == 404
    assert Client().post(assign, {"campaigns": [team.campaign.pk]})["Location"].startswith("/login/")
    assert team.admin.get(assign).status_code == 405
    assert coupon.campaigns.count() == 0


def test_admin_cannot_assign_another_advertisers_coupon_or_campaign(team):
    other = make_team()
    their_coupon = grant(other.advertiser, "assignable", "25.00")
    mine = grant(team.advertiser, "assignable", "25.00")
    client = team.admin
    # someone else's coupon under my advertiser's URL does not exist
    assert client.post(f"/a/{team.advertiser.pk}/payments/promotions/credits/{their_coupon.pk}/assign/",
                       {"campaigns": [team.campaign.pk]}).status_code == 404
    # and someone else's campaign is refused with the service's message
    response = client.post(f"/a/{team.advertiser.pk}/payments/promotions/credits/{mine.pk}/assign/",
                           {"campaigns": [other.campaign.pk]}, follow=True)
    assert "does not belong to this advertiser" in text(response)
    assert mine.campaigns.count() == 0 and their_coupon.campaigns.count() == 0


def test_free_credit_cannot_be_assigned(team):
    free = grant(team.advertiser, "free", "25.00")
    response = team.admin.post(f"/a/{team.advertiser.pk}/payments/promotions/credits/{free.pk}/assign/",
                               {"campaigns": [team.campaign.pk]}, follow=True)
    assert "Only a coupon can be assigned" in text(response)


def test_no_credit_yet(team):
    body = text(promotions_page(team))
    assert "No ad credit yet" in body and "You're not in a credit program" in body


# --- ladder programs ---------------------------------------------------------------------------

def test_ladder_enrollment_shows_progress_tiers_and_days_left(db, fast_password_hashing):
    # given a new advertiser in Los Angeles, enrolled in a 3-tier program, with 150.00 of own-money spend
    t = new_advertiser_team(timezone_name="America/Los_Angeles")
    enrollment = enroll(t.advertiser, name="New advertiser offer")
    deposit(t.advertiser, "1000.00")
    spend(t.campaign, "150.00", occurred_at=timezone.now())
    # when the analyst opens Promotions
    html = element(promotions_page(t, "analyst").content.decode(), f"enrollment-{enrollment.pk}")
    card = text(html)
    # then the card shows where they stand, what remains, and when the window closes
    assert "New advertiser offer" in card and "Earning" in card
    assert "Qualifying spend $150.00" in card
    assert "Next tier $350.00 to go to earn $120.00 at $500.00" in card
    end = timezone.localtime(enrollment.window_end, t.advertiser.tz)
    assert f"Window closes {end:%b} {end.day}, {end.year} {end:%H:%M} 30 days left" in card
    assert "You have reached $100.00: $20.00 in credit is paid when the window closes, or more if you reach the next tier." in card
    # and the bar marks every tier, the first one reached, filled halfway to the second step's eighth
    assert ('aria-label="Qualifying spend $150.00 of $500.00 for the next tier. Tiers: $100.00 earns $20.00; '
            '$500.00 earns $120.00; $2,000.00 earns $600.00."') in html
    assert html.count('class="ladder-mark is-reached is-paid"') == 1 and html.count('class="ladder-mark"') == 2
    assert 'class="ladder-fill" x="0" y="9" width="37.5%"' in html  # (1 + 50/400) of 3 even steps
    assert "+$600.00 · at once" in card
    assert "style=" not in html


def test_reward_issued_links_to_its_credit(db, fast_password_hashing):
    # given spend that crosses the immediate top tier: the reward is issued at once
    t = new_advertiser_team()
    enrollment = enroll(t.advertiser)
    deposit(t.advertiser, "5000.00")
    spend(t.campaign, "2100.00", occurred_at=timezone.now())
    enrollment.refresh_from_db()
    credit = enrollment.credit
    # when the admin opens Promotions
    response = promotions_page(t)
    card = text(element(response.content.decode(), f"enrollment-{enrollment.pk}"))
    # then the program says the reward was issued and links to it
    assert "Reward issued" in card and "Top tier reached" in card and "Window closed" in card
    assert f"Reward issued: Free credit #{credit.pk} of $600.00, $600.00 left, expires" in card
    assert f'href="{promotions_url(t)}?status=active#credit-{credit.pk}"' in response.content.decode()
    assert "Ladder reward $600.00 $600.00" in row(response, credit)


def test_frozen_advertiser_sees_reward_withheld(db, fast_password_hashing):
    # given an enrollment that reached the first tier, then a freeze before the window closed
    t = new_advertiser_team()
    enrollment = enroll(t.advertiser)
    deposit(t.advertiser, "1000.00")
    spend(t.campaign, "120.00", occurred_at=timezone.now())
    freeze(t.advertiser)
    card = text(element(promotions_page(t).content.decode(), f"enrollment-{enrollment.pk}"))
    assert "Earning" in card and "Your credit is frozen: a reward earned here is withheld until the freeze is lifted." in card
    # when the window closes while frozen
    close_ladder_windows(at=enrollment.window_end + timedelta(hours=2))
    enrollment.refresh_from_db()
    assert enrollment.status == EnrollmentStatus.WITHHELD
    # then the program says the reward is withheld
    card = text(element(promotions_page(t, "analyst").content.decode(), f"enrollment-{enrollment.pk}"))
    assert "Reward withheld" in card
    assert "Reward withheld: $20.00 is issued when the freeze on your credit is lifted." in card


def test_window_closed_without_a_tier(db, fast_password_hashing):
    t = new_advertiser_team()
    enrollment = enroll(t.advertiser)
    close_ladder_windows(at=enrollment.window_end + timedelta(hours=2))
    card = text(element(promotions_page(t).content.decode(), f"enrollment-{enrollment.pk}"))
    assert "Closed — no tier reached" in card and "The window closed without reaching a tier." in card


# --- redeem a code (admin only) ----------------------------------------------------------------

def test_admin_redeems_a_code_and_sees_the_new_enrollment(db, fast_password_hashing):
    # given a new advertiser and a program with a promo code
    t = new_advertiser_team()
    prog = program("Welcome offer", code="WELCOME50")
    # the admin sees the form
    form = element(promotions_page(t).content.decode(), "redeem")
    assert f'action="/a/{t.advertiser.pk}/payments/promotions/redeem/"' in form and 'name="code"' in form
    # when they redeem the code in lower case
    response = t.admin.post(f"/a/{t.advertiser.pk}/payments/promotions/redeem/", {"code": " welcome50 "}, follow=True)
    # then the account is enrolled by code, and the page shows the new program
    enrollment = Enrollment.objects.get(advertiser=t.advertiser, program=prog)
    assert enrollment.via_code
    assert response.redirect_chain == [(f"{promotions_url(t)}#enrollment-{enrollment.pk}", 302)]
    end = timezone.localtime(enrollment.window_end, t.advertiser.tz)
    assert (f"Code accepted: you joined Welcome offer. Spend $100.00 by {end:%b} {end.day}, {end.year} "
            "to earn $20.00 in ad credit.") in text(response)
    card = text(element(response.content.decode(), f"enrollment-{enrollment.pk}"))
    assert "Welcome offer" in card and "with a promo code" in card and "Qualifying spend $0.00" in card


def _suspended(t):
    t.advertiser.status = "suspended"
    t.advertiser.save()


def _spent_before(t):
    deposit(t.advertiser, "100.00")
    spend(t.campaign, "5.00")


REFUSALS = [
    # (team fields, program fields, code typed, before, message under the field)
    ({}, {}, "NOPE", None, "The promo code 'NOPE' does not exist."),
    ({}, {}, "   ", None, "Enter a promo code."),
    ({"signup_source": "organic"}, {}, "OFFER",
     None, "The account was not registered through an official TikTok offer entry point with the offer banner shown."),
    ({"registered_at": -61}, {}, "OFFER", None, "The offer is for accounts registered in the last 60 days."),
    ({"registered_at": -20}, {}, "OFFER", None, "A promo code must be activated within 14 days of registration."),
    ({}, {}, "OFFER", _spent_before, "The offer is for advertisers with no ad spend in the 90 days before enrolling."),
    ({}, {"ends_at": -1}, "OFFER", None, "Offer ended on {ends:%Y-%m-%d}."),
    ({}, {"currency": "EUR"}, "OFFER", None, "Offer is for EUR accounts."),
    ({}, {"kind": "shop"}, "OFFER", None, "Link a TikTok Shop to this account before joining a Shop program."),
    ({}, {}, "OFFER", _suspended, "A suspended account cannot enroll."),
]


@pytest.mark.parametrize("team_fields, program_fields, code, before, message", REFUSALS)
def test_each_refusal_is_shown_under_the_code(db, fast_password_hashing, team_fields, program_fields, code, before,
                                              message):
    # given an account and a program that refuses it for one reason
    fields = dict(team_fields)
    if "registered_at" in fields:
        fields["registered_at"] = timezone.now() + timedelta(days=fields["registered_at"])
    t = new_advertiser_team(**fields)
    pfields = dict(program_fields)
    if "ends_at" in pfields:
        pfields["ends_at"] = timezone.now() + timedelta(days=pfields["ends_at"])
    prog = program("Offer", code="OFFER", **pfields)
    if before:
        before(t)
    # when the admin redeems the code
    response = t.admin.post(f"/a/{t.advertiser.pk}/payments/promotions/redeem/", {"code": code})
    # then the page answers 422 with the rule that failed under the field, and nothing is enrolled
    assert response.status_code == 422
    html = response.content.decode()
    expected = message.format(ends=prog.ends_at) if prog.ends_at else message
    assert text(element(html, "id_code_error")) == expected
    assert 'class="field has-error"' in element(html, "redeem")
    assert f'value="{code.strip()}"' in element(html, "redeem") or not code.strip()
    assert not Enrollment.objects.filter(advertiser=t.advertiser).exists()


def test_redeeming_twice_or_after_a_sibling_or_past_the_limit_is_refused(db, fast_password_hashing):
    bc = BusinessCenterFactory()
    first, second = new_advertiser_team(business_center=bc), new_advertiser_team(business_center=bc)
    program("BC offer", code="ONCEPERBC")
    limited = program("Limited", code="ONLYONE", kind="shop", max_redemptions=1)
    redeem = lambda t, code: t.admin.post(f"/a/{t.advertiser.pk}/payments/promotions/redeem/", {"code": code})  # noqa: E731
    assert redeem(first, "ONCEPERBC").status_code == 302
    again = redeem(first, "onceperbc")
    assert text(element(again.content.decode(), "id_code_error")) == "This account is already enrolled in BC offer."
    sibling = redeem(second, "ONCEPERBC")
    assert text(element(sibling.content.decode(), "id_code_error")) == (
        "Another account of this Business Center already enrolled in this offer.")
    shop_a, shop_b = new_advertiser_team(shop_id="S-1"), new_advertiser_team(shop_id="S-2")
    assert redeem(shop_a, "ONLYONE").status_code == 302
    over = redeem(shop_b, "ONLYONE")
    assert text(element(over.content.decode(), "id_code_error")) == "This promo code has reached its redemption limit."
    limited.refresh_from_db()
    assert limited.redemptions == 1


@pytest.mark.parametrize("role", ["finance", "analyst"])
def test_other_roles_cannot_redeem(db, fast_password_hashing, role):
    t = new_advertiser_team()
    program("Offer", code="OFFER")
    redeem = element(promotions_page(t, role).content.decode(), "redeem")
    assert "Only an admin of this account can redeem a promo code." in text(redeem) and "<form" not in redeem
    assert t.client(role).post(f"/a/{t.advertiser.pk}/payments/promotions/redeem/", {"code": "OFFER"}).status_code == 403
    assert not Enrollment.objects.exists()


def test_operator_stranger_and_anonymous_cannot_redeem(db, fast_password_hashing):
    t = new_advertiser_team()
    program("Offer", code="OFFER")
    url = f"/a/{t.advertiser.pk}/payments/promotions/redeem/"
    assert t.client("operator").post(url, {"code": "OFFER"}).status_code == 403
    assert logged_in(t.outsider).post(url, {"code": "OFFER"}).status_code == 404
    assert Client().post(url, {"code": "OFFER"})["Location"] == f"/login/?next={url}"
    assert t.admin.get(url).status_code == 405
    assert not Enrollment.objects.exists()


# --- a constant number of queries --------------------------------------------------------------

def _queries(client, url, headers=None) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url, headers=headers or {}).status_code == 200
    return len(ctx.captured_queries)


def _with_credits(n: int):
    t = make_team()
    CampaignFactory(advertiser=t.advertiser, name="Second")
    bulk_credits(t.advertiser, n, campaign=t.campaign)
    deposit(t.advertiser, "1000.00", key=f"q-{n}")
    for _ in range(3):
        spend(t.campaign, "2.00")
    withdrawn = grant(t.advertiser, "free", "1.00", key=f"w-{n}")
    credit_withdraw(credit=withdrawn, reason="policy")
    return t


@pytest.mark.parametrize("role", ["admin", "analyst"])
def test_same_queries_with_10_or_1000_credits(db, fast_password_hashing, role):
    small, large = _with_credits(10), _with_credits(1000)
    for query, headers in [("", None), ("?status=active", {"HX-Request": "true"}), ("?page=2", None)]:
        counts = [_queries(t.client(role), promotions_url(t, query), headers) for t in (small, large)]
        assert counts[0] == counts[1], query
        assert counts[1] <= 16, query


def _with_enrollments(n: int):
    t = new_advertiser_team(shop_id="S-9")
    deposit(t.advertiser, "5000.00")
    for i in range(n):
        enroll(t.advertiser, name=f"Program {i}", kind="shop" if i % 2 == 0 else "new_advertiser")
    camp = CampaignFactory(advertiser=t.advertiser, objective="PRODUCT_SALES", product_source="TIKTOK_SHOP", shop_id="S-9")
    spend(camp, "150.00", occurred_at=timezone.now())
    return t


def test_same_queries_with_1_or_20_enrollments(db, fast_password_hashing):
    one, twenty = _with_enrollments(1), _with_enrollments(20)
    assert Enrollment.objects.filter(advertiser=twenty.advertiser).count() == 20
    counts = [_queries(t.admin, promotions_url(t)) for t in (one, twenty)]
    assert counts[0] == counts[1]
    shop = [_queries(t.admin, f"/a/{t.advertiser.pk}/shop/coupon-progress/") for t in (one, twenty)]
    assert shop[0] == shop[1]
