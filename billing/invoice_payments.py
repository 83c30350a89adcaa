"""Invoice payment by bank transfer (SPEC R41), recorded by staff.

A transfer is idempotent by its bank `reference` (unique per advertiser): recording it again
answers the first one; the same reference with another amount or invoice is a Conflict. Partial
payments are allowed up to what the invoice still counts. The money pays the invoice's parts in
order — the credit line, the arrears past it, then the tax (R38) — so the ledger's balances say
what is still owed; a transfer gets a receipt (R39). Once the invoice is paid in full its bill is
paid and campaigns paused for it resume. An invoice part-paid by transfer is not charged to the
card ("Pay now" refuses it), so nobody pays twice.
"""

from django.db import transaction
from django.utils import timezone

from billing.autopay import account_paid_up
from billing.deposits import campaigns_resume
from billing.documents import Line, amount_due, credited, document_build, document_issue, transfers_received
from billing.ledger import Posting, advertiser_accounts, ledger_post, lock_advertisers, tax_account
from billing.models import BillStatus, Document, DocumentKind, InvoicePayment, Purpose, TxKind
from billing.money import ZERO, fmt, parse_amount
from billing.tax import Treatment
from portal import inputs
from portal.audit import audit_record
from portal.errors import BusinessError, Conflict


def invoice_transfer_record(*, actor, document: Document, amount, reference, paid_at=None) -> InvoicePayment:
    """Record a bank transfer against an invoice and book it (R41)."""
    amount = parse_amount(amount, document.currency)
    reference = inputs.key(reference, field="reference", max_length=64, code="invalid_reference")
    paid_at = inputs.timestamp(paid_at, field="paid_at") if paid_at not in (None, "") else timezone.now()
    if document.kind != DocumentKind.INVOICE:
        raise BusinessError("not_an_invoice", f"Bank transfers are recorded against invoices; {document.number} is a "
                                              f"{document.get_kind_display().lower()}.")
    with transaction.atomic():
        adv = lock_advertisers([document.advertiser_id])[document.advertiser_id]
        prior = InvoicePayment.objects.filter(advertiser=adv, reference=reference).first()
        if prior is not None:
            if prior.document_id != document.pk or prior.amount != amount:
                raise Conflict("reference_reused", f"Bank reference {reference!r} was already recorded: "
                                                   f"{fmt(prior.amount, adv.currency)} against another payment.")
            return prior
        bill = document.bill
        due = amount_due(document)
        if bill is None or due <= 0 or bill.status == BillStatus.PAID:
            raise BusinessError("nothing_due", f"Invoice {document.number} has nothing left to pay.")
        if amount > due:
            raise BusinessError("payment_exceeds_amount_due",
                                f"{fmt(amount, adv.currency)} is more than the {fmt(due, adv.currency)} still due on "
                                f"{document.number}.")
        acc = advertiser_accounts([adv.pk])[adv.pk]
        p = Posting(kind=TxKind.PAYMENT, currency=adv.currency, amount=amount, lines=[], advertiser_id=adv.pk,
                    occurred_at=paid_at, memo=f"Bank transfer {reference} for invoice {document.number}")
        before = transfers_received(document)
        parts = [(acc[Purpose.CREDIT_LINE], bill.line_amount), (acc[Purpose.ARREARS], bill.amount - bill.line_amount),
                 (None, bill.tax)]
        left, skip = amount, before
        for account, size in parts:
            take = max(min(size - skip, left), ZERO)
            skip = max(skip - size, ZERO)
            if take > 0:
                p.move(debit=acc[Purpose.SETTLEMENT], credit=account or tax_account(adv), amount=take)
                left -= take
        tx = ledger_post(p)
        payment = InvoicePayment.objects.create(document=document, advertiser=adv, reference=reference, amount=amount,
                                                paid_at=paid_at, transaction=tx, created_by=actor)
        document_issue(document_build(
            advertiser=adv, kind=DocumentKind.RECEIPT, source_key=f"receipt:transfer:{payment.pk}", issued_at=paid_at,
            lines=[Line(f"Bank transfer {reference} for invoice {document.number}", amount)],
            treatment=Treatment(ZERO, ""), refers_to=document))
        if before + amount + credited(document) >= document.total:
            bill.status, bill.paid_at, bill.next_retry_at = BillStatus.PAID, paid_at, None
            bill.save(update_fields=["status", "paid_at", "next_retry_at"])
            if account_paid_up(adv):
                campaigns_resume(advertiser=adv)
        audit_record(actor=actor, action="invoice_transfer_record", advertiser=adv, target=f"Invoice {document.number}",
                     reason=f"Bank transfer {reference}", after={"amount": fmt(amount, adv.currency),
                                                                 "paid_at": paid_at.isoformat()})
    return payment

