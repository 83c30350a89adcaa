"""Who may do what to which advertiser (SPEC R1). One helper for every door.

`advertiser_for(user, advertiser_id, need=...)` returns the advertiser and the caller's effective
role, or raises NotFound (not a member: never reveal that it exists) or Forbidden (a member whose
role does not allow it). Staff act on every advertiser. BC admins and finance act on every
advertiser of their Business Center as advertiser admins and finance.
"""

from portal.errors import Forbidden, NotFound
from portal.models import Advertiser, BCMembership, Membership, Role

STAFF = "staff"

NEEDS: dict[str, set[str]] = {
    "member": {Role.ADMIN, Role.FINANCE, Role.OPERATOR, Role.ANALYST},
    "payments_read": {Role.ADMIN, Role.FINANCE, Role.ANALYST},  # operator sees no payment data
    "payments_write": {Role.ADMIN, Role.FINANCE},  # analyst is read-only
    "admin": {Role.ADMIN},  # e.g. assigning coupons, adding members
    "campaigns_write": {Role.ADMIN, Role.OPERATOR},
    "staff": set(),
}


def role_of(user, advertiser: Advertiser) -> str | None:
    """The caller's effective role on this advertiser, `staff`, or None."""
    if not user.is_authenticated:
        return None
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


def advertiser_for(user, advertiser_id, *, need: str = "member") -> tuple[Advertiser, str]:
    try:
        advertiser = Advertiser.objects.select_related("business_center").get(pk=int(str(advertiser_id)))
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
    from portal.models import BusinessCenter

    try:
        bc = BusinessCenter.objects.get(pk=int(str(business_center_id)))
    except (BusinessCenter.DoesNotExist, ValueError, TypeError):
        raise NotFound("business center") from None
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
