"""Automatic payment (SPEC R21, R24–R26, R29): thresholds, bill dates, failures, crash safety."""

import threading
from datetime import datetime, timedelta
from decimal import Decimal
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from billing import autopay
from billing.autopay import (
    bill_pay,
    charge_bill_dates,
    charge_thresholds,
    next_bill_date,
    payment_method_set,
    retry_payments,
    threshold_set,
)
from billing.money import fmt
from billing.models import Bill, BillStatus, GatewayCharge, LedgerAccount, LedgerEntry, Purpose
from billing.selectors import advertiser_balances
from billing.spend import spend_record
from portal.errors import BusinessError
from promotions.models import CreditStatus
from tests.factories import AdvertiserFactory, CampaignFactory, grant

GOOD, DECLINE, TIMEOUT = "4242424242424242", "4000000000000002", "4000000000000119"


def auto_account(card=GOOD, threshold="180.00", **kw):
    adv = AdvertiserFactory(billing_method="automatic", **kw)
    payment_method_set(advertiser=adv, card_number=card, expiry="12/30")
    if threshold:
        threshold_set(advertiser=adv, amount=threshold, reason="test")
    adv.refresh_from_db()
    return adv, CampaignFactory(advertiser=adv)


def balance(adv, purpose):
    return LedgerAccount.objects.get(advertiser=adv, purpose=purpose).balance


def ledger_balanced():
    d = LedgerEntry.objects.filter(side="D").aggregate(s=Sum("amount"))["s"] or 0
    c = LedgerEntry.objects.filter(side="C").aggregate(s=Sum("amount"))["s"] or 0
    return d == c


@pytest.mark.django_db
def test_r24_threshold_180_accrued_185_charges_180_rolls_5(spend_event):
    adv, camp = auto_account()
    spend_record(event=spend_event(camp, "185.00"))
    counts = charge_thresholds()
    bill = Bill.objects.get(advertiser=adv)
    assert counts == {"bills": 1, "paid": 1, "failed": 0}
    assert (bill.kind, bill.amount, bill.status) == ("threshold", Decimal("180.00"), BillStatus.PAID)
    assert balance(adv, Purpose.ACCRUED) == Decimal("5.00")
    assert balance(adv, Purpose.BILLED) == 0
    assert balance(adv, Purpose.SETTLEMENT) == Decimal("180.00")
    assert GatewayCharge.objects.get().amount == Decimal("180.00")
    # running it again charges nothing more
    assert charge_thresholds()["bills"] == 0


@pytest.mark.django_db
def test_r24_repeats_while_accrued_reaches_threshold(spend_event):
    adv, camp = auto_account(threshold="50.00")
    spend_record(event=spend_event(camp, "160.00"))
    charge_thresholds()
    assert list(Bill.objects.filter(advertiser=adv).values_list("amount", flat=True)) == [Decimal("50.00")] * 3
    assert balance(adv, Purpose.ACCRUED) == Decimal("10.00")


@pytest.mark.django_db
def test_r10_credit_pays_before_anything_accrues(spend_event):
    adv, camp = auto_account()
    grant(adv, "free", "100.00")
    result = spend_record(event=spend_event(camp, "150.00"))
    assert result.allocation.credits[0][1] == Decimal("100.00")
    assert result.allocation.accrued == Decimal("50.00")


@pytest.mark.parametrize("tz_name", ["Pacific/Kiritimati", "America/Adak"])
def test_r24_bill_date_is_local_midnight_across_dst(tz_name):
    adv = type("Account", (), {"tz": ZoneInfo(tz_name), "bill_cycle": "weekly"})()
    tz = ZoneInfo(tz_name)
    # a week that crosses the US DST change (2026-11-01) and one that does not
    t = datetime(2026, 10, 28, 12, 0, tzinfo=tz)
    first = next_bill_date(adv, t)
    second = next_bill_date(adv, first)
    for d in (first, second):
        local = d.astimezone(tz)
        assert (local.hour, local.minute, local.weekday()) == (0, 0, 0)
    assert (second - first) in (timedelta(days=7), timedelta(days=7, hours=1), timedelta(days=7, hours=-1))
    adv.bill_cycle = "monthly"
    m = next_bill_date(adv, t).astimezone(tz)
    assert (m.day, m.hour, m.month) == (1, 0, 11)


@pytest.mark.django_db
@pytest.mark.parametrize("tz_name, utc_offset", [("Pacific/Kiritimati", 14), ("America/Adak", -10)])
def test_r24_bill_date_charges_once_at_local_midnight(tz_name, utc_offset, spend_event):
    adv, camp = auto_account(threshold="10000.00", timezone_name=tz_name)
    adv.bill_cycle = "weekly"
    adv.next_bill_at = None
    adv.save()
    autopay.autopay_setup(advertiser=adv, at=datetime(2026, 10, 28, 12, 0, tzinfo=ZoneInfo(tz_name)))
    adv.refresh_from_db()
    due = adv.next_bill_at
    assert due.astimezone(ZoneInfo(tz_name)).hour == 0
    spend_record(event=spend_event(camp, "42.00", occurred_at=due - timedelta(days=2)))
    # a minute before local midnight nothing is billed; at midnight everything accrued is, once
    assert charge_bill_dates(at=due - timedelta(minutes=1))["bills"] == 0
    assert charge_bill_dates(at=due)["bills"] == 1
    assert charge_bill_dates(at=due + timedelta(hours=3))["bills"] == 0
    bill = Bill.objects.get(advertiser=adv)
    assert (bill.kind, bill.amount, bill.status, bill.period_end) == ("bill_date", Decimal("42.00"), "paid", due)
    adv.refresh_from_db()
    assert adv.next_bill_at.astimezone(ZoneInfo(tz_name)).hour == 0
    assert adv.next_bill_at > due + timedelta(days=6)
    assert balance(adv, Purpose.ACCRUED) == 0


@pytest.mark.django_db
def test_r24_threshold_and_bill_date_in_one_run_charge_each_cent_once(spend_event):
    adv, camp = auto_account(threshold="100.00")
    spend_record(event=spend_event(camp, "130.00"))
    assert not Bill.objects.exists()  # spend only accrues: nothing is billed before the jobs run
    adv.next_bill_at = timezone.now() - timedelta(minutes=1)
    adv.save()
    charge_thresholds()
    charge_bill_dates()
    amounts = sorted(Bill.objects.filter(advertiser=adv).values_list("amount", flat=True))
    assert amounts == [Decimal("30.00"), Decimal("100.00")]
    assert sum(GatewayCharge.objects.values_list("amount", flat=True)) == Decimal("130.00")
    assert balance(adv, Purpose.ACCRUED) == 0 and ledger_balanced()


@pytest.mark.django_db
def test_r26_failures_retry_then_pause_after_more_than_two_and_pay_now_clears(spend_event):
    adv, camp = auto_account(card=DECLINE, threshold="50.00")
    spend_record(event=spend_event(camp, "60.00"))
    charge_thresholds()
    bill = Bill.objects.get(advertiser=adv)
    assert bill.status == BillStatus.FAILED and "declined" in bill.last_error
    assert balance(adv, Purpose.BILLED) == Decimal("50.00")
    # retries on the schedule: not before the next retry time
    assert retry_payments(at=timezone.now())["retried"] == 0
    retry_payments(at=timezone.now() + timedelta(hours=2))
    camp.refresh_from_db()
    assert camp.status == "active"  # two failures: still delivering
    retry_payments(at=timezone.now() + timedelta(days=2))
    camp.refresh_from_db()
    adv.refresh_from_db()
    assert adv.failed_payments == 3 and camp.status == "paused_funds"
    # the advertiser fixes the card and pays now
    payment_method_set(advertiser=adv, card_number=GOOD, expiry="01/31")
    adv.refresh_from_db()
    bill = bill_pay(bill=Bill.objects.get(pk=bill.pk))
    camp.refresh_from_db()
    assert bill.status == BillStatus.PAID and camp.status == "active"
    assert advertiser_balances(advertiser=adv).outstanding_bills == 0
    with pytest.raises(BusinessError) as exc:
        bill_pay(bill=bill)
    assert exc.value.code == "bill_already_paid"


@pytest.mark.django_db
def test_r26_timeout_leaves_bill_failed_and_never_charged():
    adv, camp = auto_account(card=TIMEOUT, threshold="50.00")
    from billing.spend import spend_record as record

    record(event={"event_id": "t1", "advertiser_id": adv.pk, "campaign_id": camp.pk, "amount": "55.00",
                  "currency": "USD", "occurred_at": timezone.now().isoformat()})
    charge_thresholds()
    bill = Bill.objects.get(advertiser=adv)
    assert bill.status == BillStatus.FAILED and "did not answer" in bill.last_error
    assert GatewayCharge.objects.count() == 0


@pytest.mark.django_db
def test_r26_crash_between_approval_and_booking_charges_once(spend_event):
    adv, camp = auto_account(threshold="50.00")
    spend_record(event=spend_event(camp, "50.00"))
    with mock.patch.object(autopay, "_book_result", side_effect=RuntimeError("worker killed")):
        with pytest.raises(RuntimeError):
            charge_thresholds()
    bill = Bill.objects.get(advertiser=adv)
    assert bill.status == BillStatus.OPEN and GatewayCharge.objects.count() == 1
    # the job runs again (a stuck open bill is picked up after a while)
    retry_payments(at=timezone.now() + timedelta(minutes=15))
    bill.refresh_from_db()
    assert bill.status == BillStatus.PAID
    assert GatewayCharge.objects.count() == 1
    assert Bill.objects.filter(advertiser=adv).count() == 1
    assert balance(adv, Purpose.SETTLEMENT) == Decimal("50.00") and ledger_balanced()


@pytest.mark.django_db(transaction=True)
def test_r26_two_threshold_runs_at_once_charge_each_bill_once(spend_event):
    accounts = [auto_account(threshold="20.00") for _ in range(5)]
    for adv, camp in accounts:
        spend_record(event=spend_event(camp, "65.00"))
    errors, barrier = [], threading.Barrier(2)

    def run():
        try:
            barrier.wait()
            charge_thresholds(chunk=2)
        except Exception as e:  # noqa: BLE001
            errors.append(e)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert Bill.objects.count() == 15 and Bill.objects.filter(status="paid").count() == 15
    assert GatewayCharge.objects.count() == 15
    for adv, _ in accounts:
        assert balance(adv, Purpose.ACCRUED) == Decimal("5.00")
        assert balance(adv, Purpose.SETTLEMENT) == Decimal("60.00")
    assert ledger_balanced()


@pytest.mark.django_db
def test_r25_threshold_grows_after_payments_never_after_failure_and_at_most_three_times_a_month(spend_event):
    adv, camp = auto_account(threshold="50.00")
    at = timezone.now()
    for i in range(8):
        spend_record(event=spend_event(camp, fmt(adv.billing_threshold, "USD")))
        charge_thresholds(at=at)
        adv.refresh_from_db()
    # starts at the USD ladder's 50, grows a step every 2 paid bills: 100, 250, 500 — then the
    # month's 3 changes are used up and it stays, whatever more is paid
    assert adv.threshold_changes.count() == 3
    assert adv.billing_threshold == Decimal("500.00")
    assert list(adv.threshold_changes.order_by("pk").values_list("new", flat=True)) == [
        Decimal("100"), Decimal("250"), Decimal("500")]
    with pytest.raises(BusinessError) as exc:
        threshold_set(advertiser=adv, amount="999.00", reason="staff")
    assert exc.value.code == "threshold_change_limit"


@pytest.mark.django_db
def test_r25_failure_resets_growth(spend_event):
    adv, camp = auto_account(card=DECLINE, threshold="50.00")
    for _ in range(3):
        spend_record(event=spend_event(camp, "50.00"))
    charge_thresholds()
    adv.refresh_from_db()
    assert adv.billing_threshold == Decimal("50.00") and adv.successful_payments == 0


@pytest.mark.django_db
def test_r21_shop_credit_waits_for_a_paid_bill(spend_event):
    adv, camp = auto_account(threshold="50.00")
    shop = grant(adv, "free", "30.00", source="shop", status=CreditStatus.PENDING)
    first = spend_record(event=spend_event(camp, "60.00"))
    assert first.allocation.credits == [] and first.allocation.accrued == Decimal("60.00")
    charge_thresholds()
    shop.refresh_from_db()
    assert shop.status == CreditStatus.ACTIVE
    later = spend_record(event=spend_event(camp, "20.00", occurred_at=timezone.now() + timedelta(seconds=1)))
    assert later.allocation.credits == [(shop.pk, Decimal("20.00"))]


@pytest.mark.django_db
def test_r29_card_number_is_never_stored():
    adv, _ = auto_account()
    pm = adv.payment_method
    assert pm.last4 == "4242" and GOOD not in pm.token and pm.expiry == "12/30"
    with pytest.raises(BusinessError) as exc:
        payment_method_set(advertiser=adv, card_number="1234567812345678", expiry="12/30")
    assert exc.value.code == "card_refused"
