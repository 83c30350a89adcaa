"""Risk freeze and appeals (SPEC R12, R30, R31) and the audit log."""

import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from billing.models import LedgerTransaction, TxKind
from billing.selectors import advertiser_balances
from billing.spend import spend_record
from portal.errors import BusinessError
from portal.models import AuditLog, Notification
from promotions.appeals import appeal_decide, appeal_file, attachments_dir
from promotions.credits import credit_grant
from promotions.freeze import credit_freeze, credit_unfreeze
from promotions.models import AppealStatus, CreditStatus, EnrollmentStatus
from promotions.programs import close_ladder_windows, enrollment_create, program_create
from tests.factories import AdvertiserFactory, CampaignFactory, UserFactory, deposit, grant, member

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.7\n" + b"0" * 64


def upload(name, content, content_type="image/png"):
    return SimpleUploadedFile(name, content, content_type=content_type)


@pytest.fixture
def frozen(db):
    adv = AdvertiserFactory()
    camp = CampaignFactory(advertiser=adv)
    deposit(adv, "100.00")
    credit = grant(adv, "free", "50.00")
    staff = UserFactory(is_staff=True)
    credit_freeze(advertiser=adv, reason="unusual activity", by=staff)
    adv.refresh_from_db()
    return adv, camp, credit, staff


@pytest.mark.django_db
def test_r30_frozen_credit_is_not_used_and_not_issued(frozen, spend_event):
    adv, camp, credit, staff = frozen
    credit.refresh_from_db()
    assert credit.status == CreditStatus.FROZEN
    r = spend_record(event=spend_event(camp, "30.00"))
    assert r.allocation.credits == [] and r.allocation.cash == Decimal("30.00")
    b = advertiser_balances(advertiser=adv)
    assert (b.credit_balance, b.frozen_credit_balance) == (0, Decimal("50.00"))
    with pytest.raises(BusinessError) as exc:
        grant(adv, "free", "10.00")
    assert exc.value.code == "credit_frozen"
    assert AuditLog.objects.get(action="credit_freeze").actor == staff


@pytest.mark.django_db
def test_r30_expiry_keeps_running_while_frozen(frozen):
    from promotions.expiry import expire_credits

    adv, camp, credit, staff = frozen
    expire_credits(at=credit.expires_at + timedelta(hours=2))
    credit.refresh_from_db()
    assert credit.status == CreditStatus.EXPIRED


@pytest.mark.django_db
def test_r31_appeal_approved_unfreezes_and_issues_withheld_reward(spend_event):
    adv = AdvertiserFactory(signup_source="official_offer", registered_at=timezone.now() - timedelta(days=2))
    camp = CampaignFactory(advertiser=adv)
    deposit(adv, "1000.00")
    program = program_create(name="Spend 100 get 50", kind="new_advertiser", window_days=7,
                             tiers=[{"threshold": "100.00", "reward": "50.00"}])
    enrollment = enrollment_create(advertiser=adv, program=program)
    spend_record(event=spend_event(camp, "150.00", occurred_at=timezone.now()))
    staff = UserFactory(is_staff=True)
    credit_freeze(advertiser=adv, reason="risk review", by=staff)
    close_ladder_windows(at=enrollment.window_end + timedelta(hours=2))
    enrollment.refresh_from_db()
    assert enrollment.status == EnrollmentStatus.WITHHELD and enrollment.credit is None
    admin = member(adv, "admin")
    appeal = appeal_file(advertiser=adv, user=admin, message="We are a real business.", files=[upload("id.png", PNG)])
    assert appeal.attachments.get().content_type == "image/png"
    assert (attachments_dir() / appeal.attachments.get().stored_name).read_bytes() == PNG
    appeal_decide(appeal=appeal, decision="approve", note="Verified documents.", by=staff)
    adv.refresh_from_db()
    enrollment.refresh_from_db()
    assert not adv.credit_frozen
    assert enrollment.status == EnrollmentStatus.AWARDED and enrollment.credit.amount == Decimal("50.00")
    r = spend_record(event=spend_event(camp, "20.00", occurred_at=timezone.now() + timedelta(seconds=1)))
    assert r.allocation.credits == [(enrollment.credit.pk, Decimal("20.00"))]
    kinds = set(Notification.objects.filter(advertiser=adv).values_list("kind", flat=True))
    assert {"credit_frozen", "appeal_received", "appeal_decided", "credit_issued"} <= kinds
    assert list(AuditLog.objects.filter(advertiser=adv).order_by("pk").values_list("action", flat=True)) == [
        "credit_freeze", "appeal_file", "appeal_approve", "credit_unfreeze"]


@pytest.mark.django_db
def test_r31_reject_and_withdraw_books_withdrawal(frozen):
    adv, camp, credit, staff = frozen
    appeal = appeal_file(advertiser=adv, user=member(adv, "finance"), message="please")
    appeal_decide(appeal=appeal, decision="reject", note="Policy violation.", by=staff, withdraw_credits=True)
    credit.refresh_from_db()
    assert credit.status == CreditStatus.WITHDRAWN and credit.remaining == 0
    tx = LedgerTransaction.objects.get(kind=TxKind.CREDIT_WITHDRAW, advertiser=adv)
    assert tx.amount == Decimal("50.00")
    adv.refresh_from_db()
    assert adv.credit_frozen
    assert AuditLog.objects.filter(action="credit_withdraw", advertiser=adv).count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("files, code", [
    ([upload("shell.png", b"<?php system($_GET['c']); ?>")], "attachment_type_not_allowed"),
    ([upload("logo.svg", b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "image/svg+xml")], "attachment_type_not_allowed"),
    ([upload("big.pdf", PDF + b"0" * (5 * 1024 * 1024), "application/pdf")], "attachment_too_large"),
    ([upload(f"f{i}.png", PNG) for i in range(4)], "too_many_attachments"),
])
def test_r31_attachments_are_checked_by_content(frozen, files, code):
    adv, camp, credit, staff = frozen
    with pytest.raises(BusinessError) as exc:
        appeal_file(advertiser=adv, user=member(adv, "admin"), message="see attached", files=files)
    assert exc.value.code == code
    assert not adv.appeals.exists()


@pytest.mark.django_db
def test_r31_one_open_appeal_and_rate_limit(frozen):
    adv, camp, credit, staff = frozen
    user = member(adv, "admin")
    first = appeal_file(advertiser=adv, user=user, message="one")
    with pytest.raises(BusinessError) as exc:
        appeal_file(advertiser=adv, user=user, message="two")
    assert exc.value.code == "appeal_already_open"
    appeal_decide(appeal=first, decision="reject", note="no", by=staff)
    second = appeal_file(advertiser=adv, user=user, message="two")
    appeal_decide(appeal=second, decision="reject", note="no", by=staff)
    third = appeal_file(advertiser=adv, user=user, message="three")
    appeal_decide(appeal=third, decision="reject", note="no", by=staff)
    with pytest.raises(BusinessError) as exc:
        appeal_file(advertiser=adv, user=user, message="four")
    assert exc.value.code == "appeal_rate_limited"


@pytest.mark.django_db
def test_r31_not_frozen_cannot_appeal():
    adv = AdvertiserFactory()
    with pytest.raises(BusinessError) as exc:
        appeal_file(advertiser=adv, user=member(adv, "admin"), message="hi")
    assert exc.value.code == "not_frozen"


@pytest.mark.django_db(transaction=True)
def test_audit_log_cannot_be_edited_or_deleted_in_the_database(frozen):
    entry = AuditLog.objects.get(action="credit_freeze")
    for sql in ("UPDATE portal_auditlog SET reason = 'edited' WHERE id = %s", "DELETE FROM portal_auditlog WHERE id = %s"):
        with pytest.raises(Exception) as exc:
            with transaction.atomic(), connection.cursor() as cur:
                cur.execute(sql, [entry.pk])
        assert "append-only" in str(exc.value)
    entry.refresh_from_db()
    assert entry.reason == "unusual activity"


@pytest.mark.django_db
def test_r30_unfreeze_needs_frozen_and_three_failed_payments_freeze(spend_event):
    from billing.autopay import charge_thresholds, payment_method_set, retry_payments, threshold_set

    adv = AdvertiserFactory(billing_method="automatic")
    payment_method_set(advertiser=adv, card_number="4000000000000002", expiry="12/30")
    threshold_set(advertiser=adv, amount="50.00", reason="test")
    camp = CampaignFactory(advertiser=adv)
    with pytest.raises(BusinessError) as exc:
        credit_unfreeze(advertiser=adv, reason="x")
    assert exc.value.code == "not_frozen"
    spend_record(event=spend_event(camp, "50.00"))
    charge_thresholds()
    retry_payments(at=timezone.now() + timedelta(hours=2))
    adv.refresh_from_db()
    assert not adv.credit_frozen
    retry_payments(at=timezone.now() + timedelta(days=2))
    adv.refresh_from_db()
    assert adv.credit_frozen
    assert adv.freeze_events.get().rule == "failed_payments"
    assert AuditLog.objects.get(action="credit_freeze").actor_name == "system"
