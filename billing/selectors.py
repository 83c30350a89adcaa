"""Reads of money state. Each costs a constant number of queries however much history exists."""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Q, Sum

from billing.models import Bill, BillKind, BillStatus, LedgerAccount, Purpose, SpendEvent
from billing.money import ZERO
from portal import inputs
from portal.errors import NotFound
from promotions.models import CreditKind, CreditStatus


@dataclass
class Balances:
    currency: str
    cash_balance: Decimal
    arrears: Decimal
    credit_balance: Decimal  # usable free credit and coupons
    frozen_credit_balance: Decimal
    discount_cap_remaining: Decimal
    accrued: Decimal
    outstanding_bills: Decimal
    credit_line_limit: Decimal
    credit_line_used: Decimal
    billing_threshold: Decimal | None
    next_bill_date: datetime | None


UNPAID = [BillStatus.OPEN, BillStatus.FAILED, BillStatus.OVERDUE]


def advertiser_balances(*, advertiser) -> Balances:
    """Stored balances (R14): three queries whatever the number of entries, credits or bills."""
    acc = {a.purpose: a.balance for a in LedgerAccount.objects.filter(advertiser=advertiser).exclude(purpose=Purpose.PROMO_CREDIT)}
    live = Q(credit__status=CreditStatus.ACTIVE)
    frozen = Q(credit__status=CreditStatus.FROZEN)
    sums = LedgerAccount.objects.filter(advertiser=advertiser, purpose=Purpose.PROMO_CREDIT).aggregate(
        usable_sum=Sum("balance", filter=live & ~Q(credit__kind=CreditKind.DISCOUNT)),
        discount_sum=Sum("balance", filter=live & Q(credit__kind=CreditKind.DISCOUNT)),
        frozen_sum=Sum("balance", filter=frozen & ~Q(credit__kind=CreditKind.DISCOUNT)),
    )
    credit, discount, frozen_sum = (sums["usable_sum"] or ZERO, sums["discount_sum"] or ZERO, sums["frozen_sum"] or ZERO)
    if not advertiser.credit_usable:  # frozen, suspended or closed: credit takes no part (R12)
        credit, frozen_sum = ZERO, frozen_sum + credit
    unpaid_invoices = Bill.objects.filter(
        advertiser=advertiser, kind=BillKind.MONTHLY_INVOICE, status__in=UNPAID
    ).aggregate(s=Sum("amount"))["s"]
    return Balances(
        currency=advertiser.currency,
        cash_balance=acc.get(Purpose.CASH, ZERO),
        arrears=acc.get(Purpose.ARREARS, ZERO),
        credit_balance=credit,
        frozen_credit_balance=frozen_sum,
        discount_cap_remaining=discount if advertiser.credit_usable else ZERO,
        accrued=acc.get(Purpose.ACCRUED, ZERO),
        outstanding_bills=acc.get(Purpose.BILLED, ZERO) + (unpaid_invoices or ZERO),
        credit_line_limit=advertiser.credit_line_limit,
        credit_line_used=acc.get(Purpose.CREDIT_LINE, ZERO),
        # both belong to automatic payment (R24): an account that left it has neither
        billing_threshold=advertiser.billing_threshold if advertiser.billing_method == "automatic" else None,
        next_bill_date=advertiser.next_bill_at if advertiser.billing_method == "automatic" else None,
    )


def charge_of(*, advertiser, event_id) -> SpendEvent:
    """One charge of the advertiser by its `event_id` as a door received it (R15): checked as
    a key, or NotFound — another advertiser's event is not found either."""
    event_id = inputs.key(event_id, field="event_id", max_length=SpendEvent._meta.get_field("event_id").max_length,
                          code="invalid_event_id")
    event = SpendEvent.objects.filter(advertiser=advertiser, event_id=event_id).first()
    if event is None:
        raise NotFound("charge")
    return event

