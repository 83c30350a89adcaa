"""Chargebacks (SPEC R13, R14, R26, R30, R36; docs/decisions/0010-risk-freeze-and-appeals.md).

A chargeback is a card payment the cardholder's bank took back. `chargeback_record` books it once
per gateway chargeback reference (unique constraint), in one transaction under the advertiser lock:

- a paid **bill**: its payment posting is reversed (Dr billed, Cr payments received; for an invoice
  Dr credit line / arrears as it was paid), so the amount is owed again, and the bill is `failed`:
  the retry schedule and "Pay now" collect it again (R26);
- a **card top-up** (manual payment): the cash is taken back (Dr cash, Cr payments received) and
  what the cash cannot cover becomes arrears, which pauses delivery until a deposit settles it (R13).

Then the account's credit is frozen by the automatic rule `chargeback` (R30) unless it is frozen
already, the record is audited (actor: the staff user, or "system" for a gateway report) and the
advertiser is notified (R36). The whole payment is reversed; partial chargebacks are not modelled.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing.deposits import campaigns_pause
from billing.ledger import Posting, advertiser_accounts, ledger_post, lock_advertisers, tax_account
from billing.models import Bill, BillStatus, Chargeback, Deposit, Purpose, Refund, TxKind
from billing.money import fmt
from portal.audit import audit_record
from portal.errors import BadInput, BusinessError, Conflict
from portal.notifications import Draft, notify_many
from promotions.freeze import credit_freeze

CHARGEBACK_RULE = "chargeback"


def _text(value, code: str, what: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadInput(code, f"{what} is required.")
    return value.strip()[:limit]


def chargeback_record(*, reference: str, reason: str, bill: Bill | None = None, deposit: Deposit | None = None,
                      charge_reference: str = "", by=None, at: datetime | None = None) -> tuple[Chargeback, bool]:
    """Book a chargeback of a paid bill or a card top-up; returns it and whether it is new.

    The same `reference` again returns the first chargeback and books nothing; the same reference
    for another payment is a Conflict.
    """
    reference = _text(reference, "invalid_chargeback_reference", "The gateway's chargeback reference", 64)
    reason = _text(reason, "invalid_reason", "A reason", 500)
    if (bill is None) == (deposit is None):
        raise BadInput("invalid_chargeback", "A chargeback is of one paid bill or one card top-up.")
    at = at or timezone.now()
    advertiser_id = bill.advertiser_id if bill is not None else deposit.advertiser_id
    with transaction.atomic():
        adv = lock_advertisers([advertiser_id])[advertiser_id]
        prior = Chargeback.objects.filter(reference=reference).first()
        if prior is not None:
            if (prior.bill_id, prior.deposit_id) != (getattr(bill, "pk", None), getattr(deposit, "pk", None)):
                raise Conflict("chargeback_reference_reused",
                               f"Chargeback {reference} was already recorded for another payment.")
            return prior, False
        acc = advertiser_accounts([adv.pk])[adv.pk]
        if bill is not None:
            chargeback, before, after = _bill_reversal(adv, acc, bill, reference, reason, at)
        else:
            chargeback, before, after = _deposit_reversal(adv, acc, deposit, reference, reason, at)
        chargeback.charge_reference = (charge_reference or chargeback.charge_reference)[:64]
        chargeback.created_by = by if by is not None and by.is_authenticated else None
        chargeback.save()
        audit_record(actor=by, action="chargeback_record", advertiser=adv, target=str(chargeback)[:200],
                     reason=reason, before=before, after=after)
        if not adv.credit_frozen:
            credit_freeze(advertiser=adv, reason=f"Chargeback {reference}: {reason}", rule=CHARGEBACK_RULE)
        what = (f"{bill.noun.lower()} {bill.label}" if bill is not None  # "threshold bill 3" (decision 0031)
                else f"card deposit #{deposit.pk}")
        notify_many([Draft(adv, "chargeback", f"chargeback:{chargeback.pk}", {
            "amount": f"{adv.currency} {fmt(chargeback.amount, adv.currency)}",
            "what": what,
            "reason": reason,
            "reference": reference,
            "owed_again": bill is not None,
            "arrears": f"{adv.currency} {fmt(acc[Purpose.ARREARS].balance, adv.currency)}",
            "in_arrears": acc[Purpose.ARREARS].balance > 0,
        })])
    return chargeback, True


def _bill_reversal(adv, acc, bill: Bill, reference: str, reason: str, at: datetime):
    bill = Bill.objects.select_for_update().get(pk=bill.pk)
    if bill.status != BillStatus.PAID:
        raise BusinessError("bill_not_paid", f"Only a paid bill can be charged back; this one is {bill.status}.")
    _refused_if_refunded(Refund.objects.filter(credit_note__refers_to__bill=bill))
    p = Posting(kind=TxKind.REFUND, currency=adv.currency, amount=bill.charge_amount, lines=[], advertiser_id=adv.pk,
                occurred_at=at, memo=f"Chargeback {reference} of {bill.get_kind_display().lower()} #{bill.pk}: {reason}")
    if bill.tax:  # the tax booked with the payment goes back with it (R38)
        p.move(debit=tax_account(adv), credit=acc[Purpose.SETTLEMENT], amount=bill.tax)
    if bill.is_invoice:  # paid as Dr settlement, Cr credit line (line_amount) and Cr arrears (the rest)
        p.move(debit=acc[Purpose.CREDIT_LINE], credit=acc[Purpose.SETTLEMENT], amount=bill.line_amount)
        p.move(debit=acc[Purpose.ARREARS], credit=acc[Purpose.SETTLEMENT], amount=bill.amount - bill.line_amount)
    else:  # paid as Dr settlement, Cr billed
        p.move(debit=acc[Purpose.BILLED], credit=acc[Purpose.SETTLEMENT], amount=bill.amount)
    tx = ledger_post(p)
    before = {"bill": bill.pk, "status": bill.status, "gateway_reference": bill.gateway_reference}
    charge_reference = bill.gateway_reference
    bill.status, bill.paid_at, bill.collection = BillStatus.FAILED, None, bill.collection + 1
    bill.last_error = f"Charged back by the card issuer: {reason}"[:300]
    bill.next_retry_at = at + timedelta(hours=settings.BILLING_RETRY_AFTER_HOURS[0])
    bill.save(update_fields=["status", "paid_at", "last_error", "next_retry_at", "collection"])
    # A reversed payment is not a history of successful payments: the threshold does not grow (R25).
    adv.successful_payments = 0
    adv.save(update_fields=["successful_payments"])
    chargeback = Chargeback(reference=reference, advertiser=adv, bill=bill, amount=bill.charge_amount, currency=adv.currency,
                            reason=reason, transaction=tx, charge_reference=charge_reference, created_at=at)
    return chargeback, before, {"bill": bill.pk, "status": bill.status, "owed_again": str(bill.amount)}


def _refused_if_refunded(refunds) -> None:
    """A payment a credit note gave money back from is not reversed in full (decision 0024)."""
    if refunds.exists():
        raise BusinessError("payment_refunded", "A credit note already gave part of this payment back: record the "
                                                "chargeback of the rest by hand with the billing team.")


def _deposit_reversal(adv, acc, deposit: Deposit, reference: str, reason: str, at: datetime):
    if not deposit.card_last4:
        raise BusinessError("not_a_card_payment", "Only a deposit paid by card can be charged back.")
    if Chargeback.objects.filter(deposit=deposit).exists():
        raise BusinessError("already_charged_back", "This deposit was already charged back.")
    _refused_if_refunded(Refund.objects.filter(credit_note__refers_to__deposit=deposit))
    from_cash = min(acc[Purpose.CASH].balance, deposit.amount)
    to_arrears = deposit.amount - from_cash
    p = Posting(kind=TxKind.REFUND, currency=adv.currency, amount=deposit.amount, lines=[], advertiser_id=adv.pk,
                occurred_at=at, memo=f"Chargeback {reference} of card deposit #{deposit.pk}: {reason}")
    p.move(debit=acc[Purpose.CASH], credit=acc[Purpose.SETTLEMENT], amount=from_cash)
    p.move(debit=acc[Purpose.ARREARS], credit=acc[Purpose.SETTLEMENT], amount=to_arrears)
    if deposit.tax:  # the card paid the deposit and its tax (R38): both go back
        p.move(debit=tax_account(adv), credit=acc[Purpose.SETTLEMENT], amount=deposit.tax)
        p.amount = deposit.amount + deposit.tax
    tx = ledger_post(p)
    if to_arrears:
        campaigns_pause(advertiser=adv)
    chargeback = Chargeback(reference=reference, advertiser=adv, deposit=deposit, amount=deposit.amount + deposit.tax,
                            currency=adv.currency, reason=reason, transaction=tx, created_at=at)
    return chargeback, {"deposit": deposit.pk}, {"deposit": deposit.pk, "cash_taken_back": str(from_cash),
                                                 "arrears_added": str(to_arrears)}
