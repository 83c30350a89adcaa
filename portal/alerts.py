"""Alerts (SPEC R44, decision 0034): each member's choices, and the level alerts' job.

The catalogue — which alerts there are and which notification kinds each is made of — is
`portal.notifications.ALERTS`; the email and the notification centre apply the choices
(`recipients`, `visible_notifications`). Here:

- `alert_preferences` / `alert_preferences_set`: a member's choices on one account, per alert and
  channel, and their own low-balance amount. No row means both channels on; no amount means no
  low-balance alert.
- `alerts_check`, a job (every minute): the two alerts of a level — a manual account's balance
  below a member's amount, a monthly-invoice account's credit line 80 % used — fire once per
  crossing. `AlertState` remembers whether a level is crossed; a crossing sets it and writes the
  notice (its key carries the crossing's number, so it is written once), a recovery re-arms it
  without a notice. The state rows are locked, so two runs at once fire once.

Only the ground floor is imported: the balance is read set-based here, a chunk of accounts in one
query, as `billing.selectors.advertiser_balances` reads it for one (cash + usable credit).
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q, Sum
from django.utils import timezone

from billing.models import LedgerAccount, Purpose
from billing.money import ZERO, fmt, parse_amount
from portal.errors import BadInput
from portal.models import Advertiser, AdvertiserStatus, AlertPreference, AlertState, BillingMethod
from portal.notifications import ALERTS, LOW_BALANCE, Draft, notify_many
from promotions.models import CreditKind, CreditStatus

CREDIT_LINE_ALERT = "credit_line_high"
CREDIT_LINE_KEY = "credit_line_80"
CREDIT_LINE_SHARE = Decimal("0.8")  # "over 80 % used": used >= 80 % of the limit


def low_balance_key(user_id: int) -> str:
    return f"{LOW_BALANCE}:user:{user_id}"


# --- a member's choices ----------------------------------------------------------------------------

@dataclass
class Choice:
    """One row of the settings page: an alert and what this member gets of it."""

    alert: str
    label: str
    email: bool = True
    in_app: bool = True
    amount: Decimal | None = None  # the low-balance alert: the member's own level


def alerts_for(advertiser) -> list[str]:
    """The alerts that concern this account: those of its billing method, and every general one."""
    return [name for name, a in ALERTS.items() if not a.billing_method or a.billing_method == advertiser.billing_method]


def alert_preferences(*, user, advertiser) -> list[Choice]:
    """The member's choices for every alert of the account, defaults filled in. One query."""
    stored = {p.alert: p for p in AlertPreference.objects.filter(user=user, advertiser=advertiser)}
    choices = []
    for name in alerts_for(advertiser):
        p = stored.get(name)
        default = ALERTS[name].default
        choices.append(Choice(name, ALERTS[name].label, p.email if p else default, p.in_app if p else default,
                              p.amount if p else None))
    return choices


def low_balance_amount_parse(value, *, currency: str) -> Decimal | None:
    """The member's low-balance amount: blank is none (the alert is off), else a positive amount
    in the account's currency, written as `billing.money.parse_amount` accepts ("250.00")."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    return parse_amount(value, currency, field="The amount")


UNCHANGED = object()


def alert_preferences_set(*, user, advertiser, choices: dict[str, dict], low_balance_amount=UNCHANGED) -> list[Choice]:
    """Save one member's choices on one account: `choices` maps an alert to its channels
    (`{"email": bool, "in_app": bool}`); `low_balance_amount` is their own level (blank: none).
    Alerts not in `choices`, and an amount not given, keep what they had. A bad amount or an
    unknown alert raises BadInput and nothing is saved. A changed amount re-arms the member's
    low-balance alert, so the new level is checked afresh. Personal settings: not audited
    (decision 0034). One read and one upsert (and the re-arm when the amount changed)."""
    unknown = sorted(set(choices) - set(ALERTS))
    if unknown:
        raise BadInput("unknown_alert", f"No such alert: {', '.join(unknown)}.")
    amount = UNCHANGED
    if low_balance_amount is not UNCHANGED:
        amount = low_balance_amount_parse(low_balance_amount, currency=advertiser.currency)
    with transaction.atomic():
        stored = {p.alert: p for p in AlertPreference.objects.filter(user=user, advertiser=advertiser)}
        low = stored.get(LOW_BALANCE)
        before = low.amount if low else None
        after = before if amount is UNCHANGED else amount
        wanted = dict(choices)
        if amount is not UNCHANGED and LOW_BALANCE not in wanted:
            wanted[LOW_BALANCE] = {"email": low.email if low else True, "in_app": low.in_app if low else True}
        rows = [AlertPreference(user=user, advertiser=advertiser, alert=name, email=bool(c.get("email")),
                                in_app=bool(c.get("in_app")), amount=after if name == LOW_BALANCE else None)
                for name, c in sorted(wanted.items())]
        AlertPreference.objects.bulk_create(rows, update_conflicts=True, unique_fields=["user", "advertiser", "alert"],
                                            update_fields=["email", "in_app", "amount"])
        if before != after:
            AlertState.objects.filter(advertiser=advertiser, key=low_balance_key(user.pk), crossed=True).update(
                crossed=False, changed_at=timezone.now())
    return alert_preferences(user=user, advertiser=advertiser)


# --- the job: level alerts, once per crossing ------------------------------------------------------

def alerts_check(*, at: datetime | None = None, chunk: int = 200) -> dict:
    """Job (R44): fire each level alert that is crossed now and was not, re-arm each that recovered.

    The accounts are those with a level to watch — manual with a member's low-balance amount,
    monthly invoicing with a credit line — or a crossed alert to re-arm; `chunk` accounts at a time,
    one transaction and a constant number of statements each."""
    at = at or timezone.now()
    counts = {"accounts": 0, "fired": 0, "rearmed": 0}
    watched = (
        Q(billing_method=BillingMethod.MANUAL,
          pk__in=AlertPreference.objects.filter(alert=LOW_BALANCE, amount__isnull=False).values("advertiser_id"))
        | Q(billing_method=BillingMethod.MONTHLY_INVOICE, credit_line_limit__gt=0)
        | Q(Exists(AlertState.objects.filter(advertiser=OuterRef("pk"), crossed=True)))
    )
    last = 0
    while True:
        ids = list(Advertiser.objects.filter(watched, pk__gt=last).exclude(status=AdvertiserStatus.CLOSED)
                   .order_by("pk").values_list("pk", flat=True)[:chunk])
        if not ids:
            return counts
        last = ids[-1]
        fired, rearmed = _check_chunk(ids, at)
        counts["accounts"] += len(ids)
        counts["fired"] += fired
        counts["rearmed"] += rearmed


def _levels(ids: list[int]) -> dict[int, dict]:
    """Per account: cash, usable credit (active, not a discount's cap) and credit line used. One query."""
    live = Q(purpose=Purpose.PROMO_CREDIT, credit__status=CreditStatus.ACTIVE) & ~Q(credit__kind=CreditKind.DISCOUNT)
    rows = (LedgerAccount.objects.filter(advertiser_id__in=ids).order_by().values("advertiser_id")
            .annotate(cash=Sum("balance", filter=Q(purpose=Purpose.CASH)), credit=Sum("balance", filter=live),
                      line=Sum("balance", filter=Q(purpose=Purpose.CREDIT_LINE))))
    return {r["advertiser_id"]: {k: r[k] or ZERO for k in ("cash", "credit", "line")} for r in rows}


def _check_chunk(ids: list[int], at: datetime) -> tuple[int, int]:
    with transaction.atomic():
        advertisers = {a.pk: a for a in Advertiser.objects.filter(pk__in=ids)}
        amounts = list(AlertPreference.objects.filter(advertiser_id__in=ids, alert=LOW_BALANCE, amount__isnull=False)
                       .order_by("advertiser_id", "user_id").values_list("advertiser_id", "user_id", "amount"))
        wanted: dict[tuple[int, str], tuple] = {}  # (advertiser, key) -> (alert, user_id, amount)
        for adv_id, user_id, amount in amounts:
            if advertisers[adv_id].billing_method == BillingMethod.MANUAL:
                wanted[(adv_id, low_balance_key(user_id))] = (LOW_BALANCE, user_id, amount)
        for adv in advertisers.values():
            if adv.billing_method == BillingMethod.MONTHLY_INVOICE and adv.credit_line_limit > 0:
                wanted[(adv.pk, CREDIT_LINE_KEY)] = (CREDIT_LINE_ALERT, None, adv.credit_line_limit)
        # every watched level has its state row; a concurrent run's new rows wait for it to commit
        AlertState.objects.bulk_create([AlertState(advertiser_id=a, key=k, changed_at=at) for a, k in sorted(wanted)],
                                       ignore_conflicts=True)
        # then the states are locked, and what they say is current: two runs at once fire once
        states = list(AlertState.objects.filter(advertiser_id__in=ids).select_for_update().order_by("pk"))
        levels = _levels(ids)
        fire, rearm, drafts = [], [], []
        for state in states:
            adv = advertisers[state.advertiser_id]
            level = levels.get(adv.pk, {"cash": ZERO, "credit": ZERO, "line": ZERO})
            watch = wanted.get((adv.pk, state.key))
            draft = _crossed(adv, level, watch, crossing=state.crossings + 1) if watch else None
            if draft and not state.crossed:
                fire.append(state.pk)
                drafts.append(draft)
            elif not draft and state.crossed:
                rearm.append(state.pk)
        if fire:
            AlertState.objects.filter(pk__in=fire).update(crossed=True, crossings=F("crossings") + 1, changed_at=at)
        if rearm:
            AlertState.objects.filter(pk__in=rearm).update(crossed=False, changed_at=at)
        notify_many(drafts, skip_existing=True)
    return len(fire), len(rearm)


def _crossed(adv, level: dict, watch: tuple, *, crossing: int) -> Draft | None:
    """The notice of this level if it is crossed now, else None."""
    alert, user_id, amount = watch
    money = lambda value: f"{adv.currency} {fmt(value, adv.currency)}"  # noqa: E731 — as every email writes it
    if alert == LOW_BALANCE:
        credit = level["credit"] if adv.credit_usable else ZERO  # R12: frozen credit pays nothing
        balance = level["cash"] + credit
        if balance >= amount:
            return None
        context = {"threshold": money(amount), "balance": money(balance), "cash": money(level["cash"]),
                   "credit": money(credit)}
        return Draft(adv, "low_balance", f"low_balance:{adv.pk}:{user_id}:{crossing}", context, user=user_id)
    used, limit = level["line"], amount
    if used < limit * CREDIT_LINE_SHARE:
        return None
    percent = int(used * 100 / limit)  # floor: 80 % at the line, never a rounded-up 80 % below it
    context = {"used": money(used), "limit": money(limit), "percent": f"{percent} %"}
    return Draft(adv, "credit_line_high", f"credit_line_high:{adv.pk}:{crossing}", context)
