"""Staff roles (issue 5, docs/decisions/0011-staff-roles.md): a Support agent may view accounts,
freeze and unfreeze, and decide appeals; a Billing manager may also grant and withdraw credit and
change billing settings. Every door — admin and API — asks `portal.permissions.staff_can`."""

import io

import pytest
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


def test_the_data_migration_created_both_role_groups():
    assert set(Group.objects.filter(name__in=[SUPPORT_AGENT, BILLING_MANAGER]).values_list("name", flat=True)) == {
        SUPPORT_AGENT, BILLING_MANAGER}


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
