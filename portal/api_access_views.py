"""The API access page: an advertiser's admins create and revoke its API tokens (issue 6,
decision 0017; services in portal/api_access.py) and manage its webhooks (R45, decision 0033;
services in portal/webhooks.py; the webhook pages are at the end of this module).

Only the advertiser's own admins (members or Business Center admins) use it: finance, operator and
analyst get 403, support staff too (a token made here must never carry staff rights), anyone else
404. A new token's raw value is in the answer to the form that created it and nowhere else: the
answer is not cached, a reload re-sends the same form key and shows no token again.
"""

import secrets

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from portal.api_access import (
    KEY_MAX_LENGTH,
    LABEL_MAX_LENGTH,
    TokenRow,
    api_token_create,
    api_token_of,
    api_token_revoke,
    api_tokens_of,
)
from portal.errors import BadInput, BusinessError, Conflict, NotFound
from portal.models import Role
from portal.views import advertiser_for_request
from portal.webhooks import (
    EVENT_TYPE_LABELS,
    URL_MAX_LENGTH,
    deliveries_of,
    delivery_of,
    event_id,
    event_type,
    webhook_create,
    webhook_delete,
    webhook_of,
    webhook_redeliver,
    webhooks_of,
)

TEMPLATE = "portal/api_access.html"


class ApiTokenForm(forms.Form):
    label = forms.CharField(
        max_length=LABEL_MAX_LENGTH, label="Label",
        help_text="What will use it, e.g. “Reporting script” — shown in the list, never secret.",
    )
    idempotency_key = forms.CharField(max_length=KEY_MAX_LENGTH, widget=forms.HiddenInput)


def _fresh_form() -> ApiTokenForm:
    return ApiTokenForm(initial={"idempotency_key": secrets.token_urlsafe(24)})


def _admin_advertiser(request, advertiser_id):
    advertiser, role = advertiser_for_request(request, advertiser_id, need="admin")
    if role != Role.ADMIN:  # staff pass `need="admin"`; their tokens come from create_api_token
        raise PermissionDenied("API tokens are created by the advertiser's own admins.")
    return advertiser


def _page(request, advertiser, *, form=None, created=None, raw=None, confirming=None, status=200):
    context = {
        "advertiser": advertiser,
        "form": form or _fresh_form(),
        "rows": api_tokens_of(advertiser=advertiser),
        "webhooks": webhooks_of(advertiser=advertiser),
        "webhook_form": WebhookForm(),
        "created": created,
        "raw": raw,
        "confirming": confirming,
    }
    response = render(request, TEMPLATE, context, status=status)
    response["Cache-Control"] = "no-store"  # the raw token must not stay in any cache
    return response


@login_required
@require_http_methods(["GET", "POST"])
def api_access(request, advertiser_id):
    """The tokens of this advertiser and the form that creates one (POST)."""
    advertiser = _admin_advertiser(request, advertiser_id)
    if request.method == "GET":
        return _page(request, advertiser)
    form = ApiTokenForm(request.POST)
    if not form.is_valid():
        return _page(request, advertiser, form=form, status=422)
    try:
        token, raw = api_token_create(
            advertiser=advertiser, user=request.user, label=form.cleaned_data["label"],
            idempotency_key=form.cleaned_data["idempotency_key"],
        )
    except BusinessError as e:
        form.add_error(None, e.message)
        return _page(request, advertiser, form=form, status=409 if isinstance(e, Conflict) else 422)
    if raw is None:
        messages.info(request, f"The token “{token.label}” ({token.prefix}…) was already created by this form; "
                               "its value was shown once and cannot be shown again. Create a new token if "
                               "you did not keep it.")
    return _page(request, advertiser, created=token if raw else None, raw=raw)


def _token(advertiser, token_id):
    try:
        return api_token_of(advertiser=advertiser, token_id=token_id)
    except NotFound:
        raise Http404("No such API token.") from None


@login_required
@require_http_methods(["GET", "POST"])
def api_token_revoke_view(request, advertiser_id, token_id):
    """GET asks for confirmation (in its table row with htmx, else on the page); POST revokes."""
    advertiser = _admin_advertiser(request, advertiser_id)
    token = _token(advertiser, token_id)
    if request.method == "GET":
        if request.htmx:
            context = {"advertiser": advertiser, "row": TokenRow(token, "", None), "confirming": token.pk}
            return render(request, TEMPLATE + "#row", context)
        return _page(request, advertiser, confirming=token.pk)
    token, revoked = api_token_revoke(token=token, by=request.user)
    notice = (f"The token “{token.label}” ({token.prefix}…) is revoked: requests with it now get 401."
              if revoked else f"The token “{token.label}” ({token.prefix}…) was already revoked.")
    if request.htmx:
        context = {"advertiser": advertiser, "rows": api_tokens_of(advertiser=advertiser), "notice": notice}
        return render(request, TEMPLATE + "#list", context)
    messages.success(request, notice)
    return redirect("api_access", advertiser_id=advertiser.pk)


# --- webhooks (R45, decision 0033) ---------------------------------------------------------------
#
# The API access page shows the account's endpoints and the form that adds one; the forms post to
# the webhook pages below. Those serve the advertiser's admins and support staff (who cannot open
# the token part of the page); finance, operator and analyst get 403 saying who may, anyone else
# 404. A new endpoint's secret is shown once: the create POST redirects (a reload sends nothing
# twice) and the session remembers only which endpoint to reveal, never the secret.

WEBHOOKS_TEMPLATE = "portal/webhooks.html"
LOG_TEMPLATE = "portal/webhook_log.html"
REVEAL = "webhook_reveal"
FIELD_OF = {"invalid_webhook_url": "url", "webhook_url_refused": "url", "invalid_events": "events"}


class WebhookForm(forms.Form):
    url = forms.CharField(
        max_length=URL_MAX_LENGTH, label="Endpoint URL",
        widget=forms.URLInput(attrs={"placeholder": "https://example.com/webhooks/adcredit"}),
        help_text="An https:// URL of your server that answers 2xx to a POST. Private, loopback and link-local "
                  "addresses are refused.",
    )
    events = forms.MultipleChoiceField(
        label="Events", choices=list(EVENT_TYPE_LABELS.items()), widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one event."},
    )


def _webhooks_advertiser(request, advertiser_id):
    advertiser, _ = advertiser_for_request(request, advertiser_id, need="admin")  # admins and staff
    return advertiser


def _webhooks_page(request, advertiser, *, form=None, revealed=None, confirming=None, status=200):
    context = {
        "advertiser": advertiser,
        "webhooks": webhooks_of(advertiser=advertiser),
        "webhook_form": form or WebhookForm(),
        "revealed": revealed,
        "confirming": confirming,
    }
    response = render(request, WEBHOOKS_TEMPLATE, context, status=status)
    response["Cache-Control"] = "no-store"  # a secret shown once must not stay in any cache
    return response


@login_required
@require_http_methods(["GET", "POST"])
def webhooks_view(request, advertiser_id):
    """The account's webhook endpoints and the form that adds one (POST)."""
    advertiser = _webhooks_advertiser(request, advertiser_id)
    if request.method == "GET":
        pk = request.session.pop(REVEAL, None)
        revealed = None
        if pk is not None:
            revealed = next((e for e in webhooks_of(advertiser=advertiser) if e.pk == pk), None)
        return _webhooks_page(request, advertiser, revealed=revealed)
    form = WebhookForm(request.POST)
    if not form.is_valid():
        return _webhooks_page(request, advertiser, form=form, status=422)
    try:
        endpoint = webhook_create(advertiser=advertiser, url=form.cleaned_data["url"],
                                  events=form.cleaned_data["events"], by=request.user)
    except BadInput as e:
        form.add_error(FIELD_OF.get(e.code), e.message)
        return _webhooks_page(request, advertiser, form=form, status=422)
    request.session[REVEAL] = endpoint.pk
    return redirect("webhooks", advertiser_id=advertiser.pk)


def _webhook(advertiser, webhook_id):
    try:
        return webhook_of(advertiser=advertiser, webhook_id=webhook_id)
    except NotFound:
        raise Http404("No such webhook.") from None


@login_required
@require_http_methods(["GET", "POST"])
def webhook_delete_view(request, advertiser_id, webhook_id):
    """GET asks for confirmation; POST deletes the endpoint."""
    advertiser = _webhooks_advertiser(request, advertiser_id)
    endpoint = _webhook(advertiser, webhook_id)
    if request.method == "GET":
        return _webhooks_page(request, advertiser, confirming=endpoint.pk)
    webhook_delete(endpoint=endpoint, by=request.user)
    messages.success(request, f"The webhook to {endpoint.url} is deleted: nothing more is sent to it.")
    return redirect("webhooks", advertiser_id=advertiser.pk)


@login_required
@require_http_methods(["GET"])
def webhook_deliveries_view(request, advertiser_id, webhook_id):
    """One endpoint's delivery log, newest first, with a Redeliver button per delivery."""
    advertiser = _webhooks_advertiser(request, advertiser_id)
    endpoint = _webhook(advertiser, webhook_id)
    deliveries = deliveries_of(endpoint=endpoint)
    for d in deliveries:
        d.event_id, d.event_type = event_id(d.notification), event_type(d.notification)
        d.note = "" if d.last_error == f"HTTP {d.last_status_code}" else d.last_error  # said by the code
    context = {"advertiser": advertiser, "endpoint": endpoint, "deliveries": deliveries}
    return render(request, LOG_TEMPLATE, context)


@login_required
@require_http_methods(["POST"])
def webhook_redeliver_view(request, advertiser_id, webhook_id, delivery_id):
    """Send the delivery's event again, now: the same event id and body."""
    advertiser = _webhooks_advertiser(request, advertiser_id)
    endpoint = _webhook(advertiser, webhook_id)
    try:
        delivery = delivery_of(endpoint=endpoint, delivery_id=delivery_id)
    except NotFound:
        raise Http404("No such delivery.") from None
    webhook_redeliver(delivery=delivery, by=request.user)
    messages.success(request, f"Event evt_{delivery.notification_id} will be sent again shortly, "
                              "with the same event id and body.")
    return redirect("webhook_deliveries", advertiser_id=advertiser.pk, webhook_id=endpoint.pk)
