"""Expiry jobs (SPEC R9, R33, R36): forfeit what is left of expired credit; remind 7 days before.

`expire_credits` waits `CREDIT_EXPIRY_GRACE_SECONDS` after `expires_at`, so late spend events
(judged by `occurred_at`) can still use the credit before it is forfeited. It works in chunks of
advertisers, one transaction each: a chunk takes the next `chunk` advertisers (by id) that have
due credits, locks them (the first lock every money write takes), then re-reads *all* their due
credits, so a second sweep or a concurrent charge can never forfeit or spend the same amount
twice, and each advertiser's forfeitures of one sweep land in one chunk and one email
(decision 0016). Running it again changes nothing.
"""

from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing.ledger import AccountRef, Move, ledger_post_moves, lock_advertisers
from billing.models import LedgerAccount, Purpose, TxKind
from portal.dbtypes import id_chunks
from portal.models import Notification
from portal.notifications import notify_many
from promotions.models import Credit, CreditKind, CreditStatus
from promotions.notify import credit_expiring_draft, credits_expired_draft

LIVE = [CreditStatus.ACTIVE, CreditStatus.FROZEN, CreditStatus.PENDING]
REMIND_BEFORE = timedelta(days=7)
# `get_kind_display()` for the memos: a dict lookup instead of Django's per-call choice search,
# which took about half a second of a 100,000-credit sweep.
KIND_LABELS = dict(CreditKind.choices)
# The ledger-account columns `AccountRef` takes, in its order.
ACCOUNT_FIELDS = ("pk", "currency", "normal", "balance", "purpose", "advertiser_id")


def expire_credits(*, at=None, chunk: int = 250) -> dict:
    """Forfeit what is left of every credit due at `at`; `chunk` is advertisers per transaction.

    A chunk costs a constant number of statements however many credits it holds: the next
    advertiser ids, their locks, their due credits, their forfeiture accounts, the set-based
    booking (`ledger_post_moves`), one status UPDATE and one INSERT of the emails — one per
    advertiser, listing every credit it forfeited in this sweep. Beat runs the chunks as tasks
    that several workers share (`portal.jobs.CHUNKED`): `expire_credits_chunks` lists them,
    `expire_credits_chunk` does one.
    """
    at = at or timezone.now()
    counts = {"expired": 0, "forfeited_entries": 0}
    for advertiser_ids in expire_credits_chunks(at=at, chunk=chunk):
        done = expire_credits_chunk(ids=advertiser_ids, at=at)
        for k in counts:
            counts[k] += done[k]
    return counts


def _due(at):
    cutoff = at - timedelta(seconds=settings.CREDIT_EXPIRY_GRACE_SECONDS)
    return Credit.objects.filter(status__in=LIVE, expires_at__lte=cutoff)


def expire_credits_chunks(*, at, chunk: int = 250):
    """The advertisers with credit due at `at`, `chunk` ids at a time (a keyset over advertiser
    ids: every advertiser is in exactly one chunk of a sweep)."""
    return id_chunks(_due(at), chunk, "advertiser_id")


def expire_credits_chunk(*, ids: list[int], at) -> dict:
    """Forfeit the due credit of these advertisers, in one transaction under their locks; what a
    concurrent sweep (or a re-delivered chunk task) already forfeited is gone when re-read."""
    due, advertiser_ids = _due(at), ids
    with transaction.atomic():
        advertisers = lock_advertisers(advertiser_ids)
        # Rows, not model instances: a chunk reads about 1,000 credits and their accounts.
        credits = list(
            due.filter(advertiser_id__in=advertiser_ids).order_by("advertiser_id", "pk").values_list(
                "pk", "advertiser_id", "kind", "expires_at", *(f"ledger_account__{f}" for f in ACCOUNT_FIELDS))
        )
        if not credits:
            return {"expired": 0, "forfeited_entries": 0}
        forfeiture = {
            row[-1]: AccountRef(*row)
            for row in LedgerAccount.objects.filter(advertiser_id__in=advertisers, purpose=Purpose.FORFEITURE)
            .values_list(*ACCOUNT_FIELDS)
        }
        moves, expired = [], defaultdict(list)
        for pk, advertiser_id, kind, expires_at, *account in credits:
            account = AccountRef(*account)
            left = account.balance
            expired[advertiser_id].append((pk, kind, expires_at, left))
            if left > 0:
                moves.append(Move(debit=account, credit=forfeiture[advertiser_id], amount=left,
                                  advertiser_id=advertiser_id, occurred_at=expires_at,
                                  memo=f"{KIND_LABELS.get(kind, kind)} #{pk} expired"))
        ledger_post_moves(TxKind.CREDIT_EXPIRE, moves)
        Credit.objects.filter(pk__in=[row[0] for row in credits]).update(status=CreditStatus.EXPIRED, ended_at=at)
        notify_many([credits_expired_draft(advertisers[a], items) for a, items in expired.items()])
    return {"expired": len(credits), "forfeited_entries": len(moves)}


def remind_expiring(*, at=None, chunk: int = 1000) -> dict:
    """Email once per credit when it has 7 days or less left and something to use (R36)."""
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
