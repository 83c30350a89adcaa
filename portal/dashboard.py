"""Reads for the dashboard shell (SPEC R1–R3): a constant number of queries each."""

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count

from billing.history import spend_by_day
from billing.selectors import advertiser_balances
from portal.models import Campaign, CampaignStatus
from portal.permissions import can


@dataclass
class AdvertiserSummary:
    campaigns_by_status: dict[str, int]
    balances: object | None  # billing.selectors.Balances, for roles that see payment data
    spend_30d_credit: Decimal | None
    spend_30d_own: Decimal | None

    @property
    def campaigns_total(self) -> int:
        return sum(self.campaigns_by_status.values())

    @property
    def spend_30d_total(self) -> Decimal | None:
        return None if self.spend_30d_own is None else self.spend_30d_credit + self.spend_30d_own

    @property
    def campaigns_paused_funds(self) -> int:
        return self.campaigns_by_status.get(CampaignStatus.PAUSED_FUNDS, 0)

    @property
    def campaigns_paused_limit(self) -> int:
        """R43: paused because the account's spending limit is reached."""
        return self.campaigns_by_status.get(CampaignStatus.PAUSED_LIMIT, 0)


def advertiser_summary(*, advertiser, role) -> AdvertiserSummary:
    """Campaign counts for everyone; balances and 30-day spend only for payments readers (R1)."""
    counts = dict(
        Campaign.objects.filter(advertiser=advertiser).values_list("status").annotate(n=Count("pk")).order_by()
    )
    summary = AdvertiserSummary({s: counts.get(s, 0) for s in CampaignStatus.values}, None, None, None)
    if can(role, "payments_read"):
        summary.balances = advertiser_balances(advertiser=advertiser)
        days = spend_by_day(advertiser=advertiser)
        summary.spend_30d_credit = sum((d.credit for d in days), Decimal(0))
        summary.spend_30d_own = sum((d.own for d in days), Decimal(0))
    return summary


def campaign_list(*, advertiser) -> list[Campaign]:
    """The advertiser's campaigns: those paused by billing (funds, spending limit) first, then by name."""
    campaigns = list(Campaign.objects.filter(advertiser=advertiser).order_by("name", "pk"))
    held = (CampaignStatus.PAUSED_FUNDS, CampaignStatus.PAUSED_LIMIT)
    return sorted(campaigns, key=lambda c: c.status not in held)
