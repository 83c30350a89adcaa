"""Business Centers, advertisers, members and campaigns (SPEC R1–R3), and API tokens."""

import hashlib
import secrets
import zoneinfo
from datetime import date
from decimal import Decimal

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


class LimitPeriod(models.TextChoices):
    """R43: what an account spending limit counts: all ad spend ever, or the calendar month's
    (in the account's time zone)."""

    LIFETIME = "lifetime", "Lifetime"
    MONTHLY = "monthly", "Monthly"


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
    # R43: the account spending limit (None: no limit) and the ad spend it has counted — ever, or in
    # `limit_month` (the first day of the counted month in the account's time zone). The counter is
    # kept by the spend booking under the advertiser's lock, only while a limit is set.
    spending_limit = models.DecimalField(max_digits=20, decimal_places=4, null=True, blank=True)
    spending_limit_period = models.CharField(max_length=8, choices=LimitPeriod.choices, default=LimitPeriod.MONTHLY)
    limit_spent = models.DecimalField(max_digits=20, decimal_places=4, default=0)
    limit_month = models.DateField(null=True, blank=True)
    created_at = models.DateTimeField(default=now)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(credit_line_limit__gte=0), name="advertiser_credit_line_limit_gte_0"),
            models.CheckConstraint(condition=Q(spending_limit__gte=0) | Q(spending_limit__isnull=True),
                                   name="advertiser_spending_limit_gte_0"),
            models.CheckConstraint(condition=Q(limit_spent__gte=0), name="advertiser_limit_spent_gte_0"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.currency})"

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    @property
    def is_in_good_standing(self) -> bool:
        return self.status == AdvertiserStatus.ACTIVE

    def limit_month_of(self, at) -> "date":
        """R43: the first day of `at`'s calendar month in the account's time zone."""
        return at.astimezone(self.tz).date().replace(day=1)

    def limit_spent_at(self, at) -> Decimal:
        """R43: the ad spend the limit has counted as of `at` — ever, or in `at`'s month (a month
        with no charge yet counts nothing). Only kept while a limit is set."""
        if self.spending_limit_period == LimitPeriod.MONTHLY and (
                self.limit_month is None or self.limit_month < self.limit_month_of(at)):
            return Decimal(0)
        return self.limit_spent

    def limit_reached_at(self, at) -> bool:
        """R43: the account's campaigns stay paused (`paused_limit`) while this holds."""
        return self.spending_limit is not None and self.limit_spent_at(at) >= self.spending_limit

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
    PAUSED_LIMIT = "paused_limit", "Paused — spending limit"  # R43


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
    # a member's own alert (R44: a low balance below the amount they set), None: the account's
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                             related_name="+")
    kind = models.CharField(max_length=32)
    key = models.CharField(max_length=120, unique=True)
    subject = models.CharField(max_length=200)
    context = models.JSONField(default=dict)
    link = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(default=now)
    emailed_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    # R45/R46: when the relay wrote this event's webhook deliveries (None: not yet)
    webhooks_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["advertiser", "-created_at"], name="notification_adv_created"),
            models.Index(fields=["id"], condition=Q(webhooks_at__isnull=True), name="notification_webhooks_due"),
        ]

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


class AlertPreference(models.Model):
    """R44: what one member gets of one alert on one account, per channel (no row: both on). The
    low-balance alert also carries the member's own amount (no amount: that alert is off)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="alert_preferences")
    advertiser = models.ForeignKey(Advertiser, on_delete=models.CASCADE, related_name="alert_preferences")
    alert = models.CharField(max_length=32)
    email = models.BooleanField(default=True)
    in_app = models.BooleanField(default=True)
    amount = models.DecimalField(max_digits=20, decimal_places=4, null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "advertiser", "alert"], name="alert_preference_unique"),
            models.CheckConstraint(condition=Q(amount__gte=0) | Q(amount__isnull=True), name="alert_amount_gte_0"),
        ]


class AlertState(models.Model):
    """R44: whether a level alert (a balance below a member's amount, a credit line over 80 % used)
    is crossed now, so it fires once per crossing. `key` names the alert and, for a member's own,
    the member: "credit_line_80", "low_balance:user:7"."""

    advertiser = models.ForeignKey(Advertiser, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=64)
    crossed = models.BooleanField(default=False)
    crossings = models.PositiveIntegerField(default=0)  # how many times it fired
    changed_at = models.DateTimeField(default=now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["advertiser", "key"], name="alert_state_unique")]


class WebhookEndpoint(models.Model):
    """R45: an HTTPS endpoint an advertiser's admin registered, with the event types it receives.
    The secret signs every delivery; it is shown once, when the endpoint is created."""

    advertiser = models.ForeignKey(Advertiser, on_delete=models.CASCADE, related_name="webhooks")
    url = models.CharField(max_length=500)
    events = models.JSONField(default=list)
    secret = models.CharField(max_length=80)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=now)
    disabled_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.url


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"  # gave up after 24 hours of retries


class WebhookDelivery(models.Model):
    """R45/R46: one event for one endpoint, delivered at least once. A worker claims a due row
    (`claimed_until`, a lease), so two workers never send it at once and a killed worker's claim
    lapses and is retried."""

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=now)
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(default=now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "notification"], name="webhook_delivery_once"),
        ]
        indexes = [
            models.Index(fields=["next_attempt_at"], condition=Q(status="pending"), name="webhook_delivery_due"),
            models.Index(fields=["endpoint", "-created_at"], name="webhook_delivery_endpoint"),
        ]
