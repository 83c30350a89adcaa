"""The charge explainer (SPEC R48): for one charge, how it was paid and, for every credit of the
account, that it paid (and how much) or the first reason it did not.

The allocation is the stored one, rebuilt from the ledger (`billing.spend.allocations_for`): the
ledger is the only record of how a charge was paid. The reasons are worked out as the waterfall
saw the charge: at its `occurred_at`, with each credit's balance just before the charge's ledger
transaction (the sum of that credit account's entries in the transactions booked before it — an
advertiser's transactions are booked under its lock, so their ids are in booking order) and with
the account's freeze as it stood when the charge was booked (its freeze history).

Checks, in the waterfall's order (`billing.waterfall.allocate` and `CreditState.pays`); the first
that fails is the reason:

1. `fee_not_payable` — a fee is never paid by credit (R8); the waterfall looks at no credit.
2. `not_valid_yet` — the credit was not issued yet when the charge was booked, or it is pending
   (R21), or the charge occurred before its `valid_from` (R9).
3. `frozen` — the account's credit was frozen (or the account is suspended or closed) (R12, R30).
4. `discount_cap_reached` (a discount) / `used_up` (any other) — nothing was left before it.
5. `expired` — the charge occurred at or after `expires_at` (R9).
6. `objective_not_eligible`, 7. `product_source_not_eligible` — the campaign's (R5).
8. `not_assigned` — a coupon not assigned to the campaign (R6).
9. `one_discount_per_charge` — an eligible discount, but another one expiring sooner took the
   charge (R10 step 1).
10. `nothing_left_to_pay` — eligible, but the credits before it in the waterfall paid the whole
    charge (or, for the one discount, its share rounded down to nothing).

Coupon assignments are read as they are now: the portal keeps no history of them
(docs/decisions/0035-insight.md).
"""

from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Case, DecimalField, F, Min, Q, Sum, When

from billing.models import CREDIT, LedgerEntry, SpendEvent, SpendKind
from billing.spend import allocations_for
from billing.waterfall import Allocation, Charge, CreditState, Funds, allocate, campaign_eligible
from promotions.models import Credit, CreditKind, CreditStatus, FreezeEvent

PAID = "paid"
NOT_VALID_YET = "not_valid_yet"
EXPIRED = "expired"
OBJECTIVE_NOT_ELIGIBLE = "objective_not_eligible"
PRODUCT_SOURCE_NOT_ELIGIBLE = "product_source_not_eligible"
NOT_ASSIGNED = "not_assigned"
FROZEN = "frozen"
USED_UP = "used_up"
DISCOUNT_CAP_REACHED = "discount_cap_reached"
ONE_DISCOUNT_PER_CHARGE = "one_discount_per_charge"
FEE_NOT_PAYABLE = "fee_not_payable"
NOTHING_LEFT_TO_PAY = "nothing_left_to_pay"

REASONS = {
    PAID: "Paid part of this charge",
    NOT_VALID_YET: "Not valid yet when the charge occurred",
    EXPIRED: "Expired before the charge occurred",
    OBJECTIVE_NOT_ELIGIBLE: "Not for this campaign's objective",
    PRODUCT_SOURCE_NOT_ELIGIBLE: "Not for this campaign's product source",
    NOT_ASSIGNED: "Coupon not assigned to this campaign",
    FROZEN: "Frozen: the account's credit was frozen",
    USED_UP: "Used up before this charge",
    DISCOUNT_CAP_REACHED: "Discount cap already reached",
    ONE_DISCOUNT_PER_CHARGE: "Another discount, expiring sooner, applied (one discount per charge)",
    FEE_NOT_PAYABLE: "A fee is never paid by credit",
    NOTHING_LEFT_TO_PAY: "Nothing left to pay: credit before it in the order paid the charge",
}


@dataclass
class CreditExplanation:
    credit: Credit
    reason: str  # "paid" or an R48 code
    paid: Decimal  # what it paid of the charge (0 unless reason is "paid")
    balance_before: Decimal  # its balance (a discount's cap left) just before the charge

    @property
    def credit_id(self) -> int:
        return self.credit.pk

    @property
    def reason_text(self) -> str:
        return REASONS[self.reason]


@dataclass
class Explanation:
    event: SpendEvent
    allocation: Allocation
    frozen: bool  # the account's credit took no part when the charge was booked
    credits: list[CreditExplanation] = field(default_factory=list)

    @property
    def credit_paid(self) -> Decimal:
        return sum((c.paid for c in self.credits), Decimal(0))


def _paid_by(alloc: Allocation) -> dict[int, Decimal]:
    paid = {pk: amount for pk, amount in alloc.coupons + alloc.credits}
    if alloc.discount_credit_id:
        paid[alloc.discount_credit_id] = alloc.discount
    return paid


def _frozen_at_booking(advertiser, booked_at) -> bool:
    """R12, R30: whether the account's credit took no part when the charge was booked: its freeze
    as the freeze history has it then (or as it is now, for an account with no history), and
    a suspended or closed account now."""
    if advertiser.status != "active":
        return True
    last = FreezeEvent.objects.filter(advertiser=advertiser, created_at__lte=booked_at).order_by(
        "-created_at", "-pk").values_list("frozen", flat=True).first()
    if last is None:
        if FreezeEvent.objects.filter(advertiser=advertiser).exists():
            return False  # frozen only later
        return advertiser.credit_frozen
    return last


def _balances_before(credits: list[Credit], tx_id: int) -> dict[int, tuple[Decimal, int | None]]:
    """Per credit account: (its balance once every transaction before `tx_id` was booked, the id
    of its first transaction). One aggregate query."""
    signed = Case(When(side=CREDIT, then=F("amount")), default=-F("amount"),
                  output_field=DecimalField(max_digits=20, decimal_places=4))
    rows = (
        LedgerEntry.objects.filter(account_id__in=[c.ledger_account_id for c in credits])
        .values("account_id")
        .annotate(before=Sum(signed, filter=Q(transaction_id__lt=tx_id)), first=Min("transaction_id"))
        .order_by()
    )
    return {r["account_id"]: (r["before"] or Decimal(0), r["first"]) for r in rows}


def charge_explain(*, event: SpendEvent) -> Explanation:
    """R48 for one booked charge: six queries whatever the number of credits or charges."""
    event = SpendEvent.objects.select_related("advertiser", "campaign", "transaction").get(pk=event.pk)
    advertiser, campaign, tx = event.advertiser, event.campaign, event.transaction
    alloc = allocations_for([event])[event.event_id]
    paid = _paid_by(alloc)
    credits = list(Credit.objects.filter(advertiser=advertiser).select_related("ledger_account")
                   .prefetch_related("campaigns").order_by("expires_at", "valid_from", "pk"))
    frozen = _frozen_at_booking(advertiser, tx.created_at)
    balances = _balances_before(credits, tx.pk) if credits else {}
    at = event.occurred_at
    out = Explanation(event=event, allocation=alloc, frozen=frozen)

    reasons: dict[int, str] = {}
    contenders: list[CreditState] = []  # the credits that pass every check: they meet in the waterfall
    for c in credits:
        before, first_tx = balances.get(c.ledger_account_id, (Decimal(0), None))
        assigned = frozenset(x.pk for x in c.campaigns.all())
        reason = None
        if event.kind == SpendKind.FEE:
            reason = FEE_NOT_PAYABLE
        elif first_tx is None or first_tx > tx.pk or c.status == CreditStatus.PENDING or at < c.valid_from:
            reason = NOT_VALID_YET
        elif frozen:
            reason = FROZEN
        elif before <= 0:
            reason = DISCOUNT_CAP_REACHED if c.kind == CreditKind.DISCOUNT else USED_UP
        elif at >= c.expires_at:
            reason = EXPIRED
        elif not campaign_eligible(objectives=c.eligible_objectives, product_source="", objective=campaign.objective,
                                   campaign_product_source=campaign.product_source):
            reason = OBJECTIVE_NOT_ELIGIBLE
        elif not campaign_eligible(objectives=(), product_source=c.eligible_product_source,
                                   objective=campaign.objective, campaign_product_source=campaign.product_source):
            reason = PRODUCT_SOURCE_NOT_ELIGIBLE
        elif c.kind == CreditKind.ASSIGNABLE and campaign.pk not in assigned:
            reason = NOT_ASSIGNED
        if reason is None:
            contenders.append(CreditState(
                id=c.pk, kind=c.kind, remaining=before, valid_from=c.valid_from, expires_at=c.expires_at,
                percent=c.percent, eligible_objectives=tuple(c.eligible_objectives or ()),
                eligible_product_source=c.eligible_product_source, campaign_ids=assigned,
            ))
        else:
            reasons[c.pk] = reason

    # the contenders through the waterfall itself: who is the one discount, who was left nothing
    replay = allocate(Charge(event.amount, event.currency, campaign.pk, campaign.objective, campaign.product_source,
                             at, event.kind), contenders, Funds(billing_method="automatic"))
    replayed = _paid_by(replay)
    chosen_discount = min((s for s in contenders if s.kind == CreditKind.DISCOUNT), key=CreditState.order_key,
                          default=None)
    for s in contenders:
        if s.id in replayed:
            reasons[s.id] = PAID
        elif s.kind == CreditKind.DISCOUNT and s is not chosen_discount:
            reasons[s.id] = ONE_DISCOUNT_PER_CHARGE
        else:
            reasons[s.id] = NOTHING_LEFT_TO_PAY

    for c in credits:
        before = balances.get(c.ledger_account_id, (Decimal(0), None))[0]
        reason = PAID if c.pk in paid else reasons[c.pk]
        if reason == PAID and c.pk not in paid:
            # the replay would have paid it but the ledger says it did not: the ledger is the record
            reason = NOTHING_LEFT_TO_PAY
        out.credits.append(CreditExplanation(credit=c, reason=reason, paid=paid.get(c.pk, Decimal(0)),
                                             balance_before=before))
    return out
