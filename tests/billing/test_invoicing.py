"""Monthly invoicing (SPEC R27) and switching billing method (R28)."""

import threading
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.utils import timezone

from billing.autopay import bill_pay, payment_method_set
from billing.invoicing import issue_monthly_invoices, month_bounds
from billing.models import Bill, BillStatus, LedgerAccount, Purpose
from billing.selectors import advertiser_balances
from billing.spend import spend_record
from billing.switching import billing_method_switch, billing_settings_set
from portal.errors import BusinessError
from tests.factories import AdvertiserFactory, CampaignFactory, deposit, grant

TZ = ZoneInfo("Asia/Tokyo")


def invoiced_account(limit="1000.00", **kw):
    adv = AdvertiserFactory(billing_method="monthly_invoice", timezone_name="Asia/Tokyo", **kw)
    billing_settings_set(advertiser=adv, credit_line_limit=limit)
    payment_method_set(advertiser=adv, card_number="4242424242424242", expiry="12/30")
    adv.refresh_from_db()
    return adv, CampaignFactory(advertiser=adv)


def used(adv):
    return LedgerAccount.objects.get(advertiser=adv, purpose=Purpose.CREDIT_LINE).balance


@pytest.mark.django_db
def test_r27_invoice_on_the_first_for_last_month_net_of_credit_gapless_and_paid_restores_line(spend_event):
    adv, camp = invoiced_account()
    grant(adv, "free", "50.00", valid_from=datetime(2026, 9, 1, tzinfo=TZ))
    spend_record(event=spend_event(camp, "300.00", occurred_at=datetime(2026, 10, 10, 12, tzinfo=TZ)))
    spend_record(event=spend_event(camp, "20.00", occurred_at=datetime(2026, 11, 2, 12, tzinfo=TZ)))
    assert used(adv) == Decimal("270.00")
    # the 1st of November, local time: October is invoiced, net of the 50 of credit
    first = datetime(2026, 11, 1, 0, 5, tzinfo=TZ)
    assert issue_monthly_invoices(at=first)["issued"] == 1
    assert issue_monthly_invoices(at=first + timedelta(hours=1))["issued"] == 0
    inv = Bill.objects.get(advertiser=adv)
    assert (inv.kind, inv.amount, inv.gross_spend, inv.credits_applied) == (
        "monthly_invoice", Decimal("250.00"), Decimal("300.00"), Decimal("50.00"))
    assert inv.number == "ADC-000001"
    assert inv.due_at == first + timedelta(days=30)
    assert (inv.period_start, inv.period_end) == month_bounds(adv, first)
    assert advertiser_balances(advertiser=adv).outstanding_bills == Decimal("250.00")
    # paying it restores the line by the invoiced amount
    bill_pay(bill=inv)
    inv.refresh_from_db()
    assert inv.status == BillStatus.PAID and used(adv) == Decimal("20.00")


@pytest.mark.django_db
def test_r27_line_used_up_pauses_and_overdue_pauses(spend_event):
    adv, camp = invoiced_account(limit="100.00")
    r = spend_record(event=spend_event(camp, "130.00", occurred_at=datetime(2026, 10, 3, tzinfo=TZ)))
    assert (r.allocation.credit_line, r.allocation.arrears) == (Decimal("100.00"), Decimal("30.00"))
    camp.refresh_from_db()
    assert camp.status == "paused_funds"
    issue_monthly_invoices(at=datetime(2026, 11, 1, 1, tzinfo=TZ))
    inv = Bill.objects.get(advertiser=adv)
    assert (inv.amount, inv.line_amount) == (Decimal("130.00"), Decimal("100.00"))
    assert issue_monthly_invoices(at=inv.due_at + timedelta(minutes=1))["overdue"] == 1
    inv.refresh_from_db()
    assert inv.status == BillStatus.OVERDUE
    bill_pay(bill=inv)
    camp.refresh_from_db()
    assert camp.status == "active" and used(adv) == 0


@pytest.mark.django_db
def test_r27_late_event_after_invoice_goes_on_next_invoice(spend_event):
    adv, camp = invoiced_account()
    spend_record(event=spend_event(camp, "10.00", occurred_at=datetime(2026, 10, 5, tzinfo=TZ)))
    issue_monthly_invoices(at=datetime(2026, 11, 1, 1, tzinfo=TZ))
    spend_record(event=spend_event(camp, "7.00", occurred_at=datetime(2026, 10, 31, 23, tzinfo=TZ)))
    issue_monthly_invoices(at=datetime(2026, 12, 1, 1, tzinfo=TZ))
    assert list(Bill.objects.order_by("pk").values_list("amount", flat=True)) == [Decimal("10.00"), Decimal("7.00")]


@pytest.mark.django_db(transaction=True)
def test_r27_invoice_numbers_gapless_and_unique_under_concurrency(spend_event):
    accounts = [invoiced_account() for _ in range(8)]
    for adv, camp in accounts:
        spend_record(event=spend_event(camp, "5.00", occurred_at=datetime(2026, 10, 5, tzinfo=TZ)))
    errors, barrier = [], threading.Barrier(3)

    def run():
        try:
            barrier.wait()
            issue_monthly_invoices(at=datetime(2026, 11, 1, 1, tzinfo=TZ), chunk=3)
        except Exception as e:  # noqa: BLE001
            errors.append(e)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    numbers = sorted(int(n.rsplit("-", 1)[1]) for n in Bill.objects.values_list("number", flat=True))
    assert numbers == list(range(1, 9))


@pytest.mark.django_db
def test_r28_allowed_paths_only(spend_event):
    adv = AdvertiserFactory()
    with pytest.raises(BusinessError) as exc:
        billing_method_switch(advertiser=adv, billing_method="automatic")
    assert exc.value.code == "payment_method_required"
    with pytest.raises(BusinessError) as exc:
        billing_method_switch(advertiser=adv, billing_method="monthly_invoice")
    assert exc.value.code == "invoicing_not_eligible"
    payment_method_set(advertiser=adv, card_number="4242424242424242", expiry="12/30")
    deposit(adv, "40.00")
    assert billing_method_switch(advertiser=adv, billing_method="automatic").bill is None  # nothing accrued
    adv.refresh_from_db()
    assert adv.billing_method == "automatic" and adv.billing_threshold and adv.next_bill_at
    with pytest.raises(BusinessError) as exc:
        billing_method_switch(advertiser=adv, billing_method="manual")
    assert exc.value.code == "switch_to_manual_not_allowed"
    # cash loaded before the switch is spent first, then spend accrues
    camp = CampaignFactory(advertiser=adv)
    r = spend_record(event=spend_event(camp, "55.00"))
    assert (r.allocation.cash, r.allocation.accrued) == (Decimal("40.00"), Decimal("15.00"))
    # automatic → invoicing bills what accrued, at once
    billing_settings_set(advertiser=adv, invoicing_eligible=True, credit_line_limit="500.00")
    switched = billing_method_switch(advertiser=adv, billing_method="monthly_invoice")
    switch_bill = Bill.objects.get(advertiser=adv, kind="switch")
    assert (switch_bill.amount, switch_bill.status) == (Decimal("15.00"), "paid")
    # the switch says what it billed (the page reads it there, issue 10)
    assert (switched.advertiser.billing_method, switched.bill.pk, switched.bill.status) == (
        "monthly_invoice", switch_bill.pk, "paid")
    with pytest.raises(BusinessError) as exc:
        billing_method_switch(advertiser=adv, billing_method="automatic")
    assert exc.value.code == "switch_not_allowed"


@pytest.mark.django_db
def test_r28_manual_arrears_must_be_settled_first(spend_event):
    adv = AdvertiserFactory(billing_method="manual")
    camp = CampaignFactory(advertiser=adv)
    payment_method_set(advertiser=adv, card_number="4242424242424242", expiry="12/30")
    spend_record(event=spend_event(camp, "5.00"))
    with pytest.raises(BusinessError) as exc:
        billing_method_switch(advertiser=adv, billing_method="automatic")
    assert exc.value.code == "arrears_outstanding"
