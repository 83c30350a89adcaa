"""The ledger in the Django admin: read-only (STYLE: mistakes are corrected by reversing entries).

Nobody adds, changes or deletes ledger rows, deposits or spend events here, superusers included;
money moves only through the services. Every staff role sees them (`portal.permissions`). Lists
of the big tables avoid full-table counts and date hierarchies (both scan the whole table) so they
stay fast as the ledger grows.

Business Center transfers: "Add" is a form of `bc_transfer`'s arguments (the TikTok surface's
`/bc/transfer/`), with its own request id so a double submit moves the cash once.
"""

import secrets

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import ActionLocation
from django.contrib.admin.widgets import ForeignKeyRawIdWidget
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join

from billing.bc import bc_transfer
from billing.chargebacks import chargeback_record
from billing.credit_notes import credit_note_issue, refund_mark_sent
from billing.disputes import dispute_reject
from billing.documents import amount_due, document_status, settlement_of, with_state
from billing.profile import FIELDS as PROFILE_FIELDS
from billing.profile import countries, profile_clean, profile_set

from billing.models import (
    BCTransfer,
    BCTransferType,
    Bill,
    BillingProfile,
    Chargeback,
    Deposit,
    Dispute,
    DisputeStatus,
    Document,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    PaymentMethod,
    ReconciliationRun,
    Refund,
    RefundStatus,
    SpendEvent,
    TaxRate,
    ThresholdChange,
)
from billing.money import fmt
from portal.admin import ReadOnlyAdmin as StaffReadOnlyAdmin
from portal.admin import (
    CHANGE_REASON,
    AuditedAdminMixin,
    AuditedForm,
    ReasonForm,
    StaffRoleAdmin,
    StaffRolePermissions,
    action_with_reason,
    add_error_for,
    refusal,
    service_form_page,
)
from portal import inputs
from portal.errors import BadInput, BusinessError
from portal.models import BusinessCenter
from portal.permissions import staff_can


class ReadOnlyAdmin(StaffReadOnlyAdmin):
    list_per_page = 50


class LedgerEntryInline(StaffRolePermissions, admin.TabularInline):
    model = LedgerEntry
    fields = ["account", "purpose", "side", "amount"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("account").order_by("pk")

    @admin.display(description="Purpose")
    def purpose(self, entry):
        return entry.account.get_purpose_display()


@admin.register(LedgerTransaction)
class LedgerTransactionAdmin(ReadOnlyAdmin):
    list_display = ["id", "kind", "advertiser", "business_center", "campaign", "money", "occurred_at", "created_at",
                    "memo"]
    list_filter = ["kind", "currency", "created_at"]
    search_fields = ["id__exact", "memo", "advertiser__name", "advertiser__id__exact"]
    list_select_related = ["advertiser", "business_center", "campaign"]
    ordering = ["-created_at", "-id"]
    inlines = [LedgerEntryInline]

    @admin.display(description="Amount", ordering="amount")
    def money(self, tx):
        return f"{fmt(tx.amount, tx.currency)} {tx.currency}"


@admin.register(LedgerAccount)
class LedgerAccountAdmin(ReadOnlyAdmin):
    list_display = ["id", "purpose", "advertiser", "business_center", "currency", "normal", "money", "credit_link"]
    list_filter = ["purpose", "currency"]
    search_fields = ["id__exact", "advertiser__name", "advertiser__id__exact", "business_center__name"]
    list_select_related = ["advertiser", "business_center", "credit"]
    ordering = ["advertiser_id", "business_center_id", "id"]

    @admin.display(description="Balance", ordering="balance")
    def money(self, account):
        return f"{fmt(account.balance, account.currency)} {account.currency}"

    @admin.display(description="Credit")
    def credit_link(self, account):
        credit = getattr(account, "credit", None)
        if credit is None:
            return "—"
        return format_html('<a href="{}">{}</a>', reverse("admin:promotions_credit_change", args=[credit.pk]), credit)


@admin.register(Deposit)
class DepositAdmin(ReadOnlyAdmin):
    list_display = ["id", "advertiser", "money", "source", "card_last4", "idempotency_key", "transaction", "created_at"]
    list_filter = ["source", "created_at"]
    search_fields = ["id__exact", "advertiser__name", "advertiser__id__exact", "idempotency_key"]
    list_select_related = ["advertiser", "transaction"]
    ordering = ["-created_at", "-id"]

    @admin.display(description="Amount", ordering="amount")
    def money(self, deposit):
        return f"{fmt(deposit.amount, deposit.advertiser.currency)} {deposit.advertiser.currency}"


@admin.register(SpendEvent)
class SpendEventAdmin(ReadOnlyAdmin):
    list_display = ["event_id", "advertiser", "campaign", "money", "kind", "occurred_at", "transaction", "created_at"]
    list_filter = ["kind", "currency", "occurred_at"]
    search_fields = ["=event_id", "advertiser__name", "advertiser__id__exact", "campaign__name"]
    list_select_related = ["advertiser", "campaign", "transaction"]
    ordering = ["-occurred_at", "-id"]

    @admin.display(description="Amount", ordering="amount")
    def money(self, ev):
        return f"{fmt(ev.amount, ev.currency)} {ev.currency}"


@admin.register(Bill)
class BillAdmin(ReadOnlyAdmin):
    """Bills and invoices (R24–R27): paid, retried and issued only by the billing services."""

    list_display = ["id", "number", "advertiser", "kind", "money", "status", "attempts", "issued_at", "due_at",
                    "paid_at", "last_error"]
    list_filter = ["kind", "status", "issued_at"]
    search_fields = ["id__exact", "number", "advertiser__name", "advertiser__id__exact", "gateway_reference"]
    list_select_related = ["advertiser"]
    ordering = ["-issued_at", "-id"]

    @admin.display(description="Amount", ordering="amount")
    def money(self, bill):
        return f"{fmt(bill.amount, bill.currency)} {bill.currency}"

    actions = ["record_chargeback"]

    def has_chargeback_permission(self, request):
        return staff_can(request.user, "withdraw_credit")  # money taken back: a Billing manager (decision 0010)

    @admin.action(description="Record a chargeback (the card payment was reversed)", permissions=["chargeback"],
                  location=[ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM])
    def record_chargeback(self, request, queryset):
        one = queryset.count() == 1

        def perform(bill, data):
            if not one:  # a gateway reference names one reversed payment
                raise BusinessError("one_bill_at_a_time", "Record a chargeback on one bill at a time.")
            chargeback_record(bill=bill, reference=data["reference"], reason=data["reason"], by=request.user)

        return action_with_reason(
            self, request, queryset, action="record_chargeback", title="Record a chargeback",
            intro="The payment is reversed on the ledger and the bill becomes failed, so the retry schedule and "
                  "'Pay now' collect it again; the account's credit is frozen by the rule "
                  "'chargeback' and the advertiser is notified. Recording the same "
                  "gateway reference again books nothing.",
            headers=["Bill", "Advertiser", "Amount", "Status", "Paid", "Gateway charge"],
            row=lambda b: [b.number or f"#{b.pk}", b.advertiser, self.money(b), b.get_status_display(),
                           b.paid_at.strftime("%Y-%m-%d %H:%M UTC") if b.paid_at else "—", b.gateway_reference or "—"],
            submit_label="Record chargeback", perform=perform, form_class=ChargebackForm,
        )

    @admin.display(description="Chargebacks")
    def chargebacks(self, bill):
        rows = list(bill.chargebacks.order_by("created_at", "pk"))
        if not rows:
            return "None."
        return format_html_join("", "<p>{} · {} {} · {} · {}</p>", (
            (c.reference, fmt(c.amount, c.currency), c.currency, c.created_at.strftime("%Y-%m-%d %H:%M UTC"), c.reason)
            for c in rows))

    readonly_fields = ["chargebacks"]


class ChargebackForm(ReasonForm):
    reference = forms.CharField(
        label="Gateway chargeback reference", max_length=60,
        help_text="The chargeback's id at the payment gateway; recording the same one again books nothing.",
    )
    field_order = ["reference", "reason"]

    def clean_reference(self):
        return self.cleaned_data["reference"].strip()


@admin.register(Chargeback)
class ChargebackAdmin(ReadOnlyAdmin):
    """Chargebacks (decision 0010): recorded only by `chargeback_record` (the bill's action, the gateway)."""

    list_display = ["reference", "advertiser", "bill", "deposit", "money", "reason", "created_by", "created_at"]
    search_fields = ["=reference", "=charge_reference", "advertiser__name", "advertiser__id__exact"]
    list_select_related = ["advertiser", "bill", "deposit", "created_by"]
    ordering = ["-created_at", "-id"]

    @admin.display(description="Amount", ordering="amount")
    def money(self, chargeback):
        return f"{fmt(chargeback.amount, chargeback.currency)} {chargeback.currency}"


@admin.register(ThresholdChange)
class ThresholdChangeAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "advertiser", "old", "new", "reason"]
    search_fields = ["advertiser__name", "advertiser__id__exact", "reason"]
    list_select_related = ["advertiser"]
    ordering = ["-created_at", "-id"]


@admin.register(PaymentMethod)
class PaymentMethodAdmin(ReadOnlyAdmin):
    """The card on file: last 4 and expiry only (the gateway token is not shown)."""

    list_display = ["advertiser", "last4", "expiry", "status", "created_at"]
    fields = ["advertiser", "last4", "expiry", "status", "created_at"]
    search_fields = ["advertiser__name", "advertiser__id__exact", "last4"]
    list_select_related = ["advertiser"]
    ordering = ["-created_at"]


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdmin):
    """`reconcile_ledger` runs (R33): each difference it found, as it found it (never fixed)."""

    list_display = ["started_at", "finished_at", "mode", "outcome", "accounts_checked", "transactions_checked",
                    "entries_read", "difference_count"]
    list_filter = ["ok", "mode"]
    ordering = ["-started_at"]
    fields = ["started_at", "finished_at", "mode", "outcome", "accounts_checked", "transactions_checked",
              "entries_read", "transactions_upto", "differences_found"]
    readonly_fields = fields

    @admin.display(description="Differences")
    def difference_count(self, run):
        return len(run.differences)

    @admin.display(description="Differences found")
    def differences_found(self, run):
        if not run.differences:
            return "None: every stored balance equals its entries and every transaction sums to zero."
        rows = []
        for d in run.differences:
            if d.get("kind") == "unbalanced":
                link = reverse("admin:billing_ledgertransaction_change", args=[d["transaction_id"]])
                rows.append(("Unbalanced transaction", link, f"transaction #{d['transaction_id']}",
                             f"debits − credits = {d['debits_minus_credits']} {d['currency']}"))
            elif d.get("kind") in ("timestamp_out_of_range", "program_out_of_range"):
                app_label, model_name = d["model"].split(".")
                try:
                    link = reverse(f"admin:{app_label}_{model_name}_change", args=[d["row"]])
                except NoReverseMatch:
                    link = ""
                what = (f"{', '.join(d['columns'])} outside {inputs.TIMESTAMP_MIN:%Y-%m-%d}…{inputs.TIMESTAMP_MAX:%Y-%m-%d}"
                        if d["kind"] == "timestamp_out_of_range"
                        else f"window {d['window_days']} days, validity {d['reward_validity_days']} days")
                rows.append(("Value out of range", link, f"{d['model']} #{d['row']}", what))
            else:
                link = reverse("admin:billing_ledgeraccount_change", args=[d["account_id"]])
                owner = (f"advertiser {d['advertiser_id']}" if d.get("advertiser_id")
                         else f"business center {d.get('business_center_id')}")
                rows.append(("Balance", link, f"account #{d['account_id']} ({d['purpose']}, {owner})",
                             f"stored {d['stored']}, from entries {d['from_entries']}"))
        return format_html(
            '<table class="reconciliation-differences"><thead><tr><th>Kind</th><th>Where</th><th>Difference</th>'
            "</tr></thead><tbody>{}</tbody></table>",
            format_html_join("", '<tr><td>{}</td><td><a href="{}">{}</a></td><td>{}</td></tr>', rows),
        )


# --- billing profiles, tax rates and issued documents (R37–R39) ----------------------------------

class BillingProfileForm(AuditedForm):
    """Checked by `billing.profile.profile_clean` (country, tax ID check digits, recipients): its
    BadInput is shown under the field it names. The recipients are edited as one comma-separated line."""

    FIELD_OF_CODE = {"invalid_country": "country", "invalid_tax_id": "tax_id",
                     "invalid_invoice_emails": "invoice_emails"}

    country = forms.ChoiceField(choices=[])
    invoice_emails = forms.CharField(
        label="Invoice recipients", required=False, max_length=2600,
        widget=forms.TextInput(attrs={"size": 80}),
        help_text="Email addresses separated by commas, at most 10.",
    )

    class Meta:
        model = BillingProfile
        fields = ["advertiser", "business_center", *PROFILE_FIELDS]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["country"].choices = [("", "---------")] + countries()
        if not self.is_bound:
            self.initial["invoice_emails"] = ", ".join(self.initial.get("invoice_emails") or [])

    def clean(self):
        data = super().clean()
        if "advertiser" in self.fields and "business_center" in self.fields:
            if bool(data.get("advertiser")) == bool(data.get("business_center")):
                self.add_error(None, "A billing profile belongs to an advertiser or to a Business Center: choose one.")
        try:
            cleaned = profile_clean({f: data.get(f) or "" for f in PROFILE_FIELDS})
        except BadInput as e:
            field = self.FIELD_OF_CODE.get(e.code) or e.code.removeprefix("invalid_")
            field = field if field in self.fields else None
            if field is None or field not in self.errors:
                self.add_error(field, refusal(e))
        else:
            data.update(cleaned)
        return data


@admin.register(BillingProfile)
class BillingProfileAdmin(StaffRoleAdmin):
    """Who documents are billed to (R37). Saved through `profile_set`, which writes the audit line;
    issued documents keep their own copy, so an edit here never changes one."""

    form = BillingProfileForm
    add_perm = change_perm = "manage_accounts"
    list_display = ["id", "legal_name", "advertiser", "business_center", "country", "tax_id", "updated_at"]
    list_filter = ["country"]
    search_fields = ["legal_name", "tax_id", "advertiser__name", "advertiser__id__exact", "business_center__name"]
    list_select_related = ["advertiser", "business_center"]
    raw_id_fields = ["advertiser", "business_center"]
    ordering = ["-updated_at", "-id"]

    def get_fields(self, request, obj=None):
        fields = ["advertiser", "business_center", *PROFILE_FIELDS, "updated_at"]
        if obj is None or self.has_change_permission(request, obj):
            fields.append(CHANGE_REASON)
        return fields

    def get_readonly_fields(self, request, obj=None):
        # The owner is fixed once the profile exists; updated_at is set by profile_set.
        return ["advertiser", "business_center", "updated_at"] if obj else ["updated_at"]

    def save_model(self, request, obj, form, change):
        data = {f: form.cleaned_data.get(f, getattr(obj, f)) for f in PROFILE_FIELDS}
        reason = (form.cleaned_data.get(CHANGE_REASON) or "").strip()
        reason = reason or f"{'Edited' if change else 'Created'} by {request.user.get_username()} in the admin."
        owner = ({"advertiser": obj.advertiser} if obj.advertiser_id
                 else {"business_center": obj.business_center})
        try:
            saved = profile_set(actor=request.user, data=data, reason=reason, **owner)
        except BusinessError as e:  # the form checked it already; a concurrent change may not pass
            raise PermissionDenied(refusal(e)) from None
        obj.pk, obj.updated_at = saved.pk, saved.updated_at
        obj._state.adding = False


class TaxRateForm(AuditedForm):
    class Meta:
        model = TaxRate
        fields = ["country", "rate", "effective_from", "note"]


@admin.register(TaxRate)
class TaxRateAdmin(AuditedAdminMixin, StaffRoleAdmin):
    """Standard VAT rates by country and date (R38): data edited by staff, every edit audited.
    A document copies its rate at issue, so a change here applies to documents issued later."""

    form = TaxRateForm
    add_perm = change_perm = "manage_accounts"
    list_display = ["country", "rate", "effective_from", "note"]
    list_filter = ["country"]
    search_fields = ["country", "note"]
    ordering = ["country", "-effective_from"]
    fields = ["country", "rate", "effective_from", "note", CHANGE_REASON]

    def audit_subject(self, obj):
        return "tax_rate", None, f"tax rate {obj.country} from {obj.effective_from}"

    def save_model(self, request, obj, form, change):
        fields = [f for f in form.changed_data if f != CHANGE_REASON]
        super().save_model(request, obj, form, change)
        if change:
            self.audit_fields(request, obj, form, fields)
        else:
            self.audit_created(request, obj, form)


@admin.register(Document)
class DocumentAdmin(ReadOnlyAdmin):
    """Issued documents (R39): immutable, nobody adds, changes or deletes them here (the database
    refuses UPDATE and DELETE too); a correction is a credit note issued by the services."""

    list_filter = ["kind", "currency"]
    search_fields = ["=number", "advertiser__name", "advertiser__id__exact"]
    list_select_related = ["advertiser"]
    ordering = ["-issued_at", "-id"]
    raw_id_fields = ["advertiser", "business_center", "bill", "deposit", "refers_to", "created_by"]

    def get_queryset(self, request):
        return with_state(super().get_queryset(request))

    list_display = ["number", "kind", "advertiser", "issued_at", "money", "state", "due"]

    @admin.display(description="Total", ordering="total")
    def money(self, doc):
        return f"{fmt(doc.total, doc.currency)} {doc.currency}"

    @admin.display(description="Status")
    def state(self, doc):
        return document_status(doc).replace("_", " ").capitalize()

    @admin.display(description="Amount due")
    def due(self, doc):
        return f"{fmt(amount_due(doc), doc.currency)} {doc.currency}" if doc.kind == "invoice" else "—"

    actions = ["issue_credit_note"]

    def has_credit_note_permission(self, request):
        return staff_can(request.user, "withdraw_credit")  # money given back: a Billing manager (decision 0024)

    @admin.action(description="Issue a credit note", permissions=["credit_note"],
                  location=[ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM])
    def issue_credit_note(self, request, queryset):
        one = queryset.count() == 1

        def perform(doc, data):
            if not one:  # an amount is of one document
                raise BusinessError("one_document_at_a_time", "Issue a credit note for one document at a time.")
            note, _ = credit_note_issue(actor=request.user, document=doc, amount=data["amount"], reason=data["reason"],
                                        idempotency_key=data["idempotency_key"])
            self.message_user(request, f"Credit note {note.number} issued for {doc.number}.")

        return action_with_reason(
            self, request, queryset, action="issue_credit_note", title="Issue a credit note",
            intro="A credit note takes the amount off what is still owed on an invoice, then gives back what was "
                  "paid: to the card that paid, through the gateway, or by bank transfer — never as ad credit. Its tax "
                  "is the document's, in proportion. It cannot exceed what the document still counts.",
            headers=["Document", "Advertiser", "Total", "Still counts", "Status"],
            row=lambda d: [d.number, d.advertiser, self.money(d),
                           f"{fmt(settlement_of(d).creditable, d.currency)} {d.currency}", self.state(d)],
            submit_label="Issue credit note", perform=perform, form_class=CreditNoteForm,
        )


def _new_key() -> str:
    return "admin-" + secrets.token_hex(12)


class CreditNoteForm(ReasonForm):
    amount = forms.CharField(label="Amount (tax included)", max_length=40,
                             help_text="Up to what the document still counts; its tax is reversed in proportion.")
    # made when the page is shown, so a double submit issues one credit note
    idempotency_key = forms.CharField(widget=forms.HiddenInput, initial=_new_key, max_length=100)
    field_order = ["amount", "reason"]

    def clean_amount(self):
        return self.cleaned_data["amount"].strip()


@admin.register(Dispute)
class DisputeAdmin(ReadOnlyAdmin):
    """Disputed invoices (R40): staff resolve each with a credit note or reject it with a note."""

    list_display = ["document", "advertiser", "status", "reason", "created_at", "resolved_by", "resolved_at"]
    list_filter = ["status"]
    search_fields = ["document__number", "advertiser__name", "advertiser__id__exact"]
    list_select_related = ["document", "advertiser", "resolved_by"]
    ordering = ["status", "-created_at"]
    raw_id_fields = ["document", "advertiser", "credit_note", "opened_by", "resolved_by"]
    actions = ["resolve_with_credit_note", "reject"]

    def has_resolve_permission(self, request):
        return staff_can(request.user, "withdraw_credit")

    @admin.action(description="Resolve with a credit note", permissions=["resolve"],
                  location=[ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM])
    def resolve_with_credit_note(self, request, queryset):
        one = queryset.count() == 1

        def perform(dispute, data):
            if not one:
                raise BusinessError("one_dispute_at_a_time", "Resolve one dispute at a time.")
            if dispute.status != DisputeStatus.OPEN:
                raise BusinessError("dispute_closed", "This dispute was already resolved.")
            credit_note_issue(actor=request.user, document=dispute.document, amount=data["amount"],
                              reason=data["reason"], idempotency_key=data["idempotency_key"], dispute=dispute)

        return action_with_reason(
            self, request, queryset, action="resolve_with_credit_note", title="Resolve with a credit note",
            intro="Issues a credit note on the disputed invoice and closes the dispute; the advertiser is "
                  "notified.",
            headers=["Invoice", "Advertiser", "Dispute", "Opened"],
            row=lambda d: [d.document.number, d.advertiser, d.reason, d.created_at.strftime("%Y-%m-%d %H:%M UTC")],
            submit_label="Issue credit note", perform=perform, form_class=CreditNoteForm,
        )

    @admin.action(description="Reject with a note", permissions=["resolve"],
                  location=[ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM])
    def reject(self, request, queryset):
        return action_with_reason(
            self, request, queryset, action="reject", title="Reject the dispute",
            intro="The invoice stands as issued; your note is sent to the advertiser and kept in the audit log.",
            headers=["Invoice", "Advertiser", "Dispute", "Opened"],
            row=lambda d: [d.document.number, d.advertiser, d.reason, d.created_at.strftime("%Y-%m-%d %H:%M UTC")],
            submit_label="Reject", perform=lambda d, data: dispute_reject(actor=request.user, dispute=d,
                                                                          note=data["reason"]),
        )


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    """Money credit notes give back (R40): card refunds the gateway sends, bank transfers staff send."""

    list_display = ["credit_note", "advertiser", "method", "money", "status", "gateway_reference", "last_error",
                    "created_at", "refunded_at"]
    list_filter = ["status", "method"]
    search_fields = ["credit_note__number", "advertiser__name", "advertiser__id__exact", "gateway_reference"]
    list_select_related = ["credit_note", "advertiser"]
    ordering = ["-created_at", "-id"]
    raw_id_fields = ["credit_note", "advertiser"]
    actions = ["mark_sent"]

    @admin.display(description="Amount", ordering="amount")
    def money(self, refund):
        return f"{fmt(refund.amount, refund.currency)} {refund.currency}"

    def has_mark_sent_permission(self, request):
        return staff_can(request.user, "withdraw_credit")

    @admin.action(description="Mark as paid back (bank transfer sent, or a failed card refund paid by hand)",
                  permissions=["mark_sent"], location=[ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM])
    def mark_sent(self, request, queryset):
        return action_with_reason(
            self, request, queryset.exclude(status=RefundStatus.REFUNDED), action="mark_sent",
            title="Mark refunds as paid back",
            intro="Record that the money went back outside the gateway; the reason (say, the bank reference) is "
                  "kept in the audit log.",
            headers=["Credit note", "Advertiser", "Amount", "Method", "Status"],
            row=lambda r: [r.credit_note.number, r.advertiser, self.money(r), r.get_method_display(),
                           r.get_status_display()],
            submit_label="Mark paid back", perform=lambda r, data: refund_mark_sent(actor=request.user, refund=r,
                                                                                    reference=data["reason"]),
        )


# --- cash between a Business Center and its advertisers (decision 0012) --------------------------

class BCTransferForm(forms.Form):
    """The arguments of `bc_transfer`, as the TikTok surface's `/bc/transfer/` takes them; the
    service checks the rest (same BC, currency, billing method, balances, R8)."""

    business_center = forms.ModelChoiceField(queryset=BusinessCenter.objects.all(), label="Business Center")
    advertiser_id = forms.CharField(label="Advertiser ID", max_length=20,
                                    help_text="An advertiser account of this Business Center.")
    transfer_type = forms.ChoiceField(
        choices=[(BCTransferType.RECHARGE, "Recharge: Business Center cash to the account"),
                 (BCTransferType.REFUND, "Refund: account cash back to the Business Center")])
    cash_amount = forms.CharField(max_length=40, help_text="In the Business Center's currency.")
    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
                             help_text="Required. Kept in the audit log.")
    # made when the page is shown, so a double submit moves the cash once
    request_id = forms.CharField(widget=forms.HiddenInput, initial=_new_key, max_length=64)

    def __init__(self, *args, admin_site=None, **kwargs):
        super().__init__(*args, **kwargs)
        if admin_site is not None:  # an ID with the admin's lookup, as raw_id_fields
            self.fields["business_center"].widget = ForeignKeyRawIdWidget(
                BCTransfer._meta.get_field("business_center").remote_field, admin_site)


TRANSFER_ERROR_FIELDS = {"not_found": "advertiser_id", "currency_mismatch": "advertiser_id",
                         "transfer_not_allowed": "advertiser_id", "account_closed": "advertiser_id",
                         "not_in_good_standing": "advertiser_id",
                         "invalid_amount": "cash_amount", "insufficient_bc_balance": "cash_amount",
                         "refund_exceeds_cash": "cash_amount"}


@admin.register(BCTransfer)
class BCTransferAdmin(ReadOnlyAdmin):
    """Cash moved between a Business Center and its advertisers. A Billing manager moves it here with
    `bc_transfer`, the service of the TikTok surface's `/bc/transfer/`, which writes the audit line."""

    add_perm = "manage_accounts"
    list_display = ["created_at", "business_center", "advertiser", "transfer_type", "amount", "request_id",
                    "created_by"]
    list_filter = ["transfer_type"]
    search_fields = ["=request_id", "business_center__name", "advertiser__name", "advertiser__id__exact"]
    list_select_related = ["business_center", "advertiser", "created_by"]
    ordering = ["-created_at", "-id"]
    raw_id_fields = ["business_center", "advertiser", "transaction", "created_by"]

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            form = BCTransferForm(request.POST, admin_site=self.admin_site)
            if form.is_valid():
                d = form.cleaned_data
                try:
                    transfer = bc_transfer(
                        business_center=d["business_center"], advertiser_id=d["advertiser_id"].strip(),
                        transfer_type=d["transfer_type"], cash_amount=d["cash_amount"].strip(),
                        request_id=d["request_id"], by=request.user, reason=d["reason"])
                except BusinessError as e:
                    add_error_for(form, e, TRANSFER_ERROR_FIELDS)
                else:
                    bc = d["business_center"]
                    self.message_user(request, f"{transfer.get_transfer_type_display()} of "
                                               f"{fmt(transfer.amount, bc.currency)} {bc.currency}: "
                                               f"{bc.name} ↔ {transfer.advertiser.name}.", messages.SUCCESS)
                    if "_addanother" in request.POST:
                        return HttpResponseRedirect(f"{request.path}?business_center={bc.pk}")
                    return HttpResponseRedirect(reverse("admin:billing_bctransfer_changelist"))
        else:
            initial = {key: request.GET[key] for key in ("business_center", "advertiser_id")
                       if request.GET.get(key, "").isdigit()}
            form = BCTransferForm(initial=initial, admin_site=self.admin_site)
        fieldsets = [(None, {"fields": ["business_center", "advertiser_id", "transfer_type", "cash_amount", "reason",
                                        "request_id"]})]
        return service_form_page(self, request, form=form, fieldsets=fieldsets,
                                 title="Transfer cash between a Business Center and an advertiser",
                                 form_url=form_url, extra_context=extra_context)
