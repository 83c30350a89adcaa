"""Billing profile (SPEC R37): who documents are billed to.

An advertiser's profile is its own once set, else its Business Center's, else none (a document
then names the account only and has no place of supply for tax, `billing.tax`). The tax ID is
checked by its country's format and check digits with python-stdnum; countries are ISO 3166-1
alpha-2 codes (pycountry). Every change is audited; documents copy `profile_snapshot` at issue,
so later edits never change an issued document.
"""

import re

import pycountry
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from stdnum.exceptions import ValidationError as NumberInvalid
from stdnum.eu import vat as eu_vat
from stdnum.util import get_cc_module

from billing.models import BillingProfile
from portal import inputs
from portal.audit import audit_record
from portal.errors import BadInput

FIELDS = ["legal_name", "address_line1", "address_line2", "city", "postal_code", "country", "tax_id",
          "invoice_emails", "po_number"]
MAX_RECIPIENTS = 10
EU = frozenset("AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK".split())
# The EU's VAT prefixes that are not the ISO code
VAT_PREFIX = {"GR": "EL"}


def country_name(code: str) -> str:
    c = pycountry.countries.get(alpha_2=code) if code else None
    return c.name if c else code


def countries() -> list[tuple[str, str]]:
    """(code, name) of every ISO 3166-1 country, by name — for a select."""
    return sorted(((c.alpha_2, c.name) for c in pycountry.countries), key=lambda c: c[1])


def country_check(value) -> str:
    code = inputs.text(value, field="country", max_length=2, code="invalid_country").upper()
    if not re.fullmatch(r"[A-Z]{2}", code) or pycountry.countries.get(alpha_2=code) is None:
        raise BadInput("invalid_country", f"country {value!r} is not an ISO 3166-1 alpha-2 code such as DE or US.")
    return code


def _tax_module(country: str):
    if country in EU:
        return eu_vat
    return get_cc_module(country.lower(), "vat") or get_cc_module(country.lower(), "tin")


def tax_id_check(value, country: str) -> tuple[str, bool]:
    """The tax ID in its compact form and whether its check digits were verified.

    For a country python-stdnum knows (every EU VAT number, GB, CH, US TIN, …) a number that fails
    its format or check digits is refused (`invalid_tax_id`); an EU VAT number may be given with
    or without its country prefix. Elsewhere the number is kept as given, unverified."""
    raw = inputs.text(value, field="tax_id", max_length=32, required=False, code="invalid_tax_id")
    if not raw:
        return "", False
    module = _tax_module(country)
    if module is None:
        if not re.fullmatch(r"[A-Za-z0-9 .\-/]+", raw):
            raise BadInput("invalid_tax_id", f"tax_id {raw!r} holds characters a tax ID does not use.")
        return raw.upper(), False
    prefix = VAT_PREFIX.get(country, country)
    number = re.sub(r"[\s.\-/]", "", raw).upper() if country in EU else module.compact(raw)
    if country in EU:  # an EU VAT number is kept with its prefix, as VIES and invoices write it
        module, number = eu_vat, (number if number.upper().startswith(prefix) else prefix + number)
    try:
        number = module.validate(number)
    except NumberInvalid as e:
        raise BadInput("invalid_tax_id",
                       f"tax_id {raw!r} is not a valid {country_name(country)} tax ID ({e.message.rstrip('.')}).")
    return number, True


def emails_check(value) -> list[str]:
    if value in (None, ""):
        return []
    if isinstance(value, str):
        value = [v for v in re.split(r"[,;\s]+", value) if v]
    if not isinstance(value, list) or len(value) > MAX_RECIPIENTS:
        raise BadInput("invalid_invoice_emails", f"invoice_emails must be a list of at most {MAX_RECIPIENTS} addresses.")
    out = []
    for v in value:
        v = inputs.text(v, field="invoice_emails", max_length=254, code="invalid_invoice_emails")
        try:
            validate_email(v)
        except ValidationError:
            raise BadInput("invalid_invoice_emails", f"{v!r} is not an email address.")
        if v.lower() not in (o.lower() for o in out):
            out.append(v)
    return out


def profile_clean(data: dict) -> dict:
    """The profile's fields from what a door received, or BadInput naming the first problem."""
    country = country_check(data.get("country"))
    tax_id, _ = tax_id_check(data.get("tax_id"), country)
    return {
        "legal_name": inputs.text(data.get("legal_name"), field="legal_name", max_length=200),
        "address_line1": inputs.text(data.get("address_line1"), field="address_line1", max_length=200),
        "address_line2": inputs.text(data.get("address_line2"), field="address_line2", max_length=200, required=False),
        "city": inputs.text(data.get("city"), field="city", max_length=100),
        "postal_code": inputs.text(data.get("postal_code"), field="postal_code", max_length=20, required=False),
        "country": country,
        "tax_id": tax_id,
        "invoice_emails": emails_check(data.get("invoice_emails")),
        "po_number": inputs.text(data.get("po_number"), field="po_number", max_length=64, required=False),
    }


def profile_of(advertiser) -> tuple[BillingProfile | None, bool]:
    """The profile that applies to the advertiser and whether it is inherited from its BC."""
    own = BillingProfile.objects.filter(advertiser_id=advertiser.pk).first()
    if own is not None:
        return own, False
    if advertiser.business_center_id:
        bc = BillingProfile.objects.filter(business_center_id=advertiser.business_center_id).first()
        if bc is not None:
            return bc, True
    return None, False


def profile_fields(profile: BillingProfile | None) -> dict:
    if profile is None:
        return {f: ([] if f == "invoice_emails" else "") for f in FIELDS}
    return {f: getattr(profile, f) for f in FIELDS}


def tax_id_valid(profile: BillingProfile | None) -> bool:
    return bool(profile and profile.tax_id and _tax_module(profile.country) is not None
                and _tax_module(profile.country).is_valid(profile.tax_id))


def profile_snapshot(advertiser) -> dict:
    """What a document keeps of who it is billed to (R37). Without a profile: the account's name."""
    return _snapshot(advertiser, *profile_of(advertiser))


def profile_snapshots(advertisers) -> dict[int, dict]:
    """`profile_snapshot` of many advertisers in one query (a chunk of bills)."""
    advertisers = list(advertisers)
    bc_ids = {a.business_center_id for a in advertisers if a.business_center_id}
    rows = BillingProfile.objects.filter(Q(advertiser_id__in=[a.pk for a in advertisers]) | Q(business_center_id__in=bc_ids))
    own, of_bc = {}, {}
    for row in rows:
        (own.__setitem__(row.advertiser_id, row) if row.advertiser_id else of_bc.__setitem__(row.business_center_id, row))
    out = {}
    for a in advertisers:
        if a.pk in own:
            out[a.pk] = _snapshot(a, own[a.pk], False)
        elif a.business_center_id in of_bc:
            out[a.pk] = _snapshot(a, of_bc[a.business_center_id], True)
        else:
            out[a.pk] = _snapshot(a, None, False)
    return out


def _snapshot(advertiser, profile, inherited: bool) -> dict:
    out = profile_fields(profile)
    if profile is None:
        out["legal_name"] = advertiser.name
    out.update(tax_id_valid=tax_id_valid(profile), inherited=inherited, advertiser_id=advertiser.pk,
               country_name=country_name(out["country"]))
    return out


def profile_set(*, actor, data: dict, reason: str, advertiser=None, business_center=None) -> BillingProfile:
    """Create or replace the advertiser's own profile (or a Business Center's), audited (R37)."""
    fields = profile_clean(data)
    owner = {"advertiser": advertiser} if advertiser is not None else {"business_center": business_center}
    with transaction.atomic():
        profile = BillingProfile.objects.select_for_update().filter(**owner).first()
        before = profile_fields(profile) if profile is not None else {}
        if profile is None:
            profile = BillingProfile(**owner)
        for name, value in fields.items():
            setattr(profile, name, value)
        profile.updated_at = timezone.now()
        profile.save()
        target = f"advertiser {advertiser.pk}" if advertiser is not None else f"business center {business_center.pk}"
        audit_record(actor=actor, action="billing_profile_set", reason=reason or "Billing profile edited",
                     advertiser=advertiser, target=f"Billing profile of {target}", before=before,
                     after=profile_fields(profile))
    return profile
