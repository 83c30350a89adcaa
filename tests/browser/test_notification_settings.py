"""The Notification settings page in headless Chromium (SPEC R44; decision 0029's patterns): no
serious axe violation at 1366 and 375 px, the table fits a phone, a refused amount takes focus
with its reason beside it, and each checkbox is named by its channel and alert."""

import pytest
from django.urls import reverse

from portal.models import AlertPreference
from tests.browser.test_accessibility import phone_layout_problems
from tests.pages_helpers import (  # noqa: F401
    axe_violations,
    browser_login,
    browser_page,
    describe_violations,
    fast_password_hashing,
    make_team,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
AMOUNT = "Alert me when the balance is below (USD)"


@pytest.mark.parametrize("width", [1366, 375])
def test_a_member_sets_their_alerts_by_keyboard_names_at_both_widths(live_server, browser_page, width):
    # given an admin of a manual account on the settings page
    team = make_team(name="Axe Shop")
    page, base = browser_page, live_server.url
    page.set_viewport_size({"width": width, "height": 800})
    browser_login(page, base, team.users["admin"])
    assert page.goto(base + reverse("notification_settings", args=[team.advertiser.pk])).status == 200
    # then axe finds nothing serious, and on a phone the table fits
    violations = axe_violations(page, base)
    assert not violations, describe_violations(violations)
    if width == 375:
        assert phone_layout_problems(page, ("Email", "In-app")) == []
    # when they type a bad amount
    page.get_by_role("textbox", name=AMOUNT).fill("12,50")
    page.get_by_role("button", name="Save notification settings").click()
    # then the field has focus and its reason beside it, and nothing was saved
    page.wait_for_selector("#id_low_balance_amount_error")
    assert page.evaluate("document.activeElement.id") == "id_low_balance_amount"
    assert "Nothing was saved." in page.locator("#id_low_balance_amount_error").inner_text()
    assert not axe_violations(page, base)
    assert AlertPreference.objects.count() == 0
    # when they fix it and untick one channel of one alert, found by its name
    page.get_by_role("textbox", name=AMOUNT).fill("30.00")
    page.get_by_role("checkbox", name="Email for Payment failed", exact=True).uncheck()
    page.get_by_role("button", name="Save notification settings").click()
    page.wait_for_selector("text=Notification settings saved.")
    # then it is saved
    saved = {p.alert: (p.email, p.in_app) for p in AlertPreference.objects.filter(user=team.users["admin"])}
    assert saved["payment_failed"] == (False, True) and saved["credit_expiring"] == (True, True)
    assert AlertPreference.objects.get(alert="low_balance").amount == 30
