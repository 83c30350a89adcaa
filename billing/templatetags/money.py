"""`{{ amount|money:currency }}` → "$1,234.50", "¥1,200", "KWD 1.250": the currency's places,
grouped thousands, a real minus sign. Display only; the API keeps `billing.money.fmt`."""

from decimal import Decimal, InvalidOperation

from django import template

from billing.money import MINOR_UNITS, quantum

register = template.Library()

SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "CNY": "CN¥", "KRW": "₩", "INR": "₹", "CAD": "CA$",
           "AUD": "A$", "HKD": "HK$", "SGD": "S$", "NZD": "NZ$", "MXN": "MX$", "BRL": "R$"}


def format_money(amount, currency: str) -> str:
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


@register.filter
def money(amount, currency):
    return format_money(amount, currency)


@register.filter
def money_axis(amount, currency):
    """A chart axis label: whole amounts without decimals ("$50"), others as `money`."""
    value = Decimal(amount)
    if value == value.to_integral_value():
        symbol = SYMBOLS.get(currency)
        body = f"{int(value):,}"
        return f"{symbol}{body}" if symbol else f"{currency} {body}"
    return format_money(value, currency)
