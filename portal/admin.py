"""Django admin for support staff: Business Centers, advertisers, members and campaigns.

Creating an advertiser or a campaign goes through the services (`advertiser_create`,
`campaign_create`) so the advertiser's ledger accounts are opened. Fields fixed at creation
(currency, time zone, R2) and fields owned by other services (billing method switch, credit
freeze) are read-only here. The advertiser change page shows its balances, recent bills, credits
and recent ledger transactions read-only; money moves only through the services.

Who may do what is `portal.permissions.staff_can` (docs/decisions/0011-staff-roles.md): every
ModelAdmin here, in billing and in promotions derives from `StaffRoleAdmin`, which asks it instead
of Django's model permissions. Every edit made here is written to the audit log with the reason
the form asks for.

The support console's common ways (docs/decisions/0027-support-console.md): a service's refusal is
shown as a sentence (`refusal`), under its field on a form (`add_error_for`); amounts read-only are
shown in their currency's places (`StaffRolePermissions`, `money_display`); a form that is a
service's arguments renders as an admin page (`service_form_page`). "Refund cash and close the
account" calls `cash_refund`; the audit log exports as CSV for a range of days.
"""

import csv
import json
import re
import zoneinfo
from datetime import date, datetime, time, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import ActionLocation, helpers
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin as DjangoGroupAdmin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db import models, transaction
from django.forms.models import BaseInlineFormSet
from django.http import StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator, capfirst

from billing.autopay import threshold_change_check
from billing.deposits import cash_refund, cash_refund_refusal
from billing.ledger import advertiser_accounts
from billing.models import Bill, LedgerTransaction, Purpose
from billing.money import AMOUNT_SYNTAX, check_currency, fmt, format_money, parse_amount
from portal import inputs
from billing.selectors import advertiser_balances
from billing.limits import spending_limit_set
from billing.switching import billing_settings_set
from portal.audit import audit_csv_rows, audit_record
from portal.errors import BadInput, BusinessError
from portal.login import RateLimitedAdminAuthenticationForm
from portal.models import (
    Advertiser,
    AdvertiserStatus,
    AuditLog,
    BCMembership,
    BusinessCenter,
    Campaign,
    Membership,
    Notification,
)
from portal.permissions import BILLING_SETTING_PERMS, admin_access, staff_can
from portal.services import advertiser_create, business_center_create, campaign_create
from promotions.freeze import credit_freeze, credit_unfreeze
from promotions.models import Credit

RECENT_TRANSACTIONS = 20
RECENT_BILLS = 10
RECENT_CREDITS = 20
RECENT_AUDIT = 10


# --- how the console words a refusal and shows money ------------------------------------------

_IDENTIFIER = re.compile(r"\b[a-z]+(?:_[a-z]+)+\b")
_QUOTED = re.compile(r"('[^']*'|\"[^\"]*\")")


def sentence(text) -> str:
    """A message as the console shows it: a sentence with a capital first letter and a full stop,
    field names in words ("credit line limit must be zero or more, got -100" → "Credit line limit
    must be zero or more, got -100."). Quoted values are left as they are."""
    parts = _QUOTED.split(str(text).strip())
    out = "".join(p if i % 2 else _IDENTIFIER.sub(lambda m: m.group(0).replace("_", " "), p)
                  for i, p in enumerate(parts))
    if out[:1].islower():
        out = out[0].upper() + out[1:]
    if out and out[-1] not in ".!?…":
        out += "."
    return out


def refusal(error: BusinessError) -> str:
    """The one way the console shows a service's refusal (BusinessError, BadInput, Conflict)."""
    return sentence(error.message)


MONEY_SUFFIX = "_money"
_CURRENCY_VIA = ("advertiser", "business_center", "program", "account", "transaction", "document")


def money_fields(model) -> dict:
    """A model's amounts: its 4-place decimals (rates and percents have 2 or 3 places)."""
    return {f.name: f for f in model._meta.concrete_fields
            if isinstance(f, models.DecimalField) and f.decimal_places == 4}


def currency_of(obj) -> str | None:
    """The currency an object's amounts are in: its own, or its advertiser's, BC's, program's…"""
    if getattr(obj, "currency", None):
        return obj.currency
    for rel in _CURRENCY_VIA:
        if getattr(obj, f"{rel}_id", None) is not None:
            return currency_of(getattr(obj, rel))
    return None


def money_display(field):
    """A read-only column or field showing an amount in its currency's places ("$0.00", "¥1,200")
    instead of the stored 4 places ("0.0000")."""

    @admin.display(description=capfirst(field.verbose_name), ordering=field.name)
    def show(obj):
        value = getattr(obj, field.name)
        if value is None:
            return "—"
        currency = currency_of(obj)
        return format_money(value, currency) if currency else format(value.normalize(), "f")

    return show


# --- the admin site: staff roles only, rate-limited login ---------------------------------------

def _admin_has_permission(request) -> bool:
    """Superusers, Billing managers and Support agents; service accounts (staff in no role group)
    use the API only, and a plain staff flag no longer opens the admin."""
    return admin_access(request.user)


admin.site.has_permission = _admin_has_permission
admin.site.login_form = RateLimitedAdminAuthenticationForm
admin.site.site_header = "Ad Credit & Billing — support console"
admin.site.site_title = "Support console"


class StaffRolePermissions:
    """Admin permissions from `staff_can`: `view_perm` to see, `add_perm` / `change_perm` to add or
    edit (None: nobody, superusers included — ledger-like records are read-only for everyone).

    Also shows every read-only amount in its currency's places: a money field that is read-only on
    a page, or a list column, is swapped for `<name>_money` (`money_display`)."""

    view_perm = "view"
    add_perm = None
    change_perm = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.money_fields = money_fields(self.model)
        for name, field in self.money_fields.items():
            if not hasattr(self, name + MONEY_SUFFIX):
                setattr(self, name + MONEY_SUFFIX, money_display(field))

    def _as_money(self, names, readonly):
        return [tuple(self._as_money(n, readonly)) if isinstance(n, (list, tuple))
                else n + MONEY_SUFFIX if n in self.money_fields and n in readonly else n for n in names]

    def with_money(self, readonly_fields) -> list:
        """Read-only fields plus the `_money` twin of each amount among them (an override of
        `get_readonly_fields` returns through this)."""
        fields = list(readonly_fields)
        return fields + [f + MONEY_SUFFIX for f in fields if f in self.money_fields]

    def get_readonly_fields(self, request, obj=None):
        return self.with_money(super().get_readonly_fields(request, obj))

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is not None and not self.has_change_permission(request, obj):
            readonly = set(self.money_fields)  # a view-only page: every field is read-only
        else:
            given = set(self.get_readonly_fields(request, obj))
            readonly = {f for f in self.money_fields if f in given and f + MONEY_SUFFIX in given}
        return [(name, {**opts, "fields": self._as_money(opts["fields"], readonly)}) for name, opts in fieldsets]

    def get_list_display(self, request):
        return self._as_money(super().get_list_display(request), set(self.money_fields))

    def has_module_permission(self, request):
        return staff_can(request.user, self.view_perm)

    def has_view_permission(self, request, obj=None):
        return staff_can(request.user, self.view_perm)

    def has_add_permission(self, request, *args):
        return self.add_perm is not None and staff_can(request.user, self.add_perm)

    def has_change_permission(self, request, obj=None):
        return self.change_perm is not None and staff_can(request.user, self.change_perm)

    def has_delete_permission(self, request, obj=None):
        return False  # money records and accounts are closed or reversed, never deleted


class StaffRoleAdmin(StaffRolePermissions, admin.ModelAdmin):
    pass


class ReadOnlyAdmin(StaffRoleAdmin):
    """Seen by every staff role, changed by nobody."""

    show_full_result_count = False


# --- audit of admin edits -------------------------------------------------------------------------

def _jsonable(value):
    if isinstance(value, (Decimal, datetime, date)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _shown(obj, name: str):
    return _jsonable(getattr(obj, name))


def _initial_shown(form, name: str):
    """A field's value before the edit, as `_shown` would show it (a related object by its name)."""
    value = form.initial.get(name)
    field = form.fields.get(name)
    if value is not None and isinstance(field, forms.ModelChoiceField):
        value = field.queryset.filter(pk=value).first()
    return _jsonable(value)


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
                             help_text="Required. Kept in the audit log.")


CHANGE_REASON = "change_reason"
REASON_MISSING = "Say why you are making this change; the reason is kept in the audit log."


class AuditedForm(forms.ModelForm):
    """A change form with a reason, required as soon as anything on the page changes."""

    change_reason = forms.CharField(
        label="Reason for this change", required=False, max_length=500,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text="Required when you change anything on this page. Kept in the audit log.",
    )

    def clean(self):
        data = super().clean()
        changed = [f for f in self.changed_data if f != CHANGE_REASON]
        if self.instance.pk and changed and not (data.get(CHANGE_REASON) or "").strip():
            self.add_error(CHANGE_REASON, REASON_MISSING)
        return data


class ReasonRequiredFormSet(BaseInlineFormSet):
    """An inline (members) whose changes need the page's reason too."""

    def clean(self):
        super().clean()
        if self.instance.pk and self.has_changed() and not (self.data.get(CHANGE_REASON) or "").strip():
            raise forms.ValidationError(REASON_MISSING)


def _reason(request, form, default: str) -> str:
    given = (form.cleaned_data.get(CHANGE_REASON) or "").strip()
    return given or f"{default.capitalize()} by {request.user.get_username()} in the admin."


class AuditedAdminMixin:
    """Writes an audit line for each field edit and each inline row added, changed or removed, in the
    transaction of the save. `audit_subject(obj)` gives (action prefix, advertiser, target)."""

    def audit_subject(self, obj):
        raise NotImplementedError

    def audit_fields(self, request, obj, form, fields):
        if not fields:
            return
        prefix, advertiser, target = self.audit_subject(obj)
        audit_record(
            actor=request.user, action=f"{prefix}_edit", advertiser=advertiser, target=target,
            reason=_reason(request, form, "edited"),
            before={f: _initial_shown(form, f) for f in fields},
            after={f: _shown(obj, f) for f in fields},
        )

    def audit_created(self, request, obj, form):
        prefix, advertiser, target = self.audit_subject(obj)
        audit_record(actor=request.user, action=f"{prefix}_create", advertiser=advertiser, target=target,
                     reason=_reason(request, form, "created"),
                     after={f: _shown(obj, f) for f in form.changed_data if f != CHANGE_REASON and hasattr(obj, f)})

    def save_formset(self, request, form, formset, change):
        names = [n for n in formset.form.base_fields if n not in ("id", "DELETE", formset.fk.name)]
        removed = [{n: _shown(f.instance, n) for n in names} for f in formset.deleted_forms if f.instance.pk]
        before = {f.instance.pk: {n: _initial_shown(f, n) for n in f.changed_data}
                  for f in formset.initial_forms if f.has_changed() and f not in formset.deleted_forms}
        formset.save()
        _, advertiser, target = self.audit_subject(form.instance)
        kind = formset.model._meta.model_name
        reason = _reason(request, form, "edited")
        for obj in formset.new_objects:
            audit_record(actor=request.user, action=f"{kind}_add", advertiser=advertiser, target=target,
                         reason=reason, after={n: _shown(obj, n) for n in names})
        for obj, fields in formset.changed_objects:
            audit_record(actor=request.user, action=f"{kind}_change", advertiser=advertiser, target=target,
                         reason=reason, before={"user": _shown(obj, "user"), **before.get(obj.pk, {})},
                         after={"user": _shown(obj, "user"), **{n: _shown(obj, n) for n in fields}})
        for row in removed:
            audit_record(actor=request.user, action=f"{kind}_remove", advertiser=advertiser, target=target,
                         reason=reason, before=row)

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is not None and not self.has_change_permission(request, obj):
            # A view-only page has nothing to give a reason for (nor an empty "Why" section).
            fieldsets = [(name, {**opts, "fields": [f for f in opts["fields"] if f != CHANGE_REASON]})
                         for name, opts in fieldsets]
            return [(name, opts) for name, opts in fieldsets if opts["fields"]]
        return fieldsets


def add_error_for(form, error: BusinessError, fields: dict | None = None) -> None:
    """A service's refusal on a form: under the field its code names (`fields`, else
    `invalid_<field>`), or at the top of the form."""
    name = (fields or {}).get(error.code) or error.code.removeprefix("invalid_")
    form.add_error(name if name in form.fields else None, refusal(error))


def service_form_page(modeladmin, request, *, form, fieldsets, title: str, form_url: str = "", extra_context=None):
    """An admin "add" page whose form is not a ModelForm but the arguments of a service (grant credit,
    create a program, transfer cash): Django's change-form look, with the refusals on the form."""
    adminform = helpers.AdminForm(form, fieldsets, {}, model_admin=modeladmin)
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "subtitle": None,
        "adminform": adminform,
        "object_id": None,
        "original": None,
        "is_popup": False,
        "to_field": None,
        "media": modeladmin.media + adminform.media,
        "inline_admin_formsets": [],
        "errors": helpers.AdminErrorList(form, []),
        "preserved_filters": modeladmin.get_preserved_filters(request),
        "show_save_and_continue": False,
        **(extra_context or {}),
    }
    return modeladmin.render_change_form(request, context, add=True, form_url=form_url)


def action_with_reason(modeladmin, request, queryset, *, action: str, title: str, intro: str, headers, row,
                       submit_label: str, perform, form_class=ReasonForm):
    """An admin action that asks for a reason on a confirmation page, then calls a service per row.

    `perform(obj, cleaned_data)` calls the service; a BusinessError it raises is reported for that
    row and the others still run. Returns the confirmation page, or None to go back to the list.
    """
    objects = list(queryset.order_by("pk"))
    form = form_class(request.POST if "confirm" in request.POST else None)
    if form.is_valid():
        done = []
        for obj in objects:
            try:
                perform(obj, form.cleaned_data)
            except BusinessError as e:
                modeladmin.message_user(request, f"{obj}: {refusal(e)}", messages.ERROR)
            else:
                done.append(obj)
        if done:
            modeladmin.message_user(request, f"{title}: done for {', '.join(str(o) for o in done)}.", messages.SUCCESS)
        return None
    opts = modeladmin.opts
    request.current_app = modeladmin.admin_site.name
    return TemplateResponse(request, "admin/action_reason.html", {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "intro": intro,
        "opts": opts,
        "headers": headers,
        "rows": [row(obj) for obj in objects],
        "pks": [obj.pk for obj in objects],
        "action": action,
        "form": form,
        "submit_label": submit_label,
        "changelist_url": reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
    })


class BCMembershipInline(StaffRolePermissions, admin.TabularInline):
    model = BCMembership
    formset = ReasonRequiredFormSet
    extra = 0
    raw_id_fields = ["user"]
    add_perm = change_perm = "manage_accounts"

    def has_delete_permission(self, request, obj=None):
        return staff_can(request.user, "manage_accounts")  # removing a member is audited


class AdvertiserOfBCInline(StaffRolePermissions, admin.TabularInline):
    model = Advertiser
    fields = ["name", "currency", "billing_method", "status"]
    readonly_fields = fields
    extra = 0
    show_change_link = True


class BusinessCenterForm(AuditedForm):
    class Meta:
        model = BusinessCenter
        fields = "__all__"


@admin.register(BusinessCenter)
class BusinessCenterAdmin(AuditedAdminMixin, StaffRoleAdmin):
    form = BusinessCenterForm
    change_form_template = "admin/portal/businesscenter/change_form.html"
    add_perm = change_perm = "manage_accounts"
    list_display = ["id", "name", "currency", "created_at"]
    ordering = ["name", "id"]
    search_fields = ["name", "id__exact"]
    list_filter = ["currency"]
    inlines = [BCMembershipInline, AdvertiserOfBCInline]
    fields = ["name", "currency", "created_at", CHANGE_REASON]

    def get_readonly_fields(self, request, obj=None):
        # A BC's cash accounts are opened in its currency: fixed once created.
        return ["currency", "created_at"] if obj else ["created_at"]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra = {}
        if staff_can(request.user, "manage_accounts"):  # who may add a BC transfer (billing.admin)
            extra["transfer_url"] = reverse("admin:billing_bctransfer_add") + f"?business_center={object_id}"
        return super().change_view(request, object_id, form_url, {**extra, **(extra_context or {})})

    def audit_subject(self, obj):
        return "business_center", None, f"business center {obj.pk}"

    def save_model(self, request, obj, form, change):
        if change:
            fields = [f for f in form.changed_data if f != CHANGE_REASON]
            super().save_model(request, obj, form, change)
            self.audit_fields(request, obj, form, fields)
            return
        created = business_center_create(name=obj.name, currency=obj.currency)
        obj.pk, obj.created_at = created.pk, created.created_at
        obj._state.adding = False
        self.audit_created(request, obj, form)


class MembershipInline(StaffRolePermissions, admin.TabularInline):
    model = Membership
    formset = ReasonRequiredFormSet
    extra = 0
    raw_id_fields = ["user"]
    verbose_name = "member"
    verbose_name_plural = "members"
    add_perm = change_perm = "manage_accounts"

    def has_delete_permission(self, request, obj=None):
        return staff_can(request.user, "manage_accounts")  # removing a member is audited


class CampaignInline(StaffRolePermissions, admin.TabularInline):
    model = Campaign
    fields = ["name", "objective", "product_source", "shop_id", "status"]
    readonly_fields = fields
    extra = 0
    show_change_link = True


BILLING_SETTINGS = list(BILLING_SETTING_PERMS)
SPENDING_LIMIT = ["spending_limit", "spending_limit_period"]  # set through spending_limit_set (R43)


class LimitField(inputs.AmountField):
    """An amount that may be zero: a minus sign goes on to `parse_amount`, so a negative limit is
    refused in the rule's own words ("must be zero or more") rather than as a typing mistake."""

    def to_python(self, value):
        text = forms.CharField.to_python(self, value)
        if text and text.startswith("-") and AMOUNT_SYNTAX.fullmatch(text[1:]):
            return text
        return super().to_python(value)


class AdvertiserForm(AuditedForm):
    """Checks what the services would refuse, so a refusal is shown on the form, not as an error page."""

    class Meta:
        model = Advertiser
        fields = "__all__"
        # amounts as typed, read by parse_amount like every other door's (issue 9)
        field_classes = {"credit_line_limit": LimitField, "billing_threshold": inputs.AmountField,
                         "spending_limit": LimitField}
        help_texts = {"credit_line_limit": "Zero or more, in the account's currency; zero means no credit line.",
                      "spending_limit": "R43: all ad spend counts, however it is paid; at the limit campaigns pause. "
                                        "Empty: no limit."}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:  # in the account's places ("0.00"), not the stored 4 ("0.0000")
            for name in ("credit_line_limit", "billing_threshold", "spending_limit"):
                if self.initial.get(name) is not None:
                    self.initial[name] = fmt(self.initial[name], self.instance.currency)
        if self.is_bound and self.instance.pk and "spending_limit_period" not in self.data:
            self.data = self.data.copy()  # a form posted without the period keeps it as it is
            self.data["spending_limit_period"] = self.instance.spending_limit_period

    def clean_currency(self):
        try:
            return check_currency(self.cleaned_data["currency"])
        except BadInput as e:
            raise forms.ValidationError(refusal(e)) from None

    def clean_timezone(self):
        name = self.cleaned_data["timezone"]
        try:
            zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise forms.ValidationError(f"Unknown time zone {name!r}: use an IANA name such as America/New_York.") from None
        return name

    def clean_status(self):
        status = self.cleaned_data["status"]
        was = self.instance.status if self.instance.pk else AdvertiserStatus.ACTIVE
        if status != was and AdvertiserStatus.CLOSED in (status, was):
            # Closing refunds cash and forfeits credit (cash_refund); it is never a field edit.
            raise forms.ValidationError(
                "An account is closed only by refunding its cash balance (the action “Refund cash and close the "
                "account”), and a closed account stays closed."
            )
        return status

    def clean(self):
        data = super().clean()
        currency = self.instance.currency if self.instance.pk else data.get("currency")
        if not currency:
            return data
        for name in ("credit_line_limit", "billing_threshold", "spending_limit"):
            value = data.get(name)
            if value is not None and name in self.changed_data:
                try:
                    data[name] = parse_amount(value, currency, field=name.replace("_", " "),
                                              allow_zero=name != "billing_threshold")
                except BadInput as e:
                    self.add_error(name, refusal(e))
        if self.instance.pk and "billing_threshold" in self.changed_data:
            if data.get("billing_threshold") is None:
                self.add_error("billing_threshold", "A billing threshold can be changed but not removed.")
            else:
                try:  # R25, as billing_settings_set will check it: here so the form shows it by the field
                    threshold_change_check(self.instance, timezone.now())
                except BusinessError as e:
                    self.add_error("billing_threshold", refusal(e))
        return data


@admin.register(Advertiser)
class AdvertiserAdmin(AuditedAdminMixin, StaffRoleAdmin):
    """Staff settings (threshold, bill cycle, credit line, invoicing eligibility) go through
    `billing_settings_set`, so threshold changes are counted (R25) and paused campaigns resume when
    a credit line is raised. The billing method changes only through the switch rules (R28).
    Each setting is editable only by a role that may set it (`BILLING_SETTING_PERMS`)."""

    form = AdvertiserForm
    change_form_template = "admin/portal/advertiser/change_form.html"
    add_perm = change_perm = "manage_accounts"
    list_display = ["id", "name", "business_center", "currency", "billing_method", "status", "credit_frozen",
                    "registered_at"]
    list_display_links = ["id", "name"]
    ordering = ["name", "id"]
    list_filter = ["billing_method", "status", "currency", "credit_frozen", "signup_source"]
    search_fields = ["name", "id__exact", "memberships__user__username", "shop_id"]
    list_select_related = ["business_center"]
    inlines = [MembershipInline, CampaignInline]
    add_fieldsets = [
        (None, {"fields": ["name", "business_center", "currency", "timezone", "billing_method", "signup_source",
                           "registered_at", "shop_id"]}),
        ("Billing settings", {"fields": ["credit_line_limit", "billing_threshold", "bill_cycle"]}),
        ("Why", {"fields": [CHANGE_REASON]}),
    ]
    fieldsets = [
        (None, {"fields": ["name", "business_center", "currency", "timezone", "status", "signup_source",
                           "registered_at", "shop_id", "credit_frozen", "created_at"]}),
        ("Billing settings", {"fields": ["billing_method", "invoicing_eligible", "credit_line_limit",
                                         "billing_threshold", "bill_cycle", "next_bill_at", "failed_payments",
                                         "successful_payments"]}),
        ("Spending limit", {"fields": ["spending_limit", "spending_limit_period", "limit_spent", "limit_month"]}),
        ("Why", {"fields": [CHANGE_REASON]}),
        ("Money (read-only, from the ledger)", {"fields": ["balances_summary", "recent_bills", "credits_summary",
                                                           "recent_transactions"]}),
        ("Staff actions", {"fields": ["audit_trail"]}),
    ]

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return self.add_fieldsets
        return super().get_fieldsets(request, obj)

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return self.with_money(f for f, perm in BILLING_SETTING_PERMS.items() if not staff_can(request.user, perm))
        fixed = ["business_center", "currency", "timezone", "signup_source", "registered_at", "credit_frozen",
                 "created_at", "billing_method", "next_bill_at", "failed_payments", "successful_payments",
                 "limit_spent", "limit_month", "balances_summary", "recent_bills", "credits_summary", "recent_transactions", "audit_trail"]
        return self.with_money(fixed + [f for f, perm in BILLING_SETTING_PERMS.items()
                                        if not staff_can(request.user, perm)])

    def get_inlines(self, request, obj):
        return self.inlines if obj else []

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra = {"can_grant_credit": staff_can(request.user, "grant_credit")}
        if extra["can_grant_credit"]:
            extra["grant_url"] = reverse("admin:promotions_credit_add") + f"?advertiser={object_id}"
        return super().change_view(request, object_id, form_url, {**extra, **(extra_context or {})})

    def audit_subject(self, obj):
        return "advertiser", obj, f"advertiser {obj.pk}"

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        reason = _reason(request, form, "set")
        if change:
            plain = [f for f in form.changed_data if f not in BILLING_SETTINGS + SPENDING_LIMIT and f != CHANGE_REASON]
            if plain:
                obj.save(update_fields=plain)
                self.audit_fields(request, obj, form, plain)
            settings_changed = {f: data[f] for f in form.changed_data if f in BILLING_SETTINGS}
            if settings_changed:
                billing_settings_set(advertiser=obj, reason=reason, by=request.user, **settings_changed)
            if set(SPENDING_LIMIT) & set(form.changed_data):  # R43: counted, paused or resumed by its rule
                spending_limit_set(advertiser=obj, amount=data["spending_limit"], period=data["spending_limit_period"],
                                   by=request.user, reason=reason)
            obj.refresh_from_db()
            return
        created = advertiser_create(
            name=data["name"],
            currency=data["currency"],
            timezone_name=data["timezone"],
            billing_method=data["billing_method"],
            business_center=data["business_center"],
            registered_at=data["registered_at"],
            signup_source=data["signup_source"],
            shop_id=data["shop_id"],
        )
        self.audit_created(request, created, form)
        billing_settings_set(
            advertiser=created, reason=reason, by=request.user,
            credit_line_limit=data.get("credit_line_limit") or None,
            billing_threshold=data.get("billing_threshold"), bill_cycle=data.get("bill_cycle"),
        )
        created.refresh_from_db()
        obj.__dict__.update({k: v for k, v in created.__dict__.items() if k != "_state"})
        obj._state.adding = False

    actions = ["freeze_credit", "unfreeze_credit", "mark_invoicing_eligible", "refund_and_close"]

    def has_freeze_permission(self, request):
        return staff_can(request.user, "freeze_credit")

    def has_invoicing_eligible_permission(self, request):
        return staff_can(request.user, "set_invoicing_eligible")

    def has_refund_permission(self, request):
        return staff_can(request.user, "withdraw_credit")  # money back and credit forfeited: a Billing manager

    @admin.action(description="Mark eligible for monthly invoicing", permissions=["invoicing_eligible"],
                  location=[ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM])
    def mark_invoicing_eligible(self, request, queryset):
        return action_with_reason(
            self, request, queryset, action="mark_invoicing_eligible", title="Mark eligible for monthly invoicing",
            intro="The account may then switch to monthly invoicing; set a credit line before it does, or its "
                  "campaigns pause at the first charge.",
            headers=["Advertiser", "ID", "Billing method", "Eligible now"],
            row=lambda adv: [adv.name, adv.pk, adv.get_billing_method_display(),
                             "yes" if adv.invoicing_eligible else "no"],
            submit_label="Mark eligible", perform=self._mark_eligible(request),
        )

    @staticmethod
    def _mark_eligible(request):
        def perform(adv, data):
            if adv.invoicing_eligible:  # nothing would change, so nothing would be audited: say so
                raise BusinessError("already_eligible", "This account is already eligible for monthly invoicing.")
            billing_settings_set(advertiser=adv, invoicing_eligible=True, reason=data["reason"], by=request.user)
        return perform

    @admin.action(description="Refund cash and close the account", permissions=["refund"],
                  location=[ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM])
    def refund_and_close(self, request, queryset):
        """The advertiser's Refund & close, for staff: `cash_refund` decides and books it (R23)."""
        accounts = advertiser_accounts([adv.pk for adv in queryset])

        def row(adv):
            balances = {purpose: a.balance for purpose, a in accounts.get(adv.pk, {}).items()}
            refused = cash_refund_refusal(adv, balances)
            cash = balances.get(Purpose.CASH, Decimal(0))
            return [adv.name, adv.pk, adv.get_status_display(), format_money(cash, adv.currency),
                    refusal(refused) if refused else "Can be refunded"]

        return action_with_reason(
            self, request, queryset, action="refund_and_close", title="Refund cash and close the account",
            intro="The whole unspent cash balance goes back to the advertiser and the account is closed for good: "
                  "its campaigns are paused and every credit it still holds is forfeited (credit is never paid "
                  "out). Only an active account that owes nothing can be refunded.",
            headers=["Advertiser", "ID", "Status", "Cash balance", "Refund"], row=row,
            submit_label="Refund and close",
            perform=lambda adv, data: cash_refund(advertiser=adv, by=request.user, reason=data["reason"]),
        )

    def _advertiser_row(self, adv):
        b = advertiser_balances(advertiser=adv)
        return [adv.name, adv.pk, "frozen" if adv.credit_frozen else "not frozen",
                f"{fmt(b.credit_balance + b.frozen_credit_balance, adv.currency)} {adv.currency}"]

    @admin.action(description="Freeze credit (risk control)", permissions=["freeze"],
                  location=[ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM])
    def freeze_credit(self, request, queryset):
        return action_with_reason(
            self, request, queryset, action="freeze_credit", title="Freeze credit",
            intro="Frozen credit can neither be used nor issued until it is unfrozen; expiry dates do not move. "
                  "The advertiser is notified and may appeal.",
            headers=["Advertiser", "ID", "Credit now", "Credit balance"], row=self._advertiser_row,
            submit_label="Freeze credit",
            perform=lambda adv, data: credit_freeze(advertiser=adv, reason=data["reason"], by=request.user),
        )

    @admin.action(description="Unfreeze credit", permissions=["freeze"],
                  location=[ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM])
    def unfreeze_credit(self, request, queryset):
        return action_with_reason(
            self, request, queryset, action="unfreeze_credit", title="Unfreeze credit",
            intro="Credits become usable again and ladder rewards withheld during the freeze are issued.",
            headers=["Advertiser", "ID", "Credit now", "Credit balance"], row=self._advertiser_row,
            submit_label="Unfreeze credit",
            perform=lambda adv, data: credit_unfreeze(advertiser=adv, reason=data["reason"], by=request.user),
        )

    @admin.display(description="Audit log (latest)")
    def audit_trail(self, obj):
        rows = list(AuditLog.objects.filter(advertiser=obj).order_by("-created_at", "-pk")[:RECENT_AUDIT])
        if not rows:
            return "No staff actions yet."
        return format_html(
            "<table><thead><tr><th>When</th><th>Who</th><th>Action</th><th>Target</th><th>Reason</th></tr></thead>"
            '<tbody>{}</tbody></table><p><a href="{}">Full audit log</a></p>',
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", (
                (r.created_at.strftime("%Y-%m-%d %H:%M UTC"), r.actor_name, r.action, r.target, r.reason) for r in rows
            )),
            reverse("admin:portal_auditlog_changelist") + f"?advertiser__id__exact={obj.pk}",
        )

    @admin.display(description="Balances")
    def balances_summary(self, obj):
        b = advertiser_balances(advertiser=obj)
        c = b.currency
        rows = [
            ("Cash balance", fmt(b.cash_balance, c)),
            ("Arrears", fmt(b.arrears, c)),
            ("Usable credit (free + coupons)", fmt(b.credit_balance, c)),
            ("Frozen credit", fmt(b.frozen_credit_balance, c)),
            ("Discount cap remaining", fmt(b.discount_cap_remaining, c)),
            ("Accrued (current bill)", fmt(b.accrued, c)),
            ("Credit line used / limit", f"{fmt(b.credit_line_used, c)} / {fmt(b.credit_line_limit, c)}"),
            ("Billing threshold", fmt(b.billing_threshold, c) if b.billing_threshold is not None else None),
        ]
        credits_url = reverse("admin:promotions_credit_changelist") + f"?advertiser__id__exact={obj.pk}"
        return format_html(
            '<table class="balances"><tbody>{}</tbody></table><p><a href="{}">Credits of this advertiser</a></p>',
            format_html_join("", "<tr><th>{}</th><td>{}</td></tr>",
                             ((k, f"{v} {c}" if v is not None else "—") for k, v in rows)),
            credits_url,
        )

    @admin.display(description="Recent bills")
    def recent_bills(self, obj):
        bills = list(Bill.objects.filter(advertiser=obj).order_by("-issued_at", "-pk")[:RECENT_BILLS])
        if not bills:
            return "No bills yet."
        return _linked_table(
            "recent-bills", ["Bill", "Kind", "Issued", "Amount", "Status"],
            ((reverse("admin:billing_bill_change", args=[b.pk]), b.number or f"#{b.pk}", b.get_kind_display(),
              b.issued_at.strftime("%Y-%m-%d %H:%M UTC"), f"{fmt(b.amount, b.currency)} {b.currency}",
              b.get_status_display()) for b in bills),
            all_url=reverse("admin:billing_bill_changelist") + f"?advertiser__id__exact={obj.pk}", all_label="All bills",
        )

    @admin.display(description="Credits")
    def credits_summary(self, obj):
        credits = list(Credit.objects.filter(advertiser=obj).select_related("ledger_account")
                       .order_by("-created_at", "-pk")[:RECENT_CREDITS])
        if not credits:
            return "No credits yet."
        cur = obj.currency
        return _linked_table(
            "credits", ["Credit", "Kind", "Source", "Amount", "Remaining", "Expires", "Status"],
            ((reverse("admin:promotions_credit_change", args=[c.pk]), f"#{c.pk}", c.get_kind_display(),
              c.get_source_display(), f"{fmt(c.amount, cur)} {cur}", f"{fmt(c.ledger_account.balance, cur)} {cur}",
              c.expires_at.strftime("%Y-%m-%d %H:%M UTC"), c.get_status_display()) for c in credits),
            all_url=reverse("admin:promotions_credit_changelist") + f"?advertiser__id__exact={obj.pk}",
            all_label="All credits",
        )

    @admin.display(description="Recent ledger transactions")
    def recent_transactions(self, obj):
        txs = list(LedgerTransaction.objects.filter(advertiser=obj).order_by("-created_at", "-pk")[:RECENT_TRANSACTIONS])
        if not txs:
            return "No transactions yet."
        return _linked_table(
            "recent-transactions", ["Transaction", "Kind", "Occurred", "Amount", "Memo"],
            ((reverse("admin:billing_ledgertransaction_change", args=[tx.pk]), f"#{tx.pk}", tx.get_kind_display(),
              tx.occurred_at.strftime("%Y-%m-%d %H:%M UTC"), f"{fmt(tx.amount, tx.currency)} {tx.currency}", tx.memo)
             for tx in txs),
            all_url=reverse("admin:billing_ledgertransaction_changelist") + f"?advertiser__id__exact={obj.pk}",
            all_label="All transactions",
        )


def _linked_table(css_class: str, headers: list[str], rows, *, all_url: str, all_label: str):
    """A read-only table of the advertiser page: each row is (link, label, *cells), the first cell
    linked to the object's admin page; under it a link to the whole list."""
    body = format_html_join("", "<tr><td><a href=\"{}\">{}</a></td>{}</tr>", (
        (link, label, format_html_join("", "<td>{}</td>", ((cell,) for cell in cells)))
        for link, label, *cells in rows
    ))
    return format_html(
        '<table class="{}"><thead><tr>{}</tr></thead><tbody>{}</tbody></table><p><a href="{}">{}</a></p>',
        css_class, format_html_join("", "<th>{}</th>", ((h,) for h in headers)), body, all_url, all_label,
    )


class CampaignForm(AuditedForm):
    class Meta:
        model = Campaign
        fields = "__all__"


@admin.register(Campaign)
class CampaignAdmin(AuditedAdminMixin, StaffRoleAdmin):
    form = CampaignForm
    add_perm = change_perm = "manage_accounts"
    list_display = ["id", "name", "advertiser", "objective", "product_source", "shop_id", "status", "created_at"]
    list_display_links = ["id", "name"]
    ordering = ["-id"]
    list_filter = ["status", "objective", "product_source"]
    search_fields = ["name", "id__exact", "advertiser__name", "advertiser__id__exact", "shop_id"]
    list_select_related = ["advertiser"]
    raw_id_fields = ["advertiser"]
    fields = ["advertiser", "name", "objective", "product_source", "shop_id", "status", "created_at", CHANGE_REASON]

    def get_readonly_fields(self, request, obj=None):
        # A campaign never moves to another advertiser: its spend is on that advertiser's ledger.
        return ["advertiser", "created_at"] if obj else ["created_at"]

    def audit_subject(self, obj):
        return "campaign", obj.advertiser, f"campaign {obj.pk}"

    def save_model(self, request, obj, form, change):
        if change:
            fields = [f for f in form.changed_data if f != CHANGE_REASON]
            super().save_model(request, obj, form, change)
            self.audit_fields(request, obj, form, fields)
            return
        data = form.cleaned_data
        created = campaign_create(
            advertiser=data["advertiser"],
            name=data["name"],
            objective=data["objective"],
            product_source=data["product_source"],
            shop_id=data["shop_id"],
        )
        if data["status"] != created.status:
            created.status = data["status"]
            created.save(update_fields=["status"])
        obj.__dict__.update({k: v for k, v in created.__dict__.items() if k != "_state"})
        obj._state.adding = False
        self.audit_created(request, obj, form)


class AuditExportForm(forms.Form):
    """The days to export, in UTC, both included."""

    start = forms.DateField(label="From", widget=forms.DateInput(attrs={"type": "date"}),
                            help_text="First day (UTC), included.")
    end = forms.DateField(label="To", widget=forms.DateInput(attrs={"type": "date"}),
                          help_text="Last day (UTC), included.")

    def clean(self):
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        for name in ("start", "end"):
            day = data.get(name)
            if day is not None and not inputs.TIMESTAMP_MIN.date() <= day < inputs.TIMESTAMP_MAX.date():
                self.add_error(name, f"Choose a day from {inputs.TIMESTAMP_MIN:%Y-%m-%d} to "
                                     f"{inputs.TIMESTAMP_MAX - timedelta(days=1):%Y-%m-%d}.")
        if start and end and start > end and not self.errors:
            self.add_error("end", "The last day must be on or after the first day.")
        return data

    def bounds(self) -> tuple[datetime, datetime]:
        """[start of the first day, start of the day after the last) in UTC."""
        start, end = self.cleaned_data["start"], self.cleaned_data["end"]
        return (datetime.combine(start, time.min, tzinfo=dt_timezone.utc),
                datetime.combine(end + timedelta(days=1), time.min, tzinfo=dt_timezone.utc))


class _Echo:
    """A file-like object whose write returns the line, for csv.writer in a streamed response."""

    def write(self, value):
        return value


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    """Every staff action, append-only: nobody adds, changes or deletes a line here, superusers
    included, and PostgreSQL refuses UPDATE and DELETE on the table (migration portal 0005).
    "Export CSV" streams the lines of a range of days (`portal.audit.audit_csv_rows`)."""

    change_list_template = "admin/portal/auditlog/change_list.html"
    list_display = ["when", "actor_name", "action", "advertiser_name", "target", "reason_text"]
    list_filter = ["action", "created_at"]
    search_fields = ["actor_name", "action", "target", "reason", "advertiser__name", "advertiser__id__exact"]
    list_select_related = ["advertiser"]
    date_hierarchy = "created_at"
    ordering = ["-created_at", "-id"]
    actions = None  # not even the bulk delete action
    fields = ["created_at", "actor_name", "action", "advertiser", "target", "reason", "changes"]
    readonly_fields = fields
    REASON_SHOWN = 300  # characters in the list; the whole reason is on the line's page

    @admin.display(description="When", ordering="created_at")
    def when(self, line):
        return line.created_at.strftime("%Y-%m-%d %H:%M UTC")

    @admin.display(description="Advertiser", ordering="advertiser__name")
    def advertiser_name(self, line):
        return line.advertiser.name if line.advertiser else "—"

    @admin.display(description="Reason")
    def reason_text(self, line):
        return Truncator(line.reason).chars(self.REASON_SHOWN)

    @admin.display(description="Before → after")
    def changes(self, line):
        keys = list(dict.fromkeys([*line.before, *line.after]))
        if not keys:
            return "—"
        shown = lambda value: "—" if value is None else json.dumps(value, ensure_ascii=False)  # noqa: E731
        return format_html(
            '<table class="audit-changes"><thead><tr><th>Field</th><th>Before</th><th>After</th></tr></thead>'
            "<tbody>{}</tbody></table>",
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", (
                (k, shown(line.before.get(k)), shown(line.after.get(k))) for k in keys)),
        )

    def get_urls(self):
        return [path("export/", self.admin_site.admin_view(self.export_view), name="portal_auditlog_export"),
                *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        extra = {"export_url": reverse("admin:portal_auditlog_export")}
        return super().changelist_view(request, {**extra, **(extra_context or {})})

    def export_view(self, request):
        """GET with from/to days: the CSV, streamed; without them, or wrong, the form with its errors.
        The export itself is audited: who took which days of the log."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = AuditExportForm(request.GET if {"start", "end"} & set(request.GET) else None)
        if form.is_valid():
            start, end = form.bounds()
            first, last = form.cleaned_data["start"], form.cleaned_data["end"]
            with transaction.atomic():
                audit_record(actor=request.user, action="audit_log_export", target=f"audit log {first}…{last}",
                             reason=f"Exported the audit log from {first} to {last} (UTC) as CSV.",
                             after={"from": str(first), "to": str(last)})
            writer = csv.writer(_Echo())
            response = StreamingHttpResponse((writer.writerow(r) for r in audit_csv_rows(start=start, end=end)),
                                             content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="audit-log-{first}-to-{last}.csv"'
            return response
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/portal/auditlog/export.html", {
            **self.admin_site.each_context(request),
            "title": "Export the audit log as CSV",
            "opts": self.opts,
            "form": form,
            "changelist_url": reverse("admin:portal_auditlog_changelist"),
        })


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "advertiser", "kind", "subject", "emailed_at", "read_at"]
    list_filter = ["kind", "created_at"]
    search_fields = ["subject", "key", "advertiser__name", "advertiser__id__exact"]
    list_select_related = ["advertiser"]
    ordering = ["-created_at", "-id"]


# --- who is staff: Django's user admin, audited -------------------------------------------------------

User = get_user_model()
STAFF_FLAGS = ["is_active", "is_staff", "is_superuser"]
USER_DETAILS = ["username", "first_name", "last_name", "email"]

admin.site.unregister(User)


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    """Django's user admin (superusers, by Django's model permissions). A change of who is active,
    staff, a superuser or in which groups (the staff roles) is written to the audit log, and so are
    a new user, an edit of the name or email, a password set here and a deletion."""

    def save_related(self, request, form, formsets, change):
        user = form.instance
        groups_before = sorted(user.groups.values_list("name", flat=True)) if change else []
        super().save_related(request, form, formsets, change)
        if not change:
            audit_record(actor=request.user, action="staff_user_create", target=f"user {user.get_username()}",
                         reason=f"Created by {request.user.get_username()} in the admin.",
                         after={"username": user.get_username(), **{f: getattr(user, f) for f in STAFF_FLAGS}})
            return
        edited = [f for f in USER_DETAILS if f in form.changed_data]
        if edited:
            audit_record(actor=request.user, action="staff_user_edit", target=f"user {user.get_username()}",
                         reason=f"Edited by {request.user.get_username()} in the admin.",
                         before={f: form.initial.get(f) for f in edited}, after={f: getattr(user, f) for f in edited})
        groups_after = sorted(user.groups.values_list("name", flat=True))
        before = {f: form.initial.get(f) for f in STAFF_FLAGS if f in form.changed_data}
        after = {f: getattr(user, f) for f in before}
        if groups_before != groups_after:
            before["groups"], after["groups"] = groups_before, groups_after
        if before:
            audit_record(actor=request.user, action="staff_user_change", target=f"user {user.get_username()}",
                         reason=f"Edited by {request.user.get_username()} in the admin.", before=before, after=after)

    def user_change_password(self, request, id, form_url=""):
        """Django's password form; a password set here is audited (never the password itself)."""
        with transaction.atomic():
            response = super().user_change_password(request, id, form_url)
            if request.method == "POST" and response.status_code == 302:
                user = self.get_object(request, id)
                audit_record(actor=request.user, action="staff_user_password", target=f"user {user.get_username()}",
                             reason=f"Password set by {request.user.get_username()} in the admin.")
        return response

    def delete_model(self, request, obj):
        with transaction.atomic():
            audit_record(actor=request.user, action="staff_user_delete", target=f"user {obj.get_username()}",
                         reason=f"Deleted by {request.user.get_username()} in the admin.",
                         before={"username": obj.get_username(), **{f: getattr(obj, f) for f in STAFF_FLAGS}})
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for user in queryset:
                self.delete_model(request, user)


admin.site.unregister(Group)


@admin.register(Group)
class GroupAdmin(DjangoGroupAdmin):
    """Django's group admin (superusers). Groups are the staff roles (`portal.permissions`): creating,
    renaming, changing the permissions of or deleting one is audited."""

    def save_related(self, request, form, formsets, change):
        group = form.instance
        before = {"name": form.initial.get("name"),
                  "permissions": sorted(group.permissions.values_list("codename", flat=True))} if change else {}
        super().save_related(request, form, formsets, change)
        after = {"name": group.name, "permissions": sorted(group.permissions.values_list("codename", flat=True))}
        if before != after:
            audit_record(actor=request.user, action="staff_group_change" if change else "staff_group_create",
                         target=f"group {group.name}",
                         reason=f"{'Edited' if change else 'Created'} by {request.user.get_username()} in the admin.",
                         before=before, after=after)

    def delete_model(self, request, obj):
        with transaction.atomic():
            audit_record(actor=request.user, action="staff_group_delete", target=f"group {obj.name}",
                         reason=f"Deleted by {request.user.get_username()} in the admin.", before={"name": obj.name})
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for group in queryset:
                self.delete_model(request, group)
