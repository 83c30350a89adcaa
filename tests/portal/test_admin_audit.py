"""Every staff action in the admin is audited (issue 5 §3): plain edits of an advertiser, its
members, a campaign or a Business Center ask for a reason and write who, what, why, before and
after — in the same transaction as the edit."""

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from portal.models import AuditLog, BusinessCenter, Membership
from portal.permissions import BILLING_MANAGER
from tests.factories import AdvertiserFactory, CampaignFactory, UserFactory
from tests.pages_helpers import fast_password_hashing  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def manager_client():
    user = UserFactory(is_staff=True, username="bm-jane")
    user.groups.add(Group.objects.get_or_create(name=BILLING_MANAGER)[0])
    client = Client()
    client.force_login(user)
    return client, user


def change_post(adv, *, members=(), **overrides):
    """The advertiser change form as the browser sends it; `members` are (id or "", user id, role, delete)."""
    data = {
        "name": adv.name, "status": adv.status, "shop_id": adv.shop_id,
        "invoicing_eligible": "on" if adv.invoicing_eligible else "",
        "credit_line_limit": str(adv.credit_line_limit),
        "billing_threshold": "" if adv.billing_threshold is None else str(adv.billing_threshold),
        "bill_cycle": adv.bill_cycle, "change_reason": "",
        "memberships-TOTAL_FORMS": str(len(members)),
        "memberships-INITIAL_FORMS": str(sum(1 for m in members if m[0])),
        "campaigns-TOTAL_FORMS": "0", "campaigns-INITIAL_FORMS": "0",
    }
    for i, (pk, user_id, role, delete) in enumerate(members):
        data.update({f"memberships-{i}-id": str(pk), f"memberships-{i}-advertiser": str(adv.pk),
                     f"memberships-{i}-user": str(user_id), f"memberships-{i}-role": role})
        if delete:
            data[f"memberships-{i}-DELETE"] = "on"
    data.update(overrides)
    return data


def test_suspending_an_advertiser_needs_a_reason_and_is_audited(manager_client):
    client, manager = manager_client
    adv = AdvertiserFactory(name="Suspect Co")
    url = reverse("admin:portal_advertiser_change", args=[adv.pk])
    # without a reason the edit is refused on the form
    refused = client.post(url, change_post(adv, status="suspended"))
    assert refused.status_code == 200 and "Say why you are making this change" in refused.text
    adv.refresh_from_db()
    assert adv.status == "active" and not AuditLog.objects.exists()
    # with one, the status changes and the audit log says who, why, before and after
    edited = client.post(url, change_post(adv, status="suspended", change_reason="KYC documents expired"))
    assert edited.status_code == 302
    adv.refresh_from_db()
    assert adv.status == "suspended"
    log = AuditLog.objects.get(action="advertiser_edit")
    assert (log.actor, log.actor_name, log.advertiser, log.reason) == (manager, "bm-jane", adv, "KYC documents expired")
    assert (log.before, log.after) == ({"status": "active"}, {"status": "suspended"})
    assert log.target == f"advertiser {adv.pk}"


def test_saving_an_unchanged_advertiser_needs_no_reason_and_logs_nothing(manager_client):
    client, _ = manager_client
    adv = AdvertiserFactory()
    assert client.post(reverse("admin:portal_advertiser_change", args=[adv.pk]), change_post(adv)).status_code == 302
    assert not AuditLog.objects.exists()


def test_adding_changing_and_removing_members_is_audited(manager_client):
    client, manager = manager_client
    adv = AdvertiserFactory(name="Team Co")
    url = reverse("admin:portal_advertiser_change", args=[adv.pk])
    alice, bob = UserFactory(username="alice-fin"), UserFactory(username="bob-ops")
    # adding a member without a reason is refused
    refused = client.post(url, change_post(adv, members=[("", alice.pk, "finance", False)]))
    assert refused.status_code == 200 and "Say why you are making this change" in refused.text
    assert not Membership.objects.filter(advertiser=adv).exists()
    # add alice as finance
    assert client.post(url, change_post(adv, members=[("", alice.pk, "finance", False)],
                                        change_reason="new finance contact")).status_code == 302
    m = Membership.objects.get(advertiser=adv, user=alice)
    added = AuditLog.objects.get(action="membership_add")
    assert (added.actor, added.advertiser, added.reason) == (manager, adv, "new finance contact")
    assert added.after == {"user": "alice-fin", "role": "finance"}
    # make her admin, and add bob
    client.post(url, change_post(adv, members=[(m.pk, alice.pk, "admin", False), ("", bob.pk, "operator", False)],
                                 change_reason="promotion"))
    changed = AuditLog.objects.get(action="membership_change")
    assert (changed.before, changed.after) == ({"user": "alice-fin", "role": "finance"},
                                               {"user": "alice-fin", "role": "admin"})
    assert AuditLog.objects.get(action="membership_add", after__user="bob-ops").reason == "promotion"
    # remove bob
    bob_m = Membership.objects.get(advertiser=adv, user=bob)
    client.post(url, change_post(adv, members=[(m.pk, alice.pk, "admin", False), (bob_m.pk, bob.pk, "operator", True)],
                                 change_reason="left the company"))
    assert not Membership.objects.filter(pk=bob_m.pk).exists()
    removed = AuditLog.objects.get(action="membership_remove")
    assert (removed.before, removed.reason) == ({"user": "bob-ops", "role": "operator"}, "left the company")


def test_campaign_and_business_center_edits_are_audited(manager_client):
    client, manager = manager_client
    camp = CampaignFactory(name="Old Name")
    url = reverse("admin:portal_campaign_change", args=[camp.pk])
    form = {"name": "New Name", "objective": camp.objective, "product_source": camp.product_source,
            "shop_id": "", "status": "paused", "change_reason": "advertiser asked by phone"}
    assert client.post(url, form).status_code == 302
    log = AuditLog.objects.get(action="campaign_edit")
    assert (log.advertiser, log.before, log.after) == (camp.advertiser, {"name": "Old Name", "status": "active"},
                                                       {"name": "New Name", "status": "paused"})
    # a Business Center created here is audited too
    add = client.post(reverse("admin:portal_businesscenter_add"), {
        "name": "Agency BC", "currency": "USD", "change_reason": "signed contract",
        "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0",
        "advertisers-TOTAL_FORMS": "0", "advertisers-INITIAL_FORMS": "0",
    })
    assert add.status_code == 302, add.text[:500]
    bc = BusinessCenter.objects.get(name="Agency BC")
    created = AuditLog.objects.get(action="business_center_create")
    assert (created.actor, created.target, created.reason) == (manager, f"business center {bc.pk}", "signed contract")


def test_an_edit_that_fails_leaves_no_audit_line(manager_client):
    """The audit line is written in the edit's transaction: a refused edit logs nothing."""
    client, _ = manager_client
    adv = AdvertiserFactory()
    response = client.post(reverse("admin:portal_advertiser_change", args=[adv.pk]),
                           change_post(adv, status="closed", change_reason="closing"))
    assert response.status_code == 200 and "closed only by refunding" in response.text
    assert not AuditLog.objects.exists()


def test_giving_someone_a_staff_role_is_audited():
    # given a superuser and a staff member without a role
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(root)
    bob = UserFactory(username="bob-support", is_staff=True)
    manager = Group.objects.get_or_create(name=BILLING_MANAGER)[0]
    url = reverse("admin:auth_user_change", args=[bob.pk])
    form = {"username": bob.username, "first_name": "", "last_name": "", "email": bob.email, "is_active": "on",
            "is_staff": "on", "groups": [str(manager.pk)], "date_joined_0": "2026-01-02", "date_joined_1": "10:00:00",
            "last_login_0": "", "last_login_1": ""}
    # when the superuser puts bob in the Billing manager role
    response = client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:3000]
    # then the audit log says who gave which role to whom
    log = AuditLog.objects.get(action="staff_user_change")
    assert (log.actor, log.target) == (root, "user bob-support")
    assert (log.before, log.after) == ({"groups": []}, {"groups": [BILLING_MANAGER]})
    # and taking the staff flag away is logged too
    client.post(url, {**form, "is_staff": ""})
    flags = AuditLog.objects.filter(action="staff_user_change").latest("pk")
    assert (flags.before, flags.after) == ({"is_staff": True}, {"is_staff": False})


def test_a_billing_manager_cannot_manage_staff_users(manager_client):
    client, _ = manager_client
    assert client.get(reverse("admin:auth_user_changelist")).status_code == 403
    assert client.get(reverse("admin:auth_group_changelist")).status_code == 403
