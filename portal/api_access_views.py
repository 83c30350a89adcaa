"""The API access page: an advertiser's admins create and revoke its API tokens (issue 6,
decision 0017; services in portal/api_access.py).

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
from portal.errors import BusinessError, Conflict, NotFound
from portal.models import Role
from portal.views import advertiser_for_request

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
