"""What the dashboard shell needs on every page: the advertiser shown, the caller's role, which
navigation items they may see (R1) and the advertisers they can switch to."""

from django.conf import settings
from django.utils.functional import SimpleLazyObject

from portal.models import BillingMethod, Role
from portal.permissions import STAFF, advertisers_of, can
from promotions.selectors import shows_coupon_progress

ROLE_LABELS = {**dict(Role.choices), STAFF: "Staff"}


def navigation(request):
    advertiser = getattr(request, "advertiser", None)
    role = getattr(request, "advertiser_role", None)
    user = getattr(request, "user", None)
    context = {
        "current_advertiser": advertiser,
        "current_role": role,
        "current_role_label": ROLE_LABELS.get(role, ""),
        "display_timezone": advertiser.timezone if advertiser is not None else settings.TIME_ZONE,
    }
    if advertiser is not None:
        context["nav"] = {
            "payments": can(role, "payments_read"),  # operators see no payment data
            "add_funds": can(role, "payments_write") and advertiser.billing_method == BillingMethod.MANUAL,
            "assign_coupons": can(role, "admin"),
            # Shop Ads → Coupon Progress, for TikTok Shop sellers; at most one query, only when shown.
            "shop": SimpleLazyObject(lambda: can(role, "payments_read") and shows_coupon_progress(advertiser)),
        }
    if user is not None and user.is_authenticated:
        # Evaluated only when a template shows the switcher: one query.
        context["switchable_advertisers"] = SimpleLazyObject(lambda: list(advertisers_of(user)[:200]))
    return context
