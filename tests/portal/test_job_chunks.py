"""Jobs split into chunk tasks that several workers share (issue 11; decision 0037).

Beat's run of a chunked job (`portal.jobs.CHUNKED`: threshold billing, credit expiry, monthly
statements) queues one `run_job_chunk` task per chunk; any worker runs any chunk. Each chunk locks
its rows and re-reads them, so chunks run in any order, twice (a re-delivered task), or beside a
run by hand do exactly what one run of the job does.
"""

import functools
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from billing.autopay import charge_thresholds
from billing.models import Bill, BillStatus, GatewayCharge
from billing.spend import spend_record
from portal import tasks
from portal.jobs import CHUNKED, JOBS, job_chunk_run, job_chunks
from promotions import expiry
from promotions.expiry import expire_credits
from promotions.models import Credit, CreditStatus
from tests.billing.test_autopay import auto_account
from tests.factories import AdvertiserFactory, grant
from tests.reference_model import ledger_problems


def test_every_chunked_job_is_a_job_and_beat_splits_it():
    from django.conf import settings

    assert set(CHUNKED) <= set(JOBS)
    split = {e["args"][0] for e in settings.CELERY_BEAT_SCHEDULE.values()
             if e["task"] == "portal.tasks.run_job" and e.get("kwargs", {}).get("split")}
    assert split == set(CHUNKED)


def due_credits(n: int):
    now = timezone.now()
    for _ in range(n):
        adv = AdvertiserFactory()
        grant(adv, "free", "7.00", valid_from=now - timedelta(days=10), expires_at=now - timedelta(hours=2))
    return now


@pytest.mark.django_db
def test_beat_queues_a_chunk_task_per_chunk_and_the_chunks_do_what_the_job_does(monkeypatch, settings):
    settings.CREDIT_EXPIRY_GRACE_SECONDS = 60
    due_credits(5)
    monkeypatch.setattr(expiry, "expire_credits_chunks", functools.partial(expiry.expire_credits_chunks, chunk=2))
    queued = []
    monkeypatch.setattr(tasks.run_job_chunk, "delay", lambda *a: queued.append(a))
    # when beat runs the job
    tasks.run_job("expire_credits", split=True)
    # then it queued three chunks of at most two advertisers, covering each one once, and did nothing itself
    assert [len(ids) for _, ids, _ in queued] == [2, 2, 1]
    assert len({i for _, ids, _ in queued for i in ids}) == 5
    assert Credit.objects.filter(status=CreditStatus.EXPIRED).count() == 0
    # when workers run the chunks, in any order and one of them twice (re-delivered)
    for name, ids, at in [queued[2], queued[0], queued[1], queued[0]]:
        tasks.run_job_chunk(name, ids, at)
    # then every due credit expired once, as one run of the job does
    assert Credit.objects.filter(status=CreditStatus.EXPIRED).count() == 5
    assert expire_credits() == {"expired": 0, "forfeited_entries": 0}
    assert ledger_problems() == []


@pytest.mark.django_db
def test_a_chunked_threshold_run_bills_and_charges_each_account_once(spend_event, monkeypatch):
    accounts = [auto_account(threshold="20.00") for _ in range(4)]
    for adv, camp in accounts:
        spend_record(event=spend_event(camp, "25.00"))
    monkeypatch.setattr(tasks.run_job_chunk, "delay", lambda *a: tasks.run_job_chunk(*a))  # a worker at once
    tasks.run_job("charge_thresholds", split=True)
    assert Bill.objects.filter(status=BillStatus.PAID).count() == 4
    assert GatewayCharge.objects.count() == 4
    assert charge_thresholds() == {"bills": 0, "paid": 0, "failed": 0}


@pytest.mark.django_db
def test_without_chunk_tasks_beat_runs_the_job_in_its_own_task(settings, monkeypatch):
    settings.JOB_CHUNK_TASKS = False
    settings.CREDIT_EXPIRY_GRACE_SECONDS = 60
    due_credits(3)
    monkeypatch.setattr(tasks.run_job_chunk, "delay", lambda *a: pytest.fail("no chunk task expected"))
    tasks.run_job("expire_credits", split=True)
    assert Credit.objects.filter(status=CreditStatus.EXPIRED).count() == 3


@pytest.mark.django_db(transaction=True)
def test_two_workers_running_the_same_chunks_at_once_charge_each_bill_once(spend_event):
    # every chunk taken by both workers at once (the worst case of re-delivery and overlap)
    accounts = [auto_account(threshold="20.00") for _ in range(6)]
    for adv, camp in accounts:
        spend_record(event=spend_event(camp, "45.00"))  # two threshold bills each
    at = timezone.now()
    chunks = job_chunks(name="charge_thresholds", at=at)
    errors, barrier = [], threading.Barrier(2)

    def worker(order):
        try:
            barrier.wait(10)
            for ids in order:
                job_chunk_run(name="charge_thresholds", ids=ids, at=at)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(o,)) for o in (chunks, list(reversed(chunks)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert Bill.objects.count() == 12 and Bill.objects.filter(status=BillStatus.PAID).count() == 12
    assert GatewayCharge.objects.count() == 12  # one charge a bill
    assert sum(Bill.objects.values_list("amount", flat=True)) == Decimal("240.00")
    assert ledger_problems() == []
