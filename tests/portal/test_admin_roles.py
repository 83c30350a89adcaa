"""Staff roles (issue 5, docs/decisions/0011-staff-roles.md): a Support agent may view accounts,
freeze and unfreeze, and decide appeals; a Billing manager may also grant and withdraw credit and
change billing settings. Every door — admin and API — asks `portal.permissions.staff_can`."""

import io
from importlib import import_module

import pytest
from django.apps import apps as django_apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from portal.models import AuditLog
from portal.permissions import BILLING_MANAGER, STAFF_PERMS, SUPPORT_AGENT, staff_can
from promotions.appeals import appeal_file
from promotions.freeze import credit_freeze
from promotions.models import Appeal, Credit, CreditStatus
from tests.api_helpers import api, api_user  # noqa: F401
from tests.factories import AdvertiserFactory, UserFactory, grant, member, token_for
from tests.pages_helpers import fast_password_hashing  # noqa: F401

pytestmark = pytest.mark.django_db

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def staff_user(role: str | None, **fields):
    """A staff user in the role's group; role None: a service account (staff, no role group);
    "superuser": a superuser."""
    if role == "superuser":
        return UserFactory(is_staff=True, is_superuser=True, **fields)
    user = UserFactory(is_staff=True, **fields)
    if role:
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


# What each role may do, written out here independently of STAFF_PERMS, so a change to the
# mapping shows up as a failing test.
SUPPORT_MAY = {"view", "freeze_credit", "decide_appeal"}
MANAGER_ONLY = {"grant_credit", "withdraw_credit", "set_threshold", "set_bill_cycle", "set_credit_line",
                "set_invoicing_eligible", "manage_accounts"}


def test_the_data_migration_creates_both_roles_and_keeps_what_existing_staff_could_do():
    # given the state before roles existed: a human staff user, an API service account, a superuser
    Group.objects.filter(name__in=[SUPPORT_AGENT, BILLING_MANAGER]).delete()
    human = UserFactory(is_staff=True)  # has a password: logs in to the admin
    service = get_user_model().objects.create_user("svc-ingest", is_staff=True)  # token only
    root = staff_user("superuser")
    # when the migration runs
    import_module("portal.migrations.0006_staff_groups").create_groups(django_apps, None)
    # then both roles exist, and the human keeps a Billing manager's rights; nobody else is moved
    assert set(Group.objects.filter(name__in=[SUPPORT_AGENT, BILLING_MANAGER]).values_list("name", flat=True)) == {
        SUPPORT_AGENT, BILLING_MANAGER}
    assert list(human.groups.values_list("name", flat=True)) == [BILLING_MANAGER]
    assert not service.groups.exists() and not root.groups.exists()


@pytest.mark.parametrize("perm", sorted(SUPPORT_MAY | MANAGER_ONLY))
def test_staff_can_matrix(perm):
    assert set(STAFF_PERMS) == SUPPORT_MAY | MANAGER_ONLY
    support, manager = staff_user(SUPPORT_AGENT), staff_user(BILLING_MANAGER)
    service, superuser = staff_user(None), staff_user("superuser")
    advertiser_admin = member(AdvertiserFactory(), "admin")
    assert staff_can(support, perm) == (perm in SUPPORT_MAY)
    assert staff_can(manager, perm) and staff_can(superuser, perm) and staff_can(service, perm)
    assert not staff_can(advertiser_admin, perm)
    inactive = staff_user(BILLING_MANAGER, is_active=False)
    assert not staff_can(inactive, perm)


def test_a_user_in_both_groups_has_the_larger_role():
    user = staff_user(SUPPORT_AGENT)
    user.groups.add(Group.objects.get_or_create(name=BILLING_MANAGER)[0])
    assert staff_can(user, "grant_credit")


# --- the API: the staff endpoints that move credit or change billing settings ---------------------


@pytest.fixture
def frozen_with_appeal(settings, tmp_path):
    settings.PRIVATE_MEDIA_ROOT = str(tmp_path)
    adv = AdvertiserFactory(billing_method="monthly_invoice")
    owner = member(adv, "admin")
    credit = grant(adv, "free", "40.00")
    credit_freeze(advertiser=adv, reason="risk review", by=staff_user("superuser"))
    appeal = appeal_file(advertiser=adv, user=owner, message="Please review.",
                         files=[SimpleUploadedFile("a.png", PNG, content_type="image/png")])
    return adv, credit, appeal


def grant_body(key: str) -> dict:
    return {"kind": "free", "amount": "25.00", "reason": "goodwill", "idempotency_key": key}


def test_support_agent_token_cannot_grant_withdraw_or_change_billing_settings(api, frozen_with_appeal):
    adv, credit, _ = frozen_with_appeal
    support = staff_user(SUPPORT_AGENT)
    token = token_for(support)
    settings_before = (adv.credit_line_limit, adv.billing_threshold, adv.invoicing_eligible)
    refusals = [
        api.post(f"/advertisers/{adv.pk}/credits", grant_body("k-support"), token=token),
        api.post(f"/credits/{credit.pk}/withdraw", {"reason": "policy"}, token=token),
        api.post(f"/advertisers/{adv.pk}/billing-settings", {"credit_line_limit": "9000.00", "reason": "x"},
                 token=token),
        api.post(f"/advertisers/{adv.pk}/billing-settings", {"billing_threshold": "500.00"}, token=token),
        api.post(f"/advertisers/{adv.pk}/billing-settings", {"invoicing_eligible": False}, token=token),
    ]
    for response in refusals:
        assert response.status_code == 403, response.content
        assert response.json()["error"]["code"] == "forbidden"
        assert "Billing manager" in response.json()["error"]["message"]
    adv.refresh_from_db()
    credit.refresh_from_db()
    assert (adv.credit_line_limit, adv.billing_threshold, adv.invoicing_eligible) == settings_before
    assert credit.status == CreditStatus.FROZEN
    assert Credit.objects.filter(advertiser=adv).count() == 1
    assert not AuditLog.objects.filter(actor=support).exists()


def test_support_agent_token_may_decide_appeals_and_freeze_but_not_withdraw_with_a_rejection(
        api, frozen_with_appeal):
    adv, credit, appeal = frozen_with_appeal
    token = token_for(staff_user(SUPPORT_AGENT))
    # reject-and-withdraw withdraws credit: refused, nothing decided
    refused = api.post(f"/appeals/{appeal.pk}/decision",
                       {"decision": "reject", "note": "fraud", "withdraw_credits": True}, token=token)
    assert refused.status_code == 403
    appeal.refresh_from_db()
    assert appeal.status == "open"
    # approving is theirs to do, and so is freezing again
    approved = api.post(f"/appeals/{appeal.pk}/decision", {"decision": "approve", "note": "ok"}, token=token)
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    credit.refresh_from_db()
    assert credit.status == CreditStatus.ACTIVE
    frozen = api.post(f"/advertisers/{adv.pk}/freeze", {"reason": "second look"}, token=token)
    assert frozen.status_code == 200
    adv.refresh_from_db()
    assert adv.credit_frozen


@pytest.mark.parametrize("role", [BILLING_MANAGER, "superuser", None])
def test_billing_managers_superusers_and_service_accounts_grant_and_set_billing_settings(api, role):
    adv = AdvertiserFactory(billing_method="monthly_invoice")
    token = token_for(staff_user(role))
    granted = api.post(f"/advertisers/{adv.pk}/credits", grant_body(f"k-{role}"), token=token)
    assert granted.status_code == 201, granted.content
    assert granted.json()["amount"] == "25.00"
    line = api.post(f"/advertisers/{adv.pk}/billing-settings", {"credit_line_limit": "9000.00", "reason": "ok"},
                    token=token)
    assert line.status_code == 200 and line.json()["credit_line_limit"] == "9000.00"
    assert AuditLog.objects.filter(action="credit_grant", advertiser=adv).count() == 1


def test_account_management_through_the_api_needs_a_billing_manager_as_in_the_admin(api):
    from portal.models import BusinessCenter

    support = token_for(staff_user(SUPPORT_AGENT))
    manager = token_for(staff_user(BILLING_MANAGER))
    advertiser = {"name": "Via API", "currency": "USD", "timezone": "UTC"}
    assert api.post("/business-centers", {"name": "Support BC"}, token=support).status_code == 403
    assert api.post("/advertisers", advertiser, token=support).status_code == 403
    created = api.post("/business-centers", {"name": "Manager BC"}, token=manager)
    assert created.status_code == 201
    bc_id = created.json()["id"]
    refused = api.post(f"/business-centers/{bc_id}/members", {"username": "x-fin", "role": "finance"}, token=support)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert api.post(f"/business-centers/{bc_id}/members", {"username": "x-fin", "role": "finance"},
                    token=manager).status_code == 201
    assert api.post("/advertisers", advertiser, token=manager).status_code == 201
    assert list(BusinessCenter.objects.values_list("name", flat=True)) == ["Manager BC"]


def test_create_api_token_staff_makes_a_billing_manager_service_account(api):
    out = io.StringIO()
    call_command("create_api_token", "ingest-bot", "--create", "--staff", stdout=out)
    raw = out.getvalue().strip().splitlines()[-1]
    from django.contrib.auth import get_user_model

    bot = get_user_model().objects.get(username="ingest-bot")
    assert bot.is_staff and list(bot.groups.values_list("name", flat=True)) == [BILLING_MANAGER]
    adv = AdvertiserFactory()
    assert api.post(f"/advertisers/{adv.pk}/credits", grant_body("k-bot"), token=raw).status_code == 201


def test_the_appeal_api_refuses_withdrawal_by_support_even_via_approve_flag(api, frozen_with_appeal):
    """`withdraw_credits` with approve is refused by the service for everyone (400), but a support
    agent is stopped earlier, at the permission (403), so nothing about the appeal leaks."""
    _, _, appeal = frozen_with_appeal
    token = token_for(staff_user(SUPPORT_AGENT))
    response = api.post(f"/appeals/{appeal.pk}/decision",
                        {"decision": "approve", "note": "x", "withdraw_credits": True}, token=token)
    assert response.status_code == 403
    assert Appeal.objects.get(pk=appeal.pk).status == "open"


# --- the admin: same question, same answers ---------------------------------------------------------

from decimal import Decimal  # noqa: E402

from django.test import Client  # noqa: E402
from django.urls import reverse  # noqa: E402

GRANT_URL = reverse("admin:promotions_credit_add")
CREDITS_URL = reverse("admin:promotions_credit_changelist")
ADVERTISERS_URL = reverse("admin:portal_advertiser_changelist")


def admin_client(role):
    user = staff_user(role)
    client = Client()
    client.force_login(user)
    return client, user


def grant_form(adv, key="admin-role-key"):
    return {"advertiser": str(adv.pk), "kind": "free", "amount": "50.00", "percent": "", "reason": "goodwill",
            "idempotency_key": key, "valid_from_0": "", "valid_from_1": "", "expires_at_0": "", "expires_at_1": "",
            "eligible_product_source": ""}


def test_support_agent_sees_accounts_but_gets_no_grant_button_and_a_403_on_the_grant_form():
    adv = AdvertiserFactory(name="Visible Co")
    client, _ = admin_client(SUPPORT_AGENT)
    # they can look: the advertiser list, its page with balances, the ledger, the credits, the audit log
    for url in [ADVERTISERS_URL, reverse("admin:portal_advertiser_change", args=[adv.pk]), CREDITS_URL,
                reverse("admin:billing_ledgertransaction_changelist"), reverse("admin:portal_auditlog_changelist")]:
        assert client.get(url).status_code == 200, url
    page = client.get(reverse("admin:portal_advertiser_change", args=[adv.pk]))
    assert "Cash balance" in page.text and "Visible Co" in page.text
    # but there is no way to grant: no button, and the form itself is refused
    assert GRANT_URL not in page.text and GRANT_URL not in client.get(CREDITS_URL).text
    assert client.get(GRANT_URL).status_code == 403
    assert client.post(GRANT_URL, grant_form(adv)).status_code == 403
    assert not Credit.objects.filter(advertiser=adv).exists()


def test_support_agent_cannot_withdraw_or_edit_billing_settings_in_the_admin():
    adv = AdvertiserFactory(billing_method="monthly_invoice")
    credit = grant(adv, "free", "30.00")
    client, _ = admin_client(SUPPORT_AGENT)
    # the withdraw action is not offered, and posting it anyway does nothing
    assert "withdraw_credit" not in client.get(CREDITS_URL).text
    client.post(CREDITS_URL, {"action": "withdraw_credit", "_selected_action": [str(credit.pk)], "confirm": "yes",
                              "reason": "policy"})
    credit.refresh_from_db()
    assert credit.status == CreditStatus.ACTIVE
    # the advertiser page is read-only for them: no save button, and a POST is refused
    url = reverse("admin:portal_advertiser_change", args=[adv.pk])
    assert 'name="_save"' not in client.get(url).text
    response = client.post(url, {"name": adv.name, "status": adv.status, "credit_line_limit": "99999",
                                 "bill_cycle": "monthly", "change_reason": "x",
                                 "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0",
                                 "campaigns-TOTAL_FORMS": "0", "campaigns-INITIAL_FORMS": "0"})
    assert response.status_code == 403
    adv.refresh_from_db()
    assert adv.credit_line_limit == 0


def test_support_agent_freezes_and_unfreezes_from_the_admin():
    adv = AdvertiserFactory()
    grant(adv, "free", "30.00")
    client, agent = admin_client(SUPPORT_AGENT)
    assert "freeze_credit" in client.get(ADVERTISERS_URL).text
    client.post(ADVERTISERS_URL, {"action": "freeze_credit", "_selected_action": [str(adv.pk)], "confirm": "yes",
                                  "reason": "chargebacks"})
    adv.refresh_from_db()
    assert adv.credit_frozen
    assert AuditLog.objects.get(action="credit_freeze", advertiser=adv).actor == agent


def test_billing_manager_gets_the_grant_button_grants_and_withdraws():
    adv = AdvertiserFactory(name="Granted Co")
    client, manager = admin_client(BILLING_MANAGER)
    page = client.get(reverse("admin:portal_advertiser_change", args=[adv.pk]))
    assert f"{GRANT_URL}?advertiser={adv.pk}" in page.text
    assert client.post(GRANT_URL, grant_form(adv)).status_code == 302
    credit = Credit.objects.get(advertiser=adv)
    assert (credit.amount, credit.granted_by) == (Decimal("50.00"), manager)
    client.post(CREDITS_URL, {"action": "withdraw_credit", "_selected_action": [str(credit.pk)], "confirm": "yes",
                              "reason": "granted by mistake"})
    credit.refresh_from_db()
    assert credit.status == CreditStatus.WITHDRAWN
    assert AuditLog.objects.filter(actor=manager).values_list("action", flat=True).distinct().count() == 2


def test_nobody_edits_the_ledger_or_the_audit_log_not_even_a_superuser():
    adv = AdvertiserFactory()
    grant(adv, "free", "10.00")
    client, _ = admin_client("superuser")
    log = AuditLog.objects.get()
    tx = adv.credits.get().ledger_account.entries.get().transaction
    for url in [reverse("admin:portal_auditlog_change", args=[log.pk]),
                reverse("admin:billing_ledgertransaction_change", args=[tx.pk])]:
        assert 'name="_save"' not in client.get(url).text
        assert client.post(url, {"reason": "edited", "memo": "edited"}).status_code == 403
    assert client.get(reverse("admin:portal_auditlog_add")).status_code == 403
    assert client.post(reverse("admin:portal_auditlog_delete", args=[log.pk]), {"post": "yes"}).status_code == 403
    # no bulk delete either
    listing = client.get(reverse("admin:portal_auditlog_changelist"))
    assert "delete_selected" not in listing.text
    client.post(reverse("admin:portal_auditlog_changelist"),
                {"action": "delete_selected", "_selected_action": [str(log.pk)], "post": "yes"})
    assert AuditLog.objects.filter(pk=log.pk, reason="test grant").exists()
