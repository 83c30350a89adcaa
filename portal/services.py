"""Writes for Business Centers, advertisers, members and campaigns (SPEC R1–R3)."""

import zoneinfo

from django.contrib.auth import get_user_model
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.autopay import autopay_setup
from billing.ledger import accounts_open_for_advertiser, accounts_open_for_bc
from billing.money import check_currency
from portal import inputs
from portal.errors import BadInput, Conflict
from portal.models import (
    Advertiser,
    BCMembership,
    BCRole,
    BillingMethod,
    BusinessCenter,
    Campaign,
    Membership,
    Objective,
    ProductSource,
    Role,
    SignupSource,
)


def _text(value, field: str, max_length: int = 200) -> str:
    return inputs.text(value, field=field, max_length=max_length)


def _shop_id(value) -> str:
    return inputs.text(value, field="shop_id", max_length=inputs.max_length(Advertiser, "shop_id"), required=False)


def business_center_create(*, name: str, currency: str = "USD") -> BusinessCenter:
    check_currency(currency)
    with transaction.atomic():
        bc = BusinessCenter.objects.create(name=_text(name, "name"), currency=currency)
        accounts_open_for_bc(bc, currency)
    return bc


def advertiser_create(
    *,
    name: str,
    currency: str,
    timezone_name: str = "UTC",
    billing_method: str = BillingMethod.MANUAL,
    business_center: BusinessCenter | None = None,
    registered_at=None,
    signup_source: str = SignupSource.ORGANIC,
    shop_id: str = "",
) -> Advertiser:
    """Create an advertiser and open its ledger accounts (R2). Currency and time zone are fixed."""
    check_currency(currency)
    shop_id = _shop_id(shop_id)
    if registered_at is not None:
        inputs.in_range(registered_at, field="registered_at")
    try:
        if not isinstance(timezone_name, str) or not inputs.storable(timezone_name):
            raise ValueError(timezone_name)
        zoneinfo.ZoneInfo(timezone_name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise BadInput(
            "invalid_timezone", f"Unknown time zone {timezone_name!r}: use an IANA name such as America/New_York."
        ) from None
    if billing_method not in BillingMethod.values:
        raise BadInput("invalid_billing_method", f"billing_method must be one of {', '.join(BillingMethod.values)}.")
    if signup_source not in SignupSource.values:
        raise BadInput("invalid_signup_source", f"signup_source must be one of {', '.join(SignupSource.values)}.")
    with transaction.atomic():
        adv = Advertiser.objects.create(
            name=_text(name, "name"),
            currency=currency,
            timezone=timezone_name,
            billing_method=billing_method,
            business_center=business_center,
            registered_at=registered_at or timezone.now(),
            signup_source=signup_source,
            shop_id=shop_id or "",
            # Only staff create advertisers; creating one on invoicing is marking it eligible (R28).
            invoicing_eligible=billing_method == BillingMethod.MONTHLY_INVOICE,
        )
        accounts_open_for_advertiser(adv)
        if billing_method == BillingMethod.AUTOMATIC:
            autopay_setup(advertiser=adv)
    return adv


def member_add(*, advertiser: Advertiser, username: str, role: str, create: bool = True) -> Membership:
    """Make a user a member of an advertiser with one role (R1); changes the role if already one."""
    if role not in Role.values:
        raise BadInput("invalid_role", f"role must be one of {', '.join(Role.values)}.")
    user = _user(username, create=create)
    membership, _ = Membership.objects.update_or_create(user=user, advertiser=advertiser, defaults={"role": role})
    return membership


def bc_member_add(*, business_center: BusinessCenter, username: str, role: str, create: bool = True) -> BCMembership:
    if role not in BCRole.values:
        raise BadInput("invalid_role", f"role must be one of {', '.join(BCRole.values)}.")
    user = _user(username, create=create)
    membership, _ = BCMembership.objects.update_or_create(
        user=user, business_center=business_center, defaults={"role": role}
    )
    return membership


def _user(username, *, create: bool):
    User = get_user_model()
    # The name a user would log in with: Unicode-normalised (as create_user does) and valid.
    username = User.normalize_username(_text(username, "username", 150))
    try:
        UnicodeUsernameValidator()(username)
    except ValidationError:
        raise BadInput(
            "invalid_username", "username may contain only letters, digits and @ . + - _ characters."
        ) from None
    user = User.objects.filter(username=username).first()
    if user is None:
        if not create:
            raise BadInput("unknown_user", f"There is no user {username!r}.")
        try:
            with transaction.atomic():
                user = User.objects.create_user(username=username)
        except IntegrityError:
            raise Conflict("user_exists", f"User {username!r} was created concurrently; retry.") from None
    return user


def campaign_create(*, advertiser: Advertiser, name: str, objective: str, product_source: str = ProductSource.NONE,
                    shop_id: str = "") -> Campaign:
    """A campaign (R3). A TikTok Shop campaign sells the advertiser's linked shop unless told otherwise."""
    if objective not in Objective.values:
        raise BadInput("invalid_objective", f"objective must be one of {', '.join(Objective.values)}.")
    if product_source not in ProductSource.values:
        raise BadInput("invalid_product_source", f"product_source must be one of {', '.join(ProductSource.values)}.")
    shop_id = _shop_id(shop_id)
    if product_source == ProductSource.TIKTOK_SHOP and not shop_id:
        shop_id = advertiser.shop_id
    return Campaign.objects.create(
        advertiser=advertiser, name=_text(name, "name"), objective=objective, product_source=product_source,
        shop_id=shop_id or "",
    )
