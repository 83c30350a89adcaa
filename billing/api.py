"""Portal API: money (API.md) — deposits, refund, balances, spend ingestion and charges."""

from typing import Annotated, Any

from ninja import Router, Schema, Status
from pydantic import BaseModel, Field, WithJsonSchema, model_validator

from billing.bc import bc_cash_balance, bc_deposit_create
from billing.deposits import cash_refund, deposit_create
from billing.models import SpendEvent
from billing.selectors import advertiser_balances
from billing.spend import allocations_for, spend_record_batch
from billing.waterfall import Allocation
from portal.api_auth import require_staff
from portal.api_schemas import ERRORS, AmountIn, BCCashOut, DepositIn, IdIn, Money, Timestamp, TimestampIn, iso, money
from portal.errors import NotFound
from portal.permissions import advertiser_for, business_center_for

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
    """Every field is checked by the spend service, which names the bad event's index."""

    event_id: Annotated[Any, WithJsonSchema({"type": "string", "maxLength": 128})] = None
    advertiser_id: IdIn = None
    campaign_id: IdIn = None
    amount: AmountIn = None
    currency: Annotated[Any, WithJsonSchema({"type": "string", "description": "the account's currency"})] = None
    occurred_at: TimestampIn = None
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
    refunded = cash_refund(advertiser=adv)
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
    event = SpendEvent.objects.filter(advertiser=adv, event_id=event_id).first()
    if event is None:
        raise NotFound("charge")
    return allocation_json(allocations_for([event])[event.event_id], event.currency)
