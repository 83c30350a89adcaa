"""Rows of the credit list on the Promotions page (Tools → Payments → Promotions, SPEC R5–R7, R34).

`credit_rows` turns one page of credits into rows at a fixed cost: the page itself (with its ledger
accounts), the assigned campaigns, what each credit paid for ad spend, and — for an admin — the
campaigns a coupon could be assigned to.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Sum
from django.urls import reverse
from django.utils import dateformat, timezone

from billing.models import DEBIT, LedgerEntry, TxKind
from billing.money import format_money
from portal.models import Campaign, Objective, ProductSource
from promotions.models import Credit, CreditKind, CreditSource, CreditStatus

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
    # what the row prints, formatted once here (the template only places it: a page of 50 rows
    # costs what its strings cost, not 50 rows of filter and lookup resolution)
    text: dict = field(default_factory=dict)

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

    @property
    def remaining_percent(self) -> int:
        """What is left of the original amount (a discount's cap), for the Remaining bar."""
        return max(0, min(100, int(self.remaining * 100 / self.credit.amount)))


def credit_rows(*, credits, advertiser, at: datetime | None = None, with_campaigns: bool = False) -> list[CreditRow]:
    """Rows for `credits` (a page of `promotions.selectors.credits_query`), in its order.

    `used` is what the credit paid for ad spend (its debits in charges), so an expired credit
    shows what it paid, not what was forfeited. `with_campaigns` also lists, for each open
    coupon, the campaigns it could be assigned to: those it is eligible for, plus any assigned.
    """
    at = at or timezone.now()
    credits = list(credits.select_related("ledger_account").prefetch_related("campaigns"))
    if not credits:
        return []
    cur, tz = advertiser.currency, advertiser.tz
    kinds, sources, statuses = dict(CreditKind.choices), dict(CreditSource.choices), dict(CreditStatus.choices)
    usage_url = reverse("payments_credit_usage", args=[advertiser.pk, 0]).replace("/0/", "/{}/")
    assign_url = reverse("payments_credit_assign", args=[advertiser.pk, 0]).replace("/0/", "/{}/")
    spent = dict(
        LedgerEntry.objects.filter(
            account_id__in=[c.ledger_account_id for c in credits], side=DEBIT, transaction__kind=TxKind.CHARGE
        )
        .values_list("account_id")
        .annotate(total=Sum("amount"))
        .order_by()
    )
    coupons_open = with_campaigns and any(c.kind == CreditKind.ASSIGNABLE and c.status in OPEN_STATUSES for c in credits)
    all_campaigns = list(Campaign.objects.filter(advertiser=advertiser).order_by("name", "pk")) if coupons_open else []
    for camp in all_campaigns:  # the assign form's labels, once a page
        camp.objective_label = camp.get_objective_display()
        camp.source_label = camp.get_product_source_display() if camp.product_source != ProductSource.NONE else ""
    rows = []
    for c in credits:
        used = spent.get(c.ledger_account_id) or Decimal(0)
        assigned = sorted(c.campaigns.all(), key=lambda x: (x.name, x.pk)) if c.kind == CreditKind.ASSIGNABLE else []
        row = CreditRow(
            credit=c,
            remaining=c.ledger_account.balance,
            used=used,
            used_percent=min(100, int(used * 100 / c.amount)),
            # a frozen or pending credit's expiry does not move either (R30): flag it too
            expiring_soon=c.status in OPEN_STATUSES and at <= c.expires_at < at + EXPIRING_SOON,
            objectives=[Objective(o).label if o in Objective.values else o for o in c.eligible_objectives or []],
            product_source=ProductSource(c.eligible_product_source).label if c.eligible_product_source else "",
            campaigns=assigned,
        )
        valid_from, expires_at = c.valid_from.astimezone(tz), c.expires_at.astimezone(tz)
        expires, expires_title, expires_short = dateformat.format(expires_at, "M j, Y|M j, Y H:i T|j M").split("|")
        row.text = {
            "kind": kinds.get(c.kind, c.kind), "source": sources.get(c.source, c.source),
            "status": statuses.get(c.status, c.status), "amount": format_money(c.amount, cur),
            "remaining": format_money(row.remaining, cur), "used": format_money(used, cur),
            "valid_from": dateformat.format(valid_from, "M j, Y"), "expires": expires,
            "expires_iso": expires_at.isoformat(), "expires_title": expires_title, "expires_short": expires_short,
            "pk": str(c.pk), "kind_code": c.kind, "status_code": c.status, "expiring": row.expiring_soon,
            "coupon": row.is_coupon, "open": row.is_open, "can_assign": row.can_assign,
            "usage_url": usage_url.format(c.pk), "assign_url": assign_url.format(c.pk),
            "percent": str(row.remaining_percent), "label": f"{kinds.get(c.kind, c.kind)} #{c.pk}",
        }
        if coupons_open and row.can_assign:
            ids = row.assigned_ids
            row.assignable_campaigns = [
                camp for camp in all_campaigns
                if camp.pk in ids or c.is_eligible_for(objective=camp.objective, product_source=camp.product_source)
            ]
        rows.append(row)
    return rows
