"""Forms of the Promotions page: they parse and show errors; the rules live in the services
(`enrollment_create`, `appeal_file`), whose refusals are put under the field they concern."""

from django import forms

from portal.errors import BusinessError
from promotions.appeals import MAX_FILES
from promotions.models import CreditStatus

STATUS_FILTERS = [("", "All")] + [(s.value, s.label) for s in CreditStatus]


class CreditFilterForm(forms.Form):
    status = forms.ChoiceField(required=False, choices=STATUS_FILTERS)

    def status_value(self) -> str:
        """The chosen status, or "" (all) for a missing or unknown one."""
        return self.cleaned_data.get("status", "") if self.is_valid() else ""


class RedeemCodeForm(forms.Form):
    code = forms.CharField(
        label="Promo code", max_length=64,
        widget=forms.TextInput(attrs={"autocomplete": "off", "autocapitalize": "characters", "spellcheck": "false",
                                      "placeholder": "e.g. NEWADS2026"}),
        error_messages={"required": "Enter a promo code."},
    )

    def add_refusal(self, error: BusinessError) -> None:
        """Every refusal of a code is about the code: show it under the field."""
        self.add_error("code", error.message)


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files in one input; counting and content checks are `appeal_file`'s job."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": ".pdf,.png,.jpg,.jpeg,application/pdf,image/png,image/jpeg"}))
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        files = data if isinstance(data, (list, tuple)) else ([data] if data else [])
        return [super(MultipleFileField, self).clean(f, initial) for f in files]


# Which field an `appeal_file` refusal belongs to; the others are shown above the form.
APPEAL_ERROR_FIELDS = {
    "invalid_message": "message",
    "too_many_attachments": "files",
    "attachment_too_large": "files",
    "attachment_type_not_allowed": "files",
}


class AppealForm(forms.Form):
    message = forms.CharField(
        label="Why should the freeze be lifted?", max_length=5000,
        widget=forms.Textarea(attrs={"rows": 5, "placeholder": "Explain your business and the recent activity on the "
                                                               "account. Attach documents that support it."}),
        error_messages={"required": "Tell us why the freeze should be lifted."},
    )
    files = MultipleFileField(
        label="Attachments (optional)", required=False,
        help_text=f"Up to {MAX_FILES} files: PDF, PNG or JPEG, 5 MB each. We check the file's content, not its name.",
    )

    def add_refusal(self, error: BusinessError) -> None:
        self.add_error(APPEAL_ERROR_FIELDS.get(error.code), error.message)
