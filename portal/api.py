"""The portal JSON API `/api/v1/` (API.md): setup, error shape, and the accounts endpoints.

Endpoints are thin: parse, check permission (`portal.permissions`), call one service, render.
Every refusal has the shape `{"error": {"code": "<snake_case>", "message": "<sentence>"}}`, with
the HTTP status of API.md: 400 bad input, 401 no/invalid token, 403 role does not allow it,
404 unknown or not yours, 409 conflict, 422 a business rule refused it.
"""

import functools
import json
import logging

from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError as DatabaseInterfaceError
from django.db import OperationalError as DatabaseOperationalError
from django.http import Http404, HttpResponseNotAllowed
from django.shortcuts import render
from ninja import NinjaAPI, Router, Status
from ninja.parser import Parser
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.openapi.docs import Swagger

from portal import inputs
from portal.api_auth import require_staff, token_auth
from portal.api_schemas import (
    AdvertiserIn,
    AdvertiserOut,
    BCMemberIn,
    BCMemberOut,
    BusinessCenterIn,
    BusinessCenterOut,
    CampaignIn,
    CampaignOut,
    ERRORS,
    ErrorOut,
    MemberIn,
    MemberOut,
    advertiser_json,
    campaign_json,
)
from portal.errors import BadInput, BusinessError
from portal.models import BusinessCenter
from portal.ratelimit import RateLimited
from portal.permissions import advertiser_for, business_center_for, staff_require
from portal.services import (
    advertiser_create,
    bc_member_add,
    business_center_create,
    campaign_create,
    member_add,
)

class PortalAPI(NinjaAPI):
    """A wrong method on a known path answers the JSON error shape too (ninja's own 405 is plain
    text): every URL's view is wrapped once, when the URLs are built."""

    def _get_urls(self):
        urls = super()._get_urls()
        for pattern in urls:
            if getattr(pattern, "callback", None) is not None:
                pattern.callback = _json_method_not_allowed(pattern.callback)
        return urls


def _json_method_not_allowed(view):
    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        if isinstance(response, HttpResponseNotAllowed):
            allowed = ", ".join(sorted(m.strip() for m in response["Allow"].split(",") if m.strip()))
            answer = error_response(request, 405, "method_not_allowed",
                                    f"{request.method} is not allowed on {request.path}; it accepts {allowed}.")
            answer["Allow"] = allowed
            return answer
        return response

    return wrapper


class PortalParser(Parser):
    """Bodies are read by `inputs.json_body`: too large, too deep, not JSON, or holding text no
    column can store (`\\u0000`, a lone surrogate) is refused with its own code (issue 9)."""

    def parse_body(self, request):
        return inputs.json_body(request.body)


class VendoredSwagger(Swagger):
    """The readable API reference at /api/v1/docs (decision 0028). ninja's own page loads Swagger UI
    from a CDN with an inline script (ninja is not an installed app here), which the portal's CSP
    refuses; this one loads swagger-ui-dist vendored from the npm registry in
    static/vendor/swagger-ui/ and starts it from static/js/api-docs.js, with its settings in a JSON
    block. It is public, like the OpenAPI document it shows."""

    template = "portal/api_docs.html"
    default_settings = {
        **Swagger.default_settings,
        "validatorUrl": None,  # no badge image from validator.swagger.io (the CSP allows no other origin)
    }

    def render_page(self, request, api, **kwargs):
        settings = {**self.settings, "url": self.get_openapi_url(api, kwargs)}
        return render(request, self.template, {"api": api, "swagger_settings": settings})


api = PortalAPI(
    title="Ad Credit & Billing Portal API",
    version="1",
    description=(
        "Portal JSON API (API.md). Authenticate with the `Access-Token` header or "
        "`Authorization: Bearer <token>`. Amounts are decimal strings, timestamps ISO 8601 with "
        "offset, ids strings. Errors: `{\"error\": {\"code\", \"message\", \"request_id\"}}`; every "
        "answer carries an `X-Request-Id` header (a sane incoming one is reused)."
    ),
    urls_namespace="api",
    auth=token_auth,
    parser=PortalParser(),
    docs=VendoredSwagger(),
    docs_url="/docs",
)


log = logging.getLogger("portal.api")

# --- errors ------------------------------------------------------------------------------------

STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
                409: "conflict", 413: "body_too_large", 422: "unprocessable", 429: "too_many_requests",
                503: "database_unavailable"}


def error_response(request, status: int, code: str, message: str, **extra):
    """The error shape; `request_id` (an addition, portal/request_id.py) lets a caller quote it."""
    request_id = getattr(request, "request_id", None)
    if request_id:
        extra = {**extra, "request_id": request_id}
    return api.create_response(request, {"error": {"code": code, "message": message, **extra}}, status=status)


@api.exception_handler(BusinessError)
def _business_error(request, exc: BusinessError):
    return error_response(request, exc.status, exc.code, exc.message, **exc.details)


@api.exception_handler(RateLimited)
def _rate_limited(request, exc: RateLimited):
    response = error_response(request, 429, "rate_limited", str(exc), retry_after=exc.retry_after)
    response["Retry-After"] = str(exc.retry_after)
    return response


@api.exception_handler(DatabaseOperationalError)
@api.exception_handler(DatabaseInterfaceError)
def _database_unavailable(request, exc):
    """The database did not answer (a restart, a failover, a cut connection; issue 11): 503 and
    Retry-After, not a 500 — the request is safe to send again as it was, its keys make a retry
    book nothing twice (R15, R22)."""
    log.warning("database unavailable for %s %s: %s: %s", request.method, request.path, type(exc).__name__, exc)
    response = error_response(request, 503, "database_unavailable",
                              "The database did not answer. Send the request again with the same event_id or "
                              "idempotency_key: a retry never books anything twice.", retry_after=1)
    response["Retry-After"] = "1"
    return response


@api.exception_handler(AuthenticationError)
def _unauthorized(request, exc):
    return error_response(
        request, 401, "unauthorized",
        "A valid API token is required: send it in the Access-Token header or as Authorization: Bearer <token>.",
    )


@api.exception_handler(RequestDataTooBig)
def _body_too_large(request, exc):
    refusal = inputs.BodyTooLarge()
    return error_response(request, refusal.status, refusal.code, refusal.message)


@api.exception_handler(HttpError)
def _http_error(request, exc: HttpError):
    if isinstance(exc.__cause__, BusinessError):  # the body parser's refusal (inputs.json_body)
        return _business_error(request, exc.__cause__)
    if isinstance(exc.__cause__, RequestDataTooBig):
        return _body_too_large(request, exc.__cause__)
    return error_response(request, exc.status_code, STATUS_CODES.get(exc.status_code, "error"), str(exc))


@api.exception_handler(Http404)
def _not_found(request, exc):
    return error_response(request, 404, "not_found", "No such object.")


def _field_path(loc) -> tuple[str, dict]:
    """`("body", "payload", "events", 2, "amount")` → `events[2].amount`, plus the event index."""
    source, parts = (loc[0], list(loc[1:])) if loc else ("body", [])
    if source == "body" and parts:
        parts = parts[1:]  # the view's body parameter name
    path, extra = "", {}
    for i, p in enumerate(parts):
        if isinstance(p, int):
            path += f"[{p}]"
            if i > 0 and parts[i - 1] == "events" and "index" not in extra:
                extra["index"] = p
        else:
            path += ("." if path else "") + str(p)
    if source != "body":
        path = f"{source} parameter {path}"
    return path, extra


def _body_is_not_an_object(request) -> bool:
    try:
        return not isinstance(json.loads(request.body or b"null"), dict)
    except ValueError:
        return False


@api.exception_handler(ValidationError)
def _validation_error(request, exc: ValidationError):
    first = exc.errors[0] if exc.errors else {"loc": (), "msg": "Invalid input", "type": ""}
    loc = tuple(first.get("loc", ()))
    if loc[:1] == ("body",) and _body_is_not_an_object(request):
        return error_response(request, 400, "invalid_body", "The request body must be a JSON object.")
    field, extra = _field_path(loc)
    if first.get("type") == "missing":
        code = "missing_field"
        message = f"{field} is required." if field else "A JSON object is required as the request body."
    else:
        code = "invalid_field"
        msg = str(first.get("msg", "Invalid input")).removeprefix("Value error, ").rstrip(".")
        message = f"{field}: {msg}." if field else f"Request body: {msg}."
    if field:
        extra["field"] = field
    return error_response(request, 400, code, message, **extra)


# --- Business Centers --------------------------------------------------------------------------

accounts = Router(tags=["accounts"])


@accounts.post("/business-centers", response={201: BusinessCenterOut, **ERRORS}, summary="Create a Business Center (staff)")
def business_center_create_view(request, payload: BusinessCenterIn):
    require_staff(request.auth, "create a Business Center")
    staff_require(request.auth, "manage_accounts")
    bc = business_center_create(name=payload.name, currency=payload.currency)
    return Status(201, {"id": str(bc.pk), "name": bc.name, "currency": bc.currency})


@accounts.post("/business-centers/{id}/members", response={201: BCMemberOut, **ERRORS},
               summary="Make a user a BC admin or finance member (staff)")
def bc_member_add_view(request, id: str, payload: BCMemberIn):
    bc, _ = business_center_for(request.auth, id, need="staff")
    staff_require(request.auth, "manage_accounts")
    m = bc_member_add(business_center=bc, username=payload.username, role=payload.role)
    return Status(201, {"business_center_id": str(bc.pk), "username": m.user.username, "role": m.role})


# --- advertisers -------------------------------------------------------------------------------


@accounts.post("/advertisers", response={201: AdvertiserOut, **ERRORS}, summary="Create an advertiser (staff)")
def advertiser_create_view(request, payload: AdvertiserIn):
    require_staff(request.auth, "create an advertiser")
    staff_require(request.auth, "manage_accounts")
    bc = None
    if payload.business_center_id is not None:
        bc = BusinessCenter.objects.filter(pk=payload.business_center_id).first()
        if bc is None:
            raise BadInput("unknown_business_center", f"Business Center {payload.business_center_id} does not exist.")
    adv = advertiser_create(
        name=payload.name,
        currency=payload.currency,
        timezone_name=payload.timezone,
        billing_method=payload.billing_method,
        business_center=bc,
        registered_at=payload.registered_at,
        signup_source=payload.signup_source,
        shop_id=payload.shop_id or "",
    )
    return Status(201, advertiser_json(adv))


@accounts.get("/advertisers/{id}", response={200: AdvertiserOut, **ERRORS}, summary="An advertiser (members, staff)")
def advertiser_detail(request, id: str):
    adv, _ = advertiser_for(request.auth, id, need="member")
    return advertiser_json(adv)


@accounts.post("/advertisers/{id}/members", response={201: MemberOut, **ERRORS},
               summary="Add a member or change their role (staff, admin)")
def member_add_view(request, id: str, payload: MemberIn):
    adv, _ = advertiser_for(request.auth, id, need="admin")
    m = member_add(advertiser=adv, username=payload.username, role=payload.role)
    return Status(201, {"advertiser_id": str(adv.pk), "username": m.user.username, "role": m.role})


@accounts.post("/advertisers/{id}/campaigns", response={201: CampaignOut, **ERRORS},
               summary="Create a campaign (staff, admin, operator)")
def campaign_create_view(request, id: str, payload: CampaignIn):
    adv, _ = advertiser_for(request.auth, id, need="campaigns_write")
    campaign = campaign_create(
        advertiser=adv, name=payload.name, objective=payload.objective, product_source=payload.product_source
    )
    return Status(201, campaign_json(campaign))


@accounts.get("/advertisers/{id}/campaigns", response={200: list[CampaignOut], **ERRORS},
              summary="The advertiser's campaigns, newest first (members, staff)")
def campaign_list(request, id: str):
    adv, _ = advertiser_for(request.auth, id, need="member")
    return [campaign_json(c) for c in adv.campaigns.order_by("-created_at", "-pk")]


# --- routers; the catch-all must come last ----------------------------------------------------

from billing.api import router as billing_router  # noqa: E402
from billing.documents_api import router as documents_router  # noqa: E402
from billing.insights_api import router as insights_router  # noqa: E402
from promotions.api import router as promotions_router  # noqa: E402
from portal.webhooks_api import router as webhooks_router  # noqa: E402

api.add_router("", accounts)
api.add_router("", insights_router)  # before billing's /charges/{path:event_id}
api.add_router("", billing_router)
api.add_router("", documents_router)
api.add_router("", promotions_router)
api.add_router("", webhooks_router)

unknown = Router()


@unknown.api_operation(["GET", "POST", "PUT", "PATCH", "DELETE"], "/{path:rest}", include_in_schema=False)
def unknown_route(request, rest: str):
    return error_response(request, 404, "not_found", f"There is no API endpoint /api/v1/{rest}.")


api.add_router("", unknown, auth=None)
