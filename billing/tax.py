"""Tax (SPEC R38): place of supply, the rate in force, and the tax on own money.

Credit is a price reduction and is never taxed: tax is computed on what the advertiser pays with
its own money — a deposit, a bill, an invoice net of credits — per document line, rounded once
by the money module's rule (`round_down`). Rates are `TaxRate` rows with effective dates (seeded
with the EU standard rates, edited by staff in the admin), never code.

Tax is booked when the money arrives (decision 0023): the payment's own posting credits the
advertiser's tax-payable account, so every tax amount is part of a balanced transaction (R14).
"""

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.conf import settings

from billing.models import TaxRate
from billing.money import ZERO, round_down
from billing.profile import EU, profile_snapshot, profile_snapshots
from portal.errors import BusinessError

REVERSE_CHARGE = "Reverse charge: VAT to be accounted for by the recipient (Article 196, Directive 2006/112/EC)"
OUTSIDE_SCOPE = "Outside the scope of EU VAT"
NO_ADDRESS = "No billing address on file: no tax charged"


@dataclass(frozen=True)
class Treatment:
    """How one document is taxed: the rate in percent and the note printed with it."""

    rate: Decimal
    note: str = ""
    country: str = ""

    def tax_on(self, net: Decimal, currency: str) -> Decimal:
        """The tax on one line's net amount, rounded once (R4's rule)."""
        if not self.rate or net <= 0:
            return ZERO
        return round_down(net * self.rate / 100, currency)


NO_TAX = Treatment(ZERO, NO_ADDRESS)


def tax_rate_on(country: str, on: date) -> Decimal:
    """The standard rate of `country` in force on `on` (the latest row from on or before it)."""
    return _rates({country}, on)(country)


def _rates(countries: set, on: date):
    """A lookup of the rates in force on `on` for these countries (one query)."""
    found = {}
    for row in TaxRate.objects.filter(country__in=countries, effective_from__lte=on).order_by("effective_from"):
        found[row.country] = row.rate

    def rate(country: str) -> Decimal:
        if country not in found:
            raise BusinessError("tax_rate_missing", f"No tax rate for {country} on {on:%Y-%m-%d}: staff must add one.")
        return found[country]
    return rate


def tax_treatment(billed_to: dict | None, on: date, *, rate_of=None) -> Treatment:
    """R38's place of supply for a billing profile snapshot (`billing.profile.profile_snapshot`):

    - in the seller's country → that country's standard rate;
    - in another EU country with a valid VAT ID → 0, reverse charge;
    - in another EU country without one → that country's rate;
    - outside the EU → 0, outside the scope of EU VAT.
    An account without a billing address has no place of supply yet: no tax (decision 0023)."""
    country = (billed_to or {}).get("country") or ""
    if not country:
        return NO_TAX
    rate_of = rate_of or (lambda c: tax_rate_on(c, on))
    seller = settings.SELLER["country"]
    if country == seller:
        return Treatment(rate_of(country), "", country)
    if country in EU:
        if billed_to.get("tax_id") and billed_to.get("tax_id_valid"):
            return Treatment(ZERO, REVERSE_CHARGE, country)
        return Treatment(rate_of(country), "", country)
    return Treatment(ZERO, OUTSIDE_SCOPE, country)


def tax_for(advertiser, net: Decimal, on: date) -> tuple[Decimal, Treatment]:
    """The tax on `net` of own money for this advertiser today, and how it was decided."""
    treatment = tax_treatment(profile_snapshot(advertiser), on)
    return treatment.tax_on(net, advertiser.currency), treatment


def taxes_for(items: list[tuple], on: date) -> list[tuple[Decimal, Treatment]]:
    """`tax_for` of many `(advertiser, net)` in two queries (a chunk of bills)."""
    snaps = profile_snapshots(adv for adv, _ in items)
    rate_of = _rates({s["country"] for s in snaps.values() if s["country"]}, on)
    out = []
    for adv, net in items:
        t = tax_treatment(snaps[adv.pk], on, rate_of=rate_of)
        out.append((t.tax_on(net, adv.currency), t))
    return out
