"""The Notification settings page (SPEC R44, decision 0034): each member picks, per alert and
channel, what they get from this account, and sets their own low-balance amount.

Every member of the account (any role), its Business Center's members and staff open it and set
their own choices; anyone else gets 404, an anonymous visitor the login page. The page is thin:
it reads the choices (`alert_preferences`), parses the form and calls `alert_preferences_set`.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from billing.money import fmt
from portal.alerts import UNCHANGED, alert_preferences, alert_preferences_set, alerts_for
from portal.errors import BusinessError
from portal.models import Role
from portal.notifications import LOW_BALANCE
from portal.permissions import can
from portal.views import advertiser_for_request

AMOUNT_FIELD = "low_balance_amount"


def channels_of(role: str) -> dict[str, bool]:
    """Which channels reach this role at all (R1): emails go to the payments people (admins and
    finance members, the Business Center's members), the notification centre is for everyone who
    may see payment data. Choices of a channel that does not reach the role are kept for later."""
    return {"email": role in (Role.ADMIN, Role.FINANCE), "in_app": can(role, "payments_read")}


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def notification_settings(request, advertiser_id):
    advertiser, role = advertiser_for_request(request, advertiser_id, need="member")
    names = alerts_for(advertiser)
    error, typed = None, None
    if request.method == "POST":
        choices = {name: {"email": f"{name}-email" in request.POST, "in_app": f"{name}-in_app" in request.POST}
                   for name in names}
        typed = request.POST.get(AMOUNT_FIELD, "")[:40]
        try:
            alert_preferences_set(user=request.user, advertiser=advertiser, choices=choices,
                                  low_balance_amount=typed if LOW_BALANCE in names else UNCHANGED)
        except BusinessError as e:
            error = e.message
            rows = alert_preferences(user=request.user, advertiser=advertiser)
            for row in rows:  # show what was ticked, not what is stored: nothing was saved
                row.email, row.in_app = choices[row.alert]["email"], choices[row.alert]["in_app"]
        else:
            messages.success(request, "Notification settings saved.")
            return redirect("notification_settings", advertiser_id=advertiser.pk)
    else:
        rows = alert_preferences(user=request.user, advertiser=advertiser)
    low = next((row for row in rows if row.alert == LOW_BALANCE), None)
    context = {
        "advertiser": advertiser,
        "role": role,
        "rows": rows,
        "low": low,
        "amount_field": AMOUNT_FIELD,
        "amount_value": (typed if typed is not None
                         else fmt(low.amount, advertiser.currency) if low and low.amount else ""),
        "amount_error": error,
        "channels": channels_of(role),
    }
    return render(request, "portal/notification_settings.html", context, status=422 if error else 200)
