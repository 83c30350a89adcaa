"""Dashboard shell: the advertiser picker, the account dashboard and the campaigns list.

Every advertiser page starts with `advertiser_for_request` (the healthchecks
`_get_rw_check_for_user` shape): not a member → 404, a role that may not → 403.
"""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from portal.dashboard import advertiser_summary, campaign_list
from portal.errors import Forbidden, NotFound
from portal.models import Advertiser, BusinessCenter, CampaignStatus, Notification, Role
from portal.notifications import render_body, visible_notifications
from portal.permissions import NEEDS, advertiser_for, advertisers_of


def advertiser_for_request(request, advertiser_id, *, need: str = "member"):
    """The advertiser and the caller's role, or Http404 (not a member) / PermissionDenied (a
    member whose role may not). Remembers both on the request for the navigation."""
    try:
        advertiser, role = advertiser_for(request.user, advertiser_id, need=need,
                                          queryset=with_unread_count(request.user))
    except NotFound:
        raise Http404("No such advertiser.") from None
    except Forbidden as e:
        # A member: the 403 page still shows this advertiser's navigation, and says who may.
        request.advertiser, request.advertiser_role = advertiser_for(request.user, advertiser_id)
        raise PermissionDenied(who_may(need, page=request.method in ("GET", "HEAD")) if e.message == Forbidden().message
                               else e.message) from None
    request.advertiser, request.advertiser_role = advertiser, role
    return advertiser, role


ROLE_PLURALS = {Role.ADMIN: "admins", Role.FINANCE: "finance members", Role.OPERATOR: "operators",
                Role.ANALYST: "analysts"}


def who_may(need: str, *, page: bool) -> str:
    """"This page is for the account's admins and finance members." (the roles of `need`)"""
    roles = [ROLE_PLURALS[value] for value, _ in Role.choices if value in NEEDS[need]]
    names = roles[0] if len(roles) == 1 else f"{', '.join(roles[:-1])} and {roles[-1]}"
    return f"{'This page' if page else 'This action'} is for the account's {names}."


@login_required
def home(request):
    """"/": straight to the only advertiser, or a picker when there are several or the user is a
    member of a Business Center (the picker links to its pages)."""
    advertisers = list(advertisers_of(request.user)[:500])
    centers = list(BusinessCenter.objects.filter(memberships__user=request.user).order_by("name", "pk"))
    if len(advertisers) == 1 and not centers:
        return redirect("advertiser_home", advertiser_id=advertisers[0].pk)
    return render(request, "portal/picker.html", {"advertisers": advertisers, "business_centers": centers})


@login_required
def advertiser_home(request, advertiser_id):
    advertiser, role = advertiser_for_request(request, advertiser_id)
    summary = advertiser_summary(advertiser=advertiser, role=role)
    return render(request, "portal/dashboard.html", {"advertiser": advertiser, "role": role, "summary": summary})


@login_required
def campaigns(request, advertiser_id):
    advertiser, role = advertiser_for_request(request, advertiser_id)
    rows = campaign_list(advertiser=advertiser)
    paused_funds = sum(1 for c in rows if c.status == CampaignStatus.PAUSED_FUNDS)
    paused_limit = sum(1 for c in rows if c.status == CampaignStatus.PAUSED_LIMIT)
    return render(
        request,
        "portal/campaigns.html",
        {"advertiser": advertiser, "role": role, "campaigns": rows, "paused_funds": paused_funds,
         "paused_limit": paused_limit},
    )


# --- notification centre (R36) ----------------------------------------------------------------------

NOTIFICATIONS_PER_PAGE = 25


def with_unread_count(user):
    """Advertisers with `unread_notifications`, the header bell's number, counted in the same query:
    what this member sees in the notification centre (their alert choices applied, R44)."""
    unread = (
        visible_notifications(Notification.objects.filter(advertiser=OuterRef("pk"), read_at__isnull=True), user=user)
        .order_by().values("advertiser").annotate(n=Count("pk")).values("n")
    )
    return Advertiser.objects.annotate(unread_notifications=Coalesce(Subquery(unread), 0))


def _notifications_context(request, advertiser, *, recount: bool = False) -> dict:
    """The notifications this member sees (R44: less the alerts they turned off in-app, plus their
    own), newest first, a page at a time; constant queries."""
    page = Paginator(
        visible_notifications(Notification.objects.filter(advertiser=advertiser), user=request.user)
        .order_by("-created_at", "-pk"), NOTIFICATIONS_PER_PAGE
    ).get_page(request.GET.get("page"))
    rows = []
    for note in page:
        note.advertiser = advertiser  # the email body names the advertiser: no query per row
        rows.append((note, render_body(note)))
    if recount:  # after marking read: the count fetched with the advertiser is out of date
        unread = Notification.objects.filter(advertiser=advertiser, read_at__isnull=True)
        advertiser.unread_notifications = visible_notifications(unread, user=request.user).count()
    return {"advertiser": advertiser, "page": page, "rows": rows, "unread": advertiser.unread_notifications}


@login_required
def notifications(request, advertiser_id):
    """Payment people of the account (and staff) see its notifications; an operator gets 403 (R1)."""
    advertiser, _ = advertiser_for_request(request, advertiser_id, need="payments_read")
    return render(request, "portal/notifications.html", _notifications_context(request, advertiser))


@login_required
@require_POST
def notifications_read(request, advertiser_id):
    """Mark every notification the member sees read (read state is the account's, not per user: an
    account notice read by one member is read for all; another member's own alert is left alone)."""
    advertiser, _ = advertiser_for_request(request, advertiser_id, need="payments_read")
    unread = Notification.objects.filter(advertiser=advertiser, read_at__isnull=True)
    Notification.objects.filter(pk__in=visible_notifications(unread, user=request.user).values("pk")).update(
        read_at=timezone.now())
    if request.htmx:
        context = _notifications_context(request, advertiser, recount=True)
        return render(request, "portal/notifications.html#list", context)
    return redirect("notifications", advertiser_id=advertiser.pk)
