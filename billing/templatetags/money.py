"""`{{ amount|money:currency }}` → "$1,234.50", "¥1,200", "KWD 1.250": the currency's places,
grouped thousands, a real minus sign. Display only; the API keeps `billing.money.fmt`."""

from decimal import Decimal

from django import template
from django.utils import dateformat, timezone
from django.utils.html import format_html

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


@register.filter
def when(moment):
    """A list's date and time cell: `<time datetime="…">Dec 8, 2026</time> <span>04:12</span>` in the
    current time zone (the page's `{% timezone %}`), formatted in one pass instead of three
    filters per row."""
    local = timezone.localtime(moment)
    return format_html('<time datetime="{}">{}</time> <span class="muted">{}</span>', local.isoformat(),
                       dateformat.format(local, "M j, Y"), dateformat.format(local, "H:i"))

