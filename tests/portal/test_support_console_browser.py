"""The support console in headless Chromium at 1366 px (issue 13): the appeal review screen's
section bars are one line high with the title inside, no stray Close row, the decision buttons
look like the admin's buttons; the audit log's Reason and the appeals queue's Decided column are
readable beside the navigation, without scrolling sideways."""

import pytest
from django.contrib.auth.models import Group
from playwright.sync_api import expect

from portal.models import AuditLog
from portal.permissions import BILLING_MANAGER
from promotions.appeals import appeal_decide, appeal_file
from promotions.freeze import credit_freeze
from tests.factories import AdvertiserFactory, UserFactory, grant, member
from tests.pages_helpers import PASSWORD, browser_page, fast_password_hashing  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTH = 1366
LONG_REASON = ("Several cards were declined within one hour and the billing address changed twice; the account "
               "stays frozen until the bank letter is checked by the risk team.")


@pytest.fixture(autouse=True)
def private_media(settings, tmp_path):
    settings.PRIVATE_MEDIA_ROOT = str(tmp_path)


def admin_login(page, base_url: str, user) -> None:
    page.set_viewport_size({"width": WIDTH, "height": 900})
    page.goto(f"{base_url}/admin/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(lambda url: "/admin/login/" not in url)


def manager():
    user = UserFactory(is_staff=True)
    user.groups.add(Group.objects.get_or_create(name=BILLING_MANAGER)[0])
    return user


def open_appeal(name="Frozen Fashion"):
    adv = AdvertiserFactory(name=name)
    owner = member(adv, "admin")
    grant(adv, "free", "50.00")
    credit_freeze(advertiser=adv, reason=LONG_REASON, by=None)
    return appeal_file(advertiser=adv, user=owner, message="Our own company cards; one had expired.")


def box(locator) -> dict:
    b = locator.bounding_box()
    assert b is not None
    return b


def test_the_appeal_review_screen_has_one_line_section_bars_and_admin_buttons(live_server, browser_page,
                                                                             fast_password_hashing):
    appeal = open_appeal()
    page = browser_page
    admin_login(page, live_server.url, manager())
    page.goto(f"{live_server.url}/admin/promotions/appeal/{appeal.pk}/change/")
    expect(page.locator("h2").first).to_have_text(f"Appeal #{appeal.pk} · Frozen Fashion · Under review")

    # each section bar is one line high, with its title at the top of its own section
    headings = page.locator("fieldset.module > h2.fieldset-heading")
    assert headings.count() == 6
    for i in range(headings.count()):
        heading = headings.nth(i)
        section = box(heading.locator(".."))
        bar = box(heading)
        assert bar["height"] < 45 and abs(bar["y"] - section["y"]) < 1, heading.text_content()
    # nothing shows the header colour between the sections: the decision starts below the form
    decision, form = page.locator("#appeal-decision"), box(page.locator("#content-main"))
    assert box(decision)["y"] >= form["y"] + form["height"] - 1
    assert box(decision.locator("h2"))["height"] < 45
    header_bg = page.evaluate("getComputedStyle(document.querySelector('#appeal-decision h2')).backgroundColor")
    gaps = page.evaluate("""(bg) => {
        const sets = [...document.querySelectorAll('#content-main fieldset.module')];
        const hits = [];
        for (let i = 0; i + 1 < sets.length; i++) {
            const y = (sets[i].getBoundingClientRect().bottom + sets[i + 1].getBoundingClientRect().top) / 2;
            const x = sets[i].getBoundingClientRect().left + 40;
            const el = document.elementFromPoint(x, y);
            if (el && getComputedStyle(el).backgroundColor === bg) hits.push(el.tagName + ' ' + el.id);
        }
        return hits;
    }""", header_bg)
    assert gaps == []

    # no stray Close row above the decision form: one row of buttons, the decision's
    expect(page.get_by_role("link", name="Close")).to_have_count(0)
    expect(page.locator(".submit-row")).to_have_count(1)

    # the buttons look like Django admin's: its colours, padding and rounded corners
    style = page.evaluate("""() => {
        const root = getComputedStyle(document.documentElement);
        const probe = document.createElement('span');
        document.body.appendChild(probe);
        const colour = (name) => { probe.style.background = root.getPropertyValue(name);
                                   return getComputedStyle(probe).backgroundColor; };
        const look = (name) => { const b = getComputedStyle(document.querySelector(`button[value=${name}]`));
                                 return [b.backgroundColor, b.paddingTop, b.paddingLeft, b.borderRadius, b.color]; };
        return {approve: look('approve'), reject: look('reject'), withdraw: look('reject_withdraw'),
                default_bg: colour('--default-button-bg'), button_bg: colour('--button-bg'),
                delete_bg: colour('--delete-button-bg'), fg: getComputedStyle(probe).color,
                button_fg: (probe.style.color = root.getPropertyValue('--button-fg'), getComputedStyle(probe).color)};
    }""")
    assert style["approve"] == [style["default_bg"], "10px", "15px", "4px", style["button_fg"]]
    assert style["reject"] == [style["button_bg"], "10px", "15px", "4px", style["button_fg"]]
    assert style["withdraw"] == [style["delete_bg"], "10px", "15px", "4px", style["button_fg"]]
    approve, reject = box(page.get_by_role("button", name="Approve — unfreeze the credit")), box(
        page.get_by_role("button", name="Reject — credit stays frozen"))
    assert abs(approve["height"] - reject["height"]) < 1 and approve["height"] >= 34

    # nothing scrolls the page sideways, and the buttons work
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH
    page.get_by_label("Decision note").fill("Bank letter confirms the cards are yours.")
    page.get_by_role("button", name="Approve — unfreeze the credit").click()
    expect(page.locator(".messagelist")).to_contain_text(f"Appeal #{appeal.pk} of Frozen Fashion approved")
    assert page.console_errors == []


def test_the_audit_log_reason_and_the_appeals_decided_column_are_readable_at_1366(live_server, browser_page,
                                                                                 fast_password_hashing):
    decided = open_appeal("Decided Co")
    staff = manager()
    appeal_decide(appeal=decided, decision="reject", note="The documents do not match the account.", by=staff)
    open_appeal("Waiting Co")
    page = browser_page
    admin_login(page, live_server.url, staff)

    # the audit log: the reason is a readable column, the whole table fits beside the navigation
    page.goto(f"{live_server.url}/admin/portal/auditlog/")
    assert AuditLog.objects.filter(reason=LONG_REASON).exists()
    reason = page.locator("#result_list td.field-reason_text", has_text="Several cards were declined").first
    cell = box(reason)
    assert cell["width"] >= 250, cell
    assert cell["x"] + cell["width"] <= WIDTH
    results = page.locator("#changelist .results")
    assert page.evaluate("(el) => el.scrollWidth <= el.clientWidth", results.element_handle())

    # the appeals queue: "Decided" is in view, not under the filters, and not scrolled away
    page.goto(f"{live_server.url}/admin/promotions/appeal/?queue=all")
    header = box(page.locator("#result_list th.column-decided"))
    value = page.locator("#result_list td.field-decided", has_text="by").first
    expect(value).to_contain_text(f"by {staff.username}")
    filters = box(page.locator("#changelist-filter"))
    for b in (header, box(value)):
        assert b["x"] + b["width"] <= WIDTH
        overlaps = not (b["x"] >= filters["x"] + filters["width"] or b["x"] + b["width"] <= filters["x"]
                        or b["y"] >= filters["y"] + filters["height"] or b["y"] + b["height"] <= filters["y"])
        assert not overlaps, (b, filters)
    assert page.evaluate("(el) => el.scrollWidth <= el.clientWidth",
                         page.locator("#changelist .results").element_handle())
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH
    assert page.console_errors == []
