"""In a real browser: the Promotions page (SPEC R34) lists the credits and filters them in place
with htmx, an admin redeems a promo code, an analyst reads without controls, a frozen advertiser
appeals with a PNG (R30, R31), and a Shop seller follows Coupon Progress (R20, R21)."""

import struct
import zlib
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from promotions.credits import credit_assign, credit_withdraw
from promotions.expiry import expire_credits
from promotions.models import Appeal, AppealStatus, Enrollment
from tests.factories import CampaignFactory, deposit, grant
from tests.pages_helpers import browser_login, browser_page, fast_password_hashing, make_team, spend  # noqa: F401
from tests.promotions.promotions_helpers import enroll, freeze, new_advertiser_team, private_media, program  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def png(width=4, height=4) -> bytes:
    """A real (tiny, grey) PNG image."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def busy_account():
    """Acme Shoes: a discount, an assigned coupon, an unassigned one, free credit expiring in 3
    days, a used-up ladder reward, an expired and a withdrawn credit, and a ladder in progress."""
    t = new_advertiser_team(name="Acme Shoes", timezone_name="America/New_York")
    adv, now = t.advertiser, timezone.now()
    shop = CampaignFactory(advertiser=adv, name="Shop live", objective="PRODUCT_SALES", product_source="TIKTOK_SHOP")
    enrollment = enroll(adv, name="New advertiser offer: spend $100, get $20")
    deposit(adv, "800.00")
    t.discount = grant(adv, "discount", "200.00", percent="50", source="discount", valid_from=now - timedelta(days=5))
    t.coupon = grant(adv, "assignable", "60.00", source="promo_code", valid_from=now - timedelta(days=5))
    credit_assign(credit=t.coupon, campaign_ids=[t.campaign.pk])
    t.spare = grant(adv, "assignable", "40.00", source="managed", eligible_objectives=["PRODUCT_SALES"],
                    eligible_product_source="TIKTOK_SHOP")
    t.soon = grant(adv, "free", "25.00", source="managed", valid_from=now - timedelta(days=85),
                   expires_at=now + timedelta(days=3), eligible_objectives=["LEAD_GENERATION"])
    t.used = grant(adv, "free", "15.00", source="ladder", valid_from=now - timedelta(days=10),
                   expires_at=now + timedelta(days=45), eligible_objectives=["TRAFFIC"])
    t.old = grant(adv, "free", "30.00", valid_from=now - timedelta(days=40), expires_at=now - timedelta(days=2))
    expire_credits()
    t.gone = grant(adv, "free", "20.00", key="gone")
    credit_withdraw(credit=t.gone, reason="policy")
    spend(t.campaign, "180.00", occurred_at=timezone.now())  # after enrolling: own money in it qualifies
    spend(shop, "60.00", occurred_at=timezone.now())
    t.enrollment, t.shop = enrollment, shop
    return t


def test_promotions_lists_credits_and_filters_them_in_place(live_server, browser_page, fast_password_hashing):
    # given an account with credits in every state
    t = busy_account()
    page = browser_page
    # when the admin opens Tools → Payments → Promotions
    browser_login(page, live_server.url, t.users["admin"])
    page.get_by_role("link", name="Promotions").click()
    promotions = f"{live_server.url}/a/{t.advertiser.pk}/payments/promotions/"
    expect(page).to_have_url(promotions)
    expect(page.get_by_role("heading", name="Promotions", level=1)).to_be_visible()
    # then every credit has its row, open ones first, the one expiring in 3 days flagged
    expect(page.locator("#credits-count")).to_have_text("7 credits")
    rows = page.locator(".credits-table tbody tr")
    expect(rows).to_have_count(7)
    expect(rows.first).to_contain_text(f"Free credit #{t.soon.pk}")
    expect(page.locator(f"#credit-{t.soon.pk}")).to_contain_text("Expires soon")
    expect(page.locator(f"#credit-{t.discount.pk}")).to_contain_text("50% off each charge")
    expect(page.locator(f"#credit-{t.coupon.pk}")).to_contain_text("Spring sale")
    expect(page.locator(f"#credit-{t.spare.pk}")).to_contain_text("Not assigned — pays for nothing yet")
    expect(page.locator(f"#credit-{t.old.pk}")).to_contain_text("Expired")
    expect(page.locator(f"#credit-{t.gone.pk}")).to_contain_text("Withdrawn")
    # and the ladder shows the spend that qualified: own money only
    card = page.locator(f"#enrollment-{t.enrollment.pk}")
    expect(card).to_contain_text("Earning")
    expect(card).to_contain_text("30 days left")
    page.screenshot(path="/tmp/promotions.png", full_page=True, caret="initial")  # "hide" injects a style the CSP blocks
    # when they pick "Expired" — marking this document first: a full reload would drop the mark
    page.evaluate("window.__sameDocument = true")
    page.locator("#credits .tabs").get_by_role("link", name="Expired").click()
    # then only the expired credit is listed, in the same document, and the URL follows
    expect(page.locator("#credits-count")).to_have_text("1 expired credit")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(f"Free credit #{t.old.pk}")
    expect(page).to_have_url(promotions + "?status=expired")
    assert page.evaluate("window.__sameDocument") is True
    page.locator("#credits .tabs").get_by_role("link", name="Active").click()
    expect(page.locator("#credits-count")).to_have_text("3 active credits")
    assert page.evaluate("window.__sameDocument") is True
    # and Back returns to the expired list
    page.go_back()
    expect(page.locator("#credits-count")).to_have_text("1 expired credit")
    expect(page.locator("#credits .tab.is-active")).to_contain_text("Expired")
    assert page.console_errors == []


def test_admin_redeems_a_code_and_sees_the_new_enrollment(live_server, browser_page, fast_password_hashing):
    # given a new advertiser and a program with a promo code
    t = new_advertiser_team(name="Fresh Start")
    program("Welcome offer", code="WELCOME50", window_days=30)
    page = browser_page
    browser_login(page, live_server.url, t.users["admin"])
    page.goto(f"{live_server.url}/a/{t.advertiser.pk}/payments/promotions/")
    expect(page.locator("#programs")).to_contain_text("You're not in a credit program")
    # a wrong code is refused under the field
    page.get_by_role("textbox", name="Promo code").fill("WELCOME5")
    page.get_by_role("button", name="Redeem").click()
    expect(page.locator("#id_code_error")).to_have_text("The promo code 'WELCOME5' does not exist.")
    # when the admin types the right one, in lower case
    page.get_by_role("textbox", name="Promo code").fill("welcome50")
    page.get_by_role("button", name="Redeem").click()
    # then the page confirms it and shows the new enrollment, with its first goal
    enrollment = Enrollment.objects.get(advertiser=t.advertiser)
    expect(page).to_have_url(f"{live_server.url}/a/{t.advertiser.pk}/payments/promotions/#enrollment-{enrollment.pk}")
    expect(page.get_by_role("status")).to_contain_text("Code accepted: you joined Welcome offer.")
    card = page.locator(f"#enrollment-{enrollment.pk}")
    expect(card).to_contain_text("Welcome offer")
    expect(card).to_contain_text("with a promo code")
    expect(card).to_contain_text("$100.00 to go")
    expect(card).to_contain_text("30 days left")
    assert [e for e in page.console_errors if "status of 422" not in e] == []  # the wrong code answered 422


def test_analyst_reads_without_assign_or_redeem_controls(live_server, browser_page, fast_password_hashing):
    t = busy_account()
    page = browser_page
    browser_login(page, live_server.url, t.users["analyst"])
    page.goto(f"{live_server.url}/a/{t.advertiser.pk}/payments/promotions/")
    expect(page.locator(f"#credit-{t.spare.pk}")).to_contain_text("Not assigned — pays for nothing yet")
    expect(page.get_by_text("Assign campaigns")).to_have_count(0)
    expect(page.locator("form[action*='/assign/']")).to_have_count(0)
    expect(page.locator("#redeem")).to_contain_text("Only an admin of this account can redeem a promo code.")
    expect(page.locator("#redeem form")).to_have_count(0)
    assert page.console_errors == []


def test_frozen_advertiser_appeals_with_a_png_and_sees_it_under_review(live_server, browser_page, fast_password_hashing,
                                                                       private_media):
    # given a frozen account with credit and a ladder in progress
    t = busy_account()
    freeze(t.advertiser, reason="Several cards were declined on this account within one hour.")
    page = browser_page
    browser_login(page, live_server.url, t.users["finance"])
    page.goto(f"{live_server.url}/a/{t.advertiser.pk}/payments/promotions/")
    banner = page.locator("#freeze")
    expect(banner).to_contain_text("Your ad credit is frozen")
    expect(banner).to_contain_text("Several cards were declined on this account within one hour.")
    expect(page.locator(f"#enrollment-{t.enrollment.pk}")).to_contain_text("a reward earned here is withheld")
    page.screenshot(path="/tmp/promotions_frozen.png", full_page=True, caret="initial")  # "hide" injects a style the CSP blocks
    # a file that is not an image, whatever its name, is refused
    page.get_by_label("Why should the freeze be lifted?").fill("These are our own company cards; one was expired.")
    page.get_by_label("Attachments (optional)").set_input_files(
        files=[{"name": "statement.png", "mimeType": "image/png", "buffer": b"<?php system($_GET['c']); ?>"}])
    page.get_by_role("button", name="Send appeal").click()
    expect(page.locator("#id_files_error")).to_contain_text("statement.png is not a PDF, PNG or JPEG file")
    expect(page.get_by_label("Why should the freeze be lifted?")).to_have_value(
        "These are our own company cards; one was expired.")
    # when finance attaches a real PNG and sends the appeal
    page.get_by_label("Attachments (optional)").set_input_files(
        files=[{"name": "bank-letter.png", "mimeType": "image/png", "buffer": png()}])
    page.get_by_role("button", name="Send appeal").click()
    # then the banner shows the appeal under review instead of the form
    status = page.locator("#appeal-status")
    expect(status).to_contain_text("Under review")
    expect(status).to_contain_text("Your appeal is under review")
    expect(status).to_contain_text("bank-letter.png")
    expect(page.locator("#appeal-form")).to_have_count(0)
    appeal = Appeal.objects.get(advertiser=t.advertiser)
    assert appeal.status == AppealStatus.OPEN and appeal.attachments.get().content_type == "image/png"
    # and the file downloads as an attachment
    with page.expect_download() as download:
        status.get_by_role("link", name="bank-letter.png").click()
    assert download.value.suggested_filename == "bank-letter.png"
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path="/tmp/promotions_appeal.png", full_page=True, caret="initial")  # "hide" injects a style the CSP blocks
    # the refused file answered 422, which the browser logs; nothing else went wrong
    assert [e for e in page.console_errors if "status of 422" not in e] == []


def test_coupon_progress_shows_the_sellers_ladder(live_server, browser_page, fast_password_hashing):
    # given a Shop seller with 320.00 of Shop Ads spend in a 4-step Shop program, and one closed program
    t = make_team(name="Acme Shop", shop_id="S-100", timezone_name="Asia/Singapore")
    adv = t.advertiser
    shop = CampaignFactory(advertiser=adv, name="Live shopping", objective="PRODUCT_SALES",
                           product_source="TIKTOK_SHOP", shop_id="S-100")
    tiers = [{"threshold": "100.00", "reward": "20.00"}, {"threshold": "250.00", "reward": "60.00"},
             {"threshold": "500.00", "reward": "150.00"}, {"threshold": "1500.00", "reward": "500.00", "immediate": True}]
    earning = enroll(adv, name="Shop Ads Spend & Get — Q3", kind="shop", tiers=tiers, window_days=28)
    deposit(adv, "2000.00")
    spend(shop, "320.00", occurred_at=timezone.now())
    page = browser_page
    browser_login(page, live_server.url, t.users["admin"])
    # when the seller opens Shop Ads → Coupon Progress
    page.get_by_role("link", name="Coupon Progress").click()
    expect(page).to_have_url(f"{live_server.url}/a/{adv.pk}/shop/coupon-progress/")
    expect(page.locator(".breadcrumb")).to_have_text("Seller Center › Marketing › Shop Ads › Ads Dashboard › Coupon Progress")
    # then the ladder shows two steps reached and where the seller stands
    card = page.locator(f"#enrollment-{earning.pk}")
    expect(card.locator(".step.is-reached")).to_have_count(2)
    expect(card.locator(".step.is-current")).to_have_count(1)
    expect(card).to_contain_text("$320.00")
    expect(card).to_contain_text("$180.00 to go")
    expect(card).to_contain_text("to reach $500.00 and earn $150.00")
    expect(card).to_contain_text("28 days left")
    expect(card).to_contain_text("Issued when the window closes")
    page.screenshot(path="/tmp/coupon_progress.png", full_page=True, caret="initial")  # "hide" injects a style the CSP blocks
    assert page.console_errors == []
