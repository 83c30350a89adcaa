"""Business Center cash (API.md `POST /business-centers/{id}/deposits`).

A BC holds its own cash balance (ledger account `bc_cash`), later moved to its advertisers with
`/bc/transfer/`. A deposit books Dr BC payments received, Cr BC cash. It is idempotent by key per
BC: each deposit is a `BCDeposit` row, unique by (Business Center, key) in the database, looked up
under the BC row lock, so a replay returns the first deposit and a reused key with another amount
is a Conflict. The same per-currency deposit limits as advertiser deposits apply (R23).

`bc_transfer` moves that cash to and from the BC's advertisers (decision 0012).
"""

from decimal import Decimal, InvalidOperation

from django.db import transaction

from billing.deposits import campaigns_resume, deposit_limits, deposit_notify
from billing.ledger import Posting, advertiser_accounts, ledger_post, lock_advertisers
from billing.models import BC_TRANSFER, BCDeposit, BCTransfer, BCTransferType, Deposit, LedgerAccount, Purpose, TxKind
from billing.money import ZERO, fmt, parse_amount
from portal import inputs
from portal.audit import audit_record
from portal.errors import BadInput, BusinessError, Conflict, NotFound
from portal.models import Advertiser, AdvertiserStatus, BillingMethod, BusinessCenter


def _memo(key: str) -> str:
    return f"BC deposit [{key}]"


def bc_accounts(business_center) -> dict[str, LedgerAccount]:
    return {a.purpose: a for a in LedgerAccount.objects.filter(business_center=business_center)}


def bc_cash_balance(*, business_center) -> Decimal:
    acct = LedgerAccount.objects.filter(business_center=business_center, purpose=Purpose.BC_CASH).first()
    return acct.balance if acct else ZERO


def bc_deposit_create(*, business_center, amount, idempotency_key: str) -> BCDeposit:
    """Load a Business Center's cash balance; returns the deposit (the first one, on a replay)."""
    amount = parse_amount(amount, business_center.currency)
    key = inputs.key(idempotency_key, max_length=inputs.max_length(BCDeposit, "idempotency_key"))
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


# --- transfers between a Business Center and its advertisers (`POST /open_api/v1.3/bc/transfer/`) ---------

REQUEST_ID_MAX = 64


def bc_transfer(
    *, business_center, advertiser_id, transfer_type: str, cash_amount, grant_amount=None, request_id: str, by=None,
    reason: str = "",
) -> BCTransfer:
    """Move cash between a Business Center and one of its advertisers; returns the transfer (the first
    one, on a replay of the same `request_id`).

    RECHARGE moves BC cash to the advertiser and works like a deposit (R13, R23): it pays arrears
    first, the rest becomes cash, and campaigns paused for funds resume once nothing is owed. It is for
    manual-payment accounts that are not closed, as deposits are (decision 0005). REFUND moves
    advertiser cash back to the BC: only from a manual-payment account in good standing (active, no
    arrears) and at most its cash balance; unlike a refund to the card it does not close the account.

    Booking (decision 0012), one balanced transaction touching four accounts:
        RECHARGE  Dr BC cash            Cr BC payments received
                  Dr payments received  Cr arrears (first), cash (rest)     — the advertiser's
        REFUND    Dr cash               Cr payments received                 — the advertiser's
                  Dr BC payments received  Cr BC cash
    The money the BC received becomes money the advertiser's account received, so each side's
    "payments received" stays at least its cash and a later refund of the advertiser's cash to the
    card (`cash_refund`) still balances. On the advertiser's side a recharge is a `deposit`
    (a `Deposit` row with source `bc_transfer`, "From Business Center" on its Transactions page) and
    a refund a `refund`; the `BCTransfer` row links either to the BC.

    Any non-zero `grant_amount` is refused (`credit_not_transferable`, R8) before anything else.
    Idempotent by `request_id` per BC: the same id with the same advertiser, type and amount returns
    the first transfer; with anything else it is a Conflict. Locks the BC row, then the advertiser.
    A new transfer is audited (`by`, and staff's `reason`); a replay writes nothing.
    """
    transfer_grant_check(grant_amount)
    if transfer_type not in BCTransferType.values:
        raise BadInput("invalid_transfer_type", "transfer_type must be RECHARGE or REFUND.")
    key = inputs.key(request_id, field="request_id", max_length=REQUEST_ID_MAX, code="invalid_request_id")
    amount = parse_amount(cash_amount, business_center.currency, field="cash_amount")
    with transaction.atomic():
        bc = BusinessCenter.objects.select_for_update().get(pk=business_center.pk)
        adv_pk = inputs.object_id(advertiser_id, field="advertiser_id", code="invalid_advertiser_id")
        if not Advertiser.objects.filter(pk=adv_pk, business_center=bc).exists():
            raise NotFound("advertiser in this Business Center")
        adv = lock_advertisers([adv_pk])[adv_pk]
        prior = BCTransfer.objects.filter(business_center=bc, request_id=key).first()
        if prior is not None:
            if (prior.advertiser_id, prior.transfer_type, prior.amount) != (adv.pk, transfer_type, amount):
                raise Conflict(
                    "request_id_reused",
                    f"request_id {key!r} was already used for a {prior.transfer_type} of "
                    f"{fmt(prior.amount, bc.currency)} {bc.currency} for advertiser {prior.advertiser_id}.",
                )
            return prior
        if adv.currency != bc.currency:
            raise BusinessError(
                "currency_mismatch",
                f"The Business Center holds {bc.currency} and the advertiser's account is in {adv.currency}.",
            )
        if adv.billing_method != BillingMethod.MANUAL:
            raise BusinessError(
                "transfer_not_allowed",
                "Cash transfers are for manual-payment accounts; this account pays by "
                f"{adv.get_billing_method_display().lower()}.",
            )
        acc = advertiser_accounts([adv.pk])[adv.pk]
        bca = bc_accounts(bc)
        if transfer_type == BCTransferType.RECHARGE:
            if adv.status == AdvertiserStatus.CLOSED:
                raise BusinessError("account_closed", "This advertiser account is closed.")
            if bca[Purpose.BC_CASH].balance < amount:
                raise BusinessError(
                    "insufficient_bc_balance",
                    f"The Business Center's cash balance is {fmt(bca[Purpose.BC_CASH].balance, bc.currency)} "
                    f"{bc.currency}, less than {fmt(amount, bc.currency)}.",
                )
            to_arrears = min(acc[Purpose.ARREARS].balance, amount)
            p = Posting(kind=TxKind.DEPOSIT, currency=bc.currency, amount=amount, lines=[], advertiser_id=adv.pk,
                        business_center_id=bc.pk, memo=f"From Business Center {bc.name} [{key}]")
            p.move(debit=bca[Purpose.BC_CASH], credit=bca[Purpose.BC_SETTLEMENT], amount=amount)
            p.move(debit=acc[Purpose.SETTLEMENT], credit=acc[Purpose.ARREARS], amount=to_arrears)
            p.move(debit=acc[Purpose.SETTLEMENT], credit=acc[Purpose.CASH], amount=amount - to_arrears)
            tx = ledger_post(p)
            deposit = Deposit.objects.create(advertiser=adv, amount=amount, source=BC_TRANSFER, transaction=tx,
                                             idempotency_key=f"bc-transfer:{bc.pk}:{key}")
            deposit_notify(adv, deposit, arrears_paid=to_arrears, cash=acc[Purpose.CASH].balance)
            if acc[Purpose.ARREARS].balance == 0:
                campaigns_resume(advertiser=adv)
        else:
            if adv.status != AdvertiserStatus.ACTIVE:
                raise BusinessError("not_in_good_standing", f"A refund needs an active account; this one is {adv.status}.")
            if acc[Purpose.ARREARS].balance > 0:
                raise BusinessError("not_in_good_standing", "The account has unpaid arrears.")
            if acc[Purpose.CASH].balance < amount:
                raise BusinessError(
                    "refund_exceeds_cash",
                    f"The advertiser's cash balance is {fmt(acc[Purpose.CASH].balance, adv.currency)} "
                    f"{adv.currency}, less than {fmt(amount, adv.currency)}.",
                )
            p = Posting(kind=TxKind.REFUND, currency=bc.currency, amount=amount, lines=[], advertiser_id=adv.pk,
                        business_center_id=bc.pk, memo=f"Returned to Business Center {bc.name} [{key}]")
            p.move(debit=acc[Purpose.CASH], credit=acc[Purpose.SETTLEMENT], amount=amount)
            p.move(debit=bca[Purpose.BC_SETTLEMENT], credit=bca[Purpose.BC_CASH], amount=amount)
            tx = ledger_post(p)
        transfer = BCTransfer.objects.create(
            business_center=bc, advertiser=adv, request_id=key, transfer_type=transfer_type, amount=amount,
            transaction=tx, created_by=by if by is not None and by.is_authenticated else None,
        )
        audit_record(actor=by, action="bc_transfer", advertiser=adv, target=f"business center {bc.pk}",
                     reason=(reason or "").strip() or f"{transfer_type} of {fmt(amount, bc.currency)} {bc.currency}",
                     after={"transfer_type": transfer_type, "amount": fmt(amount, bc.currency), "request_id": key})
        return transfer


def transfer_grant_check(grant_amount) -> None:
    """R8: credit never moves. A transfer asking to move any grant (ad credit) is refused whole."""
    if grant_amount is not None and not _is_zero(grant_amount):
        raise BusinessError(
            "credit_not_transferable",
            "Ad credit (grant) cannot be transferred between a Business Center and an advertiser; "
            "only cash can be (grant_amount must be 0).",
        )


def _is_zero(value) -> bool:
    """grant_amount 0, 0.0 or "0.00" is no grant at all; anything else (even malformed) is refused."""
    if isinstance(value, bool) or value == "":
        return False
    try:
        return Decimal(str(value).strip()) == 0
    except (InvalidOperation, ValueError):
        return False
