"""Portal API: insight (API.md, SPEC R47–R50) — the forecasts of an account at its current pace,
and why each credit did or did not pay a charge."""

from typing import Annotated

from ninja import Router, Schema
from pydantic import WithJsonSchema

from billing.api import AllocationOut, allocation_json
from billing.explainer import REASONS, charge_explain
from billing.insights import insights
from billing.money import round_down
from billing.selectors import charge_of
from portal.api_schemas import ERRORS, Money, Timestamp, iso, money
from portal.permissions import advertiser_for

router = Router(tags=["insight"])


class RunwayOut(Schema):
    funds_pause_at: Timestamp | None
    limit_reached_at: Timestamp | None
    pace_per_day: Money


class CreditForecastOut(Schema):
    credit_id: str
    pace_per_day: Money
    used_up_at: Timestamp | None
    lapse_amount: Money


class EnrollmentPaceOut(Schema):
    enrollment_id: str
    expected_tier_threshold: Money | None
    daily_needed_for_next: Money | None


class InsightsOut(Schema):
    runway: RunwayOut
    credits: list[CreditForecastOut]
    enrollments: list[EnrollmentPaceOut]


class CreditReasonOut(Schema):
    credit_id: str
    paid: Money
    reason: Annotated[str, WithJsonSchema({"type": "string", "enum": list(REASONS)})]


class ExplanationOut(Schema):
    allocation: AllocationOut
    credits: list[CreditReasonOut]


def _pace(amount, currency: str) -> str:
    """A pace is shown to the minor unit, rounded down (the one rounding rule, billing/money.py)."""
    return money(round_down(amount, currency), currency)


@router.get("/advertisers/{id}/insights", response={200: InsightsOut, **ERRORS},
            summary="At the current pace: when credits lapse, when campaigns pause, which tier is reached "
                    "(payments access, staff)")
def insights_view(request, id: str):
    adv, _ = advertiser_for(request.auth, id, need="payments_read")
    got = insights(advertiser=adv)
    cur = adv.currency
    return {
        "runway": {
            "funds_pause_at": iso(got.runway.funds_pause_at),
            "limit_reached_at": iso(got.runway.limit_reached_at),
            "pace_per_day": _pace(got.runway.pace_per_day, cur),
        },
        "credits": [
            {"credit_id": str(f.credit_id), "pace_per_day": _pace(f.pace_per_day, cur), "used_up_at": iso(f.used_up_at),
             "lapse_amount": money(f.lapse_amount, cur)}
            for f in got.credits
        ],
        "enrollments": [
            {"enrollment_id": str(p.enrollment_id),
             "expected_tier_threshold": money(p.expected_tier_threshold, p.currency)
             if p.expected_tier_threshold is not None else None,
             "daily_needed_for_next": money(p.daily_needed_for_next, p.currency)
             if p.daily_needed_for_next is not None else None}
            for p in got.enrollments
        ],
    }


@router.get("/advertisers/{id}/charges/{path:event_id}/explanation", response={200: ExplanationOut, **ERRORS},
            summary="Why each credit of the account did or did not pay one charge (payments access, staff)")
def explanation_view(request, id: str, event_id: str):
    adv, _ = advertiser_for(request.auth, id, need="payments_read")
    event = charge_of(advertiser=adv, event_id=event_id)
    got = charge_explain(event=event)
    cur = event.currency
    return {
        "allocation": allocation_json(got.allocation, cur),
        "credits": [{"credit_id": str(c.credit_id), "paid": money(c.paid, cur), "reason": c.reason}
                    for c in got.credits],
    }
