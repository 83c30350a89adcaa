"""The double-entry ledger (SPEC R14) and the records that post to it.

Every account belongs to one advertiser (or one Business Center) so that no row is shared by
charges of different advertisers. An account's stored `balance` is on its normal side and may
never go negative: a CHECK constraint in the database refuses it whatever code runs. Entries are
immutable and positive with a side; the database refuses a transaction whose entries do not sum
to zero per currency (see migration 0002).
"""

from django.db import models
from django.db.models import Q
from django.utils import timezone

DEBIT = "D"
CREDIT = "C"
SIDES = [(DEBIT, "Debit"), (CREDIT, "Credit")]


class Purpose(models.TextChoices):
    # Advertiser's money and obligations
    CASH = "cash", "Cash balance"  # prepaid funds the platform holds for the advertiser
    ARREARS = "arrears", "Arrears"  # spend not covered by cash, owed by the advertiser
    ACCRUED = "accrued", "Accrued spend"  # automatic payment: the current bill
    CREDIT_LINE = "credit_line", "Credit line used"  # monthly invoicing
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


NORMAL_SIDE = {
    Purpose.CASH: CREDIT,
    Purpose.ARREARS: DEBIT,
    Purpose.ACCRUED: DEBIT,
    Purpose.CREDIT_LINE: DEBIT,
    Purpose.SETTLEMENT: DEBIT,
    Purpose.REVENUE: CREDIT,
    Purpose.FEE_REVENUE: CREDIT,
    Purpose.PROMOTION_EXPENSE: DEBIT,
    Purpose.FORFEITURE: CREDIT,
    Purpose.PROMO_CREDIT: CREDIT,
    Purpose.BC_CASH: CREDIT,
    Purpose.BC_SETTLEMENT: DEBIT,
}

ADVERTISER_PURPOSES = [
    Purpose.CASH, Purpose.ARREARS, Purpose.ACCRUED, Purpose.CREDIT_LINE, Purpose.SETTLEMENT,
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

    class Meta:
        indexes = [
            models.Index(fields=["advertiser", "-created_at"], name="ledger_tx_adv_created"),
            models.Index(fields=["business_center", "-created_at"], name="ledger_tx_bc_created"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind} {self.amount} {self.currency}"


class LedgerEntry(models.Model):
    transaction = models.ForeignKey(LedgerTransaction, on_delete=models.PROTECT, related_name="entries")
    account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="entries")
    side = models.CharField(max_length=1, choices=SIDES)
    amount = models.DecimalField(max_digits=20, decimal_places=4)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="ledger_entry_amount_gt_0"),
            models.CheckConstraint(condition=Q(side__in=[DEBIT, CREDIT]), name="ledger_entry_side"),
        ]


class Deposit(models.Model):
    """Money loaded into a manual-payment account (R23), idempotent by key per advertiser."""

    advertiser = models.ForeignKey("portal.Advertiser", on_delete=models.PROTECT, related_name="deposits")
    amount = models.DecimalField(max_digits=20, decimal_places=4)
    idempotency_key = models.CharField(max_length=100)
    source = models.CharField(max_length=16, default="api")  # api, web, bc_transfer
    card_last4 = models.CharField(max_length=4, blank=True, default="")
    transaction = models.OneToOneField(LedgerTransaction, on_delete=models.PROTECT, related_name="deposit")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["advertiser", "idempotency_key"], name="deposit_idempotency_key_unique"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="deposit_amount_gt_0"),
        ]


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
