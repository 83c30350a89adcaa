"""An independent, sequential model of how a charge is paid (SPEC R7, R9–R13, R23), and an
independent recomputation of the ledger from its rows (R11, R14).

Written from the SPEC text, not from billing/waterfall.py: plain dicts and loops, no shared code
but `round_down` (R7 names the rounding rule; billing/money.py is where the system keeps it). The
property tests drive the real services and this model with the same operations and demand the
same answer, to the minor unit.

R10, as the model reads it. A charge of amount A on campaign C at time t is paid:
  1. by at most one discount credit — of those eligible for C at t, the one expiring soonest —
     taking min(round_down(A × P / 100), its cap left);
  2. by coupons assigned to C, eligible at t, each taking as much as it can of what is left;
  3. by free credits eligible for C at t, likewise;
  4. by the advertiser's money: prepaid cash first whatever the method (decision 0006: an account
     that switched from manual payment spends what it loaded), then manual → arrears (R13);
     automatic → the current bill; monthly invoicing → the credit line, then arrears.
Within a step: earliest expires_at, then earliest valid_from, then lowest id (the spec gives this
order for steps 2 and 3; step 1 uses it to break ties between discounts expiring together).
"Eligible at t" means: the credit is active, its account takes part in billing (R12: not frozen,
not suspended or closed), something is left, valid_from ≤ t < expires_at (R9), the campaign's
objective and product source match (empty = all). A fee is never paid by credit (R8).
"""

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db import connection

from billing.money import round_down

ZERO = Decimal(0)


@dataclass
class RefCredit:
    id: int
    kind: str  # "free" | "assignable" | "discount"
    left: Decimal  # remaining amount; for a discount, the cap left
    valid_from: datetime
    expires_at: datetime
    percent: Decimal | None = None
    objectives: frozenset = frozenset()
    product_source: str = ""
    campaigns: set = field(default_factory=set)  # coupons: assigned campaign ids
    active: bool = True
    ended: str = ""  # "expired" once forfeited (R7 expiry, or the account closed, R23)


@dataclass
class RefCampaign:
    id: int
    objective: str
    product_source: str
    status: str = "active"


@dataclass
class RefPayment:
    """How one charge was paid. Parts that paid nothing are left out."""

    discount: tuple | None = None  # (credit_id, amount)
    coupons: list = field(default_factory=list)  # [(credit_id, amount)]
    credits: list = field(default_factory=list)  # [(credit_id, amount)]
    cash: Decimal = ZERO
    accrued: Decimal = ZERO
    credit_line: Decimal = ZERO
    arrears: Decimal = ZERO

    def total(self) -> Decimal:
        out = self.cash + self.accrued + self.credit_line + self.arrears
        if self.discount:
            out += self.discount[1]
        for _, amount in self.coupons + self.credits:
            out += amount
        return out


class RefAccount:
    """One advertiser: its credits, its money, its campaigns."""

    def __init__(self, *, currency: str = "USD", billing_method: str = "manual", credit_line_limit=ZERO):
        self.currency = currency
        self.billing_method = billing_method
        self.credit_line_limit = Decimal(credit_line_limit)
        self.cash = ZERO
        self.arrears = ZERO
        self.accrued = ZERO
        self.credit_line_used = ZERO
        self.credit_takes_part = True  # R12: False when frozen, suspended or closed
        self.credits: dict[int, RefCredit] = {}
        self.campaigns: dict[int, RefCampaign] = {}

    # --- R10 ----------------------------------------------------------------------------------

    def _eligible(self, credit: RefCredit, campaign: RefCampaign, t: datetime) -> bool:
        if not self.credit_takes_part or not credit.active or credit.left <= 0:
            return False
        if t < credit.valid_from or t >= credit.expires_at:
            return False
        if credit.objectives and campaign.objective not in credit.objectives:
            return False
        if credit.product_source and credit.product_source != campaign.product_source:
            return False
        if credit.kind == "assignable" and campaign.id not in credit.campaigns:
            return False
        return True

    @staticmethod
    def _order(credit: RefCredit):
        return (credit.expires_at, credit.valid_from, credit.id)

    def charge(self, *, amount: Decimal, campaign_id: int, at: datetime, kind: str = "ad_spend") -> RefPayment:
        campaign = self.campaigns[campaign_id]
        pay = RefPayment()
        rest = amount
        if kind == "ad_spend":
            # step 1: one discount, the one expiring soonest
            discounts = [c for c in self.credits.values() if c.kind == "discount" and self._eligible(c, campaign, at)]
            if discounts:
                d = min(discounts, key=self._order)
                off = min(round_down(amount * d.percent / 100, self.currency), d.left)
                if off > 0:
                    d.left -= off
                    rest -= off
                    pay.discount = (d.id, off)
            # steps 2 and 3
            for kind_, parts in (("assignable", pay.coupons), ("free", pay.credits)):
                for c in sorted(self.credits.values(), key=self._order):
                    if rest == 0:
                        break
                    if c.kind == kind_ and self._eligible(c, campaign, at):
                        used = c.left if c.left < rest else rest
                        c.left -= used
                        rest -= used
                        parts.append((c.id, used))
        # step 4: prepaid cash first whatever the method (an account that switched away from
        # manual payment spends what it loaded before anything is billed, decision 0006)
        if rest > 0:
            pay.cash = min(self.cash, rest)
            self.cash -= pay.cash
            rest -= pay.cash
        if rest > 0:
            if self.billing_method == "manual":
                pay.arrears = rest
                self.arrears += rest
            elif self.billing_method == "automatic":
                pay.accrued = rest
                self.accrued += rest
            else:
                available = max(self.credit_line_limit - self.credit_line_used, ZERO)
                pay.credit_line = min(available, rest)
                pay.arrears = rest - pay.credit_line
                self.credit_line_used += pay.credit_line
                self.arrears += pay.arrears
        # R13, R27: uncovered spend, or a used-up credit line, pauses delivery
        line_used_up = self.billing_method == "monthly_invoice" and self.credit_line_used >= self.credit_line_limit
        if self.arrears > 0 or line_used_up:
            for c in self.campaigns.values():
                if c.status == "active":
                    c.status = "paused_funds"
        return pay

    # --- R13, R23 -----------------------------------------------------------------------------

    # --- R7, R23 ------------------------------------------------------------------------------

    def expire(self, *, cutoff: datetime) -> None:
        """The expiry sweep: every credit still holding something and expired by `cutoff` is
        forfeited (frozen ones too: freezing stops use, not expiry)."""
        for c in self.credits.values():
            if not c.ended and c.left > 0 and c.expires_at <= cutoff:
                c.left, c.active, c.ended = ZERO, False, "expired"

    def refundable(self) -> bool:
        return self.cash > 0 and not (self.arrears or self.accrued or self.credit_line_used)

    def refund(self) -> Decimal:
        """R23: the cash comes back, the account closes, its credits are forfeited, its campaigns stop."""
        cash, self.cash = self.cash, ZERO
        for c in self.credits.values():
            if not c.ended and c.left > 0:
                c.left, c.active, c.ended = ZERO, False, "expired"
        self.credit_takes_part = False
        for camp in self.campaigns.values():
            camp.status = "paused"
        return cash

    def deposit(self, amount: Decimal) -> None:
        """Arrears are settled first, the rest is cash; once nothing is owed delivery resumes."""
        settle = min(self.arrears, amount)
        self.arrears -= settle
        self.cash += amount - settle
        if self.arrears == 0:
            for c in self.campaigns.values():
                if c.status == "paused_funds":
                    c.status = "active"


def normalise(allocation) -> RefPayment:
    """The real `billing.waterfall.Allocation` in the model's shape, so the two compare with ==."""
    return RefPayment(
        discount=(allocation.discount_credit_id, allocation.discount) if allocation.discount else None,
        coupons=list(allocation.coupons),
        credits=list(allocation.credits),
        cash=allocation.cash,
        accrued=allocation.accrued,
        credit_line=allocation.credit_line,
        arrears=allocation.arrears,
    )


# --- The ledger, recomputed with SQL from its rows ----------------------------------------------


def ledger_problems() -> list[str]:
    """Everything wrong with the ledger, recomputed from the entries (R11, R14); [] when sound.

    - a stored balance that differs from the sum of its entries (on its normal side);
    - a transaction whose debits and credits differ in some currency;
    - a negative stored balance.
    """
    problems = []
    with connection.cursor() as cur:
        cur.execute(
            """
            SELECT a.id, a.purpose, a.balance, COALESCE(s.total, 0)
              FROM billing_ledgeraccount a
              LEFT JOIN (
                    SELECT e.account_id,
                           SUM(CASE WHEN e.side = acc.normal THEN e.amount ELSE -e.amount END) AS total
                      FROM billing_ledgerentry e
                      JOIN billing_ledgeraccount acc ON acc.id = e.account_id
                     GROUP BY e.account_id
                   ) s ON s.account_id = a.id
             WHERE a.balance <> COALESCE(s.total, 0)
            """
        )
        problems += [f"account {r[0]} ({r[1]}): stored {r[2]} but entries sum to {r[3]}" for r in cur.fetchall()]
        cur.execute(
            """
            SELECT e.transaction_id, a.currency, SUM(CASE WHEN e.side = 'D' THEN e.amount ELSE -e.amount END)
              FROM billing_ledgerentry e JOIN billing_ledgeraccount a ON a.id = e.account_id
             GROUP BY e.transaction_id, a.currency
            HAVING SUM(CASE WHEN e.side = 'D' THEN e.amount ELSE -e.amount END) <> 0
            """
        )
        problems += [f"transaction {r[0]} unbalanced in {r[1]} by {r[2]}" for r in cur.fetchall()]
        cur.execute("SELECT id, purpose, balance FROM billing_ledgeraccount WHERE balance < 0")
        problems += [f"account {r[0]} ({r[1]}) negative: {r[2]}" for r in cur.fetchall()]
        cur.execute(
            """
            SELECT t.id FROM billing_ledgertransaction t
             WHERE NOT EXISTS (SELECT 1 FROM billing_ledgerentry e WHERE e.transaction_id = t.id)
            """
        )
        problems += [f"transaction {r[0]} has no entries" for r in cur.fetchall()]
    return problems


def entries_sum(account_id: int) -> Decimal:
    """An account's balance recomputed from its entries alone (SQL)."""
    with connection.cursor() as cur:
        cur.execute(
            """
            SELECT COALESCE(SUM(CASE WHEN e.side = a.normal THEN e.amount ELSE -e.amount END), 0)
              FROM billing_ledgeraccount a LEFT JOIN billing_ledgerentry e ON e.account_id = a.id
             WHERE a.id = %s
            """,
            [account_id],
        )
        return cur.fetchone()[0]


def purpose_balance(advertiser_id: int, purpose: str) -> Decimal:
    """An advertiser's account of one purpose, recomputed from its entries (SQL)."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT id FROM billing_ledgeraccount WHERE advertiser_id = %s AND purpose = %s", [advertiser_id, purpose]
        )
        (account_id,) = cur.fetchone()
    return entries_sum(account_id)
