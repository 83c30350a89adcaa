"""Portal API: money (API.md) — deposits, refund, balances, spend ingestion and charges, the card
on file, billing method and settings, bills and "Pay now"."""

from typing import Annotated, Any

from ninja import Router, Schema, Status
from pydantic import BaseModel, Field, WithJsonSchema, model_validator

from billing.autopay import bill_pay, payment_method_set
from billing.bc import bc_cash_balance, bc_deposit_create
from billing.deposits import cash_refund, deposit_create
from billing.limits import limit_view, spending_limit_set
from billing.models import Bill, BillKind, BillStatus
from billing.selectors import advertiser_balances, charge_of
from billing.spend import allocations_for, spend_record_batch
from billing.switching import billing_method_switch, billing_settings_set
from billing.waterfall import Allocation
from portal.api_auth import require_staff
from portal.api_schemas import (
    ERRORS,
    AdvertiserOut,
    AmountIn,
    BCCashOut,
    BillingMethodIn,
    DepositIn,
    LimitPeriodIn,
    ID_SCHEMA,
    Money,
    Text,
    Timestamp,
    TimestampIn,
    advertiser_json,
    iso,
    money,
)
from portal.errors import BusinessError, NotFound
from portal.permissions import advertiser_for, business_center_for, staff_require_billing_settings

router = Router(tags=["billing"])


class BalancesOut(Schema):
    currency: str
    cash_balance: Money
    arrears: Money
    credit_balance: Money
    frozen_credit_balance: Money
    discount_cap_remaining: Money
    accrued: Money
    outstanding_bills: Money
    credit_line_limit: Money
    credit_line_used: Money
    billing_threshold: Money | None
    next_bill_date: Timestamp | None


def balances_json(b) -> dict:
    c = b.currency
    return {
        "currency": c,
        "cash_balance": money(b.cash_balance, c),
        "arrears": money(b.arrears, c),
        "credit_balance": money(b.credit_balance, c),
        "frozen_credit_balance": money(b.frozen_credit_balance, c),
        "discount_cap_remaining": money(b.discount_cap_remaining, c),
        "accrued": money(b.accrued, c),
        "outstanding_bills": money(b.outstanding_bills, c),
        "credit_line_limit": money(b.credit_line_limit, c),
        "credit_line_used": money(b.credit_line_used, c),
        "billing_threshold": money(b.billing_threshold, c) if b.billing_threshold is not None else None,
        "next_bill_date": iso(b.next_bill_date),
    }


class CreditPartOut(Schema):
    credit_id: str
    amount: Money


class AllocationOut(Schema):
    discount: Money
    discount_credit_id: str | None
    coupons: list[CreditPartOut]
    credits: list[CreditPartOut]
    cash: Money
    accrued: Money
    credit_line: Money
    arrears: Money


def allocation_json(a: Allocation, currency: str) -> dict:
    return {
        "discount": money(a.discount, currency),
        "discount_credit_id": str(a.discount_credit_id) if a.discount_credit_id else None,
        "coupons": [{"credit_id": str(pk), "amount": money(amt, currency)} for pk, amt in a.coupons],
        "credits": [{"credit_id": str(pk), "amount": money(amt, currency)} for pk, amt in a.credits],
        "cash": money(a.cash, currency),
        "accrued": money(a.accrued, currency),
        "credit_line": money(a.credit_line, currency),
        "arrears": money(a.arrears, currency),
    }


class RefundOut(Schema):
    refunded: Money
    status: str


class SpendEventIn(BaseModel):
    """Every field is checked by the spend service (with the same `portal.inputs` parsers), which
    names the bad event's index — so the fields pass here as sent."""

    event_id: Annotated[Any, WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 128})] = None
    advertiser_id: Annotated[Any, WithJsonSchema(ID_SCHEMA)] = None
    campaign_id: Annotated[Any, WithJsonSchema(ID_SCHEMA)] = None
    amount: AmountIn = None
    currency: Annotated[Any, WithJsonSchema({"type": "string", "description": "the account's currency"})] = None
    occurred_at: Annotated[Any, WithJsonSchema(TimestampIn.__metadata__[-1].json_schema)] = None
    kind: Annotated[Any, WithJsonSchema({"type": "string", "enum": ["ad_spend", "fee"], "default": "ad_spend"})] = None

    @model_validator(mode="before")
    @classmethod
    def _an_object(cls, value):
        if not isinstance(value, dict):
            raise ValueError("each event must be a JSON object")
        return value


class SpendIn(Schema):
    # The limit is documented here and enforced by the service (too_many_events), like every rule.
    events: list[SpendEventIn] = Field(json_schema_extra={"maxItems": 1000, "minItems": 1})


class SpendResultOut(Schema):
    event_id: str
    status: str
    allocation: AllocationOut


class SpendOut(Schema):
    results: list[SpendResultOut]


# --- Business Center cash ----------------------------------------------------------------------


@router.post("/business-centers/{id}/deposits", response={201: BCCashOut, **ERRORS},
             summary="Load a Business Center's cash balance (staff, BC admin, BC finance)")
def bc_deposit_view(request, id: str, payload: DepositIn):
    bc, _ = business_center_for(request.auth, id, need="payments_write")
    bc_deposit_create(business_center=bc, amount=payload.amount, idempotency_key=payload.idempotency_key)
    return Status(201, {"business_center_id": str(bc.pk), "currency": bc.currency,
                        "cash_balance": money(bc_cash_balance(business_center=bc), bc.currency)})


# --- advertiser money --------------------------------------------------------------------------


@router.post("/advertisers/{id}/deposits", response={201: BalancesOut, **ERRORS},
             summary="Deposit cash on a manual-payment account; answers the balances (staff, admin, finance)")
def deposit_view(request, id: str, payload: DepositIn):
    adv, _ = advertiser_for(request.auth, id, need="payments_write")
    deposit_create(advertiser=adv, amount=payload.amount, idempotency_key=payload.idempotency_key, source="api")
    return Status(201, balances_json(advertiser_balances(advertiser=adv)))


@router.post("/advertisers/{id}/refund", response={200: RefundOut, **ERRORS},
             summary="Refund the whole unspent cash balance and close the account (staff, admin)")
def refund_view(request, id: str):
    adv, _ = advertiser_for(request.auth, id, need="admin")
    refunded = cash_refund(advertiser=adv, by=request.auth)
    return {"refunded": money(refunded, adv.currency), "status": adv.status}


@router.get("/advertisers/{id}/balances", response={200: BalancesOut, **ERRORS},
            summary="Balances, as the ledger holds them (admin, finance, analyst, staff)")
def balances_view(request, id: str):
    adv, _ = advertiser_for(request.auth, id, need="payments_read")
    return balances_json(advertiser_balances(advertiser=adv))


# --- spend -------------------------------------------------------------------------------------


@router.post("/spend", response={201: SpendOut, **ERRORS},
             summary="Record a batch of at most 1000 spend events, all or nothing (staff)")
def spend_view(request, payload: SpendIn):
    require_staff(request.auth, "post spend")
    raw = [e.model_dump() for e in payload.events]
    results = spend_record_batch(events=raw)
    currency = {e["event_id"]: e["currency"] for e in raw}
    return Status(201, {"results": [
        {"event_id": r.event_id, "status": r.status, "allocation": allocation_json(r.allocation, currency[r.event_id])}
        for r in results
    ]})


@router.get("/advertisers/{id}/charges/{path:event_id}", response={200: AllocationOut, **ERRORS},
            summary="How one charge was paid (payments access, staff)")
def charge_view(request, id: str, event_id: str):
    adv, _ = advertiser_for(request.auth, id, need="payments_read")
    event = charge_of(advertiser=adv, event_id=event_id)
    return allocation_json(allocations_for([event])[event.event_id], event.currency)


# --- the card on file, billing method and settings (R24–R29) ------------------------------------


class PaymentMethodIn(Schema):
    card_number: Annotated[Any, WithJsonSchema({"type": "string", "examples": ["4242 4242 4242 4242"],
                                                "description": "A sandbox test card number; never stored."})]
    expiry: Annotated[Any, WithJsonSchema({"type": "string", "examples": ["08/29"], "description": "MM/YY"})]


class PaymentMethodOut(Schema):
    last4: str
    expiry: str
    status: str


@router.post("/advertisers/{id}/payment-method", response={200: PaymentMethodOut, **ERRORS},
             summary="Put a card on file, replacing any previous one; only its last 4 digits are kept (admin, finance)")
def payment_method_view(request, id: str, payload: PaymentMethodIn):
    adv, _ = advertiser_for(request.auth, id, need="payments_write")
    pm = payment_method_set(advertiser=adv, card_number=payload.card_number, expiry=payload.expiry)
    return {"last4": pm.last4, "expiry": pm.expiry, "status": pm.status}


class BillingMethodSwitchIn(Schema):
    billing_method: BillingMethodIn


@router.post("/advertisers/{id}/billing-method", response={200: AdvertiserOut, **ERRORS},
             summary="Switch billing method: manual → automatic or invoicing, automatic → invoicing (staff, admin)")
def billing_method_view(request, id: str, payload: BillingMethodSwitchIn):
    adv, _ = advertiser_for(request.auth, id, need="admin")
    return advertiser_json(billing_method_switch(advertiser=adv, billing_method=payload.billing_method).advertiser)


SETTINGS = ("billing_threshold", "bill_cycle", "credit_line_limit", "invoicing_eligible")


class BillingSettingsIn(Schema):
    billing_threshold: AmountIn | None = None
    bill_cycle: Annotated[Any, WithJsonSchema({"type": "string", "enum": ["weekly", "monthly"]})] | None = None
    credit_line_limit: Annotated[Any, WithJsonSchema({"type": "string", "examples": ["5000.00"],
                                                      "description": "A decimal string; 0 removes the line."})] | None = None
    invoicing_eligible: Annotated[Any, WithJsonSchema({"type": "boolean"})] | None = None
    reason: Text(200, required=False) | None = None

    @model_validator(mode="after")
    def _something_to_set(self):
        if all(getattr(self, f) is None for f in SETTINGS):
            raise ValueError(f"send at least one of {', '.join(SETTINGS)}")
        return self


class BillingSettingsOut(Schema):
    advertiser_id: str
    billing_method: str
    billing_threshold: Money | None
    bill_cycle: str
    credit_line_limit: Money
    invoicing_eligible: bool
    next_bill_date: Timestamp | None


def billing_settings_json(adv) -> dict:
    c = adv.currency
    return {
        "advertiser_id": str(adv.pk),
        "billing_method": adv.billing_method,
        "billing_threshold": money(adv.billing_threshold, c) if adv.billing_threshold is not None else None,
        "bill_cycle": adv.bill_cycle,
        "credit_line_limit": money(adv.credit_line_limit, c),
        "invoicing_eligible": adv.invoicing_eligible,
        "next_bill_date": iso(adv.next_bill_at) if adv.billing_method == "automatic" else None,
    }


@router.post("/advertisers/{id}/billing-settings", response={200: BillingSettingsOut, **ERRORS},
             summary="Set billing threshold, bill cycle, credit line or invoicing eligibility; audited (staff)")
def billing_settings_view(request, id: str, payload: BillingSettingsIn):
    adv, _ = advertiser_for(request.auth, id, need="staff")
    staff_require_billing_settings(request.auth, payload.model_dump())
    adv = billing_settings_set(
        advertiser=adv,
        billing_threshold=payload.billing_threshold,
        bill_cycle=payload.bill_cycle,
        credit_line_limit=payload.credit_line_limit,
        invoicing_eligible=payload.invoicing_eligible,
        reason=payload.reason if isinstance(payload.reason, str) and payload.reason.strip() else "set by staff",
        by=request.auth,
    )
    return billing_settings_json(adv)


# --- the account spending limit (R43) ---------------------------------------------------------------


class SpendingLimitIn(Schema):
    amount: AmountIn | None  # required; null removes the limit
    period: LimitPeriodIn | None = None
    reason: Text(200, required=False) | None = None


class SpendingLimitOut(Schema):
    amount: Money | None
    period: str
    spent: Money
    remaining: Money | None
    resets_at: Timestamp | None  # an addition: a monthly limit's next month start (account time zone)


def spending_limit_json(view, currency: str) -> dict:
    return {
        "amount": None if view.amount is None else money(view.amount, currency),
        "period": view.period,
        "spent": money(view.spent, currency),
        "remaining": None if view.remaining is None else money(view.remaining, currency),
        "resets_at": iso(view.resets_at) if view.resets_at else None,
    }


@router.get("/advertisers/{id}/spending-limit", response={200: SpendingLimitOut, **ERRORS},
            summary="The account spending limit and what it has counted (payments access, staff)")
def spending_limit_get(request, id: str):
    adv, _ = advertiser_for(request.auth, id, need="payments_read")
    return spending_limit_json(limit_view(adv), adv.currency)


@router.put("/advertisers/{id}/spending-limit", response={200: SpendingLimitOut, **ERRORS},
            summary="Set, change or remove (amount null) the account spending limit, lifetime or monthly "
                    "(admin, staff); audited")
def spending_limit_put(request, id: str, payload: SpendingLimitIn):
    adv, _ = advertiser_for(request.auth, id, need="admin")
    reason = payload.reason if isinstance(payload.reason, str) and payload.reason.strip() else "Set through the API"
    view = spending_limit_set(advertiser=adv, amount=payload.amount, period=payload.period, by=request.auth,
                              reason=reason)
    return spending_limit_json(view, adv.currency)


# --- bills (R24, R26, R27) -----------------------------------------------------------------------


class BillOut(Schema):
    id: str
    kind: Annotated[str, WithJsonSchema({"type": "string", "enum": list(BillKind.values)})]
    number: str | None
    number_in_account: int | None  # an automatic bill's number in its account, 1, 2, 3… (decision 0031)
    amount: Money
    currency: str
    status: Annotated[str, WithJsonSchema({"type": "string", "enum": list(BillStatus.values)})]
    attempts: int
    issued_at: Timestamp
    due_at: Timestamp | None
    paid_at: Timestamp | None


def bill_json(b: Bill) -> dict:
    return {
        "id": str(b.pk),
        "kind": b.kind,
        "number": b.number,
        "number_in_account": b.seq,
        "amount": money(b.amount, b.currency),
        "currency": b.currency,
        "status": b.status,
        "attempts": b.attempts,
        "issued_at": iso(b.issued_at),
        "due_at": iso(b.due_at),
        "paid_at": iso(b.paid_at),
    }


def bill_for(user, bill_id, *, need: str) -> Bill:
    """The bill, if the caller may act on its advertiser; another advertiser's bill is 404."""
    try:
        bill = Bill.objects.select_related("advertiser").get(pk=int(str(bill_id)))
    except (Bill.DoesNotExist, ValueError):
        raise NotFound("bill") from None
    try:
        advertiser_for(user, bill.advertiser_id, need=need)
    except NotFound:
        raise NotFound("bill") from None
    return bill


@router.get("/advertisers/{id}/bills", response={200: list[BillOut], **ERRORS},
            summary="Bills and monthly invoices, newest first (payments access, staff)")
def bill_list(request, id: str):
    adv, _ = advertiser_for(request.auth, id, need="payments_read")
    return [bill_json(b) for b in Bill.objects.filter(advertiser=adv).order_by("-issued_at", "-pk")]


@router.post("/bills/{id}/pay", response={200: BillOut, **ERRORS},
             summary="Pay now: charge the card on file for a failed or open bill (admin, finance)")
def bill_pay_view(request, id: str):
    bill = bill_for(request.auth, id, need="payments_write")
    bill = bill_pay(bill=bill)
    if bill.status != BillStatus.PAID:
        # the attempt is recorded on the bill; the caller learns why it failed
        raise BusinessError("payment_failed", bill.last_error or "The payment did not go through.",
                            bill_id=str(bill.pk), bill_status=bill.status)
    return bill_json(bill)
