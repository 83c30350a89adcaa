"""The OpenAPI 3 document of the TikTok Business API v1.3 subset (API.md `/open_api/v1.3/`).

Served without a token at `/open_api/v1.3/openapi.json`, so a client (or schemathesis, issue 9)
can read what each operation takes and answers. It is built from the same constants the views
check against (page sizes, field names, status and type names), so it cannot drift from them.

Every answer is HTTP 200 with TikTok's envelope; `data` is the operation's payload when `code` is
0, else `{"error_code": "<reason>"}`. GET filters are JSON-encoded query parameters (`content:
application/json`), as TikTok's are.
"""

from django.http import JsonResponse
from django.views.decorators.http import require_GET

from billing.bc import REQUEST_ID_MAX
from billing.models import BCTransferType
from portal import open_api
from portal import open_api_reads as reads

ID = {"type": "string", "pattern": "^[0-9]{1,18}$", "description": "an id: a string of digits"}
MONEY = {"type": "number", "description": "an amount with exactly the currency's places"}
TIME = {"type": "string", "description": "UTC, `YYYY-MM-DD HH:MM:SS`"}
TEXT = {"type": "string", "maxLength": 200}
CODES = [open_api.OK, open_api.BAD_PARAMETER, open_api.NOT_ALLOWED, open_api.AUTH, open_api.RATE_LIMITED,
         open_api.SERVER_ERROR]
BALANCE_FIELDS = ["account_balance", "valid_account_balance", "frozen_balance", "tax", "cash_balance",
                  "valid_cash_balance", "grant_balance", "valid_grant_balance"]


def _object(properties: dict, required=None) -> dict:
    return {"type": "object", "properties": properties,
            "required": list(properties if required is None else required)}


def _nullable(schema: dict) -> dict:
    return {**schema, "nullable": True}


PAGE_INFO = _object({name: {"type": "integer", "minimum": 0}
                     for name in ("page", "page_size", "total_number", "total_page")})
ERROR_DATA = {**_object({"error_code": {"type": "string", "minLength": 1}}), "additionalProperties": False}


def _query(name: str, schema: dict, *, required: bool = False, description: str = "") -> dict:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


def _json_query(name: str, schema: dict, *, required: bool = False, description: str = "") -> dict:
    return {"name": name, "in": "query", "required": required, "description": description,
            "content": {"application/json": {"schema": schema}}}


def _page(size_max: int) -> list[dict]:
    return [_query("page", {"type": "integer", "minimum": 1, "maximum": 1_000_000, "default": 1}),
            _query("page_size", {"type": "integer", "minimum": 1, "maximum": size_max, "default": 10})]


def _enum_list(values) -> dict:
    return {"type": "array", "items": {"type": "string", "enum": sorted(values)}}


def _operation(method: str, operation_id: str, summary: str, data: dict, *, parameters=(), body=None) -> dict:
    operation = {
        "operationId": operation_id,
        "summary": summary,
        "parameters": list(parameters),
        "security": [{"AccessToken": []}],
        "responses": {"200": {
            "description": "TikTok's envelope: `data` is the payload when `code` is 0, else the error's reason.",
            "content": {"application/json": {"schema": _object({
                "code": {"type": "integer", "enum": CODES},
                "message": {"type": "string", "minLength": 1},
                "request_id": {"type": "string", "minLength": 1},
                "data": {"anyOf": [data, ERROR_DATA]},
            })}},
        }},
    }
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return {method: operation}


def _money(description: str) -> dict:
    return {**MONEY, "description": f"{MONEY['description']}: {description}"}


# What the tax fields mean (decision 0023).
AMOUNT = _money("what was paid or given back, tax included (a deposit: the card charge, the amount loaded + tax)")
SUBTOTAL = _money("amount less tax_amount")
TAX_AMOUNT = _money("the tax this transaction booked, collected or given back; never negative")
BALANCE_TAX = _money("tax payable: the tax the account's payments carried less the tax refunds and chargebacks "
                     "gave back; part of no balance (0 for a Business Center's own cash)")


def document() -> dict:
    balances = {name: MONEY for name in BALANCE_FIELDS} | {"tax": BALANCE_TAX}
    info_row = _object({
        "advertiser_id": ID, "name": {"type": "string"}, "currency": {"type": "string"},
        "timezone": {"type": "string"}, "status": {"type": "string", "enum": sorted(reads.STATUS_FROM_TIKTOK)},
        "balance": _nullable(MONEY),
    }, required=[])
    balance_row = _object({
        "advertiser_id": ID, "advertiser_name": {"type": "string"},
        "advertiser_status": {"type": "string", "enum": sorted(reads.STATUS_FROM_TIKTOK)},
        "currency": {"type": "string"}, "timezone": {"type": "string"}, **balances,
    })
    all_types = sorted({t for types in reads.TRANSACTION_TYPES.values() for t in types})
    transaction_row = _object({
        "transaction_id": ID, "account_id": ID, "account_name": {"type": "string"}, "bc_id": ID,
        "amount": AMOUNT, "subtotal": SUBTOTAL, "tax_amount": TAX_AMOUNT, "currency": {"type": "string"},
        "amount_type": {"type": "string"}, "cash_amount": MONEY, "grant_amount": MONEY,
        "transaction_type": {"type": "string", "enum": all_types},
        "billing_type": _nullable({"type": "string", "enum": sorted(reads.BILLING_FROM_TIKTOK)}),
        "timezone": {"type": "string"}, "create_time": TIME, "invoice_id": _nullable({"type": "string"}),
    })
    transfer_types = sorted(BCTransferType.values)
    paths = {
        "/advertiser/info/": _operation(
            "get", "advertiser_info", "Advertiser accounts' info (balance only for payment roles).",
            _object({"list": {"type": "array", "items": info_row}}),
            parameters=[
                _json_query("advertiser_ids", {"type": "array", "items": ID, "minItems": 1,
                                               "maxItems": open_api.MAX_ADVERTISER_IDS}, required=True),
                _json_query("fields", _enum_list(open_api.INFO_FIELDS)),
            ]),
        "/advertiser/balance/get/": _operation(
            "get", "advertiser_balance_get", "The balances of a Business Center's advertiser accounts, paged.",
            _object({"advertiser_account_list": {"type": "array", "items": balance_row}, "page_info": PAGE_INFO}),
            parameters=[
                _query("bc_id", ID, required=True), *_page(open_api.BALANCE_PAGE_SIZE_MAX),
                _json_query("filtering", {"type": "object", "additionalProperties": False, "properties": {
                    "advertiser_status": _enum_list(reads.STATUS_FROM_TIKTOK), "keyword": TEXT}}),
            ]),
        "/bc/balance/get/": _operation(
            "get", "bc_balance_get", "A Business Center's own cash.",
            _object({"bc_id": ID, "currency": {"type": "string"}, **balances}),
            parameters=[_query("bc_id", ID, required=True)]),
        "/bc/account/transaction/get/": _operation(
            "get", "bc_account_transaction_get", "The ledger of a Business Center or of its accounts, newest first.",
            _object({"transaction_list": {"type": "array", "items": transaction_row}, "page_info": PAGE_INFO}),
            parameters=[
                _query("bc_id", ID, required=True),
                _query("transaction_level", {"type": "string", "enum": reads.LEVELS, "default": reads.LEVEL_BC}),
                *_page(open_api.TRANSACTION_PAGE_SIZE_MAX),
                _json_query("filtering", {"type": "object", "additionalProperties": False, "properties": {
                    "transaction_types": _enum_list(all_types), "account_ids": {"type": "array", "items": ID},
                    "account_name": TEXT, "billing_types": _enum_list(reads.BILLING_FROM_TIKTOK),
                    "start_time": TIME, "end_time": TIME}}),
            ]),
        "/bc/transfer/": _operation(
            "post", "bc_transfer", "Cash between a Business Center and one of its accounts, idempotent by request_id.",
            _object({"bc_id": ID, "advertiser_id": ID, "transfer_type": {"type": "string", "enum": transfer_types},
                     "cash_amount": MONEY, "grant_amount": MONEY, "currency": {"type": "string"},
                     "request_id": {"type": "string"}, "transaction_id": ID, "create_time": TIME}),
            body={**_object({
                "bc_id": ID, "advertiser_id": ID, "transfer_type": {"type": "string", "enum": transfer_types},
                "cash_amount": {"anyOf": [{"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?$"},
                                          {"type": "number", "minimum": 0}]},
                "grant_amount": {"type": "number", "enum": [0]},
                "request_id": {"type": "string", "minLength": 1, "maxLength": REQUEST_ID_MAX},
            }, required=["bc_id", "advertiser_id", "transfer_type", "cash_amount", "request_id"])}),
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "TikTok Business API v1.3 subset", "version": "1.3",
                 "description": "API.md `/open_api/v1.3/`: HTTP 200 and TikTok's envelope for every answer."},
        "servers": [{"url": "/open_api/v1.3"}],
        "paths": paths,
        "components": {"securitySchemes": {"AccessToken": {"type": "apiKey", "in": "header", "name": "Access-Token"}}},
    }


@require_GET
def schema_view(request):
    return JsonResponse(document())
