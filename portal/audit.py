"""The audit log of staff actions (issue 5): who, when, what, why, before and after."""

import json
from datetime import datetime

from portal.models import AuditLog

AUDIT_CSV_HEADER = ["created_at", "actor", "action", "advertiser_id", "advertiser", "target", "reason", "before",
                    "after"]
CSV_CHUNK = 500
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def audit_record(*, actor, action: str, reason: str, advertiser=None, target: str = "", before=None, after=None) -> AuditLog:
    """Record one action. `actor` None means an automatic rule. Call inside the action's transaction,
    so an action that rolls back leaves no log line and a logged action always happened."""
    return AuditLog.objects.create(
        actor=actor if actor is not None and actor.is_authenticated else None,
        actor_name=actor.get_username() if actor is not None and actor.is_authenticated else "system",
        action=action,
        advertiser=advertiser,
        target=target[:200],
        reason=reason,
        before=before or {},
        after=after or {},
    )


def _cell(value) -> str:
    """A CSV cell a spreadsheet shows as text: free text starting like a formula gets a leading quote."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def audit_csv_rows(*, start: datetime, end: datetime):
    """The header, then every audit line with start <= created_at < end, oldest first: one query,
    the advertiser joined, read `CSV_CHUNK` rows at a time, so a long range never sits in memory."""
    yield AUDIT_CSV_HEADER
    rows = (AuditLog.objects.filter(created_at__gte=start, created_at__lt=end).select_related("advertiser")
            .order_by("created_at", "pk"))
    for line in rows.iterator(chunk_size=CSV_CHUNK):
        yield [
            line.created_at.isoformat(timespec="seconds"), _cell(line.actor_name), line.action,
            line.advertiser_id or "", _cell(line.advertiser.name if line.advertiser else ""), _cell(line.target),
            _cell(line.reason), json.dumps(line.before, sort_keys=True, ensure_ascii=False),
            json.dumps(line.after, sort_keys=True, ensure_ascii=False),
        ]
