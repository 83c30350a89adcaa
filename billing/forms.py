"""Forms of the Payments pages: they parse and show errors; the rules live in the services."""

import re
from datetime import date

from django import forms
from django.utils import timezone

from billing.deposits import deposit_limits
from billing.history import ADVERTISER_KINDS
from billing.models import TxKind
from billing.templatetags.money import format_money
from billing.topups import deposit_amount_check
from portal.errors import BusinessError

EXPIRY = re.compile(r"^\s*(\d{1,2})\s*/\s*(\d{2}|\d{4})\s*$")


def card_number_clean(raw: str) -> str:
    digits = re.sub(r"[\s-]", "", raw)
    if not digits.isdigit() or not 12 <= len(digits) <= 19:
        raise forms.ValidationError("Enter the card number as printed on the card (12 to 19 digits).")
    return digits


class CardNumberInput(forms.TextInput):
    """Never renders the typed value back: a card number is not echoed into a page."""

    def format_value(self, value):
        return None


class AddFundsForm(forms.Form):
    amount = forms.CharField(max_length=32)
    card_number = forms.CharField(
        max_length=32,
        widget=CardNumberInput(attrs={"inputmode": "numeric", "autocomplete": "cc-number", "placeholder": "1234 1234 1234 1234"}),
    )
    expiry = forms.CharField(
        label="Expiry (MM/YY)",
        max_length=7,
        widget=forms.TextInput(attrs={"autocomplete": "cc-exp", "placeholder": "MM/YY", "inputmode": "numeric"}),
    )
    idempotency_key = forms.CharField(max_length=100, widget=forms.HiddenInput)

    def __init__(self, *args, advertiser, **kwargs):
        super().__init__(*args, **kwargs)
        self.advertiser = advertiser
        low, high = deposit_limits(advertiser.currency)
        self.fields["amount"].label = f"Amount ({advertiser.currency})"
        self.fields["amount"].help_text = (
            f"Between {format_money(low, advertiser.currency)} and {format_money(high, advertiser.currency)} per deposit."
        )
        self.fields["amount"].widget.attrs.update({"inputmode": "decimal", "autocomplete": "off", "placeholder": "100.00"})

    def clean_amount(self):
        try:
            return deposit_amount_check(advertiser=self.advertiser, amount=self.cleaned_data["amount"])
        except BusinessError as e:
            raise forms.ValidationError(e.message, code=e.code) from None

    def clean_card_number(self):
        return card_number_clean(self.cleaned_data["card_number"])

    def clean_expiry(self):
        m = EXPIRY.match(self.cleaned_data["expiry"])
        if not m or not 1 <= int(m.group(1)) <= 12:
            raise forms.ValidationError("Enter the expiry date as MM/YY, for example 04/29.")
        month, year = int(m.group(1)), int(m.group(2))
        year = year + 2000 if year < 100 else year
        today = timezone.localdate()
        if (year, month) < (today.year, today.month):
            raise forms.ValidationError("This card has expired.")
        return date(year, month, 1)


class PaymentMethodForm(forms.Form):
    """The card on file (R29). The expiry is passed as typed: `payment_method_set` checks it, and
    its refusals are shown under the field they concern (`FIELD_OF_CODE`)."""

    FIELD_OF_CODE = {"invalid_expiry": "expiry", "card_expired": "expiry", "card_refused": "card_number",
                     "invalid_card": "card_number"}

    card_number = forms.CharField(
        max_length=32,
        widget=CardNumberInput(attrs={"inputmode": "numeric", "autocomplete": "cc-number", "placeholder": "1234 1234 1234 1234"}),
    )
    expiry = forms.CharField(
        label="Expiry (MM/YY)",
        max_length=7,
        widget=forms.TextInput(attrs={"autocomplete": "cc-exp", "placeholder": "MM/YY", "inputmode": "numeric"}),
    )

    def clean_card_number(self):
        return card_number_clean(self.cleaned_data["card_number"])

    def add_service_error(self, error: BusinessError) -> None:
        self.add_error(self.FIELD_OF_CODE.get(error.code), error.message)


class BillingMethodSwitchForm(forms.Form):
    """Confirm a switch (R28); the rules are `billing_method_switch`'s."""

    billing_method = forms.CharField(max_length=32, widget=forms.HiddenInput)
    confirm = forms.BooleanField(
        label="I understand what is settled when switching, and that the account can never go back to manual payment.",
        error_messages={"required": "Tick the box to confirm the switch."},
    )


class TransactionFilterForm(forms.Form):
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    kind = forms.ChoiceField(
        required=False,
        label="Type",
        choices=[("", "All types")] + [(k.value, k.label) for k in TxKind if k in ADVERTISER_KINDS],
    )

    def clean(self):
        data = super().clean()
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            self.add_error("date_to", "The end date is before the start date.")
        return data

    def filters(self) -> dict:
        """The filters to apply: only the valid ones."""
        if not self.is_bound:
            return {}
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        return {k: data[k] for k in ("date_from", "date_to", "kind") if data.get(k) and k not in self.errors}
