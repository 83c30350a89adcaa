"""Tools → Payments → Credits: every credit of the advertiser, and coupon assignment (R5–R7, R34)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from portal.errors import BusinessError
from portal.permissions import can
from portal.views import advertiser_for_request
from promotions.credit_table import credit_rows
from promotions.credits import credit_assign
from promotions.models import Credit


@login_required
@require_GET
def credits(request, advertiser_id):
    advertiser, role = advertiser_for_request(request, advertiser_id, need="payments_read")
    may_assign = can(role, "admin")
    rows = credit_rows(advertiser=advertiser, with_campaigns=may_assign)
    return render(
        request, "promotions/credits.html", {"advertiser": advertiser, "role": role, "rows": rows, "may_assign": may_assign}
    )


@login_required
@require_POST
def credit_assign_campaigns(request, advertiser_id, credit_id):
    """R1, R6: only an admin assigns a coupon to campaigns."""
    advertiser, role = advertiser_for_request(request, advertiser_id, need="admin")
    credit = get_object_or_404(Credit, pk=credit_id, advertiser=advertiser)
    try:
        credit_assign(credit=credit, campaign_ids=request.POST.getlist("campaigns"))
    except BusinessError as e:
        messages.error(request, e.message)
    else:
        n = credit.campaigns.count()
        messages.success(
            request,
            f"Coupon #{credit.pk} now pays for {n} campaign{'s' if n != 1 else ''}." if n else
            f"Coupon #{credit.pk} is not assigned to any campaign: it pays for nothing until you assign it.",
        )
    return redirect("payments_credits", advertiser_id=advertiser.pk)
