"""Expiry jobs (SPEC R9, R33, R36): forfeit what is left of expired credit; remind 7 days before.

`expire_credits` waits `CREDIT_EXPIRY_GRACE_SECONDS` after `expires_at`, so late spend events
(judged by `occurred_at`) can still use the credit before it is forfeited. It works in chunks, one
transaction each; a chunk locks its advertisers first (the order every money write uses), then
re-reads the credits, so a second sweep or a concurrent charge can never forfeit or spend the same
amount twice. Running it again changes nothing.
"""

from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing.ledger import Move, ledger_post_moves, lock_advertisers
from billing.models import LedgerAccount, Purpose, TxKind
from portal.notifications import notify_many
from promotions.models import Credit, CreditStatus
from promotions.notify import credit_expiring_draft, credits_expired_draft

LIVE = [CreditStatus.ACTIVE, CreditStatus.FROZEN, CreditStatus.PENDING]
REMIND_BEFORE = timedelta(days=7)


def expire_credits(*, at=None, chunk: int = 1000) -> dict:
    at = at or timezone.now()
    cutoff = at - timedelta(seconds=settings.CREDIT_EXPIRY_GRACE_SECONDS)
    due = Credit.objects.filter(status__in=LIVE, expires_at__lte=cutoff)
    counts = {"expired": 0, "forfeited_entries": 0}
    while True:
        candidates = list(due.values_list("pk", "advertiser_id")[:chunk])
        if not candidates:
            return counts
        with transaction.atomic():
            advertisers = lock_advertisers([a for _, a in candidates])
            credits = list(
                due.filter(pk__in=[pk for pk, _ in candidates]).select_related("ledger_account").order_by("pk")
            )
            forfeiture = {
                a.advertiser_id: a
                for a in LedgerAccount.objects.filter(advertiser_id__in=advertisers, purpose=Purpose.FORFEITURE)
            }
            moves, expired = [], defaultdict(list)
            for c in credits:
                c.advertiser = advertisers[c.advertiser_id]
                left = c.ledger_account.balance
                expired[c.advertiser_id].append((c, left))
                if left > 0:
                    moves.append(Move(debit=c.ledger_account, credit=forfeiture[c.advertiser_id], amount=left,
                                      advertiser_id=c.advertiser_id, occurred_at=c.expires_at,
                                      memo=f"{c.get_kind_display()} #{c.pk} expired"))
            ledger_post_moves(TxKind.CREDIT_EXPIRE, moves)
            Credit.objects.filter(pk__in=[c.pk for c in credits]).update(status=CreditStatus.EXPIRED, ended_at=at)
            notify_many([credits_expired_draft(advertisers[a], items) for a, items in expired.items()])
        counts["expired"] += len(credits)
        counts["forfeited_entries"] += len(moves)


def remind_expiring(*, at=None, chunk: int = 1000) -> dict:
    """Email once per credit when it has 7 days or less left and something to use (R36)."""
    from portal.models import Notification

    at = at or timezone.now()
    qs = (
        Credit.objects.filter(
            status=CreditStatus.ACTIVE,
            expires_at__gt=at,
            expires_at__lte=at + REMIND_BEFORE,
            ledger_account__balance__gt=0,
        )
        .select_related("ledger_account", "advertiser")
        .order_by("pk")
    )
    sent, after = 0, 0
    while True:
        batch = list(qs.filter(pk__gt=after)[:chunk])
        if not batch:
            return {"reminded": sent}
        after = batch[-1].pk
        keys = {f"credit-expiring:{c.pk}" for c in batch}
        done = set(Notification.objects.filter(key__in=keys).values_list("key", flat=True))
        fresh = [c for c in batch if f"credit-expiring:{c.pk}" not in done]
        with transaction.atomic():
            notify_many([credit_expiring_draft(c, c.ledger_account.balance) for c in fresh], skip_existing=True)
        sent += len(fresh)
