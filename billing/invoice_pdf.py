"""The PDF of an invoice or bill, drawn server-side with ReportLab from the same
`InvoiceDocument` as the printable page, so the two always say the same thing.

Built-in PDF fonts (Helvetica) are used, so no font file ships; they cover Windows-1252 only,
so an amount whose currency symbol is outside it (₩, ₹) is written with the ISO code instead.
`invariant` output: the same bill gives the same bytes.
"""

from io import BytesIO
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from billing.page_selectors import InvoiceDocument
from billing.money import SYMBOLS, format_money

TEXT = colors.HexColor("#161823")
MUTED = colors.HexColor("#6b7080")
RULE = colors.HexColor("#e3e5ea")
ACCENT = colors.HexColor("#fe2c55")

BASE = ParagraphStyle("base", fontName="Helvetica", fontSize=9.5, leading=13, textColor=TEXT)
SMALL = ParagraphStyle("small", parent=BASE, fontSize=8.5, leading=11, textColor=MUTED)
LABEL = ParagraphStyle("label", parent=SMALL, fontName="Helvetica-Bold")
TITLE = ParagraphStyle("title", parent=BASE, fontName="Helvetica-Bold", fontSize=20, leading=24)
ISSUER = ParagraphStyle("issuer", parent=BASE, fontName="Helvetica-Bold", fontSize=12, leading=15)
RIGHT = ParagraphStyle("right", parent=BASE, alignment=TA_RIGHT)
RIGHT_BOLD = ParagraphStyle("right_bold", parent=RIGHT, fontName="Helvetica-Bold")


def pdf_money(amount, currency: str) -> str:
    """`format_money`, with an ASCII minus and the ISO code where Helvetica has no symbol."""
    text = format_money(amount, currency).replace("\u2212", "-")
    try:
        text.encode("cp1252")
    except UnicodeEncodeError:
        sign, symbol = "-" if amount < 0 else "", SYMBOLS[currency]
        text = f"{sign}{currency} {format_money(abs(amount), currency).removeprefix(symbol)}"
    return text


def _p(text: str, style=BASE) -> Paragraph:
    return Paragraph(escape(str(text)), style)


def _day(d) -> str:
    return f"{d:%b} {d.day}, {d:%Y}" if d else "—"


def invoice_pdf(doc: InvoiceDocument) -> bytes:
    buf = BytesIO()
    cur = doc.currency
    adv = doc.advertiser
    pdf = SimpleDocTemplate(
        buf, pagesize=A4, leftMargin=18 * mm, rightMargin=18 * mm, topMargin=18 * mm, bottomMargin=18 * mm,
        title=f"{doc.title} {doc.number}", author=doc.issuer_name, subject=f"{doc.title} {doc.number} for {adv.name}",
        invariant=1,
    )
    width = pdf.width - 12  # the frame keeps 6 pt of padding on each side
    story = []

    head = Table(
        [[
            [_p(doc.issuer_name, ISSUER), _p(f"Issuer {doc.issuer_code} · {doc.issuer_email}", SMALL)],
            [_p(f"{doc.title} {doc.number}", ParagraphStyle("t", parent=TITLE, alignment=TA_RIGHT)),
             _p(doc.status_label, RIGHT_BOLD)],
        ]],
        colWidths=[width * 0.5, width * 0.5],
    )
    head.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (-1, -1), 0),
                              ("RIGHTPADDING", (0, 0), (-1, -1), 0),
                              ("LINEBELOW", (0, 0), (-1, 0), 1.5, ACCENT), ("BOTTOMPADDING", (0, 0), (-1, 0), 10)]))
    story += [head, Spacer(1, 8 * mm)]

    period = f"{_day(doc.period_start)} – {_day(doc.period_end)}" if doc.period_start else (
        f"until {_day(doc.period_end)}" if doc.period_end else "—")
    facts = Table(
        [
            [_p("Billed to", LABEL), _p("Issued", LABEL), _p("Due", LABEL), _p("Period", LABEL)],
            [[_p(adv.name), _p(f"Advertiser ID {adv.pk} · {adv.currency}", SMALL)],
             _p(_day(doc.issued_on)), _p(_day(doc.due_on)), [_p(period), _p(f"Dates in {adv.timezone}", SMALL)]],
        ],
        colWidths=[width * 0.34, width * 0.16, width * 0.16, width * 0.34],
    )
    facts.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (-1, -1), 0),
                               ("BOTTOMPADDING", (0, 0), (-1, -1), 2)]))
    story += [facts, Spacer(1, 8 * mm)]

    rows = [[_p("Description", LABEL), _p(f"Amount ({cur})", ParagraphStyle("rl", parent=LABEL, alignment=TA_RIGHT))]]
    for line in doc.lines:
        rows.append([[_p(line.label, ParagraphStyle("b", parent=BASE, fontName="Helvetica-Bold")), _p(line.detail, SMALL)],
                     _p(pdf_money(line.amount, cur), RIGHT)])
    n = len(rows)
    rows += [
        [_p("Total", RIGHT_BOLD), _p(pdf_money(doc.total, cur), RIGHT_BOLD)],
        [_p("Paid", RIGHT), _p(pdf_money(doc.paid, cur), RIGHT)],
        [_p("Amount due", RIGHT_BOLD), _p(pdf_money(doc.balance_due, cur), RIGHT_BOLD)],
    ]
    lines = Table(rows, colWidths=[width * 0.75, width * 0.25], repeatRows=1)
    lines.setStyle(TableStyle([
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LINEBELOW", (0, 0), (-1, 0), 0.75, RULE),
        ("LINEBELOW", (0, 1), (-1, n - 1), 0.5, RULE),
        ("LINEABOVE", (0, n), (-1, n), 1, TEXT),
        ("LINEABOVE", (0, n + 2), (-1, n + 2), 0.75, TEXT),
        ("TOPPADDING", (0, 0), (-1, -1), 6), ("BOTTOMPADDING", (0, 0), (-1, -1), 6),
        ("LEFTPADDING", (0, 0), (-1, -1), 0), ("RIGHTPADDING", (0, 0), (-1, -1), 0),
    ]))
    story += [lines, Spacer(1, 8 * mm), _p(doc.status_note), Spacer(1, 4 * mm)]
    story.append(_p("Ad credit is a non-cash balance: it cannot be transferred, withdrawn or refunded, and it "
                    "expires. Amounts are in " + cur + ".", SMALL))
    pdf.build(story)
    return buf.getvalue()
