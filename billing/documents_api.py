"""Portal API: billing profile and billing documents (API.md, SPEC R37–R39)."""

from typing import Any

from ninja import Router, Schema

from billing.credit_notes import credit_note_issue
from billing.disputes import dispute_open
from billing.documents import amount_due, credited, document_status, paid_amount, with_state
from billing.invoice_payments import invoice_transfer_record
from billing.models import Document, DocumentKind
from billing.money import fmt
from billing.profile import FIELDS, profile_fields, profile_of, profile_set, tax_id_valid
from portal.api_auth import require_staff
from portal.api_schemas import ERRORS, Money, Timestamp, iso
from portal.errors import BadInput, NotFound
from portal.permissions import advertiser_for

router = Router(tags=["billing documents"])


class BillingProfileIn(Schema):
    legal_name: Any = None
    address_line1: Any = None
    address_line2: Any = None
    city: Any = None
    postal_code: Any = None
    country: Any = None
    tax_id: Any = None
    invoice_emails: Any = None
    po_number: Any = None


class BillingProfileOut(Schema):
    legal_name: str
    address_line1: str
    address_line2: str
    city: str
    postal_code: str
    country: str
    tax_id: str
    tax_id_valid: bool
    invoice_emails: list[str]
    po_number: str
    inherited: bool


class DocumentOut(Schema):
    id: str
    kind: str
    number: str
    issued_at: Timestamp
    currency: str
    net: Money
    tax: Money
    total: Money
    tax_rate: str
    tax_note: str
    status: str
    amount_due: Money
    refers_to: str | None
    pdf_url: str


class DocumentLine(Schema):
    description: str
    net: Money
    tax: Money
    total: Money


class DocumentDetailOut(DocumentOut):
    lines: list[DocumentLine]
    seller: dict
    billed_to: dict
    statement: dict | None = None  # a statement's figures: {month, opening, activity, closing} (R39)


def profile_json(advertiser) -> dict:
    profile, inherited = profile_of(advertiser)
    return {**profile_fields(profile), "tax_id_valid": tax_id_valid(profile), "inherited": inherited}


@router.get("/advertisers/{id}/billing-profile", response={200: BillingProfileOut, **ERRORS},
            summary="The billing profile documents are billed to: the account's own or its BC's (payments access, staff)")
def billing_profile_get(request, id: str):
    adv, _ = advertiser_for(request.auth, id, need="payments_read")
    return profile_json(adv)


@router.put("/advertisers/{id}/billing-profile", response={200: BillingProfileOut, **ERRORS},
            summary="Set the account's own billing profile (admin, finance, staff); audited")
def billing_profile_put(request, id: str, payload: BillingProfileIn):
    adv, _ = advertiser_for(request.auth, id, need="payments_write")
    profile_set(actor=request.auth, data=payload.dict(), reason="Set through the API", advertiser=adv)
    return profile_json(adv)


def document_json(doc: Document, *, detail: bool = False) -> dict:
    cur = doc.currency
    credit = credited(doc)
    paid = paid_amount(doc)
    out = {
        "id": str(doc.pk), "kind": doc.kind, "number": doc.number, "issued_at": iso(doc.issued_at), "currency": cur,
        "net": fmt(doc.net, cur), "tax": fmt(doc.tax, cur), "total": fmt(doc.total, cur),
        "tax_rate": f"{doc.tax_rate.normalize():f}", "tax_note": doc.tax_note,
        "status": document_status(doc, paid=paid, credit=credit),
        "amount_due": fmt(amount_due(doc, paid=paid, credit=credit), cur),
        "refers_to": str(doc.refers_to_id) if doc.refers_to_id else None,
        "pdf_url": f"/a/{doc.advertiser_id}/payments/documents/{doc.pk}/pdf/",
    }
    if detail:
        out.update(lines=doc.lines, seller=doc.seller,
                   billed_to={k: v for k, v in doc.billed_to.items() if k in FIELDS or k == "tax_id_valid"},
                   statement=doc.data if doc.kind == DocumentKind.STATEMENT else None)
    return out


def document_for(user, document_id, *, need: str = "payments_read") -> Document:
    """The document, if the caller may read its advertiser's payments; another's is 404."""
    try:
        doc = Document.objects.select_related("bill").get(pk=int(str(document_id)))
    except (Document.DoesNotExist, ValueError, OverflowError):
        raise NotFound("document") from None
    try:
        advertiser_for(user, doc.advertiser_id, need=need)
    except NotFound:
        raise NotFound("document") from None
    return doc


@router.get("/advertisers/{id}/documents", response={200: list[DocumentOut], **ERRORS},
            summary="Billing documents, newest first; kind: invoice, receipt, statement or credit_note")
def document_list(request, id: str, kind: str | None = None):
    adv, _ = advertiser_for(request.auth, id, need="payments_read")
    docs = with_state(Document.objects.filter(advertiser=adv)).order_by("-issued_at", "-pk")
    if kind is not None:
        if kind not in DocumentKind.values:
            raise BadInput("invalid_kind", f"kind must be one of {', '.join(DocumentKind.values)}.")
        docs = docs.filter(kind=kind)
    return [document_json(d) for d in docs]


@router.get("/documents/{id}", response={200: DocumentDetailOut, **ERRORS},
            summary="One billing document with its lines, seller and billed-to snapshot")
def document_get(request, id: str):
    return document_json(document_for(request.auth, id), detail=True)


class TransferIn(Schema):
    amount: Any = None
    reference: Any = None
    paid_at: Any = None


class CreditNoteIn(Schema):
    amount: Any = None
    reason: Any = None
    idempotency_key: Any = None


class DisputeIn(Schema):
    reason: Any = None


class DisputeOut(Schema):
    id: str
    status: str


@router.post("/documents/{id}/payments", response={200: DocumentDetailOut, **ERRORS},
             summary="Record a bank transfer against an invoice (staff); idempotent by reference")
def document_payment(request, id: str, payload: TransferIn):
    require_staff(request.auth)
    doc = document_for(request.auth, id)
    invoice_transfer_record(actor=request.auth, document=doc, amount=payload.amount, reference=payload.reference,
                            paid_at=payload.paid_at)
    return document_json(Document.objects.select_related("bill").get(pk=doc.pk), detail=True)


@router.post("/documents/{id}/credit-notes", response={201: DocumentDetailOut, **ERRORS},
             summary="Issue a credit note against an invoice or receipt (staff); idempotent by key")
def document_credit_note(request, id: str, payload: CreditNoteIn):
    require_staff(request.auth)
    doc = document_for(request.auth, id)
    note, _ = credit_note_issue(actor=request.auth, document=doc, amount=payload.amount, reason=payload.reason,
                                idempotency_key=payload.idempotency_key)
    return 201, document_json(with_state(Document.objects.filter(pk=note.pk)).get(), detail=True)


@router.post("/documents/{id}/disputes", response={201: DisputeOut, **ERRORS},
             summary="Dispute an invoice within 7 days of issue (admin, finance)")
def document_dispute(request, id: str, payload: DisputeIn):
    doc = document_for(request.auth, id, need="payments_write")
    dispute = dispute_open(actor=request.auth, document=doc, reason=payload.reason)
    return 201, {"id": str(dispute.pk), "status": dispute.status}
