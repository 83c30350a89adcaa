"""Promotional credit (SPEC R5–R8). A credit's remaining amount is its own ledger account's balance."""

from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from billing.money import format_money
from billing.waterfall import campaign_eligible


class CreditKind(models.TextChoices):
    FREE = "free", "Free credit"  # account level, every eligible campaign (R6)
    ASSIGNABLE = "assignable", "Coupon"  # only campaigns an admin assigned it to (R6)
    DISCOUNT = "discount", "Discount"  # P% of each charge up to a cap (R7)


class CreditSource(models.TextChoices):
    LADDER = "ladder", "Ladder reward"
    DISCOUNT = "discount", "Discount offer"
    MANAGED = "managed", "Granted by TikTok"
    PROMO_CODE = "promo_code", "Promo code"
    SHOP = "shop", "TikTok Shop program"


class CreditStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    ACTIVE = "active", "Active"
    FROZEN = "frozen", "Frozen"
    USED_UP = "used_up", "Used up"
    EXPIRED = "expired", "Expired"
    WITHDRAWN = "withdrawn", "Withdrawn"


class Credit(models.Model):
    advertiser = models.ForeignKey("portal.Advertiser", on_delete=models.PROTECT, related_name="credits")
    kind = models.CharField(max_length=16, choices=CreditKind.choices)
    source = models.CharField(max_length=16, choices=CreditSource.choices, default=CreditSource.MANAGED)
    amount = models.DecimalField(max_digits=20, decimal_places=4)  # original amount; a discount's cap
    percent = models.DecimalField(max_digits=5, decimal_places=2, null=True, blank=True)
    valid_from = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    eligible_objectives = models.JSONField(default=list, blank=True)  # empty: all objectives
    eligible_product_source = models.CharField(max_length=16, blank=True, default="")  # empty: all
    status = models.CharField(max_length=16, choices=CreditStatus.choices, default=CreditStatus.ACTIVE)
    ledger_account = models.OneToOneField(
        "billing.LedgerAccount", on_delete=models.PROTECT, related_name="credit"
    )
    campaigns = models.ManyToManyField("portal.Campaign", blank=True, related_name="coupons")
    reason = models.CharField(max_length=500, blank=True, default="")
    granted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    idempotency_key = models.CharField(max_length=100, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="credit_amount_gt_0"),
            models.CheckConstraint(condition=Q(expires_at__gt=models.F("valid_from")), name="credit_expires_after_start"),
            models.CheckConstraint(
                condition=(Q(kind="discount") & Q(percent__gt=0) & Q(percent__lte=100))
                | (~Q(kind="discount") & Q(percent__isnull=True)),
                name="credit_percent_only_for_discount",
            ),
            models.UniqueConstraint(
                fields=["advertiser", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="credit_idempotency_key_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["advertiser", "status", "expires_at"], name="credit_adv_status_exp"),
            models.Index(fields=["status", "expires_at"], name="credit_status_exp"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"

    @property
    def remaining(self):
        return self.ledger_account.balance

    def is_valid_at(self, t: datetime) -> bool:
        """R9: a credit pays only for spend that occurred inside [valid_from, expires_at)."""
        return self.valid_from <= t < self.expires_at

    def is_eligible_for(self, *, objective: str, product_source: str) -> bool:
        return campaign_eligible(objectives=self.eligible_objectives, product_source=self.eligible_product_source,
                                 objective=objective, campaign_product_source=product_source)


class ProgramKind(models.TextChoices):
    NEW_ADVERTISER = "new_advertiser", "New-advertiser incentive"
    SHOP = "shop", "TikTok Shop program"


class Program(models.Model):
    """A ladder credit program, "Spend X, Get Y" (SPEC R16, R19, R20)."""

    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=ProgramKind.choices)
    currency = models.CharField(max_length=3, default="USD")  # of its thresholds and rewards
    window_days = models.PositiveIntegerField()
    reward_kind = models.CharField(max_length=16, choices=[("free", "Free credit"), ("assignable", "Coupon")])
    reward_validity_days = models.PositiveIntegerField(default=90)
    eligible_objectives = models.JSONField(default=list, blank=True)
    eligible_product_source = models.CharField(max_length=16, blank=True, default="")
    # R19: who may enroll in a new-advertiser incentive
    registration_days = models.PositiveIntegerField(default=60)
    prior_spend_days = models.PositiveIntegerField(default=90)
    # R19: enrolling by promo code
    code = models.CharField(max_length=64, null=True, blank=True)
    code_activation_days = models.PositiveIntegerField(default=14)
    max_redemptions = models.PositiveIntegerField(null=True, blank=True)
    redemptions = models.PositiveIntegerField(default=0)
    ends_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(models.functions.Upper("code"), name="program_code_unique_ci"),
            models.CheckConstraint(
                condition=Q(max_redemptions__isnull=True) | Q(redemptions__lte=models.F("max_redemptions")),
                name="program_redemptions_within_limit",
            ),
            models.CheckConstraint(condition=Q(window_days__gt=0), name="program_window_days_gt_0"),
        ]

    def __str__(self) -> str:
        return self.name


class Tier(models.Model):
    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="tiers")
    threshold = models.DecimalField(max_digits=20, decimal_places=4)
    reward = models.DecimalField(max_digits=20, decimal_places=4)
    immediate = models.BooleanField(default=False)

    class Meta:
        ordering = ["threshold"]
        constraints = [
            models.UniqueConstraint(fields=["program", "threshold"], name="tier_threshold_unique"),
            models.CheckConstraint(condition=Q(threshold__gt=0) & Q(reward__gt=0), name="tier_amounts_gt_0"),
        ]

    def __str__(self) -> str:
        currency = self.program.currency
        return f"Spend {format_money(self.threshold, currency)}, get {format_money(self.reward, currency)}"


class EnrollmentStatus(models.TextChoices):
    OPEN = "open", "Earning"
    AWARDED = "awarded", "Reward issued"
    WITHHELD = "withheld", "Reward withheld"
    CLOSED = "closed", "Closed — no tier reached"


class Enrollment(models.Model):
    advertiser = models.ForeignKey("portal.Advertiser", on_delete=models.PROTECT, related_name="enrollments")
    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="enrollments")
    business_center = models.ForeignKey("portal.BusinessCenter", null=True, blank=True, on_delete=models.PROTECT)
    shop_id = models.CharField(max_length=64, blank=True, default="")  # R20: the shop registered at enrollment
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    status = models.CharField(max_length=16, choices=EnrollmentStatus.choices, default=EnrollmentStatus.OPEN)
    qualifying_spend = models.DecimalField(max_digits=20, decimal_places=4, default=0)
    reached_tier = models.ForeignKey(Tier, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    credit = models.OneToOneField(Credit, null=True, blank=True, on_delete=models.PROTECT, related_name="enrollment")
    via_code = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["advertiser", "program"], name="enrollment_one_per_advertiser"),
            models.UniqueConstraint(
                fields=["business_center", "program"],
                condition=Q(business_center__isnull=False),
                name="enrollment_one_per_bc",
            ),
            models.CheckConstraint(condition=Q(qualifying_spend__gte=0), name="enrollment_spend_gte_0"),
            models.CheckConstraint(condition=Q(window_end__gt=models.F("window_start")), name="enrollment_window"),
        ]
        indexes = [models.Index(fields=["status", "window_end"], name="enrollment_status_end")]

    def __str__(self) -> str:
        return f"Enrollment #{self.pk} · {self.advertiser.name} in {self.program.name}"


class FreezeEvent(models.Model):
    """The freeze history of an advertiser's credit (R30)."""

    advertiser = models.ForeignKey("portal.Advertiser", on_delete=models.PROTECT, related_name="freeze_events")
    frozen = models.BooleanField()  # True: froze, False: unfroze
    reason = models.CharField(max_length=500)
    rule = models.CharField(max_length=32, blank=True, default="")  # automatic rule, or "" for staff
    by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{'Frozen' if self.frozen else 'Unfrozen'} #{self.pk} · {self.created_at:%Y-%m-%d %H:%M} UTC"


class AppealStatus(models.TextChoices):
    OPEN = "open", "Under review"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"


class Appeal(models.Model):
    """An advertiser's appeal against a credit freeze (R31). One open appeal at a time."""

    advertiser = models.ForeignKey("portal.Advertiser", on_delete=models.PROTECT, related_name="appeals")
    message = models.TextField()
    status = models.CharField(max_length=16, choices=AppealStatus.choices, default=AppealStatus.OPEN)
    filed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="+")
    decision_note = models.TextField(blank=True, default="")
    credits_withdrawn = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["advertiser"], condition=Q(status="open"), name="appeal_one_open"),
        ]
        indexes = [models.Index(fields=["status", "created_at"], name="appeal_status_created")]

    def __str__(self) -> str:
        """"Appeal #1 · Acme Shoes · Under review": the review screen's title and the admin's messages."""
        return f"Appeal #{self.pk} · {self.advertiser.name} · {self.get_status_display()}"


class AppealAttachment(models.Model):
    """A file sent with an appeal: stored under a server-made name outside the static root."""

    appeal = models.ForeignKey(Appeal, on_delete=models.CASCADE, related_name="attachments")
    stored_name = models.CharField(max_length=100, unique=True)
    original_name = models.CharField(max_length=200)
    content_type = models.CharField(max_length=50)
    size = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.original_name
