"""Forms of the Payments pages: they parse and show errors; the rules live in the services."""

import re
from datetime import date

from django import forms
from django.utils import timezone

from billing.deposits import deposit_limits
from billing.history import ADVERTISER_KINDS
from billing.models import DocumentKind, TxKind
from billing.profile import countries
from billing.templatetags.money import format_money
from billing.topups import deposit_amount_check
from portal.errors import BusinessError
from portal.models import LimitPeriod

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


class SpendingLimitForm(forms.Form):
    """The account spending limit (R43); `spending_limit_set` checks the amount, and its refusal
    is shown under the field."""

    amount = forms.CharField(max_length=32, required=False)
    period = forms.ChoiceField(choices=LimitPeriod.choices, widget=forms.RadioSelect, initial=LimitPeriod.MONTHLY,
                               label="Counts")

    def __init__(self, *args, advertiser, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["amount"].label = f"Spending limit ({advertiser.currency})"
        self.fields["amount"].help_text = "All ad spend counts, however it is paid. Leave empty for no limit."
        self.fields["amount"].widget.attrs.update({"inputmode": "decimal", "autocomplete": "off", "placeholder": "500.00"})
        self.fields["period"].choices = [(LimitPeriod.MONTHLY, "Each calendar month (account time zone)"),
                                         (LimitPeriod.LIFETIME, "Over the account's lifetime")]

    def clean_amount(self):
        return self.cleaned_data["amount"].strip() or None


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


MONTH = re.compile(r"^(\d{4})-(\d{2})$")


class DocumentFilterForm(forms.Form):
    """Billing documents' filters (R39): a kind and a month (`YYYY-MM`, in the account time zone);
    on a Business Center's page also an account, one of `accounts` ([(advertiser id, name)])."""

    kind = forms.ChoiceField(required=False, label="Type",
                             choices=[("", "All types")] + [(k.value, k.label) for k in DocumentKind])
    month = forms.CharField(required=False, label="Month", max_length=7,
                            widget=forms.TextInput(attrs={"type": "month", "placeholder": "YYYY-MM"}))

    def __init__(self, *args, accounts: list[tuple[int, str]] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if accounts is not None:
            self.fields["account"] = forms.TypedChoiceField(
                required=False, label="Account", coerce=int, empty_value=None,
                choices=[("", "All accounts")] + [(str(pk), f"{name} · ID {pk}") for pk, name in accounts],
            )
            self.order_fields(["account", "kind", "month"])

    def clean_month(self):
        raw = (self.cleaned_data.get("month") or "").strip()
        if not raw:
            return None
        m = MONTH.match(raw)
        if not m or not (1 <= int(m.group(2)) <= 12) or not (1900 <= int(m.group(1)) <= 9998):
            raise forms.ValidationError("Enter a month as YYYY-MM, for example 2026-11.")
        return int(m.group(1)), int(m.group(2))

    def filters(self) -> dict:
        """The filters to apply: only the valid ones."""
        if not self.is_bound:
            return {}
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        return {k: data[k] for k in ("kind", "month", "account") if data.get(k) and k not in self.errors}


class BillingProfileForm(forms.Form):
    """Who documents are billed to (R37). Only parses: `billing.profile.profile_set` validates (the
    tax ID's check digits, the country) and its BadInput is shown under the field it names."""

    FIELD_OF_CODE = {"invalid_country": "country", "invalid_tax_id": "tax_id",
                     "invalid_invoice_emails": "invoice_emails"}

    legal_name = forms.CharField(label="Legal name", max_length=200,
                                 widget=forms.TextInput(attrs={"autocomplete": "organization"}))
    address_line1 = forms.CharField(label="Address line 1", max_length=200,
                                    widget=forms.TextInput(attrs={"autocomplete": "address-line1"}))
    address_line2 = forms.CharField(label="Address line 2", max_length=200, required=False,
                                    widget=forms.TextInput(attrs={"autocomplete": "address-line2"}))
    city = forms.CharField(label="City", max_length=100,
                           widget=forms.TextInput(attrs={"autocomplete": "address-level2"}))
    postal_code = forms.CharField(label="Postal code", max_length=20, required=False,
                                  widget=forms.TextInput(attrs={"autocomplete": "postal-code"}))
    country = forms.ChoiceField(label="Country", widget=forms.Select(attrs={"autocomplete": "country"}))
    tax_id = forms.CharField(
        label="Tax ID (optional)", max_length=32, required=False,
        help_text="A VAT number or tax ID; it is checked by its country's format and check digits.",
    )
    invoice_emails = forms.CharField(
        label="Invoice recipients (optional)", max_length=2600, required=False,
        widget=forms.TextInput(attrs={"autocomplete": "off", "placeholder": "billing@example.com, ap@example.com"}),
        help_text="Email addresses separated by commas, at most 10.",
    )
    po_number = forms.CharField(label="PO number (optional)", max_length=64, required=False)

    def __init__(self, *args, read_only: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["country"].choices = [("", "Choose a country")] + countries()
        for name, field in self.fields.items():
            if field.help_text:
                field.widget.attrs["aria-describedby"] = f"id_{name}_helptext"
            if read_only:
                field.disabled = True

    @staticmethod
    def initial_of(fields: dict) -> dict:
        """The form's initial values from `profile_fields` (the recipients as one line)."""
        return {**fields, "invoice_emails": ", ".join(fields.get("invoice_emails") or [])}

    def mark_invalid(self) -> None:
        """Point each field in error at its message, for screen readers."""
        for name in self.errors:
            if name in self.fields:
                attrs = self.fields[name].widget.attrs
                described = [d for d in (attrs.get("aria-describedby"), f"id_{name}_error") if d]
                attrs.update({"aria-invalid": "true", "aria-describedby": " ".join(described)})

    def add_service_error(self, error: BusinessError) -> None:
        field = self.FIELD_OF_CODE.get(error.code)
        if field is None and error.code.startswith("invalid_") and error.code[len("invalid_"):] in self.fields:
            field = error.code[len("invalid_"):]
        self.add_error(field, error.message)
