"""Insight (SPEC R47, R49, R50): what happens at the account's current pace. Selectors only.

- `expiry_forecast`: per open credit, the pace of the spend it can pay (its eligible campaigns,
  the last 7 days), when it would be used up and what would lapse at its expiry (R47).
- `runway`: at the last 24 hours' pace, when the campaigns would pause for lack of funds (or, on
  automatic payment, when the next threshold charge falls) and when the spending limit is
  reached (R49, R43).
- `ladder_pace`: per open enrollment, the tier expected at window end and the daily own-money
  spend that reaches the tier above it (R50).

Each costs a constant number of queries however many credits, charges or enrollments the account
has: aggregates in SQL, the rest in Python. The choices where the spec is silent (horizons,
rounding, what "lapses" means) are in docs/decisions/0035-insight.md.
"""

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import ROUND_CEILING, Decimal

from django.db.models import Prefetch, Q, Sum
from django.utils import timezone

from billing.models import SpendEvent, SpendKind
from billing.money import ZERO, quantum, round_down
from billing.selectors import advertiser_balances
from billing.waterfall import campaign_eligible
from portal.models import BillingMethod, Campaign, LimitPeriod
from promotions.models import Credit, CreditKind, CreditStatus, Enrollment, EnrollmentStatus, Tier

FORECAST_WINDOW = timedelta(days=7)  # R47: the pace of the last 7 days
RUNWAY_WINDOW = timedelta(hours=24)  # R49: the pace of the last 24 hours
DAY = timedelta(days=1)
MIN_LADDER_ELAPSED = DAY  # R50: a pace is never read off less than a day of the window


def _days(d: timedelta) -> Decimal:
    return Decimal(d.total_seconds()) / Decimal(DAY.total_seconds())


def _after(at: datetime, amount: Decimal, pace_per_day: Decimal) -> datetime:
    """When `amount` is spent from `at` at `pace_per_day` (pace > 0), to the second."""
    seconds = amount / pace_per_day * Decimal(DAY.total_seconds())
    return at + timedelta(seconds=int(seconds.to_integral_value()))


def _ceil(amount: Decimal, currency: str) -> Decimal:
    """Up to the minor unit: a daily amount that reaches a threshold, never one cent short."""
    return amount.quantize(quantum(currency), rounding=ROUND_CEILING)


# --- R47: the expiry forecast ------------------------------------------------------------------

@dataclass
class CreditForecast:
    credit: object  # promotions.models.Credit, with its ledger account
    remaining: Decimal
    pace_per_day: Decimal  # exact; what it would pay a day at the last 7 days' pace
    used_up_at: datetime | None  # None: never at this pace (no pace, or it expires first)
    lapse_amount: Decimal  # what is left at expires_at at this pace (0 if used up first)
    campaigns: list = field(default_factory=list)  # the campaigns that could use it, by name
    frozen: bool = False
    starts_at: datetime | None = None  # not valid yet: when it starts to pay

    @property
    def credit_id(self) -> int:
        return self.credit.pk

    @property
    def expires_at(self) -> datetime:
        return self.credit.expires_at

    @property
    def lapses(self) -> bool:
        return self.lapse_amount > 0


def _can_use(credit, campaign) -> bool:
    """R5, R6: the campaign is one the credit can pay for (objective, product source, and a
    coupon's assignment)."""
    if not campaign_eligible(objectives=credit.eligible_objectives, product_source=credit.eligible_product_source,
                             objective=campaign.objective, campaign_product_source=campaign.product_source):
        return False
    if credit.kind == "assignable":
        return campaign.pk in {c.pk for c in credit.campaigns.all()}
    return True


def _spend_by_campaign(advertiser, since: datetime, until: datetime) -> dict[int, Decimal]:
    """Ad spend per campaign that occurred in [since, until): one aggregate query."""
    rows = (
        SpendEvent.objects.filter(advertiser=advertiser, kind=SpendKind.AD_SPEND, occurred_at__gte=since,
                                  occurred_at__lt=until)
        .values_list("campaign_id").annotate(total=Sum("amount")).order_by()
    )
    return {campaign_id: total for campaign_id, total in rows}


def expiry_forecast(*, advertiser, at: datetime | None = None, credits=None) -> list[CreditForecast]:
    """R47, for every open credit (active, or frozen by the account's freeze) with something left
    and not expired at `at`, soonest expiry first. Four queries: the credits with their ledger
    accounts, the coupons' campaigns, the account's campaigns and 7 days of spend by campaign.
    `credits`: credits already loaded with their ledger accounts and campaigns (a page of the
    Promotions list), forecast with the last two queries only."""
    at = at or timezone.now()
    forecast_statuses = (CreditStatus.ACTIVE, CreditStatus.FROZEN)
    if credits is None:
        found = list(
            Credit.objects.filter(advertiser=advertiser, status__in=forecast_statuses, expires_at__gt=at,
                                  ledger_account__balance__gt=0)
            .select_related("ledger_account").prefetch_related("campaigns")
            .order_by("expires_at", "valid_from", "pk")
        )
    else:  # already loaded, with their ledger accounts and campaigns (a page of the Promotions list)
        found = sorted((c for c in credits if c.status in forecast_statuses and c.expires_at > at
                        and c.ledger_account.balance > 0), key=lambda c: (c.expires_at, c.valid_from, c.pk))
    if not found:
        return []
    campaigns = list(Campaign.objects.filter(advertiser=advertiser).order_by("name", "pk"))
    spent = _spend_by_campaign(advertiser, at - FORECAST_WINDOW, at)
    window_days = _days(FORECAST_WINDOW)
    out = []
    for c in found:
        remaining = c.ledger_account.balance
        usable = [camp for camp in campaigns if _can_use(c, camp)]
        frozen = c.status == CreditStatus.FROZEN or not advertiser.credit_usable
        pace = ZERO
        if not frozen:  # R12, R30: frozen credit pays nothing, so all of it lapses
            eligible_spend = sum((spent.get(camp.pk, ZERO) for camp in usable), ZERO)
            if c.kind == CreditKind.DISCOUNT:
                eligible_spend = eligible_spend * c.percent / 100  # R7: P% of each charge
            pace = eligible_spend / window_days
        start = max(at, c.valid_from)  # R9: a credit not valid yet starts paying at valid_from
        used_up_at, lapse = None, remaining
        if pace > 0:
            paying_days = _days(c.expires_at - start)
            if pace * paying_days >= remaining:
                used_up_at, lapse = _after(start, remaining, pace), ZERO
            else:
                lapse = remaining - round_down(pace * paying_days, advertiser.currency)
        out.append(CreditForecast(
            credit=c, remaining=remaining, pace_per_day=pace, used_up_at=used_up_at, lapse_amount=lapse,
            campaigns=[camp.name for camp in usable], frozen=frozen,
            starts_at=c.valid_from if c.valid_from > at else None,
        ))
    return out


# --- R49: the runway ---------------------------------------------------------------------------

@dataclass
class Runway:
    billing_method: str
    pace_per_day: Decimal  # all charges of the last 24 hours, per day
    funds_pause_at: datetime | None  # automatic payment: when the next threshold charge falls
    limit_reached_at: datetime | None
    already_paused: bool = False  # out of funds now (arrears, or the credit line used up)
    limit_reached: bool = False  # the spending limit is reached now
    threshold_due: bool = False  # automatic: the accrued spend has reached the threshold already

    @property
    def funds_label(self) -> str:
        return "threshold charge" if self.billing_method == BillingMethod.AUTOMATIC else "pause"


def _month_start(advertiser, local_first) -> datetime:
    return datetime.combine(local_first, time(0), tzinfo=advertiser.tz)


def _next_month(first):
    return (first + timedelta(days=32)).replace(day=1)


def limit_reached_at(*, advertiser, at: datetime, ad_pace_per_day: Decimal) -> datetime | None:
    """R43 at the current pace: when the spending limit is reached (`at` if it is already).

    A monthly limit counts the calendar month in the account's time zone and resets at the next
    local midnight of the 1st. If the pace does not reach the limit before the reset, it is
    computed in the next month, from zero, at the same pace; if a whole month at that pace does
    not reach it either, every month resets first and the answer is None (never)."""
    limit = advertiser.spending_limit
    if limit is None:
        return None
    if advertiser.limit_reached_at(at):
        return at
    if ad_pace_per_day <= 0:
        return None
    reached = _after(at, limit - advertiser.limit_spent_at(at), ad_pace_per_day)
    if advertiser.spending_limit_period != LimitPeriod.MONTHLY:
        return reached
    next_first = _next_month(advertiser.limit_month_of(at))
    reset = _month_start(advertiser, next_first)
    if reached < reset:
        return reached
    reached = _after(reset, limit, ad_pace_per_day)
    return reached if reached < _month_start(advertiser, _next_month(next_first)) else None


def runway(*, advertiser, at: datetime | None = None, balances=None) -> Runway:
    """R49: three queries for the balances (none if given) and one for the last 24 hours' spend.

    The money that pays before campaigns pause is what the waterfall takes first: usable credit
    (free credit and coupons) and prepaid cash, then — on monthly invoicing — the credit line left.
    On automatic payment nothing pauses for funds: the moment is when the accrued spend, after
    credit and cash, reaches the billing threshold (R24)."""
    at = at or timezone.now()
    b = balances or advertiser_balances(advertiser=advertiser)
    sums = SpendEvent.objects.filter(
        advertiser=advertiser, occurred_at__gte=at - RUNWAY_WINDOW, occurred_at__lt=at,
    ).aggregate(total=Sum("amount"), ad=Sum("amount", filter=Q(kind=SpendKind.AD_SPEND)))
    window_days = _days(RUNWAY_WINDOW)
    pace = (sums["total"] or ZERO) / window_days
    ad_pace = (sums["ad"] or ZERO) / window_days
    method = advertiser.billing_method
    before_money = b.credit_balance + b.cash_balance
    paused = threshold_due = False
    if method == BillingMethod.AUTOMATIC:
        threshold = advertiser.billing_threshold
        if threshold is None:
            left = None
        elif b.accrued >= threshold:
            left, threshold_due = ZERO, True
        else:
            left = before_money + threshold - b.accrued
    elif method == BillingMethod.MONTHLY_INVOICE:
        line_left = max(b.credit_line_limit - b.credit_line_used, ZERO)
        paused = b.arrears > 0 or line_left <= 0
        left = ZERO if paused else before_money + line_left
    else:
        paused = b.arrears > 0
        left = ZERO if paused else before_money
    if left is None:
        pause_at = None
    elif left <= 0:
        pause_at = at
    else:
        pause_at = _after(at, left, pace) if pace > 0 else None
    return Runway(
        billing_method=method, pace_per_day=pace, funds_pause_at=pause_at,
        limit_reached_at=limit_reached_at(advertiser=advertiser, at=at, ad_pace_per_day=ad_pace),
        already_paused=paused, limit_reached=advertiser.limit_reached_at(at), threshold_due=threshold_due,
    )


# --- R50: the ladder pace ----------------------------------------------------------------------

@dataclass
class EnrollmentPace:
    enrollment: object
    currency: str
    pace_per_day: Decimal  # qualifying (own-money) spend per day so far in the window
    expected_spend: Decimal  # at window end, at this pace
    expected_tier: object | None  # the highest tier the expected spend reaches
    next_tier: object | None  # the tier above it
    daily_needed_for_next: Decimal | None  # own-money spend a day, from now, that reaches next_tier

    @property
    def enrollment_id(self) -> int:
        return self.enrollment.pk

    @property
    def expected_tier_threshold(self) -> Decimal | None:
        return self.expected_tier.threshold if self.expected_tier else None


def ladder_pace(*, advertiser, at: datetime | None = None, enrollments=None) -> list[EnrollmentPace]:
    """R50, for every open enrollment whose window is still running: two queries (the enrollments
    with their programs, then every program's tiers).

    The pace is the enrollment's qualifying spend so far — R17's own money, as the ladder counts it
    (`Allocation.qualifying`, kept on the enrollment by the spend booking) — over the time elapsed
    in its window (at least a day, so the first charge does not read as a daily rate).
    `enrollments`: already loaded as `(enrollment, tiers by threshold)` (the Promotions page's
    cards), paced with no query."""
    at = at or timezone.now()
    if enrollments is None:
        enrollments = [
            (e, list(e.program.tiers.all())) for e in
            Enrollment.objects.filter(advertiser=advertiser, status=EnrollmentStatus.OPEN, window_end__gt=at)
            .select_related("program")
            .prefetch_related(Prefetch("program__tiers", queryset=Tier.objects.order_by("threshold")))
            .order_by("window_end", "pk")
        ]
    out = []
    for e, tiers in enrollments:
        if e.status != EnrollmentStatus.OPEN or e.window_end <= at:
            continue
        currency = e.program.currency
        spent = e.qualifying_spend
        elapsed = max(at - e.window_start, MIN_LADDER_ELAPSED)
        pace = spent / _days(elapsed)
        left_days = _days(e.window_end - at)
        expected = spent + pace * left_days
        reached = [t for t in tiers if expected >= t.threshold]
        expected_tier = reached[-1] if reached else None
        nxt = next((t for t in tiers if t.threshold > expected), None)
        needed = None
        if nxt is not None:
            needed = _ceil(max(nxt.threshold - spent, ZERO) / left_days, currency)
        out.append(EnrollmentPace(enrollment=e, currency=currency, pace_per_day=pace, expected_spend=expected,
                                  expected_tier=expected_tier, next_tier=nxt, daily_needed_for_next=needed))
    return out


# --- all three ---------------------------------------------------------------------------------

@dataclass
class Insights:
    at: datetime
    runway: Runway
    credits: list[CreditForecast]
    enrollments: list[EnrollmentPace]


def insights(*, advertiser, at: datetime | None = None) -> Insights:
    """R47, R49 and R50 for one advertiser as of `at`: a constant number of queries."""
    at = at or timezone.now()
    return Insights(at=at, runway=runway(advertiser=advertiser, at=at),
                    credits=expiry_forecast(advertiser=advertiser, at=at),
                    enrollments=ladder_pace(advertiser=advertiser, at=at))


def about(at: datetime, then: datetime | None) -> str:
    """"in about 30 hours", "in about 5 days": how far `then` is from `at`, in words, for the
    pages (hours up to two days, then days; a month and more in weeks)."""
    if then is None:
        return ""
    seconds = (then - at).total_seconds()
    if seconds <= 0:
        return "now"
    hours = seconds / 3600
    if hours < 1:
        return "in less than an hour"
    if hours < 48:
        n = round(hours)
        return f"in about {n} hour{'s' if n != 1 else ''}"
    days = hours / 24
    if days < 35:
        return f"in about {round(days)} days"
    return f"in about {round(days / 7)} weeks"
