"""The double-entry ledger (SPEC R14) and the records that post to it.

Every account belongs to one advertiser (or one Business Center) so that no row is shared by
charges of different advertisers. An account's stored `balance` is on its normal side and may
never go negative: a CHECK constraint in the database refuses it whatever code runs. Entries are
immutable and positive with a side; the database refuses a transaction whose entries do not sum
to zero per currency (see migration 0002).
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from billing.money import fmt

DEBIT = "D"
CREDIT = "C"
SIDES = [(DEBIT, "Debit"), (CREDIT, "Credit")]


class Purpose(models.TextChoices):
    # Advertiser's money and obligations
    CASH = "cash", "Cash balance"  # prepaid funds the platform holds for the advertiser
    ARREARS = "arrears", "Arrears"  # spend not covered by cash, owed by the advertiser
    ACCRUED = "accrued", "Accrued spend"  # automatic payment: the current bill
    CREDIT_LINE = "credit_line", "Credit line used"  # monthly invoicing
    BILLED = "billed", "Bills outstanding"  # automatic payment: billed, not yet paid
    SETTLEMENT = "settlement", "Payments received"  # money in from the gateway, net of refunds
    # Platform side, kept per advertiser to avoid a hot row
    REVENUE = "revenue", "Ad revenue"
    FEE_REVENUE = "fee_revenue", "Fee revenue"
    PROMOTION_EXPENSE = "promotion_expense", "Promotion expense"
    FORFEITURE = "forfeiture", "Forfeited credit"
    # One per credit: its remaining amount (for a discount, the cap left)
    PROMO_CREDIT = "credit", "Promotional credit"
    # Business Center cash
    BC_CASH = "bc_cash", "BC cash balance"
    BC_SETTLEMENT = "bc_settlement", "BC payments received"
    # Tax collected on own money (R38), owed to the tax authority; opened on first use
    TAX_PAYABLE = "tax_payable", "Tax payable"


NORMAL_SIDE = {
    Purpose.CASH: CREDIT,
    Purpose.ARREARS: DEBIT,
    Purpose.ACCRUED: DEBIT,
    Purpose.CREDIT_LINE: DEBIT,
    Purpose.BILLED: DEBIT,
    Purpose.SETTLEMENT: DEBIT,
    Purpose.REVENUE: CREDIT,
    Purpose.FEE_REVENUE: CREDIT,
    Purpose.PROMOTION_EXPENSE: DEBIT,
    Purpose.FORFEITURE: CREDIT,
    Purpose.PROMO_CREDIT: CREDIT,
    Purpose.BC_CASH: CREDIT,
    Purpose.BC_SETTLEMENT: DEBIT,
    Purpose.TAX_PAYABLE: CREDIT,
}

ADVERTISER_PURPOSES = [
    Purpose.CASH, Purpose.ARREARS, Purpose.ACCRUED, Purpose.CREDIT_LINE, Purpose.BILLED, Purpose.SETTLEMENT,
    Purpose.REVENUE, Purpose.FEE_REVENUE, Purpose.PROMOTION_EXPENSE, Purpose.FORFEITURE,
]
BC_PURPOSES = [Purpose.BC_CASH, Purpose.BC_SETTLEMENT]


class LedgerAccount(models.Model):
    advertiser = models.ForeignKey(
        "portal.Advertiser", null=True, blank=True, on_delete=models.PROTECT, related_name="ledger_accounts"
    )
    business_center = models.ForeignKey(
        "portal.BusinessCenter", null=True, blank=True, on_delete=models.PROTECT, related_name="ledger_accounts"
    )
    purpose = models.CharField(max_length=20, choices=Purpose.choices)
    currency = models.CharField(max_length=3)
    normal = models.CharField(max_length=1, choices=SIDES)
    balance = models.DecimalField(max_digits=20, decimal_places=4, default=0)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(balance__gte=0), name="ledger_account_balance_gte_0"),
            models.CheckConstraint(condition=Q(normal__in=[DEBIT, CREDIT]), name="ledger_account_normal_side"),
            models.CheckConstraint(
                condition=Q(advertiser__isnull=False) | Q(business_center__isnull=False),
                name="ledger_account_has_owner",
            ),
            models.UniqueConstraint(
                fields=["advertiser", "purpose"],
                condition=Q(advertiser__isnull=False) & ~Q(purpose="credit"),
                name="ledger_account_one_per_advertiser_purpose",
            ),
            models.UniqueConstraint(
                fields=["business_center", "purpose"],
                condition=Q(business_center__isnull=False),
                name="ledger_account_one_per_bc_purpose",
            ),
        ]

    def __str__(self) -> str:
        owner = f"adv {self.advertiser_id}" if self.advertiser_id else f"bc {self.business_center_id}"
        return f"{self.get_purpose_display()} · {owner} · {self.currency}"


class TxKind(models.TextChoices):
    CHARGE = "charge", "Ad spend"
    FEE = "fee", "Fee"
    DEPOSIT = "deposit", "Deposit"
    REFUND = "refund", "Refund"
    CREDIT_ISSUE = "credit_issue", "Promotion issued"
    CREDIT_EXPIRE = "credit_expire", "Promotion expired"
    CREDIT_WITHDRAW = "credit_withdraw", "Promotion withdrawn"
    CREDIT_FORFEIT = "credit_forfeit", "Promotion forfeited"
    BILL = "bill", "Bill"
    PAYMENT = "payment", "Payment"
    BC_DEPOSIT = "bc_deposit", "BC deposit"
    BC_TRANSFER = "bc_transfer", "BC transfer"
    CREDIT_NOTE = "credit_note", "Credit note"


class LedgerTransaction(models.Model):
    kind = models.CharField(max_length=20, choices=TxKind.choices)
    advertiser = models.ForeignKey(
        "portal.Advertiser", null=True, blank=True, on_delete=models.PROTECT, related_name="ledger_transactions"
    )
    business_center = models.ForeignKey(
        "portal.BusinessCenter", null=True, blank=True, on_delete=models.PROTECT, related_name="ledger_transactions"
    )
    campaign = models.ForeignKey("portal.Campaign", null=True, blank=True, on_delete=models.PROTECT)
    amount = models.DecimalField(max_digits=20, decimal_places=4)  # the headline amount, for lists
    currency = models.CharField(max_length=3)
    occurred_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)
    memo = models.CharField(max_length=300, blank=True, default="")
    # Set by PostgreSQL to the database transaction that created the row; entries may only be
    # added by that same database transaction (migration 0008: a committed transaction is sealed).
    db_txn = models.CharField(max_length=64, null=True, blank=True, editable=False)

    class Meta:
        indexes = [
            models.Index(fields=["advertiser", "-created_at"], name="ledger_tx_adv_created"),
            models.Index(fields=["business_center", "-created_at"], name="ledger_tx_bc_created"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind} {fmt(self.amount, self.currency)} {self.currency}"


class LedgerEntry(models.Model):
    transaction = models.ForeignKey(LedgerTransaction, on_delete=models.PROTECT, related_name="entries")
    # indexed with the entry's id (below): an account's entries after a checkpoint are one range
    account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="entries", db_index=False)
    side = models.CharField(max_length=1, choices=SIDES)
    amount = models.DecimalField(max_digits=20, decimal_places=4)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="ledger_entry_amount_gt_0"),
            models.CheckConstraint(condition=Q(side__in=[DEBIT, CREDIT]), name="ledger_entry_side"),
        ]
        indexes = [models.Index(fields=["account", "id"], name="ledger_entry_account_id")]

    def __str__(self) -> str:
        return f"Entry #{self.pk} of transaction #{self.transaction_id}"


BC_TRANSFER = "bc_transfer"  # Deposit.source of a Business Center's recharge


class Deposit(models.Model):
    """Money loaded into a manual-payment account (R23), idempotent by key per advertiser.

    Two key spaces (decision 0018): the advertiser's own deposits (api, web, simulator) and the
    recharges of its Business Center (`bc_transfer`, keyed by the transfer's request id). A key
    in one never answers for, or collides with, the same key in the other."""

    advertiser = models.ForeignKey("portal.Advertiser", on_delete=models.PROTECT, related_name="deposits")
    amount = models.DecimalField(max_digits=20, decimal_places=4)
    idempotency_key = models.CharField(max_length=100)
    source = models.CharField(max_length=16, default="api")  # api, web, bc_transfer
    card_last4 = models.CharField(max_length=4, blank=True, default="")
    # Tax charged on top of `amount` (R38): the card paid amount + tax, the cash balance got amount.
    tax = models.DecimalField(max_digits=20, decimal_places=4, default=0, db_default=0)
    transaction = models.OneToOneField(LedgerTransaction, on_delete=models.PROTECT, related_name="deposit")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["advertiser", "idempotency_key"], condition=~Q(source=BC_TRANSFER),
                                    name="deposit_idempotency_key_unique"),
            models.UniqueConstraint(fields=["advertiser", "idempotency_key"], condition=Q(source=BC_TRANSFER),
                                    name="deposit_bc_transfer_key_unique"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="deposit_amount_gt_0"),
        ]

    def __str__(self) -> str:
        return f"Deposit #{self.pk}"


class BCDeposit(models.Model):
    """Money loaded into a Business Center's cash balance, idempotent by key per BC (R23).

    The unique constraint is what makes the key a key: a replay or a concurrent duplicate can
    never book a second deposit, whatever code runs."""

    business_center = models.ForeignKey("portal.BusinessCenter", on_delete=models.PROTECT, related_name="deposits")
    amount = models.DecimalField(max_digits=20, decimal_places=4)
    idempotency_key = models.CharField(max_length=100)
    transaction = models.OneToOneField(LedgerTransaction, on_delete=models.PROTECT, related_name="bc_deposit")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["business_center", "idempotency_key"], name="bc_deposit_idempotency_key_unique"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="bc_deposit_amount_gt_0"),
        ]

    def __str__(self) -> str:
        return f"Business Center deposit #{self.pk}"


class SpendKind(models.TextChoices):
    AD_SPEND = "ad_spend", "Ad spend"
    FEE = "fee", "Fee"


class SpendEvent(models.Model):
    """One delivery charge, idempotent by `event_id` (R15); its allocation is its ledger transaction."""

    event_id = models.CharField(max_length=128, unique=True)
    advertiser = models.ForeignKey("portal.Advertiser", on_delete=models.PROTECT, related_name="spend_events")
    campaign = models.ForeignKey("portal.Campaign", on_delete=models.PROTECT, related_name="spend_events")
    amount = models.DecimalField(max_digits=20, decimal_places=4)
    currency = models.CharField(max_length=3)
    occurred_at = models.DateTimeField()
    kind = models.CharField(max_length=16, choices=SpendKind.choices, default=SpendKind.AD_SPEND)
    transaction = models.OneToOneField(LedgerTransaction, on_delete=models.PROTECT, related_name="spend_event")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="spend_amount_gt_0")]
        indexes = [models.Index(fields=["advertiser", "occurred_at"], name="spend_adv_occurred")]

    def __str__(self) -> str:
        return f"Spend event {self.event_id}"


class PaymentMethod(models.Model):
    """The card on file (R24, R29). Only the gateway's token, the last 4 digits and the expiry
    are kept — never the card number."""

    advertiser = models.OneToOneField("portal.Advertiser", on_delete=models.CASCADE, related_name="payment_method")
    token = models.CharField(max_length=64)
    last4 = models.CharField(max_length=4)
    expiry = models.CharField(max_length=5)  # MM/YY
    status = models.CharField(max_length=16, default="valid")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"Card ···· {self.last4} (expires {self.expiry})"


class BillKind(models.TextChoices):
    THRESHOLD = "threshold", "Threshold bill"
    BILL_DATE = "bill_date", "Bill date"
    SWITCH = "switch", "Billing method change"
    MONTHLY_INVOICE = "monthly_invoice", "Monthly invoice"


class BillStatus(models.TextChoices):
    OPEN = "open", "Open"
    PAID = "paid", "Paid"
    FAILED = "failed", "Payment failed"
    OVERDUE = "overdue", "Overdue"


class Bill(models.Model):
    """A bill of an automatic-payment account, or a monthly invoice (R24–R27).

    The gateway idempotency key is derived from the bill (`charge_key`), so retries and crashes
    never charge one bill twice (R26).
    """

    advertiser = models.ForeignKey("portal.Advertiser", on_delete=models.PROTECT, related_name="bills")
    kind = models.CharField(max_length=16, choices=BillKind.choices)
    number = models.CharField(max_length=32, null=True, blank=True, unique=True)  # a monthly invoice's (R27)
    # An automatic bill's number in its account: 1, 2, 3… in the order the account's bills were
    # made, no gaps (decision 0031). Taken holding the advertiser's lock (`Bill.save`,
    # `bills_number`); the unique constraint turns a caller without it into an error, never a
    # duplicate. None for a monthly invoice, which has `number`.
    seq = models.PositiveIntegerField("number in account", null=True, blank=True, editable=False)
    amount = models.DecimalField(max_digits=20, decimal_places=4)
    currency = models.CharField(max_length=3)
    # For an invoice: how much of `amount` was funded by the credit line, the rest was arrears.
    line_amount = models.DecimalField(max_digits=20, decimal_places=4, default=0)
    credits_applied = models.DecimalField(max_digits=20, decimal_places=4, default=0)
    gross_spend = models.DecimalField(max_digits=20, decimal_places=4, default=0)
    status = models.CharField(max_length=16, choices=BillStatus.choices, default=BillStatus.OPEN)
    attempts = models.PositiveIntegerField(default=0)
    issued_at = models.DateTimeField(default=timezone.now)
    due_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True, default="")
    gateway_reference = models.CharField(max_length=64, blank=True, default="")
    card_last4 = models.CharField(max_length=4, blank=True, default="")
    # Bumped by a chargeback (billing/chargebacks.py): collecting the bill again is a new payment,
    # so it goes to the gateway under a new key — the old key would replay the reversed approval.
    collection = models.PositiveSmallIntegerField(default=0, db_default=0)
    # Tax on `amount` (R38), fixed when the bill is made: the card is charged amount + tax.
    tax = models.DecimalField(max_digits=20, decimal_places=4, default=0, db_default=0)
    tax_rate = models.DecimalField(max_digits=6, decimal_places=3, default=0, db_default=0)
    tax_note = models.CharField(max_length=120, blank=True, default="", db_default="")

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="bill_amount_gt_0"),
            models.UniqueConstraint(
                fields=["advertiser", "kind", "period_end"],
                condition=Q(kind__in=["bill_date", "monthly_invoice"]),
                name="bill_one_per_period",
            ),
            models.UniqueConstraint(fields=["advertiser", "seq"], name="bill_seq_per_advertiser"),
            models.CheckConstraint(
                condition=Q(kind="monthly_invoice", seq__isnull=True)
                | (~Q(kind="monthly_invoice") & Q(seq__isnull=False, seq__gte=1)),
                name="bill_seq_iff_automatic",
            ),
        ]
        indexes = [
            models.Index(fields=["advertiser", "-issued_at"], name="bill_adv_issued"),
            models.Index(fields=["status", "next_retry_at"], name="bill_status_retry"),
        ]

    def __str__(self) -> str:
        return self.title

    def save(self, *args, **kwargs):
        """A new automatic bill takes the next number of its account in its own INSERT (no extra
        statement; RETURNING brings it back). The caller holds the advertiser's lock."""
        if self._state.adding and self.seq is None and self.kind != BillKind.MONTHLY_INVOICE:
            self.seq = next_seq(self.advertiser_id)
        super().save(*args, **kwargs)

    @property
    def label(self) -> str:
        """What the account calls the bill: "ADC-000123" for an invoice, "3" for its 3rd automatic bill."""
        if self.is_invoice or self.seq is None:
            return self.number or f"#{self.pk}"
        return str(self.seq)

    @property
    def noun(self) -> str:
        """"Invoice", "Threshold bill", or "Bill" (a bill date's or a billing method change's)."""
        return {BillKind.MONTHLY_INVOICE: "Invoice", BillKind.THRESHOLD: "Threshold bill"}.get(self.kind, "Bill")

    @property
    def title(self) -> str:
        """"Invoice ADC-000123", "Threshold bill 3", "Bill 4" (decision 0031)."""
        return f"{self.noun} {self.label}"

    @property
    def charge_key(self) -> str:
        """`bill-<id>`, then `bill-<id>-<n>` for the n-th collection after a chargeback."""
        return f"bill-{self.pk}" if not self.collection else f"bill-{self.pk}-{self.collection}"

    @property
    def is_invoice(self) -> bool:
        return self.kind == BillKind.MONTHLY_INVOICE

    @property
    def charge_amount(self):
        """What the card is charged: the bill and its tax (R38)."""
        return self.amount + self.tax


def _last_seq(advertiser):
    """The account's largest bill number so far: one backward step on the (advertiser, seq) index."""
    return models.Subquery(Bill.objects.filter(advertiser_id=advertiser, seq__isnull=False).order_by("-seq")
                           .values("seq")[:1])


def next_seq(advertiser_id: int):
    """The account's next bill number, as an expression for the bill's INSERT: computed by the
    database as it inserts, under the caller's advertiser lock (decision 0031)."""
    return Coalesce(_last_seq(advertiser_id), 0) + 1


def bills_number(bills: list["Bill"]) -> None:
    """Give new automatic bills (made together, caller holding their advertisers' locks) the next
    numbers of their accounts, in list order: one query, however many bills and accounts."""
    ids = {b.advertiser_id for b in bills}
    advertisers = Bill._meta.get_field("advertiser").related_model.objects
    last = dict(advertisers.filter(pk__in=ids).annotate(last=_last_seq(models.OuterRef("pk")))
                .values_list("pk", "last")) if ids else {}
    for bill in bills:
        bill.seq = last[bill.advertiser_id] = (last.get(bill.advertiser_id) or 0) + 1


class InvoiceCounter(models.Model):
    """Gapless invoice numbers per issuer (R27): the row is locked while an invoice takes a number,
    in the same transaction, so a rollback gives the number back."""

    issuer = models.CharField(max_length=16, primary_key=True)
    last_number = models.PositiveIntegerField(default=0)


class ThresholdChange(models.Model):
    """Every change of an account's billing threshold (R25: at most 3 per calendar month)."""

    advertiser = models.ForeignKey("portal.Advertiser", on_delete=models.CASCADE, related_name="threshold_changes")
    old = models.DecimalField(max_digits=20, decimal_places=4, null=True)
    new = models.DecimalField(max_digits=20, decimal_places=4)
    reason = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"Threshold change #{self.pk} · {self.created_at:%Y-%m-%d %H:%M} UTC"


class GatewayCharge(models.Model):
    """The sandbox gateway's own record of what it charged, by idempotency key — as a real gateway
    remembers keys, so a retry after a crash gets the first answer instead of a second charge."""

    idempotency_key = models.CharField(max_length=100, unique=True)
    amount = models.DecimalField(max_digits=20, decimal_places=4)
    currency = models.CharField(max_length=3)
    card = models.CharField(max_length=64)  # token or last 4, never a card number
    status = models.CharField(max_length=16)
    reference = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)


class GatewayRefund(models.Model):
    """The sandbox gateway's record of what it refunded, by idempotency key: a retried refund gets
    the first answer, and a charge is never refunded past what it took."""

    idempotency_key = models.CharField(max_length=100, unique=True)
    charge_key = models.CharField(max_length=100)  # the refunded charge's idempotency key
    amount = models.DecimalField(max_digits=20, decimal_places=4)
    currency = models.CharField(max_length=3)
    reference = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)


class ReconciliationRun(models.Model):
    """One run of `reconcile_ledger` (R14, R33): what it checked and every difference it found.
    Differences are reported, never fixed."""

    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    accounts_checked = models.PositiveIntegerField(default=0)
    transactions_checked = models.PositiveIntegerField(default=0)
    differences = models.JSONField(default=list, blank=True)
    # True only once a run has finished without a difference: a run that is still going, or that
    # was killed, is not ok (issue 11) — `outcome` tells which.
    ok = models.BooleanField(default=False)
    # incremental (issue 11): only what changed since the last run's safe point; full: everything
    mode = models.CharField(max_length=12, default="full")
    transactions_upto = models.BigIntegerField(null=True, blank=True)  # the next incremental run starts after it
    entries_read = models.PositiveBigIntegerField(default=0)

    @property
    def outcome(self) -> str:
        if self.finished_at is None:
            return "did not finish"
        return "clean" if self.ok else f"{len(self.differences)} differences"

    def __str__(self) -> str:
        return f"Reconciliation {self.started_at:%Y-%m-%d %H:%M} — {self.outcome}"


class LedgerCheckpoint(models.Model):
    """An account's entries summed once (issue 11): `total` is the signed sum, on the account's
    normal side, of its entries up to id `upto`. Entries never change (R14: sealed), so an
    incremental reconciliation adds only the entries after `upto`. Written by `reconcile_ledger`
    only when the sum equalled the stored balance."""

    account = models.OneToOneField(LedgerAccount, primary_key=True, on_delete=models.CASCADE, related_name="+")
    upto = models.BigIntegerField()
    total = models.DecimalField(max_digits=20, decimal_places=4)


class BCTransferType(models.TextChoices):
    RECHARGE = "RECHARGE", "Recharge (BC cash to the advertiser)"
    REFUND = "REFUND", "Refund (advertiser cash back to the BC)"


class BCTransfer(models.Model):
    """Cash moved between a Business Center and one of its advertisers (`POST /open_api/v1.3/bc/transfer/`).

    Idempotent by the caller's `request_id` per Business Center: the unique constraint makes a replay
    or a concurrent duplicate unable to move cash twice, whatever code runs. Only cash moves: credit
    is never transferable (R8)."""

    business_center = models.ForeignKey("portal.BusinessCenter", on_delete=models.PROTECT, related_name="transfers")
    advertiser = models.ForeignKey("portal.Advertiser", on_delete=models.PROTECT, related_name="bc_transfers")
    request_id = models.CharField(max_length=64)
    transfer_type = models.CharField(max_length=8, choices=BCTransferType.choices)
    amount = models.DecimalField(max_digits=20, decimal_places=4)
    transaction = models.OneToOneField(LedgerTransaction, on_delete=models.PROTECT, related_name="bc_transfer")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["business_center", "request_id"], name="bc_transfer_request_id_unique"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="bc_transfer_amount_gt_0"),
            models.CheckConstraint(
                condition=Q(transfer_type__in=["RECHARGE", "REFUND"]), name="bc_transfer_type_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.transfer_type} #{self.pk} · bc {self.business_center_id} ↔ adv {self.advertiser_id}"


class Chargeback(models.Model):
    """A card payment the cardholder's bank reversed (SPEC R14, R30; docs/decisions/0010): a paid
    bill or a card top-up, booked back on the ledger once. Idempotent by the gateway's chargeback
    `reference`: the unique constraint makes a replayed report unable to book twice."""

    reference = models.CharField(max_length=64)
    advertiser = models.ForeignKey("portal.Advertiser", on_delete=models.PROTECT, related_name="chargebacks")
    bill = models.ForeignKey(Bill, null=True, blank=True, on_delete=models.PROTECT, related_name="chargebacks")
    deposit = models.ForeignKey(Deposit, null=True, blank=True, on_delete=models.PROTECT, related_name="chargebacks")
    charge_reference = models.CharField(max_length=64, blank=True, default="")  # the gateway's id of the charge
    amount = models.DecimalField(max_digits=20, decimal_places=4)
    currency = models.CharField(max_length=3)
    reason = models.CharField(max_length=500)
    transaction = models.OneToOneField(LedgerTransaction, on_delete=models.PROTECT, related_name="chargeback")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["reference"], name="chargeback_reference_unique"),
            models.UniqueConstraint(fields=["deposit"], condition=Q(deposit__isnull=False),
                                    name="chargeback_one_per_deposit"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="chargeback_amount_gt_0"),
            models.CheckConstraint(
                condition=Q(bill__isnull=False, deposit__isnull=True) | Q(bill__isnull=True, deposit__isnull=False),
                name="chargeback_of_a_bill_or_a_deposit",
            ),
        ]
        indexes = [models.Index(fields=["charge_reference"], name="chargeback_charge_ref")]

    def __str__(self) -> str:
        what = f"bill #{self.bill_id}" if self.bill_id else f"deposit #{self.deposit_id}"
        return f"Chargeback {self.reference} · {what}"


# ---- Billing documents and tax (SPEC R37–R41, decision 0023) ----

class BillingProfile(models.Model):
    """Who a document is billed to (R37): an advertiser's own, or its Business Center's, which its
    advertisers inherit until they set their own. Documents copy it at issue (`billed_to`)."""

    advertiser = models.OneToOneField("portal.Advertiser", null=True, blank=True, on_delete=models.CASCADE,
                                      related_name="billing_profile")
    business_center = models.OneToOneField("portal.BusinessCenter", null=True, blank=True, on_delete=models.CASCADE,
                                           related_name="billing_profile")
    legal_name = models.CharField(max_length=200)
    address_line1 = models.CharField(max_length=200)
    address_line2 = models.CharField(max_length=200, blank=True, default="")
    city = models.CharField(max_length=100)
    postal_code = models.CharField(max_length=20, blank=True, default="")
    country = models.CharField(max_length=2)  # ISO 3166-1 alpha-2
    tax_id = models.CharField(max_length=32, blank=True, default="")  # compact form, validated (stdnum)
    invoice_emails = models.JSONField(default=list, blank=True)
    po_number = models.CharField(max_length=64, blank=True, default="")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(Q(advertiser__isnull=False) & Q(business_center__isnull=True))
                | (Q(advertiser__isnull=True) & Q(business_center__isnull=False)),
                name="billing_profile_one_owner",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.legal_name} ({self.country})"


class TaxRate(models.Model):
    """A country's standard VAT rate from a date (R38): data, seeded with the EU rates, edited by staff."""

    country = models.CharField(max_length=2)
    rate = models.DecimalField(max_digits=6, decimal_places=3)  # percent, 23.000
    effective_from = models.DateField()
    note = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["country", "effective_from"], name="tax_rate_one_per_country_date"),
            models.CheckConstraint(condition=Q(rate__gte=0) & Q(rate__lt=100), name="tax_rate_range"),
        ]
        ordering = ["country", "-effective_from"]

    def __str__(self) -> str:
        return f"{self.country} {self.rate}% from {self.effective_from}"


class DocumentKind(models.TextChoices):
    INVOICE = "invoice", "Invoice"
    RECEIPT = "receipt", "Receipt"
    STATEMENT = "statement", "Statement"
    CREDIT_NOTE = "credit_note", "Credit note"


SERIES = {DocumentKind.INVOICE: "INV", DocumentKind.RECEIPT: "RCT", DocumentKind.STATEMENT: "STM",
          DocumentKind.CREDIT_NOTE: "CN"}


class DocumentCounter(models.Model):
    """Gapless numbers per series and year (R39): the row is locked by the transaction that takes a
    number, so a rollback gives it back and two issuers never share one."""

    series = models.CharField(max_length=8)
    year = models.PositiveSmallIntegerField()
    last_number = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["series", "year"], name="document_counter_series_year")]


class Document(models.Model):
    """An issued billing document (R39): immutable — the database refuses UPDATE and DELETE
    (migration 0015). What happens to it later (payments, credit notes, disputes) are rows of
    their own; its status is computed from them (billing/documents.py)."""

    advertiser = models.ForeignKey("portal.Advertiser", on_delete=models.PROTECT, related_name="documents")
    business_center = models.ForeignKey("portal.BusinessCenter", null=True, blank=True, on_delete=models.PROTECT,
                                        related_name="documents")
    kind = models.CharField(max_length=16, choices=DocumentKind.choices)
    number = models.CharField(max_length=24, unique=True)
    year = models.PositiveSmallIntegerField()
    # What the document is of, once: "receipt:deposit:12", "invoice:bill:7", "statement:2026-11",
    # "credit_note:<key>" — a retry or a concurrent issuer finds the first document.
    source_key = models.CharField(max_length=160)
    issued_at = models.DateTimeField(default=timezone.now)
    currency = models.CharField(max_length=3)
    net = models.DecimalField(max_digits=20, decimal_places=4, default=0)
    tax = models.DecimalField(max_digits=20, decimal_places=4, default=0)
    total = models.DecimalField(max_digits=20, decimal_places=4, default=0)
    tax_rate = models.DecimalField(max_digits=6, decimal_places=3, default=0)
    tax_note = models.CharField(max_length=120, blank=True, default="")
    lines = models.JSONField(default=list)  # [{description, net, tax, total}] as strings
    seller = models.JSONField(default=dict)
    billed_to = models.JSONField(default=dict)
    data = models.JSONField(default=dict, blank=True)  # a statement's figures; a credit note's refund
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    due_at = models.DateTimeField(null=True, blank=True)
    bill = models.ForeignKey(Bill, null=True, blank=True, on_delete=models.PROTECT, related_name="documents")
    deposit = models.ForeignKey(Deposit, null=True, blank=True, on_delete=models.PROTECT, related_name="documents")
    refers_to = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="corrections")
    reason = models.CharField(max_length=500, blank=True, default="")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["advertiser", "source_key"], name="document_source_once"),
            models.CheckConstraint(condition=Q(net__gte=0) & Q(tax__gte=0) & Q(total__gte=0),
                                   name="document_amounts_gte_0"),
        ]
        indexes = [
            # the Billing documents pages' order (issued_at DESC, id DESC): no sort, even at a deep OFFSET
            models.Index(fields=["advertiser", "-issued_at", "-id"], name="document_adv_issued_id"),
            models.Index(fields=["business_center", "-issued_at", "-id"], name="document_bc_issued_id"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.number}"


class InvoicePayment(models.Model):
    """A bank transfer staff recorded against an invoice (R41), idempotent by `reference`."""

    document = models.ForeignKey(Document, on_delete=models.PROTECT, related_name="payments")
    advertiser = models.ForeignKey("portal.Advertiser", on_delete=models.PROTECT, related_name="invoice_payments")
    reference = models.CharField(max_length=64)
    amount = models.DecimalField(max_digits=20, decimal_places=4)
    paid_at = models.DateTimeField()
    transaction = models.OneToOneField(LedgerTransaction, on_delete=models.PROTECT, related_name="invoice_payment")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["advertiser", "reference"], name="invoice_payment_reference_unique"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="invoice_payment_amount_gt_0"),
        ]

    def __str__(self) -> str:
        return f"Bank transfer {self.reference}"


class DisputeStatus(models.TextChoices):
    OPEN = "open", "Open"
    CREDITED = "credited", "Resolved with a credit note"
    REJECTED = "rejected", "Rejected"


class Dispute(models.Model):
    """An advertiser's dispute of an invoice within 7 days of issue (R40), resolved by staff."""

    document = models.ForeignKey(Document, on_delete=models.PROTECT, related_name="disputes")
    advertiser = models.ForeignKey("portal.Advertiser", on_delete=models.PROTECT, related_name="disputes")
    reason = models.CharField(max_length=1000)
    status = models.CharField(max_length=16, choices=DisputeStatus.choices, default=DisputeStatus.OPEN)
    resolution = models.CharField(max_length=1000, blank=True, default="")
    credit_note = models.ForeignKey(Document, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    opened_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["document"], condition=Q(status="open"), name="dispute_one_open"),
        ]

    def __str__(self) -> str:
        return f"Dispute of {self.document.number} ({self.get_status_display().lower()})"


class RefundMethod(models.TextChoices):
    CARD = "card", "Refund to the card"
    BANK_TRANSFER = "bank_transfer", "Bank transfer to the advertiser"


class RefundStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    REFUNDED = "refunded", "Refunded"
    FAILED = "failed", "Failed"
    TO_SEND = "to_send", "To send by bank transfer"


class Refund(models.Model):
    """Money a credit note gives back (R40): to the card that paid, through the gateway under the
    key `refund-<credit note id>` (so a retry refunds once), or by bank transfer for what was paid
    by bank transfer. Booked on the ledger with the credit note; this row tracks the payout."""

    credit_note = models.OneToOneField(Document, on_delete=models.PROTECT, related_name="refund")
    advertiser = models.ForeignKey("portal.Advertiser", on_delete=models.PROTECT, related_name="refunds")
    method = models.CharField(max_length=16, choices=RefundMethod.choices)
    amount = models.DecimalField(max_digits=20, decimal_places=4)
    currency = models.CharField(max_length=3)
    charge_key = models.CharField(max_length=100, blank=True, default="")  # the card charge refunded
    card_last4 = models.CharField(max_length=4, blank=True, default="")
    status = models.CharField(max_length=16, choices=RefundStatus.choices)
    gateway_reference = models.CharField(max_length=64, blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    refunded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_gt_0")]
        indexes = [models.Index(fields=["status", "created_at"], name="refund_status_created")]

    @property
    def gateway_key(self) -> str:
        return f"refund-{self.credit_note_id}"

    def __str__(self) -> str:
        return f"Refund of {self.credit_note.number}"

