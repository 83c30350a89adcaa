"""The credit part of the notifications (SPEC R36): issued, expiring soon, expired, withdrawn."""

from datetime import datetime
from decimal import Decimal

from billing.money import fmt
from portal.notifications import Draft, notify_many
from promotions.models import Credit, CreditKind


def money(currency: str, amount) -> str:
    return f"{currency} {fmt(amount, currency)}"


def eligibility_text(credit: Credit) -> str:
    parts = []
    if credit.eligible_objectives:
        parts.append(", ".join(o.replace("_", " ").title() for o in credit.eligible_objectives) + " campaigns")
    if credit.eligible_product_source:
        parts.append(credit.eligible_product_source.replace("_", " ").title() + " products")
    return "; ".join(parts)


def _local(credit: Credit, t, pattern="%b %-d, %Y %H:%M") -> str:
    return t.astimezone(credit.advertiser.tz).strftime(pattern)


# "free credit", "coupon", "discount": as `get_kind_display().lower()`, without Django's choice search.
KIND_LABELS = {kind: label.lower() for kind, label in CreditKind.choices}


def kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind)


def _context(credit: Credit, amount) -> dict:
    return {
        "amount": money(credit.advertiser.currency, amount),
        "kind_label": kind_label(credit.kind),
        "credit_id": credit.pk,
        "valid_from": _local(credit, credit.valid_from),
        "expires_at": _local(credit, credit.expires_at),
        "date": _local(credit, credit.expires_at, "%b %-d, %Y"),
        "timezone": credit.advertiser.timezone,
        "eligible": eligibility_text(credit),
        "is_coupon": credit.kind == "assignable",
    }


def notify_credit_issued(credit: Credit) -> None:
    notify_many([Draft(credit.advertiser, "credit_issued", f"credit-issued:{credit.pk}",
                       _context(credit, credit.amount))])


def credit_expiring_draft(credit: Credit, remaining) -> Draft:
    return Draft(credit.advertiser, "credit_expiring", f"credit-expiring:{credit.pk}", _context(credit, remaining))


def credits_expired_draft(advertiser, expired: list[tuple[int, str, datetime, Decimal]]) -> Draft:
    """One email per advertiser per sweep, listing each credit and what it forfeited.

    `expired` holds `(credit id, kind, expires_at, amount forfeited)` in the order to list them.
    Only what `emails/credit_expired.txt` shows is built, once per advertiser: its time zone and
    currency are looked up once, not per credit through `_context`.

    The key names the set of credits. A credit is forfeited once, so its smallest id belongs to
    one forfeiture only and the key is unique without naming the sweep (decision 0016).
    """
    currency, tz = advertiser.currency, advertiser.tz
    total = sum((amount for *_, amount in expired), 0)
    lines = [
        {"credit_id": pk, "kind_label": kind_label(kind), "amount": money(currency, amount),
         "date": expires_at.astimezone(tz).strftime("%b %-d, %Y")}
        for pk, kind, expires_at, amount in expired
    ]
    ids = ",".join(str(row[0]) for row in expired)
    key = f"credit-expired:{ids}" if len(ids) <= 100 else f"credit-expired:{expired[0][0]}..{expired[-1][0]}:{len(expired)}"
    return Draft(advertiser, "credit_expired", key, {"amount": money(currency, total), "credits": lines})


def notify_credit_withdrawn(credit: Credit, remaining, reason: str) -> None:
    context = {**_context(credit, Decimal(remaining)), "reason": reason}
    notify_many([Draft(credit.advertiser, "credit_withdrawn", f"credit-withdrawn:{credit.pk}", context)])
