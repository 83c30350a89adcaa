"""Reads for the Credits table (Tools → Payments → Credits, SPEC R5–R7, R34): three queries."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Q, Sum
from django.utils import timezone

from billing.models import DEBIT, TxKind
from portal.models import Campaign, Objective, ProductSource
from promotions.models import Credit, CreditKind, CreditStatus

EXPIRING_SOON = timedelta(days=7)
OPEN_STATUSES = (CreditStatus.ACTIVE, CreditStatus.PENDING, CreditStatus.FROZEN)


@dataclass
class CreditRow:
    credit: Credit
    remaining: Decimal
    used: Decimal
    used_percent: int
    expiring_soon: bool
    objectives: list[str]
    product_source: str
    campaigns: list[Campaign]
    assignable_campaigns: list[Campaign] = field(default_factory=list)  # for the admin's assign form

    @property
    def is_open(self) -> bool:
        return self.credit.status in OPEN_STATUSES

    @property
    def is_coupon(self) -> bool:
        return self.credit.kind == CreditKind.ASSIGNABLE

    @property
    def can_assign(self) -> bool:
        return self.is_coupon and self.credit.status in OPEN_STATUSES

    @property
    def assigned_ids(self) -> set[int]:
        return {c.pk for c in self.campaigns}


def credit_rows(*, advertiser, at: datetime | None = None, with_campaigns: bool = False) -> list[CreditRow]:
    """Open credits first (soonest expiry first), then closed ones (latest expiry first).

    `used` is what the credit paid for ad spend (its debits in charges), so an expired credit
    shows what it paid, not what was forfeited. `with_campaigns` also lists, for each open
    coupon, the campaigns it could be assigned to: those it is eligible for, plus any assigned.
    """
    at = at or timezone.now()
    credits = list(
        Credit.objects.filter(advertiser=advertiser)
        .select_related("ledger_account")
        .prefetch_related("campaigns")
        .annotate(
            spent=Sum(
                "ledger_account__entries__amount",
                filter=Q(ledger_account__entries__side=DEBIT, ledger_account__entries__transaction__kind=TxKind.CHARGE),
            )
        )
        .order_by("expires_at", "pk")
    )
    all_campaigns = list(Campaign.objects.filter(advertiser=advertiser).order_by("name", "pk")) if with_campaigns else []
    open_rows, closed_rows = [], []
    for c in credits:
        used = c.spent or Decimal(0)
        assigned = sorted(c.campaigns.all(), key=lambda x: (x.name, x.pk)) if c.kind == CreditKind.ASSIGNABLE else []
        row = CreditRow(
            credit=c,
            remaining=c.ledger_account.balance,
            used=used,
            used_percent=min(100, int(used * 100 / c.amount)),
            expiring_soon=c.status == CreditStatus.ACTIVE and at <= c.expires_at < at + EXPIRING_SOON,
            objectives=[Objective(o).label if o in Objective.values else o for o in c.eligible_objectives or []],
            product_source=ProductSource(c.eligible_product_source).label if c.eligible_product_source else "",
            campaigns=assigned,
        )
        if with_campaigns and row.can_assign:
            ids = row.assigned_ids
            row.assignable_campaigns = [
                camp for camp in all_campaigns
                if camp.pk in ids or c.is_eligible_for(objective=camp.objective, product_source=camp.product_source)
            ]
        (open_rows if c.status in OPEN_STATUSES else closed_rows).append(row)
    return open_rows + closed_rows[::-1]
