"""`manage.py load_demo`: a Business Center with five advertisers (every billing method, a brand-new
account that can redeem the WELCOME100 promo code, an automatic account whose last payment
failed), their users, campaigns, credits of every kind, ladder enrollments and a month of spend.

Everything goes through the services (ledger rows are never written here), in one transaction,
so a failure leaves nothing behind. It is idempotent: if the demo Business Center exists, it
changes nothing and prints the same logins. The history is generated from a fixed seed, so every
fresh load holds the same events and amounts (relative to the moment it runs).

Spend history: every campaign gets a charge every 2–6 hours over the last 30 days, sized from
its daily budget with a day/night rhythm and noise, backdated `occurred_at`, posted day by day
with `spend_record_batch`. The automatic account's threshold bills are raised and paid (sandbox
card) at the end of each day, as the billing job would have. The invoiced account's history also
reaches at least 12 hours into last month (in its time zone; 30 days do not on the 31st), and it
gets an invoice on every 1st of its history, as `issue_monthly_invoices` would have issued it, so
it always has last month's invoice (R27). Credits meant to pay history are valid from before it
began.

The history reads in order (issue 13): each credit is issued at its `valid_from` and each deposit
is made before the spend it pays for (the manual account tops up once mid-month), by calling the
services with the clock set to that moment (`_as_of`), so the Transactions page never shows money
arriving after the spend it paid for.
"""

import random
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal
from unittest import mock

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from billing.autopay import charge_thresholds, payment_method_set
from billing.deposits import deposit_create
from billing.invoicing import invoice_issue
from billing.limits import spend_counted, spending_limit_set
from billing.ledger import advertiser_accounts, lock_advertisers
from billing.models import BillKind, Purpose
from billing.money import fmt
from billing.spend import spend_record_batch
from billing.switching import billing_settings_set
from portal.alerts import alert_preferences_set
from portal.models import Advertiser, BusinessCenter, Campaign, CampaignStatus, LimitPeriod
from portal.services import advertiser_create, bc_member_add, business_center_create, campaign_create, member_add
from promotions.credits import credit_assign, credit_grant
from promotions.programs import enrollment_create, program_create

BC_NAME = "Demo Agency BC"
PASSWORD = "demo-pass-2026"
ROLE_USERS = {"admin": "demo_admin", "finance": "demo_finance", "operator": "demo_operator", "analyst": "demo_analyst"}
STAFF_USER = "support"
BC_ADMIN_USER = "demo_bc_admin"
HISTORY_DAYS = 30
INVOICE_LEAD = timedelta(hours=12)  # the invoiced account's history starts at least this long before the 1st
TOP_UP_DAY = 12  # the manual account's second deposit, this many days into the history (before its cash runs out)
SEED = 2026


@dataclass(frozen=True)
class CampaignSpec:
    name: str
    objective: str
    product_source: str = "NONE"
    daily: str = "0"  # typical daily spend in USD
    status: str = CampaignStatus.ACTIVE


ADVERTISERS = [
    {
        "key": "manual",
        "name": "Demo Shop US",
        "billing_method": "manual",
        "timezone_name": "America/Los_Angeles",
        "signup_source": "official_offer",
        "registered_days_ago": 34,
        "shop_id": "SHOP-7300121",
        "campaigns": [
            CampaignSpec("Holiday Sale — Shop Ads", "PRODUCT_SALES", "TIKTOK_SHOP", "60"),
            CampaignSpec("Creator Showcase Videos", "VIDEO_VIEWS", "NONE", "25"),
            CampaignSpec("Catalog Retargeting", "PRODUCT_SALES", "CATALOG", "35"),
            CampaignSpec("Brand Reach — Q4", "REACH", "NONE", "20"),
            CampaignSpec("Lead Form Test", "LEAD_GENERATION", "NONE", "0", CampaignStatus.PAUSED),
        ],
    },
    {
        "key": "automatic",
        "name": "Demo Apparel Co",
        "billing_method": "automatic",
        "timezone_name": "America/New_York",
        "signup_source": "organic",
        "registered_days_ago": 210,
        "shop_id": "",
        "campaigns": [
            CampaignSpec("Fall Collection Traffic", "TRAFFIC", "NONE", "45"),
            CampaignSpec("App Install — iOS", "APP_PROMOTION", "NONE", "30"),
            CampaignSpec("Checkout Conversions", "WEBSITE_CONVERSIONS", "CATALOG", "40"),
        ],
    },
    {
        "key": "invoice",
        "name": "Demo Games Studio",
        "billing_method": "monthly_invoice",
        "timezone_name": "Asia/Singapore",
        "signup_source": "organic",
        "registered_days_ago": 420,
        "shop_id": "",
        "credit_line_limit": Decimal("5000"),
        "campaigns": [
            CampaignSpec("Launch Trailer Views", "VIDEO_VIEWS", "NONE", "30"),
            CampaignSpec("Pre-register — Android", "APP_PROMOTION", "NONE", "45"),
            CampaignSpec("Community Engagement", "ENGAGEMENT", "NONE", "15"),
        ],
    },
    {
        # Registered through the official offer two days ago, no spend yet: can redeem WELCOME100.
        "key": "startup",
        "name": "Demo Startup Lab",
        "billing_method": "manual",
        "timezone_name": "Europe/London",
        "signup_source": "official_offer",
        "registered_days_ago": 2,
        "shop_id": "",
        "campaigns": [
            CampaignSpec("First Campaign — Traffic", "TRAFFIC", "NONE", "0", CampaignStatus.PAUSED),
        ],
    },
    {
        # Automatic payment whose card started declining: its last bill failed (Pay now banner).
        "key": "outdoor",
        "name": "Demo Outdoor Gear",
        "billing_method": "automatic",
        "timezone_name": "America/Denver",
        "signup_source": "organic",
        "registered_days_ago": 95,
        "shop_id": "",
        "campaigns": [
            CampaignSpec("Trail Season Reach", "REACH", "NONE", "18"),
            CampaignSpec("Gear Catalog Sales", "PRODUCT_SALES", "CATALOG", "22"),
        ],
    },
]


def demo_logins() -> list[str]:
    """The logins, at the address the portal is served at (SITE_URL, which follows BIND)."""
    base = settings.SITE_URL.rstrip("/") + "/"
    return [
        f"Demo login: {base}  user {ROLE_USERS['admin']}  password {PASSWORD}",
        f"Staff login: {base}admin/  user {STAFF_USER}  password {PASSWORD}",
        f"Other demo users (same password): {', '.join(u for r, u in ROLE_USERS.items() if r != 'admin')}, "
        f"{BC_ADMIN_USER} (Business Center admin)",
    ]


class Command(BaseCommand):
    help = "Load the demo data set (idempotent): Business Center, advertisers, users, credits, a month of spend."

    def handle(self, *args, **options):
        if BusinessCenter.objects.filter(name=BC_NAME).exists():
            self.stdout.write(f"Demo data already loaded ({BC_NAME}); nothing changed.")
        else:
            with transaction.atomic():
                summary = demo_load(now=timezone.now())
            for line in summary:
                self.stdout.write(line)
        for line in demo_logins():
            self.stdout.write(line)


def _user(username: str, *, password_hash: str, staff: bool = False):
    User = get_user_model()
    user, _ = User.objects.get_or_create(username=username)
    user.email = f"{username}@demo.example"
    user.is_staff = user.is_superuser = staff
    user.password = password_hash  # one hash for every demo user: hashing is slow on purpose
    user.save()
    return user


@contextmanager
def _as_of(at: datetime):
    """Call services as of `at`: the demo issues a credit or makes a deposit at the moment its
    history needs it, through the unchanged services. Only the clock they read moves
    (`django.utils.timezone.now`, which `localdate` and the ledger use too)."""
    with mock.patch.object(timezone, "now", return_value=at):
        yield


def demo_load(*, now: datetime) -> list[str]:
    rng = random.Random(SEED)
    history_start = now - timedelta(days=HISTORY_DAYS)
    before_history = history_start - timedelta(days=2)

    password_hash = make_password(PASSWORD)
    _user(STAFF_USER, password_hash=password_hash, staff=True)
    for username in [*ROLE_USERS.values(), BC_ADMIN_USER]:
        _user(username, password_hash=password_hash)
    bc = business_center_create(name=BC_NAME, currency="USD")
    bc_member_add(business_center=bc, username=BC_ADMIN_USER, role="admin")

    advertisers: dict[str, Advertiser] = {}
    campaigns: dict[str, list[tuple[Campaign, CampaignSpec]]] = {}
    for spec in ADVERTISERS:
        adv = advertiser_create(
            name=spec["name"], currency="USD", timezone_name=spec["timezone_name"],
            billing_method=spec["billing_method"], business_center=bc,
            registered_at=now - timedelta(days=spec["registered_days_ago"]),
            signup_source=spec["signup_source"], shop_id=spec["shop_id"],
        )
        if "credit_line_limit" in spec:
            adv = billing_settings_set(advertiser=adv, credit_line_limit=spec["credit_line_limit"],
                                       reason="demo credit line")
        for role, username in ROLE_USERS.items():
            member_add(advertiser=adv, username=username, role=role)
        campaigns[spec["key"]] = []
        for c in spec["campaigns"]:
            camp = campaign_create(advertiser=adv, name=c.name, objective=c.objective, product_source=c.product_source)
            Campaign.objects.filter(pk=camp.pk).update(created_at=before_history, status=c.status)
            campaigns[spec["key"]].append((camp, c))
        advertisers[spec["key"]] = adv

    manual, automatic, invoiced = advertisers["manual"], advertisers["automatic"], advertisers["invoice"]
    outdoor = advertisers["outdoor"]
    shop_campaign = campaigns["manual"][0][0]
    card_expiry = f"12/{(now.year + 3) % 100:02d}"
    payment_method_set(advertiser=automatic, card_number="4242424242424242", expiry=card_expiry)
    payment_method_set(advertiser=outdoor, card_number="4242424242424242", expiry=card_expiry)
    # R19: a new-advertiser offer entered by promo code (the startup account can redeem it).
    program_create(
        name="Welcome offer: spend $200, get $100", kind="new_advertiser", window_days=30, reward_kind="free",
        tiers=[{"threshold": "200.00", "reward": "100.00"}, {"threshold": "1000.00", "reward": "300.00", "immediate": True}],
        code="WELCOME100", max_redemptions=500, ends_at=now + timedelta(days=90),
    )

    # Ladder programs, joined before the first spend (R19: no spend in the 90 days before).
    newcomer = program_create(
        name="New Advertiser Spend & Get", kind="new_advertiser", window_days=60, reward_kind="free",
        tiers=[{"threshold": "500.00", "reward": "100.00"}, {"threshold": "2000.00", "reward": "400.00"},
               {"threshold": "6000.00", "reward": "1500.00", "immediate": True}],
    )
    enrollment_create(advertiser=manual, program=newcomer, at=now - timedelta(days=HISTORY_DAYS + 1))
    shop_program = program_create(
        name="Shop Ads Coupon Ladder", kind="shop", window_days=30, reward_kind="assignable",
        eligible_product_source="TIKTOK_SHOP",
        tiers=[{"threshold": "300.00", "reward": "30.00"}, {"threshold": "1000.00", "reward": "120.00"},
               {"threshold": "2500.00", "reward": "400.00"}],
    )
    enrollment_create(advertiser=manual, program=shop_program, at=now - timedelta(days=20))

    # Credits of every kind. valid_from decides which spend each one can pay (R9).
    # Each is issued at its valid_from, so it is on the ledger before any spend it pays.
    def grant(adv, key, kind, amount, reason, *, valid_from, days, source="managed", **kw):
        with _as_of(valid_from):
            return credit_grant(
                advertiser=adv, kind=kind, amount=amount, reason=reason, idempotency_key=f"demo-{key}",
                valid_from=valid_from, expires_at=valid_from + timedelta(days=days), source=source, **kw,
            )

    grant(manual, "welcome", "free", "200.00", "Welcome credit for new advertisers", valid_from=before_history, days=90)
    coupon = grant(manual, "shop-coupon", "assignable", "300.00", "Shop Ads launch coupon", source="shop",
                   valid_from=now - timedelta(days=3), days=60, eligible_product_source="TIKTOK_SHOP")
    credit_assign(credit=coupon, campaign_ids=[shop_campaign.pk])
    grant(manual, "discount", "discount", "100.00", "50% off video views, up to $100", source="discount",
          percent="50", valid_from=now - timedelta(days=4), days=30, eligible_objectives=["VIDEO_VIEWS"])
    grant(manual, "leadgen", "free", "75.00", "Lead generation starter credit", valid_from=before_history,
          days=HISTORY_DAYS + 7, eligible_objectives=["LEAD_GENERATION"])
    grant(automatic, "onboarding", "free", "500.00", "Agency onboarding credit", valid_from=before_history, days=90)
    grant(automatic, "reengage", "assignable", "150.00", "Re-engagement coupon: assign it to a campaign",
          valid_from=now - timedelta(days=1), days=45)
    grant(invoiced, "partner", "free", "400.00", "Quarterly partner credit for app campaigns",
          valid_from=before_history, days=90, eligible_objectives=["APP_PROMOTION"])

    # The manual account's deposits, each made (and booked) before the spend it pays for.
    deposits = [(history_start - timedelta(days=1), "3000.00", "demo-deposit-1"),
                (history_start + timedelta(days=TOP_UP_DAY), "2500.00", "demo-deposit-2")]

    def deposits_made_by(t: datetime) -> None:
        while deposits and deposits[0][0] <= t:
            at, amount, key = deposits.pop(0)
            with _as_of(at):
                deposit_create(advertiser=manual, amount=amount, idempotency_key=key, source="web", card_last4="4242")

    this_month = datetime.combine(now.astimezone(invoiced.tz).date().replace(day=1), time(0), tzinfo=invoiced.tz)
    invoiced_start = min(history_start, this_month - INVOICE_LEAD)
    events = spend_history(campaigns=[c for cs in campaigns.values() for c in cs], start=history_start, end=now, rng=rng,
                           starts={invoiced.pk: invoiced_start})
    early = [e for e in events if e["at"] < history_start]  # the invoiced account's, in last month
    for i in range(0, len(early), 500):
        spend_record_batch(events=[{k: v for k, v in e.items() if k != "at"} for e in early[i:i + 500]])
    day_end = history_start
    while day_end < now:
        day_start, day_end = day_end, min(day_end + timedelta(days=1), now)
        deposits_made_by(day_start)
        batch = [e for e in events if day_start <= e["at"] < day_end]
        for i in range(0, len(batch), 500):
            spend_record_batch(events=[{k: v for k, v in e.items() if k != "at"} for e in batch[i:i + 500]])
        charge_thresholds(at=day_end)  # as the job would have run at the end of that day (R24)

    # The apparel account ends near its threshold; the outdoor account's card starts declining
    # and its last threshold bill fails (R24, R26).
    near = accrued_to(automatic, fraction=Decimal("0.9"), campaign=campaigns["automatic"][0][0], at=now)
    payment_method_set(advertiser=outdoor, card_number="4000000000000002", expiry=card_expiry)
    accrued_to(outdoor, fraction=Decimal("1"), campaign=campaigns["outdoor"][0][0], at=now)
    charge_thresholds(at=now)

    # Every 1st (local midnight) in the invoiced account's history, oldest first, ending with this
    # month's: the invoice for last month. Spend is all posted, but each invoice counts only what
    # occurred before its 1st, as the job on that day would have.
    firsts = [this_month]
    while (firsts[0] - timedelta(days=1)).replace(day=1) > invoiced_start:
        firsts.insert(0, (firsts[0] - timedelta(days=1)).replace(day=1))
    invoice = None
    for first in firsts:
        with transaction.atomic():
            invoice = invoice_issue(advertiser=lock_advertisers([invoiced.pk])[invoiced.pk], at=first)

    # R43: the shop's monthly spending limit, twice what it spent this month so far (its meter on
    # the Billing method page); R44: its admin wants to hear when the cash runs below 500
    shop = advertisers["manual"]
    spent, _ = spend_counted(advertiser=shop, period=LimitPeriod.MONTHLY, at=now)
    limit = max((spent * 2).quantize(Decimal("1")), Decimal("500"))
    spending_limit_set(advertiser=shop, amount=fmt(limit, "USD"), period=LimitPeriod.MONTHLY,
                       reason="Demo: a monthly cap on ad spend")
    alert_preferences_set(user=get_user_model().objects.get(username=ROLE_USERS["admin"]), advertiser=shop, choices={},
                          low_balance_amount="500.00")

    total = sum((Decimal(e["amount"]) for e in events), Decimal(0))
    lines = [f"Loaded {BC_NAME}: {len(advertisers)} advertisers, {sum(len(c) for c in campaigns.values())} campaigns, "
             f"{len(events)} spend events over {HISTORY_DAYS} days ({fmt(total, 'USD')} USD)."]
    if invoice is not None:
        lines.append(f"Invoice {invoice.number} issued to {invoiced.name} for {fmt(invoice.amount, 'USD')} USD.")
    lines.append(f"{shop.name} has a monthly spending limit of {fmt(limit, 'USD')} USD.")
    lines.append(f"{automatic.name} is {fmt(near, 'USD')} USD from its billing threshold; "
                 f"{outdoor.name}'s last payment failed; {advertisers['startup'].name} can redeem WELCOME100.")
    return lines


def accrued_to(advertiser, *, fraction: Decimal, campaign, at: datetime) -> Decimal:
    """Post charges until the current bill is `fraction` of the threshold (credit may pay part of
    a charge first); returns what is left to reach the threshold."""
    adv = Advertiser.objects.get(pk=advertiser.pk)
    target = (adv.billing_threshold * fraction).quantize(Decimal("0.01"))
    for n in range(5):
        accrued = advertiser_accounts([adv.pk])[adv.pk][Purpose.ACCRUED].balance
        if accrued >= target:
            break
        spend_record_batch(events=[{
            "event_id": f"demo-{adv.pk}-bill-{n}", "advertiser_id": adv.pk, "campaign_id": campaign.pk,
            "amount": fmt(target - accrued, adv.currency), "currency": adv.currency,
            "occurred_at": (at - timedelta(minutes=2)).isoformat(),
        }])
    return adv.billing_threshold - advertiser_accounts([adv.pk])[adv.pk][Purpose.ACCRUED].balance


def spend_history(*, campaigns, start: datetime, end: datetime, rng: random.Random,
                  starts: dict[int, datetime] | None = None) -> list[dict]:
    """Charges every 2–6 hours per campaign, sized from its daily budget, busier in the local evening.
    History starts at `start`, or for an advertiser in `starts` at its own start."""
    events = []
    for camp, spec in campaigns:
        daily = Decimal(spec.daily)
        if spec.status != CampaignStatus.ACTIVE or daily <= 0:
            continue
        tz = camp.advertiser.tz
        t = (starts or {}).get(camp.advertiser_id, start) + timedelta(minutes=rng.uniform(5, 180))
        n = 0
        while t < end - timedelta(minutes=5):
            step = rng.uniform(2, 6)
            hour = t.astimezone(tz).hour
            rhythm = 0.45 if hour < 7 else 1.45 if hour >= 18 else 1.0
            amount = (daily * Decimal(str(step / 24 * rhythm * rng.uniform(0.7, 1.3)))).quantize(Decimal("0.01"))
            if amount > 0:
                n += 1
                events.append({
                    "event_id": f"demo-{camp.pk}-{n}",
                    "advertiser_id": camp.advertiser_id,
                    "campaign_id": camp.pk,
                    "amount": str(amount),
                    "currency": camp.advertiser.currency,
                    "occurred_at": t.isoformat(),
                    "at": t,
                })
            t += timedelta(hours=step)
    events.sort(key=lambda e: (e["at"], e["event_id"]))
    return events
