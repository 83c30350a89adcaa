"""Billing documents (SPEC R39): receipts, invoices, statements and credit notes.

A document is issued once per thing it is of (`source_key`), inside the transaction that made
that thing, with a number gapless per series and year taken from a counter row that stays
locked until commit — a rolled-back issue gives its number back. Rows are immutable (the
database refuses UPDATE and DELETE on PostgreSQL); payments, credit notes and disputes are rows
of their own, and `document_status` computes a document's state from them.
"""

import functools
import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.db.models import Prefetch
from django.utils import timezone

from billing.models import SERIES, BillStatus, Document, DocumentCounter, DocumentKind
from billing.money import ZERO, fmt, round_down
from billing.profile import profile_snapshot, profile_snapshots
from billing.tax import Treatment
from portal.dbtypes import prepared_cursor
from portal.notifications import Draft, notify_many


@dataclass
class Line:
    """One document line: its net amount and the tax on it (R38: tax per line, rounded once)."""

    description: str
    net: Decimal
    tax: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        return self.net + self.tax

    def as_json(self, currency: str) -> dict:
        return {"description": self.description, "net": fmt(self.net, currency), "tax": fmt(self.tax, currency),
                "total": fmt(self.total, currency)}


def seller() -> dict:
    return dict(settings.SELLER)


def document_numbers_take(kind: str, year: int, n: int = 1) -> list[str]:
    """`n` consecutive numbers of the series for `year` (`INV-2026-000123`). One statement: the
    counter row is created or bumped, and stays locked until the caller's transaction ends."""
    series = SERIES[kind]
    table = connection.ops.quote_name(DocumentCounter._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (series, year, last_number) VALUES (%s, %s, %s) "
            f"ON CONFLICT (series, year) DO UPDATE SET last_number = {table}.last_number + EXCLUDED.last_number "
            "RETURNING last_number",
            [series, year, n],
        )
        last = cursor.fetchone()[0]
    return [f"{series}-{year}-{i:06d}" for i in range(last - n + 1, last + 1)]


def document_build(*, advertiser, kind: str, source_key: str, lines: list[Line], treatment: Treatment | None = None,
                   issued_at: datetime | None = None, billed_to: dict | None = None, **fields) -> Document:
    """An unsaved document with its totals from its lines (no number yet: `documents_issue`)."""
    issued_at = issued_at or timezone.now()
    cur = advertiser.currency
    treatment = treatment or Treatment(ZERO, "")
    return Document(
        advertiser=advertiser, business_center_id=advertiser.business_center_id, kind=kind, source_key=source_key,
        year=issued_at.year, issued_at=issued_at, currency=cur,
        net=sum((ln.net for ln in lines), ZERO), tax=sum((ln.tax for ln in lines), ZERO),
        total=sum((ln.total for ln in lines), ZERO), tax_rate=treatment.rate, tax_note=treatment.note,
        lines=[ln.as_json(cur) for ln in lines], seller=seller(),
        billed_to=billed_to if billed_to is not None else profile_snapshot(advertiser), **fields,
    )


def documents_issue(docs: list[Document]) -> list[Document]:
    """Number and insert documents, skipping any whose `source_key` was already issued (a retry
    or a concurrent issuer: the first one stands and is returned). Call inside the transaction
    that made what they are of, holding the advertisers' locks: under them a concurrent issuer
    has committed or not begun, so the check below sees its documents and takes no number twice.

    The one writer of documents. On PostgreSQL the check and the INSERT are fixed statements
    with array parameters (prepared, bound in binary: `%b`): a chunk of 2,000 monthly statements costs
    what the rows cost to send, not the ORM's compiling and quoting of 50,000 parameters."""
    if not docs:
        return []
    found = documents_issued([(d.advertiser_id, d.source_key) for d in docs])
    existing = {(d.advertiser_id, d.source_key): d for d in Document.objects.filter(pk__in=found.values())} if found else {}
    new = [d for d in docs if (d.advertiser_id, d.source_key) not in existing]
    by_series: dict[tuple, list[Document]] = {}
    for d in new:
        by_series.setdefault((d.kind, d.year), []).append(d)
    for (kind, year), group in sorted(by_series.items()):
        for d, number in zip(group, document_numbers_take(kind, year, len(group))):
            d.number = number
    if connection.vendor == "postgresql" and new:
        _insert_postgresql(new)
    else:
        Document.objects.bulk_create(new)
    documents_issued_notify(new)
    return [existing.get((d.advertiser_id, d.source_key), d) for d in docs]


def documents_issued_notify(docs: list[Document]) -> None:
    """"Document issued" (R44, R45), once per document, in the transaction that issued it."""
    notify_many([Draft(d.advertiser, "document_issued", f"document_issued:{d.pk}", {
        "document": d.get_kind_display(), "number": d.number, "amount": f"{d.currency} {fmt(d.total, d.currency)}",
        "document_id": d.pk,
    }) for d in docs])


def documents_issued(keys: list[tuple[int, str]]) -> dict[tuple[int, str], int]:
    """{(advertiser id, source key): document id} of those already issued, in one statement."""
    if not keys:
        return {}
    if connection.vendor != "postgresql":
        rows = Document.objects.filter(
            advertiser_id__in={a for a, _ in keys}, source_key__in={k for _, k in keys},
        ).values_list("advertiser_id", "source_key", "pk")
        wanted = set(keys)
        return {(a, k): pk for a, k, pk in rows if (a, k) in wanted}
    with prepared_cursor() as cursor:
        cursor.execute(_issued_sql(), [[a for a, _ in keys], [k for _, k in keys]])
        return {(a, k): pk for a, k, pk in cursor.fetchall()}


@functools.cache
def _issued_sql() -> str:
    qn = connection.ops.quote_name
    return (f"SELECT d.advertiser_id, d.source_key, d.id FROM {qn(Document._meta.db_table)} d"
            " JOIN unnest(%b::bigint[], %b::text[]) AS k(advertiser_id, source_key)"
            " ON d.advertiser_id = k.advertiser_id AND d.source_key = k.source_key")


def _insert_postgresql(docs: list[Document]) -> None:
    fields = _insert_fields()
    params = []
    for f in fields:
        values = [getattr(d, f.attname) for d in docs]
        params.append(_json_texts(values) if f.get_internal_type() == "JSONField" else values)
    with prepared_cursor() as cursor:
        cursor.execute(_insert_sql(), params)
        for d, (pk,) in zip(docs, cursor.fetchall()):
            d.pk = pk
            d._state.adding, d._state.db = False, connection.alias


def _json_texts(values: list) -> list[str]:
    """The JSON of each value; one equal to the one before it (the seller, a statement's empty
    lines) is not encoded again."""
    out, previous, text = [], object(), ""
    for v in values:
        if v != previous:
            previous, text = v, json.dumps(v)
        out.append(text)
    return out


@functools.cache
def _insert_fields() -> list:
    return [f for f in Document._meta.concrete_fields if not f.primary_key]


@functools.cache
def _insert_sql() -> str:
    """INSERT … SELECT FROM unnest(one array per column) WITH ORDINALITY … RETURNING id, in order."""
    qn = connection.ops.quote_name
    fields = _insert_fields()
    arrays = ", ".join(f"%b::{'text' if f.get_internal_type() == 'JSONField' else f.db_type(connection)}[]"
                       for f in fields)
    names = [f"c{i}" for i in range(len(fields))]
    values = ", ".join(f"{n}::jsonb" if f.get_internal_type() == "JSONField" else n for n, f in zip(names, fields))
    return (f"WITH rows AS (SELECT * FROM unnest({arrays}) WITH ORDINALITY AS r({', '.join(names)}, n)),"
            f" ins AS (INSERT INTO {qn(Document._meta.db_table)} ({', '.join(qn(f.column) for f in fields)})"
            f" SELECT {values} FROM rows ORDER BY n RETURNING id, number)"
            " SELECT ins.id FROM ins JOIN rows ON rows.c{} = ins.number ORDER BY rows.n".format(
                [f.attname for f in fields].index("number")))


def document_issue(doc: Document) -> Document:
    return documents_issue([doc])[0]


# ---- receipts (R39: every payment received gets one) ----

def receipt_for_deposit(advertiser, deposit, treatment: Treatment) -> Document:
    """The receipt of a deposit: the amount loaded and the tax charged with it (`treatment`: how)."""
    card = f" · card ···· {deposit.card_last4}" if deposit.card_last4 else ""
    return document_issue(document_build(
        advertiser=advertiser, kind=DocumentKind.RECEIPT, source_key=f"receipt:deposit:{deposit.pk}",
        lines=[Line(f"Deposit to the cash balance{card}", deposit.amount, deposit.tax)],
        treatment=Treatment(treatment.rate if deposit.tax else ZERO, treatment.note), issued_at=deposit.created_at,
        deposit=deposit,
    ))


def receipts_for_bills(pairs: list[tuple]) -> list[Document]:
    """The receipts of card payments of bills: `[(advertiser, bill)]`, in a constant number of
    statements however many."""
    billed_to = profile_snapshots(adv for adv, _ in pairs)
    return documents_issue([
        document_build(
            advertiser=adv, kind=DocumentKind.RECEIPT, source_key=f"receipt:bill:{bill.pk}:{bill.collection}",
            lines=[Line(f"Payment of {bill.noun.lower()} {bill.label}"  # "threshold bill 3": decision 0031
                        + (f" · card ···· {bill.card_last4}" if bill.card_last4 else ""), bill.amount, bill.tax)],
            treatment=Treatment(bill.tax_rate, bill.tax_note), issued_at=bill.paid_at, bill=bill,
            billed_to=billed_to[adv.pk],
        )
        for adv, bill in pairs
    ])


# ---- what a document still counts ----

def with_state(documents):
    """Documents with what their state is computed from, in a constant number of queries for a
    list: the bill, the credit notes against each (`doc.credit_notes`, only the columns state
    reads) and its bank transfers (`doc.transfers`), as plain lists."""
    return documents.select_related("bill").prefetch_related(
        Prefetch("corrections", to_attr="credit_notes", queryset=Document.objects.filter(
            kind=DocumentKind.CREDIT_NOTE).only("pk", "refers_to_id", "kind", "total", "data")),
        Prefetch("payments", to_attr="transfers"),
    )


def credit_notes_of(doc: Document) -> list[Document]:
    """The credit notes issued against the document (prefetched if `with_state`)."""
    notes = getattr(doc, "credit_notes", None)
    return notes if notes is not None else [c for c in doc.corrections.all() if c.kind == DocumentKind.CREDIT_NOTE]


def transfers_of(doc: Document) -> list:
    transfers = getattr(doc, "transfers", None)
    return transfers if transfers is not None else list(doc.payments.all())


def credited(doc: Document) -> Decimal:
    """The total of the credit notes issued against the document."""
    return sum((c.total for c in credit_notes_of(doc)), ZERO)


def transfers_received(doc: Document) -> Decimal:
    return sum((p.amount for p in transfers_of(doc)), ZERO)


def paid_by_card(doc: Document) -> bool:
    """An invoice charged to the card in full ("Pay now"; refused once a transfer or a credit note
    touched it, so a card payment is always of the whole total)."""
    bill = doc.bill if doc.bill_id else None
    return (doc.kind == DocumentKind.INVOICE and bill is not None and bill.status == BillStatus.PAID
            and bool(bill.gateway_reference) and not transfers_of(doc))


def paid_amount(doc: Document) -> Decimal:
    """What was paid against the document: at once (a receipt), by card (its bill) or by bank
    transfer (an invoice)."""
    if doc.kind == DocumentKind.RECEIPT:
        return doc.total
    if doc.kind != DocumentKind.INVOICE:
        return ZERO
    if paid_by_card(doc):
        return doc.total  # a credit note then refunds it to the card (R40)
    return transfers_received(doc)


# ---- settling a document in steps: each payment and credit note carries its share of the tax ----

def tax_share(settled: Decimal, *, tax: Decimal, whole: Decimal, currency: str) -> Decimal:
    """The tax within the first `settled` of `whole` (R38, R40: in proportion, rounded down by the
    money rule; all of it once the whole is settled), so the shares of successive steps — taken as
    `tax_share(after) - tax_share(before)` — add up to the tax exactly."""
    if whole <= 0 or settled >= whole:
        return tax
    return round_down(settled * tax / whole, currency)


@dataclass
class Settlement:
    """Where a document stands: what was paid for it, and what its credit notes took off what
    was owed (`reduced`) or gave back of what was paid (`refunded`), each with its tax."""

    total: Decimal
    tax: Decimal
    paid: Decimal
    reduced: Decimal = ZERO
    reduced_tax: Decimal = ZERO
    refunded: Decimal = ZERO
    refunded_tax: Decimal = ZERO

    @property
    def settled(self) -> Decimal:
        """Paid or taken off: the invoice's steps so far, in the order they came."""
        return self.paid + self.reduced

    @property
    def owed(self) -> Decimal:
        return self.total - self.settled

    @property
    def creditable(self) -> Decimal:
        """What credit notes may still take: the document less what they took already (R40)."""
        return self.total - self.reduced - self.refunded


def settlement_of(doc: Document) -> Settlement:
    s = Settlement(total=doc.total, tax=doc.tax, paid=paid_amount(doc))
    for note in credit_notes_of(doc):
        for field in ("reduced", "reduced_tax", "refunded", "refunded_tax"):
            setattr(s, field, getattr(s, field) + Decimal(note.data.get(field, "0")))
    return s


def step_tax(doc: Document, before: Decimal, amount: Decimal) -> Decimal:
    """The tax in a step of `amount` that follows `before` of the document's total."""
    def share(x):
        return tax_share(x, tax=doc.tax, whole=doc.total, currency=doc.currency)
    return share(before + amount) - share(before)


def net_parts(doc: Document, before: Decimal, net: Decimal) -> tuple[Decimal, Decimal]:
    """(credit line, arrears) of a step's net on an invoice: the credit-line part first, then the
    arrears past it (R27), after the net of the `before` steps."""
    done = before - tax_share(before, tax=doc.tax, whole=doc.total, currency=doc.currency)
    limit = doc.bill.line_amount
    line = max(min(done + net, limit) - min(done, limit), ZERO)
    return line, net - line


def amount_due(doc: Document, *, paid: Decimal | None = None, credit: Decimal | None = None) -> Decimal:
    """What is still owed on an invoice: its total less credit notes and payments (never negative:
    a credit note on a paid invoice is paid back, R40)."""
    if doc.kind != DocumentKind.INVOICE:
        return ZERO
    paid = paid_amount(doc) if paid is None else paid
    credit = credited(doc) if credit is None else credit
    return max(doc.total - paid - credit, ZERO)


def document_status(doc: Document, *, paid: Decimal | None = None, credit: Decimal | None = None,
                    at: datetime | None = None) -> str:
    """issued, paid, partly_paid, overdue, no_need_to_pay or credited (API.md)."""
    at = at or timezone.now()
    credit = credited(doc) if credit is None else credit
    if doc.kind == DocumentKind.STATEMENT:
        return "issued"
    if doc.kind == DocumentKind.CREDIT_NOTE:
        return "issued"
    if doc.total == 0:
        return "no_need_to_pay"
    if credit >= doc.total:
        return "credited"
    if doc.kind == DocumentKind.RECEIPT:
        return "paid"
    paid = paid_amount(doc) if paid is None else paid
    if paid + credit >= doc.total:
        return "paid"
    if doc.due_at is not None and doc.due_at <= at:
        return "overdue"
    if paid > 0:
        return "partly_paid"
    return "issued"
