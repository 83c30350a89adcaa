"""`{% notification_bell %}`: the header bell with the current advertiser's unread count (R36).

Shown only on an advertiser's pages and only to a role that may see payment data (R1): an
operator gets no bell. The dashboard pages count unread notifications in the query that fetches
the advertiser (`portal.views.with_unread_count`); elsewhere it costs one COUNT.
"""

from django import template

from portal.models import Notification
from portal.notifications import kind_button, visible_notifications
from portal.permissions import can

register = template.Library()


@register.filter
def notification_button(kind: str) -> str:
    """The label of a notification's link: the same as its email's button (`portal.notifications.KINDS`)."""
    return kind_button(kind)


def unread_count(advertiser, user) -> int:
    """What this member sees unread (their alert choices applied, R44)."""
    return visible_notifications(Notification.objects.filter(advertiser=advertiser, read_at__isnull=True),
                                 user=user).count()


@register.inclusion_tag("portal/notifications_bell.html", takes_context=True)
def notification_bell(context, oob: bool = False):
    advertiser = context.get("current_advertiser")
    if advertiser is None or not can(context.get("current_role"), "payments_read"):
        return {"show": False}
    unread = getattr(advertiser, "unread_notifications", None)  # counted with the advertiser (portal.views)
    if unread is None:
        request = context.get("request")
        unread = unread_count(advertiser, request.user if request is not None else None)
    return {"show": True, "advertiser": advertiser, "unread": unread, "oob": oob}
