"""Who may do what to which advertiser (SPEC R1). One helper for every door.

`advertiser_for(user, advertiser_id, need=...)` returns the advertiser and the caller's effective
role, or raises NotFound (not a member: never reveal that it exists) or Forbidden (a member whose
role does not allow it). Staff act on every advertiser. BC admins and finance act on every
advertiser of their Business Center as advertiser admins and finance.
"""

from portal.errors import Forbidden, NotFound
from portal.models import Advertiser, BCMembership, BusinessCenter, Membership, Role

STAFF = "staff"

NEEDS: dict[str, set[str]] = {
    "member": {Role.ADMIN, Role.FINANCE, Role.OPERATOR, Role.ANALYST},
    "payments_read": {Role.ADMIN, Role.FINANCE, Role.ANALYST},  # operator sees no payment data
    "payments_write": {Role.ADMIN, Role.FINANCE},  # analyst is read-only
    "admin": {Role.ADMIN},  # e.g. assigning coupons, adding members
    "campaigns_write": {Role.ADMIN, Role.OPERATOR},
    "staff": set(),
}


def token_advertiser_id(user) -> int | None:
    """The one advertiser an advertiser's own API token acts for (portal/api_auth.py, decision
    0017), or None: every advertiser the user's rights reach."""
    return getattr(user, "api_token_advertiser_id", None)


def role_of(user, advertiser: Advertiser) -> str | None:
    """The caller's effective role on this advertiser, `staff`, or None."""
    if not user.is_authenticated:
        return None
    scope = token_advertiser_id(user)
    if scope is not None and scope != advertiser.pk:
        return None  # an advertiser's token: every other advertiser reads as unknown
    if user.is_staff:
        return STAFF
    m = Membership.objects.filter(user=user, advertiser=advertiser).values_list("role", flat=True).first()
    if m:
        return m
    if advertiser.business_center_id:
        bc_role = (
            BCMembership.objects.filter(user=user, business_center_id=advertiser.business_center_id)
            .values_list("role", flat=True)
            .first()
        )
        if bc_role:
            return bc_role  # BC admin acts as admin, BC finance as finance
    return None


def can(role: str | None, need: str) -> bool:
    return role == STAFF or (role is not None and role in NEEDS[need])


def advertiser_for(user, advertiser_id, *, need: str = "member", queryset=None) -> tuple[Advertiser, str]:
    """`queryset` lets a door fetch more in the same query (the dashboard: the unread count)."""
    try:
        advertisers = queryset if queryset is not None else Advertiser.objects.all()
        advertiser = advertisers.select_related("business_center").get(pk=int(str(advertiser_id)))
    except (Advertiser.DoesNotExist, ValueError, TypeError):
        raise NotFound("advertiser") from None
    role = role_of(user, advertiser)
    if role is None:
        raise NotFound("advertiser")
    if not can(role, need):
        raise Forbidden()
    return advertiser, role


def advertisers_of(user):
    """Advertisers the user can open in the dashboard, by name."""
    if user.is_staff:
        return Advertiser.objects.order_by("name")
    return Advertiser.objects.filter(
        pk__in=Membership.objects.filter(user=user).values("advertiser_id")
    ).union(
        Advertiser.objects.filter(
            business_center_id__in=BCMembership.objects.filter(user=user).values("business_center_id")
        )
    ).order_by("name")


def business_center_for(user, business_center_id, *, need: str = "member"):
    """The Business Center and the caller's role on it, as `advertiser_for` does for advertisers.

    Staff act on every BC; BC admins and finance pass `member` and `payments_write`; `staff` needs
    staff. A member of one of the BC's advertisers knows the BC exists and gets Forbidden; anyone
    else gets NotFound.
    """
    try:
        bc = BusinessCenter.objects.get(pk=int(str(business_center_id)))
    except (BusinessCenter.DoesNotExist, ValueError, TypeError):
        raise NotFound("business center") from None
    if token_advertiser_id(user) is not None:
        raise NotFound("business center")  # an advertiser's token acts for its advertiser only
    if user.is_staff:
        return bc, STAFF
    role = BCMembership.objects.filter(user=user, business_center=bc).values_list("role", flat=True).first()
    if role is None:
        if Membership.objects.filter(user=user, advertiser__business_center=bc).exists():
            raise Forbidden()
        raise NotFound("business center")
    if need == "staff" or not can(role, need):
        raise Forbidden()
    return bc, role


# --- staff roles (issue 5, docs/decisions/0011-staff-roles.md) ------------------------------------
#
# Two Django Groups, created by migration portal 0006, name the staff roles. What each role may do
# is defined here and nowhere else: the admin (buttons, forms, actions, views) and the API staff
# endpoints all ask `staff_can(user, perm)`. The groups carry no Django model permissions.

SUPPORT_AGENT = "Support agent"
BILLING_MANAGER = "Billing manager"
SERVICE_ACCOUNT = "service account"  # staff in no role group: API integrations (create_api_token --staff)
SUPERUSER = "superuser"
STAFF_ROLE_GROUPS = (SUPPORT_AGENT, BILLING_MANAGER)
# A role may do what every role ranked at or below it may do.
_RANK = {SUPPORT_AGENT: 1, BILLING_MANAGER: 2, SERVICE_ACCOUNT: 2, SUPERUSER: 3}

STAFF_PERMS: dict[str, str] = {
    "view": SUPPORT_AGENT,  # advertisers, balances, ledger, credits, bills, appeals, audit log
    "freeze_credit": SUPPORT_AGENT,  # freeze and unfreeze (R30)
    "decide_appeal": SUPPORT_AGENT,  # approve or reject (R31); withdrawing needs withdraw_credit too
    "grant_credit": BILLING_MANAGER,  # R22
    "withdraw_credit": BILLING_MANAGER,
    "set_threshold": BILLING_MANAGER,  # R25
    "set_bill_cycle": BILLING_MANAGER,  # R24
    "set_credit_line": BILLING_MANAGER,  # R27
    "set_invoicing_eligible": BILLING_MANAGER,  # R28
    "manage_accounts": BILLING_MANAGER,  # create/edit Business Centers, advertisers, members, campaigns
}
# Billing settings (`billing_settings_set` arguments) and the permission each one needs.
BILLING_SETTING_PERMS: dict[str, str] = {
    "billing_threshold": "set_threshold",
    "bill_cycle": "set_bill_cycle",
    "credit_line_limit": "set_credit_line",
    "invoicing_eligible": "set_invoicing_eligible",
}
PERM_LABELS = {
    "view": "view accounts",
    "freeze_credit": "freeze or unfreeze credit",
    "decide_appeal": "decide appeals",
    "grant_credit": "grant credit",
    "withdraw_credit": "withdraw credit",
    "set_threshold": "set the billing threshold",
    "set_bill_cycle": "set the bill cycle",
    "set_credit_line": "set the credit line",
    "set_invoicing_eligible": "mark an account eligible for monthly invoicing",
    "manage_accounts": "create or edit accounts",
}


def staff_role(user) -> str | None:
    """The user's staff role: superuser, Billing manager, Support agent, service account, or None.

    One query the first time per user object (the answer is kept on it for the request)."""
    if user is None or not user.is_authenticated or not user.is_active or not user.is_staff:
        return None
    if user.is_superuser:
        return SUPERUSER
    cached = getattr(user, "_staff_role", None)
    if cached is None:
        groups = set(user.groups.filter(name__in=STAFF_ROLE_GROUPS).values_list("name", flat=True))
        cached = BILLING_MANAGER if BILLING_MANAGER in groups else SUPPORT_AGENT if groups else SERVICE_ACCOUNT
        user._staff_role = cached
    return cached


def staff_can(user, perm: str) -> bool:
    """May this staff user do `perm` (a key of STAFF_PERMS)? Non-staff never may."""
    needed = STAFF_PERMS[perm]  # an unknown permission is a programming error, not a refusal
    role = staff_role(user)
    return role is not None and _RANK[role] >= _RANK[needed]


def staff_require(user, perm: str) -> None:
    """Raise Forbidden (403 in the API, PermissionDenied in the admin) unless `staff_can`."""
    if not staff_can(user, perm):
        raise Forbidden(f"Your staff role may not {PERM_LABELS[perm]}; it needs a {STAFF_PERMS[perm]}.")


def staff_require_billing_settings(user, changes: dict) -> None:
    """Each billing setting present (not None) in `changes` needs its own permission."""
    for name, perm in BILLING_SETTING_PERMS.items():
        if changes.get(name) is not None:
            staff_require(user, perm)


def admin_access(user) -> bool:
    """The Django admin is for people with a staff role; service accounts use the API."""
    return staff_role(user) in (SUPERUSER, BILLING_MANAGER, SUPPORT_AGENT)
