"""`{{ amount|money:currency }}` → "$1,234.50", "¥1,200", "KWD 1.250": the currency's places,
grouped thousands, a real minus sign. Display only; the API keeps `billing.money.fmt`."""

from decimal import Decimal

from django import template

from billing.money import SYMBOLS, format_money

register = template.Library()

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
