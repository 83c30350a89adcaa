"""Security of the portal (issue 5 §6): login rate limiting, CSRF on every form and htmx call, a
Content Security Policy that allows only the portal's own files (and pages that need nothing
more), the admin only for staff roles."""

import re
import uuid

import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from portal import login as login_module
from portal.models import Notification
from portal.permissions import SUPPORT_AGENT
from promotions.appeals import appeal_file
from promotions.freeze import credit_freeze
from tests.factories import AdvertiserFactory, UserFactory, deposit, grant
from tests.pages_helpers import PASSWORD, fast_password_hashing, logged_in, spend, team, text  # noqa: F401

pytestmark = pytest.mark.django_db

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


# --- login rate limiting ----------------------------------------------------------------------------


def fresh_user(**fields):
    return UserFactory(username=f"login-{uuid.uuid4().hex[:10]}", **fields)


def attempt(client, username, password, url="/login/"):
    return client.post(url, {"username": username, "password": password})


def test_the_sixth_failed_login_is_refused_even_with_the_right_password_until_the_window_passes(
        settings, monkeypatch):
    # given a user and a clock we control
    user = fresh_user()
    clock = [1_000_000.0]
    monkeypatch.setattr(login_module, "_now", lambda: clock[0])
    client = Client()
    # when five wrong passwords are tried
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        response = attempt(client, user.username, "wrong")
        assert "Please enter a correct username and password" in text(response)
    # then the next attempt is refused even with the right password, and the form says to wait
    clock[0] += 60
    blocked = attempt(client, user.username, PASSWORD)
    assert blocked.status_code == 200
    assert "Too many failed login attempts. Wait 14 minutes before trying again." in text(blocked)
    assert "_auth_user_id" not in client.session
    # still refused just before the window ends
    clock[0] += settings.LOGIN_FAILURE_WINDOW - 61
    assert "Wait 1 minute before" in text(attempt(client, user.username, PASSWORD))
    # when the window has passed, the right password logs in
    clock[0] += 2
    done = attempt(client, user.username, PASSWORD)
    assert done.status_code == 302
    assert client.session["_auth_user_id"] == str(user.pk)


def test_the_limit_is_per_username_and_address_and_a_success_clears_it(settings):
    user = fresh_user()
    limit = settings.LOGIN_FAILURE_LIMIT
    client = Client()
    # four failures, then a success: the count starts again
    for _ in range(limit - 1):
        attempt(client, user.username, "wrong")
    assert attempt(client, user.username, PASSWORD).status_code == 302
    client = Client()
    for _ in range(limit - 1):
        attempt(client, user.username, "wrong")
    assert attempt(client, user.username, PASSWORD).status_code == 302
    # five failures from one address block that address only
    blocked_ip = Client(REMOTE_ADDR="203.0.113.7")
    for _ in range(limit):
        attempt(blocked_ip, user.username, "wrong")
    assert "Too many failed login attempts" in text(attempt(blocked_ip, user.username, PASSWORD))
    assert attempt(Client(REMOTE_ADDR="198.51.100.2"), user.username, PASSWORD).status_code == 302
    # and another username from the blocked address is not affected (usernames are case-folded)
    other = fresh_user()
    assert attempt(Client(REMOTE_ADDR="203.0.113.7"), other.username, PASSWORD).status_code == 302
    assert "Too many" in text(attempt(Client(REMOTE_ADDR="203.0.113.7"), user.username.upper(), PASSWORD))


def test_a_proxy_header_names_the_client_when_configured(settings):
    settings.LOGIN_CLIENT_IP_HEADER = "HTTP_X_REAL_IP"
    user = fresh_user()
    proxy = Client(REMOTE_ADDR="10.0.0.1")
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        proxy.post("/login/", {"username": user.username, "password": "x"}, headers={"X-Real-IP": "203.0.113.9"})
    refused = proxy.post("/login/", {"username": user.username, "password": PASSWORD},
                         headers={"X-Real-IP": "203.0.113.9"})
    assert "Too many failed login attempts" in text(refused)
    # the same proxy, another client behind it
    ok = proxy.post("/login/", {"username": user.username, "password": PASSWORD}, headers={"X-Real-IP": "203.0.113.10"})
    assert ok.status_code == 302


def test_the_admin_login_is_rate_limited_too(settings):
    agent = fresh_user(is_staff=True)
    agent.groups.add(Group.objects.get_or_create(name=SUPPORT_AGENT)[0])
    client = Client()
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        attempt(client, agent.username, "wrong", url="/admin/login/")
    refused = attempt(client, agent.username, PASSWORD, url="/admin/login/")
    assert refused.status_code == 200 and "Too many failed login attempts" in refused.content.decode()
    assert "_auth_user_id" not in client.session


# --- CSRF ---------------------------------------------------------------------------------------------


def csrf_client(user) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def test_a_post_without_a_csrf_token_is_refused(team):
    Notification.objects.create(advertiser=team.advertiser, kind="credit_frozen", key="csrf-1",
                                subject="Frozen", context={"reason": "x"})
    client = csrf_client(team.users["admin"])
    aid = team.advertiser.pk
    for url, data in [(f"/a/{aid}/notifications/read/", {}),
                      (f"/a/{aid}/payments/add-funds/", {"amount": "100.00"}),
                      (f"/a/{aid}/payments/promotions/redeem/", {"code": "WELCOME"}),
                      ("/logout/", {})]:
        assert client.post(url, data).status_code == 403, url
    assert Notification.objects.get().read_at is None
    assert client.session.get("_auth_user_id") == str(team.users["admin"].pk)  # not logged out


def test_htmx_calls_carry_the_token_from_the_body_and_pass(team):
    Notification.objects.create(advertiser=team.advertiser, kind="credit_frozen", key="csrf-2",
                                subject="Frozen", context={"reason": "x"})
    client = csrf_client(team.users["admin"])
    page = client.get(f"/a/{team.advertiser.pk}/notifications/")
    # the token is in hx-headers on <body>, so every htmx request sends it
    token = re.search(r'<body hx-headers=\'\{"X-CSRFToken": "([^"]+)"\}\'', page.content.decode()).group(1)
    response = client.post(f"/a/{team.advertiser.pk}/notifications/read/",
                           headers={"HX-Request": "true", "X-CSRFToken": token})
    assert response.status_code == 200
    assert Notification.objects.get().read_at is not None


def test_every_form_on_the_pages_has_a_csrf_token(team, settings, tmp_path):
    """Each POST form a user can see carries the token (GET filter forms need none)."""
    settings.PRIVATE_MEDIA_ROOT = str(tmp_path)
    adv = team.advertiser
    deposit(adv, "500.00")
    grant(adv, "assignable", "20.00")
    spend(team.campaign, "12.00")
    credit_freeze(advertiser=adv, reason="review", by=UserFactory(is_staff=True))
    appeal_file(advertiser=adv, user=team.users["admin"], message="please",
                files=[SimpleUploadedFile("a.png", PNG, content_type="image/png")])
    client = team.admin
    for url in dashboard_pages(adv.pk):
        html = client.get(url).content.decode()
        for form in re.findall(r"<form\b[^>]*>.*?</form>", html, flags=re.S | re.I):
            if re.search(r'method="post"', form, flags=re.I):
                assert 'name="csrfmiddlewaretoken"' in form, (url, form[:200])


# --- Content Security Policy --------------------------------------------------------------------------


def dashboard_pages(aid):
    return [f"/a/{aid}/", f"/a/{aid}/campaigns/", f"/a/{aid}/payments/", f"/a/{aid}/payments/transactions/",
            f"/a/{aid}/payments/add-funds/", f"/a/{aid}/payments/bills/", f"/a/{aid}/payments/billing-method/",
            f"/a/{aid}/payments/promotions/", f"/a/{aid}/notifications/", f"/a/{aid}/api-access/"]


def csp_of(response) -> dict:
    header = response["Content-Security-Policy"]
    return {d.split()[0]: d.split()[1:] for d in (p.strip() for p in header.split(";")) if d}


def test_pages_carry_a_policy_that_allows_only_the_portals_own_files(team):
    for client, url in [(Client(), "/login/"), (team.admin, f"/a/{team.advertiser.pk}/"),
                        (team.admin, f"/a/{team.advertiser.pk}/payments/promotions/")]:
        policy = csp_of(client.get(url))
        assert policy["default-src"] == ["'self'"], url
        assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"]
        assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
        assert policy["form-action"] == ["'self'"] and policy["base-uri"] == ["'none'"]
        assert not any("unsafe" in v or v.startswith("http") for values in policy.values() for v in values)


INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>", re.I)
INLINE_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.I)
INLINE_STYLE = re.compile(r"<style\b|<[^>]+\sstyle\s*=", re.I)
EXTERNAL = re.compile(r"""(?:src|href)=["']https?://""", re.I)


def assert_nothing_inline(html: str, where: str):
    """What the policy would block: inline scripts, event handlers, style blocks and attributes,
    and scripts or styles from another origin."""
    assert not INLINE_SCRIPT.search(html), (where, INLINE_SCRIPT.search(html).group(0))
    assert not INLINE_HANDLER.search(html), (where, INLINE_HANDLER.search(html).group(0))
    assert not INLINE_STYLE.search(html), (where, INLINE_STYLE.search(html).group(0))
    for m in re.finditer(r"<(script|link)\b[^>]*>", html, flags=re.I):
        assert not EXTERNAL.search(m.group(0)), (where, m.group(0))


def test_no_dashboard_page_needs_inline_script_or_style(team, settings, tmp_path):
    # given an account with data on every page: money, credit, a chart, a frozen banner and an appeal
    settings.PRIVATE_MEDIA_ROOT = str(tmp_path)
    adv = team.advertiser
    deposit(adv, "500.00")
    grant(adv, "free", "50.00")
    spend(team.campaign, "30.00")
    credit_freeze(advertiser=adv, reason="review", by=UserFactory(is_staff=True))
    appeal_file(advertiser=adv, user=team.users["admin"], message="please",
                files=[SimpleUploadedFile("a.png", PNG, content_type="image/png")])
    assert_nothing_inline(Client().get("/login/").content.decode(), "/login/")
    for url in dashboard_pages(adv.pk):
        response = team.admin.get(url)
        assert response.status_code == 200, url
        assert_nothing_inline(response.content.decode(), url)


def test_the_support_console_needs_no_inline_script_or_style(team, settings, tmp_path):
    settings.PRIVATE_MEDIA_ROOT = str(tmp_path)
    adv = team.advertiser
    grant(adv, "free", "50.00")
    spend(team.campaign, "30.00")
    credit_freeze(advertiser=adv, reason="review", by=UserFactory(is_staff=True))
    appeal = appeal_file(advertiser=adv, user=team.users["admin"], message="please",
                         files=[SimpleUploadedFile("a.png", PNG, content_type="image/png")])
    staff = logged_in(UserFactory(is_staff=True, is_superuser=True))
    for url in ["/admin/", reverse("admin:portal_advertiser_change", args=[adv.pk]),
                reverse("admin:promotions_appeal_changelist"),
                reverse("admin:promotions_appeal_change", args=[appeal.pk]),
                reverse("admin:promotions_credit_add") + f"?advertiser={adv.pk}"]:
        response = staff.get(url)
        assert response.status_code == 200, url
        assert "Content-Security-Policy" in response
        assert_nothing_inline(response.content.decode(), url)
    assert_nothing_inline(Client().get("/admin/login/").content.decode(), "/admin/login/")


def test_the_admin_is_only_for_staff_roles(team):
    for client in [Client(), team.admin, logged_in(UserFactory(is_staff=True))]:
        response = client.get("/admin/")
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    agent = UserFactory(is_staff=True)
    agent.groups.add(Group.objects.get_or_create(name=SUPPORT_AGENT)[0])
    assert logged_in(agent).get("/admin/").status_code == 200
