"""Request and response schemas of the portal API, and the renderers shared by its modules.

Input fields use the types below, each read by its parser in `portal.inputs` (issue 9): a
timestamp arrives in the view as an aware `datetime` inside the accepted range, an id as an int
that fits a bigint, a key or a text as a storable string within its length, a count as an int
within its range — or the request is refused with the parser's `BadInput` (400 and a code naming
the problem), before any query. A new endpoint gets those bounds by using the type. Amounts need
the account's currency, so they pass as sent and the service reads them with `parse_amount`
(R4). Output is rendered here: amounts as strings with exactly the currency's places, timestamps
ISO 8601 with offset, ids as strings.
"""

from datetime import UTC, datetime
from typing import Annotated, Any

from ninja import Schema
from pydantic import AfterValidator, BeforeValidator, ConfigDict, WithJsonSchema

from billing.money import fmt
from portal import inputs
from portal.models import BCRole, BillingMethod, LimitPeriod, Objective, ProductSource, Role, SignupSource

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


def _read(parse):
    """A pydantic validator that hands the value to `parse` with the field's name; `null` stays
    None (whether a field may be null is the service's rule, with its own code)."""
    return BeforeValidator(lambda value, info: None if value is None else parse(value, field=info.field_name))


TimestampIn = Annotated[
    Any,
    _read(inputs.timestamp),
    WithJsonSchema({"type": "string", "format": "date-time",
                    "description": "ISO 8601 with UTC offset, from 2000-01-01 to 2100-01-01 UTC."}),
]


def Text(max_length: int, *, required: bool = True, strict: bool = False):
    """A storable string of at most `max_length` characters. `strict`: anything but a JSON string
    is pydantic's `invalid_field` (as for a plain `str` field), checked before the bounds."""
    check = lambda v, field: inputs.text(v, field=field, max_length=max_length, required=required)  # noqa: E731
    schema = WithJsonSchema({"type": "string", "maxLength": max_length})
    if strict:
        return Annotated[str, AfterValidator(lambda value, info: check(value, info.field_name)), schema]
    return Annotated[Any, _read(check), schema]


def Key(max_length: int = 100, *, code: str = "invalid_idempotency_key"):
    return Annotated[
        Any, _read(lambda v, field: inputs.key(v, field=field, max_length=max_length, code=code)),
        WithJsonSchema({"type": "string", "minLength": 1, "maxLength": max_length}),
    ]


ID_SCHEMA = {"type": "string", "pattern": "^[0-9]{1,19}$",
             "description": "An id (a string of digits; an integer is also accepted)."}


def Id(code: str | None = None):
    return Annotated[Any, _read(lambda v, field: inputs.object_id(v, field=field, code=code or f"invalid_{field}")),
                     WithJsonSchema(ID_SCHEMA)]


IdIn = Id()


def Count(low: int = 1, high: int = inputs.INT_MAX):
    return Annotated[
        Any, _read(lambda v, field: inputs.count(v, field=field, low=low, high=high, code=f"invalid_{field}")),
        WithJsonSchema({"type": "integer", "minimum": low, "maximum": high,
                        "description": "A whole number (a digit string is also accepted)."}),
    ]


TextIn = Text(2000)
CountIn = Count()
IdListIn = Annotated[Any, WithJsonSchema({"type": "array", "items": {"type": "string"}, "maxItems": 1000})]
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
LimitPeriodIn = Annotated[Any, _enum(LimitPeriod.values)]
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
    name: Text(200, strict=True)
    currency: Annotated[Any, WithJsonSchema({"type": "string", "default": "USD", "description": "ISO 4217"})] = "USD"


class BusinessCenterOut(Schema):
    id: str
    name: str
    currency: str


class BCMemberIn(Schema):
    username: Text(150, strict=True)
    role: BCRoleIn


class BCMemberOut(Schema):
    business_center_id: str
    username: str
    role: str


class DepositIn(Schema):
    amount: AmountIn
    idempotency_key: Key(100)


class BCCashOut(Schema):
    business_center_id: str
    currency: str
    cash_balance: Money


# --- advertisers, members, campaigns ----------------------------------------------------------


class AdvertiserIn(Schema):
    name: Text(200, strict=True)
    currency: Annotated[Any, WithJsonSchema({"type": "string", "description": "ISO 4217, fixed at creation"})]
    timezone: Annotated[Any, WithJsonSchema({"type": "string", "default": "UTC", "description": "IANA name"})] = "UTC"
    billing_method: BillingMethodIn = BillingMethod.MANUAL.value
    business_center_id: Id("unknown_business_center") | None = None
    registered_at: TimestampIn | None = None
    signup_source: SignupSourceIn = SignupSource.ORGANIC.value
    shop_id: Text(64, required=False) | None = None


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
    username: Text(150, strict=True)
    role: RoleIn


class MemberOut(Schema):
    advertiser_id: str
    username: str
    role: str


class CampaignIn(Schema):
    name: Text(200, strict=True)
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
