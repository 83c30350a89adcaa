"""Credit in the Django admin: staff grant and withdraw credit only through the services (R22).

"Add credit" is a grant form that calls `credit_grant` (a reason is required, `granted_by` is the
staff user, and the form carries its own idempotency key so a double submit grants once). A
credit is never edited or deleted here; "Withdraw credit" is an action with a confirmation page
that asks for a reason and calls `credit_withdraw`. Both are logged in the admin history.
"""

import uuid

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import ActionLocation, helpers
from django.contrib.admin.widgets import AdminSplitDateTime, AutocompleteSelect
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from billing.models import LedgerEntry
from billing.money import fmt
from portal.errors import BusinessError
from portal.models import Advertiser, Objective, ProductSource
from promotions.credits import credit_grant, credit_withdraw
from promotions.models import Credit, CreditKind, CreditSource, Enrollment, Program, Tier

# Which form field a service refusal belongs to; the rest are shown at the top of the form.
ERROR_FIELDS = {
    "invalid_amount": "amount",
    "invalid_percent": "percent",
    "invalid_reason": "reason",
    "invalid_validity": "expires_at",
    "invalid_objective": "eligible_objectives",
    "invalid_product_source": "eligible_product_source",
    "invalid_kind": "kind",
}


class CreditGrantForm(forms.Form):
    advertiser = forms.ModelChoiceField(queryset=Advertiser.objects.all())
    kind = forms.ChoiceField(choices=CreditKind.choices, initial=CreditKind.FREE,
                             help_text="Free credit pays every eligible campaign; a coupon only the campaigns the "
                                       "advertiser's admin assigns it to; a discount takes a percentage of each charge "
                                       "up to the amount (its cap).")
    amount = forms.CharField(max_length=32, help_text="In the advertiser's currency; for a discount, the cap.")
    percent = forms.DecimalField(required=False, max_digits=5, decimal_places=2,
                                 help_text="Discount only: percent off each eligible charge.")
    valid_from = forms.SplitDateTimeField(required=False, widget=AdminSplitDateTime,
                                          help_text="UTC. Empty: now.")
    expires_at = forms.SplitDateTimeField(required=False, widget=AdminSplitDateTime,
                                          help_text="UTC. Empty: 90 days after valid from.")
    eligible_objectives = forms.MultipleChoiceField(choices=Objective.choices, required=False,
                                                    widget=forms.CheckboxSelectMultiple,
                                                    help_text="None ticked: every objective.")
    eligible_product_source = forms.ChoiceField(choices=[("", "Any")] + list(ProductSource.choices), required=False)
    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
                             help_text="Required. Shown to support staff and kept in the audit trail.")
    idempotency_key = forms.CharField(max_length=100, widget=forms.HiddenInput)

    def __init__(self, *args, admin_site=None, **kwargs):
        super().__init__(*args, **kwargs)
        if admin_site is not None:
            self.fields["advertiser"] = forms.ModelChoiceField(
                queryset=Advertiser.objects.all(),
                widget=AutocompleteSelect(Credit._meta.get_field("advertiser"), admin_site),
            )

    def clean(self):
        data = super().clean()
        if data.get("kind") == CreditKind.DISCOUNT and data.get("percent") is None:
            self.add_error("percent", "A discount needs a percent.")
        if data.get("kind") != CreditKind.DISCOUNT and data.get("percent") is not None:
            self.add_error("percent", "Only a discount has a percent.")
        return data

    def grant_kwargs(self) -> dict:
        d = self.cleaned_data
        return dict(
            advertiser=d["advertiser"],
            kind=d["kind"],
            amount=d["amount"].strip(),
            percent=d["percent"],
            valid_from=d["valid_from"],
            expires_at=d["expires_at"],
            eligible_objectives=d["eligible_objectives"],
            eligible_product_source=d["eligible_product_source"],
            reason=d["reason"],
            idempotency_key=d["idempotency_key"],
            source=CreditSource.MANAGED,
        )


class WithdrawForm(forms.Form):
    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
                             help_text="Required. Kept in the ledger memo and the audit trail.")


@admin.register(Credit)
class CreditAdmin(admin.ModelAdmin):
    list_display = ["id", "advertiser", "kind", "source", "money", "remaining_money", "percent", "status",
                    "valid_from", "expires_at"]
    list_display_links = ["id", "kind"]
    list_filter = ["status", "kind", "source", "expires_at"]
    search_fields = ["id__exact", "advertiser__name", "advertiser__id__exact", "reason", "granted_by__username"]
    list_select_related = ["advertiser", "ledger_account"]
    ordering = ["-created_at", "-id"]
    show_full_result_count = False
    fields = ["advertiser", "kind", "source", "status", "amount", "remaining_money", "percent", "valid_from",
              "expires_at", "eligible_objectives", "eligible_product_source", "assigned_campaigns", "reason",
              "granted_by", "idempotency_key", "created_at", "ended_at", "ledger_history"]
    readonly_fields = fields
    actions = ["withdraw_credit"]

    def has_change_permission(self, request, obj=None):
        return False  # read-only: credit changes only through grant, assign, withdraw, expiry

    def has_delete_permission(self, request, obj=None):
        return False

    def has_withdraw_permission(self, request):
        return request.user.has_perm("promotions.change_credit")

    @admin.display(description="Amount", ordering="amount")
    def money(self, credit):
        return f"{fmt(credit.amount, credit.advertiser.currency)} {credit.advertiser.currency}"

    @admin.display(description="Remaining", ordering="ledger_account__balance")
    def remaining_money(self, credit):
        return f"{fmt(credit.remaining, credit.advertiser.currency)} {credit.advertiser.currency}"

    @admin.display(description="Assigned campaigns")
    def assigned_campaigns(self, credit):
        if credit.kind != CreditKind.ASSIGNABLE:
            return "— (applies to every eligible campaign)"
        campaigns = list(credit.campaigns.order_by("pk"))
        if not campaigns:
            return "Not assigned: pays nothing until the advertiser's admin assigns it."
        return format_html_join(", ", '<a href="{}">{}</a>', (
            (reverse("admin:portal_campaign_change", args=[c.pk]), c.name) for c in campaigns
        ))

    @admin.display(description="Ledger history")
    def ledger_history(self, credit):
        entries = (
            LedgerEntry.objects.filter(account_id=credit.ledger_account_id)
            .select_related("transaction")
            .order_by("-pk")[:50]
        )
        currency = credit.advertiser.currency
        rows = format_html_join("", '<tr><td><a href="{}">#{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>', (
            (
                reverse("admin:billing_ledgertransaction_change", args=[e.transaction_id]),
                e.transaction_id,
                e.transaction.get_kind_display(),
                e.transaction.occurred_at.strftime("%Y-%m-%d %H:%M UTC"),
                ("+" if e.side == credit.ledger_account.normal else "−") + fmt(e.amount, currency),
                e.transaction.memo,
            )
            for e in entries
        ))
        return format_html(
            "<table><thead><tr><th>Transaction</th><th>Kind</th><th>Occurred</th><th>Change</th><th>Memo</th></tr>"
            "</thead><tbody>{}</tbody></table>",
            rows,
        )

    # Grant ---------------------------------------------------------------------------------------

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            form = CreditGrantForm(request.POST, admin_site=self.admin_site)
            if form.is_valid():
                try:
                    credit = credit_grant(**form.grant_kwargs(), granted_by=request.user)
                except BusinessError as e:
                    form.add_error(ERROR_FIELDS.get(e.code), e.message)
                else:
                    self.log_addition(request, credit, f"Granted: {credit.reason}")
                    self.message_user(
                        request,
                        f"Granted {credit.get_kind_display().lower()} #{credit.pk} of "
                        f"{fmt(credit.amount, credit.advertiser.currency)} {credit.advertiser.currency} "
                        f"to {credit.advertiser.name}.",
                        messages.SUCCESS,
                    )
                    if "_addanother" in request.POST:
                        return HttpResponseRedirect(request.path)
                    return HttpResponseRedirect(reverse("admin:promotions_credit_change", args=[credit.pk]))
        else:
            initial = {"idempotency_key": f"admin-{uuid.uuid4().hex}", "kind": CreditKind.FREE}
            if request.GET.get("advertiser", "").isdigit():
                initial["advertiser"] = request.GET["advertiser"]
            form = CreditGrantForm(initial=initial, admin_site=self.admin_site)
        fieldsets = [
            (None, {"fields": ["advertiser", "kind", "amount", "percent", "reason", "idempotency_key"]}),
            ("Validity", {"fields": ["valid_from", "expires_at"]}),
            ("Eligibility", {"fields": ["eligible_objectives", "eligible_product_source"]}),
        ]
        adminform = helpers.AdminForm(form, fieldsets, {}, model_admin=self)
        context = {
            **self.admin_site.each_context(request),
            "title": "Grant credit",
            "subtitle": None,
            "adminform": adminform,
            "object_id": None,
            "original": None,
            "is_popup": False,
            "to_field": None,
            "media": self.media + adminform.media,
            "inline_admin_formsets": [],
            "errors": helpers.AdminErrorList(form, []),
            "preserved_filters": self.get_preserved_filters(request),
            "show_save_and_continue": False,
            **(extra_context or {}),
        }
        return self.render_change_form(request, context, add=True, form_url=form_url)

    # Withdraw ------------------------------------------------------------------------------------

    @admin.action(
        description="Withdraw credit",
        permissions=["withdraw"],
        location=[ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM],
    )
    def withdraw_credit(self, request, queryset):
        credits = list(queryset.select_related("advertiser", "ledger_account").order_by("pk"))
        for credit in credits:
            credit.remaining_display = f"{fmt(credit.remaining, credit.advertiser.currency)} {credit.advertiser.currency}"
        form = WithdrawForm(request.POST if "confirm" in request.POST else None)
        if form.is_valid():
            done, refused = [], []
            for credit in credits:
                try:
                    credit_withdraw(credit=credit, reason=form.cleaned_data["reason"], by=request.user)
                except BusinessError as e:
                    refused.append(f"#{credit.pk}: {e.message}")
                else:
                    done.append(credit)
                    self.log_change(request, credit, f"Withdrawn: {form.cleaned_data['reason'].strip()}")
            if done:
                self.message_user(request, f"Withdrew {len(done)} credit(s): {', '.join(f'#{c.pk}' for c in done)}.",
                                  messages.SUCCESS)
            for line in refused:
                self.message_user(request, f"Not withdrawn {line}", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:promotions_credit_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Withdraw credit",
            "opts": self.opts,
            "credits": credits,
            "form": form,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "changelist_url": reverse("admin:promotions_credit_changelist"),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/promotions/credit/withdraw_confirmation.html", context)


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class TierInline(ReadOnlyInline):
    model = Tier
    fields = ["threshold", "reward", "immediate"]
    readonly_fields = fields


@admin.register(Program)
class ProgramAdmin(admin.ModelAdmin):
    """Read-only: programs are created with `program_create`, which checks tiers and codes."""

    list_display = ["id", "name", "kind", "currency", "window_days", "reward_kind", "code", "redemptions",
                    "max_redemptions", "ends_at"]
    list_filter = ["kind", "reward_kind"]
    search_fields = ["name", "code"]
    inlines = [TierInline]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Enrollment)
class EnrollmentAdmin(admin.ModelAdmin):
    """Read-only: enrollment goes through `enrollment_create` (R19 checks), rewards through the job."""

    list_display = ["id", "advertiser", "program", "status", "qualifying_spend", "window_start", "window_end"]
    list_filter = ["status", "program"]
    search_fields = ["advertiser__name", "advertiser__id__exact"]
    list_select_related = ["advertiser", "program"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
