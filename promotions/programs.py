"""Ladder credit programs (SPEC R16–R20): programs, enrollment rules, qualifying spend, rewards.

Qualifying spend (R17) is the part of an eligible ad charge paid with the advertiser's own money —
cash, the payment method (accrued) or the credit line — booked as the charge is booked, inside
the spend transaction that already holds the advertiser lock. Arrears are not paid money and do
not qualify. Only the highest tier reached is paid (R16). An `immediate` tier pays at once and
ends the window; otherwise `close_ladder_windows` pays when the window has closed (R18). A reward
is valid from its issue, so it never pays for spend that occurred before.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from billing.ledger import lock_advertisers
from billing.models import SpendEvent
from billing.money import check_currency, fmt, parse_amount
from billing.waterfall import campaign_eligible
from portal import inputs
from portal.audit import audit_record
from portal.errors import BadInput, BusinessError, NotFound
from portal.models import AdvertiserStatus, BillingMethod, ProductSource, SignupSource
from promotions.credits import _eligibility, credit_grant
from promotions.models import (
    CreditSource,
    CreditStatus,
    Enrollment,
    EnrollmentStatus,
    Program,
    ProgramKind,
    Tier,
)


MAX_PROGRAM_DAYS = inputs.PROGRAM_DAYS_MAX


def _days(value, field: str) -> int:
    return inputs.count(value, field=field, low=1, high=MAX_PROGRAM_DAYS, code=f"invalid_{field}")


def program_create(
    *,
    name: str,
    kind: str,
    window_days,
    tiers: list,
    reward_kind: str = "free",
    reward_validity_days=90,
    currency: str = "USD",
    eligible_objectives=(),
    eligible_product_source: str = "",
    code: str | None = None,
    max_redemptions=None,
    ends_at: datetime | None = None,
    by=None,
    reason: str = "",
) -> Program:
    """A ladder program and its tiers, audited (`by`: the staff user; `reason`: why, if given)."""
    check_currency(currency)
    if kind not in ProgramKind.values:
        raise BadInput("invalid_kind", f"kind must be one of {', '.join(ProgramKind.values)}.")
    if reward_kind not in ("free", "assignable"):
        raise BadInput("invalid_reward_kind", "reward_kind must be free or assignable.")
    name = inputs.text(name, field="name", max_length=inputs.max_length(Program, "name"))
    window_days = _days(window_days, "window_days")
    reward_validity_days = _days(reward_validity_days, "reward_validity_days")
    if max_redemptions is not None:
        max_redemptions = inputs.count(max_redemptions, field="max_redemptions", low=1, high=inputs.INT_MAX,
                                       code="invalid_max_redemptions")
    if ends_at is not None:
        inputs.in_range(ends_at, field="ends_at")
    if not isinstance(tiers, list) or not tiers:
        raise BadInput("invalid_tiers", "A program needs at least one tier.")
    parsed = []
    for i, t in enumerate(tiers):
        if not isinstance(t, dict):
            raise BadInput("invalid_tiers", f"tiers[{i}] must be an object with threshold and reward.")
        try:
            threshold = parse_amount(t.get("threshold"), currency, field=f"tiers[{i}].threshold")
            reward = parse_amount(t.get("reward"), currency, field=f"tiers[{i}].reward")
        except BadInput as e:
            raise BadInput("invalid_tiers", e.message) from None
        parsed.append((threshold, reward, bool(t.get("immediate", False))))
    thresholds = [p[0] for p in parsed]
    if len(set(thresholds)) != len(thresholds):
        raise BadInput("invalid_tiers", "Two tiers have the same threshold.")
    objectives, product_source = _eligibility(eligible_objectives, eligible_product_source)
    if code is not None:
        code = inputs.text(code, field="code", max_length=inputs.max_length(Program, "code"))
        if Program.objects.filter(code__iexact=code).exists():
            raise BusinessError("code_taken", f"The promo code {code!r} is already in use.")
    with transaction.atomic():
        program = Program.objects.create(
            name=name, kind=kind, currency=currency, window_days=window_days,
            reward_kind=reward_kind, reward_validity_days=reward_validity_days,
            eligible_objectives=objectives, eligible_product_source=product_source, code=code,
            max_redemptions=max_redemptions, ends_at=ends_at,
        )
        Tier.objects.bulk_create(
            [Tier(program=program, threshold=th, reward=rw, immediate=imm) for th, rw, imm in sorted(parsed)]
        )
        audit_record(actor=by, action="program_create", target=f"program {program.pk}",
                     reason=(reason or "").strip() or f"Program {name} created.",
                     after={"name": name, "kind": kind, "currency": currency, "window_days": window_days,
                            "tiers": [{"threshold": fmt(th, currency), "reward": fmt(rw, currency), "immediate": imm}
                                      for th, rw, imm in sorted(parsed)],
                            "reward_kind": reward_kind, "code": code, "max_redemptions": max_redemptions})
    return program


def _refuse(code: str, message: str):
    raise BusinessError(code, message)


def enrollment_create(*, advertiser, program: Program | None = None, code: str | None = None, at=None) -> Enrollment:
    """Enroll an advertiser in a program, directly or by promo code (R19, R20).

    Each refusal names the rule that failed (a 422 with that code).
    """
    at = at or timezone.now()
    with transaction.atomic():
        adv = lock_advertisers([advertiser.pk])[advertiser.pk]
        via_code = program is None
        if via_code:
            if not isinstance(code, str) or not code.strip():
                raise BadInput("invalid_code", "Enter a promo code.")
            code = inputs.text(code, field="code", max_length=inputs.max_length(Program, "code"))
            program = Program.objects.select_for_update().filter(code__iexact=code).first()
            if program is None:
                _refuse("unknown_code", f"The promo code {code!r} does not exist.")
        else:
            program = Program.objects.select_for_update().get(pk=program.pk)
        if not 0 < program.window_days <= MAX_PROGRAM_DAYS or not 0 < program.reward_validity_days <= MAX_PROGRAM_DAYS:
            # written before the bound (decision 0018); reconcile_ledger lists such programs
            _refuse("program_misconfigured", f"{program.name} has a window or validity longer than "
                                             f"{MAX_PROGRAM_DAYS} days; support must correct it first.")
        if program.ends_at and at >= program.ends_at:
            _refuse("program_ended", f"{program.name} ended on {program.ends_at:%Y-%m-%d}.")
        if adv.status != AdvertiserStatus.ACTIVE:
            _refuse("account_not_active", f"A {adv.status} account cannot enroll.")
        if adv.currency != program.currency:
            _refuse("currency_mismatch", f"{program.name} is for {program.currency} accounts.")
        if Enrollment.objects.filter(advertiser=adv, program=program).exists():
            _refuse("already_enrolled", f"This account is already enrolled in {program.name}.")
        if program.kind == ProgramKind.NEW_ADVERTISER:
            if adv.signup_source != SignupSource.OFFICIAL_OFFER:
                _refuse(
                    "not_official_offer",
                    "The account was not registered through an official TikTok offer entry point with the offer banner shown.",
                )
            if at - adv.registered_at > timedelta(days=program.registration_days):
                _refuse(
                    "account_too_old",
                    f"The offer is for accounts registered in the last {program.registration_days} days.",
                )
            if SpendEvent.objects.filter(
                advertiser=adv, kind="ad_spend", occurred_at__gte=at - timedelta(days=program.prior_spend_days),
                occurred_at__lt=at,
            ).exists():
                _refuse(
                    "recent_spend",
                    f"The offer is for advertisers with no ad spend in the {program.prior_spend_days} days before enrolling.",
                )
            if adv.business_center_id and Enrollment.objects.filter(
                business_center_id=adv.business_center_id, program=program
            ).exists():
                _refuse(
                    "already_enrolled_bc",
                    "Another account of this Business Center already enrolled in this offer.",
                )
        if program.kind == ProgramKind.SHOP and not adv.shop_id:
            _refuse("no_shop_linked", "Link a TikTok Shop to this account before joining a Shop program.")
        if via_code:
            if at - adv.registered_at > timedelta(days=program.code_activation_days):
                _refuse(
                    "code_activation_expired",
                    f"A promo code must be activated within {program.code_activation_days} days of registration.",
                )
            if program.max_redemptions is not None and program.redemptions >= program.max_redemptions:
                _refuse("code_redemption_limit", "This promo code has reached its redemption limit.")
            Program.objects.filter(pk=program.pk).update(redemptions=F("redemptions") + 1)
        return Enrollment.objects.create(
            advertiser=adv,
            program=program,
            business_center_id=adv.business_center_id if program.kind == ProgramKind.NEW_ADVERTISER else None,
            shop_id=adv.shop_id if program.kind == ProgramKind.SHOP else "",
            window_start=at,
            window_end=at + timedelta(days=program.window_days),
            via_code=via_code,
        )


@dataclass
class Progress:
    qualifying_spend: Decimal
    reached: Tier | None
    next_tier: Tier | None

    @property
    def next_threshold(self):
        return self.next_tier.threshold if self.next_tier else None


def progress_of(enrollment: Enrollment, tiers: list[Tier]) -> Progress:
    """Where an enrollment stands on its program's ladder (tiers sorted by threshold)."""
    reached = None
    for t in tiers:
        if enrollment.qualifying_spend >= t.threshold:
            reached = t
    nxt = next((t for t in tiers if t.threshold > enrollment.qualifying_spend), None)
    return Progress(enrollment.qualifying_spend, reached, nxt)


def _qualifies(enrollment: Enrollment, campaign, occurred_at) -> bool:
    program = enrollment.program
    if not (enrollment.window_start <= occurred_at < enrollment.window_end):
        return False
    if not campaign_eligible(objectives=program.eligible_objectives, product_source=program.eligible_product_source,
                             objective=campaign.objective, campaign_product_source=campaign.product_source):
        return False
    if program.kind == ProgramKind.SHOP:
        # R20: only TikTok Shop campaigns of the shop registered at enrollment
        if campaign.product_source != ProductSource.TIKTOK_SHOP or campaign.shop_id != enrollment.shop_id:
            return False
    return True


def enrollments_record_spend(*, charges) -> None:
    """Count qualifying spend for a booked batch. `charges`: [(advertiser_id, campaign, occurred_at,
    allocation)]. Runs inside the spend transaction, which holds the advertisers' locks."""
    adv_ids = {c[0] for c in charges}
    open_enrollments = list(
        Enrollment.objects.filter(advertiser_id__in=adv_ids, status=EnrollmentStatus.OPEN).select_related("program")
    )
    if not open_enrollments:
        return
    by_adv: dict[int, list[Enrollment]] = {}
    for e in open_enrollments:
        by_adv.setdefault(e.advertiser_id, []).append(e)
    added: dict[int, Decimal] = {}
    for adv_id, campaign, occurred_at, alloc in charges:
        paid = alloc.qualifying  # R17
        if paid <= 0:
            continue
        for e in by_adv.get(adv_id, ()):
            if _qualifies(e, campaign, occurred_at):
                added[e.pk] = added.get(e.pk, Decimal(0)) + paid
    if not added:
        return
    tiers_by_program: dict[int, list[Tier]] = {}
    for t in Tier.objects.filter(program_id__in={e.program_id for e in open_enrollments}).order_by("threshold"):
        tiers_by_program.setdefault(t.program_id, []).append(t)
    for e in open_enrollments:
        if e.pk not in added:
            continue
        e.qualifying_spend += added[e.pk]
        Enrollment.objects.filter(pk=e.pk).update(qualifying_spend=F("qualifying_spend") + added[e.pk])
        progress = progress_of(e, tiers_by_program.get(e.program_id, []))
        if progress.reached and progress.reached.immediate:
            enrollment_award(enrollment=e, tier=progress.reached, at=timezone.now())


def enrollment_award(*, enrollment: Enrollment, tier: Tier | None, at: datetime) -> Enrollment:
    """Close an enrollment: issue the reward of `tier` (or none). Caller holds the advertiser lock.

    R30: while the advertiser's credit is frozen the reward is withheld, issued on unfreeze.
    """
    program = enrollment.program
    enrollment.reached_tier = tier
    enrollment.closed_at = at
    if enrollment.window_end > at:
        enrollment.window_end = at  # an immediate tier ends the window (R18)
    if tier is None:
        enrollment.status = EnrollmentStatus.CLOSED
    elif enrollment.advertiser.credit_frozen:
        enrollment.status = EnrollmentStatus.WITHHELD
    else:
        issue_at = max(at, timezone.now())
        # R21: on automatic payment a Shop reward waits `pending` until the next bill is paid.
        shop_waits = program.kind == ProgramKind.SHOP and enrollment.advertiser.billing_method == BillingMethod.AUTOMATIC
        enrollment.credit = credit_grant(
            advertiser=enrollment.advertiser,
            kind=program.reward_kind,
            amount=fmt(tier.reward, enrollment.advertiser.currency),
            reason=f"{program.name}: reached {tier.threshold} in qualifying spend",
            idempotency_key=f"enrollment-{enrollment.pk}",
            valid_from=issue_at,
            expires_at=issue_at + timedelta(days=program.reward_validity_days),
            eligible_objectives=program.eligible_objectives,
            eligible_product_source=program.eligible_product_source,
            source=CreditSource.SHOP if program.kind == ProgramKind.SHOP else CreditSource.LADDER,
            status=CreditStatus.PENDING if shop_waits else CreditStatus.ACTIVE,
        )
        enrollment.status = EnrollmentStatus.AWARDED
    enrollment.save(update_fields=["reached_tier", "closed_at", "window_end", "status", "credit"])
    return enrollment


def close_ladder_windows(*, at: datetime | None = None, chunk: int = 200) -> dict:
    """Job (R18, R33): pay the highest tier of every enrollment whose window has closed.

    Waits a grace period after the window so late spend events can still count. Claims work with
    the advertiser lock in chunks, one transaction per chunk; running it twice pays once.
    """
    at = at or timezone.now()
    cutoff = at - timedelta(seconds=settings.CREDIT_EXPIRY_GRACE_SECONDS)
    counts = {EnrollmentStatus.AWARDED: 0, EnrollmentStatus.CLOSED: 0, EnrollmentStatus.WITHHELD: 0}
    after = 0
    while True:
        candidates = list(
            Enrollment.objects.filter(status=EnrollmentStatus.OPEN, window_end__lte=cutoff, pk__gt=after)
            .order_by("pk")
            .values_list("pk", "advertiser_id")[:chunk]
        )
        if not candidates:
            return counts
        after = candidates[-1][0]
        with transaction.atomic():
            # Lock order is advertiser first, as in spend: a concurrent charge or a second run
            # waits here, and the re-read below skips what it already closed.
            lock_advertisers([a for _, a in candidates])
            enrollments = list(
                Enrollment.objects.select_for_update(of=("self",))
                .filter(pk__in=[pk for pk, _ in candidates], status=EnrollmentStatus.OPEN)
                .select_related("program", "advertiser")
                .order_by("pk")
            )
            tiers_by_program: dict[int, list[Tier]] = {}
            for t in Tier.objects.filter(program_id__in={e.program_id for e in enrollments}).order_by("threshold"):
                tiers_by_program.setdefault(t.program_id, []).append(t)
            for e in enrollments:
                progress = progress_of(e, tiers_by_program.get(e.program_id, []))
                enrollment_award(enrollment=e, tier=progress.reached, at=e.window_end)
                counts[e.status] += 1
