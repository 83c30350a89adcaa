"""Portal API: promotional credit (API.md) — credits (list, grant, assign, transfer refused,
withdraw), ladder programs and enrollments, risk freeze, and appeals with attachments."""

from typing import Annotated, Any

from ninja import File, Form, Router, Schema, Status
from ninja.files import UploadedFile
from pydantic import BaseModel, StrictBool, WithJsonSchema, model_validator

from portal import inputs
from portal.api_auth import require_staff
from portal.api_schemas import (
    ERRORS,
    AdvertiserOut,
    AmountIn,
    Count,
    CountIn,
    ErrorOut,
    ID_SCHEMA,
    IdListIn,
    Money,
    ObjectiveListIn,
    Key,
    Text,
    TextIn,
    Timestamp,
    TimestampIn,
    advertiser_json,
    iso,
    money,
)
from portal.errors import BadInput, NotFound
from portal.models import ProductSource
from portal.permissions import advertiser_for, staff_require
from promotions.appeals import appeal_decide, appeal_file
from promotions.credits import credit_assign, credit_grant, credit_transfer, credit_withdraw
from promotions.freeze import credit_freeze, credit_unfreeze
from promotions.models import Appeal, Credit, CreditKind, Enrollment, Program, ProgramKind, Tier
from promotions.programs import enrollment_create, program_create, progress_of

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
    reason: Text(500)
    idempotency_key: Key(100)


class AssignIn(Schema):
    campaign_ids: IdListIn


class WithdrawIn(Schema):
    reason: Text(500)


@router.get("/advertisers/{id}/credits", response={200: list[CreditOut], **ERRORS},
            summary="The advertiser's credits, newest first (payments access, staff)")
def credit_list(request, id: str):
    adv, _ = advertiser_for(request.auth, id, need="payments_read")
    return [credit_json(c, adv.currency) for c in _credits().filter(advertiser=adv).order_by("-created_at", "-pk")]


@router.post("/advertisers/{id}/credits", response={201: CreditOut, **ERRORS},
             summary="Grant a managed credit, idempotent by key (staff)")
def credit_grant_view(request, id: str, payload: CreditGrantIn):
    adv, _ = advertiser_for(request.auth, id, need="staff")
    staff_require(request.auth, "grant_credit")
    credit = credit_grant(
        advertiser=adv,
        kind=payload.kind,
        amount=payload.amount,
        percent=payload.percent,
        valid_from=payload.valid_from,
        expires_at=payload.expires_at,
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
    staff_require(request.auth, "withdraw_credit")
    credit = credit_withdraw(credit=credit, reason=payload.reason, by=request.auth)
    return _reloaded(credit)


# --- ladder programs and enrollments (R16–R20) ---------------------------------------------------


class TierIn(BaseModel):
    """Amounts are checked by the service, which names the bad tier."""

    threshold: AmountIn = None
    reward: AmountIn = None
    immediate: StrictBool = False


class ProgramIn(Schema):
    name: Text(200)
    kind: Annotated[Any, WithJsonSchema({"type": "string", "enum": list(ProgramKind.values)})]
    window_days: Count(1, inputs.PROGRAM_DAYS_MAX)
    tiers: list[TierIn]
    reward_kind: Annotated[Any, WithJsonSchema({"type": "string", "enum": ["free", "assignable"]})]
    reward_validity_days: Count(1, inputs.PROGRAM_DAYS_MAX) = 90
    currency: Annotated[Any, WithJsonSchema({"type": "string", "default": "USD",
                                             "description": "ISO 4217, of the thresholds and rewards"})] = "USD"
    eligible_objectives: ObjectiveListIn | None = None
    eligible_product_source: Annotated[
        Any, WithJsonSchema({"type": "string", "enum": list(ProductSource.values)})
    ] | None = None
    code: Text(64) | None = None
    max_redemptions: CountIn | None = None
    ends_at: TimestampIn | None = None


class TierOut(Schema):
    threshold: Money
    reward: Money
    immediate: bool


class ProgramOut(Schema):
    id: str
    name: str
    kind: str
    currency: str
    window_days: int
    tiers: list[TierOut]
    reward_kind: str
    reward_validity_days: int
    eligible_objectives: list[str]
    eligible_product_source: str | None
    code: str | None
    max_redemptions: int | None
    redemptions: int
    ends_at: Timestamp | None
    created_at: Timestamp


def program_json(p: Program) -> dict:
    c = p.currency
    return {
        "id": str(p.pk),
        "name": p.name,
        "kind": p.kind,
        "currency": c,
        "window_days": p.window_days,
        "tiers": [{"threshold": money(t.threshold, c), "reward": money(t.reward, c), "immediate": t.immediate}
                  for t in p.tiers.order_by("threshold")],
        "reward_kind": p.reward_kind,
        "reward_validity_days": p.reward_validity_days,
        "eligible_objectives": list(p.eligible_objectives or []),
        "eligible_product_source": p.eligible_product_source or None,
        "code": p.code,
        "max_redemptions": p.max_redemptions,
        "redemptions": p.redemptions,
        "ends_at": iso(p.ends_at),
        "created_at": iso(p.created_at),
    }


class EnrollmentIn(Schema):
    """Read by the view (`_program`) and `enrollment_create`, which name what is wrong."""

    program_id: Annotated[Any, WithJsonSchema(ID_SCHEMA)] | None = None
    code: Annotated[Any, WithJsonSchema({"type": "string", "maxLength": 64, "description": "a promo code"})] | None = None

    @model_validator(mode="after")
    def _one_of(self):
        given = [f for f in ("program_id", "code") if getattr(self, f) is not None]
        if len(given) != 1:
            raise ValueError("send either program_id or code")
        return self


class EnrollmentOut(Schema):
    id: str
    program_id: str
    status: str
    window_start: Timestamp
    window_end: Timestamp
    qualifying_spend: Money
    reached_tier: Money | None
    next_threshold: Money | None
    credit_id: str | None
    via_code: bool


def enrollment_json(e: Enrollment, tiers: list[Tier], currency: str) -> dict:
    """Progress as the advertiser sees it: the highest threshold reached so far (the one paid once
    the window closes) and, while the window is open, the next threshold to reach."""
    progress = progress_of(e, tiers)
    reached = e.reached_tier or progress.reached
    is_open = e.status == "open"
    return {
        "id": str(e.pk),
        "program_id": str(e.program_id),
        "status": e.status,
        "window_start": iso(e.window_start),
        "window_end": iso(e.window_end),
        "qualifying_spend": money(e.qualifying_spend, currency),
        "reached_tier": money(reached.threshold, currency) if reached else None,
        "next_threshold": money(progress.next_threshold, currency) if is_open and progress.next_tier else None,
        "credit_id": str(e.credit_id) if e.credit_id else None,
        "via_code": e.via_code,
    }


def _tiers_by_program(program_ids) -> dict[int, list[Tier]]:
    out: dict[int, list[Tier]] = {}
    for t in Tier.objects.filter(program_id__in=set(program_ids)).order_by("threshold"):
        out.setdefault(t.program_id, []).append(t)
    return out


@router.post("/programs", response={201: ProgramOut, **ERRORS}, summary="Create a ladder credit program (staff)")
def program_create_view(request, payload: ProgramIn):
    require_staff(request.auth, "create a program")
    program = program_create(
        name=payload.name,
        kind=payload.kind,
        window_days=payload.window_days,
        tiers=[t.model_dump() for t in payload.tiers],
        reward_kind=payload.reward_kind,
        reward_validity_days=payload.reward_validity_days,
        currency=payload.currency,
        eligible_objectives=payload.eligible_objectives or (),
        eligible_product_source=payload.eligible_product_source or "",
        code=payload.code,
        max_redemptions=payload.max_redemptions,
        ends_at=payload.ends_at,
        by=request.auth,
    )
    return Status(201, program_json(program))


def _program(program_id) -> Program:
    try:
        return Program.objects.get(pk=int(str(program_id)))
    except (Program.DoesNotExist, ValueError):
        raise BadInput("unknown_program", f"Program {program_id!r} does not exist.") from None


@router.post("/advertisers/{id}/enrollments", response={201: EnrollmentOut, **ERRORS},
             summary="Enroll in a program, by program_id or promo code (staff, admin)")
def enrollment_create_view(request, id: str, payload: EnrollmentIn):
    adv, _ = advertiser_for(request.auth, id, need="admin")
    if payload.program_id is not None:
        enrollment = enrollment_create(advertiser=adv, program=_program(payload.program_id))
    else:
        enrollment = enrollment_create(advertiser=adv, code=payload.code)
    tiers = _tiers_by_program([enrollment.program_id]).get(enrollment.program_id, [])
    return Status(201, enrollment_json(enrollment, tiers, adv.currency))


@router.get("/advertisers/{id}/enrollments", response={200: list[EnrollmentOut], **ERRORS},
            summary="Ladder enrollments and their progress, newest first (payments access, staff)")
def enrollment_list(request, id: str):
    adv, _ = advertiser_for(request.auth, id, need="payments_read")
    enrollments = list(
        Enrollment.objects.filter(advertiser=adv).select_related("reached_tier").order_by("-created_at", "-pk")
    )
    tiers = _tiers_by_program(e.program_id for e in enrollments)
    return [enrollment_json(e, tiers.get(e.program_id, []), adv.currency) for e in enrollments]


# --- risk freeze (R30) -----------------------------------------------------------------------------


class ReasonIn(Schema):
    reason: Text(500)


@router.post("/advertisers/{id}/freeze", response={200: AdvertiserOut, **ERRORS},
             summary="Freeze the advertiser's credit, with a reason (staff)")
def freeze_view(request, id: str, payload: ReasonIn):
    adv, _ = advertiser_for(request.auth, id, need="staff")
    staff_require(request.auth, "freeze_credit")
    return advertiser_json(credit_freeze(advertiser=adv, reason=payload.reason, by=request.auth))


@router.post("/advertisers/{id}/unfreeze", response={200: AdvertiserOut, **ERRORS},
             summary="Lift a credit freeze; withheld ladder rewards are issued (staff)")
def unfreeze_view(request, id: str, payload: ReasonIn):
    adv, _ = advertiser_for(request.auth, id, need="staff")
    staff_require(request.auth, "freeze_credit")
    return advertiser_json(credit_unfreeze(advertiser=adv, reason=payload.reason, by=request.auth))


# --- appeals (R31) -------------------------------------------------------------------------------


class AttachmentOut(Schema):
    id: str
    name: str
    content_type: str
    size: int


class AppealOut(Schema):
    id: str
    advertiser_id: str
    status: str
    message: str
    created_at: Timestamp
    decided_at: Timestamp | None
    decision_note: str
    credits_withdrawn: bool
    attachments: list[AttachmentOut]


def appeal_json(a: Appeal) -> dict:
    return {
        "id": str(a.pk),
        "advertiser_id": str(a.advertiser_id),
        "status": a.status,
        "message": a.message,
        "created_at": iso(a.created_at),
        "decided_at": iso(a.decided_at),
        "decision_note": a.decision_note,
        "credits_withdrawn": a.credits_withdrawn,
        "attachments": [
            {"id": str(f.pk), "name": f.original_name, "content_type": f.content_type, "size": f.size}
            for f in sorted(a.attachments.all(), key=lambda f: f.pk)
        ],
    }


def _appeals():
    return Appeal.objects.prefetch_related("attachments")


def appeal_for(user, appeal_id, *, need: str) -> Appeal:
    """The appeal, if the caller may act on its advertiser; another advertiser's appeal is 404."""
    try:
        appeal = _appeals().get(pk=int(str(appeal_id)))
    except (Appeal.DoesNotExist, ValueError):
        raise NotFound("appeal") from None
    try:
        advertiser_for(user, appeal.advertiser_id, need=need)
    except NotFound:
        raise NotFound("appeal") from None
    return appeal


class DecisionIn(Schema):
    decision: Annotated[Any, WithJsonSchema({"type": "string", "enum": ["approve", "reject"]})]
    note: TextIn
    withdraw_credits: StrictBool = False


@router.post("/advertisers/{id}/appeals", response={201: AppealOut, **ERRORS},
             summary="Appeal a credit freeze: multipart message and up to 3 attachments[] (admin, finance)")
def appeal_file_view(request, id: str, message: Annotated[str, Form()],
                     attachments: Annotated[list[UploadedFile], File(alias="attachments[]")] = None):
    adv, _ = advertiser_for(request.auth, id, need="payments_write")
    files = list(attachments or []) + request.FILES.getlist("attachments")  # with or without the brackets
    appeal = appeal_file(advertiser=adv, user=request.auth, message=message, files=files)
    return Status(201, appeal_json(_appeals().get(pk=appeal.pk)))


@router.get("/advertisers/{id}/appeals", response={200: list[AppealOut], **ERRORS},
            summary="The advertiser's appeals, newest first (payments access, staff)")
def appeal_list(request, id: str):
    adv, _ = advertiser_for(request.auth, id, need="payments_read")
    return [appeal_json(a) for a in _appeals().filter(advertiser=adv).order_by("-created_at", "-pk")]


@router.post("/appeals/{id}/decision", response={200: AppealOut, **ERRORS},
             summary="Approve (unfreeze) or reject an appeal, optionally withdrawing the credit (staff)")
def appeal_decide_view(request, id: str, payload: DecisionIn):
    appeal = appeal_for(request.auth, id, need="staff")
    staff_require(request.auth, "decide_appeal")
    if payload.withdraw_credits:
        staff_require(request.auth, "withdraw_credit")
    appeal = appeal_decide(appeal=appeal, decision=payload.decision, note=payload.note, by=request.auth,
                           withdraw_credits=payload.withdraw_credits)
    return appeal_json(_appeals().get(pk=appeal.pk))
