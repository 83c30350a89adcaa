"""Spend ingestion (SPEC R10–R15): validate a batch, allocate each charge, book it.

`spend_record_batch` is all-or-nothing: a bad event fails the whole batch with the index of the
event (BadInput, 400) and a reused `event_id` with other content fails it with Conflict (409);
nothing is recorded in either case. A batch runs in one transaction with a constant number of
queries: lock the advertisers in id order, load their accounts and usable credits, allocate in
memory, then insert transactions, entries and events and move balances in bulk.
"""

import functools
import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from billing.deposits import campaigns_pause_rider, campaigns_paused_notify, out_of_funds
from billing.limits import limit_counts, limit_reached, limit_reached_notify, limits_rider
from billing.ledger import AccountRef, Posting, Rider, advertiser_accounts, ledger_write, lock_advertisers
from billing.models import DEBIT, LedgerAccount, LedgerEntry, Purpose, SpendEvent, SpendKind, TxKind
from billing.money import ZERO, parse_amount
from billing.waterfall import Allocation, Charge, CreditState, Funds, allocate
from portal import inputs
from portal.dbtypes import EARLIEST, LATEST, prepared_cursor
from portal.errors import BadInput, Conflict
from portal.models import BillingMethod, Campaign, CampaignStatus
from promotions.credits import credits_used_up_notices, credits_used_up_rider
from promotions.models import Credit, CreditStatus, Enrollment, EnrollmentStatus
from promotions.programs import enrollments_record_spend

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


def spend_parse(raw_events) -> list[tuple]:
    """Check the shape of every event (no database): the first bad one raises with its index.
    Returns `(index, raw, event_id, kind, advertiser_id, campaign_id)` per event."""
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
    return parsed


def spend_validate(parsed: list[tuple], advertisers: dict, campaigns: dict) -> list[SpendIn]:
    """Check every parsed event against its (locked) advertiser and its campaign, in order: the
    first bad one raises with its index."""
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


# The advertiser accounts a charge can move: what pays it and what it earns (not its credits').
SPEND_PURPOSES = [Purpose.CASH, Purpose.ACCRUED, Purpose.CREDIT_LINE, Purpose.ARREARS, Purpose.REVENUE,
                  Purpose.FEE_REVENUE]


@dataclass(slots=True)
class CampaignRef:
    """What a charge reads of its campaign (the waterfall's and the ladder's eligibility)."""

    pk: int
    advertiser_id: int
    objective: str
    product_source: str
    shop_id: str


@dataclass
class SpendWorld:
    """Everything a batch needs to be booked, read once under the advertisers' locks."""

    campaigns: dict  # id -> CampaignRef (or Campaign)
    accounts: dict  # advertiser id -> purpose -> AccountRef (or LedgerAccount)
    credits: dict  # advertiser id -> [CreditState] (usable accounts only)
    credit_accounts: dict  # credit id -> its ledger account (LedgerAccount or AccountRef)
    existing: dict  # event_id -> SpendEvent already booked
    enrolled: set  # advertiser ids with an open ladder enrollment


def _credit_state(c: dict, campaign_ids) -> CreditState:
    return CreditState(
        id=c["id"], kind=c["kind"], remaining=c["balance"], valid_from=c["valid_from"], expires_at=c["expires_at"],
        percent=c["percent"], eligible_objectives=tuple(c["eligible_objectives"] or ()),
        eligible_product_source=c["eligible_product_source"], campaign_ids=frozenset(campaign_ids or ()),
    )


@functools.cache
def _world_sql() -> str:
    qn = connection.ops.quote_name
    t = {m: qn(m._meta.db_table) for m in (Campaign, LedgerAccount, Credit, SpendEvent, Enrollment)}
    through = qn(Credit.campaigns.through._meta.db_table)
    return f"""
    WITH camp AS (
        SELECT id, advertiser_id, objective, product_source, shop_id, status FROM {t[Campaign]}
         WHERE id = ANY(%s::bigint[])
    ), acc AS (
        SELECT id, advertiser_id, purpose, currency, normal, balance FROM {t[LedgerAccount]}
         WHERE advertiser_id = ANY(%s::bigint[]) AND purpose = ANY(%s::text[])
    ), cr AS (
        SELECT c.id, c.advertiser_id, c.kind, c.valid_from, c.expires_at, c.percent, c.eligible_objectives,
               c.eligible_product_source, a.id AS account_id, a.currency, a.normal, a.balance,
               ARRAY(SELECT m.campaign_id FROM {through} m WHERE m.credit_id = c.id) AS campaign_ids
          FROM {t[Credit]} c JOIN {t[LedgerAccount]} a ON a.id = c.ledger_account_id
         WHERE c.advertiser_id = ANY(%s::bigint[]) AND c.status = %s AND a.balance > 0
    ), ev AS (
        SELECT id, event_id, advertiser_id, campaign_id, amount, currency, kind, transaction_id,
               GREATEST(LEAST(occurred_at, %s), %s) AS occurred_at
          FROM {t[SpendEvent]} WHERE event_id = ANY(%s::text[])
    ), en AS (
        SELECT DISTINCT advertiser_id FROM {t[Enrollment]} WHERE advertiser_id = ANY(%s::bigint[]) AND status = %s
    )
    SELECT (SELECT coalesce(json_agg(camp), '[]') FROM camp)::text, (SELECT coalesce(json_agg(acc), '[]') FROM acc)::text,
           (SELECT coalesce(json_agg(cr), '[]') FROM cr)::text, (SELECT coalesce(json_agg(ev), '[]') FROM ev)::text,
           (SELECT coalesce(json_agg(en.advertiser_id), '[]') FROM en)::text"""


def _instance(model, row: dict):
    """A model instance of the columns read (as `Model.from_db` makes them; the others deferred)."""
    names = [f.attname for f in model._meta.concrete_fields if f.attname in row]
    return model.from_db(connection.alias, names, [row[n] for n in names])


def _dates(row: dict, *names) -> dict:
    for name in names:
        if row.get(name) is not None:
            row[name] = datetime.fromisoformat(row[name])
    return row


def spend_world(advertisers: dict, campaign_ids: set, event_ids: list) -> SpendWorld:
    """One read of everything the batch needs (issue 10): its campaigns, the advertisers'
    accounts, their usable credits with their coupons' campaigns, the events already booked and
    who has an open enrollment. Callers hold the advertisers' locks, so what is read is current."""
    usable = [pk for pk, a in advertisers.items() if a.credit_usable]
    if connection.vendor != "postgresql":
        return _spend_world_orm(advertisers, usable, campaign_ids, event_ids)
    with prepared_cursor() as cursor:
        cursor.execute(_world_sql(), [
            sorted(campaign_ids), list(advertisers), SPEND_PURPOSES, usable, CreditStatus.ACTIVE,
            LATEST, EARLIEST, list(event_ids), list(advertisers), EnrollmentStatus.OPEN,
        ])
        camps, accs, creds, events, enrolled = (json.loads(v, parse_float=Decimal) for v in cursor.fetchone())
    accounts: dict[int, dict] = defaultdict(dict)
    for row in accs:
        accounts[row["advertiser_id"]][row["purpose"]] = AccountRef(
            pk=row["id"], currency=row["currency"], normal=row["normal"], balance=Decimal(row["balance"]),
            purpose=row["purpose"], advertiser_id=row["advertiser_id"])
    credits: dict[int, list] = {pk: [] for pk in advertisers}
    credit_accounts = {}
    for c in creds:
        _dates(c, "valid_from", "expires_at")
        c["balance"] = Decimal(c["balance"])
        c["percent"] = None if c["percent"] is None else Decimal(c["percent"])
        credits[c["advertiser_id"]].append(_credit_state(c, c["campaign_ids"]))
        credit_accounts[c["id"]] = AccountRef(pk=c["account_id"], currency=c["currency"], normal=c["normal"],
                                              balance=c["balance"], purpose=Purpose.PROMO_CREDIT,
                                              advertiser_id=c["advertiser_id"])
    return SpendWorld(
        campaigns={row["id"]: CampaignRef(pk=row["id"], advertiser_id=row["advertiser_id"], objective=row["objective"],
                                          product_source=row["product_source"], shop_id=row["shop_id"])
                   for row in camps},
        accounts=accounts, credits=credits, credit_accounts=credit_accounts,
        existing={row["event_id"]: _instance(SpendEvent, {**_dates(row, "occurred_at"), "amount": Decimal(row["amount"])})
                  for row in events},
        enrolled=set(enrolled),
    )


def _spend_world_orm(advertisers: dict, usable: list, campaign_ids: set, event_ids: list) -> SpendWorld:
    """The same read on other databases (the embedded SQLite of `make run`), through the ORM."""
    found = list(Credit.objects.filter(advertiser_id__in=usable, status=CreditStatus.ACTIVE,
                                       ledger_account__balance__gt=0).select_related("ledger_account"))
    assigned: dict[int, set] = defaultdict(set)
    for credit_id, campaign_id in Credit.campaigns.through.objects.filter(
            credit_id__in=[c.pk for c in found]).values_list("credit_id", "campaign_id"):
        assigned[credit_id].add(campaign_id)
    credits: dict[int, list] = {pk: [] for pk in advertisers}
    for c in found:
        row = {"id": c.pk, "kind": c.kind, "balance": c.ledger_account.balance, "valid_from": c.valid_from,
               "expires_at": c.expires_at, "percent": c.percent, "eligible_objectives": c.eligible_objectives,
               "eligible_product_source": c.eligible_product_source}
        credits[c.advertiser_id].append(_credit_state(row, assigned[c.pk]))
    return SpendWorld(
        campaigns=Campaign.objects.in_bulk(campaign_ids), accounts=advertiser_accounts(advertisers),
        credits=credits, credit_accounts={c.pk: c.ledger_account for c in found},
        existing={ev.event_id: ev for ev in SpendEvent.objects.filter(event_id__in=event_ids)},
        enrolled=set(Enrollment.objects.filter(advertiser_id__in=list(advertisers), status=EnrollmentStatus.OPEN)
                     .values_list("advertiser_id", flat=True)),
    )


def _events_rider(fresh: list[SpendIn]) -> Rider:
    """The spend events of a booking, each with its ledger transaction, in the booking's statement."""
    now = timezone.now()
    table = connection.ops.quote_name(SpendEvent._meta.db_table)

    def orm(tx_ids):
        SpendEvent.objects.bulk_create([
            SpendEvent(event_id=it.event_id, advertiser_id=it.advertiser_id, campaign_id=it.campaign_id,
                       amount=it.amount, currency=it.currency, occurred_at=it.occurred_at, kind=it.kind,
                       transaction_id=tx, created_at=now)
            for it, tx in zip(fresh, tx_ids)
        ])

    return Rider(
        sql=f"""events AS (
            INSERT INTO {table} (event_id, advertiser_id, campaign_id, amount, currency, occurred_at, kind,
                                 transaction_id, created_at)
            SELECT e.event_id, e.advertiser_id, e.campaign_id, e.amount, e.currency, e.occurred_at, e.kind, ids.id, %s
              FROM unnest(%s::text[], %s::bigint[], %s::bigint[], %s::numeric[], %s::text[], %s::timestamptz[],
                          %s::text[]) WITH ORDINALITY
                   AS e(event_id, advertiser_id, campaign_id, amount, currency, occurred_at, kind, n)
              JOIN ids ON ids.n = e.n
        )""",
        params=[now, [it.event_id for it in fresh], [it.advertiser_id for it in fresh],
                [it.campaign_id for it in fresh], [it.amount for it in fresh], [it.currency for it in fresh],
                [it.occurred_at for it in fresh], [it.kind for it in fresh]],
        orm=orm,
    )


def spend_record_batch(*, events) -> list[SpendResult]:
    """Validate, allocate and book a batch of spend events (raw dicts from any door).

    A batch of any size is a constant number of statements: the advertisers locked in id order
    (one), everything else the batch needs read (one), the allocation in memory, and the booking
    with its events, used-up credits and paused campaigns written (one). Ladder progress adds its
    own statements only when a charged advertiser has an open enrollment."""
    parsed = spend_parse(events)
    with transaction.atomic():
        advertisers = lock_advertisers({p[4] for p in parsed})
        world = spend_world(advertisers, {p[5] for p in parsed}, list(dict.fromkeys(p[2] for p in parsed)))
        items = spend_validate(parsed, advertisers, world.campaigns)
        existing = world.existing
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

        accounts = world.accounts
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
                world.credits[it.advertiser_id],
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
                p.move(debit=world.credit_accounts[alloc.discount_credit_id], credit=income, amount=alloc.discount)
            for credit_id, amount in alloc.coupons + alloc.credits:
                p.move(debit=world.credit_accounts[credit_id], credit=income, amount=amount)
            for purpose in (Purpose.CASH, Purpose.ACCRUED, Purpose.CREDIT_LINE, Purpose.ARREARS):
                p.move(debit=acc[purpose], credit=income, amount=getattr(alloc, purpose))
            postings.append(p)

        if postings:
            # what the booking leaves: used-up credits, and accounts out of funds (R10, R27)
            used_up = sorted(((advertisers[pk], st) for pk, per_adv in world.credits.items() for st in per_adv
                              if st.remaining == 0), key=lambda pair: pair[1].id)
            spent = [st.id for _, st in used_up]
            arrears = defaultdict(Decimal, {pk: accounts[pk][Purpose.ARREARS].balance for pk in advertisers})
            for it in fresh:
                arrears[it.advertiser_id] += allocations[it.event_id].arrears
            charged = {it.advertiser_id for it in fresh}
            unfunded = sorted(
                pk
                for pk, adv in advertisers.items()
                if arrears[pk] > 0
                or (adv.billing_method == BillingMethod.MONTHLY_INVOICE and funds[pk].credit_line_available <= 0
                    and pk in charged)
            )
            # R36: told once, by the booking that runs an account out, not by every charge after it
            ran_out = [advertisers[pk] for pk in unfunded if not out_of_funds(advertisers[pk], accounts[pk])]
            # R43: the spend the accounts' limits count; at the limit, delivery pauses for it
            counts = limit_counts({pk: advertisers[pk] for pk in charged},
                                  [(it.advertiser_id, it.amount, it.occurred_at, it.kind) for it in fresh])
            now = timezone.now()
            at_limit = sorted(pk for pk, count in counts.items() if limit_reached(advertisers[pk], count, now))
            pauses = {pk: CampaignStatus.PAUSED_FUNDS for pk in unfunded}
            pauses.update((pk, CampaignStatus.PAUSED_LIMIT) for pk in at_limit)
            try:
                tx_ids = ledger_write(postings, riders=(_events_rider(fresh), credits_used_up_rider(spent),
                                                        credits_used_up_notices(used_up),
                                                        campaigns_pause_rider(pauses), limits_rider(counts)))
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
            last_tx = {it.advertiser_id: tx for it, tx in zip(fresh, tx_ids)}
            if ran_out:
                campaigns_paused_notify(ran_out, accounts, last_tx)
            for pk in at_limit:
                if not advertisers[pk].limit_reached_at(now):  # this booking crossed it: told once
                    limit_reached_notify(advertisers[pk], counts[pk].spent, str(last_tx[pk]))
            ladder = [(it.advertiser_id, it.campaign, it.occurred_at, allocations[it.event_id])
                      for it in fresh if it.kind == SpendKind.AD_SPEND and it.advertiser_id in world.enrolled]
            if ladder:
                enrollments_record_spend(charges=ladder)

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
