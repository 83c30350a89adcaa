"""Reads behind the TikTok Business API v1.3 subset (API.md `/open_api/v1.3/`, decision 0012).

The portal's own balances and ledger, said in TikTok's words: account statuses, balance fields and
transaction types. Nothing here computes money of its own: balances come from
`billing.selectors.advertiser_balances` (what the Payments pages show) and transactions are the
ledger's transactions, one row each, so counts and sums always match the ledger (R14).
"""

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Prefetch, Q, QuerySet

from billing.models import (
    CREDIT,
    DEBIT,
    Bill,
    BCTransferType,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    Purpose,
    TxKind,
)
from billing.money import ZERO
from billing.selectors import advertiser_balances
from portal.models import AdvertiserStatus, BillingMethod

# TikTok's advertiser statuses for ours (R2).
ADVERTISER_STATUS = {
    AdvertiserStatus.ACTIVE: "STATUS_ENABLE",
    AdvertiserStatus.SUSPENDED: "STATUS_LIMIT",
    AdvertiserStatus.CLOSED: "STATUS_DISABLE",
}
STATUS_FROM_TIKTOK = {v: k for k, v in ADVERTISER_STATUS.items()}

BILLING_TYPE = {
    BillingMethod.MANUAL: "MANUAL_PAYMENT",
    BillingMethod.AUTOMATIC: "AUTOMATIC_PAYMENT",
    BillingMethod.MONTHLY_INVOICE: "MONTHLY_INVOICING",
}
BILLING_FROM_TIKTOK = {v: k for k, v in BILLING_TYPE.items()}


# --- balances -----------------------------------------------------------------------------------

@dataclass
class AccountBalance:
    """TikTok's balance fields for one advertiser, from the same numbers as the Payments pages.

    grant = every free credit and coupon left (active or frozen); valid_* = usable now; frozen =
    frozen credit (R12, R30). A discount's cap is not a balance and is not counted (decision 0012).
    Pending credits (R21) are not a balance until they become active. tax = the advertiser's tax
    payable (R38, decision 0023): the tax its payments carried, less the tax given back with
    refunds and chargebacks; it is not part of any balance (a deposit loads its amount, tax
    excluded). A Business Center's own cash carries no tax: 0."""

    currency: str
    cash_balance: Decimal
    valid_cash_balance: Decimal
    grant_balance: Decimal
    valid_grant_balance: Decimal
    frozen_balance: Decimal
    tax: Decimal = ZERO

    @property
    def account_balance(self) -> Decimal:
        return self.cash_balance + self.grant_balance

    @property
    def valid_account_balance(self) -> Decimal:
        return self.valid_cash_balance + self.valid_grant_balance


def tax_payable(advertiser_ids) -> dict[int, Decimal]:
    """Each advertiser's tax-payable balance, by id (one query); an account that never paid tax
    has no such ledger account (it is opened on first use) and is not in the answer."""
    return dict(
        LedgerAccount.objects.filter(advertiser_id__in=list(advertiser_ids), purpose=Purpose.TAX_PAYABLE)
        .values_list("advertiser_id", "balance")
    )


def account_balance(*, advertiser, tax: Decimal | None = None) -> AccountBalance:
    """`tax`: the advertiser's tax payable when the caller read it for a whole page
    (`tax_payable`); otherwise it is read here (one more query)."""
    b = advertiser_balances(advertiser=advertiser)
    if tax is None:
        tax = tax_payable([advertiser.pk]).get(advertiser.pk, ZERO)
    return AccountBalance(
        currency=b.currency,
        cash_balance=b.cash_balance,
        valid_cash_balance=b.cash_balance,  # spend draws cash whatever the account's status
        grant_balance=b.credit_balance + b.frozen_credit_balance,
        valid_grant_balance=b.credit_balance,
        frozen_balance=b.frozen_credit_balance,
        tax=tax,
    )


# --- transactions -------------------------------------------------------------------------------

LEVEL_BC = "BC"
LEVEL_ADVERTISER = "ADVERTISER"
LEVELS = [LEVEL_BC, LEVEL_ADVERTISER]

# ADVERTISER level: one ledger kind → one type (several kinds may share one).
ADVERTISER_TYPES: dict[str, str] = {
    TxKind.DEPOSIT: "ADD_BALANCE",  # card and API deposits, and a BC's RECHARGE into the account
    TxKind.BC_TRANSFER: "ADD_BALANCE",
    TxKind.REFUND: "REFUND",  # cash refunded to the card, or returned to the BC (REFUND transfer)
    TxKind.CREDIT_NOTE: "REFUND",  # a credit note (R40): what was owed reduced, what was paid given back
    TxKind.CHARGE: "AD_SPEND",
    TxKind.FEE: "FEE",
    TxKind.BILL: "BILL_ISSUED",
    TxKind.PAYMENT: "BILL_PAYMENT",
    TxKind.CREDIT_ISSUE: "PROMOTION_ISSUED",
    TxKind.CREDIT_EXPIRE: "PROMOTION_EXPIRED",
    TxKind.CREDIT_FORFEIT: "PROMOTION_EXPIRED",
    TxKind.CREDIT_WITHDRAW: "PROMOTION_WITHDRAWN",
}
# BC level: the Business Center's own cash.
BC_TYPES = {"ADD_BALANCE": "a deposit into the BC", "TRANSFER_OUT": "RECHARGE of an account",
            "TRANSFER_IN": "REFUND from an account"}
TRANSACTION_TYPES = {
    LEVEL_ADVERTISER: sorted(set(ADVERTISER_TYPES.values())),
    LEVEL_BC: sorted(BC_TYPES),
}
GRANT_KINDS = {TxKind.CREDIT_ISSUE, TxKind.CREDIT_EXPIRE, TxKind.CREDIT_FORFEIT, TxKind.CREDIT_WITHDRAW}
SPEND_KINDS = {TxKind.CHARGE, TxKind.FEE}
# Kinds whose ledger headline amount leaves their tax out: a deposit's is the cash it loaded, while
# the card paid that and its tax (R38). Every other taxed kind (a card or bank payment, a
# chargeback, a credit note) already counts its tax in its headline amount.
TAX_EXCLUDED_KINDS = {TxKind.DEPOSIT}
BILL_IN_MEMO = re.compile(r"#(\d+)")


def _type_filter(level: str, types: list[str]) -> Q:
    if level == LEVEL_ADVERTISER:
        return Q(kind__in=[k for k, t in ADVERTISER_TYPES.items() if t in types])
    q = Q(pk__in=[])
    if "ADD_BALANCE" in types:
        q |= Q(kind=TxKind.BC_DEPOSIT)
    if "TRANSFER_OUT" in types:
        q |= Q(bc_transfer__transfer_type=BCTransferType.RECHARGE)
    if "TRANSFER_IN" in types:
        q |= Q(bc_transfer__transfer_type=BCTransferType.REFUND)
    return q


def transactions_query(
    *,
    business_center,
    level: str,
    types: list[str] | None = None,
    account_ids: list[int] | None = None,
    account_name: str = "",
    billing_types: list[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> QuerySet:
    """The ledger transactions of a BC's own cash (level BC) or of its advertisers (level
    ADVERTISER), newest first; `start` inclusive, `end` exclusive, on `occurred_at`."""
    if level == LEVEL_BC:
        qs = LedgerTransaction.objects.filter(business_center=business_center)
        if account_ids is not None and business_center.pk not in account_ids:
            qs = qs.none()
        if account_name and account_name.lower() not in business_center.name.lower():
            qs = qs.none()
        if billing_types:
            qs = qs.none()  # a Business Center's own cash has no billing method
    else:
        qs = LedgerTransaction.objects.filter(advertiser__business_center=business_center)
        if account_ids is not None:
            qs = qs.filter(advertiser_id__in=account_ids)
        if account_name:
            qs = qs.filter(advertiser__name__icontains=account_name)
        if billing_types:
            qs = qs.filter(advertiser__billing_method__in=[BILLING_FROM_TIKTOK[t] for t in billing_types])
    if types is not None:
        qs = qs.filter(_type_filter(level, types))
    if start is not None:
        qs = qs.filter(occurred_at__gte=start)
    if end is not None:
        qs = qs.filter(occurred_at__lt=end)
    return qs.order_by("-occurred_at", "-pk")


@dataclass
class TransactionRow:
    """`amount` is what was paid or given back, tax included; `subtotal` the same without the
    tax; `tax_amount` the tax the transaction booked (≥ 0: the type says the direction);
    `cash_amount` + `grant_amount` = `amount`."""

    tx: LedgerTransaction
    transaction_type: str
    amount: Decimal
    tax_amount: Decimal
    cash_amount: Decimal
    grant_amount: Decimal
    invoice_id: str | None

    @property
    def subtotal(self) -> Decimal:
        return self.amount - self.tax_amount

    @property
    def amount_type(self) -> str:
        if self.grant_amount and self.cash_amount:
            return "CASH_AND_GRANT"
        return "GRANT" if self.grant_amount else "CASH"


def tax_booked(tx: LedgerTransaction) -> Decimal:
    """The tax in a transaction: its entries on its advertiser's tax-payable account, credits
    (tax collected with a payment) less debits (tax given back by a refund or chargeback), as an
    amount ≥ 0. Reads the prefetched entries: no query."""
    net = ZERO
    for e in tx.entries.all():
        if e.account.purpose == Purpose.TAX_PAYABLE and e.account.advertiser_id == tx.advertiser_id:
            net += e.amount if e.side == CREDIT else -e.amount
    return abs(net)


def transaction_rows(*, business_center, level: str, transactions) -> list[TransactionRow]:
    """Rows for one page of `transactions_query`: three queries whatever the page holds
    (transactions with their advertiser and transfer, entries with their account — which also
    give each row its tax —, bills)."""
    txs = list(
        transactions.select_related("advertiser", "bc_transfer").prefetch_related(
            Prefetch("entries", queryset=LedgerEntry.objects.select_related("account"))
        )
    )
    bill_ids = {
        int(m.group(1))
        for tx in txs
        if tx.kind in (TxKind.BILL, TxKind.PAYMENT) and (m := BILL_IN_MEMO.search(tx.memo))
    }
    bills = {b.pk: b for b in Bill.objects.filter(pk__in=bill_ids, advertiser__business_center=business_center)}
    rows = []
    for tx in txs:
        grant = ZERO
        if tx.kind in GRANT_KINDS:
            grant = tx.amount
        elif tx.kind in SPEND_KINDS:  # the part a credit or discount paid (R10)
            grant = sum(
                (e.amount for e in tx.entries.all() if e.side == DEBIT and e.account.purpose == Purpose.PROMO_CREDIT),
                ZERO,
            )
        invoice_id = None
        if tx.kind in (TxKind.BILL, TxKind.PAYMENT) and (m := BILL_IN_MEMO.search(tx.memo)):
            bill = bills.get(int(m.group(1)))
            if bill is not None:
                invoice_id = bill.number or str(bill.pk)
        tax = tax_booked(tx)
        amount = tx.amount + tax if tx.kind in TAX_EXCLUDED_KINDS else tx.amount
        rows.append(TransactionRow(tx=tx, transaction_type=transaction_type(tx, level), amount=amount, tax_amount=tax,
                                   cash_amount=amount - grant, grant_amount=grant, invoice_id=invoice_id))
    return rows


def transaction_type(tx: LedgerTransaction, level: str) -> str:
    if level == LEVEL_ADVERTISER:
        return ADVERTISER_TYPES.get(tx.kind, tx.kind.upper())
    transfer = getattr(tx, "bc_transfer", None)
    if transfer is not None:
        return "TRANSFER_OUT" if transfer.transfer_type == BCTransferType.RECHARGE else "TRANSFER_IN"
    return "ADD_BALANCE"
