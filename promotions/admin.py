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
from django.http import FileResponse, Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from billing.models import LedgerEntry
from billing.money import fmt
from portal.errors import BusinessError
from portal.models import Advertiser, Objective, ProductSource
from portal.admin import action_with_reason
from promotions.appeals import appeal_decide, attachments_dir
from promotions.credits import credit_grant, credit_withdraw
from promotions.models import (
    Appeal,
    AppealAttachment,
    Credit,
    CreditKind,
    CreditSource,
    Enrollment,
    FreezeEvent,
    Program,
    Tier,
)

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
        def row(credit):
            currency = credit.advertiser.currency
            return [format_html('<a href="{}">#{}</a>', reverse("admin:promotions_credit_change", args=[credit.pk]),
                                credit.pk),
                    f"{credit.advertiser.name} ({credit.advertiser_id})", credit.get_kind_display(),
                    credit.get_status_display(), f"{fmt(credit.remaining, currency)} {currency}",
                    credit.expires_at.strftime("%Y-%m-%d %H:%M UTC")]

        return action_with_reason(
            self, request, queryset.select_related("advertiser", "ledger_account"), action="withdraw_credit",
            title="Withdraw credit",
            intro="Withdrawing takes back what is left of each credit below: the remaining amount is booked to "
                  "forfeited credit on the ledger and the credit is marked withdrawn. This cannot be undone.",
            headers=["Credit", "Advertiser", "Kind", "Status", "Remaining", "Expires"], row=row,
            submit_label="Withdraw credit",
            perform=lambda credit, data: credit_withdraw(credit=credit, reason=data["reason"], by=request.user),
        )


class AttachmentInline(admin.TabularInline):
    model = AppealAttachment
    fields = ["file", "content_type", "size", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="File")
    def file(self, att):
        url = reverse("admin:promotions_appeal_attachment", args=[att.appeal_id, att.pk])
        return format_html('<a href="{}">{}</a>', url, att.original_name)


class DecisionForm(forms.Form):
    reason = forms.CharField(label="Decision note", max_length=2000,
                             widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
                             help_text="Required. The advertiser reads it; it is kept in the audit log.")


class RejectForm(DecisionForm):
    withdraw_credits = forms.BooleanField(
        required=False, label="Also withdraw the credit",
        help_text="For policy violations: what is left of every live credit is withdrawn on the ledger.",
    )


@admin.register(Appeal)
class AppealAdmin(admin.ModelAdmin):
    """Staff review appeals against a credit freeze (R31) and decide with `appeal_decide`."""

    list_display = ["id", "advertiser", "status", "filed_by", "created_at", "decided_by", "decided_at"]
    list_filter = ["status", "created_at"]
    search_fields = ["id__exact", "advertiser__name", "advertiser__id__exact", "message"]
    list_select_related = ["advertiser", "filed_by", "decided_by"]
    ordering = ["status", "-created_at"]
    fields = ["advertiser", "status", "message", "filed_by", "created_at", "decided_by", "decided_at",
              "decision_note", "credits_withdrawn", "credit_summary"]
    readonly_fields = fields
    inlines = [AttachmentInline]
    actions = ["approve_appeal", "reject_appeal"]

    def has_add_permission(self, request):
        return False  # advertisers file appeals from the Promotions page

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_decide_permission(self, request):
        return request.user.has_perm("promotions.change_appeal")

    @admin.display(description="Credit of the advertiser")
    def credit_summary(self, appeal):
        adv = appeal.advertiser
        url = reverse("admin:promotions_credit_changelist") + f"?advertiser__id__exact={adv.pk}"
        live = Credit.objects.filter(advertiser=adv).exclude(status__in=["used_up", "expired", "withdrawn"])
        return format_html('{} credit{} not ended · account credit {} · <a href="{}">see credits</a>',
                           live.count(), "" if live.count() == 1 else "s",
                           "frozen" if adv.credit_frozen else "not frozen", url)

    def _row(self, appeal):
        return [format_html('<a href="{}">#{}</a>', reverse("admin:promotions_appeal_change", args=[appeal.pk]),
                            appeal.pk),
                f"{appeal.advertiser.name} ({appeal.advertiser_id})", appeal.get_status_display(),
                appeal.created_at.strftime("%Y-%m-%d %H:%M UTC"), appeal.message[:200]]

    @admin.action(description="Approve appeal (unfreeze credit)", permissions=["decide"],
                  location=[ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM])
    def approve_appeal(self, request, queryset):
        return action_with_reason(
            self, request, queryset.select_related("advertiser"), action="approve_appeal", title="Approve appeal",
            intro="Approving unfreezes the advertiser's credit and issues ladder rewards withheld meanwhile.",
            headers=["Appeal", "Advertiser", "Status", "Filed", "Message"], row=self._row,
            submit_label="Approve", form_class=DecisionForm,
            perform=lambda appeal, data: appeal_decide(appeal=appeal, decision="approve", note=data["reason"],
                                                       by=request.user),
        )

    @admin.action(description="Reject appeal", permissions=["decide"],
                  location=[ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM])
    def reject_appeal(self, request, queryset):
        return action_with_reason(
            self, request, queryset.select_related("advertiser"), action="reject_appeal", title="Reject appeal",
            intro="Rejecting keeps the credit frozen. Tick the box to also withdraw it for a policy violation.",
            headers=["Appeal", "Advertiser", "Status", "Filed", "Message"], row=self._row,
            submit_label="Reject", form_class=RejectForm,
            perform=lambda appeal, data: appeal_decide(appeal=appeal, decision="reject", note=data["reason"],
                                                       by=request.user, withdraw_credits=data["withdraw_credits"]),
        )

    def get_urls(self):
        return [
            path("<int:appeal_id>/attachments/<int:attachment_id>/",
                 self.admin_site.admin_view(self.attachment_view), name="promotions_appeal_attachment"),
            *super().get_urls(),
        ]

    def attachment_view(self, request, appeal_id: int, attachment_id: int):
        """Staff download an appeal's file; its type was checked by content when it was filed."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        att = get_object_or_404(AppealAttachment, pk=attachment_id, appeal_id=appeal_id)
        path = attachments_dir() / att.stored_name
        if not path.is_file():
            raise Http404("The file is missing.")
        response = FileResponse(open(path, "rb"), content_type=att.content_type, as_attachment=True,
                                filename=att.original_name)
        response["X-Content-Type-Options"] = "nosniff"
        return response


@admin.register(FreezeEvent)
class FreezeEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "advertiser", "frozen", "rule", "by", "reason"]
    list_filter = ["frozen", "rule"]
    search_fields = ["advertiser__name", "advertiser__id__exact", "reason"]
    list_select_related = ["advertiser", "by"]
    ordering = ["-created_at", "-id"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


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
