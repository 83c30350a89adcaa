"""Portal API: promotional credit (API.md) — list, grant, assign, transfer (refused), withdraw."""

from typing import Annotated, Any

from ninja import Router, Schema, Status
from pydantic import WithJsonSchema

from billing.spend import parse_timestamp
from portal.api_auth import require_staff
from portal.api_schemas import ERRORS, AmountIn, ErrorOut, IdListIn, Money, ObjectiveListIn, Timestamp, TimestampIn, iso, money
from portal.errors import NotFound
from portal.models import ProductSource
from portal.permissions import advertiser_for
from promotions.credits import credit_assign, credit_grant, credit_transfer, credit_withdraw
from promotions.models import Credit, CreditKind

router = Router(tags=["promotions"])


class CreditOut(Schema):
    id: str
    advertiser_id: str
    kind: str
    source: str
    amount: Money
    remaining: Money
    percent: str | None
    status: str
    valid_from: Timestamp
    expires_at: Timestamp
    eligible_objectives: list[str]
    eligible_product_source: str | None
    campaign_ids: list[str]


def credit_json(c: Credit, currency: str) -> dict:
    return {
        "id": str(c.pk),
        "advertiser_id": str(c.advertiser_id),
        "kind": c.kind,
        "source": c.source,
        "amount": money(c.amount, currency),
        "remaining": money(c.remaining, currency),
        "percent": str(c.percent) if c.percent is not None else None,
        "status": c.status,
        "valid_from": iso(c.valid_from),
        "expires_at": iso(c.expires_at),
        "eligible_objectives": list(c.eligible_objectives or []),
        "eligible_product_source": c.eligible_product_source or None,
        "campaign_ids": [str(pk) for pk in sorted(cm.pk for cm in c.campaigns.all())],
    }


def _credits():
    return Credit.objects.select_related("ledger_account", "advertiser").prefetch_related("campaigns")


def credit_for(user, credit_id, *, need: str) -> Credit:
    """The credit, if the caller may act on its advertiser; another advertiser's credit is 404."""
    try:
        credit = _credits().get(pk=int(str(credit_id)))
    except (Credit.DoesNotExist, ValueError):
        raise NotFound("credit") from None
    try:
        advertiser_for(user, credit.advertiser_id, need=need)
    except NotFound:
        raise NotFound("credit") from None
    return credit


def _reloaded(credit: Credit) -> dict:
    fresh = _credits().get(pk=credit.pk)
    return credit_json(fresh, fresh.advertiser.currency)


class CreditGrantIn(Schema):
    kind: Annotated[Any, WithJsonSchema({"type": "string", "enum": list(CreditKind.values)})]
    amount: AmountIn
    percent: Annotated[Any, WithJsonSchema({"type": "string", "examples": ["50"], "description": "discount only"})] = None
    valid_from: TimestampIn | None = None
    expires_at: TimestampIn | None = None
    eligible_objectives: ObjectiveListIn | None = None
    eligible_product_source: Annotated[
        Any, WithJsonSchema({"type": "string", "enum": list(ProductSource.values)})
    ] | None = None
    reason: Annotated[Any, WithJsonSchema({"type": "string"})]
    idempotency_key: Annotated[Any, WithJsonSchema({"type": "string", "maxLength": 100})]


class AssignIn(Schema):
    campaign_ids: IdListIn


class WithdrawIn(Schema):
    reason: Annotated[Any, WithJsonSchema({"type": "string"})]


@router.get("/advertisers/{id}/credits", response={200: list[CreditOut], **ERRORS},
            summary="The advertiser's credits, newest first (payments access, staff)")
def credit_list(request, id: str):
    adv, _ = advertiser_for(request.auth, id, need="payments_read")
    return [credit_json(c, adv.currency) for c in _credits().filter(advertiser=adv).order_by("-created_at", "-pk")]


@router.post("/advertisers/{id}/credits", response={201: CreditOut, **ERRORS},
             summary="Grant a managed credit, idempotent by key (staff)")
def credit_grant_view(request, id: str, payload: CreditGrantIn):
    adv, _ = advertiser_for(request.auth, id, need="staff")
    credit = credit_grant(
        advertiser=adv,
        kind=payload.kind,
        amount=payload.amount,
        percent=payload.percent,
        valid_from=parse_timestamp(payload.valid_from, field="valid_from") if payload.valid_from is not None else None,
        expires_at=parse_timestamp(payload.expires_at, field="expires_at") if payload.expires_at is not None else None,
        eligible_objectives=payload.eligible_objectives,
        eligible_product_source=payload.eligible_product_source or "",
        reason=payload.reason,
        idempotency_key=payload.idempotency_key,
        granted_by=request.auth,
    )
    return Status(201, _reloaded(credit))


@router.post("/credits/{id}/assign", response={200: CreditOut, **ERRORS},
             summary="Set the campaigns a coupon pays for (advertiser admin, staff)")
def credit_assign_view(request, id: str, payload: AssignIn):
    credit = credit_for(request.auth, id, need="admin")
    credit_assign(credit=credit, campaign_ids=payload.campaign_ids)
    return _reloaded(credit)


@router.post("/credits/{id}/transfer", response={frozenset({401, 422}): ErrorOut},
             summary="Always refused: credit is never transferable (R8)")
def credit_transfer_view(request, id: str):
    credit_transfer()


@router.post("/credits/{id}/withdraw", response={200: CreditOut, **ERRORS},
             summary="Withdraw what is left of a credit, with a reason (staff)")
def credit_withdraw_view(request, id: str, payload: WithdrawIn):
    credit = credit_for(request.auth, id, need="staff")
    credit = credit_withdraw(credit=credit, reason=payload.reason, by=request.auth)
    return _reloaded(credit)
