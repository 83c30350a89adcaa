"""In a real browser: an admin creates an API token on the API access page, sees it once, the
token works against the live server's /api/v1/ and /open_api/v1.3/, then the admin revokes it
(htmx confirmation in its row) and both answer 401 / 40100 (issue 6, R35, decision 0017)."""

import json
import urllib.error
import urllib.parse
import urllib.request

import pytest
from playwright.sync_api import expect

from portal.models import ApiToken, hash_token
from tests.pages_helpers import browser_login, browser_page, fast_password_hashing, make_team  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def call(url: str, token: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Access-Token": token})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_create_a_token_see_it_once_use_it_revoke_it(live_server, browser_page, fast_password_hashing):
    team = make_team(name="Acme Shoes")
    adv = team.advertiser
    api_url = f"{live_server.url}/api/v1/advertisers/{adv.pk}"
    info_url = f"{live_server.url}/open_api/v1.3/advertiser/info/?" + urllib.parse.urlencode(
        {"advertiser_ids": json.dumps([str(adv.pk)])})
    page = browser_page
    # given the admin opens API access from the sidebar
    browser_login(page, live_server.url, team.users["admin"])
    page.get_by_role("link", name="API access").click()
    expect(page).to_have_url(f"{live_server.url}/a/{adv.pk}/api-access/")
    expect(page.locator("#token-list")).to_contain_text("No tokens yet")
    # when they create a token
    page.get_by_label("Label").fill("Reporting script")
    page.get_by_role("button", name="Create token").click()
    # then it is shown once, and only its hash is stored
    raw = page.locator("#new-token-value").inner_text().strip()
    page.screenshot(path="/tmp/api_access_created.png", full_page=True)
    assert raw.startswith("act_")
    assert ApiToken.objects.get(advertiser=adv).key_hash == hash_token(raw)
    expect(page.locator("#token-list")).to_contain_text("Reporting script")
    # and it works against the running server on both surfaces
    status, body = call(api_url, raw)
    assert (status, body["id"]) == (200, str(adv.pk))
    status, envelope = call(info_url, raw)
    assert (status, envelope["code"]) == (200, 0)
    # when the page is opened again the value is gone, and the token has been used
    page.goto(f"{live_server.url}/a/{adv.pk}/api-access/")
    expect(page.locator("#new-token")).to_have_count(0)
    assert raw not in page.content()
    row = page.locator("#token-list tbody tr").first
    expect(row).to_contain_text(raw[:12])
    expect(row).to_contain_text("Active")
    expect(row).not_to_contain_text("Not recently")
    # when they revoke it: the row asks first, then the list says it is revoked
    row.get_by_role("link", name="Revoke…").click()
    expect(page.locator("#token-list")).to_contain_text("Revoke “Reporting script”")
    expect(page).to_have_url(f"{live_server.url}/a/{adv.pk}/api-access/")  # htmx swapped the row in place
    page.screenshot(path="/tmp/api_access_confirm.png", full_page=True)
    assert ApiToken.objects.get(advertiser=adv).revoked_at is None
    page.get_by_role("button", name="Revoke token").click()
    expect(page.locator("#token-notice")).to_contain_text("is revoked")
    expect(page.locator("#token-list tbody tr").first).to_contain_text("Revoked")
    # then both surfaces refuse the token
    status, body = call(api_url, raw)
    assert (status, body["error"]["code"]) == (401, "unauthorized")
    status, envelope = call(info_url, raw)
    assert (status, envelope["code"]) == (200, 40100)
    assert page.console_errors == []
