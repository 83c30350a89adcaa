"""`{{ bill|bill_title }}` → "Invoice ADC-000001" / "Threshold bill 3"; `{{ bill|bill_label }}` →
"ADC-000001" / "3" (the account's own bill number, decision 0031). The same words as the PDF
and the emails (billing.page_selectors)."""

from django import template

from billing import page_selectors

register = template.Library()

register.filter("bill_title", page_selectors.bill_title)
register.filter("bill_label", page_selectors.bill_label)


@register.filter
def minus(a, b):
    """`{{ limit|minus:used }}`: a difference of two amounts, for display."""
    return a - b
