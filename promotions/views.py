"""Tools → Payments → Promotions (SPEC R34): every credit, ladder progress, promo codes, coupon
assignment, and the frozen banner with its appeal form (R30, R31). Shop Ads → Coupon Progress for
TikTok Shop sellers (R20, R21). Appeal attachments for the advertiser's payments members.

Views parse, check the role with `advertiser_for_request`, call one service and render; reads
come from `promotions.selectors` at a fixed number of queries.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_POST

from billing.insights import expiry_forecast, ladder_pace
from billing.templatetags.money import format_money
from portal.errors import BusinessError
from portal.permissions import can
from portal.views import advertiser_for_request
from promotions.appeals import appeal_file, attachments_dir, sniff
from promotions.credit_table import credit_rows
from promotions.credits import credit_assign
from promotions.forms import APPEAL_ERROR_FIELDS, STATUS_FILTERS, AppealForm, CreditFilterForm, RedeemCodeForm
from promotions.models import AppealAttachment, Credit, ProgramKind
from promotions.programs import enrollment_create
from promotions.selectors import (
    USAGE_PAGE_SIZE,
    credit_summary,
    credit_usage_query,
    credit_usage_rows,
    credit_usage_summary,
    credits_query,
    enrollment_rows,
    freeze_state,
    shop_credit_waits_for_bill,
)

PAGE_SIZE = 50


def _promotions_context(request, advertiser, role, *, redeem_form=None, appeal_form=None) -> dict:
    status = CreditFilterForm(request.GET or None).status_value()
    page = Paginator(credits_query(advertiser=advertiser, status=status), PAGE_SIZE).get_page(request.GET.get("page"))
    may_assign = can(role, "admin")
    summary = credit_summary(advertiser=advertiser)
    tabs = [
        (value, label, summary.total if not value else summary.counts[value])
        for value, label in STATUS_FILTERS
        if not value or value == status or summary.counts[value]
    ]
    query = urlencode({"status": status}) if status else ""
    may_appeal = can(role, "payments_write")
    now = timezone.now()
    rows = credit_rows(credits=page.object_list, advertiser=advertiser, with_campaigns=may_assign)
    # R47: the forecast of the page's credits (a fixed number of queries, however many)
    forecasts = {f.credit_id: f for f in expiry_forecast(advertiser=advertiser, at=now,
                                                          credits=[r.credit for r in rows])} if rows else {}
    for r in rows:
        r.forecast = forecasts.get(r.credit.pk)
    enrollments = enrollment_rows(advertiser=advertiser, at=now)
    paces = {p.enrollment_id: p for p in ladder_pace(  # R50, from the cards' enrollments and tiers
        advertiser=advertiser, at=now, enrollments=[(e.enrollment, e.tiers) for e in enrollments])}
    for e in enrollments:
        e.pace = paces.get(e.enrollment.pk)
    return {
        "advertiser": advertiser,
        "role": role,
        "status": status,
        "status_label": dict(STATUS_FILTERS)[status],
        "tabs": tabs,
        "page": page,
        "query": query,
        "rows": rows,
        "now": now,
        "summary": summary,
        "may_assign": may_assign,
        "may_redeem": may_assign,  # R34: an admin redeems codes; everyone else reads
        "may_appeal": may_appeal,  # R31: admin and finance file appeals
        "enrollments": enrollments,
        "freeze": freeze_state(advertiser=advertiser),
        "redeem_form": redeem_form or (RedeemCodeForm() if may_assign else None),
        "appeal_form": appeal_form or (AppealForm() if may_appeal and advertiser.credit_frozen else None),
    }


def _promotions_url(advertiser, anchor: str = "") -> str:
    return reverse("payments_promotions", args=[advertiser.pk]) + (f"#{anchor}" if anchor else "")


@login_required
@require_GET
def promotions(request, advertiser_id):
    advertiser, role = advertiser_for_request(request, advertiser_id, need="payments_read")
    context = _promotions_context(request, advertiser, role)
    partial = request.htmx and not request.htmx.history_restore_request
    response = render(request, "promotions/promotions.html#credits" if partial else "promotions/promotions.html", context)
    patch_vary_headers(response, ("HX-Request",))
    return response


@login_required
@require_GET
def credits(request, advertiser_id):
    """The old Tools → Payments → Credits address: the list now lives on Promotions."""
    advertiser, _ = advertiser_for_request(request, advertiser_id, need="payments_read")
    url = reverse("payments_promotions", args=[advertiser.pk])
    query = request.GET.urlencode()
    return redirect(f"{url}?{query}" if query else url)


@login_required
@require_GET
def credit_usage(request, advertiser_id, credit_id):
    """One credit's history (issue 13): its issue, every charge it paid part of with what was left
    after, its expiry or withdrawal — paged. For whoever may open Promotions; htmx gets the panel
    the Promotions page shows under its list, a plain link the page around it."""
    advertiser, role = advertiser_for_request(request, advertiser_id, need="payments_read")
    credit = get_object_or_404(Credit.objects.select_related("ledger_account"), pk=credit_id, advertiser=advertiser)
    page = Paginator(credit_usage_query(credit=credit), USAGE_PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "advertiser": advertiser,
        "role": role,
        "credit": credit,
        "page": page,
        "rows": credit_usage_rows(page.object_list),
        "summary": credit_usage_summary(credit=credit),
    }
    partial = request.htmx and not request.htmx.history_restore_request
    response = render(request, "promotions/credit_usage.html#usage" if partial else "promotions/credit_usage.html",
                      context)
    patch_vary_headers(response, ("HX-Request",))
    return response


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
    return redirect(_promotions_url(advertiser, f"credit-{credit.pk}"))


@login_required
@require_POST
def redeem_code(request, advertiser_id):
    """R19, R34: an admin enrolls the account in a program by promo code. Each refusal names the
    rule that failed, under the field."""
    advertiser, role = advertiser_for_request(request, advertiser_id, need="admin")
    form = RedeemCodeForm(request.POST)
    if form.is_valid():
        try:
            enrollment = enrollment_create(advertiser=advertiser, code=form.cleaned_data["code"])
        except BusinessError as e:
            form.add_refusal(e)
        else:
            program = enrollment.program
            first = program.tiers.order_by("threshold").first()
            end = timezone.localtime(enrollment.window_end, advertiser.tz)
            goal = (f" Spend {format_money(first.threshold, program.currency)} by {end:%b} {end.day}, {end.year} "
                    f"to earn {format_money(first.reward, program.currency)} in ad credit.") if first else ""
            messages.success(request, f"Code accepted: you joined {program.name}.{goal}")
            return redirect(_promotions_url(advertiser, f"enrollment-{enrollment.pk}"))
    context = _promotions_context(request, advertiser, role, redeem_form=form)
    return render(request, "promotions/promotions.html", context, status=422)


@login_required
@require_POST
def appeal_create(request, advertiser_id):
    """R31: a frozen advertiser's admin or finance member appeals, with up to 3 files."""
    advertiser, role = advertiser_for_request(request, advertiser_id, need="payments_write")
    form = AppealForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            appeal_file(advertiser=advertiser, user=request.user, message=form.cleaned_data["message"],
                        files=form.cleaned_data["files"])
        except BusinessError as e:
            if e.code not in APPEAL_ERROR_FIELDS:
                # The account's state refuses it (not frozen, an appeal already open, too many
                # today): say so above the page as it now is, where that state is shown.
                messages.error(request, e.message)
                return redirect(_promotions_url(advertiser))
            form.add_refusal(e)
        else:
            messages.success(request, "Your appeal was sent. We review it and email you the decision; "
                                      "filing an appeal does not guarantee that the freeze is lifted.")
            return redirect(_promotions_url(advertiser))  # the banner, now showing the appeal, tops the page
    context = _promotions_context(request, advertiser, role, appeal_form=form)
    return render(request, "promotions/promotions.html", context, status=422)


@login_required
@require_GET
def appeal_attachment(request, advertiser_id, appeal_id, attachment_id):
    """An appeal's file, for the advertiser's payments members and staff only. Always a download,
    typed by its content (checked again here), never rendered by the browser."""
    advertiser, _ = advertiser_for_request(request, advertiser_id, need="payments_read")
    att = get_object_or_404(AppealAttachment, pk=attachment_id, appeal_id=appeal_id, appeal__advertiser=advertiser)
    path = attachments_dir() / att.stored_name
    if not path.is_file():
        raise Http404("The file is missing.")
    handle = open(path, "rb")
    kind = sniff(handle.read(16))
    handle.seek(0)
    response = FileResponse(handle, as_attachment=True, filename=att.original_name,
                            content_type=kind[0] if kind else "application/octet-stream")
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    return response


@login_required
@require_GET
def coupon_progress(request, advertiser_id):
    """Seller Center → Marketing → Shop Ads → Ads Dashboard → Coupon Progress (R20, R21)."""
    advertiser, role = advertiser_for_request(request, advertiser_id, need="payments_read")
    return render(request, "promotions/coupon_progress.html", {
        "advertiser": advertiser,
        "role": role,
        "enrollments": enrollment_rows(advertiser=advertiser, kind=ProgramKind.SHOP),
        "waits_for_bill": shop_credit_waits_for_bill(advertiser),
    })
