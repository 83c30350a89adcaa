"""Switching billing method (SPEC R28) and staff billing settings (R25, R27).

Allowed: manual → automatic, manual → monthly invoicing, automatic → monthly invoicing; never back
to manual, and invoicing only once staff marked the account eligible. What the old method owes is
settled first (docs/decisions/0006-billing-methods.md): manual arrears must be paid by a deposit;
automatic accrued spend is billed and charged at once, and failed bills must be paid; cash left
from manual payment keeps paying spend before anything is billed.
"""

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from billing.autopay import account_paid_up, autopay_setup, bill_collect, bill_create, threshold_set
from billing.deposits import campaigns_resume
from billing.ledger import advertiser_accounts, lock_advertisers
from billing.models import Bill, BillKind, BillStatus, PaymentMethod, Purpose, ThresholdChange
from billing.money import fmt, parse_amount
from portal import inputs
from portal.audit import audit_record
from portal.errors import BadInput, BusinessError
from portal.models import AdvertiserStatus, BillingMethod
from portal.notifications import Draft, notify_many

ALLOWED = {
    (BillingMethod.MANUAL, BillingMethod.AUTOMATIC),
    (BillingMethod.MANUAL, BillingMethod.MONTHLY_INVOICE),
    (BillingMethod.AUTOMATIC, BillingMethod.MONTHLY_INVOICE),
}


@dataclass
class Switched:
    """What a switch did: the account as it now is, and the bill of the spend it had accrued on
    automatic payment (R28), as its card charge left it — or None when there was none."""

    advertiser: object
    bill: Bill | None


def switch_refusal(adv, billing_method: str, *, accounts: dict | None = None) -> BusinessError | None:
    """Why the account may not switch to `billing_method` now (R28), or None. The one list of
    conditions: the switch checks it under the advertiser's lock, the Billing method page shows
    it before anyone clicks."""
    old = adv.billing_method
    if old == billing_method:
        return BusinessError("billing_method_unchanged", f"The account already uses {adv.get_billing_method_display().lower()}.")
    if billing_method == BillingMethod.MANUAL:
        return BusinessError("switch_to_manual_not_allowed", "An account never switches back to manual payment.")
    if (old, billing_method) not in ALLOWED:
        return BusinessError(
            "switch_not_allowed",
            f"Switching from {adv.get_billing_method_display().lower()} to "
            f"{BillingMethod(billing_method).label.lower()} is not allowed.",
        )
    if adv.status != AdvertiserStatus.ACTIVE:
        return BusinessError("account_not_active", f"A {adv.status} account cannot change its billing method.")
    if billing_method == BillingMethod.MONTHLY_INVOICE:
        if not adv.invoicing_eligible:
            return BusinessError("invoicing_not_eligible", "Monthly invoicing needs staff approval for this account.")
        if adv.credit_line_limit <= 0:
            return BusinessError("no_credit_line", "Staff must set a credit line before the account moves to invoicing.")
    if billing_method == BillingMethod.AUTOMATIC and not PaymentMethod.objects.filter(advertiser=adv).exists():
        return BusinessError("payment_method_required", "Add a payment method before switching to automatic payment.")
    accounts = accounts or advertiser_accounts([adv.pk])[adv.pk]
    if accounts[Purpose.ARREARS].balance > 0:
        return BusinessError("arrears_outstanding", "Pay the arrears with a deposit before switching.")
    if Bill.objects.filter(advertiser=adv, status__in=[BillStatus.FAILED, BillStatus.OVERDUE]).exists():
        return BusinessError("bills_outstanding", "Pay the failed bills before switching.")
    return None


def billing_method_switch(*, advertiser, billing_method: str, at=None) -> Switched:
    at = at or timezone.now()
    if billing_method not in BillingMethod.values:
        raise BadInput("invalid_billing_method", f"billing_method must be one of {', '.join(BillingMethod.values)}.")
    switch_bill = None
    with transaction.atomic():
        adv = lock_advertisers([advertiser.pk])[advertiser.pk]
        old = adv.billing_method
        accounts = advertiser_accounts([adv.pk])[adv.pk]
        refusal = switch_refusal(adv, billing_method, accounts=accounts)
        if refusal:
            raise refusal
        if old == BillingMethod.AUTOMATIC and accounts[Purpose.ACCRUED].balance > 0:
            switch_bill = bill_create(advertiser=adv, accounts=accounts, kind=BillKind.SWITCH,
                                      amount=accounts[Purpose.ACCRUED].balance, at=at)
        adv.billing_method = billing_method
        adv.save(update_fields=["billing_method"])
        if billing_method == BillingMethod.AUTOMATIC:
            autopay_setup(advertiser=adv, at=at)
        _notify_switch(adv, old, accounts, billed=switch_bill is not None)
    if switch_bill is not None:
        switch_bill = bill_collect(bill_id=switch_bill.pk, at=at)
    advertiser.refresh_from_db()
    return Switched(advertiser=advertiser, bill=switch_bill)


def _notify_switch(adv, old: str, accounts: dict, *, billed: bool) -> None:
    """"Your billing method is now …" (R28, R36). A method is never switched back to, so the key
    (account, from, to) names the one switch."""
    cur = adv.currency

    def money(x):
        return f"{cur} {fmt(x, cur)}" if x is not None else ""

    pm = PaymentMethod.objects.filter(advertiser=adv).first()
    next_bill = adv.next_bill_at.astimezone(adv.tz).strftime("%b %-d, %Y") if adv.next_bill_at else ""
    notify_many([Draft(adv, "billing_method_changed", f"billing_method_changed:{adv.pk}:{old}:{adv.billing_method}", {
        "method": adv.get_billing_method_display().lower(), "new": adv.billing_method,
        "old": BillingMethod(old).label.lower(), "threshold": money(adv.billing_threshold), "next_bill": next_bill,
        "card": pm.last4 if pm else "", "credit_line": money(adv.credit_line_limit),
        "cash": money(accounts[Purpose.CASH].balance) if accounts[Purpose.CASH].balance > 0 else "",
        "billed": billed,  # the spend accrued on automatic payment was billed at the switch
    })])


def billing_settings_set(*, advertiser, billing_threshold=None, bill_cycle=None, credit_line_limit=None,
                         invoicing_eligible=None, reason: str = "set by staff", by=None):
    """Staff settings (API.md `/billing-settings`), audited with before and after."""
    reason = inputs.text(reason, field="reason", max_length=inputs.max_length(ThresholdChange, "reason"))
    if bill_cycle is not None and bill_cycle not in ("weekly", "monthly"):
        raise BadInput("invalid_bill_cycle", "bill_cycle must be weekly or monthly.")
    if invoicing_eligible is not None and not isinstance(invoicing_eligible, bool):
        raise BadInput("invalid_invoicing_eligible", "invoicing_eligible must be true or false.")
    limit = None
    if credit_line_limit is not None:
        limit = parse_amount(credit_line_limit, advertiser.currency, field="credit_line_limit", allow_zero=True)
    with transaction.atomic():
        adv = lock_advertisers([advertiser.pk])[advertiser.pk]
        snapshot = lambda a: {  # noqa: E731
            "billing_threshold": str(a.billing_threshold) if a.billing_threshold is not None else None,
            "bill_cycle": a.bill_cycle, "credit_line_limit": str(a.credit_line_limit),
            "invoicing_eligible": a.invoicing_eligible,
        }
        before = snapshot(adv)
        if billing_threshold is not None:
            threshold_set(advertiser=adv, amount=billing_threshold, reason=reason)
        fields = []
        if bill_cycle is not None and bill_cycle != adv.bill_cycle:
            adv.bill_cycle = bill_cycle
            fields.append("bill_cycle")
            if adv.billing_method == BillingMethod.AUTOMATIC:
                adv.next_bill_at = None
                fields.append("next_bill_at")
        if limit is not None:
            adv.credit_line_limit = limit
            fields.append("credit_line_limit")
        if invoicing_eligible is not None:
            adv.invoicing_eligible = invoicing_eligible
            fields.append("invoicing_eligible")
        if fields:
            adv.save(update_fields=fields)
        if adv.billing_method == BillingMethod.AUTOMATIC and adv.next_bill_at is None:
            autopay_setup(advertiser=adv)
        adv.refresh_from_db()
        if snapshot(adv) != before:
            audit_record(actor=by, action="billing_settings", advertiser=adv, target=f"advertiser {adv.pk}",
                         reason=reason, before=before, after=snapshot(adv))
        if limit is not None and adv.billing_method == BillingMethod.MONTHLY_INVOICE:
            if account_paid_up(adv):
                campaigns_resume(advertiser=adv)
    advertiser.refresh_from_db()
    return advertiser
