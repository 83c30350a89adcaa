"""Adding funds by card from the dashboard (SPEC R23, R29): charge the gateway, then deposit.

The idempotency key comes from the form (generated when the page was shown), so a double
submit, a reload or a retry after a timeout charges the card at most once and deposits at most
once. Only the card's last four digits are stored.
"""

from decimal import Decimal

from billing.deposits import deposit_create, deposit_limits, deposit_tax
from billing.gateway import PaymentGateway, card_digits, get_gateway
from billing.models import Deposit
from billing.money import fmt, parse_amount
from portal.errors import BadInput, BusinessError, Conflict
from portal.models import AdvertiserStatus, BillingMethod


def deposit_amount_check(*, advertiser, amount) -> Decimal:
    """Parse an amount typed by the payer and check it against the deposit limits (R4, R23)."""
    amount = parse_amount(amount, advertiser.currency, field="The amount")
    low, high = deposit_limits(advertiser.currency)
    if not low <= amount <= high:
        raise BusinessError(
            "deposit_out_of_range",
            f"A deposit must be between {fmt(low, advertiser.currency)} and {fmt(high, advertiser.currency)} "
            f"{advertiser.currency}.",
        )
    return amount


def card_deposit_create(
    *, advertiser, amount, card_number: str, idempotency_key: str, gateway: PaymentGateway | None = None
) -> tuple[Deposit, bool]:
    """Charge the card and load the cash balance; returns the deposit and whether it is new.

    Declines and timeouts record nothing (BusinessError `card_declined` / `payment_timeout`).
    """
    amount = parse_amount(amount, advertiser.currency)
    if not isinstance(idempotency_key, str) or not idempotency_key.strip():
        raise BadInput("invalid_idempotency_key", "The form has expired; reload the page and try again.")
    prior = Deposit.objects.filter(advertiser=advertiser, idempotency_key=idempotency_key).first()
    if prior is not None:
        if prior.amount != amount:
            raise Conflict("idempotency_key_reused", "This form was already used for another deposit; reload the page.")
        return prior, False  # a double submit: the first deposit stands, the card is not charged again
    if advertiser.billing_method != BillingMethod.MANUAL:
        raise BusinessError(
            "deposit_not_allowed",
            "Deposits are for manual-payment accounts; this account pays by "
            f"{advertiser.get_billing_method_display().lower()}.",
        )
    if advertiser.status == AdvertiserStatus.CLOSED:
        raise BusinessError("account_closed", "This advertiser account is closed.")
    amount = deposit_amount_check(advertiser=advertiser, amount=amount)
    number = card_digits(card_number)
    tax = deposit_tax(advertiser, amount)  # R38: the card pays the deposit and its tax
    result = (gateway or get_gateway()).charge(
        amount=amount + tax, currency=advertiser.currency, card_number=number, idempotency_key=idempotency_key
    )
    if result.status == "timeout":
        raise BusinessError("payment_timeout", result.message)
    if not result.approved:
        raise BusinessError("card_declined", result.message or "Your card was declined.")
    deposit = deposit_create(
        advertiser=advertiser, amount=amount, idempotency_key=idempotency_key, source="web", card_last4=number[-4:],
        tax=tax,
    )
    return deposit, True
