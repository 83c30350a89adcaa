"""Tools → Payments: Overview, Transactions (+ CSV), Add funds, Bills & invoices (+ printable
invoice and PDF, Pay now), Payment method and Billing method (SPEC R1, R13, R14, R23–R29).

Payments pages are for admin, finance and analyst; operators get 403 (R1). Add funds, Pay now
and the card on file need admin or finance; switching billing method, and the refund of unspent
cash that closes the account (R42), need admin (as the API). A Business Center's Billing documents
page (every document of its advertisers, R39) is for its admins and finance members, and staff
(docs/decisions/0026-business-center-documents.md).
"""

import csv
import uuid

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from billing.autopay import bill_pay, payment_method_set
from billing.charts import stacked_bars
from billing.deposits import cash_refund, cash_refund_refusal
from billing.forms import (
    AddFundsForm,
    BillingMethodSwitchForm,
    BillingProfileForm,
    DocumentFilterForm,
    PaymentMethodForm,
    SpendingLimitForm,
    TransactionFilterForm,
)
from billing.gateway import SandboxGateway, get_gateway
from billing.explainer import charge_explain
from billing.insights import runway
from billing.history import payments_overview, transaction_rows, transactions_csv_rows, transactions_query
from billing.document_pdf import document_pdf
from billing.documents import with_state
from billing.invoice_pdf import invoice_pdf
from billing.ledger import advertiser_accounts
from billing.models import Bill, BillKind, BillStatus, Document, PaymentMethod, Purpose, SpendEvent
from billing.money import ZERO, fmt
from billing.profile import profile_fields, profile_of, profile_set
from billing.page_selectors import (
    METHOD_DESCRIPTIONS,
    IdsFirst,
    bc_document_rows,
    bc_documents_query,
    billing_panel,
    bill_rows,
    business_center_accounts,
    document_row,
    document_rows,
    documents_query,
    bill_title,
    bills_query,
    invoice_document,
    switch_options,
)
from billing.limits import limit_view, spending_limit_set
from billing.switching import billing_method_switch, switch_refusal
from billing.templatetags.money import format_money
from billing.topups import card_deposit_create
from portal.errors import BusinessError, Forbidden, NotFound
from portal.models import AdvertiserStatus, BCMembership, BillingMethod, CampaignStatus
from portal.permissions import STAFF, business_center_for, can
from portal.views import advertiser_for_request
from promotions.credit_table import OPEN_STATUSES
from promotions.selectors import credits_query

PAGE_SIZE = 50


@login_required
@require_GET
def overview(request, advertiser_id):
    advertiser, role = advertiser_for_request(request, advertiser_id, need="payments_read")
    data = payments_overview(advertiser=advertiser)
    now = timezone.now()
    return render(
        request,
        "billing/overview.html",
        {
            "advertiser": advertiser,
            "role": role,
            "data": data,
            "runway": runway(advertiser=advertiser, at=now, balances=data.balances),  # R49
            "now": now,
            "chart": stacked_bars(data.spend),
            "panel": billing_panel(advertiser=advertiser),
            "can_pay": can(role, "payments_write"),
        },
    )


@login_required
@require_GET
def transactions(request, advertiser_id):
    advertiser, role = advertiser_for_request(request, advertiser_id, need="payments_read")
    form = TransactionFilterForm(request.GET or None)
    filters = form.filters()
    page = Paginator(transactions_query(advertiser=advertiser, **filters), PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "advertiser": advertiser,
        "role": role,
        "form": form,
        "page": page,
        "rows": transaction_rows(page.object_list),
        "query": query.urlencode(),
    }
    partial = request.htmx and not request.htmx.history_restore_request
    response = render(request, "billing/transactions.html#table" if partial else "billing/transactions.html", context)
    patch_vary_headers(response, ("HX-Request",))
    return response


@login_required
@require_GET
def charge_explanation(request, advertiser_id, transaction_id):
    """R48: why each credit did or did not pay one charge — the "Why?" of a charge on
    Transactions. htmx gets the panel the Transactions page shows under its list, a plain link the
    page around it."""
    advertiser, role = advertiser_for_request(request, advertiser_id, need="payments_read")
    event = get_object_or_404(SpendEvent, transaction_id=transaction_id, advertiser=advertiser)
    context = {"advertiser": advertiser, "role": role, "explanation": charge_explain(event=event)}
    partial = request.htmx and not request.htmx.history_restore_request
    response = render(request, "billing/charge_explanation.html#explanation" if partial
                      else "billing/charge_explanation.html", context)
    patch_vary_headers(response, ("HX-Request",))
    return response


class _Echo:
    """A file-like object whose write returns the line, for csv.writer in a streaming response."""

    def write(self, value):
        return value


@login_required
@require_GET
def transactions_csv(request, advertiser_id):
    """The filtered rows as CSV, streamed in chunks so a long history never sits in memory."""
    advertiser, role = advertiser_for_request(request, advertiser_id, need="payments_read")
    filters = TransactionFilterForm(request.GET or None).filters()
    writer = csv.writer(_Echo())
    rows = transactions_csv_rows(advertiser=advertiser, **filters)
    response = StreamingHttpResponse((writer.writerow(r) for r in rows), content_type="text/csv; charset=utf-8")
    stamp = timezone.localdate(timezone=advertiser.tz).isoformat()
    response["Content-Disposition"] = f'attachment; filename="transactions-{advertiser.pk}-{stamp}.csv"'
    return response


@login_required
def add_funds(request, advertiser_id):
    advertiser, role = advertiser_for_request(request, advertiser_id, need="payments_write")
    context = {"advertiser": advertiser, "role": role, "sandbox": isinstance(get_gateway(), SandboxGateway)}
    if advertiser.billing_method != BillingMethod.MANUAL:
        return render(request, "billing/add_funds.html", context, status=200 if request.method == "GET" else 409)
    if request.method == "POST":
        form = AddFundsForm(request.POST, advertiser=advertiser)
        if form.is_valid():
            try:
                deposit, created = card_deposit_create(
                    advertiser=advertiser,
                    amount=form.cleaned_data["amount"],
                    card_number=form.cleaned_data["card_number"],
                    idempotency_key=form.cleaned_data["idempotency_key"],
                )
            except BusinessError as e:
                form.add_error("amount" if e.code == "deposit_out_of_range" else None, e.message)
            else:
                amount = format_money(deposit.amount, advertiser.currency)
                if created:
                    messages.success(request, f"{amount} added with the card ending {deposit.card_last4}.")
                else:
                    messages.info(request, f"This payment of {amount} was already received; nothing was charged twice.")
                return redirect("payments_overview", advertiser_id=advertiser.pk)
    else:
        form = AddFundsForm(advertiser=advertiser, initial={"idempotency_key": uuid.uuid4().hex})
    context["form"] = form
    return render(request, "billing/add_funds.html", context, status=422 if form.errors else 200)


# --- Bills & invoices (R24–R27) -----------------------------------------------------------------

@login_required
@require_GET
def bills(request, advertiser_id):
    advertiser, role = advertiser_for_request(request, advertiser_id, need="payments_read")
    page = Paginator(bills_query(advertiser=advertiser), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "billing/bills.html", {
        "advertiser": advertiser,
        "role": role,
        "page": page,
        "rows": bill_rows(page.object_list, advertiser=advertiser),
        "can_pay": can(role, "payments_write"),
    })


def _bill_of(advertiser, bill_id) -> Bill:
    """This advertiser's bill, or 404 (another advertiser's bill is never revealed)."""
    return get_object_or_404(Bill, pk=bill_id, advertiser=advertiser)


@login_required
@require_GET
def bill_detail(request, advertiser_id, bill_id):
    """The printable invoice or bill (print CSS hides the navigation)."""
    advertiser, role = advertiser_for_request(request, advertiser_id, need="payments_read")
    bill = _bill_of(advertiser, bill_id)
    return render(request, "billing/bill_detail.html", {
        "advertiser": advertiser,
        "role": role,
        "doc": invoice_document(bill=bill, advertiser=advertiser),
        "can_pay": can(role, "payments_write"),
    })


@login_required
@require_GET
def bill_pdf(request, advertiser_id, bill_id):
    advertiser, role = advertiser_for_request(request, advertiser_id, need="payments_read")
    doc = invoice_document(bill=_bill_of(advertiser, bill_id), advertiser=advertiser)
    response = HttpResponse(invoice_pdf(doc), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{doc.title.lower()}-{doc.number.lstrip("#")}.pdf"'
    return response


def _next_url(request, default: str) -> str:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return target
    return default


@login_required
@require_POST
def bill_pay_view(request, advertiser_id, bill_id):
    """Pay now (R26): charge the card on file for one unpaid bill, then say what happened."""
    advertiser, role = advertiser_for_request(request, advertiser_id, need="payments_write")
    bill = _bill_of(advertiser, bill_id)
    bill.advertiser = advertiser
    title = bill_title(bill)
    try:
        bill = bill_pay(bill=bill)
    except BusinessError as e:
        messages.error(request, e.message)
    else:
        amount = format_money(bill.charge_amount, bill.currency)
        if bill.status == BillStatus.PAID:
            messages.success(request, f"{title} paid: {amount} charged to the card ending {bill.card_last4}.")
        else:
            messages.error(request, f"{title} was not paid: {bill.last_error or 'the payment did not go through.'}")
    return redirect(_next_url(request, reverse("payments_bills", args=[advertiser.pk])))


# --- Billing documents (R39) --------------------------------------------------------------------

@login_required
@require_GET
def documents(request, advertiser_id):
    """Invoices, receipts, statements and credit notes, newest first, filtered by kind and month."""
    advertiser, role = advertiser_for_request(request, advertiser_id, need="payments_read")
    form = DocumentFilterForm(request.GET or None)
    filters = form.filters()
    page = Paginator(IdsFirst(documents_query(advertiser=advertiser, **filters)), PAGE_SIZE).get_page(
        request.GET.get("page"))
    return render(request, "billing/documents.html", {
        "advertiser": advertiser,
        "role": role,
        "business_center": _business_center_shown(request.user, advertiser, role),
        "form": form,
        "page": page,
        "rows": document_rows(page.object_list, advertiser=advertiser),
        "query": _query_without_page(request),
        "filtered": bool(filters),
    })


def _query_without_page(request) -> str:
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


def _business_center_shown(user, advertiser, role):
    """The advertiser's Business Center when the user may open its Billing documents page (staff,
    its admins and finance: `business_center_for`), for a link to it; else None. One query at most."""
    bc = advertiser.business_center  # loaded with the advertiser
    if bc is None:
        return None
    if role == STAFF or BCMembership.objects.filter(user=user, business_center=bc).exists():
        return bc
    return None


def _business_center_for_request(request, business_center_id, *, need: str):
    """The Business Center and the caller's role, or Http404 (never reveals that it exists) /
    PermissionDenied (a member of one of its advertisers, who knows it does)."""
    try:
        return business_center_for(request.user, business_center_id, need=need)
    except NotFound:
        raise Http404("No such Business Center.") from None
    except Forbidden:
        raise PermissionDenied(
            "A Business Center's billing documents are for its admins and finance members."
        ) from None


@login_required
@require_GET
def bc_documents(request, bc_id):
    """Every document of every advertiser in the Business Center, newest first, filtered by
    account, kind and month (R39), for its admins and finance members and for staff."""
    bc, role = _business_center_for_request(request, bc_id, need="payments_read")
    accounts = business_center_accounts(business_center=bc)
    form = DocumentFilterForm(request.GET or None, accounts=[(a.pk, a.name) for a in accounts])
    filters = form.filters()
    page = Paginator(IdsFirst(bc_documents_query(business_center=bc, accounts=accounts, **filters)),
                     PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "billing/bc_documents.html", {
        "business_center": bc,
        "role": role,
        "form": form,
        "page": page,
        "rows": bc_document_rows(page.object_list, accounts=accounts),
        "query": _query_without_page(request),
        "filtered": bool(filters),
    })


@login_required
@require_GET
def document_pdf_view(request, advertiser_id, document_id):
    advertiser, role = advertiser_for_request(request, advertiser_id, need="payments_read")
    doc = get_object_or_404(
        with_state(Document.objects.select_related("refers_to")),
        pk=document_id, advertiser=advertiser,
    )
    response = HttpResponse(document_pdf(document_row(doc, tz=advertiser.tz), advertiser=advertiser),
                            content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{doc.number}.pdf"'
    return response


# --- the card on file (R29) and the billing method (R28) --------------------------------------

@login_required
def payment_method(request, advertiser_id):
    advertiser, role = advertiser_for_request(request, advertiser_id, need="payments_write")
    current = PaymentMethod.objects.filter(advertiser=advertiser).first()
    form = PaymentMethodForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            pm = payment_method_set(
                advertiser=advertiser, card_number=form.cleaned_data["card_number"], expiry=form.cleaned_data["expiry"]
            )
        except BusinessError as e:
            form.add_service_error(e)
        else:
            messages.success(request, f"Card ending {pm.last4} (expires {pm.expiry}) is now your payment method.")
            return redirect("payments_overview", advertiser_id=advertiser.pk)
    context = {
        "advertiser": advertiser,
        "role": role,
        "form": form,
        "current": current,
        "sandbox": isinstance(get_gateway(), SandboxGateway),
    }
    return render(request, "billing/payment_method.html", context, status=422 if form.errors else 200)


@login_required
def billing_method(request, advertiser_id):
    advertiser, role = advertiser_for_request(request, advertiser_id, need="payments_read")
    can_switch = can(role, "admin")
    refusal, posted_target, posted_form = None, None, None
    limit_form = SpendingLimitForm(advertiser=advertiser, initial={
        "amount": "" if advertiser.spending_limit is None else fmt(advertiser.spending_limit, advertiser.currency),
        "period": advertiser.spending_limit_period})
    if request.method == "POST" and request.POST.get("form") == "spending_limit":
        if not can_switch:
            raise PermissionDenied("Only an admin of the account can set its spending limit.")
        limit_form = SpendingLimitForm(request.POST, advertiser=advertiser)
        if limit_form.is_valid():
            try:
                view = spending_limit_set(advertiser=advertiser, amount=limit_form.cleaned_data["amount"],
                                          period=limit_form.cleaned_data["period"], by=request.user,
                                          reason="Set on the Billing method page")
            except BusinessError as e:
                limit_form.add_error("amount", e.message)
            else:
                messages.success(request, "The spending limit is removed." if view.amount is None else
                                 f"The spending limit is now {format_money(view.amount, advertiser.currency)}.")
                return redirect(reverse("payments_billing_method", args=[advertiser.pk]) + "#spending-limit")
    elif request.method == "POST":
        if not can_switch:
            raise PermissionDenied("Only an admin of the account can change its billing method.")
        posted_target = request.POST.get("billing_method", "")
        prefix = posted_target if posted_target in BillingMethod.values else "other"
        posted_form = BillingMethodSwitchForm(request.POST, auto_id=f"id_{prefix}_%s")
        if posted_form.is_valid():
            try:
                switched = billing_method_switch(advertiser=advertiser,
                                                 billing_method=posted_form.cleaned_data["billing_method"])
            except BusinessError as e:
                refusal = e
            else:
                _switch_messages(request, switched)
                return redirect("payments_overview", advertiser_id=advertiser.pk)
    options = switch_options(advertiser=advertiser)
    for option in options:
        mine = option.target == posted_target
        option.form = posted_form if mine else BillingMethodSwitchForm(
            initial={"billing_method": option.target}, auto_id=f"id_{option.target}_%s"
        )
        option.refusal = refusal if mine else None
        # why it cannot be done now, said before anyone clicks (the switch's own conditions)
        option.blocked = None if option.refusal else switch_refusal(advertiser, option.target)
    context = {
        "advertiser": advertiser,
        "role": role,
        "options": options,
        # a refused target that is not an option (e.g. back to manual) is shown above the options
        "other_refusal": refusal if refusal and not any(o.refusal for o in options) else None,
        "description": METHOD_DESCRIPTIONS[advertiser.billing_method],
        "can_switch": can_switch,
        "can_pay": can(role, "payments_write"),
        "card": PaymentMethod.objects.filter(advertiser=advertiser).first(),
        "limit": limit_view(advertiser),
        "limit_form": limit_form,
        "paused_by_limit": advertiser.campaigns.filter(status=CampaignStatus.PAUSED_LIMIT).count(),
    }
    status = 422 if limit_form.errors else 200 if posted_form is None else 409 if refusal else 422
    return render(request, "billing/billing_method.html", context, status=status)


def _switch_messages(request, switched) -> None:
    method = switched.advertiser.get_billing_method_display().lower()
    messages.success(request, f"This account now pays by {method}.")
    switch_bill = switched.bill
    if switch_bill is not None:
        amount = format_money(switch_bill.amount, switch_bill.currency)
        if switch_bill.status == BillStatus.PAID:
            messages.info(request, f"Spend accrued on automatic payment, {amount}, was billed and charged to your card.")
        else:
            messages.error(request, f"Spend accrued on automatic payment, {amount}, was billed but the card was not "
                                    f"charged: {switch_bill.last_error} Pay it from Bills & invoices.")


# --- the billing profile (R37) ------------------------------------------------------------------

@login_required
def billing_profile(request, advertiser_id):
    """Who documents are billed to: the advertiser's own profile, else its Business Center's.
    Admin, finance and analyst see it; admin and finance save it (an audited `profile_set`)."""
    advertiser, role = advertiser_for_request(request, advertiser_id, need="payments_read")
    can_edit = can(role, "payments_write")
    profile, inherited = profile_of(advertiser)
    if request.method == "POST":
        if not can_edit:
            raise PermissionDenied("Only an admin or finance member of the account can change its billing profile.")
        form = BillingProfileForm(request.POST)
        if form.is_valid():
            try:
                profile_set(actor=request.user, data=form.cleaned_data, reason="Edited on the Billing profile page",
                            advertiser=advertiser)
            except BusinessError as e:
                form.add_service_error(e)
            else:
                messages.success(request, "Billing profile saved. Documents issued from now on are billed to it.")
                return redirect("payments_billing_profile", advertiser_id=advertiser.pk)
    else:
        form = BillingProfileForm(initial=BillingProfileForm.initial_of(profile_fields(profile)),
                                  read_only=not can_edit)
    form.mark_invalid()
    context = {
        "advertiser": advertiser,
        "role": role,
        "form": form,
        "profile": profile,
        "inherited": inherited,
        "can_edit": can_edit,
    }
    return render(request, "billing/billing_profile.html", context, status=422 if form.errors else 200)


# --- refund and close (R23, R42) ----------------------------------------------------------------

class RefundCloseForm(forms.Form):
    """The admin's confirmation; the rules are `cash_refund`'s."""

    confirm = forms.BooleanField(
        label="I understand that the account will be closed, its campaigns stopped and its ad credit forfeited.",
        error_messages={"required": "Tick the box to confirm the refund and the closing of the account."},
    )

    def mark_invalid(self) -> None:
        """Point the box at its message, for screen readers (as the billing profile form does)."""
        if "confirm" in self.errors:
            self.fields["confirm"].widget.attrs.update({"aria-invalid": "true", "aria-describedby": "id_confirm_error"})


@login_required
def refund_close(request, advertiser_id):
    """Refund the unspent cash and close the account (R23, R42): the account's admin only, after a
    confirmation that lists the credit `cash_refund` forfeits (every credit still open, R8)."""
    advertiser, role = advertiser_for_request(request, advertiser_id, need="admin")
    form = RefundCloseForm(request.POST if request.method == "POST" else None)
    refused = None
    if form.is_valid():
        try:
            refunded = cash_refund(advertiser=advertiser, by=request.user)
        except BusinessError as e:
            refused = e
        else:
            messages.success(request, f"{format_money(refunded, advertiser.currency)} refunded. The account is "
                                      "closed, its campaigns are stopped and its ad credit was forfeited.")
            return redirect("payments_refund_close", advertiser_id=advertiser.pk)
    form.mark_invalid()
    balance = {purpose: acct.balance for purpose, acct in advertiser_accounts([advertiser.pk])[advertiser.pk].items()}
    refusal = refused or cash_refund_refusal(advertiser, balance)
    if refusal:
        form.fields["confirm"].widget.attrs["disabled"] = True
    credits = list(credits_query(advertiser=advertiser).filter(status__in=OPEN_STATUSES).select_related("ledger_account"))
    context = {
        "advertiser": advertiser,
        "role": role,
        "form": form,
        "closed": advertiser.status == AdvertiserStatus.CLOSED,
        "refusal": refusal,
        "cash": balance.get(Purpose.CASH, ZERO),
        "credits": credits,
        "forfeited": sum((c.ledger_account.balance for c in credits), ZERO),
        "campaigns_to_stop": advertiser.campaigns.exclude(status=CampaignStatus.PAUSED).count(),
    }
    status = 200 if request.method != "POST" else 409 if refused else 422
    return render(request, "billing/refund_close.html", context, status=status)
