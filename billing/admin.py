"""The ledger in the Django admin: read-only (STYLE: mistakes are corrected by reversing entries).

Nobody adds, changes or deletes ledger rows, deposits or spend events here, superusers included;
money moves only through the services. Every staff role sees them (`portal.permissions`). Lists
of the big tables avoid full-table counts and date hierarchies (both scan the whole table) so they
stay fast as the ledger grows.
"""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from billing.models import (
    Bill,
    Deposit,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    PaymentMethod,
    ReconciliationRun,
    SpendEvent,
    ThresholdChange,
)
from billing.money import fmt
from portal.admin import ReadOnlyAdmin as StaffReadOnlyAdmin
from portal.admin import StaffRolePermissions


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
    list_display = ["started_at", "finished_at", "ok", "accounts_checked", "transactions_checked"]
    list_filter = ["ok"]
    ordering = ["-started_at"]
