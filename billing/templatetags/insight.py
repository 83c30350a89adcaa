"""Insight on the pages (SPEC R47–R50): `{{ when|about:now }}` → "in about 30 hours", and
`{{ pace|money_floor:currency }}` → a pace to the minor unit, rounded down (billing/money.py)."""

from django import template

from billing.insights import about as about_words
from billing.money import format_money, round_down

register = template.Library()


@register.filter
def about(then, now):
    return about_words(now, then)


@register.filter
def money_floor(amount, currency):
    return format_money(round_down(amount, currency), currency)


@register.filter
def names(items, most=3):
    """"Spring sale, Summer sale and 2 more": a short list of names for a sentence."""
    items = list(items)
    shown = ", ".join(items[:most])
    return f"{shown} and {len(items) - most} more" if len(items) > most else shown
