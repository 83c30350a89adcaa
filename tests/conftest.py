import itertools
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.factories import AdvertiserFactory, CampaignFactory

_events = itertools.count(1)


@pytest.fixture(autouse=True, scope="session")
def fast_password_hashing():
    """Test users need a password, not a deliberately slow hash: MD5 here, PBKDF2 in production."""
    from django.conf import settings

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def isolated_cache(settings):
    """Each test gets its own cache namespace, so what is counted in the cache (failed logins,
    portal/login.py) never leaks between tests, xdist workers or test runs sharing one Redis."""
    settings.CACHES = {
        alias: {**conf, "KEY_PREFIX": f"test-{uuid.uuid4().hex}"} for alias, conf in settings.CACHES.items()
    }


@pytest.fixture(autouse=True, scope="session")
def celery_eager():
    """Tasks run in-process: a queued email or job runs right after its transaction commits."""
    from portal.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True


@pytest.fixture
def advertiser(db):
    return AdvertiserFactory()


@pytest.fixture
def campaign(advertiser):
    return CampaignFactory(advertiser=advertiser)


@pytest.fixture
def spend_event():
    """Build a raw spend event dict, as the API receives it."""

    def make(campaign, amount="10.00", *, occurred_at=None, event_id=None, kind=None, currency=None):
        ev = {
            "event_id": event_id or f"ev-{next(_events)}",
            "advertiser_id": str(campaign.advertiser_id),
            "campaign_id": str(campaign.pk),
            "amount": amount,
            "currency": currency or campaign.advertiser.currency,
            "occurred_at": (occurred_at or timezone.now() - timedelta(minutes=1)).isoformat(),
        }
        if kind:
            ev["kind"] = kind
        return ev

    return make
