"""Automatic payment (SPEC R21, R24–R26): bills at a threshold or a bill date, paid by card.

Spend left after credits accrues (Dr accrued). A bill moves an amount from accrued to billed
(Dr billed, Cr accrued); its payment moves it to payments received (Dr settlement, Cr billed).

Crash safety (R26). A bill is created and committed before the gateway is called; the gateway is
called outside any transaction with the bill's own idempotency key (`bill-<id>`); the result is
booked in a second transaction that re-reads the bill under the advertiser lock and books only
an unpaid one. A crash between approval and booking leaves the bill `open`; the next run calls
the gateway again with the same key, gets the first approval back, and books it once.

`charge_thresholds` does the same a chunk at a time: the chunk's bills are created and committed
together, the gateway is called for each outside any transaction, and all the chunk's approvals
are booked in one transaction, set-based (`_book_result` with `more`). The gateway's own commit
per charge is then the job's main cost (docs/scaling.md, "Threshold billing").
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from billing.deposits import campaigns_pause, campaigns_resume
from billing.gateway import GatewayResult, gateway_charges, get_gateway
from billing.documents import receipts_for_bills
from billing.ledger import (
    Move,
    Posting,
    advertiser_accounts,
    ledger_post_many,
    ledger_post_moves,
    lock_advertisers,
    tax_account,
)
from billing.models import (
    Bill,
    BillKind,
    BillStatus,
    Document,
    DocumentKind,
    InvoicePayment,
    LedgerAccount,
    PaymentMethod,
    Purpose,
    ThresholdChange,
    TxKind,
    bills_number,
)
from billing.money import ZERO, fmt, parse_amount
from billing.tax import taxes_for
from portal.dbtypes import id_chunks
from portal.errors import BadInput, BusinessError
from portal.models import Advertiser, AdvertiserStatus, BillingMethod, Campaign, CampaignStatus
from portal.notifications import Draft, notify_many
from promotions.credits import shop_credits_activate
from promotions.freeze import AUTO_FREEZE_AFTER_FAILED_PAYMENTS, credit_freeze

GROWN = "grown after successful payments"  # the reason of a ThresholdChange made by R25's growth
STUCK_AFTER = timedelta(minutes=2)  # an `open` bill this old lost its attempt to a crash (issue 11: was 10)


# --- thresholds (R25) -------------------------------------------------------------------------

def threshold_steps(currency: str) -> list[Decimal]:
    steps = settings.BILLING_THRESHOLD_STEPS.get(currency) or settings.BILLING_THRESHOLD_STEPS["USD"]
    return [Decimal(s) for s in steps]


def _month_start(advertiser, at: datetime) -> datetime:
    local = at.astimezone(advertiser.tz)
    return datetime.combine(local.date().replace(day=1), time(0), tzinfo=advertiser.tz)


def threshold_changes_this_month(advertiser, at: datetime) -> int:
    return ThresholdChange.objects.filter(advertiser=advertiser, created_at__gte=_month_start(advertiser, at)).count()


def threshold_may_change(changes_this_month: int) -> bool:
    """R25: a billing threshold changes at most BILLING_MAX_THRESHOLD_CHANGES_PER_MONTH times a
    calendar month of the account's time zone — by staff or by growth. The one place of the rule."""
    return changes_this_month < settings.BILLING_MAX_THRESHOLD_CHANGES_PER_MONTH


def threshold_change_check(advertiser, at: datetime) -> None:
    """Refuse (BusinessError `threshold_change_limit`) a change R25 does not allow this month."""
    if not threshold_may_change(threshold_changes_this_month(advertiser, at)):
        raise BusinessError(
            "threshold_change_limit",
            f"The billing threshold can change at most {settings.BILLING_MAX_THRESHOLD_CHANGES_PER_MONTH} "
            "times in a calendar month; try again next month.",
        )


def threshold_set(*, advertiser, amount, reason: str, at: datetime | None = None) -> Decimal:
    """Change an account's threshold (staff, or growth). At most 3 changes a calendar month,
    in the account's time zone (R25). The caller holds the advertiser lock or gets it here."""
    at = at or timezone.now()
    amount = parse_amount(amount, advertiser.currency, field="billing_threshold")
    with transaction.atomic():
        adv = lock_advertisers([advertiser.pk])[advertiser.pk]
        if adv.billing_threshold == amount:
            return amount
        threshold_change_check(adv, at)
        change = ThresholdChange.objects.create(advertiser=adv, old=adv.billing_threshold, new=amount, reason=reason,
                                                created_at=at)
        _notify_thresholds([change], {adv.pk: adv})
        adv.billing_threshold = amount
        adv.successful_payments = 0
        adv.save(update_fields=["billing_threshold", "successful_payments"])
        advertiser.billing_threshold = amount
    return amount


# --- bill dates (R24) -------------------------------------------------------------------------

def next_bill_date(advertiser, after: datetime) -> datetime:
    """The first local midnight bill date strictly after `after`: Mondays for a weekly cycle,
    the 1st of the month for a monthly one, in the account's time zone (DST-aware)."""
    tz = advertiser.tz
    local = after.astimezone(tz)
    if advertiser.bill_cycle == "weekly":
        day = local.date() + timedelta(days=7 - local.weekday())
    else:
        first = local.date().replace(day=1)
        day = (first + timedelta(days=32)).replace(day=1)
    out = datetime.combine(day, time(0), tzinfo=tz)
    while out <= after:  # `after` was itself a bill date in a zone whose midnight jumped
        out = next_bill_date(advertiser, out + timedelta(hours=1))
    return out


def autopay_setup(*, advertiser, at: datetime | None = None) -> None:
    """Give an account that is (now) on automatic payment its first threshold and bill date."""
    at = at or timezone.now()
    fields = []
    if advertiser.billing_threshold is None:
        advertiser.billing_threshold = threshold_steps(advertiser.currency)[0]
        fields.append("billing_threshold")
    if advertiser.next_bill_at is None or advertiser.next_bill_at <= at:
        advertiser.next_bill_at = next_bill_date(advertiser, at)
        fields.append("next_bill_at")
    if fields:
        advertiser.save(update_fields=fields)


# --- bills ------------------------------------------------------------------------------------

def bill_create(*, advertiser, accounts, kind: str, amount: Decimal, at: datetime, period_start=None,
                period_end=None) -> Bill:
    """One bill: `bills_create` for one account (the switch bill, R28)."""
    return bills_create(kind=kind, at=at, bills=[(advertiser, accounts, amount, period_start, period_end)])[0]


def bills_create(*, kind: str, at: datetime, bills: list[tuple]) -> list[Bill]:
    """The one writer of automatic bills: move each amount from accrued to billed and record the
    bill with its tax (R38: the card is charged amount + tax), for many
    `(advertiser, accounts, amount[, period_start, period_end])` at once in a constant number of
    statements (the accounts' last bill numbers read in one query, one INSERT of the bills,
    `ledger_post_moves` for their postings). Caller holds the advertisers' locks."""
    taxes = taxes_for([(b[0], b[2]) for b in bills], at.date())
    new = []
    for b, (tax, treatment) in zip(bills, taxes):
        adv, _, amount, period_start, period_end = (*b, None, None)[:5]
        new.append(Bill(advertiser=adv, kind=kind, amount=amount, currency=adv.currency, issued_at=at, due_at=at,
                        period_start=period_start, period_end=period_end, tax=tax, tax_rate=treatment.rate,
                        tax_note=treatment.note))
    bills_number(new)  # 1, 2, 3… per account, in the order of `bills` (decision 0031)
    created = Bill.objects.bulk_create(new)
    ledger_post_moves(TxKind.BILL, [
        Move(debit=b[1][Purpose.BILLED], credit=b[1][Purpose.ACCRUED], amount=b[2], advertiser_id=b[0].pk,
             occurred_at=at, memo=f"{bill.get_kind_display()} #{bill.pk}")
        for bill, b in zip(created, bills)
    ])
    return created


def _card_token(advertiser) -> tuple[str, str]:
    pm = getattr(advertiser, "payment_method", None)
    return (pm.token, pm.last4) if pm else ("", "")


def bill_collect(*, bill_id: int, at: datetime | None = None) -> Bill:
    """Charge the card for one unpaid bill and book the answer (R26). Safe to call twice at once,
    or again after a crash: the gateway sees one key per bill and the booking is guarded."""
    at = at or timezone.now()
    bill = Bill.objects.select_related("advertiser__payment_method").get(pk=bill_id)
    bill.booked_now = False  # True only when this call books the payment (counts that tell the truth)
    if bill.status == BillStatus.PAID:
        return bill
    # an attempt counts only while the bill is unpaid: a concurrent collector may have paid it
    if not Bill.objects.filter(pk=bill.pk).exclude(status=BillStatus.PAID).update(attempts=F("attempts") + 1):
        bill.refresh_from_db()
        return bill
    pm = getattr(bill.advertiser, "payment_method", None)
    if pm is None:
        result = None
    else:
        result = get_gateway().charge(
            amount=bill.charge_amount, currency=bill.currency, card_number=pm.token, idempotency_key=bill.charge_key
        )
    return _book_result(bill_id=bill.pk, advertiser_id=bill.advertiser_id, result=result,
                        last4=pm.last4 if pm else "", at=at)


@dataclass
class Attempt:
    """One gateway answer for a bill, to book; `bill` is filled in by `_book_result`."""

    bill_id: int
    advertiser_id: int
    result: GatewayResult | None  # None: no payment method on file
    last4: str
    bill: Bill | None = None

    @property
    def approved(self) -> bool:
        return self.result is not None and self.result.approved


def _book_result(*, bill_id: int, advertiser_id: int, result, last4: str, at: datetime,
                 more: list[Attempt] = ()) -> Bill:
    """Book the gateway's answer for a bill — and, with `more`, for the rest of a chunk's bills
    (`charge_thresholds`): the one door to booking (`_book_chunk`; a single bill is a chunk of
    one), so a crash after the gateway's approval leaves the same state whichever path was
    booking. Returns the first bill; `more`'s bills are filled in their `Attempt`."""
    first = Attempt(bill_id, advertiser_id, result, last4)
    _book_chunk([first, *more], at=at)
    return first.bill


def _book_chunk(attempts: list[Attempt], *, at: datetime) -> None:
    """Book gateway answers (bills in bill order) in one transaction: the one booking of card
    payments of bills and invoices (R24, R26, R27) — a job's chunk, Pay now, a retry or the
    stuck-bill sweep alike (issue 10: no one-bill twin).

    The advertisers are locked (id order) and the bills re-read FOR UPDATE; a bill already paid is
    skipped (a concurrent attempt or a replay after a crash booked it: the gateway charged once,
    same key). Then, in a constant number of statements: the approved payments posted
    (`ledger_post_many`) with their receipts, every bill's new state and every account's counters
    written in one UPDATE each, pending Shop credits of accounts whose bill was paid activated
    (R21), the notices in one `notify_many`. An account's answers are applied in bill order
    (`_counters_apply`), so its counters, retries, threshold growth (R25) and pauses are what
    booking its bills one after the other gives. Per account only where it applies: the campaign
    pause after too many failures and the automatic freeze (R26, R34), campaigns resumed once it
    is paid up."""
    with transaction.atomic():
        advertisers = lock_advertisers({a.advertiser_id for a in attempts})
        bills = {b.pk: b for b in Bill.objects.select_for_update().filter(pk__in=[a.bill_id for a in attempts])
                 .order_by("pk")}
        todo = []
        for a in attempts:
            a.bill = bills[a.bill_id]
            a.bill.booked_now = False
            if a.bill.status != BillStatus.PAID:  # else a concurrent attempt booked it (same key)
                todo.append(a)
        if not todo:
            return
        paid = [a for a in todo if a.approved]
        if paid:
            accounts = advertiser_accounts(sorted({a.advertiser_id for a in paid}))
            for pk in sorted({a.advertiser_id for a in paid if a.bill.tax}):
                accounts[pk][Purpose.TAX_PAYABLE] = tax_account(advertisers[pk])
            ledger_post_many([payment_posting(advertisers[a.advertiser_id], accounts[a.advertiser_id], a.bill,
                                              last4=a.last4, at=at) for a in paid])
            for a in paid:
                a.bill.status, a.bill.paid_at, a.bill.booked_now = BillStatus.PAID, at, True
                a.bill.gateway_reference, a.bill.card_last4, a.bill.last_error, a.bill.next_retry_at = (
                    a.result.reference, a.last4, "", None)
            receipts_for_bills([(advertisers[a.advertiser_id], a.bill) for a in paid])
        failures = _counters_apply(todo, advertisers, at=at)
        _rows_update(Bill, [a.bill for a in todo], ["status", "paid_at", "gateway_reference", "card_last4",
                                                    "last_error", "next_retry_at"])
        touched = sorted({a.advertiser_id for a in todo})
        _rows_update(type(advertisers[touched[0]]), [advertisers[pk] for pk in touched],
                     ["failed_payments", "successful_payments", "billing_threshold"])
        drafts = []
        for a in todo:
            if a.approved:
                drafts.append(_bill_draft(advertisers[a.advertiser_id], a.bill, "bill_paid"))
        paused_by = {}
        for a, count in failures:  # R26: pause after too many failures in a row; R34: freeze
            adv = advertisers[a.advertiser_id]
            paused = False
            if count > settings.BILLING_PAUSE_AFTER_FAILURES and adv.pk not in paused_by:
                paused = paused_by[adv.pk] = campaigns_pause(advertiser=adv) > 0
            if count >= AUTO_FREEZE_AFTER_FAILED_PAYMENTS and not adv.credit_frozen:
                credit_freeze(advertiser=adv, reason=f"{count} failed payments in a row", rule="failed_payments")
                adv.credit_frozen = True
            draft = _bill_draft(adv, a.bill, "payment_failed")
            draft.context["paused"] = paused  # the email says so when it paused
            drafts.append(draft)
        notify_many(drafts, skip_existing=True)
        growing = {a.advertiser_id for a in paid if not a.bill.is_invoice}
        if growing:
            shop_credits_activate(advertiser_ids=growing)
        paid_accounts = {a.advertiser_id for a in paid}
        if paid_accounts:
            held = Campaign.objects.filter(advertiser_id__in=paid_accounts, status=CampaignStatus.PAUSED_FUNDS)
            for pk in sorted(set(held.values_list("advertiser_id", flat=True))):
                if account_paid_up(advertisers[pk]):
                    campaigns_resume(advertiser=advertisers[pk])


def payment_posting(adv, accounts, bill: Bill, *, last4: str, at: datetime) -> Posting:
    """The card payment of a bill (R26) or an invoice (R27): the charge pays what was billed —
    for an invoice the credit line and the arrears past it — and its tax to tax payable (R38)."""
    p = Posting(kind=TxKind.PAYMENT, currency=adv.currency, amount=bill.charge_amount, lines=[], advertiser_id=adv.pk,
                occurred_at=at, memo=f"Payment of {bill.get_kind_display().lower()} #{bill.pk} ·•••{last4}")
    if bill.is_invoice:
        p.move(debit=accounts[Purpose.SETTLEMENT], credit=accounts[Purpose.CREDIT_LINE], amount=bill.line_amount)
        p.move(debit=accounts[Purpose.SETTLEMENT], credit=accounts[Purpose.ARREARS], amount=bill.amount - bill.line_amount)
    else:
        p.move(debit=accounts[Purpose.SETTLEMENT], credit=accounts[Purpose.BILLED], amount=bill.amount)
    if bill.tax:
        tax = accounts.get(Purpose.TAX_PAYABLE) or tax_account(adv)
        p.move(debit=accounts[Purpose.SETTLEMENT], credit=tax, amount=bill.tax)
    return p


def _counters_apply(todo: list[Attempt], advertisers: dict, *, at: datetime) -> list[tuple[Attempt, int]]:
    """Apply each account's answers in bill order to its counters and to its failed bills (R25,
    R26), in memory (the caller writes them, holding the locks), as booking them one after the
    other would: a payment resets the failures and adds one to the run of successes — a
    threshold bill's payment whose run reaches BILLING_PAYMENTS_PER_STEP moves the threshold one
    step up, unless it is at the top or the month's changes are used up, and starts the run
    again; a failure resets the run, counts one more failure and schedules the bill's retry by
    that count. This month's changes of the accounts that may reach a step are read in one
    query, their ThresholdChange rows inserted in one statement. Returns each failed attempt
    with its account's failure count after it."""
    step_at, schedule = settings.BILLING_PAYMENTS_PER_STEP, settings.BILLING_RETRY_AFTER_HOURS
    runs = defaultdict(int)
    for a in todo:
        runs[a.advertiser_id] += a.approved and not a.bill.is_invoice
    reaching = [advertisers[pk] for pk, n in runs.items()
                if n and advertisers[pk].successful_payments + n >= step_at and _step_up(advertisers[pk])]
    changes = defaultdict(int)
    if reaching:
        starts = {adv.pk: _month_start(adv, at) for adv in reaching}
        for pk, created_at in ThresholdChange.objects.filter(
                advertiser_id__in=starts, created_at__gte=min(starts.values())).values_list("advertiser_id", "created_at"):
            changes[pk] += created_at >= starts[pk]
    grown, failures = [], []
    for a in todo:
        adv = advertisers[a.advertiser_id]
        if not a.approved:
            adv.failed_payments += 1
            adv.successful_payments = 0
            bill = a.bill
            bill.status = BillStatus.OVERDUE if bill.status == BillStatus.OVERDUE else BillStatus.FAILED
            message = "No payment method on file." if a.result is None else (
                a.result.message or f"Payment {a.result.status}.")
            bill.last_error = message[:300]
            bill.next_retry_at = at + timedelta(hours=schedule[min(adv.failed_payments, len(schedule)) - 1])
            failures.append((a, adv.failed_payments))
            continue
        adv.failed_payments = 0
        adv.successful_payments += 1
        if a.bill.is_invoice or adv.successful_payments < step_at or not threshold_may_change(changes[adv.pk]):
            continue
        new = _step_up(adv)
        if new is None:
            continue
        grown.append(ThresholdChange(advertiser=adv, old=adv.billing_threshold, new=new, reason=GROWN, created_at=at))
        adv.billing_threshold, adv.successful_payments = new, 0
        changes[adv.pk] += 1
    ThresholdChange.objects.bulk_create(grown)
    _notify_thresholds(grown, {adv.pk: adv for adv in advertisers.values()})
    return failures


def _step_up(adv) -> Decimal | None:
    """The threshold step above the account's (R25's growth); None at the top."""
    higher = [s for s in threshold_steps(adv.currency) if adv.billing_threshold is None or s > adv.billing_threshold]
    return parse_amount(fmt(higher[0], adv.currency), adv.currency, field="billing_threshold") if higher else None


def _rows_update(model, objs: list, fields: list[str]) -> None:
    """Write `fields` of `objs` in one UPDATE. On PostgreSQL from arrays (`unnest`), as
    `ledger_post_moves` does: the ORM's `bulk_update` builds a CASE per field and row, whose
    Python cost grows with the chunk; other databases take `bulk_update`."""
    if not objs:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_update(objs, fields)
        return
    qn = connection.ops.quote_name
    table, pk = qn(model._meta.db_table), model._meta.pk
    columns = [model._meta.get_field(f) for f in fields]
    arrays = [f"%s::{pk.cast_db_type(connection)}[]"] + [f"%s::{c.cast_db_type(connection)}[]" for c in columns]
    params = [[o.pk for o in objs]] + [[c.get_db_prep_value(getattr(o, c.attname), connection) for o in objs]
                                       for c in columns]
    names = ", ".join(["id"] + [f"v{i}" for i in range(len(columns))])
    sets = ", ".join(f"{qn(c.column)} = u.v{i}" for i, c in enumerate(columns))
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} AS t SET {sets} FROM unnest({', '.join(arrays)}) AS u({names})"
                       f" WHERE t.{qn(pk.column)} = u.id", params)


def account_paid_up(adv) -> bool:
    """Nothing failed or overdue, no arrears, and room on the credit line for an invoiced account."""
    if adv.failed_payments > settings.BILLING_PAUSE_AFTER_FAILURES and Bill.objects.filter(
        advertiser=adv, status__in=[BillStatus.FAILED, BillStatus.OVERDUE]
    ).exists():
        return False
    if Bill.objects.filter(advertiser=adv, status=BillStatus.OVERDUE).exists():
        return False
    balances = {
        a.purpose: a.balance
        for a in LedgerAccount.objects.filter(advertiser=adv, purpose__in=[Purpose.ARREARS, Purpose.CREDIT_LINE])
    }
    if balances.get(Purpose.ARREARS, ZERO) > 0:
        return False
    if adv.billing_method == BillingMethod.MONTHLY_INVOICE and balances.get(Purpose.CREDIT_LINE, ZERO) >= adv.credit_line_limit:
        return False
    return True


def _notify_bill(adv, bill: Bill, kind: str, **context) -> None:
    draft = _bill_draft(adv, bill, kind)
    draft.context.update(context)
    notify_many([draft], skip_existing=True)


def _bill_draft(adv, bill: Bill, kind: str):
    return Draft(adv, kind, f"{kind}:{bill.pk}:{bill.attempts if kind == 'payment_failed' else 0}", {
        "amount": f"{bill.currency} {fmt(bill.amount, bill.currency)}",
        "bill_id": bill.pk,
        "bill_label": bill.noun.lower(),  # "threshold bill", "bill", "invoice"
        "number": bill.label,  # its number in the account, or the invoice's (decision 0031)
        "error": bill.last_error,
        "card": bill.card_last4,
    })


def _notify_thresholds(changes: list[ThresholdChange], advertisers: dict) -> None:
    """"Your billing threshold is now …" (R25, R36), once per ThresholdChange, in one statement."""
    drafts = []
    for change in changes:
        adv = advertisers[change.advertiser_id]
        cur = adv.currency
        drafts.append(Draft(adv, "threshold_changed", f"threshold_changed:{change.pk}", {
            "old": f"{cur} {fmt(change.old, cur)}" if change.old is not None else "",
            "new": f"{cur} {fmt(change.new, cur)}",
            "grown": change.reason == GROWN,
        }))
    notify_many(drafts)


def bill_pay(*, bill: Bill, at: datetime | None = None) -> Bill:
    """"Pay now" (R26): charge a failed or open bill immediately."""
    if bill.status == BillStatus.PAID:
        raise BusinessError("bill_already_paid", "This bill is already paid.")
    # R40, R41: never paid twice — a card payment is of the whole invoice, so once a transfer or a
    # credit note settled part of it, the rest is paid by bank transfer
    if (InvoicePayment.objects.filter(document__bill=bill).exists()
            or Document.objects.filter(refers_to__bill=bill, kind=DocumentKind.CREDIT_NOTE).exists()):
        raise BusinessError("invoice_partly_paid", "Part of this invoice was paid by bank transfer or credited: pay "
                                                   "the rest by bank transfer.")
    if not hasattr(bill.advertiser, "payment_method"):
        raise BusinessError("payment_method_required", "Add a payment method before paying this bill.")
    return bill_collect(bill_id=bill.pk, at=at)


# --- jobs (R33) -------------------------------------------------------------------------------

def _collect_open_bills(adv_ids, at: datetime, *, only_stuck: bool = False) -> int:
    """Pay every unpaid `open` bill of these accounts (new ones, or ones a crash left behind)."""
    qs = Bill.objects.filter(advertiser_id__in=adv_ids, status=BillStatus.OPEN).exclude(kind=BillKind.MONTHLY_INVOICE)
    if only_stuck:
        qs = qs.filter(issued_at__lte=at - STUCK_AFTER)
    n = 0
    for bill_id in qs.order_by("pk").values_list("pk", flat=True):
        bill_collect(bill_id=bill_id, at=at)
        n += 1
    return n


def _collect_stuck_bills(at: datetime) -> int:
    """Pay every automatic bill a crash left `open` for longer than STUCK_AFTER, whether or not
    its account is due again: the job that raised it finishes it on its next run (R26)."""
    return _collect_open_bills(_automatic_accounts().values("pk"), at, only_stuck=True)


def _automatic_accounts():
    return Advertiser.objects.filter(billing_method=BillingMethod.AUTOMATIC).exclude(status=AdvertiserStatus.CLOSED)


def charge_thresholds(*, at: datetime | None = None, chunk: int = 500) -> dict:
    """Bill exactly the threshold while accrued ≥ threshold; the rest rolls over (R24). Then pay
    what a crash left open (`charge_thresholds_finish`). Beat runs the chunks as tasks that
    several workers share (`portal.jobs.CHUNKED`)."""
    at = at or timezone.now()
    counts = {"bills": 0, "paid": 0, "failed": 0}
    for ids in charge_thresholds_chunks(at=at, chunk=chunk):
        for k, v in charge_thresholds_chunk(ids=ids, at=at).items():
            counts[k] += v
    charge_thresholds_finish(at=at)
    return counts


def _threshold_due():
    return _automatic_accounts().filter(
        billing_threshold__isnull=False,
        ledger_accounts__purpose=Purpose.ACCRUED,
        ledger_accounts__balance__gte=F("billing_threshold"),
    )


def charge_thresholds_chunks(*, at: datetime, chunk: int = 500):
    """The accounts due a threshold bill, `chunk` ids at a time (keyset by id)."""
    return id_chunks(_threshold_due(), chunk)


def charge_thresholds_chunk(*, ids: list[int], at: datetime) -> dict:
    """Bill these accounts' thresholds under their locks (an account no longer due gets no bill:
    a concurrent run or a re-delivered chunk billed it), commit the bills, then charge them."""
    counts = {"bills": 0, "paid": 0, "failed": 0}
    with transaction.atomic():
        advertisers = lock_advertisers(ids)
        accounts = advertiser_accounts(ids)
        bills = []
        for pk, adv in advertisers.items():
            accrued = accounts[pk][Purpose.ACCRUED].balance
            while adv.billing_threshold and accrued >= adv.billing_threshold:
                bills.append((adv, accounts[pk], adv.billing_threshold))
                accrued -= adv.billing_threshold
        created = bills_create(kind=BillKind.THRESHOLD, at=at, bills=bills)
    counts["bills"] += len(created)
    for bill in _bills_collect(created, at=at):
        counts["paid" if bill.status == BillStatus.PAID else "failed"] += 1
    return counts


def charge_thresholds_finish(*, at: datetime) -> dict:
    """After a run's chunks: pay every automatic bill a crash left open (R26)."""
    return {"stuck": _collect_stuck_bills(at)}


def _bills_collect(bills: list[Bill], *, at: datetime) -> list[Bill]:
    """`bill_collect` for a chunk's new bills (committed): one UPDATE counts the attempt of all,
    the gateway is called for each outside any transaction under the bill's own key — the calls
    overlapped (`gateway_charges`) — and the answers are booked together (`_book_result` with
    `more`). Returns the booked bills."""
    if not bills:
        return []
    Bill.objects.filter(pk__in=[b.pk for b in bills]).exclude(status=BillStatus.PAID).update(
        attempts=F("attempts") + 1)
    cards = {pm.advertiser_id: pm for pm in PaymentMethod.objects.filter(advertiser_id__in={b.advertiser_id for b in bills})}
    charges = []
    for bill in bills:
        pm = cards.get(bill.advertiser_id)
        charges.append(None if pm is None else dict(amount=bill.charge_amount, currency=bill.currency, card_number=pm.token,
                                                    idempotency_key=bill.charge_key))
    results = gateway_charges(get_gateway(), charges)
    attempts = [Attempt(bill.pk, bill.advertiser_id, result, cards[bill.advertiser_id].last4 if charge else "")
                for bill, charge, result in zip(bills, charges, results)]
    first, *more = attempts
    first.bill = _book_result(bill_id=first.bill_id, advertiser_id=first.advertiser_id, result=first.result,
                              last4=first.last4, at=at, more=more)
    return [a.bill for a in attempts]


def charge_bill_dates(*, at: datetime | None = None, chunk: int = 500) -> dict:
    """On the bill date (local midnight), bill everything accrued, once per date (R24)."""
    at = at or timezone.now()
    due = _automatic_accounts().filter(next_bill_at__lte=at)
    counts = {"bills": 0, "paid": 0, "failed": 0, "dates": 0}
    while True:
        ids = list(due.order_by("pk").values_list("pk", flat=True)[:chunk])
        if not ids:
            _collect_stuck_bills(at)
            return counts
        with transaction.atomic():
            advertisers = lock_advertisers(ids)
            accounts = advertiser_accounts(ids)
            bills, moved = [], []
            for pk, adv in advertisers.items():
                if adv.next_bill_at is None or adv.next_bill_at > at:
                    continue  # a concurrent run already moved it on
                period_end = adv.next_bill_at
                accrued = accounts[pk][Purpose.ACCRUED].balance
                if accrued > 0:
                    bills.append((adv, accounts[pk], accrued, None, period_end))
                adv.next_bill_at = next_bill_date(adv, max(period_end, at))
                moved.append(adv)
                counts["dates"] += 1
            created = bills_create(kind=BillKind.BILL_DATE, at=at, bills=bills)
            _rows_update(Advertiser, moved, ["next_bill_at"])
        counts["bills"] += len(created)
        for bill in _bills_collect(created, at=at):
            counts["paid" if bill.status == BillStatus.PAID else "failed"] += 1


def retry_payments(*, at: datetime | None = None, chunk: int = 500) -> dict:
    """Retry failed bills on the schedule of BILLING_RETRY_AFTER_HOURS, and open bills a crash
    left behind (R26). Invoices are paid by the advertiser ("Pay now"), not retried."""
    at = at or timezone.now()
    counts = {"retried": 0, "paid": 0}
    due = (
        Bill.objects.filter(
            Q(status=BillStatus.FAILED, next_retry_at__lte=at) | Q(status=BillStatus.OPEN, issued_at__lte=at - STUCK_AFTER)
        )
        .exclude(kind=BillKind.MONTHLY_INVOICE)
        .order_by("pk")
    )
    for ids in id_chunks(due, chunk):
        for bill_id in ids:
            bill = bill_collect(bill_id=bill_id, at=at)
            counts["retried"] += 1
            counts["paid"] += getattr(bill, "booked_now", False)  # paid by this run, not by a concurrent one
    return counts


def payment_method_set(*, advertiser, card_number, expiry) -> "PaymentMethod":  # noqa: F821
    """Put a card on file (R29): the gateway tokenizes it; only token, last 4 and expiry are kept."""
    if not isinstance(card_number, str) or not isinstance(expiry, str):
        raise BadInput("invalid_card", "card_number and expiry (MM/YY) are required.")
    month_year = expiry.strip().split("/")
    try:
        month, year = int(month_year[0]), int(month_year[1])
        if len(month_year) != 2 or not 1 <= month <= 12:
            raise ValueError
    except (ValueError, IndexError):
        raise BadInput("invalid_expiry", "expiry must be MM/YY, e.g. 08/29.") from None
    year = 2000 + year if year < 100 else year
    today = timezone.now().date()
    if (year, month) < (today.year, today.month):
        raise BadInput("card_expired", "This card has expired.")
    result = get_gateway().tokenize(card_number=card_number)
    if not result.approved:
        raise BusinessError("card_refused", result.message or "The card was refused.")
    pm, _ = PaymentMethod.objects.update_or_create(
        advertiser=advertiser,
        defaults={"token": result.reference, "last4": result.reference[-4:], "expiry": f"{month:02d}/{year % 100:02d}",
                  "status": "valid"},
    )
    return pm
