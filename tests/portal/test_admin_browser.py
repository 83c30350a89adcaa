"""In a real browser, under the portal's Content Security Policy (issue 5, "must hold"): a frozen
advertiser files an appeal with a PNG; a support agent approves it on the admin review screen;
the advertiser sees the decision and the credit in use."""

import struct
import zlib

import pytest
from django.contrib.auth.models import Group
from playwright.sync_api import expect

from portal.permissions import SUPPORT_AGENT
from promotions.models import Appeal, AppealStatus, CreditStatus
from tests.factories import UserFactory, deposit, grant
from tests.pages_helpers import PASSWORD, browser_login, browser_page, fast_password_hashing, make_team, spend  # noqa: F401
from tests.promotions.promotions_helpers import freeze, private_media  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def png(width=4, height=4) -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_appeal_filed_approved_in_the_admin_and_the_credit_used_again(live_server, browser_page,
                                                                       fast_password_hashing, private_media):
    # given a frozen account with 50.00 of free credit and cash
    t = make_team(name="Frozen Fashion")
    adv = t.advertiser
    deposit(adv, "300.00")
    credit = grant(adv, "free", "50.00")
    freeze(adv, reason="Several cards were declined within one hour.")
    agent = UserFactory(username="agent-amy", is_staff=True)
    agent.groups.add(Group.objects.get_or_create(name=SUPPORT_AGENT)[0])
    page = browser_page

    # when finance files an appeal with a PNG from the Promotions page
    browser_login(page, live_server.url, t.users["finance"])
    page.goto(f"{live_server.url}/a/{adv.pk}/payments/promotions/")
    page.get_by_label("Why should the freeze be lifted?").fill("Our own company cards; one had expired.")
    page.get_by_label("Attachments (optional)").set_input_files(
        files=[{"name": "bank-letter.png", "mimeType": "image/png", "buffer": png()}])
    page.get_by_role("button", name="Send appeal").click()
    expect(page.locator("#appeal-status")).to_contain_text("Under review")
    page.get_by_role("button", name="Log out").click()

    # and a support agent opens the queue in the admin, reviews it and approves it with a note
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", agent.username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.goto(f"{live_server.url}/admin/promotions/appeal/")
    appeal = Appeal.objects.get(advertiser=adv)
    expect(page.locator("#result_list")).to_contain_text("Frozen Fashion")
    page.locator("#result_list").get_by_role("link", name=str(appeal.pk)).click()
    expect(page.locator("#content-main")).to_contain_text("Our own company cards; one had expired.")
    expect(page.locator("#content-main")).to_contain_text("Several cards were declined within one hour.")
    expect(page.get_by_role("link", name="bank-letter.png")).to_be_visible()
    expect(page.get_by_role("button", name="Reject and withdraw the credit…")).to_have_count(0)
    page.get_by_label("Decision note").fill("Bank letter confirms the cards are yours.")
    page.get_by_role("button", name="Approve — unfreeze the credit").click()
    expect(page.locator(".messagelist")).to_contain_text(f"Appeal #{appeal.pk} of Frozen Fashion approved")
    appeal.refresh_from_db()
    assert (appeal.status, appeal.decided_by) == (AppealStatus.APPROVED, agent)
    page.locator("#logout-form button").click()

    # then the advertiser sees the decision, and the credit pays for spend again
    spend(t.campaign, "20.00")
    credit.refresh_from_db()
    assert credit.status == CreditStatus.ACTIVE and credit.remaining == 30
    browser_login(page, live_server.url, t.users["finance"])
    page.goto(f"{live_server.url}/a/{adv.pk}/payments/promotions/")
    expect(page.locator("#freeze")).to_have_count(0)
    expect(page.locator(f"#appeal-{appeal.pk}")).to_contain_text("Approved")
    expect(page.locator(f"#appeal-{appeal.pk}")).to_contain_text("Bank letter confirms the cards are yours.")
    expect(page.locator(f"#credit-{credit.pk}")).to_contain_text("$30.00")
    # and the bell has the decision among its notifications
    page.locator("#notification-bell").click()
    expect(page.locator("#notification-list")).to_contain_text(f"Your appeal #{appeal.pk} was approved")
    # nothing the Content Security Policy refused, nothing else went wrong
    assert page.console_errors == []
