"""Expiry and reminders (SPEC R9, R33, R36)."""

import re
import threading
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core import mail
from django.core.management import call_command
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from billing.models import LedgerEntry, LedgerTransaction, TxKind
from billing.spend import spend_record
from portal.models import Notification
from promotions.expiry import expire_credits, remind_expiring
from promotions.models import CreditStatus
from tests.factories import AdvertiserFactory, CampaignFactory, deposit, grant, member

GRACE = timedelta(hours=1)


def ledger_imbalance() -> Decimal:
    debits = LedgerEntry.objects.filter(side="D").aggregate(s=Sum("amount"))["s"] or 0
    credits = LedgerEntry.objects.filter(side="C").aggregate(s=Sum("amount"))["s"] or 0
    return debits - credits


def with_email(user, email):
    user.email = email
    user.save(update_fields=["email"])
    return user


@pytest.fixture
def expiring(db):
    adv = AdvertiserFactory()
    with_email(member(adv, "admin"), "owner@example.com")
    camp = CampaignFactory(advertiser=adv)
    expires = timezone.now() - timedelta(minutes=30)
    credit = grant(adv, "free", "80.00", valid_from=expires - timedelta(days=30), expires_at=expires)
    return adv, camp, credit


@pytest.mark.django_db
def test_r9_forfeits_after_grace_once_with_one_email(expiring, django_capture_on_commit_callbacks):
    adv, camp, credit = expiring
    mail.outbox.clear()
    # inside the grace period nothing is forfeited yet
    assert expire_credits(at=timezone.now())["expired"] == 0
    # after it, what is left is forfeited on the ledger, once, with one email
    with django_capture_on_commit_callbacks(execute=True):
        counts = expire_credits(at=credit.expires_at + GRACE + timedelta(seconds=1))
    credit.refresh_from_db()
    assert counts == {"expired": 1, "forfeited_entries": 1}
    assert credit.status == CreditStatus.EXPIRED
    assert credit.remaining == Decimal("0")
    tx = LedgerTransaction.objects.get(kind=TxKind.CREDIT_EXPIRE, advertiser=adv)
    assert tx.amount == Decimal("80.00")
    assert expire_credits(at=credit.expires_at + GRACE * 5)["expired"] == 0
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["owner@example.com"]
    assert "USD 80.00 of ad credit expired" == mail.outbox[0].subject
    assert f"#{credit.pk}" in mail.outbox[0].body
    assert mail.outbox[0].alternatives[0].mimetype == "text/html"
    assert ledger_imbalance() == 0


@pytest.mark.django_db
def test_r9_late_spend_inside_grace_still_uses_the_credit(expiring, spend_event):
    adv, camp, credit = expiring
    deposit(adv, "100.00")
    # spend that occurred before expiry but arrives after it
    result = spend_record(event=spend_event(camp, "30.00", occurred_at=credit.expires_at - timedelta(minutes=5)))
    assert result.allocation.credits == [(credit.pk, Decimal("30.00"))]
    # spend that occurred after expiry does not use it
    after = spend_record(event=spend_event(camp, "10.00", occurred_at=credit.expires_at + timedelta(minutes=1)))
    assert after.allocation.credits == [] and after.allocation.cash == Decimal("10.00")
    expire_credits(at=credit.expires_at + GRACE * 2)
    tx = LedgerTransaction.objects.get(kind=TxKind.CREDIT_EXPIRE, advertiser=adv)
    assert tx.amount == Decimal("50.00")


@pytest.mark.django_db(transaction=True)
def test_r33_two_sweeps_at_once_beside_live_spend_forfeit_exactly_once(spend_event):
    advertisers = []
    expires = timezone.now() - timedelta(minutes=90)
    for i in range(6):
        adv = AdvertiserFactory()
        with_email(member(adv, "admin"), f"owner{i}@example.com")
        camp = CampaignFactory(advertiser=adv)
        deposit(adv, "500.00")
        for _ in range(3):
            grant(adv, "free", "10.00", valid_from=expires - timedelta(days=10), expires_at=expires)
        grant(adv, "free", "1000.00")  # a live credit that spend keeps using
        advertisers.append((adv, camp))
    mail.outbox.clear()
    errors, barrier = [], threading.Barrier(4)

    def sweep():
        try:
            barrier.wait()
            # chunks of 2 advertisers: 3 chunks a sweep, each advertiser's 3 credits in one
            expire_credits(at=timezone.now(), chunk=2)
        except Exception as e:  # noqa: BLE001 — reported below
            errors.append(e)
        finally:
            connection.close()

    def spend():
        try:
            barrier.wait()
            for i in range(10):
                for adv, camp in advertisers:
                    spend_record(event=spend_event(camp, "1.00", occurred_at=expires - timedelta(minutes=5)))
        except Exception as e:  # noqa: BLE001
            errors.append(e)
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep), threading.Thread(target=sweep), threading.Thread(target=spend),
               threading.Thread(target=spend)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert all(not t.is_alive() for t in threads)
    # each expired credit was forfeited at most once, and what it had left equals spend + forfeiture
    expired_txs = LedgerTransaction.objects.filter(kind=TxKind.CREDIT_EXPIRE)
    assert expired_txs.count() == len({tx.memo for tx in expired_txs})
    for adv, _ in advertisers:
        for credit in adv.credits.filter(amount=Decimal("10.00")):
            assert credit.status in (CreditStatus.EXPIRED, CreditStatus.USED_UP)
            assert credit.remaining == 0
            # spent + forfeited is exactly what it held: nothing paid or forfeited twice
            drawn = LedgerEntry.objects.filter(account=credit.ledger_account, side="D").aggregate(s=Sum("amount"))["s"]
            assert drawn == Decimal("10.00")
    # two sweeps' spend draws at most 20 of each advertiser's 30: every one forfeits something,
    # and gets exactly one email, listing each credit it forfeited
    notes = Notification.objects.filter(kind="credit_expired")
    assert sorted(notes.values_list("advertiser_id", flat=True)) == sorted(a.pk for a, _ in advertisers)
    assert sorted(m.to[0] for m in mail.outbox) == sorted(f"owner{i}@example.com" for i in range(6))
    for i, (adv, _) in enumerate(advertisers):
        [body] = [m.body for m in mail.outbox if m.to == [f"owner{i}@example.com"]]
        for credit in adv.credits.filter(status=CreditStatus.EXPIRED):
            assert f"#{credit.pk}," in body
    assert ledger_imbalance() == 0


@pytest.mark.django_db
def test_r36_one_sweep_one_email_per_advertiser_however_chunks_fall(django_capture_on_commit_callbacks):
    # given three advertisers whose due credits were granted interleaved (ids not grouped by advertiser)
    expires = timezone.now() - timedelta(hours=2)
    advertisers = [AdvertiserFactory() for _ in range(3)]
    for i, adv in enumerate(advertisers):
        with_email(member(adv, "admin"), f"owner{i}@example.com")
    credits = {adv.pk: [] for adv in advertisers}
    for _ in range(4):
        for adv in advertisers:
            credits[adv.pk].append(grant(adv, "free", "5.00", valid_from=expires - timedelta(days=1), expires_at=expires))
    mail.outbox.clear()
    # when one sweep runs in chunks smaller than the number of advertisers or of credits
    with django_capture_on_commit_callbacks(execute=True):
        counts = expire_credits(at=timezone.now(), chunk=2)
    # then every credit is forfeited, and each advertiser gets one email naming all four of its credits
    assert counts == {"expired": 12, "forfeited_entries": 12}
    assert len(mail.outbox) == 3
    for i, adv in enumerate(advertisers):
        [message] = [m for m in mail.outbox if m.to == [f"owner{i}@example.com"]]
        assert message.subject == "USD 20.00 of ad credit expired"
        for credit in credits[adv.pk]:
            assert f"#{credit.pk}," in message.body
    assert Notification.objects.filter(kind="credit_expired").count() == 3
    # and a second sweep sends nothing more
    with django_capture_on_commit_callbacks(execute=True):
        assert expire_credits(at=timezone.now(), chunk=2)["expired"] == 0
    assert len(mail.outbox) == 3


@pytest.mark.django_db
def test_r36_remind_expiring_once_per_credit(django_capture_on_commit_callbacks):
    adv = AdvertiserFactory()
    with_email(member(adv, "finance"), "fin@example.com")
    soon = grant(adv, "free", "25.00", expires_at=timezone.now() + timedelta(days=5))
    grant(adv, "free", "25.00", expires_at=timezone.now() + timedelta(days=20))
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert remind_expiring(at=timezone.now()) == {"reminded": 1}
    with django_capture_on_commit_callbacks(execute=True):
        assert remind_expiring(at=timezone.now() + timedelta(hours=1)) == {"reminded": 0}
    assert len(mail.outbox) == 1
    assert f"#{soon.pk}" in mail.outbox[0].body
    assert "USD 25.00 of ad credit expires on" in mail.outbox[0].subject


@pytest.mark.django_db
def test_r33_run_job_acts_as_of_at(expiring):
    adv, camp, credit = expiring
    out = StringIO()
    call_command("run_job", "expire_credits", "--at", (credit.expires_at + GRACE * 2).isoformat(), stdout=out)
    assert "expire_credits: expired=1" in out.getvalue()
    credit.refresh_from_db()
    assert credit.status == CreditStatus.EXPIRED


@pytest.mark.django_db
def test_r33_sweep_chunk_costs_the_same_statements_however_many_credits():
    from django.db import connection as conn
    from django.test.utils import CaptureQueriesContext

    def statements(per_advertiser: int) -> int:
        expires = timezone.now() - timedelta(hours=2)
        for _ in range(2):
            adv = AdvertiserFactory()
            for _ in range(per_advertiser):
                grant(adv, "free", "5.00", valid_from=expires - timedelta(days=1), expires_at=expires)
        with CaptureQueriesContext(conn) as queries:
            assert expire_credits(at=timezone.now())["expired"] == 2 * per_advertiser
        return len(queries)

    assert statements(2) == statements(9)


@pytest.mark.django_db(transaction=True)
def test_r33_r36_two_reminder_runs_at_once_send_one_reminder_per_credit():
    # given five advertisers, each with two credits expiring within the week and one later
    soon = []
    for i in range(5):
        adv = AdvertiserFactory()
        with_email(member(adv, "finance"), f"fin{i}@example.com")
        soon += [grant(adv, "free", "7.00", expires_at=timezone.now() + timedelta(days=d)) for d in (2, 6)]
        grant(adv, "free", "7.00", expires_at=timezone.now() + timedelta(days=30))
    mail.outbox.clear()
    errors, barrier = [], threading.Barrier(2)

    def remind():
        try:
            barrier.wait(timeout=30)
            remind_expiring(at=timezone.now(), chunk=3)
        except Exception as e:  # noqa: BLE001 — reported below
            errors.append(e)
        finally:
            connection.close()

    threads = [threading.Thread(target=remind, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    assert not errors, errors
    assert all(not t.is_alive() for t in threads)
    # then each credit due a reminder has exactly one, emailed once
    keys = sorted(Notification.objects.filter(kind="credit_expiring").values_list("key", flat=True))
    assert keys == sorted(f"credit-expiring:{c.pk}" for c in soon)
    assert len(mail.outbox) == len(soon)
    assert sorted(int(re.search(r"\(#(\d+)\)", m.body)[1]) for m in mail.outbox) == sorted(c.pk for c in soon)
    assert remind_expiring(at=timezone.now())["reminded"] == 0
