"""Reads for the Promotions and Coupon Progress pages (SPEC R16–R21, R30, R31, R34).

Every read here costs a fixed number of queries whatever the number of credits, enrollments or
appeals: aggregates in SQL, tiers and attachments prefetched, the credit list paginated. A credit's
usage history is a page of its ledger account's entries, with what was left after each summed by a
window in the same query (decision 0030).
"""

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import (
    Case,
    Count,
    DecimalField,
    F,
    IntegerField,
    Prefetch,
    Q,
    QuerySet,
    RowRange,
    Sum,
    Value,
    When,
    Window,
)
from django.utils import timezone

from billing.models import CREDIT, DEBIT, NORMAL_SIDE, LedgerEntry, Purpose, TxKind
from portal.models import BillingMethod
from promotions.credit_table import EXPIRING_SOON, OPEN_STATUSES
from promotions.models import (
    Appeal,
    AppealAttachment,
    AppealStatus,
    Credit,
    CreditKind,
    CreditStatus,
    Enrollment,
    EnrollmentStatus,
    FreezeEvent,
    ProgramKind,
    Tier,
)
from promotions.programs import Progress, progress_of

ZERO = Decimal(0)


# --- credits -----------------------------------------------------------------------------------

@dataclass
class CreditSummary:
    """The figures above the credit list, and how many credits each status filter holds."""

    available: Decimal  # active free credit and coupons (a coupon pays only its assigned campaigns)
    discount_left: Decimal  # cap left on active discounts
    pending: Decimal
    frozen: Decimal  # credit and coupons held by a freeze
    frozen_discount: Decimal  # discount cap held by a freeze
    expiring_soon: Decimal  # active, pending or frozen, expiring within 7 days
    expiring_soon_count: int
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def credit_summary(*, advertiser, at: datetime | None = None) -> CreditSummary:
    """One aggregate query over the advertiser's credits and their ledger balances."""
    at = at or timezone.now()
    balance = "ledger_account__balance"
    active, discount = Q(status=CreditStatus.ACTIVE), Q(kind=CreditKind.DISCOUNT)
    soon = Q(status__in=OPEN_STATUSES, expires_at__gte=at, expires_at__lt=at + EXPIRING_SOON)
    row = Credit.objects.filter(advertiser=advertiser).aggregate(
        available=Sum(balance, filter=active & ~discount),
        discount_left=Sum(balance, filter=active & discount),
        pending=Sum(balance, filter=Q(status=CreditStatus.PENDING)),
        frozen=Sum(balance, filter=Q(status=CreditStatus.FROZEN) & ~discount),
        frozen_discount=Sum(balance, filter=Q(status=CreditStatus.FROZEN) & discount),
        expiring_soon=Sum(balance, filter=soon),
        expiring_soon_count=Count("pk", filter=soon),
        **{f"n_{s}": Count("pk", filter=Q(status=s)) for s in CreditStatus.values},
    )
    return CreditSummary(
        available=row["available"] or ZERO,
        discount_left=row["discount_left"] or ZERO,
        pending=row["pending"] or ZERO,
        frozen=row["frozen"] or ZERO,
        frozen_discount=row["frozen_discount"] or ZERO,
        expiring_soon=row["expiring_soon"] or ZERO,
        expiring_soon_count=row["expiring_soon_count"],
        counts={s: row[f"n_{s}"] for s in CreditStatus.values},
    )


def credits_query(*, advertiser, status: str = ""):
    """Open credits first (soonest expiry first), then closed ones (latest expiry first)."""
    qs = Credit.objects.filter(advertiser=advertiser)
    if status:
        qs = qs.filter(status=status)
    is_open = Q(status__in=OPEN_STATUSES)
    return qs.annotate(
        closed_rank=Case(When(is_open, then=Value(0)), default=Value(1), output_field=IntegerField()),
        open_expiry=Case(When(is_open, then=F("expires_at"))),
        closed_expiry=Case(When(~is_open, then=F("expires_at"))),
    ).order_by("closed_rank", "open_expiry", F("closed_expiry").desc(nulls_last=True), "-pk")


# --- one credit's usage (issue 13, decision 0030) ----------------------------------------------

USAGE_PAGE_SIZE = 25
USAGE_LABELS = {
    TxKind.CHARGE: "Used for ad spend",
    TxKind.CREDIT_ISSUE: "Issued",
    TxKind.CREDIT_EXPIRE: "Expired",
    TxKind.CREDIT_WITHDRAW: "Withdrawn",
    TxKind.CREDIT_FORFEIT: "Forfeited",
}
_ADDS = NORMAL_SIDE[Purpose.PROMO_CREDIT]  # the side that adds to a credit (credit)


@dataclass
class UsageRow:
    """One event of a credit: its issue, a charge it paid part of, its expiry or withdrawal."""

    id: int
    occurred_at: datetime
    kind: str
    label: str
    campaign: str
    amount: Decimal  # signed: what the event added to (+) or took from (−) the credit
    charge: Decimal | None  # for ad spend: the whole charge the credit paid part of
    remaining: Decimal  # what was left of the credit (a discount's cap) once the event was booked

    @property
    def direction(self) -> str:
        return "in" if self.amount > 0 else "out"


@dataclass
class UsageSummary:
    issued: Decimal
    used: Decimal  # paid for ad spend
    ended: Decimal  # expired, withdrawn or forfeited
    remaining: Decimal


def credit_usage_query(*, credit) -> QuerySet:
    """The entries of the credit's ledger account, the last booked first, each with its
    transaction and campaign and `remaining_after`: the account's balance once the entry was
    booked, a window sum in booking order (an advertiser's transaction ids are). Booking order, not
    the date: a credit pays only once issued, so its issue is the first row and each row's remaining
    is the previous one's less what the row took, even for a charge reported late, dated before
    the issue of a credit valid from earlier. A page of it is one query, and the window sees every
    entry, not only the page's."""
    signed = Case(When(side=_ADDS, then=F("amount")), default=-F("amount"),
                  output_field=DecimalField(max_digits=20, decimal_places=4))
    booked = [F("transaction_id").asc(), F("pk").asc()]
    return (
        LedgerEntry.objects.filter(account_id=credit.ledger_account_id)
        .select_related("transaction__campaign")
        .annotate(signed=signed,
                  remaining_after=Window(Sum(signed), order_by=booked, frame=RowRange(start=None, end=0)))
        .order_by("-transaction_id", "-pk")
    )


def credit_usage_rows(entries) -> list[UsageRow]:
    """Rows for a page of `credit_usage_query` (no further queries)."""
    rows = []
    for e in entries:
        tx = e.transaction
        rows.append(UsageRow(
            id=e.pk, occurred_at=tx.occurred_at, kind=tx.kind, label=USAGE_LABELS.get(tx.kind, tx.get_kind_display()),
            campaign=tx.campaign.name if tx.campaign_id else "", amount=e.signed,
            charge=tx.amount if tx.kind == TxKind.CHARGE else None, remaining=e.remaining_after,
        ))
    return rows


def credit_usage_summary(*, credit) -> UsageSummary:
    """Issued, used for ad spend, ended (expired, withdrawn, forfeited) and left: one aggregate
    over the credit's entries; `credit` comes with its ledger account."""
    used = Q(side=DEBIT, transaction__kind=TxKind.CHARGE)
    row = LedgerEntry.objects.filter(account_id=credit.ledger_account_id).aggregate(
        issued=Sum("amount", filter=Q(side=CREDIT)), used=Sum("amount", filter=used),
        ended=Sum("amount", filter=Q(side=DEBIT) & ~used),
    )
    return UsageSummary(issued=row["issued"] or ZERO, used=row["used"] or ZERO, ended=row["ended"] or ZERO,
                        remaining=credit.ledger_account.balance)


# --- ladder programs ---------------------------------------------------------------------------

@dataclass
class TierMark:
    tier: Tier
    x: str  # position on the bar, percent of its width, for SVG attributes ("37.5")
    reached: bool
    paid: bool  # the one tier that is (or will be) paid: the highest reached
    anchor: str  # text-anchor of its label


@dataclass
class Step:
    """One step of the Coupon Progress ladder (an SVG rect; coordinates are SVG attributes)."""

    tier: Tier
    x: str
    width: str
    center: str
    y: int
    height: int
    reached: bool
    current: bool
    fill_y: int = 0
    fill_height: int = 0


@dataclass
class EnrollmentRow:
    enrollment: Enrollment
    tiers: list[Tier]
    progress: Progress
    currency: str
    frozen: bool  # the advertiser's credit is frozen now
    at: datetime
    marks: list[TierMark] = field(default_factory=list)
    fill: str = "0"  # percent of the tier bar reached

    @property
    def program(self):
        return self.enrollment.program

    @property
    def is_open(self) -> bool:
        return self.enrollment.status == EnrollmentStatus.OPEN

    @property
    def window_over(self) -> bool:
        """Open, but the window has closed: the ladder-window job is about to pay it (R18)."""
        return self.is_open and self.enrollment.window_end <= self.at

    @property
    def earning(self) -> bool:
        return self.is_open and not self.window_over

    @property
    def time_left(self) -> timedelta:
        return max(self.enrollment.window_end - self.at, timedelta(0))

    @property
    def days_left(self) -> int:
        return math.ceil(self.time_left / timedelta(days=1))

    @property
    def hours_left(self) -> int:
        return math.ceil(self.time_left / timedelta(hours=1))

    @property
    def top_tier(self) -> Tier | None:
        return self.tiers[-1] if self.tiers else None

    @property
    def to_next(self) -> Decimal | None:
        """What is left to spend to reach the next tier."""
        nxt = self.progress.next_tier
        return nxt.threshold - self.progress.qualifying_spend if nxt else None

    @property
    def next_percent(self) -> int:
        """Qualifying spend against the next threshold (100 once the top tier is reached)."""
        nxt = self.progress.next_threshold
        if nxt is None:
            return 100
        return min(100, int(self.progress.qualifying_spend * 100 / nxt))

    @property
    def credit(self) -> Credit | None:
        return self.enrollment.credit

    @property
    def credit_pending(self) -> bool:
        return self.credit is not None and self.credit.status == CreditStatus.PENDING

    @property
    def withheld(self) -> bool:
        return self.enrollment.status == EnrollmentStatus.WITHHELD

    @property
    def status_key(self) -> str:
        """For the badge: earning, calculating, awarded, pending, withheld, closed."""
        if self.withheld:
            return "withheld"
        if self.credit_pending:
            return "pending"
        if self.window_over:
            return "calculating"
        return {EnrollmentStatus.OPEN: "earning", EnrollmentStatus.AWARDED: "awarded"}.get(
            self.enrollment.status, "closed")

    @property
    def status_label(self) -> str:
        if self.credit_pending:
            return "Reward pending"
        if self.window_over:
            return "Window closed — reward being calculated"
        return self.enrollment.get_status_display()

    def steps(self, *, height: int = 150, top_room: int = 40, base: int = 28) -> list[Step]:
        """The tiers as a staircase: equal widths, heights rising to `height - top_room`; reached
        steps filled, the next one filled in proportion to the spend toward it."""
        n = len(self.tiers)
        if not n:
            return []
        spend = self.progress.qualifying_spend
        usable = height - top_room - base
        out = []
        prev = ZERO
        for i, t in enumerate(self.tiers):
            h = base + round(usable * (i + 1) / n)
            step = Step(
                tier=t, x=_pct(100 * Decimal(i) / n), width=_pct(Decimal(100) / n),
                center=_pct(100 * (Decimal(i) + Decimal("0.5")) / n), y=height - h, height=h,
                reached=spend >= t.threshold, current=self.progress.next_tier is not None and t.pk == self.progress.next_tier.pk,
            )
            if step.current:
                part = (spend - prev) / (t.threshold - prev) if t.threshold > prev else ZERO
                step.fill_height = round(h * min(max(part, ZERO), Decimal(1)))
                step.fill_y = height - step.fill_height
            out.append(step)
            prev = t.threshold
        return out


def _pct(value) -> str:
    """A percentage for an SVG attribute: a plain decimal with a dot, whatever the locale."""
    return f"{Decimal(value).quantize(Decimal('0.01')).normalize():f}"


def _bar(row: EnrollmentRow) -> None:
    """Tier marks spaced evenly along the bar, the fill interpolated between them, so close
    thresholds never crowd each other and each step of the ladder reads the same."""
    tiers, spend = row.tiers, row.progress.qualifying_spend
    n = len(tiers)
    if not n:
        return
    paid = row.enrollment.reached_tier_id or (row.progress.reached.pk if row.progress.reached else None)
    row.marks = [
        TierMark(tier=t, x=_pct(100 * Decimal(i + 1) / n), reached=spend >= t.threshold, paid=t.pk == paid,
                 anchor="end" if i == n - 1 else "middle")
        for i, t in enumerate(tiers)
    ]
    reached = sum(1 for t in tiers if spend >= t.threshold)
    if reached == n:
        row.fill = "100"
        return
    prev = tiers[reached - 1].threshold if reached else ZERO
    part = (spend - prev) / (tiers[reached].threshold - prev)
    row.fill = _pct(100 * (reached + part) / n)


def enrollment_rows(*, advertiser, kind: str | None = None, at: datetime | None = None) -> list[EnrollmentRow]:
    """The advertiser's ladder enrollments, earning ones first, then the latest closed: two
    queries (enrollments with program and issued credit, then every program's tiers)."""
    at = at or timezone.now()
    qs = Enrollment.objects.filter(advertiser=advertiser)
    if kind:
        qs = qs.filter(program__kind=kind)
    enrollments = (
        qs.select_related("program", "credit__ledger_account")
        .prefetch_related(Prefetch("program__tiers", queryset=Tier.objects.order_by("threshold")))
        .annotate(open_rank=Case(When(status=EnrollmentStatus.OPEN, then=Value(0)), default=Value(1),
                                 output_field=IntegerField()))
        .order_by("open_rank", "-window_end", "-pk")
    )
    rows = []
    for e in enrollments:
        tiers = list(e.program.tiers.all())
        row = EnrollmentRow(enrollment=e, tiers=tiers, progress=progress_of(e, tiers), currency=e.program.currency,
                            frozen=advertiser.credit_frozen, at=at)
        _bar(row)
        rows.append(row)
    return rows


def shows_coupon_progress(advertiser) -> bool:
    """Shop Ads → Coupon Progress is for TikTok Shop sellers: a linked shop or a Shop enrollment."""
    return bool(advertiser.shop_id) or Enrollment.objects.filter(
        advertiser=advertiser, program__kind=ProgramKind.SHOP).exists()


def shop_credit_waits_for_bill(advertiser) -> bool:
    """R21: on automatic payment a Shop reward waits for the next paid bill."""
    return advertiser.billing_method == BillingMethod.AUTOMATIC


# --- freeze and appeals ------------------------------------------------------------------------

@dataclass
class FreezeState:
    event: FreezeEvent | None  # the freeze in force: its reason and date
    appeals: list[Appeal]  # newest first, attachments prefetched

    @property
    def open_appeal(self) -> Appeal | None:
        return next((a for a in self.appeals if a.status == AppealStatus.OPEN), None)

    @property
    def past_appeals(self) -> list[Appeal]:
        return [a for a in self.appeals if a.status != AppealStatus.OPEN]


def freeze_state(*, advertiser) -> FreezeState:
    """The latest freeze (only while frozen) and every appeal: at most three queries."""
    event = None
    if advertiser.credit_frozen:
        event = FreezeEvent.objects.filter(advertiser=advertiser, frozen=True).order_by("-created_at", "-pk").first()
    appeals = list(
        Appeal.objects.filter(advertiser=advertiser)
        .select_related("filed_by")
        .prefetch_related(Prefetch("attachments", queryset=AppealAttachment.objects.order_by("pk")))
        .order_by("-created_at", "-pk")[:50]
    )
    return FreezeState(event=event, appeals=appeals)
