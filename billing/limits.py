"""The account spending limit (SPEC R43): a cap on the ad spend of an account, for its lifetime or
per calendar month in its time zone, counting every ad charge however it is paid (credit, cash,
card or credit line; platform fees are not ad spend).

Spend that happened is always booked: the limit does not refuse a charge, it pauses delivery. The
count lives on the advertiser row (`limit_spent`, `limit_month`), kept by the spend booking in
its own statement under the advertiser's lock (`limit_counts` + `limits_rider`), and only while
a limit is set — an account without one costs nothing on the hot path. When a booking takes the
count to the limit, the account's active campaigns go to `paused_limit` in the same statement and
the account is told once (`spending_limit_reached`). They resume when the limit is raised or
removed (`spending_limit_set`) or the month turns (`spending_limits_roll`, a job), unless the
account is out of funds, in which case they wait for the funds (`campaigns_resume`).

A limit set or changed counts what was already spent in its period (`spend_counted`), so setting
a limit below it pauses the campaigns at once. Decision 0032.
"""

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from billing.deposits import campaigns_resume
from billing.ledger import Rider, lock_advertisers
from billing.models import SpendEvent, SpendKind
from billing.money import fmt, parse_amount
from portal.audit import audit_record
from portal.errors import BadInput
from portal.models import Advertiser, CampaignStatus, LimitPeriod
from portal.notifications import Draft, notify_many


@dataclass
class LimitCount:
    """What a limit has counted after a booking: the spend and, for a monthly limit, its month."""

    spent: Decimal
    month: date | None


@dataclass(frozen=True)
class LimitView:
    """What the pages and the API show (API.md `PUT .../spending-limit`)."""

    amount: Decimal | None
    period: str
    spent: Decimal
    remaining: Decimal | None
    resets_at: datetime | None  # monthly: the start of the next month in the account's time zone


def limit_counts(advertisers: dict, charges) -> dict[int, LimitCount]:
    """The counts of the accounts with a limit after these charges (`(advertiser_id, amount,
    occurred_at, kind)`, in booking order); pure. A monthly limit counts a charge in its own month
    (account time zone): a charge of a later month starts that month's count, a late charge of a
    month already closed counts for nothing now."""
    counts = {pk: LimitCount(adv.limit_spent, adv.limit_month)
              for pk, adv in advertisers.items() if adv.spending_limit is not None}
    for advertiser_id, amount, occurred_at, kind in charges:
        count = counts.get(advertiser_id)
        if count is None or kind != SpendKind.AD_SPEND:
            continue
        adv = advertisers[advertiser_id]
        if adv.spending_limit_period == LimitPeriod.MONTHLY:
            month = adv.limit_month_of(occurred_at)
            if count.month is None or month > count.month:
                count.spent, count.month = Decimal(0), month
            elif month < count.month:
                continue
        count.spent += amount
    return counts


def limit_reached(adv, count: LimitCount, at: datetime) -> bool:
    """R43: after a booking, the count is at the limit for the period `at` is in."""
    if adv.spending_limit_period == LimitPeriod.MONTHLY and count.month != adv.limit_month_of(at):
        return False
    return count.spent >= adv.spending_limit


def limits_rider(counts: dict[int, LimitCount]) -> Rider:
    """The new counts, written in the booking's own statement."""
    table = connection.ops.quote_name(Advertiser._meta.db_table)
    ids = sorted(counts)

    def orm(tx_ids):
        for pk in ids:
            Advertiser.objects.filter(pk=pk).update(limit_spent=counts[pk].spent, limit_month=counts[pk].month)

    return Rider(
        sql=f"""limits AS (UPDATE {table} a SET limit_spent = v.spent, limit_month = v.month
                  FROM unnest(%s::bigint[], %s::numeric[], %s::date[]) AS v(id, spent, month) WHERE a.id = v.id)""",
        params=[ids, [counts[pk].spent for pk in ids], [counts[pk].month for pk in ids]],
        orm=orm,
    )


def limit_reached_notify(adv, spent: Decimal, key: str) -> None:
    """"Spending limit reached" (R43, R44, R45), once per crossing: `key` names what crossed it."""
    cur = adv.currency
    notify_many([Draft(adv, "spending_limit_reached", f"spending_limit_reached:{key}", {
        "amount": f"{cur} {fmt(adv.spending_limit, cur)}", "period": adv.spending_limit_period,
        "spent": f"{cur} {fmt(spent, cur)}",
    })], skip_existing=True)


def spend_counted(*, advertiser, period: str, at: datetime) -> tuple[Decimal, date | None]:
    """The ad spend a limit of this period counts as of `at`, from the booked spend events (one
    query): ever, or in `at`'s month in the account's time zone — the count a new limit starts
    from and the count the booking keeps (tests check they agree)."""
    events = SpendEvent.objects.filter(advertiser_id=advertiser.pk, kind=SpendKind.AD_SPEND)
    month = None
    if period == LimitPeriod.MONTHLY:
        month = advertiser.limit_month_of(at)
        start = datetime(month.year, month.month, 1, tzinfo=advertiser.tz)
        end = _next_month_start(month, advertiser.tz)
        events = events.filter(occurred_at__gte=start, occurred_at__lt=end)
    return events.aggregate(s=Sum("amount"))["s"] or Decimal(0), month


def _next_month_start(month: date, tz) -> datetime:
    """Midnight of the 1st after `month` (a month's first day), in the account's time zone."""
    return datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=tz)


def limit_view(advertiser, *, at: datetime | None = None) -> LimitView:
    at = at or timezone.now()
    period = advertiser.spending_limit_period
    if advertiser.spending_limit is None:
        spent, _ = spend_counted(advertiser=advertiser, period=period, at=at)
        remaining = None
    else:
        spent = advertiser.limit_spent_at(at)
        remaining = max(advertiser.spending_limit - spent, Decimal(0))
    resets_at = None
    if period == LimitPeriod.MONTHLY:
        month = advertiser.limit_month_of(at)
        resets_at = _next_month_start(month, advertiser.tz)
    return LimitView(advertiser.spending_limit, period, spent, remaining, resets_at)


def spending_limit_set(*, advertiser, amount, period: str | None = None, by=None,
                       reason: str = "set by the advertiser") -> LimitView:
    """Set, change or remove (`amount` None) the account's spending limit (R43), audited. The
    count restarts from the booked spend of the period; campaigns paused by the limit resume when
    it is no longer reached, and active ones pause at once when it is."""
    period = period or advertiser.spending_limit_period
    if period not in LimitPeriod.values:
        raise BadInput("invalid_period", f"period must be lifetime or monthly, got {period!r}.")
    limit = None if amount is None else parse_amount(amount, advertiser.currency, field="amount", allow_zero=True)
    now = timezone.now()
    with transaction.atomic():
        adv = lock_advertisers([advertiser.pk])[advertiser.pk]
        before = {"amount": None if adv.spending_limit is None else str(adv.spending_limit),
                  "period": adv.spending_limit_period}
        was_reached = adv.limit_reached_at(now)
        spent, month = spend_counted(advertiser=adv, period=period, at=now)
        adv.spending_limit, adv.spending_limit_period = limit, period
        adv.limit_spent, adv.limit_month = spent, month
        adv.save(update_fields=["spending_limit", "spending_limit_period", "limit_spent", "limit_month"])
        after = {"amount": None if limit is None else str(limit), "period": period}
        if after != before:
            entry = audit_record(actor=by, action="spending_limit", advertiser=adv, target=f"advertiser {adv.pk}",
                                 reason=reason, before=before, after=after)
            if adv.limit_reached_at(now):
                adv.campaigns.filter(status=CampaignStatus.ACTIVE).update(status=CampaignStatus.PAUSED_LIMIT)
                if not was_reached:
                    limit_reached_notify(adv, spent, f"set:{entry.pk}")
            else:
                campaigns_resume(advertiser=adv, reason=CampaignStatus.PAUSED_LIMIT)
    advertiser.refresh_from_db()
    return limit_view(advertiser, at=now)


def spending_limits_roll(*, at: datetime | None = None, chunk: int = 500) -> dict:
    """Job (R43): campaigns paused by a monthly limit resume when their account's month turns.
    Picks accounts with a `paused_limit` campaign whose limit is no longer reached, locks each
    and resumes it; running it twice resumes nothing twice."""
    at = at or timezone.now()
    counts = {"resumed_accounts": 0, "campaigns": 0}
    ids = sorted(set(Advertiser.objects.filter(campaigns__status=CampaignStatus.PAUSED_LIMIT)
                     .values_list("pk", flat=True)))
    for start in range(0, len(ids), chunk):
        with transaction.atomic():
            for pk, adv in lock_advertisers(ids[start:start + chunk]).items():
                if adv.limit_reached_at(at):
                    continue
                n = campaigns_resume(advertiser=adv, reason=CampaignStatus.PAUSED_LIMIT)
                counts["resumed_accounts"] += bool(n)
                counts["campaigns"] += n
    return counts
