"""Spend ingestion (SPEC R10–R15): validate a batch, allocate each charge, book it.

`spend_record_batch` is all-or-nothing: a bad event fails the whole batch with the index of the
event (BadInput, 400) and a reused `event_id` with other content fails it with Conflict (409);
nothing is recorded in either case. A batch runs in one transaction with a constant number of
queries: lock the advertisers in id order, load their accounts and usable credits, allocate in
memory, then insert transactions, entries and events and move balances in bulk.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.ledger import Posting, advertiser_accounts, ledger_post_many, lock_advertisers
from billing.models import DEBIT, Purpose, SpendEvent, SpendKind, TxKind
from billing.money import ZERO, parse_amount
from billing.waterfall import Allocation, Charge, CreditState, Funds, allocate
from portal import inputs
from portal.errors import BadInput, Conflict

MAX_FUTURE_SKEW = timedelta(hours=1)
EVENT_ID_MAX = 128  # SpendEvent.event_id


@dataclass
class SpendIn:
    event_id: str
    advertiser_id: int
    campaign_id: int
    amount: Decimal
    currency: str
    occurred_at: datetime
    kind: str
    campaign: object = None
    advertiser: object = None

    def same_as(self, ev: SpendEvent) -> bool:
        return (
            ev.advertiser_id == self.advertiser_id
            and ev.campaign_id == self.campaign_id
            and ev.amount == self.amount
            and ev.currency == self.currency
            and ev.occurred_at == self.occurred_at
            and ev.kind == self.kind
        )


@dataclass
class SpendResult:
    event_id: str
    status: str  # applied | duplicate
    allocation: Allocation


def _bad(index: int, code: str, message: str) -> BadInput:
    return BadInput(code, f"events[{index}]: {message}", index=index)


def _parse_id(value, index: int, name: str) -> int:
    try:
        return inputs.object_id(value, field=name, code="invalid_event")
    except BadInput as e:
        raise _bad(index, e.code, e.message) from None


def spend_validate(raw_events) -> list[SpendIn]:
    """Parse and check every event; the first bad one raises with its index. Two queries."""
    from portal.models import Advertiser, Campaign

    if not isinstance(raw_events, list) or not raw_events:
        raise BadInput("invalid_events", "events must be a non-empty list.")
    if len(raw_events) > settings.SPEND_BATCH_MAX:
        raise BadInput(
            "too_many_events",
            f"A batch holds at most {settings.SPEND_BATCH_MAX} events, got {len(raw_events)}.",
        )
    parsed = []
    for i, raw in enumerate(raw_events):
        if not isinstance(raw, dict):
            raise _bad(i, "invalid_event", "each event must be an object.")
        for name in ("event_id", "advertiser_id", "campaign_id", "amount", "currency", "occurred_at"):
            if raw.get(name) in (None, ""):
                raise _bad(i, "invalid_event", f"{name} is required.")
        try:
            event_id = inputs.key(raw["event_id"], field="event_id", max_length=EVENT_ID_MAX, code="invalid_event")
        except BadInput as e:
            raise _bad(i, e.code, e.message) from None
        kind = raw.get("kind") or SpendKind.AD_SPEND
        if not isinstance(kind, str) or kind not in SpendKind.values:
            raise _bad(i, "invalid_event", f"kind must be ad_spend or fee, got {kind!r}.")
        parsed.append((i, raw, event_id, kind, _parse_id(raw["advertiser_id"], i, "advertiser_id"),
                       _parse_id(raw["campaign_id"], i, "campaign_id")))
    advertisers = Advertiser.objects.in_bulk({p[4] for p in parsed})
    campaigns = Campaign.objects.in_bulk({p[5] for p in parsed})
    now = timezone.now()
    out = []
    for i, raw, event_id, kind, adv_id, camp_id in parsed:
        adv = advertisers.get(adv_id)
        if adv is None:
            raise _bad(i, "unknown_advertiser", f"advertiser {adv_id} does not exist.")
        camp = campaigns.get(camp_id)
        if camp is None or camp.advertiser_id != adv_id:
            raise _bad(i, "unknown_campaign", f"campaign {camp_id} does not exist for advertiser {adv_id}.")
        currency = raw["currency"]
        if currency != adv.currency:
            raise _bad(i, "currency_mismatch", f"currency {currency!r} is not the account's currency {adv.currency}.")
        try:
            amount = parse_amount(raw["amount"], currency)
            occurred_at = inputs.timestamp(raw["occurred_at"], field="occurred_at")
        except BadInput as e:
            raise _bad(i, e.code, e.message) from None
        if occurred_at > now + MAX_FUTURE_SKEW:
            raise _bad(i, "invalid_timestamp", f"occurred_at {raw['occurred_at']} is in the future.")
        out.append(SpendIn(event_id, adv_id, camp_id, amount, currency, occurred_at, kind, camp, adv))
    return out


def allocations_for(events: list[SpendEvent]) -> dict[str, Allocation]:
    """Rebuild allocations from the ledger (the single source of truth). One query."""
    from billing.models import LedgerEntry

    by_tx = {ev.transaction_id: ev.event_id for ev in events}
    out = {ev.event_id: Allocation() for ev in events}
    entries = (
        LedgerEntry.objects.filter(transaction_id__in=list(by_tx), side=DEBIT)
        .select_related("account__credit")
        .order_by("pk")
    )
    for e in entries:
        alloc = out[by_tx[e.transaction_id]]
        purpose = e.account.purpose
        if purpose == Purpose.PROMO_CREDIT:
            credit = e.account.credit
            if credit.kind == "discount":
                alloc.discount += e.amount
                alloc.discount_credit_id = credit.pk
            elif credit.kind == "assignable":
                alloc.coupons.append((credit.pk, e.amount))
            else:
                alloc.credits.append((credit.pk, e.amount))
        elif purpose in (Purpose.CASH, Purpose.ACCRUED, Purpose.CREDIT_LINE, Purpose.ARREARS):
            setattr(alloc, purpose, getattr(alloc, purpose) + e.amount)
    return out


def _credit_states(advertisers: dict) -> tuple[dict[int, list[CreditState]], dict[int, object]]:
    from promotions.models import Credit, CreditStatus

    usable_ids = [pk for pk, a in advertisers.items() if a.credit_usable]
    credits = list(
        Credit.objects.filter(
            advertiser_id__in=usable_ids, status=CreditStatus.ACTIVE, ledger_account__balance__gt=0
        ).select_related("ledger_account")
    )
    assigned: dict[int, set] = {}
    coupon_ids = [c.pk for c in credits if c.kind == "assignable"]
    if coupon_ids:
        for credit_id, campaign_id in Credit.campaigns.through.objects.filter(credit_id__in=coupon_ids).values_list(
            "credit_id", "campaign_id"
        ):
            assigned.setdefault(credit_id, set()).add(campaign_id)
    states: dict[int, list[CreditState]] = {pk: [] for pk in advertisers}
    objects = {}
    for c in credits:
        objects[c.pk] = c
        states[c.advertiser_id].append(
            CreditState(
                id=c.pk,
                kind=c.kind,
                remaining=c.ledger_account.balance,
                valid_from=c.valid_from,
                expires_at=c.expires_at,
                percent=c.percent,
                eligible_objectives=tuple(c.eligible_objectives or ()),
                eligible_product_source=c.eligible_product_source,
                campaign_ids=frozenset(assigned.get(c.pk, ())),
            )
        )
    return states, objects


def spend_record_batch(*, events) -> list[SpendResult]:
    """Validate, allocate and book a batch of spend events (raw dicts from any door)."""
    from portal.models import BillingMethod, Campaign, CampaignStatus
    from promotions.models import Credit, CreditStatus
    from promotions.programs import enrollments_record_spend

    items = spend_validate(events)
    with transaction.atomic():
        advertisers = lock_advertisers([it.advertiser_id for it in items])
        existing = {ev.event_id: ev for ev in SpendEvent.objects.filter(event_id__in=[it.event_id for it in items])}
        seen: dict[str, SpendIn] = {}
        fresh: list[SpendIn] = []
        for i, it in enumerate(items):
            prior = existing.get(it.event_id)
            twin = seen.get(it.event_id)
            if (prior is not None and not it.same_as(prior)) or (twin is not None and twin != it):
                raise Conflict(
                    "event_id_conflict",
                    f"events[{i}]: event_id {it.event_id!r} was already used for a different charge.",
                    index=i,
                )
            if prior is None and twin is None:
                fresh.append(it)
            seen[it.event_id] = it

        accounts = advertiser_accounts(advertisers)
        states, credit_objects = _credit_states(advertisers)
        funds = {}
        for pk, adv in advertisers.items():
            acc = accounts[pk]
            funds[pk] = Funds(
                billing_method=adv.billing_method,
                cash=acc[Purpose.CASH].balance,
                credit_line_available=max(adv.credit_line_limit - acc[Purpose.CREDIT_LINE].balance, ZERO),
            )

        postings, allocations = [], {}
        for it in fresh:
            camp = it.campaign
            alloc = allocate(
                Charge(it.amount, it.currency, camp.pk, camp.objective, camp.product_source, it.occurred_at, it.kind),
                states[it.advertiser_id],
                funds[it.advertiser_id],
            )
            allocations[it.event_id] = alloc
            acc = accounts[it.advertiser_id]
            income = acc[Purpose.FEE_REVENUE if it.kind == SpendKind.FEE else Purpose.REVENUE]
            p = Posting(
                kind=TxKind.FEE if it.kind == SpendKind.FEE else TxKind.CHARGE,
                currency=it.currency,
                amount=it.amount,
                lines=[],
                advertiser_id=it.advertiser_id,
                campaign_id=camp.pk,
                occurred_at=it.occurred_at,
                memo=f"event {it.event_id}",
            )
            if alloc.discount_credit_id:
                p.move(debit=credit_objects[alloc.discount_credit_id].ledger_account, credit=income, amount=alloc.discount)
            for credit_id, amount in alloc.coupons + alloc.credits:
                p.move(debit=credit_objects[credit_id].ledger_account, credit=income, amount=amount)
            for purpose in (Purpose.CASH, Purpose.ACCRUED, Purpose.CREDIT_LINE, Purpose.ARREARS):
                p.move(debit=acc[purpose], credit=income, amount=getattr(alloc, purpose))
            postings.append(p)

        if postings:
            ledger_post_many(postings)
            try:
                SpendEvent.objects.bulk_create(
                    [
                        SpendEvent(
                            event_id=it.event_id,
                            advertiser_id=it.advertiser_id,
                            campaign_id=it.campaign_id,
                            amount=it.amount,
                            currency=it.currency,
                            occurred_at=it.occurred_at,
                            kind=it.kind,
                            transaction=p.transaction,
                        )
                        for it, p in zip(fresh, postings)
                    ]
                )
            except IntegrityError as e:
                # R15: a concurrent request booked one of these event_ids after our check. Requests
                # for the same advertiser are serialised by its lock, so that request was for
                # another advertiser: other content, a conflict. The whole batch rolls back.
                if "event_id" not in str(e):
                    raise
                raise Conflict(
                    "event_id_conflict",
                    "An event_id in this batch was just used for a different charge by another request.",
                ) from e
            enrollments_record_spend(
                charges=[
                    (it.advertiser_id, it.campaign, it.occurred_at, allocations[it.event_id])
                    for it in fresh
                    if it.kind == SpendKind.AD_SPEND
                ]
            )
            spent = [pk for pk, c in credit_objects.items() if c.ledger_account.balance == 0]
            if spent:
                Credit.objects.filter(pk__in=spent, status=CreditStatus.ACTIVE).update(
                    status=CreditStatus.USED_UP, ended_at=timezone.now()
                )
            out_of_funds = [
                pk
                for pk, adv in advertisers.items()
                if accounts[pk][Purpose.ARREARS].balance > 0
                or (
                    adv.billing_method == BillingMethod.MONTHLY_INVOICE
                    and funds[pk].credit_line_available <= 0
                    and pk in {it.advertiser_id for it in fresh}
                )
            ]
            if out_of_funds:
                Campaign.objects.filter(advertiser_id__in=out_of_funds, status=CampaignStatus.ACTIVE).update(
                    status=CampaignStatus.PAUSED_FUNDS
                )

    replays = [existing[it.event_id] for it in items if it.event_id in existing]
    allocations.update(allocations_for(replays) if replays else {})
    fresh_ids = {it.event_id for it in fresh}
    results, reported = [], set()
    for it in items:
        status = "applied" if it.event_id in fresh_ids and it.event_id not in reported else "duplicate"
        reported.add(it.event_id)
        results.append(SpendResult(it.event_id, status, allocations[it.event_id]))
    return results


def spend_record(*, event: dict) -> SpendResult:
    return spend_record_batch(events=[event])[0]
