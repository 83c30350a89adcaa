"""Tools → Payments: Overview, Transactions (+ CSV) and Add funds (SPEC R1, R13, R14, R23, R29).

Payments pages are for admin, finance and analyst; operators get 403 (R1). Add funds needs
admin or finance.
"""

import csv
import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET

from billing.charts import stacked_bars
from billing.forms import AddFundsForm, TransactionFilterForm
from billing.gateway import SandboxGateway, get_gateway
from billing.history import payments_overview, transaction_rows, transactions_csv_rows, transactions_query
from billing.templatetags.money import format_money
from billing.topups import card_deposit_create
from portal.errors import BusinessError
from portal.models import BillingMethod
from portal.views import advertiser_for_request

PAGE_SIZE = 50


@login_required
@require_GET
def overview(request, advertiser_id):
    advertiser, role = advertiser_for_request(request, advertiser_id, need="payments_read")
    data = payments_overview(advertiser=advertiser)
    return render(
        request,
        "billing/overview.html",
        {"advertiser": advertiser, "role": role, "data": data, "chart": stacked_bars(data.spend)},
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
