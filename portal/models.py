"""Business Centers, advertisers, members and campaigns (SPEC R1–R3), and API tokens."""

import hashlib
import secrets
import zoneinfo

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.timezone import now


class BusinessCenter(models.Model):
    name = models.CharField(max_length=200)
    currency = models.CharField(max_length=3, default="USD")  # of its cash balance
    created_at = models.DateTimeField(default=now)

    def __str__(self) -> str:
        return self.name


class BCRole(models.TextChoices):
    ADMIN = "admin", "Admin"
    FINANCE = "finance", "Finance"


class BCMembership(models.Model):
    """BC admins and finance act on every advertiser of their Business Center (API.md)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="bc_memberships")
    business_center = models.ForeignKey(BusinessCenter, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=BCRole.choices)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "business_center"], name="bc_membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} · {self.role} of {self.business_center}"


class BillingMethod(models.TextChoices):
    MANUAL = "manual", "Manual payment"
    AUTOMATIC = "automatic", "Automatic payment"
    MONTHLY_INVOICE = "monthly_invoice", "Monthly invoicing"


class AdvertiserStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"
    CLOSED = "closed", "Closed"


class SignupSource(models.TextChoices):
    OFFICIAL_OFFER = "official_offer", "Official offer"
    ORGANIC = "organic", "Organic"


class Advertiser(models.Model):
    """An advertiser account (R2). Currency and time zone are fixed at creation."""

    business_center = models.ForeignKey(
        BusinessCenter, null=True, blank=True, on_delete=models.PROTECT, related_name="advertisers"
    )
    name = models.CharField(max_length=200)
    currency = models.CharField(max_length=3)
    timezone = models.CharField(max_length=64, default="UTC")
    billing_method = models.CharField(max_length=16, choices=BillingMethod.choices, default=BillingMethod.MANUAL)
    status = models.CharField(max_length=16, choices=AdvertiserStatus.choices, default=AdvertiserStatus.ACTIVE)
    registered_at = models.DateTimeField(default=now)
    signup_source = models.CharField(max_length=16, choices=SignupSource.choices, default=SignupSource.ORGANIC)
    shop_id = models.CharField(max_length=64, blank=True, default="")
    credit_frozen = models.BooleanField(default=False)
    # Billing settings used by the automatic and monthly-invoice methods (R24–R27).
    billing_threshold = models.DecimalField(max_digits=20, decimal_places=4, null=True, blank=True)
    bill_cycle = models.CharField(max_length=8, default="monthly", choices=[("weekly", "Weekly"), ("monthly", "Monthly")])
    credit_line_limit = models.DecimalField(max_digits=20, decimal_places=4, default=0)
    invoicing_eligible = models.BooleanField(default=False)
    next_bill_at = models.DateTimeField(null=True, blank=True)  # automatic: the next bill date (R24)
    failed_payments = models.PositiveIntegerField(default=0)  # consecutive, reset by a payment (R26)
    successful_payments = models.PositiveIntegerField(default=0)  # since the last threshold change (R25)
    created_at = models.DateTimeField(default=now)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(credit_line_limit__gte=0), name="advertiser_credit_line_limit_gte_0"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.currency})"

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    @property
    def is_in_good_standing(self) -> bool:
        return self.status == AdvertiserStatus.ACTIVE

    @property
    def credit_usable(self) -> bool:
        """R12: credits of a frozen, suspended or closed account take no part in billing."""
        return self.status == AdvertiserStatus.ACTIVE and not self.credit_frozen


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    FINANCE = "finance", "Finance"
    OPERATOR = "operator", "Operator"
    ANALYST = "analyst", "Analyst"


PAYMENTS_READ_ROLES = {Role.ADMIN, Role.FINANCE, Role.ANALYST}
PAYMENTS_WRITE_ROLES = {Role.ADMIN, Role.FINANCE}


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    advertiser = models.ForeignKey(Advertiser, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "advertiser"], name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} · {self.role} of {self.advertiser}"


class Objective(models.TextChoices):
    REACH = "REACH", "Reach"
    TRAFFIC = "TRAFFIC", "Traffic"
    VIDEO_VIEWS = "VIDEO_VIEWS", "Video views"
    LEAD_GENERATION = "LEAD_GENERATION", "Lead generation"
    APP_PROMOTION = "APP_PROMOTION", "App promotion"
    PRODUCT_SALES = "PRODUCT_SALES", "Product sales"
    ENGAGEMENT = "ENGAGEMENT", "Engagement"
    WEBSITE_CONVERSIONS = "WEBSITE_CONVERSIONS", "Website conversions"


class ProductSource(models.TextChoices):
    NONE = "NONE", "None"
    TIKTOK_SHOP = "TIKTOK_SHOP", "TikTok Shop"
    CATALOG = "CATALOG", "Catalog"


class CampaignStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"
    PAUSED_FUNDS = "paused_funds", "Paused — add funds"


class Campaign(models.Model):
    advertiser = models.ForeignKey(Advertiser, on_delete=models.PROTECT, related_name="campaigns")
    name = models.CharField(max_length=200)
    objective = models.CharField(max_length=32, choices=Objective.choices)
    product_source = models.CharField(max_length=16, choices=ProductSource.choices, default=ProductSource.NONE)
    shop_id = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(max_length=16, choices=CampaignStatus.choices, default=CampaignStatus.ACTIVE)
    created_at = models.DateTimeField(default=now)

    def __str__(self) -> str:
        return self.name


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    """An API token, stored hashed; the raw value is shown once at creation.

    A token with an `advertiser` was made on that advertiser's API access page
    (portal/api_access.py, decision 0017) and acts only for it, with its user's current rights
    there; a token without one (`manage.py create_api_token`) acts with all of its user's rights.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    advertiser = models.ForeignKey(
        Advertiser, null=True, blank=True, on_delete=models.CASCADE, related_name="api_tokens"
    )
    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=12)
    label = models.CharField(max_length=100, blank=True, default="")
    created_at = models.DateTimeField(default=now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # The API access page's form key: submitting the same form twice creates one token (replays
    # never show the raw value again).
    idempotency_key = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["advertiser", "-created_at"], name="apitoken_adv_created")]
        constraints = [
            models.UniqueConstraint(
                fields=["advertiser", "idempotency_key"], condition=~Q(idempotency_key=""),
                name="apitoken_adv_idempotency_key_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.prefix}… {self.label}".strip()

    @classmethod
    def issue(cls, *, user, label: str = "", advertiser=None, idempotency_key: str = "") -> tuple["ApiToken", str]:
        raw = "act_" + secrets.token_urlsafe(32)
        token = cls.objects.create(
            user=user, advertiser=advertiser, key_hash=hash_token(raw), prefix=raw[:12], label=label,
            idempotency_key=idempotency_key,
        )
        return token, raw


class Notification(models.Model):
    """Something that touched an advertiser's money (SPEC R36): emailed once, listed in the portal.

    `key` names the event ("credit-expired:42") and is unique, so a job that runs twice, or two
    sweeps at once, notify once. The body is rendered from `templates/emails/<kind>.txt` with
    `context` when it is sent or shown, so a sweep only inserts rows.
    """

    advertiser = models.ForeignKey(Advertiser, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=32)
    key = models.CharField(max_length=120, unique=True)
    subject = models.CharField(max_length=200)
    context = models.JSONField(default=dict)
    link = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(default=now)
    emailed_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["advertiser", "-created_at"], name="notification_adv_created")]

    def __str__(self) -> str:
        return self.subject


class AuditLog(models.Model):
    """Every staff action (SPEC R31, issue 5): who, when, what, why, before and after.

    Rows are append-only: the admin shows them read-only and PostgreSQL refuses UPDATE and DELETE
    (migration portal 0005).
    """

    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                              related_name="+")  # None: an automatic rule
    actor_name = models.CharField(max_length=150)
    action = models.CharField(max_length=64)
    advertiser = models.ForeignKey(Advertiser, null=True, blank=True, on_delete=models.PROTECT, related_name="audit")
    target = models.CharField(max_length=200, blank=True, default="")
    reason = models.TextField()
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=now)

    class Meta:
        indexes = [models.Index(fields=["advertiser", "-created_at"], name="audit_adv_created")]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_name} {self.action}"
