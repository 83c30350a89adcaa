"""The audit log of staff actions (issue 5): who, when, what, why, before and after."""

from portal.models import AuditLog


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
