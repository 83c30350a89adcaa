"""Dashboard shell: the advertiser picker, the account dashboard and the campaigns list.

Every advertiser page starts with `advertiser_for_request` (the healthchecks
`_get_rw_check_for_user` shape): not a member → 404, a role that may not → 403.
"""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render

from portal.dashboard import advertiser_summary, campaign_list
from portal.errors import Forbidden, NotFound
from portal.models import CampaignStatus
from portal.permissions import advertiser_for, advertisers_of


def advertiser_for_request(request, advertiser_id, *, need: str = "member"):
    """The advertiser and the caller's role, or Http404 (not a member) / PermissionDenied (a
    member whose role may not). Remembers both on the request for the navigation."""
    try:
        advertiser, role = advertiser_for(request.user, advertiser_id, need=need)
    except NotFound:
        raise Http404("No such advertiser.") from None
    except Forbidden as e:
        # A member: the 403 page still shows this advertiser's navigation.
        request.advertiser, request.advertiser_role = advertiser_for(request.user, advertiser_id)
        raise PermissionDenied(e.message) from None
    request.advertiser, request.advertiser_role = advertiser, role
    return advertiser, role


@login_required
def home(request):
    """"/": straight to the only advertiser, or a picker when there are several."""
    advertisers = list(advertisers_of(request.user)[:500])
    if len(advertisers) == 1:
        return redirect("advertiser_home", advertiser_id=advertisers[0].pk)
    return render(request, "portal/picker.html", {"advertisers": advertisers})


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
    return render(
        request,
        "portal/campaigns.html",
        {"advertiser": advertiser, "role": role, "campaigns": rows, "paused_funds": paused_funds},
    )
