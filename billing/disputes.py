"""Disputes of an invoice (SPEC R40): an advertiser's admin or finance member disputes an invoice
within `INVOICE_DISPUTE_DAYS` of its issue; staff resolve it with a credit note or reject it with
a note. One open dispute per invoice (a partial unique index); every step is audited."""

from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.models import Dispute, DisputeStatus, Document, DocumentKind
from billing.money import fmt
from portal import inputs
from portal.audit import audit_record
from portal.errors import BusinessError, Conflict
from portal.notifications import Draft, notify_many


def dispute_open(*, actor, document: Document, reason, at=None) -> Dispute:
    at = at or timezone.now()
    reason = inputs.text(reason, field="reason", max_length=1000)
    if document.kind != DocumentKind.INVOICE:
        raise BusinessError("not_an_invoice", "Only an invoice can be disputed.")
    if at > document.issued_at + timedelta(days=settings.INVOICE_DISPUTE_DAYS):
        raise BusinessError("dispute_window_closed",
                            f"Invoice {document.number} was issued more than {settings.INVOICE_DISPUTE_DAYS} days ago: "
                            "contact support to correct it.")
    try:
        with transaction.atomic():
            dispute = Dispute.objects.create(document=document, advertiser_id=document.advertiser_id, reason=reason,
                                             opened_by=actor if actor is not None and actor.is_authenticated else None,
                                             created_at=at)
            audit_record(actor=actor, action="invoice_dispute_open", advertiser=document.advertiser,
                         target=f"Invoice {document.number}", reason=reason, after={"dispute": dispute.pk})
    except IntegrityError:
        raise Conflict("dispute_open", f"Invoice {document.number} already has an open dispute.") from None
    return dispute


def dispute_reject(*, actor, dispute: Dispute, note) -> Dispute:
    note = inputs.text(note, field="note", max_length=1000)
    with transaction.atomic():
        return dispute_close(actor=actor, dispute=dispute, status=DisputeStatus.REJECTED, resolution=note)


def dispute_close(*, actor, dispute: Dispute, status: str, resolution: str, credit_note=None) -> Dispute:
    """Resolve an open dispute — rejected, or credited by `credit_note` — audited and notified.
    Call inside the transaction that made the credit note, if any."""
    dispute = Dispute.objects.select_for_update().get(pk=dispute.pk)
    if dispute.status != DisputeStatus.OPEN or (credit_note is not None and dispute.document_id != credit_note.refers_to_id):
        raise Conflict("dispute_closed", "This dispute was already resolved.")
    dispute.status, dispute.resolution, dispute.credit_note = status, resolution, credit_note
    dispute.resolved_by = actor if actor is not None and actor.is_authenticated else None
    dispute.resolved_at = timezone.now()
    dispute.save(update_fields=["status", "resolution", "credit_note", "resolved_by", "resolved_at"])
    action = "invoice_dispute_credit" if credit_note is not None else "invoice_dispute_reject"
    after = {"status": status, **({"credit_note": credit_note.number} if credit_note is not None else {})}
    audit_record(actor=actor, action=action, advertiser=dispute.advertiser, target=f"Invoice {dispute.document.number}",
                 reason=resolution, before={"status": DisputeStatus.OPEN}, after=after)
    dispute_notify(dispute)
    return dispute


def dispute_notify(dispute: Dispute) -> None:
    """Tell the advertiser how its dispute was decided (R40: notified)."""
    note = dispute.credit_note
    notify_many([Draft(dispute.advertiser, "dispute_decided", f"dispute_decided:{dispute.pk}", {
        "document": dispute.document.number,
        "decision": "resolved with a credit note" if note else "rejected",
        "credit_note": note.number if note else "",
        "amount": f"{note.currency} {fmt(note.total, note.currency)}" if note else "",
        "note": dispute.resolution,
    })])
