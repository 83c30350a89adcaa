"""The API access page (issue 6, decision 0017; SPEC R1, R35): an advertiser's admins create and
revoke API tokens acting for that advertiser only, with the creator's current rights."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from portal.api_auth import tokens_last_used
from portal.models import ApiToken, AuditLog, BCMembership, Membership, hash_token
from tests.api_helpers import Api, api_user
from tests.factories import AdvertiserFactory, BusinessCenterFactory, UserFactory, grant, token_for
from tests.pages_helpers import element, fast_password_hashing, logged_in, member, team, text  # noqa: F401
from tests.portal.open_api_world import TikTokClient, ok, refused
from tests.portal.test_security import assert_nothing_inline, csrf_client

RAW = re.compile(r'id="new-token-value"[^>]*>(act_[^<]+)<')


def page_url(advertiser) -> str:
    return f"/a/{advertiser.pk}/api-access/"


def revoke_url(advertiser, token) -> str:
    return f"/a/{advertiser.pk}/api-access/tokens/{token.pk}/revoke/"


def form_key(response) -> str:
    return re.search(r'name="idempotency_key" value="([^"]+)"', response.content.decode()).group(1)


def create(client: Client, advertiser, label: str = "Reporting script"):
    """Load the page, submit its form; returns (response, raw token or None)."""
    key = form_key(client.get(page_url(advertiser)))
    response = client.post(page_url(advertiser), {"label": label, "idempotency_key": key})
    m = RAW.search(response.content.decode())
    return response, (m.group(1) if m else None)


def info(tt: TikTokClient, raw: str, advertiser) -> dict:
    return tt.get("/advertiser/info/", raw, advertiser_ids=[str(advertiser.pk)])


# --- who may use the page ---------------------------------------------------------------------------

def test_r1_only_the_advertisers_admins_use_the_page_others_403_another_advertiser_404_anonymous_login(team):
    adv = team.advertiser
    token = ApiToken.issue(user=team.users["admin"], label="existing", advertiser=adv)[0]
    get_urls = [page_url(adv), revoke_url(adv, token)]
    post_urls = [(page_url(adv), {"label": "x", "idempotency_key": "k" * 20}), (revoke_url(adv, token), {})]
    # the admin opens the page and the confirmation
    for url in get_urls:
        assert team.admin.get(url).status_code == 200, url
    # finance, operator and analyst get 403 on every page and action, and nothing changes
    for role in ("finance", "operator", "analyst"):
        client = team.client(role)
        for url in get_urls:
            assert client.get(url).status_code == 403, (role, url)
        for url, data in post_urls:
            assert client.post(url, data).status_code == 403, (role, url)
    # support staff too: a token made here must never carry staff rights
    staff = logged_in(UserFactory(is_staff=True, is_superuser=True))
    assert staff.get(page_url(adv)).status_code == 403
    # an admin of another advertiser gets 404, anonymous goes to the login page
    for url in get_urls:
        assert logged_in(team.outsider).get(url).status_code == 404, url
        anonymous = Client().get(url)
        assert anonymous.status_code == 302 and anonymous["Location"].startswith("/login/"), url
    for url, data in post_urls:
        assert logged_in(team.outsider).post(url, data).status_code == 404, url
        assert Client().post(url, data).status_code == 302, url
    assert ApiToken.objects.filter(advertiser=adv).count() == 1
    assert ApiToken.objects.get().revoked_at is None


def test_r1_bc_admins_use_the_page_of_their_bcs_advertisers(db, fast_password_hashing):
    bc = BusinessCenterFactory()
    adv = AdvertiserFactory(business_center=bc)
    bc_admin, bc_finance = UserFactory(), UserFactory()
    BCMembership.objects.create(user=bc_admin, business_center=bc, role="admin")
    BCMembership.objects.create(user=bc_finance, business_center=bc, role="finance")
    response, raw = create(logged_in(bc_admin), adv)
    assert response.status_code == 200 and raw
    assert logged_in(bc_finance).get(page_url(adv)).status_code == 403
    assert "Active" in text(element(logged_in(bc_admin).get(page_url(adv)).content.decode(), "token-list"))


def test_the_navigation_links_the_page_for_admins_only(team):
    adv = team.advertiser
    assert f'href="{page_url(adv)}"' in team.admin.get(f"/a/{adv.pk}/").content.decode()
    for role in ("finance", "operator", "analyst"):
        assert page_url(adv) not in team.client(role).get(f"/a/{adv.pk}/").content.decode(), role


# --- creating: shown once, stored hashed ------------------------------------------------------------

def test_a_new_token_is_shown_once_and_only_its_hash_is_stored(team):
    adv = team.advertiser
    # when the admin creates a token
    response, raw = create(team.admin, adv, "Nightly export")
    # then the answer shows it, uncached
    assert response.status_code == 200 and raw and raw.startswith("act_")
    assert "no-store" in response["Cache-Control"]
    assert "shown only this once" in text(response)
    # and the database holds its hash and prefix, never the value
    token = ApiToken.objects.get(advertiser=adv)
    assert token.key_hash == hash_token(raw) != raw
    assert token.prefix == raw[:12] and token.label == "Nightly export" and token.user == team.users["admin"]
    assert not ApiToken.objects.filter(key_hash=raw).exists()
    assert raw not in str(list(AuditLog.objects.values()))
    # when the page is loaded again, the value is gone; the list shows the prefix
    again = team.admin.get(page_url(adv))
    assert raw not in again.content.decode()
    listing = text(element(again.content.decode(), "token-list"))
    assert f"Nightly export {raw[:12]}… {team.users['admin'].username}" in listing and "Not recently Active" in listing


def test_reloading_the_answer_resends_the_form_and_neither_creates_nor_shows_another_token(team):
    adv = team.advertiser
    key = form_key(team.admin.get(page_url(adv)))
    first = team.admin.post(page_url(adv), {"label": "CI", "idempotency_key": key})
    raw = RAW.search(first.content.decode()).group(1)
    # when the browser sends the same form again (reload of the answer)
    replay = team.admin.post(page_url(adv), {"label": "CI", "idempotency_key": key})
    # then no second token, and its value is not shown again
    assert replay.status_code == 200
    assert RAW.search(replay.content.decode()) is None and raw not in replay.content.decode()
    assert "was already created by this form" in text(replay)
    assert ApiToken.objects.filter(advertiser=adv).count() == 1
    # the same key with another label is refused
    other = team.admin.post(page_url(adv), {"label": "Other", "idempotency_key": key})
    assert other.status_code == 409 and ApiToken.objects.count() == 1


def test_a_label_is_required(team):
    key = form_key(team.admin.get(page_url(team.advertiser)))
    response = team.admin.post(page_url(team.advertiser), {"label": "  ", "idempotency_key": key})
    assert response.status_code == 422 and RAW.search(response.content.decode()) is None
    assert "This field is required." in text(response)
    assert not ApiToken.objects.exists()


def test_creating_and_revoking_are_in_the_audit_log(team):
    _, raw = create(team.admin, team.advertiser, "Audited")
    token = ApiToken.objects.get()
    team.admin.post(revoke_url(team.advertiser, token))
    logs = list(AuditLog.objects.filter(advertiser=team.advertiser).order_by("pk"))
    assert [(log.action, log.actor, log.reason) for log in logs] == [
        ("api_token_create", team.users["admin"], "Audited"), ("api_token_revoke", team.users["admin"], "Audited")]


# --- what the token can do --------------------------------------------------------------------------

def test_r35_a_created_token_works_on_both_surfaces_and_the_page_shows_when_it_was_last_used(team):
    adv = team.advertiser
    _, raw = create(team.admin, adv)
    assert Api().get(f"/advertisers/{adv.pk}", token=raw).json()["id"] == str(adv.pk)
    assert ok(info(TikTokClient(), raw, adv))["list"][0]["advertiser_id"] == str(adv.pk)
    token = ApiToken.objects.get()
    [(token_id, used)] = tokens_last_used([token.pk]).items()
    assert token_id == token.pk and timezone.now() - timedelta(minutes=1) < used <= timezone.now()
    listing = text(element(team.admin.get(page_url(adv)).content.decode(), "token-list"))
    assert "Not recently" not in listing and used.strftime("%b %-d, %Y %H:%M") in listing


def test_r35_a_scoped_token_reaches_no_other_advertiser_the_same_user_is_admin_of(team):
    adv = team.advertiser
    admin = team.users["admin"]
    other = AdvertiserFactory(name="Second account")
    Membership.objects.create(user=admin, advertiser=other, role="admin")
    credit = grant(other, "assignable", "20.00")
    _, raw = create(team.admin, adv)
    api, tt = Api(), TikTokClient()
    # the token acts for its own advertiser
    assert api.get(f"/advertisers/{adv.pk}/balances", token=raw).status_code == 200
    # but every other advertiser of the same admin reads as unknown on both surfaces
    for path in (f"/advertisers/{other.pk}", f"/advertisers/{other.pk}/balances", f"/advertisers/{other.pk}/credits"):
        assert api.get(path, token=raw).status_code == 404, path
    assigned = api.post(f"/credits/{credit.pk}/assign", {"campaign_ids": []}, token=raw)
    assert assigned.status_code == 404
    refused(info(tt, raw, other), 40002, "no_access")
    # a token of the same user made by create_api_token keeps today's rights on both
    cli = token_for(admin)
    assert api.get(f"/advertisers/{other.pk}", token=cli).status_code == 200
    assert ok(info(tt, cli, other))["list"][0]["advertiser_id"] == str(other.pk)


def test_r35_a_bc_admins_scoped_token_acts_for_its_advertiser_only_not_the_business_center(db):
    bc = BusinessCenterFactory()
    adv, sibling = AdvertiserFactory(business_center=bc), AdvertiserFactory(business_center=bc)
    user = api_user()
    BCMembership.objects.create(user=user, business_center=bc, role="admin")
    raw = ApiToken.issue(user=user, label="bc", advertiser=adv)[1]
    api, tt = Api(), TikTokClient()
    assert api.get(f"/advertisers/{adv.pk}", token=raw).status_code == 200
    assert api.get(f"/advertisers/{sibling.pk}", token=raw).status_code == 404
    deposit = api.post(f"/business-centers/{bc.pk}/deposits", {"amount": "100.00", "idempotency_key": "k1"},
                       token=raw)
    assert deposit.status_code == 404
    refused(tt.get("/bc/balance/get/", raw, bc_id=str(bc.pk)), 40002, "no_access")
    refused(tt.get("/bc/account/transaction/get/", raw, bc_id=str(bc.pk)), 40002, "no_access")
    refused(tt.post("/bc/transfer/", raw, {"bc_id": str(bc.pk), "advertiser_id": str(adv.pk),
                                           "transfer_type": "RECHARGE", "cash_amount": 10, "request_id": "r1"}),
            40002, "no_access")
    listed = ok(tt.get("/advertiser/balance/get/", raw, bc_id=str(bc.pk)))["advertiser_account_list"]
    assert [row["advertiser_id"] for row in listed] == [str(adv.pk)]
    # the same BC admin's unscoped token sees both accounts
    both = ok(tt.get("/advertiser/balance/get/", token_for(user), bc_id=str(bc.pk)))["advertiser_account_list"]
    assert {row["advertiser_id"] for row in both} == {str(adv.pk), str(sibling.pk)}


def test_r1_a_token_has_its_creators_current_rights_and_the_page_says_so(team):
    adv = team.advertiser
    admin = team.users["admin"]
    _, raw = create(team.admin, adv)
    api = Api()
    campaign = {"name": "Via token", "objective": "TRAFFIC", "product_source": "NONE"}
    assert api.post(f"/advertisers/{adv.pk}/campaigns", campaign, token=raw).status_code == 201
    # when the creator becomes an analyst, the token can read payments but no longer write
    Membership.objects.filter(user=admin, advertiser=adv).update(role="analyst")
    assert api.post(f"/advertisers/{adv.pk}/campaigns", campaign, token=raw).status_code == 403
    assert api.get(f"/advertisers/{adv.pk}/balances", token=raw).status_code == 200
    other_admin = logged_in(member(adv, "admin"))
    assert "Limited" in text(element(other_admin.get(page_url(adv)).content.decode(), "token-list"))
    # when the creator leaves the account, the token reaches nothing
    Membership.objects.filter(user=admin, advertiser=adv).delete()
    assert api.get(f"/advertisers/{adv.pk}", token=raw).status_code == 404
    refused(info(TikTokClient(), raw, adv), 40002, "no_access")
    assert "Not working" in text(element(other_admin.get(page_url(adv)).content.decode(), "token-list"))


def test_a_scoped_token_of_a_staff_user_authenticates_nobody(team):
    # given an admin's token, and the admin later made a staff user
    _, raw = create(team.admin, team.advertiser)
    admin = team.users["admin"]
    admin.is_staff = True
    admin.save()
    # then the token does not carry staff rights anywhere: it is refused
    assert Api().post("/business-centers", {"name": "Nope"}, token=raw).status_code == 401
    refused(info(TikTokClient(), raw, team.advertiser), 40100, "invalid_token")


# --- revoking ---------------------------------------------------------------------------------------

def test_revoking_asks_for_confirmation_first(team):
    adv = team.advertiser
    token = ApiToken.issue(user=team.users["admin"], label="To go", advertiser=adv)[0]
    # without JavaScript the link opens the page with the question in the token's row
    page = team.admin.get(revoke_url(adv, token)).content.decode()
    row = element(page, f"token-{token.pk}")
    assert "Revoke “To go”" in text(row) and f'action="{revoke_url(adv, token)}"' in row
    assert 'name="csrfmiddlewaretoken"' in row
    # with htmx only the row is answered
    partial = team.admin.get(revoke_url(adv, token), headers={"HX-Request": "true"}).content.decode()
    assert partial.strip().startswith(f'<tr id="token-{token.pk}"') and f'hx-post="{revoke_url(adv, token)}"' in partial
    # asking revokes nothing
    token.refresh_from_db()
    assert token.revoked_at is None


def test_r35_a_revoked_token_answers_401_on_both_surfaces(team):
    adv = team.advertiser
    _, raw = create(team.admin, adv)
    token = ApiToken.objects.get()
    api, tt = Api(), TikTokClient()
    assert api.get(f"/advertisers/{adv.pk}", token=raw).status_code == 200
    # when the admin confirms the revocation
    response = team.admin.post(revoke_url(adv, token), follow=True)
    # then the page says so and lists it as revoked
    assert "is revoked: requests with it now get 401" in text(response)
    assert "Revoked" in text(element(response.content.decode(), f"token-{token.pk}"))
    # and both API surfaces refuse it
    assert api.get(f"/advertisers/{adv.pk}", token=raw).status_code == 401
    assert api.get(f"/advertisers/{adv.pk}", token=raw, bearer=True).status_code == 401
    refused(info(tt, raw, adv), 40100, "invalid_token")
    # revoking again changes nothing
    token.refresh_from_db()
    first = token.revoked_at
    again = team.admin.post(revoke_url(adv, token), follow=True)
    assert "was already revoked" in text(again)
    token.refresh_from_db()
    assert token.revoked_at == first


def test_revoking_with_htmx_answers_the_list(team):
    adv = team.advertiser
    token = ApiToken.issue(user=team.users["admin"], label="Old", advertiser=adv)[0]
    client = csrf_client(team.users["admin"])
    page = client.get(page_url(adv)).content.decode()
    csrf = re.search(r'<body hx-headers=\'\{"X-CSRFToken": "([^"]+)"\}\'', page).group(1)
    response = client.post(revoke_url(adv, token), headers={"HX-Request": "true", "X-CSRFToken": csrf})
    assert response.status_code == 200
    html = response.content.decode()
    assert html.strip().startswith('<section id="token-list"') and "<html" not in html
    assert "is revoked" in text(element(html, "token-notice"))
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_a_post_without_csrf_is_refused(team):
    adv = team.advertiser
    token = ApiToken.issue(user=team.users["admin"], label="Kept", advertiser=adv)[0]
    client = csrf_client(team.users["admin"])
    assert client.post(revoke_url(adv, token)).status_code == 403
    assert client.post(page_url(adv), {"label": "x", "idempotency_key": "k" * 20}).status_code == 403
    token.refresh_from_db()
    assert token.revoked_at is None and ApiToken.objects.count() == 1


def test_a_token_of_another_advertiser_cannot_be_revoked_through_this_advertisers_url(team):
    adv = team.advertiser
    # given the team admin is admin of a second advertiser too, which has a token
    second = AdvertiserFactory()
    Membership.objects.create(user=team.users["admin"], advertiser=second, role="admin")
    foreign = ApiToken.issue(user=team.users["admin"], label="Second's", advertiser=second)[0]
    unscoped = ApiToken.issue(user=team.users["admin"], label="cli")[0]
    # then it is unknown here, to confirm and to revoke
    for token in (foreign, unscoped):
        assert team.admin.get(revoke_url(adv, token)).status_code == 404
        assert team.admin.post(revoke_url(adv, token)).status_code == 404
        token.refresh_from_db()
        assert token.revoked_at is None
    # and it is not listed here
    assert "Second's" not in team.admin.get(page_url(adv)).content.decode()


# --- the page itself --------------------------------------------------------------------------------

def _queries(client, url) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def test_the_page_takes_a_constant_number_of_queries_however_many_tokens(team):
    adv = team.advertiser
    ApiToken.issue(user=team.users["admin"], label="one", advertiser=adv)
    one = _queries(team.admin, page_url(adv))
    for i in range(8):
        creator = team.users["admin"] if i % 2 else member(adv, "admin")
        token, raw = ApiToken.issue(user=creator, label=f"t{i}", advertiser=adv)
        if i % 3 == 0:
            ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
        if i % 2 == 0:
            Api().get(f"/advertisers/{adv.pk}", token=raw)  # used: a last-use time to show
    assert _queries(team.admin, page_url(adv)) == one


def test_the_page_needs_no_inline_script_or_style(team):
    adv = team.advertiser
    response, raw = create(team.admin, adv)
    assert raw
    assert_nothing_inline(response.content.decode(), "created")
    token = ApiToken.objects.get()
    assert_nothing_inline(team.admin.get(revoke_url(adv, token)).content.decode(), "confirm")
    assert_nothing_inline(team.admin.get(page_url(adv)).content.decode(), "list")
