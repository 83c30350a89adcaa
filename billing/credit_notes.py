"""Credit notes (SPEC R40; docs/decisions/0024-credit-notes-and-refunds.md).

An issued invoice or receipt is corrected only by a credit note: an amount up to what the
document still counts, a reason and an idempotency key. Under the advertiser's lock, in one
transaction, `credit_note_issue`

1. takes the amount off what is still owed on an invoice (its credit line and arrears on the
   ledger; the tax in it was never booked, since tax is booked when paid), then
2. gives back the rest of what was paid: to the card that paid, through the gateway, or — for
   what came by bank transfer — by bank transfer; never as promotional credit,

each part with its share of the document's tax (`billing.documents.step_tax`: in proportion,
rounded once, the shares adding up to the tax exactly), in one balanced ledger posting, and
issues the credit note document (`CN-YYYY-NNNNNN`), a `Refund` row for the money going back, an
audit line and a notification. The card refund is sent after commit under the key
`refund-<credit note id>`: a retry, a concurrent request with the same key or the retry job
(`refunds_send`) reaches the gateway with the same key, so the card is refunded once.
"""

import logging
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from billing.documents import (
    Line,
    document_build,
    document_issue,
    net_parts,
    paid_by_card,
    settlement_of,
    step_tax,
    tax_share,
    with_state,
)
from billing.disputes import dispute_close
from billing.gateway import get_gateway
from billing.invoice_payments import invoice_settled
from billing.ledger import Posting, advertiser_accounts, ledger_post, lock_advertisers, tax_account
from billing.models import (
    BC_TRANSFER,
    BillStatus,
    Dispute,
    DisputeStatus,
    Document,
    DocumentKind,
    Purpose,
    Refund,
    RefundMethod,
    RefundStatus,
    TxKind,
)
from billing.money import ZERO, fmt, parse_amount
from billing.tax import Treatment
from portal import inputs
from portal.audit import audit_record
from portal.errors import BusinessError, Conflict
from portal.notifications import Draft, notify_many

log = logging.getLogger("billing.credit_notes")


def credit_note_issue(*, actor, document: Document, amount, reason, idempotency_key,
                      dispute: Dispute | None = None) -> tuple[Document, bool]:
    """Issue a credit note against `document`; returns it and whether it is new. The same key
    again answers the first credit note; the same key for another amount or document is a
    Conflict. With `dispute`, the credit note resolves it (R40)."""
    amount = parse_amount(amount, document.currency)
    reason = inputs.text(reason, field="reason", max_length=500)
    key = inputs.key(idempotency_key, max_length=100)
    source_key = f"credit_note:{key}"
    with transaction.atomic():
        adv = lock_advertisers([document.advertiser_id])[document.advertiser_id]
        prior = Document.objects.filter(advertiser=adv, source_key=source_key).first()
        if prior is not None:
            if prior.refers_to_id != document.pk or prior.total != amount:
                raise Conflict("idempotency_key_reused",
                               f"idempotency_key {key!r} was already used for credit note {prior.number} of "
                               f"{fmt(prior.total, prior.currency)}.")
            return prior, False
        doc = with_state(Document.objects.select_related("deposit").filter(pk=document.pk)).get()
        how = _paid_how(doc)
        state = settlement_of(doc)
        if amount > state.creditable:
            raise BusinessError("credit_note_exceeds_document",
                                f"{fmt(amount, doc.currency)} is more than the {fmt(state.creditable, doc.currency)} "
                                f"{doc.number} still counts.")
        # 1. off what is still owed (an invoice), in the order of the invoice's steps
        reduced = min(amount, state.owed)
        reduced_tax = step_tax(doc, state.settled, reduced)
        # 2. the rest of what was paid goes back, with its share of the tax that was booked
        refunded = amount - reduced
        collected_tax = doc.tax - state.reduced_tax - reduced_tax

        def share(x: Decimal) -> Decimal:
            return tax_share(x, tax=collected_tax, whole=state.paid, currency=doc.currency)

        refunded_tax = share(state.refunded + refunded) - share(state.refunded) if refunded else ZERO
        acc = advertiser_accounts([adv.pk])[adv.pk]
        p = Posting(kind=TxKind.CREDIT_NOTE, currency=adv.currency, amount=amount, lines=[], advertiser_id=adv.pk,
                    memo=f"Credit note for {doc.number}: {reason}"[:200])
        if reduced:
            line, arrears = net_parts(doc, state.settled, reduced - reduced_tax)
            p.move(debit=acc[Purpose.REVENUE], credit=acc[Purpose.CREDIT_LINE], amount=line)
            p.move(debit=acc[Purpose.REVENUE], credit=acc[Purpose.ARREARS], amount=arrears)
        if refunded:
            net_back = refunded - refunded_tax
            if doc.deposit_id:  # a deposit's net is the cash it loaded: that cash goes back
                if acc[Purpose.CASH].balance < net_back:
                    raise BusinessError("credit_note_exceeds_cash",
                                        f"Only {fmt(acc[Purpose.CASH].balance, doc.currency)} of the deposit is "
                                        f"unspent; a credit note cannot give back cash already spent on ads.")
                p.move(debit=acc[Purpose.CASH], credit=acc[Purpose.SETTLEMENT], amount=net_back)
            else:
                p.move(debit=acc[Purpose.REVENUE], credit=acc[Purpose.SETTLEMENT], amount=net_back)
            if refunded_tax:
                p.move(debit=tax_account(adv), credit=acc[Purpose.SETTLEMENT], amount=refunded_tax)
        tx = ledger_post(p)
        cur = doc.currency
        note = document_issue(document_build(
            advertiser=adv, kind=DocumentKind.CREDIT_NOTE, source_key=source_key,
            lines=[Line(f"Credit for {doc.number}: {reason}"[:300], amount - reduced_tax - refunded_tax,
                        reduced_tax + refunded_tax)],
            treatment=Treatment(doc.tax_rate, doc.tax_note), refers_to=doc, reason=reason,
            created_by=actor if actor is not None and actor.is_authenticated else None,
            data={"reduced": fmt(reduced, cur), "reduced_tax": fmt(reduced_tax, cur), "refunded": fmt(refunded, cur),
                  "refunded_tax": fmt(refunded_tax, cur), "transaction": tx.pk,
                  "refund_method": how[0] if refunded else ""},
        ))
        refund = None
        if refunded:
            method, charge_key, last4 = how
            refund = Refund.objects.create(
                credit_note=note, advertiser=adv, method=method, amount=refunded, currency=cur, charge_key=charge_key,
                card_last4=last4, status=RefundStatus.PENDING if method == RefundMethod.CARD else RefundStatus.TO_SEND,
            )
        if reduced and state.settled + reduced >= doc.total and doc.bill is not None \
                and doc.bill.status != BillStatus.PAID:
            invoice_settled(adv, doc.bill, at=timezone.now())
        if dispute is not None:
            dispute_close(actor=actor, dispute=dispute, status=DisputeStatus.CREDITED, resolution=reason,
                          credit_note=note)
        audit_record(actor=actor, action="credit_note_issue", advertiser=adv, target=f"{doc}"[:200], reason=reason,
                     after={"credit_note": note.number, "amount": fmt(amount, cur), "off_amount_owed": fmt(reduced, cur),
                            "given_back": fmt(refunded, cur), "tax": fmt(reduced_tax + refunded_tax, cur),
                            "refund": refund.method if refund else ""})
        notify_many([Draft(adv, "credit_note_issued", f"credit_note_issued:{note.pk}", {
            "number": note.number, "document": doc.number, "amount": f"{cur} {fmt(amount, cur)}", "reason": reason,
            "given_back": f"{cur} {fmt(refunded, cur)}" if refunded else "",
            "refund_method": refund.get_method_display().lower() if refund else "",
        })])
        if refund is not None and refund.method == RefundMethod.CARD:
            transaction.on_commit(lambda: _send_now(refund.pk))
    return note, True


def _paid_how(doc: Document) -> tuple[str, str, str]:
    """How the document was paid, for what a credit note gives back: (method, card charge key,
    card last 4). Refuses documents a credit note cannot correct."""
    if doc.kind == DocumentKind.INVOICE:
        if paid_by_card(doc):
            return RefundMethod.CARD, doc.bill.charge_key, doc.bill.card_last4
        return RefundMethod.BANK_TRANSFER, "", ""
    if doc.kind != DocumentKind.RECEIPT:
        raise BusinessError("not_creditable", f"A {doc.get_kind_display().lower()} is not corrected by a credit note; "
                                              "credit the invoice or receipt it is about.")
    if doc.refers_to_id is not None or (doc.bill is not None and doc.bill.is_invoice):
        invoice = doc.refers_to.number if doc.refers_to_id else "the invoice"
        raise BusinessError("credit_the_invoice", f"{doc.number} is a payment of an invoice: credit {invoice} instead, "
                                                  "so the payment and the invoice are corrected together.")
    if doc.deposit_id:
        deposit = doc.deposit
        if deposit.source == BC_TRANSFER:
            raise BusinessError("not_creditable", "A Business Center transfer is returned to the Business Center.")
        if deposit.chargebacks.exists():
            raise BusinessError("payment_reversed", "This deposit was charged back: the card was refunded already.")
        if deposit.card_last4:
            return RefundMethod.CARD, deposit.idempotency_key, deposit.card_last4
        return RefundMethod.BANK_TRANSFER, "", ""
    bill = doc.bill
    if bill is None or bill.status != BillStatus.PAID or not doc.source_key.endswith(f":{bill.collection}"):
        raise BusinessError("payment_reversed", "This card payment was charged back: the card was refunded already.")
    return RefundMethod.CARD, bill.charge_key, bill.card_last4


# ---- sending card refunds ----

def _send_now(refund_id: int) -> None:
    """After commit: a gateway that does not answer leaves the refund pending for the job."""
    try:
        refunds_send(ids=[refund_id])
    except Exception:  # noqa: BLE001 — the credit note stands; `retry_payments` sends it later
        log.exception("refund %s not sent; the retry job will send it", refund_id)


def refunds_send(*, ids: list[int] | None = None, at: datetime | None = None, chunk: int = 200) -> dict:
    """Send pending card refunds to the gateway (after the credit note commits, and from the
    `retry_payments` job for any a crash left pending). Each row is claimed under its lock and
    sent with its own key, so a refund sent twice is refunded once."""
    at = at or timezone.now()
    qs = Refund.objects.filter(status=RefundStatus.PENDING, method=RefundMethod.CARD)
    if ids is not None:
        qs = qs.filter(pk__in=ids)
    sent = failed = 0
    gateway = get_gateway()
    for pk in list(qs.order_by("pk").values_list("pk", flat=True)[:chunk]):
        with transaction.atomic():
            refund = Refund.objects.select_for_update(skip_locked=True).filter(pk=pk, status=RefundStatus.PENDING).first()
            if refund is None:
                continue  # sent meanwhile, or being sent by another worker
            result = gateway.refund(charge_key=refund.charge_key, amount=refund.amount, currency=refund.currency,
                                    idempotency_key=refund.gateway_key)
            refund.attempts += 1
            if result.approved:
                refund.status, refund.gateway_reference, refund.refunded_at = RefundStatus.REFUNDED, result.reference, at
                sent += 1
            else:
                refund.last_error = (result.message or result.status)[:300]
                if result.status != "timeout":
                    refund.status = RefundStatus.FAILED  # staff pay it by hand (decision 0024)
                failed += 1
            refund.save(update_fields=["status", "gateway_reference", "refunded_at", "attempts", "last_error"])
    return {"refunded": sent, "failed": failed}


def refund_mark_sent(*, actor, refund: Refund, reference) -> Refund:
    """Staff record that money went back outside the gateway: a bank transfer sent, or a card
    refund the gateway refused, paid by hand (audited)."""
    reference = inputs.text(reference, field="reference", max_length=300)
    with transaction.atomic():
        refund = Refund.objects.select_for_update().get(pk=refund.pk)
        if refund.status == RefundStatus.REFUNDED:
            raise Conflict("refund_sent", "This refund was already paid back.")
        before = refund.status
        refund.status, refund.refunded_at, refund.gateway_reference = RefundStatus.REFUNDED, timezone.now(), reference[:64]
        refund.save(update_fields=["status", "refunded_at", "gateway_reference"])
        audit_record(actor=actor, action="refund_mark_sent", advertiser=refund.advertiser,
                     target=f"Refund of {refund.credit_note.number}", reason=reference,
                     before={"status": before}, after={"status": refund.status})
    return refund

