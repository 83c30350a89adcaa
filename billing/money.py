"""Money: parsing, currency minor units and the one rounding rule (SPEC R4).

Amounts are `Decimal` everywhere. The only rounding in the system is `round_down`, toward zero
to the currency's minor unit; it is used for percentage discounts (R7), so a discount never pays
a fraction of a cent more than its percentage.
"""

import functools
import re
from decimal import ROUND_DOWN, Decimal, InvalidOperation

from portal.errors import BadInput

# ISO 4217 minor units. Currencies not listed are refused rather than guessed.
MINOR_UNITS: dict[str, int] = {
    "USD": 2, "EUR": 2, "GBP": 2, "CAD": 2, "AUD": 2, "SGD": 2, "MYR": 2, "PHP": 2, "THB": 2,
    "MXN": 2, "BRL": 2, "CNY": 2, "HKD": 2, "TWD": 2, "INR": 2, "IDR": 2, "SAR": 2, "AED": 2,
    "TRY": 2, "CHF": 2, "SEK": 2, "NOK": 2, "DKK": 2, "PLN": 2, "NZD": 2, "ZAR": 2, "EGP": 2,
    "JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0,
    "KWD": 3, "BHD": 3, "OMR": 3, "JOD": 3, "TND": 3,
}

ZERO = Decimal(0)
# The one written form of an amount (API.md): digits, optionally a point and more digits. No sign,
# exponent, underscore, space or bare point — `Decimal` would take all of those (decision 0018).
AMOUNT_SYNTAX = re.compile(r"[0-9]+(\.[0-9]+)?")
FLOAT_EXACT_DIGITS = 15  # DBL_DIG: any decimal of up to 15 significant digits survives a double


def check_currency(currency: str) -> str:
    if not isinstance(currency, str) or currency not in MINOR_UNITS:
        raise BadInput("invalid_currency", f"Unknown currency {currency!r}: use an ISO 4217 code such as USD.")
    return currency


@functools.cache  # an unknown currency raises, and is not cached
def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-MINOR_UNITS[check_currency(currency)])


def parse_amount(value, currency: str, *, field: str = "amount", allow_zero: bool = False) -> Decimal:
    """Parse a user-supplied amount exactly, or raise BadInput naming the problem.

    Accepts a decimal string written `^[0-9]+(\\.[0-9]+)?$` ("12.50"), an integer, or a `Decimal`. A float (a
    JSON number, as the TikTok surface sends) is read through its shortest decimal representation,
    and only when that has at most 15 significant digits — the most a double keeps exactly — so the
    amount recorded is the one the client wrote (decision 0004). Refuses any other spelling
    ("1_000", " 25 ", "+25", "2.5e1", "25."), more places than the currency allows, zero (unless
    `allow_zero`), negatives, NaN and infinity.
    """
    check_currency(currency)
    if isinstance(value, bool) or value is None:
        raise BadInput("invalid_amount", f"{field} must be a decimal string such as \"12.50\".")
    if isinstance(value, float):
        text = repr(value)
        try:
            exact = Decimal(text)
        except InvalidOperation:
            raise BadInput("invalid_amount", f"{field} {text} is not a decimal number.") from None
        if not exact.is_finite():
            raise BadInput("invalid_amount", f"{field} must be a finite number.")
        if len(exact.normalize().as_tuple().digits) > FLOAT_EXACT_DIGITS:
            raise BadInput(
                "invalid_amount",
                f"{field} {text} has more digits than a JSON number holds exactly: send it as a decimal string.",
            )
        amount = exact
    elif isinstance(value, Decimal):  # already parsed (a form's cleaned value, a stored amount)
        amount = value
    elif isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, str) and len(value) <= 40 and AMOUNT_SYNTAX.fullmatch(value):
        amount = Decimal(value)
    elif isinstance(value, str) and value.startswith("-") and AMOUNT_SYNTAX.fullmatch(value[1:41]):
        raise BadInput("invalid_amount", f"{field} must be {'zero or more' if allow_zero else 'positive'}, got {value}.")
    else:
        shown = repr(value[:40]) if isinstance(value, str) else type(value).__name__
        raise BadInput("invalid_amount", f"{field} {shown} is not a decimal number written like \"12.50\".")
    if not amount.is_finite():
        raise BadInput("invalid_amount", f"{field} must be a finite number.")
    places = MINOR_UNITS[currency]
    if amount.as_tuple().exponent < -places:
        raise BadInput(
            "invalid_amount",
            f"{field} {value} has more decimal places than {currency} allows ({places}).",
        )
    if amount < 0:
        raise BadInput("invalid_amount", f"{field} must be {'zero or more' if allow_zero else 'positive'}, got {value}.")
    if amount == 0 and not allow_zero:
        raise BadInput("invalid_amount", f"{field} must be greater than zero.")
    if amount >= Decimal("1e15"):
        raise BadInput("invalid_amount", f"{field} {value} is too large.")
    return amount.quantize(quantum(currency))


def round_down(amount: Decimal, currency: str) -> Decimal:
    """The one rounding rule: toward zero, to the currency's minor unit."""
    return amount.quantize(quantum(currency), rounding=ROUND_DOWN)


def fmt(amount: Decimal, currency: str) -> str:
    """The canonical string form used by the API: exactly the currency's places."""
    return str(Decimal(amount).quantize(quantum(currency)))


# --- display ---------------------------------------------------------------------------------

SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "CNY": "CN¥", "KRW": "₩", "INR": "₹", "CAD": "CA$",
           "AUD": "A$", "HKD": "HK$", "SGD": "S$", "NZD": "NZ$", "MXN": "MX$", "BRL": "R$"}


def format_money(amount, currency: str) -> str:
    """"$1,234.50", "¥1,200", "KWD 1.250": the currency's places, grouped thousands, a real minus
    sign (display only: the APIs write `fmt`). Pages, CSV exports, PDFs and emails use it."""
    try:
        value = Decimal(amount)
    except (InvalidOperation, TypeError, ValueError):
        return ""
    if currency not in MINOR_UNITS:
        return f"{value} {currency}"
    value = value.quantize(quantum(currency))
    body = f"{abs(value):,.{MINOR_UNITS[currency]}f}"
    symbol = SYMBOLS.get(currency)
    text = f"{symbol}{body}" if symbol else f"{currency} {body}"
    return f"−{text}" if value < 0 else text
