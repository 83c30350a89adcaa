"""The TikTok Business API v1.3 subset (SPEC R35; API.md `/open_api/v1.3/`; decision 0012).

Plain Django views, so that TikTok's own clients (the official Python SDK among them) work with
only the host changed. Every answer is HTTP 200 with TikTok's envelope
`{"code", "message", "request_id", "data"}`; `code` is 0 on success, else 40001 (bad parameter),
40002 (not allowed: no access, or a business rule refused it), 40100 (no or invalid
`Access-Token`), 42900 (the token's rate limit, decision 0013; with `Retry-After`) or 50000
(server error). Money is a JSON number with exactly the currency's places,
ids are strings, GET filters are JSON-encoded query parameters.

Each response carries its `request_id` in the body and in an `X-Request-Id` header, and each
request is logged once (logger `portal.open_api`) with that id.

Tokens and rights are the portal API's: staff everything; Business Center admins and finance their
BC; advertiser members their advertisers for `advertiser/info/` and balance reads (payment data only
for admin, finance and analyst, R1). A token made on an advertiser's API access page acts for that
advertiser only (decision 0017): another advertiser, and a Business Center's own cash, ledger and
transfers, answer 40002 `no_access` as for an account that is not the caller's;
`advertiser/balance/get/` lists that one advertiser.
"""

import json
import logging
import secrets
import time
from datetime import date, datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal
from functools import wraps
from math import ceil

from django.core.exceptions import RequestDataTooBig
from django.db.models import Q
from django.http import HttpResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.csrf import csrf_exempt

from billing.bc import bc_cash_balance, bc_transfer, transfer_grant_check
from billing.models import BCTransferType
from billing.money import ZERO, fmt
from portal import inputs
from portal import open_api_reads as reads
from portal.api_auth import counted, user_for_token
from portal.errors import BadInput, BusinessError, Forbidden, NotFound
from portal.models import Advertiser, BCMembership, BusinessCenter, Membership, PAYMENTS_READ_ROLES
from portal.permissions import advertiser_for, business_center_for, can, role_of, token_advertiser_id
from portal.ratelimit import RateLimited

log = logging.getLogger("portal.open_api")

OK = 0
BAD_PARAMETER = 40001
NOT_ALLOWED = 40002
AUTH = 40100
RATE_LIMITED = 42900  # decision 0013: TikTok's own number for this (40100) is API.md's auth code
SERVER_ERROR = 50000

MAX_ADVERTISER_IDS = 100
BALANCE_PAGE_SIZE_MAX = 100
TRANSACTION_PAGE_SIZE_MAX = 1000


class OpenApiError(Exception):
    def __init__(self, code: int, message: str, reason: str = ""):
        super().__init__(message)
        self.code, self.message, self.reason = code, message, reason


def bad(message: str, reason: str = "invalid_parameter") -> OpenApiError:
    return OpenApiError(BAD_PARAMETER, message, reason)


def no_access(what: str, ident) -> OpenApiError:
    """Unknown and not yours read the same: never reveal another customer's objects."""
    return OpenApiError(NOT_ALLOWED, f"{what} {ident} does not exist or you have no access to it.", "no_access")


# --- JSON with money as numbers ------------------------------------------------------------------

class Money:
    """An amount written as a JSON number with exactly the currency's places (`12.50`, `1200`)."""

    __slots__ = ("amount", "currency")

    def __init__(self, amount: Decimal, currency: str):
        self.amount, self.currency = amount, currency


def _encode(value) -> str:
    if isinstance(value, Money):
        return fmt(value.amount, value.currency)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {_encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_encode(v) for v in value) + "]"
    return json.dumps(value)


def new_request_id() -> str:
    """TikTok-like: the UTC time to the second, then 20 random hex digits."""
    return timezone.now().strftime("%Y%m%d%H%M%S") + secrets.token_hex(10).upper()


def envelope(*, code: int, message: str, request_id: str, data) -> HttpResponse:
    body = _encode({"code": code, "message": message, "request_id": request_id, "data": data})
    response = HttpResponse(body, content_type="application/json")
    response["X-Request-Id"] = request_id
    return response


def _code_for(exc: BusinessError) -> int:
    return BAD_PARAMETER if isinstance(exc, BadInput) else NOT_ALLOWED


def endpoint(method: str | None):
    """Wrap a view `fn(request, user) -> data`: method (None: any), token, envelope, error codes,
    request id and the request's log line."""

    def decorate(fn):
        @csrf_exempt
        @wraps(fn)
        def view(request, *args, **kwargs):
            started = time.monotonic()
            request_id = getattr(request, "request_id", None) or new_request_id()
            request.request_id = request_id
            user = None
            code, message, data, reason = OK, "OK", {}, ""
            retry_after = None
            try:
                if method is not None and request.method != method:
                    raise bad(f"{request.method} is not supported here: use {method}.", "method_not_allowed")
                user = user_for_token(request.headers.get("Access-Token"))
                if user is None:
                    raise OpenApiError(AUTH, "The Access-Token header is missing or not a valid token.", "invalid_token")
                counted(user, request.headers["Access-Token"])
                data = fn(request, user, *args, **kwargs)
            except RequestDataTooBig:
                refusal = inputs.BodyTooLarge()
                code, message, reason = BAD_PARAMETER, refusal.message, refusal.code
            except RateLimited as exc:
                code, message, reason, retry_after = RATE_LIMITED, str(exc), "rate_limited", exc.retry_after
            except OpenApiError as exc:
                code, message, reason = exc.code, exc.message, exc.reason
            except BusinessError as exc:
                code, message, reason = _code_for(exc), exc.message, exc.code
            except Exception:
                log.exception("open_api request_id=%s %s %s failed", request_id, request.method, request.path)
                code, message, reason = SERVER_ERROR, f"Internal error; quote request_id {request_id}.", "server_error"
            if code != OK:
                data = {"error_code": reason} if reason else {}
            log.info(
                "open_api request_id=%s method=%s path=%s code=%s reason=%s user=%s duration_ms=%d",
                request_id, request.method, request.path, code, reason or "-", user.pk if user else "-",
                (time.monotonic() - started) * 1000,
            )
            response = envelope(code=code, message=message, request_id=request_id, data=data)
            if retry_after is not None:
                response["Retry-After"] = str(retry_after)
            return response

        return view

    return decorate


# --- parameters ----------------------------------------------------------------------------------

def _json_query(request, name: str, kind: type, *, required: bool = False):
    raw = request.GET.get(name)
    if raw is None or raw == "":
        if required:
            raise bad(f"{name} is required.", "missing_parameter")
        return None
    try:
        value = inputs.json_body(raw.encode("utf-8", "surrogatepass"))
    except BadInput as exc:
        if exc.code == "malformed_json":
            raise bad(f"{name} must be JSON-encoded ({'an array' if kind is list else 'an object'}).") from None
        raise bad(f"{name}: {exc.message}", exc.code) from None
    if not isinstance(value, kind):
        raise bad(f"{name} must be a JSON {'array' if kind is list else 'object'}.")
    return value


def _id(value, name: str) -> int:
    """Ids are strings of digits (integers are accepted too)."""
    return inputs.object_id(value, field=name, code="invalid_parameter")


def _required_id(request, name: str) -> int:
    value = request.GET.get(name)
    if value is None or value == "":
        raise bad(f"{name} is required.", "missing_parameter")
    return _id(value, name)


def _int(request, name: str, default: int, low: int, high: int) -> int:
    raw = request.GET.get(name)
    if raw is None or raw == "":
        return default
    return inputs.count(raw, field=name, low=low, high=high, code="invalid_parameter")


def _strings(value, name: str, allowed=None) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad(f"{name} must be an array of strings.")
    if allowed is not None:
        unknown = [v for v in value if v not in allowed]
        if unknown:
            raise bad(f"{name}: unknown value {unknown[0]!r}; use one of {', '.join(sorted(allowed))}.")
    return value


def _time(value, name: str, *, end: bool) -> datetime:
    """`YYYY-MM-DD HH:MM:SS` (UTC), `YYYY-MM-DD` or ISO 8601 with an offset. An end time is
    inclusive to the second (a date to the whole day); returned as an exclusive bound."""
    if not isinstance(value, str) or not value.strip() or not inputs.storable(value):
        raise bad(f"{name} must be a time such as \"2026-01-31 23:59:59\" (UTC).")
    text = value.strip()
    whole_day = False
    try:
        if len(text) == 10:
            moment = datetime.combine(date.fromisoformat(text), datetime.min.time())
            whole_day = True
        else:
            moment = parse_datetime(text)
    except ValueError:
        moment = None
    if moment is None:
        raise bad(f"{name} {value!r} is not a time such as \"2026-01-31 23:59:59\" (UTC).")
    if timezone.is_naive(moment):
        moment = moment.replace(tzinfo=dt_timezone.utc)
    inputs.in_range(moment, field=name, shown=repr(value), code="invalid_parameter")
    if end:
        moment = moment + timedelta(days=1) if whole_day else moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment


def _page_info(page: int, page_size: int, total: int) -> dict:
    return {"page": page, "page_size": page_size, "total_number": total, "total_page": ceil(total / page_size)}


def _business_center(user, bc_id: int, *, need: str = "member") -> BusinessCenter:
    try:
        bc, _ = business_center_for(user, bc_id, need=need)
    except (NotFound, Forbidden):
        raise no_access("Business Center", bc_id) from None
    return bc


def _utc(moment: datetime) -> str:
    return moment.astimezone(dt_timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


# --- endpoints -----------------------------------------------------------------------------------

INFO_FIELDS = ["advertiser_id", "name", "currency", "timezone", "status", "balance"]


@endpoint("GET")
def advertiser_info(request, user):
    """`list[]{advertiser_id, name, currency, timezone, status, balance}` for every id asked for.

    Any member may read an account's info; `balance` (the available balance) is payment data, so
    it is null for an operator (R1). `fields` (JSON array) narrows the answer."""
    raw_ids = _json_query(request, "advertiser_ids", list, required=True)
    if not 1 <= len(raw_ids) <= MAX_ADVERTISER_IDS:
        raise bad(f"advertiser_ids must hold 1 to {MAX_ADVERTISER_IDS} ids.")
    ids = list(dict.fromkeys(_id(v, "advertiser_ids[]") for v in raw_ids))
    fields = _json_query(request, "fields", list)
    fields = _strings(fields, "fields", INFO_FIELDS) if fields is not None else INFO_FIELDS
    rows = []
    for adv_id in ids:
        try:
            adv, role = advertiser_for(user, adv_id, need="member")
        except (NotFound, Forbidden):
            raise no_access("Advertiser", adv_id) from None
        balance = None
        if can(role, "payments_read"):
            # tax is not a field of this answer: not read (tax=ZERO saves the query)
            balance = Money(reads.account_balance(advertiser=adv, tax=ZERO).valid_account_balance, adv.currency)
        row = {
            "advertiser_id": str(adv.pk),
            "name": adv.name,
            "currency": adv.currency,
            "timezone": adv.timezone,
            "status": reads.ADVERTISER_STATUS[adv.status],
            "balance": balance,
        }
        rows.append({k: row[k] for k in fields})
    return {"list": rows}


def _balance_fields(b: reads.AccountBalance) -> dict:
    cur = b.currency
    return {
        "account_balance": Money(b.account_balance, cur),
        "valid_account_balance": Money(b.valid_account_balance, cur),
        "frozen_balance": Money(b.frozen_balance, cur),
        "tax": Money(b.tax, cur),
        "cash_balance": Money(b.cash_balance, cur),
        "valid_cash_balance": Money(b.valid_cash_balance, cur),
        "grant_balance": Money(b.grant_balance, cur),
        "valid_grant_balance": Money(b.valid_grant_balance, cur),
    }


def _readable_advertisers(user, bc: BusinessCenter):
    """The BC's advertisers whose balances the caller may read, or None when the BC is not theirs."""
    advertisers = Advertiser.objects.filter(business_center=bc)
    scope = token_advertiser_id(user)
    if scope is not None:  # an advertiser's own token (decision 0017): that account, if readable
        adv = advertisers.filter(pk=scope).first()
        if adv is None or not can(role_of(user, adv), "payments_read"):
            return None
        return advertisers.filter(pk=scope)
    if user.is_staff or BCMembership.objects.filter(user=user, business_center=bc).exists():
        return advertisers
    mine = Membership.objects.filter(user=user, advertiser__business_center=bc, role__in=PAYMENTS_READ_ROLES)
    if not mine.exists():
        return None
    return advertisers.filter(pk__in=mine.values("advertiser_id"))


@endpoint("GET")
def advertiser_balance_get(request, user):
    """The balances of a BC's advertiser accounts (those the caller may read), by id, paged.

    `filtering`: `{"advertiser_status": ["STATUS_ENABLE", ...], "keyword": "name or id"}`."""
    bc_id = _required_id(request, "bc_id")
    page = _int(request, "page", 1, 1, 1_000_000)
    page_size = _int(request, "page_size", 10, 1, BALANCE_PAGE_SIZE_MAX)
    filtering = _json_query(request, "filtering", dict) or {}
    unknown = set(filtering) - {"advertiser_status", "keyword"}
    if unknown:
        raise bad(f"filtering: unknown field {sorted(unknown)[0]!r}.")
    bc = BusinessCenter.objects.filter(pk=bc_id).first()
    advertisers = _readable_advertisers(user, bc) if bc is not None else None
    if advertisers is None:
        raise no_access("Business Center", bc_id)
    if "advertiser_status" in filtering:
        statuses = _strings(filtering["advertiser_status"], "filtering.advertiser_status", reads.STATUS_FROM_TIKTOK)
        advertisers = advertisers.filter(status__in=[reads.STATUS_FROM_TIKTOK[s] for s in statuses])
    keyword = filtering.get("keyword")
    if keyword is not None:
        keyword = inputs.text(keyword, field="filtering.keyword", max_length=200, required=False,
                              code="invalid_parameter")
        if keyword:
            match = Q(name__icontains=keyword)
            if keyword.isdigit() and len(keyword) <= 18:
                match |= Q(pk=int(keyword))
            advertisers = advertisers.filter(match)
    total = advertisers.count()
    chosen = list(advertisers.order_by("pk")[(page - 1) * page_size: page * page_size])
    taxes = reads.tax_payable(adv.pk for adv in chosen)
    rows = []
    for adv in chosen:
        rows.append({
            "advertiser_id": str(adv.pk),
            "advertiser_name": adv.name,
            "advertiser_status": reads.ADVERTISER_STATUS[adv.status],
            "currency": adv.currency,
            "timezone": adv.timezone,
            **_balance_fields(reads.account_balance(advertiser=adv, tax=taxes.get(adv.pk, ZERO))),
        })
    return {"advertiser_account_list": rows, "page_info": _page_info(page, page_size, total)}


@endpoint("GET")
def bc_balance_get(request, user):
    """A Business Center's own cash (BC admins and finance, staff). A BC holds no credit."""
    bc_id = _required_id(request, "bc_id")
    bc = _business_center(user, bc_id)
    cash = bc_cash_balance(business_center=bc)
    return {
        "bc_id": str(bc.pk),
        "currency": bc.currency,
        **_balance_fields(reads.AccountBalance(currency=bc.currency, cash_balance=cash, valid_cash_balance=cash,
                                               grant_balance=ZERO, valid_grant_balance=ZERO, frozen_balance=ZERO)),
    }


TRANSACTION_FILTERS = {"transaction_types", "account_ids", "account_name", "billing_types", "start_time", "end_time"}


@endpoint("GET")
def bc_account_transaction_get(request, user):
    """The ledger, one row per transaction, newest first: the BC's own cash (`transaction_level`
    `BC`, the default) or its advertisers' accounts (`ADVERTISER`). BC admins and finance, staff.

    `amount` is what was paid or given back, tax included (a deposit: the card charge, the amount
    loaded + its tax); `tax_amount` the tax the transaction booked to tax payable; `subtotal` =
    `amount` − `tax_amount` (decision 0023)."""
    bc_id = _required_id(request, "bc_id")
    level = request.GET.get("transaction_level") or reads.LEVEL_BC
    if level not in reads.LEVELS:
        raise bad("transaction_level must be BC or ADVERTISER.")
    page = _int(request, "page", 1, 1, 1_000_000)
    page_size = _int(request, "page_size", 10, 1, TRANSACTION_PAGE_SIZE_MAX)
    filtering = _json_query(request, "filtering", dict) or {}
    unknown = set(filtering) - TRANSACTION_FILTERS
    if unknown:
        raise bad(f"filtering: unknown or unsupported field {sorted(unknown)[0]!r}.")
    query = {}
    if "transaction_types" in filtering:
        query["types"] = _strings(filtering["transaction_types"], "filtering.transaction_types",
                                  reads.TRANSACTION_TYPES[level])
    if "account_ids" in filtering:
        ids = filtering["account_ids"]
        if not isinstance(ids, list):
            raise bad("filtering.account_ids must be an array of ids.")
        query["account_ids"] = [_id(v, "filtering.account_ids[]") for v in ids]
    if "account_name" in filtering:
        query["account_name"] = inputs.text(filtering["account_name"], field="filtering.account_name",
                                            max_length=200, required=False, code="invalid_parameter")
    if "billing_types" in filtering:
        query["billing_types"] = _strings(filtering["billing_types"], "filtering.billing_types",
                                          reads.BILLING_FROM_TIKTOK)
    if "start_time" in filtering:
        query["start"] = _time(filtering["start_time"], "filtering.start_time", end=False)
    if "end_time" in filtering:
        query["end"] = _time(filtering["end_time"], "filtering.end_time", end=True)
    bc = _business_center(user, bc_id)
    transactions = reads.transactions_query(business_center=bc, level=level, **query)
    total = transactions.count()
    page_rows = reads.transaction_rows(
        business_center=bc, level=level, transactions=transactions[(page - 1) * page_size: page * page_size]
    )
    out = []
    for row in page_rows:
        tx, cur = row.tx, row.tx.currency
        adv = tx.advertiser if level == reads.LEVEL_ADVERTISER else None
        out.append({
            "transaction_id": str(tx.pk),
            "account_id": str(adv.pk if adv else bc.pk),
            "account_name": adv.name if adv else bc.name,
            "bc_id": str(bc.pk),
            "amount": Money(row.amount, cur),
            "subtotal": Money(row.subtotal, cur),
            "tax_amount": Money(row.tax_amount, cur),
            "currency": cur,
            "amount_type": row.amount_type,
            "cash_amount": Money(row.cash_amount, cur),
            "grant_amount": Money(row.grant_amount, cur),
            "transaction_type": row.transaction_type,
            "billing_type": reads.BILLING_TYPE[adv.billing_method] if adv else None,
            "timezone": adv.timezone if adv else "UTC",
            "create_time": _utc(tx.occurred_at),
            "invoice_id": row.invoice_id,
        })
    return {"transaction_list": out, "page_info": _page_info(page, page_size, total)}


@endpoint("POST")
def bc_transfer_create(request, user):
    """`{bc_id, advertiser_id, transfer_type: RECHARGE|REFUND, cash_amount, grant_amount?, request_id}`:
    cash between a BC and one of its advertisers, idempotent by `request_id` (BC admins and finance,
    staff). A non-zero `grant_amount` is refused to every caller: credit is not transferable (R8)."""
    body = inputs.json_body(request.body or b"{}")
    if not isinstance(body, dict):
        raise bad("The body must be a JSON object.", "invalid_body")
    transfer_grant_check(body.get("grant_amount"))
    for name in ("bc_id", "advertiser_id", "transfer_type", "cash_amount", "request_id"):
        if body.get(name) in (None, ""):
            raise bad(f"{name} is required.", "missing_parameter")
    if body.get("child_bc_id") not in (None, ""):
        raise bad("child_bc_id is not supported: transfer from the Business Center that holds the account.")
    if body.get("transfer_level") not in (None, "", "ADVERTISER"):
        raise bad("transfer_level must be ADVERTISER (transfers are between a BC and an ad account).")
    if body["transfer_type"] not in BCTransferType.values:
        raise bad("transfer_type must be RECHARGE or REFUND.")
    bc_id = _id(body["bc_id"], "bc_id")
    advertiser_id = _id(body["advertiser_id"], "advertiser_id")
    bc = _business_center(user, bc_id, need="payments_write")
    try:
        transfer = bc_transfer(
            business_center=bc, advertiser_id=advertiser_id, transfer_type=body["transfer_type"],
            cash_amount=body["cash_amount"], grant_amount=body.get("grant_amount"), request_id=body["request_id"],
            by=user,
        )
    except NotFound:
        raise no_access("Advertiser", advertiser_id) from None
    return {
        "bc_id": str(bc.pk),
        "advertiser_id": str(transfer.advertiser_id),
        "transfer_type": transfer.transfer_type,
        "cash_amount": Money(transfer.amount, bc.currency),
        "grant_amount": Money(ZERO, bc.currency),
        "currency": bc.currency,
        "request_id": transfer.request_id,
        "transaction_id": str(transfer.transaction_id),
        "create_time": _utc(transfer.created_at),
    }


@endpoint(None)
def unknown_endpoint(request, user, *args, **kwargs):
    raise bad(f"Unknown endpoint {request.path}: paths end with a slash, e.g. /open_api/v1.3/bc/balance/get/.",
              "unknown_endpoint")
