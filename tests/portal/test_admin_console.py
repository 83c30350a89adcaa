"""The support console's advertiser page (issue 5 §3): balances, bills, credits and ledger on one
screen, read-only, in a constant number of queries; the "mark invoicing-eligible" action (R28)."""

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from billing.autopay import charge_thresholds, payment_method_set, threshold_set
from billing.models import Bill, BillStatus
from billing.spend import spend_record
from portal.models import AuditLog
from portal.permissions import BILLING_MANAGER, SUPPORT_AGENT
from tests.factories import AdvertiserFactory, CampaignFactory, UserFactory, grant

pytestmark = pytest.mark.django_db

DECLINE, GOOD = "4000000000000002", "4242424242424242"
CHANGELIST = reverse("admin:portal_advertiser_changelist")


def staff_client(client, role):
    user = UserFactory(is_staff=True)
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    client.force_login(user)
    return user


def account_with(n: int, spend_event):
    """An automatic-payment account with n paid threshold bills, one failed one, and n credits."""
    adv = AdvertiserFactory(billing_method="automatic", name=f"Console {n}")
    payment_method_set(advertiser=adv, card_number=GOOD, expiry="12/30")
    threshold_set(advertiser=adv, amount="180.00", reason="test")
    camp = CampaignFactory(advertiser=adv)
    for i in range(n + 1):
        if i == n:
            payment_method_set(advertiser=adv, card_number=DECLINE, expiry="12/30")
        adv.refresh_from_db()  # the threshold grows with the payments (R25): reach it each time
        spend_record(event=spend_event(camp, f"{adv.billing_threshold:.2f}"))
        charge_thresholds()
    for i in range(n):
        grant(adv, "free" if i % 2 else "assignable", f"{10 + i}.00")
    return adv


def change_page(client, adv):
    return client.get(reverse("admin:portal_advertiser_change", args=[adv.pk]))


def test_the_advertiser_page_shows_recent_bills_and_credits_with_links(client, spend_event):
    staff_client(client, SUPPORT_AGENT)
    adv = account_with(2, spend_event)
    paid, failed = (Bill.objects.filter(advertiser=adv, status=s).first() for s in (BillStatus.PAID, BillStatus.FAILED))
    page = change_page(client, adv)
    assert page.status_code == 200
    html = page.text
    # the bills: number or id linking to the bill's admin page, kind, amount and status
    assert 'class="recent-bills"' in html
    for bill, status in ((paid, "Paid"), (failed, "Payment failed")):
        link = reverse("admin:billing_bill_change", args=[bill.pk])
        row = html[html.index(f'href="{link}"'):]
        row = row[:row.index("</tr>")]
        assert f"#{bill.pk}" in row and "Threshold bill" in row and f"{bill.amount:.2f} USD" in row and status in row
    assert reverse("admin:billing_bill_changelist") + f"?advertiser__id__exact={adv.pk}" in html
    # the credits: kind, amount, remaining, status, each linking to the credit
    assert 'class="credits"' in html
    for credit in adv.credits.all():
        link = reverse("admin:promotions_credit_change", args=[credit.pk])
        row = html[html.index(f'href="{link}"'):]
        row = row[:row.index("</tr>")]
        amount = f"{credit.amount:.2f} USD"
        assert credit.get_kind_display() in row and row.count(amount) == 2 and "Active" in row
    # read-only: a support agent sees no input for them and cannot add a bill
    assert 'name="recent_bills"' not in html and 'name="credits_summary"' not in html


def table_rows(html: str, css_class: str) -> int:
    table = html[html.index(f'<table class="{css_class}">'):]
    return table[:table.index("</table>")].count("<tr><td>")


def test_the_advertiser_page_costs_the_same_queries_with_more_bills_and_credits(client, spend_event):
    staff_client(client, SUPPORT_AGENT)
    small, large = account_with(1, spend_event), account_with(6, spend_event)
    change_page(client, small)  # warm up: session, content types
    with CaptureQueriesContext(connection) as few:
        assert change_page(client, small).status_code == 200
    with CaptureQueriesContext(connection) as many:
        page = change_page(client, large)
    assert table_rows(page.text, "recent-bills") == 7 and table_rows(page.text, "credits") == 6
    assert len(many) == len(few), [q["sql"] for q in many.captured_queries]


def test_an_account_without_bills_or_credits_says_so(client):
    staff_client(client, SUPPORT_AGENT)
    page = change_page(client, AdvertiserFactory())
    assert "No bills yet." in page.text and "No credits yet." in page.text


def action_post(adv, **extra):
    return {"action": "mark_invoicing_eligible", "_selected_action": [str(adv.pk)], **extra}


def test_r28_a_billing_manager_marks_an_account_invoicing_eligible_with_a_reason(client):
    manager = staff_client(client, BILLING_MANAGER)
    adv = AdvertiserFactory()
    # the action asks for a reason first and changes nothing yet
    page = client.post(CHANGELIST, action_post(adv))
    assert page.status_code == 200 and 'name="reason"' in page.text and "Mark eligible" in page.text
    client.post(CHANGELIST, action_post(adv, confirm="yes", reason=""))
    adv.refresh_from_db()
    assert not adv.invoicing_eligible
    # with a reason, the account is eligible and the change is in the audit log with before and after
    response = client.post(CHANGELIST, action_post(adv, confirm="yes", reason="credit check passed, ticket 77"))
    assert response.status_code == 302
    adv.refresh_from_db()
    assert adv.invoicing_eligible
    record = AuditLog.objects.get(advertiser=adv)
    assert (record.actor, record.reason) == (manager, "credit check passed, ticket 77")
    assert (record.before["invoicing_eligible"], record.after["invoicing_eligible"]) == (False, True)


def test_r28_a_support_agent_cannot_mark_an_account_invoicing_eligible(client):
    staff_client(client, SUPPORT_AGENT)
    adv = AdvertiserFactory()
    assert "mark_invoicing_eligible" not in client.get(CHANGELIST).text
    client.post(CHANGELIST, action_post(adv, confirm="yes", reason="please"))
    adv.refresh_from_db()
    assert not adv.invoicing_eligible and not AuditLog.objects.filter(advertiser=adv).exists()
