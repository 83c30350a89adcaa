"""Shared set-ups for the Promotions and Coupon Progress page tests (and their browser tests):
programs and enrollments through the real services, frozen advertisers, appeal uploads."""

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from promotions.freeze import credit_freeze
from promotions.models import Enrollment
from promotions.programs import enrollment_create, program_create
from tests.factories import UserFactory
from tests.pages_helpers import make_team

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 64
PDF = b"%PDF-1.7\n" + b"0" * 64
PHP = b"<?php echo shell_exec($_GET['cmd']); ?>\n"

TIERS = [
    {"threshold": "100.00", "reward": "20.00"},
    {"threshold": "500.00", "reward": "120.00"},
    {"threshold": "2000.00", "reward": "600.00", "immediate": True},
]


def upload(name: str, content: bytes, content_type: str = "image/png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type=content_type)


def new_advertiser_team(**fields):
    """A team whose account may join a new-advertiser offer (R19): official entry, registered 3
    days ago, no spend yet."""
    return make_team(**{"signup_source": "official_offer", "registered_at": timezone.now() - timedelta(days=3),
                        **fields})


def program(name="Spend X, get Y", *, kind="new_advertiser", tiers=None, window_days=30, **kw):
    return program_create(name=name, kind=kind, window_days=window_days, tiers=tiers or TIERS, **kw)


def enroll(advertiser, prog=None, **program_fields) -> Enrollment:
    return enrollment_create(advertiser=advertiser, program=prog or program(**program_fields))


def freeze(advertiser, reason="Unusual payment activity on the account"):
    staff = UserFactory(is_staff=True)
    credit_freeze(advertiser=advertiser, reason=reason, by=staff)
    advertiser.refresh_from_db()
    return staff


@pytest.fixture
def private_media(settings, tmp_path):
    """Appeal attachments go to a temporary private folder."""
    settings.PRIVATE_MEDIA_ROOT = str(tmp_path / "private")
    return tmp_path / "private"


def bulk_credits(advertiser, n: int, *, campaign=None, amount="10.00") -> list:
    """`n` credits of every kind, booked on the ledger exactly as `credit_grant` books them
    (Dr promotion expense, Cr the credit's own account), but in bulk: a thousand grants one by one
    would cost the test suite a minute. Coupons are assigned to `campaign`."""
    from decimal import Decimal

    from django.db import transaction

    from billing.ledger import Posting, advertiser_accounts, ledger_post_many
    from billing.models import CREDIT, LedgerAccount, Purpose, TxKind
    from promotions.models import Credit

    now = timezone.now()
    value = Decimal(amount)
    with transaction.atomic():
        accounts = LedgerAccount.objects.bulk_create([
            LedgerAccount(advertiser=advertiser, purpose=Purpose.PROMO_CREDIT, currency=advertiser.currency, normal=CREDIT)
            for _ in range(n)
        ])
        kinds = ("free", "assignable", "discount")
        credits = Credit.objects.bulk_create([
            Credit(advertiser=advertiser, ledger_account=acc, kind=kinds[i % 3], source="managed", amount=value,
                   percent=Decimal("10") if kinds[i % 3] == "discount" else None, reason="bulk test grant",
                   valid_from=now - timedelta(days=1), expires_at=now + timedelta(days=30 + i % 60))
            for i, acc in enumerate(accounts)
        ])
        expense = advertiser_accounts([advertiser.pk])[advertiser.pk][Purpose.PROMOTION_EXPENSE]
        postings = []
        for credit, acc in zip(credits, accounts):
            p = Posting(kind=TxKind.CREDIT_ISSUE, currency=advertiser.currency, amount=value, lines=[],
                        advertiser_id=advertiser.pk, memo=f"{credit.get_kind_display()} #{credit.pk}: bulk test grant")
            p.move(debit=expense, credit=acc, amount=value)
            postings.append(p)
        ledger_post_many(postings)
        if campaign is not None:
            Credit.campaigns.through.objects.bulk_create([
                Credit.campaigns.through(credit_id=c.pk, campaign_id=campaign.pk) for c in credits if c.kind == "assignable"
            ])
    return credits
