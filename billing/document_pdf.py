"""The PDF of an issued billing document (R39): an invoice, receipt, statement or credit note,
drawn server-side with ReportLab from the document's own immutable snapshot (seller, billed to,
lines, totals), in the style of `billing.invoice_pdf`. `invariant` output: the same document
gives the same bytes.
"""

from datetime import timedelta
from decimal import Decimal, InvalidOperation
from io import BytesIO

from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import SimpleDocTemplate, Spacer, Table, TableStyle

from billing.invoice_pdf import (
    ACCENT,
    BASE,
    ISSUER,
    LABEL,
    RIGHT,
    RIGHT_BOLD,
    RULE,
    SMALL,
    TEXT,
    TITLE,
    _day,
    _p,
    pdf_money,
)
from billing.models import Document, DocumentKind
from billing.money import ZERO
from billing.page_selectors import DocumentRow
from billing.profile import country_name
from billing.statements import ACTIVITY, BALANCES


def _rate(rate) -> str:
    """23.000 → "23", 8.100 → "8.1"."""
    text = f"{rate:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _country(code: str) -> str:
    return country_name(code) if code else ""


def _money(value, currency: str) -> str:
    """A line's amount, stored as a string."""
    try:
        return pdf_money(Decimal(str(value)), currency)
    except InvalidOperation:
        return str(value)


def document_pdf(row: DocumentRow, *, advertiser) -> bytes:
    doc: Document = row.doc
    cur = doc.currency
    kind = doc.get_kind_display()
    seller = doc.seller or {}
    billed = doc.billed_to or {}
    buf = BytesIO()
    pdf = SimpleDocTemplate(
        buf, pagesize=A4, leftMargin=18 * mm, rightMargin=18 * mm, topMargin=18 * mm, bottomMargin=18 * mm,
        title=f"{kind} {doc.number}", author=seller.get("legal_name", ""),
        subject=f"{kind} {doc.number} for {billed.get('legal_name') or advertiser.name}", invariant=1,
    )
    width = pdf.width - 12
    story = []

    seller_block = [_p(seller.get("legal_name", ""), ISSUER)]
    for text in (seller.get("address", ""), _country(seller.get("country", ""))):
        if text:
            seller_block.append(_p(text, SMALL))
    if seller.get("vat_number"):
        seller_block.append(_p(f"VAT number {seller['vat_number']}", SMALL))
    title_block = [_p(f"{kind} {doc.number}", ParagraphStyle("t", parent=TITLE, alignment=TA_RIGHT))]
    if doc.kind == DocumentKind.INVOICE:
        title_block.append(_p(row.status_label, RIGHT_BOLD))
    head = Table([[seller_block, title_block]], colWidths=[width * 0.5, width * 0.5])
    head.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (-1, -1), 0),
                              ("RIGHTPADDING", (0, 0), (-1, -1), 0),
                              ("LINEBELOW", (0, 0), (-1, 0), 1.5, ACCENT), ("BOTTOMPADDING", (0, 0), (-1, 0), 10)]))
    story += [head, Spacer(1, 8 * mm)]

    billed_block = [_p(billed.get("legal_name") or advertiser.name)]
    for key in ("address_line1", "address_line2"):
        if billed.get(key):
            billed_block.append(_p(billed[key]))
    city = " ".join(x for x in (billed.get("postal_code", ""), billed.get("city", "")) if x)
    if city:
        billed_block.append(_p(city))
    if billed.get("country"):
        billed_block.append(_p(billed.get("country_name") or _country(billed["country"])))
    if billed.get("tax_id"):
        billed_block.append(_p(f"Tax ID {billed['tax_id']}", SMALL))
    if billed.get("po_number"):
        billed_block.append(_p(f"PO number {billed['po_number']}", SMALL))
    billed_block.append(_p(f"Advertiser ID {advertiser.pk} · {cur}", SMALL))
    issued_on = row.issued_on
    facts_head = [_p("Billed to", LABEL), _p("Issued", LABEL)]
    facts_body = [billed_block, [_p(_day(issued_on)), _p(f"Dates in {advertiser.timezone}", SMALL)]]
    if doc.kind == DocumentKind.INVOICE and doc.due_at:
        facts_head.append(_p("Due", LABEL))
        facts_body.append(_p(_day(doc.due_at.astimezone(advertiser.tz).date())))
    if doc.kind == DocumentKind.STATEMENT and doc.period_start and doc.period_end:
        last = doc.period_end.astimezone(advertiser.tz).date() - timedelta(days=1)
        facts_head.append(_p("Period", LABEL))
        facts_body.append(_p(f"{_day(doc.period_start.astimezone(advertiser.tz).date())} – {_day(last)}"))
    if doc.refers_to_id and doc.refers_to:
        facts_head.append(_p("Corrects", LABEL))
        facts_body.append(_p(doc.refers_to.number))
    n_extra = len(facts_head) - 2
    widths = [width * 0.5, width * 0.25] + [width * 0.25 / n_extra] * n_extra if n_extra else [width * 0.6, width * 0.4]
    facts = Table([facts_head, facts_body], colWidths=widths)
    facts.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (-1, -1), 0),
                               ("BOTTOMPADDING", (0, 0), (-1, -1), 2)]))
    story += [facts, Spacer(1, 8 * mm)]

    rlabel = ParagraphStyle("rl", parent=LABEL, alignment=TA_RIGHT)
    if doc.kind == DocumentKind.STATEMENT:
        story += _statement(doc, width, rlabel)
    else:
        story += _lines(doc, row, width, rlabel)
    if doc.tax_note:
        story += [_p(doc.tax_note), Spacer(1, 4 * mm)]
    if doc.kind == DocumentKind.INVOICE:
        story += [_p(f"Status: {row.status_label}. Amount due: {pdf_money(row.amount_due or ZERO, cur)}."),
                  Spacer(1, 4 * mm)]
    if doc.reason:
        story += [_p(f"Reason: {doc.reason}", SMALL), Spacer(1, 4 * mm)]
    story.append(_p(f"Amounts are in {cur}. This document is issued once and never changed; corrections are made by "
                    "credit note.", SMALL))
    pdf.build(story)
    return buf.getvalue()


def _lines(doc, row, width, rlabel) -> list:
    cur = doc.currency
    story = []
    rows = [[_p("Description", LABEL), _p(f"Net ({cur})", rlabel), _p(f"Tax ({cur})", rlabel),
             _p(f"Total ({cur})", rlabel)]]
    for line in doc.lines or []:
        rows.append([_p(line.get("description", "")), _p(_money(line.get("net", "0"), cur), RIGHT),
                     _p(_money(line.get("tax", "0"), cur), RIGHT), _p(_money(line.get("total", "0"), cur), RIGHT)])
    n = len(rows)
    rows += [
        ["", "", _p("Net", RIGHT), _p(pdf_money(doc.net, cur), RIGHT)],
        ["", "", _p(f"Tax at {_rate(doc.tax_rate)} %", RIGHT), _p(pdf_money(doc.tax, cur), RIGHT)],
        ["", "", _p("Total", RIGHT_BOLD), _p(pdf_money(doc.total, cur), RIGHT_BOLD)],
    ]
    if doc.kind == DocumentKind.INVOICE:
        rows.append(["", "", _p("Amount due", RIGHT_BOLD), _p(pdf_money(row.amount_due or ZERO, cur), RIGHT_BOLD)])
    table = Table(rows, colWidths=[width * 0.46, width * 0.18, width * 0.18, width * 0.18], repeatRows=1)
    table.setStyle(TableStyle([
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LINEBELOW", (0, 0), (-1, 0), 0.75, RULE),
        ("LINEBELOW", (0, 1), (-1, n - 1), 0.5, RULE),
        ("LINEABOVE", (2, n), (-1, n), 1, TEXT),
        ("LINEABOVE", (2, n + 2), (-1, n + 2), 0.75, TEXT),
        ("TOPPADDING", (0, 0), (-1, -1), 6), ("BOTTOMPADDING", (0, 0), (-1, -1), 6),
        ("LEFTPADDING", (0, 0), (-1, -1), 0), ("RIGHTPADDING", (0, 0), (-1, -1), 0),
    ]))
    story += [table, Spacer(1, 8 * mm)]
    return story


def _statement(doc, width, rlabel) -> list:
    """A statement's figures (R39): balances at the month's start and end, and what happened in it."""
    cur, data = doc.currency, doc.data or {}
    start, end = data.get("opening", {}), data.get("closing", {})
    rows = [[_p("Balance", LABEL), _p(f"Opening ({cur})", rlabel), _p(f"Closing ({cur})", rlabel)]]
    rows += [[_p(label), _p(_money(start.get(k, "0"), cur), RIGHT), _p(_money(end.get(k, "0"), cur), RIGHT)]
             for k, label in BALANCES]
    balances = Table(rows, colWidths=[width * 0.52, width * 0.24, width * 0.24], repeatRows=1)
    activity = data.get("activity", {})
    act_rows = [[_p(f"Activity in {data.get('month', '')}", LABEL), _p(f"Amount ({cur})", rlabel)]]
    act_rows += [[_p(label), _p(_money(activity.get(k, "0"), cur), RIGHT)] for k, label in ACTIVITY]
    moves = Table(act_rows, colWidths=[width * 0.76, width * 0.24], repeatRows=1)
    style = TableStyle([
        ("VALIGN", (0, 0), (-1, -1), "TOP"), ("LINEBELOW", (0, 0), (-1, 0), 0.75, RULE),
        ("LINEBELOW", (0, 1), (-1, -1), 0.5, RULE),
        ("TOPPADDING", (0, 0), (-1, -1), 4), ("BOTTOMPADDING", (0, 0), (-1, -1), 4),
        ("LEFTPADDING", (0, 0), (-1, -1), 0), ("RIGHTPADDING", (0, 0), (-1, -1), 0),
    ])
    balances.setStyle(style)
    moves.setStyle(style)
    return [balances, Spacer(1, 6 * mm), moves, Spacer(1, 6 * mm),
            _p("Closing balances are the ledger's at the end of the month; credit is never cash.", SMALL),
            Spacer(1, 4 * mm)]
