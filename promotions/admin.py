"""Credit and appeals in the Django admin: staff act only through the services (R22, R30, R31).

"Add credit" is a grant form that calls `credit_grant` (a reason is required, `granted_by` is the
staff user, and the form carries its own idempotency key so a double submit grants once). A
credit is never edited or deleted here; "Withdraw credit" is an action with a confirmation page
that asks for a reason and calls `credit_withdraw`. Both are logged in the admin history and the
audit log.

Appeals: the list opens on the queue of open appeals, oldest first. An appeal's page is the review
screen — message, attachments, the account's freeze history, failed payments, recent spend with
its funding, and its credits — with Approve / Reject / Reject and withdraw buttons that take a
decision note and call `appeal_decide`. Who may press which button is `portal.permissions.staff_can`.

Programs: "Add program" is a form of `program_create`'s arguments (the API's `POST /programs`); the
service checks them and writes the audit line, and its refusals are shown on the form.
"""

import re
import uuid

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import ActionLocation, helpers
from django.contrib.admin.widgets import AdminSplitDateTime, AutocompleteSelect
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import FileResponse, Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join, linebreaks
from django.utils.safestring import mark_safe
from django.utils.timesince import timesince

from billing.history import SPEND_KINDS, transaction_rows, transactions_query
from billing.models import Bill, BillStatus, LedgerEntry
from billing.money import MINOR_UNITS, fmt
from portal.admin import (
    ReadOnlyAdmin,
    StaffRoleAdmin,
    StaffRolePermissions,
    action_with_reason,
    add_error_for,
    refusal,
    service_form_page,
)
from portal.errors import BusinessError
from portal.models import Advertiser, Objective, ProductSource
from portal.permissions import staff_can
from promotions.appeals import appeal_decide, attachments_dir
from promotions.credits import credit_grant, credit_withdraw
from promotions.programs import program_create
from promotions.models import (
    Appeal,
    AppealAttachment,
    AppealStatus,
    Credit,
    CreditKind,
    CreditSource,
    CreditStatus,
    Enrollment,
    FreezeEvent,
    Program,
    ProgramKind,
    Tier,
)

RECENT_SPEND = 20
HISTORY_ROWS = 50

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
class CreditAdmin(StaffRoleAdmin):
    """Every staff role sees credits; granting and withdrawing need a Billing manager."""

    add_perm = "grant_credit"
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
    actions = ["withdraw_credit"]  # otherwise read-only: credit changes through grant, assign, withdraw, expiry

    def has_withdraw_permission(self, request):
        return staff_can(request.user, "withdraw_credit")

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
                    form.add_error(ERROR_FIELDS.get(e.code), refusal(e))
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
        return service_form_page(self, request, form=form, fieldsets=fieldsets, title="Grant credit",
                                 form_url=form_url, extra_context=extra_context)

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


class DecisionForm(forms.Form):
    reason = forms.CharField(label="Decision note", max_length=2000,
                             widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
                             help_text="Required. The advertiser reads it; it is kept in the audit log.")


# The review screen's buttons: decision, whether credit is withdrawn, and what the staff user needs.
DECISIONS = {
    "approve": ("approve", False, ["decide_appeal"]),
    "reject": ("reject", False, ["decide_appeal"]),
    "reject_withdraw": ("reject", True, ["decide_appeal", "withdraw_credit"]),
}
DECIDED_MESSAGES = {
    "approve": "approved: the credit is unfrozen",
    "reject": "rejected: the credit stays frozen",
    "reject_withdraw": "rejected and the credit withdrawn",
}


def _may(user, decision: str) -> bool:
    return all(staff_can(user, perm) for perm in DECISIONS[decision][2])


class AppealQueueFilter(admin.SimpleListFilter):
    """The appeals list opens on the queue: open appeals, oldest first (`AppealAdmin.get_ordering`)."""

    title = "queue"
    parameter_name = "queue"
    DEFAULT = "open"

    def lookups(self, request, model_admin):
        return [("open", "Open — oldest first"), ("decided", "Decided"), ("all", "All")]

    def value(self):
        return super().value() or self.DEFAULT

    def choices(self, changelist):
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.filter(status=AppealStatus.OPEN)
        if self.value() == "decided":
            return queryset.exclude(status=AppealStatus.OPEN)
        return queryset


def _when(t) -> str:
    return t.strftime("%Y-%m-%d %H:%M UTC") if t else "—"


def _table(headers, rows, empty: str):
    """A small read-only table for the review screen; cells are escaped unless already safe HTML."""
    if not rows:
        return empty
    return format_html(
        "<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>",
        format_html_join("", "<th>{}</th>", ((h,) for h in headers)),
        format_html_join("", "<tr>{}</tr>", (
            (format_html_join("", "<td>{}</td>", ((cell,) for cell in row)),) for row in rows
        )),
    )


@admin.register(Appeal)
class AppealAdmin(StaffRoleAdmin):
    """Staff review appeals against a credit freeze (R31) and decide with `appeal_decide`."""

    change_form_template = "admin/promotions/appeal/change_form.html"
    # Seven short columns, so "Decided" stays beside the filter sidebar at 1366 px.
    list_display = ["id", "advertiser_name", "status", "waiting", "files", "filed", "decided"]
    list_filter = [AppealQueueFilter, "status", "created_at"]
    search_fields = ["id__exact", "advertiser__name", "advertiser__id__exact", "message"]
    list_select_related = ["advertiser", "filed_by", "decided_by"]
    fieldsets = [
        ("Appeal", {"fields": ["advertiser_link", "status", "filed_by", "created_at", "message_text",
                               "attachment_links"]}),
        ("Decision", {"fields": ["decided_by", "decided_at", "decision_note", "credits_withdrawn"]}),
        ("Freeze history", {"fields": ["freeze_history"]}),
        ("Failed payments", {"fields": ["failed_payments"]}),
        (f"Recent spend (last {RECENT_SPEND} charges)", {"fields": ["recent_spend"]}),
        ("Credits", {"fields": ["credits_table"]}),
        ("Earlier appeals of this account", {"fields": ["other_appeals"]}),
    ]
    readonly_fields = [f for _, opts in fieldsets for f in opts["fields"]]
    actions = ["approve_appeal", "reject_appeal", "reject_and_withdraw_appeal"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(attachment_count=Count("attachments"))

    def get_ordering(self, request):
        if request.GET.get(AppealQueueFilter.parameter_name, AppealQueueFilter.DEFAULT) == "open":
            return ["created_at", "id"]  # the queue: whoever has waited longest comes first
        return ["-created_at", "-id"]

    def get_fieldsets(self, request, obj=None):
        if obj is not None and obj.status == AppealStatus.OPEN:
            return [fs for fs in self.fieldsets if fs[0] != "Decision"]
        return self.fieldsets

    def has_decide_permission(self, request):
        return _may(request.user, "approve")

    def has_decide_and_withdraw_permission(self, request):
        return _may(request.user, "reject_withdraw")

    # List columns --------------------------------------------------------------------------------

    @admin.display(description="Advertiser", ordering="advertiser__name")
    def advertiser_name(self, appeal):
        return appeal.advertiser.name

    @admin.display(description="Filed", ordering="created_at")
    def filed(self, appeal):
        return f"{_when(appeal.created_at)} by {appeal.filed_by.get_username()}"

    @admin.display(description="Decided", ordering="decided_at")
    def decided(self, appeal):
        if appeal.decided_at is None:
            return "—"
        who = appeal.decided_by.get_username() if appeal.decided_by else "system"
        return f"{_when(appeal.decided_at)} by {who}"

    @admin.display(description="Waiting")
    def waiting(self, appeal):
        return timesince(appeal.created_at) if appeal.status == AppealStatus.OPEN else "—"

    @admin.display(description="Files", ordering="attachment_count")
    def files(self, appeal):
        return appeal.attachment_count

    # The review screen ---------------------------------------------------------------------------

    @admin.display(description="Advertiser")
    def advertiser_link(self, appeal):
        adv = appeal.advertiser
        return format_html('<a href="{}">{}</a> · ID {} · {} · credit {}',
                           reverse("admin:portal_advertiser_change", args=[adv.pk]), adv.name, adv.pk,
                           adv.get_status_display(), "frozen" if adv.credit_frozen else "not frozen")

    @admin.display(description="Message")
    def message_text(self, appeal):
        return mark_safe(linebreaks(appeal.message, autoescape=True))  # escaped, then paragraphs

    @admin.display(description="Attachments")
    def attachment_links(self, appeal):
        files = list(appeal.attachments.order_by("pk"))
        if not files:
            return "No files attached."
        return format_html_join(mark_safe("<br>"), '<a href="{}" download>{}</a> ({}, {} KB)', (
            (reverse("admin:promotions_appeal_attachment", args=[appeal.pk, f.pk]), f.original_name,
             f.content_type, max(1, round(f.size / 1024)))
            for f in files
        ))

    @admin.display(description="Freeze history")
    def freeze_history(self, appeal):
        events = FreezeEvent.objects.filter(advertiser_id=appeal.advertiser_id).select_related("by").order_by(
            "-created_at", "-pk")[:HISTORY_ROWS]
        return _table(["When", "Event", "By", "Reason"], [
            (_when(e.created_at), "Frozen" if e.frozen else "Unfrozen",
             f"rule {e.rule}" if e.rule else (e.by.get_username() if e.by else "system"), e.reason)
            for e in events
        ], "No freeze recorded.")

    @admin.display(description="Failed payments")
    def failed_payments(self, appeal):
        adv = appeal.advertiser
        bills = Bill.objects.filter(advertiser=adv, status__in=[BillStatus.FAILED, BillStatus.OVERDUE]).order_by(
            "-issued_at", "-pk")[:HISTORY_ROWS]
        table = _table(["Bill", "Kind", "Amount", "Status", "Attempts", "Issued", "Due", "Last error"], [
            (format_html('<a href="{}">{}</a>', reverse("admin:billing_bill_change", args=[b.pk]),
                         b.number or f"#{b.pk}"),
             b.get_kind_display(), f"{fmt(b.amount, b.currency)} {b.currency}", b.get_status_display(), b.attempts,
             _when(b.issued_at), _when(b.due_at), b.last_error)
            for b in bills
        ], "No failed or overdue bill.")
        return format_html("<p>Failed payments in a row: {}</p>{}", adv.failed_payments, table)

    @admin.display(description="Recent spend")
    def recent_spend(self, appeal):
        adv = appeal.advertiser
        rows = transaction_rows(transactions_query(advertiser=adv).filter(kind__in=SPEND_KINDS)[:RECENT_SPEND])
        return _table(["Occurred", "Kind", "Campaign", "Amount", "Paid by"], [
            (_when(r.occurred_at), r.label, r.campaign, f"{fmt(-r.amount, r.currency)} {r.currency}",
             " · ".join(f"{p.label} {fmt(p.amount, r.currency)}" for p in r.funding) or "—")
            for r in rows
        ], "No spend yet.")

    @admin.display(description="Credits")
    def credits_table(self, appeal):
        adv = appeal.advertiser
        credits = Credit.objects.filter(advertiser=adv).select_related("ledger_account").order_by(
            "-created_at", "-pk")[:HISTORY_ROWS]
        url = reverse("admin:promotions_credit_changelist") + f"?advertiser__id__exact={adv.pk}"
        table = _table(["Credit", "Source", "Status", "Amount", "Remaining", "Expires"], [
            (format_html('<a href="{}">{}</a>', reverse("admin:promotions_credit_change", args=[c.pk]), c),
             c.get_source_display(), c.get_status_display(), f"{fmt(c.amount, adv.currency)} {adv.currency}",
             f"{fmt(c.remaining, adv.currency)} {adv.currency}", _when(c.expires_at))
            for c in credits
        ], "No credit.")
        return format_html('{}<p><a href="{}">All credits of this advertiser</a></p>', table, url)

    @admin.display(description="Earlier appeals")
    def other_appeals(self, appeal):
        others = Appeal.objects.filter(advertiser_id=appeal.advertiser_id).exclude(pk=appeal.pk).order_by(
            "-created_at")[:HISTORY_ROWS]
        return _table(["Appeal", "Filed", "Status", "Decision note"], [
            (format_html('<a href="{}">#{}</a>', reverse("admin:promotions_appeal_change", args=[a.pk]), a.pk),
             _when(a.created_at), a.get_status_display(), a.decision_note)
            for a in others
        ], "None.")

    def change_view(self, request, object_id, form_url="", extra_context=None):
        appeal = self.get_object(request, object_id)
        extra = {}
        if appeal is not None and appeal.status == AppealStatus.OPEN:
            extra = {
                "decision_form": DecisionForm(),
                "decide_url": reverse("admin:promotions_appeal_decide", args=[appeal.pk]),
                "may_decide": _may(request.user, "approve"),
                "may_withdraw": _may(request.user, "reject_withdraw"),
            }
        return super().change_view(request, object_id, form_url, {**extra, **(extra_context or {})})

    def decide_view(self, request, appeal_id: int):
        """The review screen's buttons: approve, reject, or reject and withdraw, with a note."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        decision = request.POST.get("decision", "")
        if decision not in DECISIONS or not _may(request.user, decision):
            raise PermissionDenied
        appeal = get_object_or_404(Appeal.objects.select_related("advertiser"), pk=appeal_id)
        page = reverse("admin:promotions_appeal_change", args=[appeal.pk])
        form = DecisionForm(request.POST)
        if not form.is_valid():
            self.message_user(request, "A decision note is required: the advertiser reads it.", messages.ERROR)
            return HttpResponseRedirect(page)
        verb, withdraw, _ = DECISIONS[decision]
        if withdraw and "confirm" not in request.POST:
            return self._withdraw_confirmation(request, appeal, form.cleaned_data["reason"])
        try:
            appeal_decide(appeal=appeal, decision=verb, note=form.cleaned_data["reason"], by=request.user,
                          withdraw_credits=withdraw)
        except BusinessError as e:
            self.message_user(request, f"Appeal #{appeal.pk}: {refusal(e)}", messages.ERROR)
            return HttpResponseRedirect(page)
        self.message_user(request, f"Appeal #{appeal.pk} of {appeal.advertiser.name} {DECIDED_MESSAGES[decision]}. "
                                   "The advertiser has been notified.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:promotions_appeal_changelist"))

    def _withdraw_confirmation(self, request, appeal, note: str):
        adv = appeal.advertiser
        live = list(Credit.objects.filter(
            advertiser=adv, status__in=[CreditStatus.FROZEN, CreditStatus.ACTIVE, CreditStatus.PENDING]
        ).select_related("ledger_account").order_by("pk"))
        total = sum((c.remaining for c in live), 0)
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/promotions/appeal/withdraw_confirm.html", {
            **self.admin_site.each_context(request),
            "title": f"Reject appeal #{appeal.pk} and withdraw the credit",
            "opts": self.opts,
            "appeal": appeal,
            "credits": [(c, f"{fmt(c.remaining, adv.currency)} {adv.currency}") for c in live],
            "total": f"{fmt(total, adv.currency)} {adv.currency}",
            "note": note,
            "decide_url": reverse("admin:promotions_appeal_decide", args=[appeal.pk]),
            "page_url": reverse("admin:promotions_appeal_change", args=[appeal.pk]),
        })

    # Bulk decisions from the queue -----------------------------------------------------------------

    def _row(self, appeal):
        return [format_html('<a href="{}">#{}</a>', reverse("admin:promotions_appeal_change", args=[appeal.pk]),
                            appeal.pk),
                f"{appeal.advertiser.name} ({appeal.advertiser_id})", appeal.get_status_display(),
                _when(appeal.created_at), appeal.message[:200]]

    def _decide_action(self, request, queryset, *, decision: str, action: str, title: str, intro: str,
                       submit_label: str):
        verb, withdraw, _ = DECISIONS[decision]
        # The appeals picked, even if the list's filter no longer shows them (decided meanwhile): the
        # service then says so instead of the action silently doing nothing.
        picked = Appeal.objects.filter(pk__in=request.POST.getlist(helpers.ACTION_CHECKBOX_NAME))
        def perform(appeal, data):
            decided = appeal_decide(appeal=appeal, decision=verb, note=data["reason"], by=request.user,
                                    withdraw_credits=withdraw)
            appeal.status = decided.status  # the "done for …" message names the appeal as it is now

        return action_with_reason(
            self, request, picked.select_related("advertiser"), action=action, title=title, intro=intro,
            headers=["Appeal", "Advertiser", "Status", "Filed", "Message"], row=self._row,
            submit_label=submit_label, form_class=DecisionForm, perform=perform,
        )

    @admin.action(description="Approve appeal (unfreeze credit)", permissions=["decide"])
    def approve_appeal(self, request, queryset):
        return self._decide_action(
            request, queryset, decision="approve", action="approve_appeal", title="Approve appeal",
            intro="Approving unfreezes the advertiser's credit and issues ladder rewards withheld meanwhile.",
            submit_label="Approve",
        )

    @admin.action(description="Reject appeal (credit stays frozen)", permissions=["decide"])
    def reject_appeal(self, request, queryset):
        return self._decide_action(
            request, queryset, decision="reject", action="reject_appeal", title="Reject appeal",
            intro="Rejecting keeps the credit frozen.", submit_label="Reject",
        )

    @admin.action(description="Reject appeal and withdraw the credit", permissions=["decide_and_withdraw"])
    def reject_and_withdraw_appeal(self, request, queryset):
        return self._decide_action(
            request, queryset, decision="reject_withdraw", action="reject_and_withdraw_appeal",
            title="Reject appeal and withdraw the credit",
            intro="For policy violations: the credit stays frozen and what is left of every live credit of the "
                  "account is withdrawn on the ledger. This cannot be undone.",
            submit_label="Reject and withdraw",
        )

    def get_urls(self):
        return [
            path("<int:appeal_id>/attachments/<int:attachment_id>/",
                 self.admin_site.admin_view(self.attachment_view), name="promotions_appeal_attachment"),
            path("<int:appeal_id>/decide/", self.admin_site.admin_view(self.decide_view),
                 name="promotions_appeal_decide"),
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
class FreezeEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "advertiser", "frozen", "rule", "by", "reason"]
    list_filter = ["frozen", "rule"]
    search_fields = ["advertiser__name", "advertiser__id__exact", "reason"]
    list_select_related = ["advertiser", "by"]
    ordering = ["-created_at", "-id"]


class TierInline(StaffRolePermissions, admin.TabularInline):
    model = Tier
    fields = ["threshold", "reward", "immediate"]
    readonly_fields = fields
    extra = 0
    can_delete = False


TIER_ROWS = 5


class ProgramForm(forms.Form):
    """The arguments of `program_create`, as the API takes them: amounts and counts pass as typed and
    the service checks them (window, validity, tiers, code), so every door refuses the same things."""

    name = forms.CharField(max_length=200)
    kind = forms.ChoiceField(choices=ProgramKind.choices)
    currency = forms.ChoiceField(choices=[(c, c) for c in sorted(MINOR_UNITS)], initial="USD",
                                 help_text="Of the thresholds and rewards; only accounts in this currency enroll.")
    window_days = forms.CharField(label="Earning window (days)", max_length=10, initial="30",
                                  help_text="From each advertiser's enrollment.")
    reward_kind = forms.ChoiceField(choices=[("free", "Free credit"), ("assignable", "Coupon")], initial="free")
    reward_validity_days = forms.CharField(label="Reward valid for (days)", max_length=10, initial="90")
    eligible_objectives = forms.MultipleChoiceField(choices=Objective.choices, required=False,
                                                    widget=forms.CheckboxSelectMultiple,
                                                    help_text="Of the reward. None ticked: every objective.")
    eligible_product_source = forms.ChoiceField(choices=[("", "Any")] + list(ProductSource.choices), required=False)
    code = forms.CharField(label="Promo code", max_length=64, required=False,
                           help_text="Optional: advertisers may enroll by entering it.")
    max_redemptions = forms.CharField(max_length=10, required=False, help_text="Of the promo code. Empty: no limit.")
    ends_at = forms.SplitDateTimeField(required=False, widget=AdminSplitDateTime,
                                       help_text="UTC. Empty: the program does not end.")
    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
                             help_text="Required. Kept in the audit log.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for i in range(1, TIER_ROWS + 1):
            self.fields[f"tier_{i}_threshold"] = forms.CharField(
                label=f"Tier {i}: spend", max_length=32, required=False)
            self.fields[f"tier_{i}_reward"] = forms.CharField(label="get", max_length=32, required=False)
            self.fields[f"tier_{i}_immediate"] = forms.BooleanField(label="paid at once", required=False)

    def filled_rows(self) -> list[int]:
        """The numbers of the tier rows with a threshold or a reward."""
        d = self.cleaned_data
        return [i for i in range(1, TIER_ROWS + 1) if d[f"tier_{i}_threshold"].strip() or d[f"tier_{i}_reward"].strip()]

    def tiers(self) -> list[dict]:
        """The tier rows filled in, as the API's `tiers` (blank rows left out)."""
        d = self.cleaned_data
        return [{"threshold": d[f"tier_{i}_threshold"].strip() or None, "reward": d[f"tier_{i}_reward"].strip() or None,
                 "immediate": d[f"tier_{i}_immediate"]} for i in self.filled_rows()]

    def create_kwargs(self) -> dict:
        d = self.cleaned_data
        return dict(name=d["name"], kind=d["kind"], currency=d["currency"], window_days=d["window_days"],
                    reward_kind=d["reward_kind"], reward_validity_days=d["reward_validity_days"],
                    eligible_objectives=d["eligible_objectives"],
                    eligible_product_source=d["eligible_product_source"], code=d["code"].strip() or None,
                    max_redemptions=d["max_redemptions"].strip() or None, ends_at=d["ends_at"],
                    tiers=self.tiers(), reason=d["reason"])


def _tier_words(message: str, rows: list[int]) -> str:
    """"tiers[1].reward …" → "Tier 3's reward …": the service counts the filled rows, the form all rows."""
    return re.sub(r"tiers\[(\d+)\](?:\.(\w+))?",
                  lambda m: f"Tier {rows[int(m.group(1))] if int(m.group(1)) < len(rows) else int(m.group(1)) + 1}"
                            + (f"'s {m.group(2)}" if m.group(2) else ""), message)


PROGRAM_ERROR_FIELDS = {"invalid_objective": "eligible_objectives", "invalid_product_source": "eligible_product_source",
                        "invalid_timestamp": "ends_at", "code_taken": "code", "invalid_tiers": "tier_1_threshold"}


@admin.register(Program)
class ProgramAdmin(ReadOnlyAdmin):
    """Programs are created here by a Billing manager with `program_create` — the service the API's
    `POST /programs` calls, which checks tiers and codes and writes the audit line — and are never
    edited afterwards (advertisers enroll under their terms)."""

    add_perm = "grant_credit"  # a program issues credit: who may grant credit may create one
    list_display = ["id", "name", "kind", "currency", "window_days", "reward_kind", "code", "redemptions",
                    "max_redemptions", "ends_at"]
    list_filter = ["kind", "reward_kind"]
    search_fields = ["name", "code"]
    inlines = [TierInline]

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ProgramForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            kwargs = form.create_kwargs()
            try:
                program = program_create(**kwargs, by=request.user)
            except BusinessError as e:
                e.message = _tier_words(e.message, form.filled_rows())
                add_error_for(form, e, PROGRAM_ERROR_FIELDS)
            else:
                self.log_addition(request, program, f"Created: {kwargs['reason']}")
                self.message_user(request, f"Program “{program.name}” created with {program.tiers.count()} "
                                           f"tier{'s' if program.tiers.count() != 1 else ''}.", messages.SUCCESS)
                if "_addanother" in request.POST:
                    return HttpResponseRedirect(request.path)
                return HttpResponseRedirect(reverse("admin:promotions_program_change", args=[program.pk]))
        fieldsets = [
            (None, {"fields": ["name", "kind", "currency", "reason"]}),
            ("Earning", {"fields": ["window_days", *[(f"tier_{i}_threshold", f"tier_{i}_reward", f"tier_{i}_immediate")
                                                      for i in range(1, TIER_ROWS + 1)]],
                         "description": "Spend X, get Y: at least one tier. Only the highest tier reached in the "
                                        "window is paid, after the window closes — or at once for a tier marked "
                                        "so, which also ends the window."}),
            ("Reward", {"fields": ["reward_kind", "reward_validity_days", "eligible_objectives",
                                   "eligible_product_source"]}),
            ("Promo code", {"fields": ["code", "max_redemptions", "ends_at"]}),
        ]
        return service_form_page(self, request, form=form, fieldsets=fieldsets, title="Create a ladder program",
                                 form_url=form_url, extra_context=extra_context)


@admin.register(Enrollment)
class EnrollmentAdmin(ReadOnlyAdmin):
    """Read-only: enrollment goes through `enrollment_create` (R19 checks), rewards through the job."""

    list_display = ["id", "advertiser", "program", "status", "qualifying_spend", "window_start", "window_end"]
    list_filter = ["status", "program"]
    search_fields = ["advertiser__name", "advertiser__id__exact"]
    list_select_related = ["advertiser", "program"]
