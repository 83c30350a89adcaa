"""The expiry email (SPEC R36): one per advertiser per sweep, listing every credit it forfeited.

`credits_expired_draft` builds the email's context once per advertiser from the sweep's rows; these
tests pin the text it renders to what the per-credit `_context` path rendered before.
"""

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal

import pytest
from django.conf import settings
from django.core import mail
from django.template.loader import render_to_string

from portal.models import Notification
from portal.notifications import KINDS, render_body
from promotions.expiry import expire_credits
from promotions.models import Credit
from promotions.notify import _local, money
from tests.factories import AdvertiserFactory, grant, member

UTC = dt_timezone.utc
AT = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)


def with_email(user, email):
    user.email = email
    user.save(update_fields=["email"])
    return user


def reference_context(advertiser, credits) -> dict:
    """The context as the sweep built it before, per credit from model instances (`_context`'s kind
    label and `_local`'s date)."""
    expired = [(c, c.ledger_account.balance) for c in credits]
    total = sum((a for _, a in expired), 0)
    lines = [
        {"credit_id": c.pk, "kind_label": "discount" if c.kind == "discount" else c.get_kind_display().lower(),
         "amount": money(advertiser.currency, a),
         "date": _local(c, c.expires_at, "%b %-d, %Y")}
        for c, a in expired
    ]
    return {"amount": money(advertiser.currency, total), "credits": lines}


@pytest.fixture
def tokyo(db):
    # an EUR advertiser in Tokyo: credits expiring late in the UTC evening are dated the next day
    adv = AdvertiserFactory(name="Kaze Tea", currency="EUR", timezone_name="Asia/Tokyo")
    with_email(member(adv, "admin"), "owner@example.com")
    grants = [
        ("free", "80.00", {}, datetime(2025, 3, 1, 23, 30, tzinfo=UTC)),  # Mar 2 in Tokyo
        ("assignable", "25.50", {}, datetime(2025, 3, 2, 1, 0, tzinfo=UTC)),
        ("discount", "12.34", {"percent": "10"}, datetime(2025, 3, 9, 14, 59, tzinfo=UTC)),  # Mar 9, 23:59
        ("free", "5.00", {"status": "frozen"}, datetime(2025, 2, 28, 15, 0, tzinfo=UTC)),  # Mar 1, 00:00
        ("free", "7.25", {"status": "pending"}, datetime(2025, 3, 9, 15, 0, tzinfo=UTC)),  # Mar 10, 00:00
    ]
    credits = [
        grant(adv, kind, amount, valid_from=expires - timedelta(days=30), expires_at=expires, **kw)
        for kind, amount, kw, expires in grants
    ]
    return adv, credits


@pytest.mark.django_db
def test_r36_expiry_email_for_a_multi_credit_advertiser_renders_as_before(tokyo, django_capture_on_commit_callbacks):
    adv, credits = tokyo
    # given the context the per-credit path would have stored, read before the sweep changes anything
    before = reference_context(adv, Credit.objects.filter(pk__in=[c.pk for c in credits])
                               .select_related("ledger_account", "advertiser").order_by("pk"))
    mail.outbox.clear()
    # when one sweep forfeits all five credits
    with django_capture_on_commit_callbacks(execute=True):
        assert expire_credits(at=AT) == {"expired": 5, "forfeited_entries": 5}
    # then the stored notification holds the same context and renders the same email, word for word
    [note] = Notification.objects.filter(kind="credit_expired", advertiser=adv)
    assert note.context == before
    assert note.subject == "EUR 130.09 of ad credit expired"
    assert note.key == "credit-expired:" + ",".join(str(c.pk) for c in credits)
    a, b, c, d, e = (c.pk for c in credits)
    expected_body = (
        "Hello Kaze Tea,\n"
        "\n"
        "Ad credit on your account has expired and its unused balance was forfeited:\n"
        "\n"
        f"- Free credit #{a}, expired Mar 2, 2025: EUR 80.00 forfeited\n"
        f"- Coupon #{b}, expired Mar 2, 2025: EUR 25.50 forfeited\n"
        f"- Discount #{c}, expired Mar 9, 2025: EUR 12.34 forfeited\n"
        f"- Free credit #{d}, expired Mar 1, 2025: EUR 5.00 forfeited\n"
        f"- Free credit #{e}, expired Mar 10, 2025: EUR 7.25 forfeited\n"
        "\n"
        "Ad credit cannot be extended, converted to cash or refunded.\n"
    )
    reference_note = Notification(advertiser=adv, kind="credit_expired", context=before)
    assert render_body(note) == render_body(reference_note) == expected_body
    [message] = mail.outbox
    assert message.to == ["owner@example.com"]
    assert message.subject == note.subject
    assert message.body == expected_body
    [(html, mimetype)] = message.alternatives
    assert mimetype == "text/html"
    assert html == render_to_string("emails/base.html", {
        "subject": "EUR 130.09 of ad credit expired", "body": expected_body,
        "link": f"/a/{adv.pk}/payments/promotions/", "site_url": settings.SITE_URL,
        "button": "Open Promotions", "footer": KINDS["credit_expired"].footer,  # the kind's own (issue 13)
    })


@pytest.mark.django_db
def test_r36_expiry_email_lists_a_credit_with_nothing_left_and_totals_in_yen(django_capture_on_commit_callbacks):
    # given a JPY advertiser in Los Angeles with a credit used up on the ledger but still live, and a coupon
    adv = AdvertiserFactory(name="Sora Ramen", currency="JPY", timezone_name="America/Los_Angeles")
    with_email(member(adv, "finance"), "money@example.com")
    empty = grant(adv, "free", "3000", valid_from=datetime(2025, 1, 1, tzinfo=UTC),
                  expires_at=datetime(2025, 3, 1, 7, 59, tzinfo=UTC))  # Feb 28 in Los Angeles
    coupon = grant(adv, "assignable", "1500", valid_from=datetime(2025, 1, 1, tzinfo=UTC),
                   expires_at=datetime(2025, 3, 1, 8, 0, tzinfo=UTC))  # Mar 1, 00:00
    account = empty.ledger_account
    account.balance = Decimal("0")  # as if fully spent (no spend row needed for the email)
    account.save(update_fields=["balance"])
    before = reference_context(adv, Credit.objects.filter(advertiser=adv).select_related("ledger_account", "advertiser")
                               .order_by("pk"))
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert expire_credits(at=AT) == {"expired": 2, "forfeited_entries": 1}
    [note] = Notification.objects.filter(kind="credit_expired", advertiser=adv)
    assert note.context == before
    [message] = mail.outbox
    assert message.subject == "JPY 1500 of ad credit expired"
    assert message.body == (
        "Hello Sora Ramen,\n"
        "\n"
        "Ad credit on your account has expired and its unused balance was forfeited:\n"
        "\n"
        f"- Free credit #{empty.pk}, expired Feb 28, 2025: JPY 0 forfeited\n"
        f"- Coupon #{coupon.pk}, expired Mar 1, 2025: JPY 1500 forfeited\n"
        "\n"
        "Ad credit cannot be extended, converted to cash or refunded.\n"
    )
