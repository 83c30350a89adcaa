"""Automatic payment schedules under stress (SPEC R24, R26, R33): a threshold run and a bill-date
run at the same moment, bill dates at local midnight across DST changes in UTC+14 and UTC−10
zones, and a crash inside `charge_thresholds` between the gateway's approval and the booking.
"""

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db.models import Sum
from django.utils import timezone

from billing import autopay
from billing.autopay import STUCK_AFTER, autopay_setup, charge_bill_dates, charge_thresholds
from billing.models import Bill, BillKind, BillStatus, GatewayCharge, LedgerAccount, LedgerTransaction, Purpose, TxKind
from billing.spend import spend_record
from portal.models import Advertiser
from tests.billing.test_autopay import auto_account
from tests.billing.test_concurrency import no_errors, run_threads
from tests.reference_model import ledger_problems

D = Decimal
UTC = ZoneInfo("UTC")


def balance(adv, purpose) -> Decimal:
    return LedgerAccount.objects.get(advertiser=adv, purpose=purpose).balance


def charged_once_at_the_gateway(bills) -> None:
    """Every bill has exactly one approved charge at the sandbox, under its own key, for its amount,
    and the sandbox charged nothing else."""
    charges = {g.idempotency_key: g for g in GatewayCharge.objects.all()}
    assert sorted(charges) == sorted(b.charge_key for b in bills)
    for b in bills:
        assert (charges[b.charge_key].amount, charges[b.charge_key].status) == (b.amount, "approved"), b.pk
        assert (b.status, b.gateway_reference) == (BillStatus.PAID, charges[b.charge_key].reference), b.pk


# --- 1. a threshold run and a bill-date run at the same time -----------------------------------

ROUND_SPEND = ["65.00", "20.00", "19.99", "47.31", "100.00", "0.01"]  # threshold 20.00


@pytest.mark.django_db(transaction=True)
def test_r24_r33_concurrent_threshold_and_bill_date_runs_charge_each_accrued_cent_once(spend_event, settings):
    # given 6 automatic accounts on a 20.00 threshold (kept fixed: growth is tested elsewhere)
    settings.BILLING_PAYMENTS_PER_STEP = 10**6
    accounts = [auto_account(threshold="20.00") for _ in range(6)]
    spent = {adv.pk: D(0) for adv, _ in accounts}
    threshold = D("20.00")

    for rnd in range(4):
        # and each has spend accrued and a bill date that is due now
        at = timezone.now() + timedelta(seconds=rnd)
        amounts = {}
        for i, (adv, camp) in enumerate(accounts):
            amount = ROUND_SPEND[(i + rnd) % len(ROUND_SPEND)]
            spend_record(event=spend_event(camp, amount))
            amounts[adv.pk] = D(amount)
            spent[adv.pk] += D(amount)
        Advertiser.objects.filter(pk__in=spent).update(next_bill_at=at)
        accrued_before = sum(LedgerAccount.objects.filter(advertiser_id__in=spent, purpose=Purpose.ACCRUED)
                             .values_list("balance", flat=True))
        assert accrued_before == sum(amounts.values())

        # when two threshold runs and two bill-date runs start together, in chunks of 2 accounts
        no_errors(run_threads(
            lambda t: (charge_thresholds if t % 2 == 0 else charge_bill_dates)(at=at, chunk=2), n=4))

        # then this round's bills add up to what was accrued, nothing is left accrued or billed,
        # and each account was billed in one of the two serial orders, never both
        this_round = Bill.objects.filter(issued_at=at)
        assert this_round.aggregate(s=Sum("amount"))["s"] == accrued_before
        for adv, _ in accounts:
            mine = sorted((b.kind, b.amount) for b in this_round.filter(advertiser=adv))
            a = amounts[adv.pk]
            threshold_first = [(BillKind.THRESHOLD, threshold)] * int(a // threshold)
            if a % threshold:
                threshold_first.append((BillKind.BILL_DATE, a % threshold))
            bill_date_first = [(BillKind.BILL_DATE, a)]
            assert mine in (sorted(threshold_first), bill_date_first), (rnd, a, mine)
            assert balance(adv, Purpose.ACCRUED) == 0 and balance(adv, Purpose.BILLED) == 0
            assert balance(adv, Purpose.SETTLEMENT) == spent[adv.pk]
            adv.refresh_from_db()
            assert adv.next_bill_at > at  # the bill date was used once and moved on

        # and every bill so far was charged once at the gateway and paid on its first attempt
        bills = list(Bill.objects.all())
        charged_once_at_the_gateway(bills)
        assert {b.attempts for b in bills} == {1}
        assert sum(b.amount for b in bills) == sum(spent.values())
        # and the ledger holds one bill and one payment transaction per bill, balanced
        assert LedgerTransaction.objects.filter(kind=TxKind.BILL).count() == len(bills)
        assert LedgerTransaction.objects.filter(kind=TxKind.PAYMENT).count() == len(bills)
        assert LedgerTransaction.objects.filter(kind=TxKind.PAYMENT).aggregate(s=Sum("amount"))["s"] == sum(
            spent.values())
        assert ledger_problems() == []


# --- 2. bill dates at local midnight across DST changes ----------------------------------------

BILL_DATE_CASES = [
    # zone, cycle, two consecutive bill dates with a DST change between them, the offset under test
    ("Pacific/Apia", "weekly", date(2021, 3, 29), date(2021, 4, 5), 14),  # DST ended 2021-04-04: +14 → +13
    ("Pacific/Apia", "weekly", date(2020, 9, 21), date(2020, 9, 28), 14),  # DST began 2020-09-27: +13 → +14
    ("America/Adak", "weekly", date(2025, 10, 27), date(2025, 11, 3), -10),  # DST ended 2025-11-02: −9 → −10
    ("Pacific/Apia", "monthly", date(2021, 4, 1), date(2021, 5, 1), 14),
    ("America/Adak", "monthly", date(2025, 11, 1), date(2025, 12, 1), -10),
]


@pytest.mark.django_db
@pytest.mark.parametrize("zone, cycle, first_day, second_day, utc_offset", BILL_DATE_CASES)
def test_r24_bill_date_charges_once_at_local_midnight_hour_by_hour_across_dst(
        zone, cycle, first_day, second_day, utc_offset, spend_event):
    tz = ZoneInfo(zone)
    first = datetime.combine(first_day, time(0), tzinfo=tz)
    second = datetime.combine(second_day, time(0), tzinfo=tz)
    # the zone really is what this test is about: the offset under test on one of the two bill
    # dates, a different one on the other (a DST change between them)
    offsets = {first.utcoffset(), second.utcoffset()}
    assert timedelta(hours=utc_offset) in offsets and len(offsets) == 2
    if cycle == "weekly":
        assert first.weekday() == second.weekday() == 0
    else:
        assert first.day == second.day == 1

    # given an automatic account in that zone whose threshold is never reached
    adv, camp = auto_account(threshold="10000.00", timezone_name=zone)
    Advertiser.objects.filter(pk=adv.pk).update(bill_cycle=cycle, next_bill_at=None)
    adv.refresh_from_db()
    autopay_setup(advertiser=adv, at=first - timedelta(days=2))
    adv.refresh_from_db()
    assert adv.next_bill_at == first

    # when the job runs every hour (on the UTC hour) from a day before the first bill date to a
    # day after the second, with spend arriving every 5 hours
    tick = first.astimezone(UTC) - timedelta(days=1)
    end = second.astimezone(UTC) + timedelta(days=1)
    accrued, expected, billed_at, n = D(0), [], [], 0
    while tick <= end:
        if n % 5 == 0:
            amount = D("1.00") + D(n % 7) / 4
            spend_record(event=spend_event(camp, str(amount), occurred_at=tick - timedelta(minutes=30)))
            accrued += amount
        counts = charge_bill_dates(at=tick)
        assert counts["bills"] == counts["dates"] == counts["paid"] <= 1
        if counts["bills"]:
            billed_at.append(tick)
            expected.append(accrued)
            accrued = D(0)
        tick += timedelta(hours=1)
        n += 1

    # then each bill date was charged exactly once, at the run that hit its local midnight, for
    # everything accrued since the last one
    assert billed_at == [first, second]
    bills = list(Bill.objects.filter(advertiser=adv).order_by("pk"))
    assert [(b.kind, b.period_end, b.issued_at, b.amount, b.status) for b in bills] == [
        (BillKind.BILL_DATE, first, first, expected[0], BillStatus.PAID),
        (BillKind.BILL_DATE, second, second, expected[1], BillStatus.PAID),
    ]
    for b in bills:
        local = b.period_end.astimezone(tz)
        assert (local.hour, local.minute) == (0, 0)
    charged_once_at_the_gateway(bills)
    # and the next bill date is the following local midnight of the cycle; the rest waits for it
    adv.refresh_from_db()
    after = adv.next_bill_at.astimezone(tz)
    assert (after.hour, after.minute) == (0, 0)
    assert after.weekday() == 0 if cycle == "weekly" else after.day == 1
    assert second < adv.next_bill_at <= second + timedelta(days=31, hours=1)
    assert balance(adv, Purpose.ACCRUED) == accrued > 0
    assert ledger_problems() == []


# --- 3. a crash inside charge_thresholds, between the approval and the booking -----------------

def crash_once_after_approval(monkeypatch) -> list:
    """`_book_result` raises the first time it is called (the worker dies after the gateway
    approved the charge, before anything is booked), then books normally."""
    real, calls = autopay._book_result, []

    def book(**kw):
        calls.append(kw)
        if len(calls) == 1:
            assert kw["result"] is not None and kw["result"].approved
            raise RuntimeError("worker killed after the gateway approved")
        return real(**kw)

    monkeypatch.setattr(autopay, "_book_result", book)
    return calls


@pytest.mark.django_db
@pytest.mark.parametrize("more_spend", [False, True], ids=["nothing_more_accrued", "due_again"])
def test_r26_crash_inside_charge_thresholds_then_a_later_threshold_run_charges_once(
        more_spend, monkeypatch, spend_event):
    # given an account that reaches its threshold
    adv, camp = auto_account(threshold="50.00")
    spend_record(event=spend_event(camp, "50.00"))
    calls = crash_once_after_approval(monkeypatch)
    t0 = timezone.now()

    # when the threshold run dies between the gateway's approval and the booking
    with pytest.raises(RuntimeError):
        charge_thresholds(at=t0)
    bill = Bill.objects.get(advertiser=adv)
    assert bill.status == BillStatus.OPEN and GatewayCharge.objects.count() == 1
    assert balance(adv, Purpose.BILLED) == D("50.00") and balance(adv, Purpose.SETTLEMENT) == 0
    if more_spend:
        spend_record(event=spend_event(camp, "50.00"))

    # and the job runs again before the bill counts as stuck: the attempt may still be in flight
    charge_thresholds(at=t0 + timedelta(minutes=1))
    bill.refresh_from_db()
    assert bill.status == BillStatus.OPEN

    # and again once it is stuck
    charge_thresholds(at=t0 + STUCK_AFTER + timedelta(minutes=1))

    # then the crashed bill is booked once, from the gateway's first approval; nothing is charged twice
    bill.refresh_from_db()
    bills = list(Bill.objects.filter(advertiser=adv).order_by("pk"))
    assert bills[0].pk == bill.pk and bill.status == BillStatus.PAID
    assert [b.amount for b in bills] == [D("50.00")] * (2 if more_spend else 1)
    charged_once_at_the_gateway(bills)
    assert [kw["bill_id"] for kw in calls].count(bill.pk) == 2  # crashed once, booked once
    assert balance(adv, Purpose.SETTLEMENT) == D("50.00") * len(bills)
    assert balance(adv, Purpose.BILLED) == 0 and balance(adv, Purpose.ACCRUED) == 0
    assert LedgerTransaction.objects.filter(kind=TxKind.PAYMENT, advertiser=adv).count() == len(bills)
    assert ledger_problems() == []


@pytest.mark.django_db
def test_r26_crash_inside_charge_bill_dates_then_a_later_run_charges_once(monkeypatch, spend_event):
    # given an account whose bill date is due, with spend under its threshold
    adv, camp = auto_account(threshold="10000.00")
    spend_record(event=spend_event(camp, "42.00"))
    t0 = timezone.now()
    Advertiser.objects.filter(pk=adv.pk).update(next_bill_at=t0)
    crash_once_after_approval(monkeypatch)

    # when the bill-date run dies after the approval, and the job runs again once the bill is stuck
    with pytest.raises(RuntimeError):
        charge_bill_dates(at=t0)
    assert Bill.objects.get(advertiser=adv).status == BillStatus.OPEN
    charge_bill_dates(at=t0 + STUCK_AFTER + timedelta(minutes=1))

    # then one bill, paid, charged once; the bill date was used once
    bills = list(Bill.objects.filter(advertiser=adv))
    assert [(b.kind, b.amount, b.period_end) for b in bills] == [(BillKind.BILL_DATE, D("42.00"), t0)]
    charged_once_at_the_gateway(bills)
    assert balance(adv, Purpose.SETTLEMENT) == D("42.00") and balance(adv, Purpose.BILLED) == 0
    assert ledger_problems() == []


# --- counts that tell the truth under concurrency (issue 11) ------------------------------------

@pytest.mark.django_db(transaction=True)
def test_r26_two_concurrent_retry_runs_report_each_paid_bill_once(spend_event, settings):
    from billing.autopay import payment_method_set, retry_payments
    from tests.billing.test_autopay import DECLINE, GOOD

    # given 8 failed threshold bills whose cards now work, all due for a retry
    settings.BILLING_PAYMENTS_PER_STEP = 10**6
    accounts = [auto_account(card=DECLINE, threshold="20.00") for _ in range(8)]
    for adv, camp in accounts:
        spend_record(event=spend_event(camp, "20.00"))
    charge_thresholds()
    assert Bill.objects.filter(status=BillStatus.FAILED).count() == 8
    for adv, _ in accounts:
        payment_method_set(advertiser=adv, card_number=GOOD, expiry="12/30")
    at = timezone.now() + timedelta(days=1)

    # when two retry runs go at once
    counts = []
    no_errors(run_threads(lambda t: counts.append(retry_payments(at=at)), n=2))

    # then every bill is paid and charged once, and the runs' "paid" add up to the bills they paid
    bills = list(Bill.objects.order_by("pk"))
    assert {b.status for b in bills} == {BillStatus.PAID}
    charged_once_at_the_gateway(bills)
    assert sum(c["paid"] for c in counts) == 8, counts
    # and an attempt is counted for a call that reached the gateway while the bill was unpaid
    assert all(2 <= b.attempts <= 3 for b in bills), [b.attempts for b in bills]
