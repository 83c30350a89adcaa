"""A delivery simulator for the demo: plausible ad spend every round, through the real services.

Each round posts one spend event per active campaign of every active advertiser with
`spend_record_batch` (so the waterfall, the ledger, pausing and ladder progress all happen as they
would for real traffic), then tops up manual-payment accounts running low with `deposit_create`
(source "simulator") so the demo never sits paused for lack of funds: the deposit settles arrears
first and resumes campaigns paused by billing (R13). Automatic and invoiced accounts are left to
their own billing jobs.

Run it from Celery beat (`billing.tasks.simulate_delivery`, every 15 s with DEMO_SIMULATOR=1) or
`manage.py simulate_delivery`. It is for demo and staging data only.
"""

import random
import uuid
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from billing.deposits import deposit_create, deposit_limits
from billing.money import MINOR_UNITS, fmt, quantum, round_down
from billing.selectors import advertiser_balances
from billing.spend import spend_record_batch
from portal.models import Advertiser, AdvertiserStatus, BillingMethod, Campaign, CampaignStatus

ROUND_SECONDS = 15
# One round's spend per campaign, in units of the currency's smallest deposit (USD: 20).
SPEND_PER_ROUND = (Decimal("0.0005"), Decimal("0.0125"))  # USD 0.01 – 0.25
OBJECTIVE_WEIGHT = {
    "REACH": Decimal("0.8"), "VIDEO_VIEWS": Decimal("0.7"), "TRAFFIC": Decimal("1.0"), "ENGAGEMENT": Decimal("0.6"),
    "LEAD_GENERATION": Decimal("1.2"), "APP_PROMOTION": Decimal("1.3"), "PRODUCT_SALES": Decimal("1.5"),
    "WEBSITE_CONVERSIONS": Decimal("1.4"),
}
# A manual account whose cash + usable credit falls under LOW_WATER deposits is topped up with
# TOP_UP deposits (both in units of the smallest deposit, capped by the largest).
LOW_WATER = 5  # USD 100
TOP_UP = 50  # USD 1,000


def round_amount(*, objective: str, currency: str, rng: random.Random) -> Decimal:
    """A plausible spend for one campaign over one round, in the currency's minor unit."""
    low, _ = deposit_limits(currency)
    lo, hi = SPEND_PER_ROUND
    share = Decimal(str(rng.uniform(float(lo), float(hi))))
    amount = round_down(low * share * OBJECTIVE_WEIGHT.get(objective, Decimal(1)), currency)
    return max(amount, quantum(currency))


def simulate_delivery(*, at: datetime | None = None, rng: random.Random | None = None) -> dict:
    """One round of simulated delivery as of `at`. Returns counts for tests and logs."""
    at = at or timezone.now()
    rng = rng or random.Random()
    campaigns = list(
        Campaign.objects.filter(status=CampaignStatus.ACTIVE, advertiser__status=AdvertiserStatus.ACTIVE)
        .select_related("advertiser")
        .order_by("advertiser_id", "pk")
    )
    stamp = at.strftime("%Y%m%dT%H%M%S")
    events = []
    for camp in campaigns:
        adv = camp.advertiser
        occurred = at - timedelta(seconds=rng.uniform(0, ROUND_SECONDS))
        events.append({
            "event_id": f"sim-{stamp}-{camp.pk}-{uuid.uuid4().hex[:12]}",
            "advertiser_id": adv.pk,
            "campaign_id": camp.pk,
            "amount": fmt(round_amount(objective=camp.objective, currency=adv.currency, rng=rng), adv.currency),
            "currency": adv.currency,
            "occurred_at": occurred.isoformat(),
        })
    for start in range(0, len(events), settings.SPEND_BATCH_MAX):
        spend_record_batch(events=events[start:start + settings.SPEND_BATCH_MAX])
    spend: dict[str, Decimal] = {}
    for ev in events:
        spend[ev["currency"]] = spend.get(ev["currency"], Decimal(0)) + Decimal(ev["amount"])

    deposits, deposited = 0, {}
    manual = Campaign.objects.filter(
        advertiser__status=AdvertiserStatus.ACTIVE,
        advertiser__billing_method=BillingMethod.MANUAL,
        status__in=[CampaignStatus.ACTIVE, CampaignStatus.PAUSED_FUNDS],
    ).values_list("advertiser_id", flat=True).distinct()
    for adv in Advertiser.objects.filter(pk__in=list(manual)).order_by("pk"):
        amount = top_up_amount(advertiser=adv)
        if amount is None:
            continue
        deposit_create(advertiser=adv, amount=fmt(amount, adv.currency),
                       idempotency_key=f"sim-{stamp}-{uuid.uuid4().hex[:12]}", source="simulator")
        deposits += 1
        deposited[adv.currency] = deposited.get(adv.currency, Decimal(0)) + amount
    return {
        "campaigns": len(campaigns),
        "events": len(events),
        "spend": {c: fmt(v, c) for c, v in sorted(spend.items())},
        "deposits": deposits,
        "deposited": {c: fmt(v, c) for c, v in sorted(deposited.items())},
    }


def top_up_amount(*, advertiser) -> Decimal | None:
    """What to deposit so a manual account can keep delivering, or None if it has enough.

    Enough means no arrears and cash + usable credit at or above the low-water mark. A top-up
    covers the arrears plus TOP_UP, within the per-deposit limit.
    """
    b = advertiser_balances(advertiser=advertiser)
    low, high = deposit_limits(advertiser.currency)
    if b.arrears == 0 and b.cash_balance + b.credit_balance >= low * LOW_WATER:
        return None
    amount = min(b.arrears + low * TOP_UP, high)
    places = MINOR_UNITS[advertiser.currency]
    return amount.quantize(Decimal(1).scaleb(-places))
