"""The funding waterfall (SPEC R10–R12): how one charge is paid. Pure — no database.

Order: (1) at most one discount credit, the one expiring soonest; (2) assignable coupons assigned
to the campaign; (3) free credits; (4) the billing method's money. Within 2 and 3: earliest
`expires_at`, then earliest `valid_from`, then lowest id. Every step takes as much as it can of
what is left, so the parts always add up to the charge.
"""

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from billing.money import ZERO, round_down

MANUAL = "manual"
AUTOMATIC = "automatic"
MONTHLY_INVOICE = "monthly_invoice"


def campaign_eligible(*, objectives, product_source: str, objective: str, campaign_product_source: str) -> bool:
    """R5: a credit (or a ladder program, R17) limited to some objectives or to a product source
    counts only for campaigns of those; empty limits mean every campaign. The one definition:
    the waterfall, the credit model and the ladder ask it."""
    if objectives and objective not in objectives:
        return False
    if product_source and campaign_product_source != product_source:
        return False
    return True


@dataclass
class CreditState:
    """What the waterfall needs to know of one credit; `remaining` is decremented as it pays."""

    id: int
    kind: str  # free | assignable | discount
    remaining: Decimal  # for a discount: the cap left
    valid_from: datetime
    expires_at: datetime
    percent: Decimal | None = None
    eligible_objectives: tuple = ()
    eligible_product_source: str = ""
    campaign_ids: frozenset = frozenset()
    usable: bool = True  # status active and the account's credit not frozen

    def order_key(self):
        return (self.expires_at, self.valid_from, self.id)

    def pays(self, *, campaign_id: int, objective: str, product_source: str, occurred_at: datetime) -> bool:
        if not self.usable or self.remaining <= 0:
            return False
        if not (self.valid_from <= occurred_at < self.expires_at):
            return False
        if not campaign_eligible(objectives=self.eligible_objectives, product_source=self.eligible_product_source,
                                 objective=objective, campaign_product_source=product_source):
            return False
        if self.kind == "assignable" and campaign_id not in self.campaign_ids:
            return False
        return True


@dataclass
class Charge:
    amount: Decimal
    currency: str
    campaign_id: int
    objective: str
    product_source: str
    occurred_at: datetime
    kind: str = "ad_spend"  # or "fee": never paid by credit (R8)


@dataclass
class Funds:
    """The billing method's money (step 4), decremented as it pays."""

    billing_method: str
    cash: Decimal = ZERO  # prepaid cash balance (manual payment, or left from it)
    credit_line_available: Decimal = ZERO  # monthly invoicing: limit − used


@dataclass
class Allocation:
    discount: Decimal = ZERO
    discount_credit_id: int | None = None
    coupons: list = field(default_factory=list)  # [(credit_id, amount)]
    credits: list = field(default_factory=list)  # [(credit_id, amount)]
    cash: Decimal = ZERO
    accrued: Decimal = ZERO
    credit_line: Decimal = ZERO
    arrears: Decimal = ZERO

    @property
    def own_money(self) -> Decimal:
        """The part not paid by any credit or discount: what the advertiser pays or owes."""
        return self.qualifying + self.arrears

    @property
    def qualifying(self) -> Decimal:
        """R17's "paid with the advertiser's own money (cash, payment method, credit line)": the
        part of a charge that counts toward a ladder. Arrears are owed, not paid, and never count,
        not even once a deposit settles them (decision 0019). The one definition: the ladder,
        the pages and the demo read it here."""
        return self.cash + self.accrued + self.credit_line

    def total(self) -> Decimal:
        return (
            self.discount
            + sum((a for _, a in self.coupons), ZERO)
            + sum((a for _, a in self.credits), ZERO)
            + self.own_money
        )


def allocate(charge: Charge, credits: list[CreditState], funds: Funds) -> Allocation:
    """Pay `charge`; mutates the `remaining` of the credits used and the `funds`."""
    alloc = Allocation()
    left = charge.amount
    if charge.kind == "ad_spend":
        usable = sorted(
            (
                c
                for c in credits
                if c.pays(
                    campaign_id=charge.campaign_id,
                    objective=charge.objective,
                    product_source=charge.product_source,
                    occurred_at=charge.occurred_at,
                )
            ),
            key=CreditState.order_key,
        )
        discount = next((c for c in usable if c.kind == "discount"), None)
        if discount is not None:
            take = min(round_down(charge.amount * discount.percent / 100, charge.currency), discount.remaining, left)
            if take > 0:
                discount.remaining -= take
                left -= take
                alloc.discount, alloc.discount_credit_id = take, discount.id
        for kind, bucket in (("assignable", alloc.coupons), ("free", alloc.credits)):
            for c in usable:
                if left <= 0:
                    break
                if c.kind != kind:
                    continue
                take = min(c.remaining, left)
                c.remaining -= take
                left -= take
                bucket.append((c.id, take))
    if left > 0:
        # Prepaid cash goes first whatever the method: an account that switched away from manual
        # payment spends what it had loaded before anything is billed (docs/decisions/0006).
        take = min(funds.cash, left)
        funds.cash -= take
        alloc.cash = take
        left -= take
    if left > 0:
        if funds.billing_method == AUTOMATIC:
            alloc.accrued = left
        elif funds.billing_method == MONTHLY_INVOICE:
            take = min(funds.credit_line_available, left)
            funds.credit_line_available -= take
            alloc.credit_line = take
            alloc.arrears = left - take
        else:
            alloc.arrears = left
    return alloc
