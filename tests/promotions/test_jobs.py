"""Periodic-job plumbing (SPEC R33): beat entries, the Celery task, `run_job --at`, the grace setting."""

from datetime import timedelta
from decimal import Decimal
from importlib import import_module
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from billing.models import LedgerTransaction, TxKind
from billing.spend import spend_record
from portal.jobs import JOBS
from portal.models import Notification
from portal.tasks import run_job
from promotions.expiry import expire_credits
from promotions.models import CreditStatus, EnrollmentStatus
from promotions.programs import close_ladder_windows, enrollment_create, program_create
from tests.factories import AdvertiserFactory, CampaignFactory, deposit, grant


def beat_entries_by_job() -> dict:
    out = {}
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        if entry["task"] == "portal.tasks.run_job":
            out[entry["args"][0]] = entry
    return out


def test_r33_every_job_has_a_beat_entry_that_expires_before_its_next_run():
    from portal.celery import app

    entries = beat_entries_by_job()
    assert set(JOBS) <= set(entries), f"jobs without a beat entry: {sorted(set(JOBS) - set(entries))}"
    for name in JOBS:
        entry = entries[name]
        assert entry["task"] in app.tasks
        expires = entry["options"]["expires"]
        assert 0 < expires < entry["schedule"], name


@pytest.mark.parametrize("name", sorted(JOBS))
def test_r33_the_celery_task_calls_the_plain_job_function(name, monkeypatch):
    module, func = JOBS[name].rsplit(".", 1)
    calls = []
    monkeypatch.setattr(import_module(module), func, lambda **kw: calls.append(kw) or {"done": 1})
    run_job.apply(args=[name]).get(disable_sync_subtasks=False)  # eager, as a worker would run it
    assert calls == [{"at": None}]  # the job acts as of the moment it runs


@pytest.fixture
def due_credit(db):
    adv = AdvertiserFactory()
    expires = timezone.now() - timedelta(minutes=30)
    return grant(adv, "free", "12.00", valid_from=expires - timedelta(days=3), expires_at=expires)


@pytest.mark.django_db
def test_r33_expire_credits_task_forfeits_through_the_real_job(due_credit):
    with override_settings(CREDIT_EXPIRY_GRACE_SECONDS=60):
        run_job.apply(args=["expire_credits"]).get(disable_sync_subtasks=False)
    due_credit.refresh_from_db()
    assert due_credit.status == CreditStatus.EXPIRED
    assert LedgerTransaction.objects.get(kind=TxKind.CREDIT_EXPIRE).amount == Decimal("12.00")


@pytest.mark.django_db
def test_r9_grace_setting_moves_the_forfeiture_instant(due_credit):
    # expired 30 minutes ago: inside the default hour of grace, nothing is forfeited
    assert expire_credits(at=timezone.now())["expired"] == 0
    with override_settings(CREDIT_EXPIRY_GRACE_SECONDS=2 * 3600):
        assert expire_credits(at=due_credit.expires_at + timedelta(minutes=90))["expired"] == 0
    # with ten minutes of grace it is due now
    with override_settings(CREDIT_EXPIRY_GRACE_SECONDS=600):
        assert expire_credits(at=due_credit.expires_at + timedelta(seconds=599))["expired"] == 0
        assert expire_credits(at=due_credit.expires_at + timedelta(seconds=600))["expired"] == 1
    due_credit.refresh_from_db()
    assert due_credit.status == CreditStatus.EXPIRED


def enrolled_with_spend(spend_event, amount="150.00"):
    adv = AdvertiserFactory(signup_source="official_offer", registered_at=timezone.now() - timedelta(days=2))
    camp = CampaignFactory(advertiser=adv)
    deposit(adv, "1000.00")
    program = program_create(name="Spend X Get Y", kind="new_advertiser", window_days=30, reward_kind="free",
                             tiers=[{"threshold": "100.00", "reward": "50.00"}])
    enrollment = enrollment_create(advertiser=adv, program=program)
    spend_record(event=spend_event(camp, amount, occurred_at=timezone.now()))
    return enrollment


@pytest.mark.django_db
def test_r18_grace_setting_moves_when_the_window_job_pays(spend_event):
    enrollment = enrolled_with_spend(spend_event)
    just_after = enrollment.window_end + timedelta(minutes=5)
    assert close_ladder_windows(at=just_after)["awarded"] == 0  # default grace: an hour
    with override_settings(CREDIT_EXPIRY_GRACE_SECONDS=60):
        assert close_ladder_windows(at=just_after)["awarded"] == 1


@pytest.mark.django_db
def test_r33_run_job_close_ladder_windows_acts_as_of_at(spend_event):
    enrollment = enrolled_with_spend(spend_event)
    out = StringIO()
    call_command("run_job", "close_ladder_windows", "--at", timezone.now().isoformat(), stdout=out)
    assert out.getvalue().strip() == "close_ladder_windows: awarded=0, closed=0, withheld=0"
    at = enrollment.window_end + timedelta(hours=2)
    out = StringIO()
    call_command("run_job", "close_ladder_windows", "--at", at.isoformat(), stdout=out)
    assert out.getvalue().strip() == "close_ladder_windows: awarded=1, closed=0, withheld=0"
    enrollment.refresh_from_db()
    assert enrollment.status == EnrollmentStatus.AWARDED
    assert enrollment.credit.amount == Decimal("50.00")
    assert enrollment.credit.valid_from >= enrollment.window_end  # never pays spend of the window


@pytest.mark.django_db
def test_r33_run_job_remind_expiring_acts_as_of_at():
    adv = AdvertiserFactory()
    credit = grant(adv, "free", "30.00", expires_at=timezone.now() + timedelta(days=30))
    out = StringIO()
    call_command("run_job", "remind_expiring", "--at", timezone.now().isoformat(), stdout=out)
    assert out.getvalue().strip() == "remind_expiring: reminded=0"
    out = StringIO()
    call_command("run_job", "remind_expiring", "--at", (credit.expires_at - timedelta(days=6)).isoformat(), stdout=out)
    assert out.getvalue().strip() == "remind_expiring: reminded=1"
    assert Notification.objects.filter(kind="credit_expiring", key=f"credit-expiring:{credit.pk}").count() == 1


@pytest.mark.django_db
def test_r33_run_job_refuses_an_at_without_offset():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="UTC offset"):
        call_command("run_job", "remind_expiring", "--at", "2026-12-01T00:00:00")


@pytest.mark.django_db
def test_only_one_beat_can_hold_the_beat_lock():
    # issue 11: nothing stopped a second beat from scheduling every job twice
    from portal.jobs import beat_lock_release, beat_lock_take

    first = beat_lock_take()
    assert first is not None
    try:
        assert beat_lock_take() is None  # a second beat process would exit at start
    finally:
        beat_lock_release(first)
    again = beat_lock_take()
    assert again is not None
    beat_lock_release(again)


def test_celery_runs_jobs_for_faults():
    # issue 11: late acknowledgement, re-delivery on worker loss, one message at a time, time
    # limits inside the visibility timeout
    from django.conf import settings

    from portal.celery import app

    conf = app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_soft_time_limit < conf.task_time_limit
    if not settings.CELERY_BROKER_URL.startswith("filesystem://"):
        assert conf.task_time_limit < conf.broker_transport_options["visibility_timeout"]
