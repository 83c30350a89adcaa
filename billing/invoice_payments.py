"""Invoice payment by bank transfer (SPEC R41), recorded by staff.

A transfer is idempotent by its bank `reference` (unique per advertiser): recording it again
answers the first one; the same reference with another amount or invoice is a Conflict. Partial
payments are allowed up to what the invoice still counts. Each transfer carries the invoice's tax
in proportion (`billing.documents.step_tax`, the same rule as a credit note's), and its net pays
the credit line, then the arrears past it, so the ledger's balances say what is still owed; a
transfer gets a receipt with its net and tax (R39). Once the invoice is settled its bill is paid
and campaigns paused for it resume. An invoice part-paid by transfer or credited is not charged to
the card ("Pay now" refuses it), so nobody pays twice.
"""

from django.db import transaction
from django.utils import timezone

from billing.autopay import account_paid_up
from billing.deposits import campaigns_resume
from billing.documents import (
    Line,
    amount_due,
    document_build,
    document_issue,
    net_parts,
    settlement_of,
    step_tax,
    with_state,
)
from billing.ledger import Posting, advertiser_accounts, ledger_post, lock_advertisers, tax_account
from billing.models import BillStatus, Document, DocumentKind, InvoicePayment, Purpose, TxKind
from billing.money import fmt, parse_amount
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
        document = with_state(Document.objects.filter(pk=document.pk)).get()
        bill, state = document.bill, settlement_of(document)
        due = amount_due(document)
        if bill is None or due <= 0 or bill.status == BillStatus.PAID:
            raise BusinessError("nothing_due", f"Invoice {document.number} has nothing left to pay.")
        if amount > due:
            raise BusinessError("payment_exceeds_amount_due",
                                f"{fmt(amount, adv.currency)} is more than the {fmt(due, adv.currency)} still due on "
                                f"{document.number}.")
        # A transfer carries the invoice's tax in proportion (R38: tax is due on what is received),
        # its net pays the credit line first, then the arrears past it.
        tax = step_tax(document, state.settled, amount)
        line, arrears = net_parts(document, state.settled, amount - tax)
        acc = advertiser_accounts([adv.pk])[adv.pk]
        p = Posting(kind=TxKind.PAYMENT, currency=adv.currency, amount=amount, lines=[], advertiser_id=adv.pk,
                    occurred_at=paid_at, memo=f"Bank transfer {reference} for invoice {document.number}")
        p.move(debit=acc[Purpose.SETTLEMENT], credit=acc[Purpose.CREDIT_LINE], amount=line)
        p.move(debit=acc[Purpose.SETTLEMENT], credit=acc[Purpose.ARREARS], amount=arrears)
        if tax:
            p.move(debit=acc[Purpose.SETTLEMENT], credit=tax_account(adv), amount=tax)
        tx = ledger_post(p)
        payment = InvoicePayment.objects.create(document=document, advertiser=adv, reference=reference, amount=amount,
                                                paid_at=paid_at, transaction=tx, created_by=actor)
        document_issue(document_build(
            advertiser=adv, kind=DocumentKind.RECEIPT, source_key=f"receipt:transfer:{payment.pk}", issued_at=paid_at,
            lines=[Line(f"Bank transfer {reference} for invoice {document.number}", amount - tax, tax)],
            treatment=Treatment(document.tax_rate, document.tax_note), refers_to=document))
        if state.settled + amount >= document.total:
            invoice_settled(adv, bill, at=paid_at)
        audit_record(actor=actor, action="invoice_transfer_record", advertiser=adv, target=f"Invoice {document.number}",
                     reason=f"Bank transfer {reference}", after={"amount": fmt(amount, adv.currency),
                                                                 "paid_at": paid_at.isoformat()})
    return payment


def invoice_settled(adv, bill, *, at) -> None:
    """Paid in full (by transfers, credit notes or both): the bill is paid and campaigns paused
    for it resume once the account owes nothing (R27)."""
    bill.status, bill.paid_at, bill.next_retry_at = BillStatus.PAID, at, None
    bill.save(update_fields=["status", "paid_at", "next_retry_at"])
    if account_paid_up(adv):
        campaigns_resume(advertiser=adv)

