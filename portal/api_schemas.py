"""Request and response schemas of the portal API, and the renderers shared by its modules.

Input fields that carry money, ids or timestamps are deliberately loose (`Any` described in the
OpenAPI document as strings): the services parse them and refuse bad values with a message that
names the rule (R4), instead of a generic type error. Output is rendered here: amounts as strings
with exactly the currency's places, timestamps ISO 8601 with offset, ids as strings.
"""

from datetime import UTC, datetime
from typing import Annotated, Any

from ninja import Schema
from pydantic import ConfigDict, WithJsonSchema

from billing.money import fmt
from portal.models import BCRole, BillingMethod, Objective, ProductSource, Role, SignupSource

# --- loose input types, described for OpenAPI ------------------------------------------------

AmountIn = Annotated[
    Any,
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^[0-9]+(\.[0-9]+)?$",
            "examples": ["12.50"],
            "description": "A positive decimal string with at most the currency's places (an integer is also accepted).",
        }
    ),
]
TimestampIn = Annotated[
    Any,
    WithJsonSchema({"type": "string", "format": "date-time", "description": "ISO 8601 with UTC offset."}),
]
IdIn = Annotated[Any, WithJsonSchema({"type": "string", "description": "An id (a string of digits; an integer is also accepted)."})]
TextIn = Annotated[Any, WithJsonSchema({"type": "string"})]
CountIn = Annotated[Any, WithJsonSchema({"type": "integer", "minimum": 1, "description": "A whole number (a digit string is also accepted)."})]
IdListIn = Annotated[Any, WithJsonSchema({"type": "array", "items": {"type": "string"}})]
ObjectiveListIn = Annotated[
    Any, WithJsonSchema({"type": "array", "items": {"type": "string", "enum": list(Objective.values)}})
]


def _enum(values, description: str = ""):
    schema = {"type": "string", "enum": list(values)}
    if description:
        schema["description"] = description
    return WithJsonSchema(schema)


RoleIn = Annotated[Any, _enum(Role.values)]
BCRoleIn = Annotated[Any, _enum(BCRole.values)]
BillingMethodIn = Annotated[Any, _enum(BillingMethod.values)]
SignupSourceIn = Annotated[Any, _enum(SignupSource.values)]
ObjectiveIn = Annotated[Any, _enum(Objective.values)]
ProductSourceIn = Annotated[Any, _enum(ProductSource.values)]

# --- output types -----------------------------------------------------------------------------

Money = Annotated[str, WithJsonSchema({"type": "string", "examples": ["12.50"], "description": "Decimal string."})]
Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]


class ErrorBody(Schema):
    model_config = ConfigDict(extra="allow")
    code: str
    message: str
    request_id: str | None = None


class ErrorOut(Schema):
    error: ErrorBody


# The error answers every operation documents (API.md common rules).
ERRORS = {frozenset({400, 401, 403, 404, 409, 413, 422, 429}): ErrorOut}


def iso(t: datetime | None) -> str | None:
    """Timestamps are answered in UTC, so the same instant always reads the same."""
    return t.astimezone(UTC).isoformat() if t is not None else None


def money(amount, currency: str) -> str:
    return fmt(amount, currency)


# --- Business Centers -------------------------------------------------------------------------


class BusinessCenterIn(Schema):
    name: str
    currency: Annotated[Any, WithJsonSchema({"type": "string", "default": "USD", "description": "ISO 4217"})] = "USD"


class BusinessCenterOut(Schema):
    id: str
    name: str
    currency: str


class BCMemberIn(Schema):
    username: str
    role: BCRoleIn


class BCMemberOut(Schema):
    business_center_id: str
    username: str
    role: str


class DepositIn(Schema):
    amount: AmountIn
    idempotency_key: Annotated[Any, WithJsonSchema({"type": "string", "maxLength": 100})]


class BCCashOut(Schema):
    business_center_id: str
    currency: str
    cash_balance: Money


# --- advertisers, members, campaigns ----------------------------------------------------------


class AdvertiserIn(Schema):
    name: str
    currency: Annotated[Any, WithJsonSchema({"type": "string", "description": "ISO 4217, fixed at creation"})]
    timezone: Annotated[Any, WithJsonSchema({"type": "string", "default": "UTC", "description": "IANA name"})] = "UTC"
    billing_method: BillingMethodIn = BillingMethod.MANUAL.value
    business_center_id: IdIn | None = None
    registered_at: TimestampIn | None = None
    signup_source: SignupSourceIn = SignupSource.ORGANIC.value
    shop_id: Annotated[Any, WithJsonSchema({"type": "string"})] | None = None


class AdvertiserOut(Schema):
    id: str
    name: str
    currency: str
    timezone: str
    billing_method: str
    status: str
    registered_at: Timestamp
    signup_source: str
    shop_id: str | None
    credit_frozen: bool
    business_center_id: str | None


def advertiser_json(adv) -> dict:
    return {
        "id": str(adv.pk),
        "name": adv.name,
        "currency": adv.currency,
        "timezone": adv.timezone,
        "billing_method": adv.billing_method,
        "status": adv.status,
        "registered_at": iso(adv.registered_at),
        "signup_source": adv.signup_source,
        "shop_id": adv.shop_id or None,
        "credit_frozen": adv.credit_frozen,
        "business_center_id": str(adv.business_center_id) if adv.business_center_id else None,
    }


class MemberIn(Schema):
    username: str
    role: RoleIn


class MemberOut(Schema):
    advertiser_id: str
    username: str
    role: str


class CampaignIn(Schema):
    name: str
    objective: ObjectiveIn
    product_source: ProductSourceIn = ProductSource.NONE.value


class CampaignOut(Schema):
    id: str
    advertiser_id: str
    name: str
    objective: str
    product_source: str
    shop_id: str | None
    status: str
    created_at: Timestamp


def campaign_json(c) -> dict:
    return {
        "id": str(c.pk),
        "advertiser_id": str(c.advertiser_id),
        "name": c.name,
        "objective": c.objective,
        "product_source": c.product_source,
        "shop_id": c.shop_id or None,
        "status": c.status,
        "created_at": iso(c.created_at),
    }
