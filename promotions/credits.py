"""Credit writes (SPEC R5–R8, R22): grant, assign, withdraw, forfeit; transfer is always refused."""

import re
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from billing.ledger import (
    Posting, Rider, advertiser_accounts, credit_account_open, ledger_post, ledger_post_many, lock_advertisers,
)
from billing.models import Purpose, TxKind
from billing.money import parse_amount
from portal import inputs
from portal.errors import BadInput, BusinessError, Conflict
from portal.models import AdvertiserStatus, Campaign, Objective, ProductSource
from promotions.models import Credit, CreditKind, CreditSource, CreditStatus
from portal.audit import audit_record
from portal.notifications import Draft, notices_rider
from promotions.notify import notify_credit_issued, notify_credit_withdrawn


MAX_ASSIGNED_CAMPAIGNS = 1000
REASON_MAX = 500  # Credit.reason: what staff write is kept whole or refused, never cut


def _percent(value) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise BadInput("invalid_percent", "percent must be a number such as \"50\".")
    text = repr(value) if isinstance(value, float) else format(value, "f") if isinstance(value, Decimal) else str(value)
    if not re.fullmatch(r"[0-9]{1,3}(\.[0-9]{1,2})?", text):
        raise BadInput("invalid_percent", "percent must be above 0 and at most 100, with at most 2 decimal places.")
    p = Decimal(text)
    if p <= 0 or p > 100:
        raise BadInput("invalid_percent", "percent must be above 0 and at most 100, with at most 2 decimal places.")
    return p


def _eligibility(objectives, product_source) -> tuple[list, str]:
    if objectives and not isinstance(objectives, (list, tuple, set, frozenset)):
        raise BadInput("invalid_objective", "eligible_objectives must be a list of objectives such as [\"TRAFFIC\"].")
    objectives = list(objectives or [])
    bad = [o for o in objectives if o not in Objective.values]
    if bad:
        raise BadInput("invalid_objective", f"Unknown objective {bad[0]!r}; use one of {', '.join(Objective.values)}.")
    product_source = product_source or ""
    if product_source and product_source not in ProductSource.values:
        raise BadInput(
            "invalid_product_source", f"eligible_product_source must be one of {', '.join(ProductSource.values)}."
        )
    return sorted(set(objectives)), product_source


def credit_grant(
    *,
    advertiser,
    kind: str,
    amount,
    reason: str,
    idempotency_key: str | None,
    percent=None,
    valid_from: datetime | None = None,
    expires_at: datetime | None = None,
    eligible_objectives=(),
    eligible_product_source: str = "",
    source: str = CreditSource.MANAGED,
    granted_by=None,
    status: str = CreditStatus.ACTIVE,
) -> Credit:
    """Issue a credit and book it (Dr promotion expense, Cr the credit's own account).

    R22: idempotent by key — the same key with the same content returns the first credit, with
    other content it is a Conflict. Every credit expires (R5: default validity 90 days).
    """
    if kind not in CreditKind.values:
        raise BadInput("invalid_kind", f"kind must be one of {', '.join(CreditKind.values)}.")
    if source not in CreditSource.values:
        raise BadInput("invalid_source", f"source must be one of {', '.join(CreditSource.values)}.")
    amount = parse_amount(amount, advertiser.currency)
    if kind == CreditKind.DISCOUNT:
        if percent is None:
            raise BadInput("invalid_percent", "A discount credit needs a percent.")
        percent = _percent(percent)
    elif percent is not None:
        raise BadInput("invalid_percent", "Only a discount credit has a percent.")
    if not isinstance(reason, str) or not reason.strip():
        raise BadInput("invalid_reason", "A reason is required: it is shown to support staff and in the audit trail.")
    reason = inputs.text(reason, field="reason", max_length=REASON_MAX)
    # R22: the grant is idempotent by a key, so there is no grant without one (decision 0018).
    idempotency_key = inputs.key(idempotency_key, max_length=inputs.max_length(Credit, "idempotency_key"))
    valid_from = valid_from or timezone.now()
    expires_at = expires_at or valid_from + timedelta(days=settings.CREDIT_DEFAULT_VALIDITY_DAYS)
    inputs.in_range(valid_from, field="valid_from")
    inputs.in_range(expires_at, field="expires_at")
    if expires_at <= valid_from:
        raise BadInput("invalid_validity", "expires_at must be after valid_from.")
    objectives, product_source = _eligibility(eligible_objectives, eligible_product_source)
    fields = dict(
        kind=kind, source=source, amount=amount, percent=percent, valid_from=valid_from, expires_at=expires_at,
        eligible_objectives=objectives, eligible_product_source=product_source,
    )
    with transaction.atomic():
        adv = lock_advertisers([advertiser.pk])[advertiser.pk]
        prior = Credit.objects.filter(advertiser=adv, idempotency_key=idempotency_key).first()
        if prior is not None:
            if any(getattr(prior, k) != v for k, v in fields.items() if k not in ("valid_from", "expires_at")):
                raise Conflict(
                    "idempotency_key_reused",
                    f"idempotency_key {idempotency_key!r} was already used for another credit (#{prior.pk}).",
                )
            return prior
        if adv.status != AdvertiserStatus.ACTIVE:
            raise BusinessError("account_not_active", f"Credit cannot be issued to a {adv.status} account.")
        if adv.credit_frozen:
            raise BusinessError("credit_frozen", "This advertiser's credit is frozen: no credit can be issued until it is unfrozen.")
        account = credit_account_open(adv)
        credit = Credit.objects.create(
            advertiser=adv, ledger_account=account, reason=reason, granted_by=granted_by,
            idempotency_key=idempotency_key, status=status, **fields,
        )
        acc = advertiser_accounts([adv.pk])[adv.pk]
        p = Posting(kind=TxKind.CREDIT_ISSUE, currency=adv.currency, amount=amount, lines=[], advertiser_id=adv.pk,
                    memo=f"{credit.get_kind_display()} #{credit.pk}: {credit.reason}")
        p.move(debit=acc[Purpose.PROMOTION_EXPENSE], credit=account, amount=amount)
        ledger_post(p)
        credit.advertiser = adv
        if source == CreditSource.MANAGED:
            audit_record(actor=granted_by, action="credit_grant", advertiser=adv, target=f"credit {credit.pk}",
                         reason=credit.reason, after={"kind": kind, "amount": str(amount),
                                                      "expires_at": expires_at.isoformat()})
        notify_credit_issued(credit)
    return credit


def credit_assign(*, credit: Credit, campaign_ids) -> Credit:
    """Set the campaigns an assignable coupon pays for (R6). Only coupons can be assigned."""
    if credit.kind != CreditKind.ASSIGNABLE:
        raise BusinessError(
            "credit_not_assignable", "Only a coupon can be assigned; free and discount credit apply to every eligible campaign."
        )
    if not isinstance(campaign_ids, list) or len(campaign_ids) > MAX_ASSIGNED_CAMPAIGNS:
        raise BadInput("invalid_campaign_ids",
                       f"campaign_ids must be a list of at most {MAX_ASSIGNED_CAMPAIGNS} campaign ids.")
    wanted = {inputs.object_id(c, field="campaign_ids[]", code="invalid_campaign_ids") for c in campaign_ids}
    with transaction.atomic():
        lock_advertisers([credit.advertiser_id])
        campaigns = list(Campaign.objects.filter(advertiser_id=credit.advertiser_id, pk__in=wanted))
        missing = wanted - {c.pk for c in campaigns}
        if missing:
            raise BadInput("unknown_campaign", f"Campaign {min(missing)} does not belong to this advertiser.")
        if credit.status not in (CreditStatus.ACTIVE, CreditStatus.PENDING, CreditStatus.FROZEN):
            raise BusinessError("credit_not_active", f"A {credit.get_status_display().lower()} coupon cannot be assigned.")
        credit.campaigns.set(campaigns)
    return credit


def credit_transfer(*, credit=None, **_) -> None:
    """R8: credit never moves to another advertiser or BC, and never becomes cash."""
    raise BusinessError(
        "credit_not_transferable",
        "Ad credit cannot be transferred to another advertiser or Business Center, converted to cash, or refunded.",
    )


def credits_forfeit_postings(*, advertiser, accounts, reason: str, kind: str = TxKind.CREDIT_FORFEIT,
                             status: str = CreditStatus.EXPIRED, credit_ids=None) -> list[Posting]:
    """Close credits and return the postings that forfeit what is left of them.

    The caller holds the advertiser lock and posts the returned postings in its transaction.
    """
    qs = Credit.objects.filter(advertiser=advertiser).exclude(
        status__in=[CreditStatus.EXPIRED, CreditStatus.WITHDRAWN, CreditStatus.USED_UP]
    )
    if credit_ids is not None:
        qs = qs.filter(pk__in=credit_ids)
    credits = list(qs.select_related("ledger_account"))
    postings = []
    for c in credits:
        left = c.ledger_account.balance
        if left > 0:
            p = Posting(kind=kind, currency=advertiser.currency, amount=left, lines=[], advertiser_id=advertiser.pk,
                        memo=f"{c.get_kind_display()} #{c.pk}: {reason}")
            p.move(debit=c.ledger_account, credit=accounts[Purpose.FORFEITURE], amount=left)
            postings.append(p)
    Credit.objects.filter(pk__in=[c.pk for c in credits]).update(status=status, ended_at=timezone.now())
    return postings


def credit_withdraw(*, credit: Credit, reason: str, by=None) -> Credit:
    """Staff take back what is left of a credit (policy violation). Booked on the ledger."""
    if not isinstance(reason, str) or not reason.strip():
        raise BadInput("invalid_reason", "A reason is required to withdraw credit.")
    with transaction.atomic():
        adv = lock_advertisers([credit.advertiser_id])[credit.advertiser_id]
        credit.refresh_from_db()
        if credit.status in (CreditStatus.EXPIRED, CreditStatus.WITHDRAWN):
            raise BusinessError("credit_not_active", f"This credit is already {credit.status}.")
        acc = advertiser_accounts([adv.pk])[adv.pk]
        before = {"status": credit.status, "remaining": str(credit.ledger_account.balance)}
        ledger_post_many(
            credits_forfeit_postings(
                advertiser=adv, accounts=acc, reason=f"withdrawn: {reason.strip()}", kind=TxKind.CREDIT_WITHDRAW,
                status=CreditStatus.WITHDRAWN, credit_ids=[credit.pk],
            )
        )
        credit = Credit.objects.select_related("ledger_account").get(pk=credit.pk)
        credit.advertiser = adv
        audit_record(actor=by, action="credit_withdraw", advertiser=adv, target=f"credit {credit.pk}",
                     reason=reason.strip(), before=before, after={"status": credit.status, "remaining": "0"})
        notify_credit_withdrawn(credit, before["remaining"], reason.strip())
    return credit


def credits_used_up_rider(credit_ids: list[int]) -> Rider:
    """Active credits a booking spent to nothing become `used_up` (R7), written in the booking's
    own statement (spend, R10)."""
    now = timezone.now()
    ids = list(credit_ids)
    table = connection.ops.quote_name(Credit._meta.db_table)

    def orm(tx_ids):
        Credit.objects.filter(pk__in=ids, status=CreditStatus.ACTIVE).update(status=CreditStatus.USED_UP, ended_at=now)

    return Rider(
        sql=f"used_up AS (UPDATE {table} SET status = %s, ended_at = %s WHERE id = ANY(%s::bigint[]) AND status = %s)",
        params=[CreditStatus.USED_UP, now, ids, CreditStatus.ACTIVE], orm=orm,
    )


def credits_used_up_notices(used: list[tuple]):
    """"Your coupon #12 is used up" (R7; an outbox event for webhooks, issue 14), for the credits
    a booking spent to nothing — `(advertiser, CreditState)` — in the booking's own statement."""
    return notices_rider([
        Draft(adv, "credit_used_up", f"credit_used_up:{st.id}",
              {"credit_id": st.id, "kind_label": CreditKind(st.kind).label.lower()})
        for adv, st in used
    ])


def shop_credits_activate(*, advertiser_ids) -> int:
    """R21: on automatic payment, Shop credit waits `pending` until a bill is paid, then applies
    first in the next cycle (it is valid from now, so it never pays the bill just settled).
    Called with the accounts whose bill was just paid; the caller holds their locks."""
    return Credit.objects.filter(advertiser_id__in=list(advertiser_ids), source=CreditSource.SHOP,
                                 status=CreditStatus.PENDING).update(status=CreditStatus.ACTIVE,
                                                                     valid_from=timezone.now())
