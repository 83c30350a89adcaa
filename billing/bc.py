"""Business Center cash (API.md `POST /business-centers/{id}/deposits`).

A BC holds its own cash balance (ledger account `bc_cash`), later moved to its advertisers with
`/bc/transfer/`. A deposit books Dr BC payments received, Cr BC cash. It is idempotent by key per
BC: each deposit is a `BCDeposit` row, unique by (Business Center, key) in the database, looked up
under the BC row lock, so a replay returns the first deposit and a reused key with another amount
is a Conflict. The same per-currency deposit limits as advertiser deposits apply (R23).
"""

from decimal import Decimal

from django.db import transaction

from billing.deposits import _check_key, deposit_limits
from billing.ledger import Posting, ledger_post
from billing.models import BCDeposit, LedgerAccount, Purpose, TxKind
from billing.money import ZERO, fmt, parse_amount
from portal.errors import BusinessError, Conflict


def _memo(key: str) -> str:
    return f"BC deposit [{key}]"


def bc_accounts(business_center) -> dict[str, LedgerAccount]:
    return {a.purpose: a for a in LedgerAccount.objects.filter(business_center=business_center)}


def bc_cash_balance(*, business_center) -> Decimal:
    acct = LedgerAccount.objects.filter(business_center=business_center, purpose=Purpose.BC_CASH).first()
    return acct.balance if acct else ZERO


def bc_deposit_create(*, business_center, amount, idempotency_key: str) -> BCDeposit:
    """Load a Business Center's cash balance; returns the deposit (the first one, on a replay)."""
    from portal.models import BusinessCenter

    amount = parse_amount(amount, business_center.currency)
    key = _check_key(idempotency_key)
    with transaction.atomic():
        bc = BusinessCenter.objects.select_for_update().get(pk=business_center.pk)
        prior = BCDeposit.objects.filter(business_center=bc, idempotency_key=key).first()
        if prior is not None:
            if prior.amount != amount:
                raise Conflict(
                    "idempotency_key_reused",
                    f"idempotency_key {key!r} was already used for a deposit of {fmt(prior.amount, bc.currency)}.",
                )
            return prior
        low, high = deposit_limits(bc.currency)
        if not low <= amount <= high:
            raise BusinessError(
                "deposit_out_of_range",
                f"A deposit must be between {fmt(low, bc.currency)} and {fmt(high, bc.currency)} {bc.currency}.",
            )
        acc = bc_accounts(bc)
        p = Posting(kind=TxKind.BC_DEPOSIT, currency=bc.currency, amount=amount, lines=[], business_center_id=bc.pk,
                    memo=_memo(key))
        p.move(debit=acc[Purpose.BC_SETTLEMENT], credit=acc[Purpose.BC_CASH], amount=amount)
        return BCDeposit.objects.create(business_center=bc, amount=amount, idempotency_key=key,
                                        transaction=ledger_post(p))
