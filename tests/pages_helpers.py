"""Helpers for dashboard page tests: an advertiser with one user per role, logged-in clients,
spend and visible-text helpers. Import the fixtures into a test module to use them."""

import itertools
import re
from dataclasses import dataclass
from datetime import timedelta
from html import unescape

import pytest
from django.test import Client
from django.utils import timezone

from billing.spend import spend_record
from portal.models import Advertiser, Campaign, Membership
from tests.factories import AdvertiserFactory, CampaignFactory, UserFactory

PASSWORD = "pw-correct-horse-42"  # tests.factories.UserFactory's password
ROLES = ("admin", "finance", "operator", "analyst")
_events = itertools.count(1)


@dataclass
class Team:
    """An advertiser, a user per role, a campaign, and a member of another advertiser."""

    advertiser: Advertiser
    campaign: Campaign
    users: dict
    outsider: object  # admin of another advertiser: must get 404 here

    def client(self, role: str) -> Client:
        return logged_in(self.users[role])

    @property
    def admin(self) -> Client:
        return self.client("admin")


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Page tests log in many users; a cheap hasher keeps them quick (import this fixture)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def member(advertiser, role: str, username: str | None = None):
    """A user with one role on `advertiser` (password PASSWORD)."""
    user = UserFactory(username=username) if username else UserFactory()
    Membership.objects.create(user=user, advertiser=advertiser, role=role)
    return user


def make_team(**advertiser_fields) -> Team:
    adv = AdvertiserFactory(**advertiser_fields)
    campaign = CampaignFactory(advertiser=adv, name="Spring sale", objective="TRAFFIC")
    users = {role: member(adv, role) for role in ROLES}
    outsider = member(AdvertiserFactory(name="Someone else"), "admin")
    return Team(adv, campaign, users, outsider)


@pytest.fixture
def team(db, fast_password_hashing) -> Team:
    return make_team(name="Acme Shoes")


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def spend(campaign, amount: str, *, occurred_at=None, kind=None):
    """Record one charge through the real spend service; returns its SpendResult."""
    event = {
        "event_id": f"page-ev-{next(_events)}",
        "advertiser_id": str(campaign.advertiser_id),
        "campaign_id": str(campaign.pk),
        "amount": amount,
        "currency": campaign.advertiser.currency,
        "occurred_at": (occurred_at or timezone.now() - timedelta(minutes=1)).isoformat(),
    }
    if kind:
        event["kind"] = kind
    return spend_record(event=event)


def text(response_or_html) -> str:
    """The text a user reads: tags dropped, entities decoded, whitespace collapsed."""
    html = response_or_html if isinstance(response_or_html, str) else response_or_html.content.decode()
    html = re.sub(r"<(script|style|title)\b.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html))).strip()


def between(haystack: str, start: str, end: str) -> str:
    """The part of `haystack` between two markers (e.g. one card of a page)."""
    i = haystack.index(start)
    return haystack[i : haystack.index(end, i + len(start))]


def element(html: str, element_id: str) -> str:
    """The HTML of the element with this id, up to its matching closing tag (simple nesting)."""
    m = re.search(rf'<(\w+)[^>]*\bid="{re.escape(element_id)}"', html)
    assert m, f"no element #{element_id}"
    tag, start = m.group(1), m.start()
    depth, pos = 0, start
    for t in re.finditer(rf"<(/?){tag}\b[^>]*>", html[start:]):
        depth += -1 if t.group(1) else 1
        if depth == 0:
            pos = start + t.end()
            break
    return html[start:pos]




# --- headless Chromium (tests marked `browser`) -------------------------------------------------
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def browser_page():
    """A Playwright page in headless Chromium (sync API). Console errors are collected on
    `page.console_errors` so a test can assert the page ran without JavaScript errors."""
    import os

    from playwright.sync_api import sync_playwright

    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # the sync API runs an event loop in this thread
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1360, "height": 900})
        page = context.new_page()
        page.set_default_timeout(15000)
        page.console_errors = []
        page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
        page.on("pageerror", lambda e: page.console_errors.append(str(e)))
        try:
            yield page
        finally:
            context.close()
            browser.close()


def browser_login(page, base_url: str, user) -> None:
    """Log in through the real login form."""
    page.goto(base_url + "/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login/" not in url)


# --- accessibility audits in the browser (tests/browser/test_accessibility.py) -----------------
AXE_URL = "/static/vendor/axe-core/axe.min.js"  # axe-core from the npm registry (static/vendor/README.md)


def axe_violations(page, base_url: str, *, impacts=("serious", "critical")) -> list[dict]:
    """axe-core's audit of the page as it is now: the violations of these impacts. axe is loaded
    from the portal's own static files, so the page's CSP stays on during the audit."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(url=base_url + AXE_URL)
    return page.evaluate(
        """async (impacts) => {
            const result = await axe.run(document, {resultTypes: ["violations"]});
            return result.violations.filter(v => impacts.includes(v.impact)).map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map(n => ({target: n.target.join(" "), summary: n.failureSummary})),
            }));
        }""",
        list(impacts),
    )


def describe_violations(violations: list[dict]) -> str:
    """axe violations as lines a failing test prints."""
    lines = []
    for v in violations:
        lines.append(f"  [{v['impact']}] {v['id']}: {v['help']}")
        for node in v["nodes"][:6]:
            summary = " ".join((node["summary"] or "").split())
            lines.append(f"      {node['target']} — {summary[:240]}")
    return "\n".join(lines)


def outside_viewport(page, selector: str) -> list[dict]:
    """The shown elements matching `selector` that reach past the left or right edge of the
    viewport (from their bounding boxes), with a bit of their HTML to say which."""
    return page.evaluate(
        """(selector) => Array.from(document.querySelectorAll(selector))
            .filter(el => el.getClientRects().length > 0)
            .map(el => ({box: el.getBoundingClientRect(), html: el.outerHTML.replace(/\\s+/g, " ").slice(0, 140)}))
            .filter(e => e.box.left < -0.5 || e.box.right > window.innerWidth + 0.5)
            .map(e => ({left: Math.round(e.box.left), right: Math.round(e.box.right), html: e.html}))""",
        selector,
    )
