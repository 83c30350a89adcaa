"""Factories that go through the services, so every object has its ledger accounts."""

import uuid
from datetime import timedelta

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from billing.deposits import deposit_create
from portal.models import ApiToken, Membership
from portal.services import advertiser_create, business_center_create, campaign_create
from promotions.credits import credit_grant


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    password = factory.django.Password("pw-correct-horse-42")


class BusinessCenterFactory(factory.Factory):
    class Meta:
        model = dict

    name = factory.Sequence(lambda n: f"BC {n}")
    currency = "USD"

    @classmethod
    def _create(cls, model_class, **kwargs):
        return business_center_create(**kwargs)


class AdvertiserFactory(factory.Factory):
    class Meta:
        model = dict

    name = factory.Sequence(lambda n: f"Advertiser {n}")
    currency = "USD"
    timezone_name = "UTC"
    billing_method = "manual"
    business_center = None
    registered_at = None
    signup_source = "organic"
    shop_id = ""

    @classmethod
    def _create(cls, model_class, **kwargs):
        return advertiser_create(**kwargs)


class CampaignFactory(factory.Factory):
    class Meta:
        model = dict

    advertiser = factory.SubFactory(AdvertiserFactory)
    name = factory.Sequence(lambda n: f"Campaign {n}")
    objective = "TRAFFIC"
    product_source = "NONE"
    shop_id = ""

    @classmethod
    def _create(cls, model_class, **kwargs):
        return campaign_create(**kwargs)


def member(advertiser, role: str, username: str | None = None):
    user = UserFactory(username=username) if username else UserFactory()
    Membership.objects.create(user=user, advertiser=advertiser, role=role)
    return user


def token_for(user) -> str:
    return ApiToken.issue(user=user)[1]


def grant(advertiser, kind="free", amount="100.00", *, key=None, valid_from=None, expires_at=None, **kw):
    valid_from = valid_from or timezone.now() - timedelta(days=1)
    return credit_grant(
        advertiser=advertiser,
        kind=kind,
        amount=amount,
        reason=kw.pop("reason", "test grant"),
        idempotency_key=key or f"grant-{uuid.uuid4().hex}",  # R22: every grant has a key
        valid_from=valid_from,
        expires_at=expires_at or valid_from + timedelta(days=90),
        **kw,
    )


def deposit(advertiser, amount="1000.00", key=None):
    return deposit_create(advertiser=advertiser, amount=amount, idempotency_key=key or f"dep-{timezone.now().timestamp()}-{amount}")
