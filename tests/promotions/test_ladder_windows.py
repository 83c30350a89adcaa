"""Ladder windows and eligibility (SPEC R16–R18): what qualifies, and the reward that is issued.

The earning window is half-open, `[window_start, window_end)`, judged by the spend's
`occurred_at`; only spend on campaigns the program's eligibility admits counts.
"""

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from billing.spend import spend_record
from portal.models import Notification
from promotions.models import Credit, CreditSource, CreditStatus, Enrollment, EnrollmentStatus
from promotions.programs import close_ladder_windows, enrollment_create
from tests.factories import AdvertiserFactory, CampaignFactory, deposit
from tests.promotions.ladder_helpers import new_program

GRACE = timedelta(hours=1)


def enrolled(*, started_days_ago: float = 0, program=None, cash="5000.00"):
    """An official-offer advertiser with cash, enrolled `started_days_ago` days ago."""
    start = timezone.now() - timedelta(days=started_days_ago)
    adv = AdvertiserFactory(signup_source="official_offer", registered_at=start - timedelta(days=1))
    deposit(adv, cash)
    enrollment = enrollment_create(advertiser=adv, program=program or new_program(), at=start)
    return adv, enrollment


def qualifying(enrollment) -> Decimal:
    enrollment.refresh_from_db()
    return enrollment.qualifying_spend


@pytest.mark.django_db
def test_r16_r17_spend_before_the_window_start_does_not_qualify_and_at_it_does(spend_event):
    adv, enrollment = enrolled(started_days_ago=2)
    camp = CampaignFactory(advertiser=adv)
    spend_record(event=spend_event(camp, "40.00", occurred_at=enrollment.window_start - timedelta(seconds=1)))
    assert qualifying(enrollment) == Decimal("0")
    spend_record(event=spend_event(camp, "25.00", occurred_at=enrollment.window_start))
    assert qualifying(enrollment) == Decimal("25.00")


@pytest.mark.django_db
def test_r16_r17_window_end_is_excluded_spend_just_before_it_qualifies(spend_event):
    # given an enrollment whose window ended 30 minutes ago (still inside the grace period)
    adv, enrollment = enrolled(started_days_ago=30 + 1 / 48)
    camp = CampaignFactory(advertiser=adv)
    assert enrollment.window_end < timezone.now()
    # when late events arrive: one at the window's end, one after it, one just before it
    spend_record(event=spend_event(camp, "150.00", occurred_at=enrollment.window_end))
    spend_record(event=spend_event(camp, "150.00", occurred_at=enrollment.window_end + timedelta(minutes=5)))
    assert qualifying(enrollment) == Decimal("0")
    spend_record(event=spend_event(camp, "120.00", occurred_at=enrollment.window_end - timedelta(seconds=1)))
    # then only the one inside [start, end) counts, and the job pays the tier it reached
    assert qualifying(enrollment) == Decimal("120.00")
    close_ladder_windows(at=enrollment.window_end + GRACE + timedelta(seconds=1))
    enrollment.refresh_from_db()
    assert enrollment.status == EnrollmentStatus.AWARDED
    assert enrollment.credit.amount == Decimal("50.00")


@pytest.mark.django_db
def test_r17_spend_on_objectives_the_program_excludes_does_not_qualify(spend_event):
    adv, enrollment = enrolled(program=new_program(eligible_objectives=["PRODUCT_SALES", "APP_PROMOTION"]))
    traffic = CampaignFactory(advertiser=adv, objective="TRAFFIC")
    sales = CampaignFactory(advertiser=adv, objective="PRODUCT_SALES")
    spend_record(event=spend_event(traffic, "300.00", occurred_at=timezone.now()))
    assert qualifying(enrollment) == Decimal("0")
    spend_record(event=spend_event(sales, "70.00", occurred_at=timezone.now()))
    assert qualifying(enrollment) == Decimal("70.00")


@pytest.mark.django_db
def test_r17_spend_on_product_sources_the_program_excludes_does_not_qualify(spend_event):
    adv, enrollment = enrolled(program=new_program(eligible_product_source="CATALOG"))
    plain = CampaignFactory(advertiser=adv, objective="PRODUCT_SALES", product_source="NONE")
    catalog = CampaignFactory(advertiser=adv, objective="PRODUCT_SALES", product_source="CATALOG")
    spend_record(event=spend_event(plain, "300.00", occurred_at=timezone.now()))
    assert qualifying(enrollment) == Decimal("0")
    spend_record(event=spend_event(catalog, "45.00", occurred_at=timezone.now()))
    assert qualifying(enrollment) == Decimal("45.00")


@pytest.mark.django_db
def test_r16_r18_reward_takes_the_programs_kind_validity_and_eligibility(spend_event):
    program = new_program(reward_kind="assignable", reward_validity_days=45, eligible_objectives=["TRAFFIC"],
                          eligible_product_source="NONE")
    adv, enrollment = enrolled(started_days_ago=31, program=program)
    camp = CampaignFactory(advertiser=adv, objective="TRAFFIC")
    spend_record(event=spend_event(camp, "600.00", occurred_at=enrollment.window_start + timedelta(days=1)))
    before = timezone.now()
    assert close_ladder_windows(at=timezone.now())["awarded"] == 1
    after = timezone.now()
    enrollment.refresh_from_db()
    credit = enrollment.credit
    # the highest tier reached (500 → 300), as the program's kind of credit, valid from its issue
    assert credit.amount == Decimal("300.00") and credit.remaining == Decimal("300.00")
    assert credit.kind == "assignable"
    assert credit.source == CreditSource.LADDER
    assert credit.status == CreditStatus.ACTIVE
    assert before <= credit.valid_from <= after
    assert credit.expires_at == credit.valid_from + timedelta(days=45)
    assert credit.eligible_objectives == ["TRAFFIC"]
    assert credit.eligible_product_source == "NONE"
    # an assignable reward pays nothing until an admin assigns it (R6)
    paid = spend_record(event=spend_event(camp, "10.00", occurred_at=timezone.now()))
    assert paid.allocation.credits == []


@pytest.mark.django_db
def test_r18_immediate_tier_issues_exactly_one_credit_and_the_window_job_nothing_more(spend_event):
    adv, enrollment = enrolled()
    camp = CampaignFactory(advertiser=adv)
    spend_record(event=spend_event(camp, "1200.00", occurred_at=timezone.now()))
    spend_record(event=spend_event(camp, "900.00", occurred_at=timezone.now()))  # crosses 2000 (immediate)
    ladder = Credit.objects.filter(advertiser=adv, source=CreditSource.LADDER)
    assert [c.amount for c in ladder] == [Decimal("1500.00")]
    enrollment.refresh_from_db()
    assert enrollment.status == EnrollmentStatus.AWARDED
    # later spend and every later run of the job issue nothing more
    spend_record(event=spend_event(camp, "3000.00", occurred_at=timezone.now()))
    for days in (0, 31, 400):
        counts = close_ladder_windows(at=timezone.now() + timedelta(days=days))
        assert counts == {"awarded": 0, "closed": 0, "withheld": 0}
    assert ladder.count() == 1
    assert Notification.objects.filter(advertiser=adv, kind="credit_issued").count() == 1


def run_together(*works, timeout=90):
    """Run each callable in its own thread (own connection), started at one barrier."""
    barrier = threading.Barrier(len(works))
    out: list = [None] * len(works)

    def body(i, work):
        try:
            barrier.wait(timeout=30)
            out[i] = work()
        except BaseException as e:  # noqa: BLE001 — reported to the test
            out[i] = e
        finally:
            connection.close()

    threads = [threading.Thread(target=body, args=(i, w), daemon=True) for i, w in enumerate(works)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert [t.is_alive() for t in threads] == [False] * len(works), "a thread hung: deadlock or endless lock wait"
    errors = [r for r in out if isinstance(r, BaseException)]
    assert errors == [], errors
    return out


@pytest.mark.django_db(transaction=True)
def test_r33_two_window_jobs_at_once_pay_one_reward_per_enrollment(spend_event):
    # given six enrollments whose windows closed (and the grace passed), at tiers 100 and 500
    enrollments = []
    for i in range(6):
        adv, e = enrolled(started_days_ago=32)
        camp = CampaignFactory(advertiser=adv)
        spend_record(event=spend_event(camp, "150.00" if i % 2 else "550.00",
                                       occurred_at=e.window_start + timedelta(days=1)))
        enrollments.append(e)
    # when two window-close jobs run at once, in small chunks
    results = run_together(lambda: close_ladder_windows(chunk=2), lambda: close_ladder_windows(chunk=2))
    # then each enrollment was paid once, between them
    assert sum(r["awarded"] for r in results) == 6
    for i, e in enumerate(enrollments):
        e.refresh_from_db()
        assert e.status == EnrollmentStatus.AWARDED
        rewards = Credit.objects.filter(advertiser_id=e.advertiser_id, source=CreditSource.LADDER)
        assert [c.amount for c in rewards] == [Decimal("50.00") if i % 2 else Decimal("300.00")]
        assert Notification.objects.filter(advertiser_id=e.advertiser_id, kind="credit_issued").count() == 1


@pytest.mark.django_db(transaction=True)
def test_r18_r33_immediate_tier_racing_the_window_job_pays_one_reward(spend_event):
    # given an enrollment whose window closed two hours ago at tier 500, and a late event that
    # occurred inside the window and crosses the immediate tier
    adv, enrollment = enrolled(started_days_ago=30 + 1 / 12)
    camp = CampaignFactory(advertiser=adv)
    spend_record(event=spend_event(camp, "600.00", occurred_at=enrollment.window_start + timedelta(days=1)))
    late = spend_event(camp, "1600.00", occurred_at=enrollment.window_end - timedelta(minutes=1))
    # when the event is booked while the window-close job runs
    run_together(lambda: spend_record(event=late), lambda: close_ladder_windows())
    # then exactly one reward was issued: the immediate one if the spend won, else the 500 tier
    enrollment.refresh_from_db()
    assert enrollment.status == EnrollmentStatus.AWARDED
    rewards = list(Credit.objects.filter(advertiser=adv, source=CreditSource.LADDER))
    assert len(rewards) == 1
    assert enrollment.credit_id == rewards[0].pk
    expected = {Decimal("2200.00"): Decimal("1500.00"), Decimal("600.00"): Decimal("300.00")}
    assert rewards[0].amount == expected[enrollment.qualifying_spend]
    assert Notification.objects.filter(advertiser=adv, kind="credit_issued").count() == 1
    # and running the job again changes nothing
    assert close_ladder_windows()["awarded"] == 0
    assert Enrollment.objects.get(pk=enrollment.pk).credit_id == rewards[0].pk
