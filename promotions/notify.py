"""The credit part of the notifications (SPEC R36): issued, expiring soon, expired."""

from billing.money import fmt
from portal.notifications import notify
from promotions.models import Credit


def money(credit: Credit, amount) -> str:
    return f"{credit.advertiser.currency} {fmt(amount, credit.advertiser.currency)}"


def eligibility_text(credit: Credit) -> str:
    parts = []
    if credit.eligible_objectives:
        parts.append(", ".join(o.replace("_", " ").title() for o in credit.eligible_objectives) + " campaigns")
    if credit.eligible_product_source:
        parts.append(credit.eligible_product_source.replace("_", " ").title() + " products")
    return "; ".join(parts)


def _context(credit: Credit, amount) -> dict:
    kind_label = "Discount" if credit.kind == "discount" else credit.get_kind_display()
    return {
        "amount": money(credit, amount),
        "kind_label": kind_label,
        "credit_id": credit.pk,
        "valid_from": credit.valid_from,
        "expires_at": credit.expires_at,
        "date": credit.expires_at.astimezone(credit.advertiser.tz).strftime("%b %-d, %Y"),
        "eligible": eligibility_text(credit),
        "is_coupon": credit.kind == "assignable",
    }


def promotions_link(credit: Credit) -> str:
    return f"/a/{credit.advertiser_id}/payments/credits/"


def notify_credit_issued(credit: Credit) -> None:
    notify(advertiser=credit.advertiser, kind="credit_issued", key=f"credit-issued:{credit.pk}",
           context=_context(credit, credit.amount), link=promotions_link(credit))


def notify_credit_expiring(credit: Credit, remaining) -> bool:
    return notify(advertiser=credit.advertiser, kind="credit_expiring", key=f"credit-expiring:{credit.pk}",
                  context=_context(credit, remaining), link=promotions_link(credit)) is not None


def notify_credit_expired(credit: Credit, forfeited) -> None:
    notify(advertiser=credit.advertiser, kind="credit_expired", key=f"credit-expired:{credit.pk}",
           context=_context(credit, forfeited), link=promotions_link(credit))
