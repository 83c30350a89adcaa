"""The payment gateway (SPEC R29): an interface, and the sandbox that tests and the demo use.

A gateway charges a card (or a card token it issued) and answers `approved`, `declined` or
`timeout`. Every charge carries an idempotency key: the same key again returns the first approval
instead of charging twice (R26). Card numbers never leave the gateway call — callers keep only
the last four digits, or a token.

`get_gateway()` returns the configured gateway (setting `PAYMENT_GATEWAY`, a dotted path; the
sandbox by default). Sandbox card numbers: docs/decisions/0002-sandbox-cards.md.
"""

import re
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Protocol

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from billing.chargebacks import chargeback_record
from billing.models import Bill, Deposit, GatewayCharge, GatewayRefund
from portal.errors import BusinessError

APPROVED = "approved"
DECLINED = "declined"
TIMEOUT = "timeout"
CHARGED_BACK = "charged_back"  # a sandbox charge the cardholder's bank reversed (`SandboxGateway.chargeback`)
BILL_KEY = re.compile(r"bill-(\d+)(?:-\d+)?")  # `Bill.charge_key`

Status = Literal["approved", "declined", "timeout"]


@dataclass(frozen=True)
class GatewayResult:
    status: Status
    reference: str = ""  # the gateway's id for an approved charge, or the token it issued
    message: str = ""  # why it was declined or failed, fit to show the payer

    @property
    def approved(self) -> bool:
        return self.status == APPROVED


class PaymentGateway(Protocol):
    def charge(self, *, amount: Decimal, currency: str, card_number: str, idempotency_key: str) -> GatewayResult:
        """Charge a card number or a token from `tokenize`. Same key → the first approval."""

    def tokenize(self, *, card_number: str) -> GatewayResult:
        """Keep a card on file: `reference` is a token ending with the card's last four digits."""

    def refund(self, *, charge_key: str, amount: Decimal, currency: str, idempotency_key: str) -> GatewayResult:
        """Give back part or all of the approved charge made under `charge_key`. Same key → the
        first answer; never more than the charge took."""


def card_digits(card_number: str) -> str:
    """The digits of a card number as typed ("4242 4242 …" → "4242…")."""
    return "".join(ch for ch in str(card_number) if ch.isdigit())


DECLINED_MESSAGE = "Your card was declined. Use another card or contact your bank."
TIMEOUT_MESSAGE = (
    "The card processor did not answer in time, so no funds were added. "
    "You can safely try again: the same payment is never taken twice."
)
INVALID_MESSAGE = "This card number is not valid. Check the number and try again."


class SandboxGateway:
    """Approves or declines by test card number, and can time out (R29).

    4242424242424242 is approved, 4000000000000002 is declined ("card declined"),
    4000000000000119 times out, and any other number is declined as invalid. Tokens it issues
    (`tok_sbx_<behaviour>_…<last4>`) behave like their card. Approvals are recorded in
    `GatewayCharge` by idempotency key, as a real gateway remembers keys: the same key with the
    same charge returns the first approval; with another amount it is declined. `chargeback`
    reports that an approved charge was reversed by the cardholder's bank.
    """

    CARDS = {
        "4242424242424242": "ok",
        "4000000000000002": "decline",
        "4000000000000119": "timeout",
    }

    def _behaviour(self, card: str) -> tuple[str, str]:
        """(behaviour, what the sandbox records for the card: the token or the last 4)."""
        if card.startswith("tok_sbx_"):
            kind = card.split("_")[2] if card.count("_") >= 3 else ""
            return (kind if kind in ("ok", "decline", "timeout") else "invalid"), card
        number = card_digits(card)
        return self.CARDS.get(number, "invalid"), number[-4:]

    def tokenize(self, *, card_number: str) -> GatewayResult:
        number = card_digits(card_number)
        kind = self.CARDS.get(number)
        if kind is None:
            return GatewayResult(DECLINED, message=INVALID_MESSAGE)
        return GatewayResult(APPROVED, reference=f"tok_sbx_{kind}_{secrets.token_hex(8)}{number[-4:]}")

    # The sandbox's books are rows in the portal's database: one charge at a time keeps them right
    # when `gateway_charges` calls it from several threads over one connection.
    _books = threading.Lock()

    def charge(self, *, amount: Decimal, currency: str, card_number: str, idempotency_key: str) -> GatewayResult:
        latency = getattr(settings, "SANDBOX_GATEWAY_LATENCY_MS", 0)
        if latency:
            time.sleep(latency / 1000)  # a real gateway's network round trip (bench/billing_sweep)
        with self._books:
            return self._charge(amount=amount, currency=currency, card_number=card_number,
                                idempotency_key=idempotency_key)

    def _charge(self, *, amount: Decimal, currency: str, card_number: str, idempotency_key: str) -> GatewayResult:
        amount = Decimal(amount)
        kind, card = self._behaviour(str(card_number))
        if kind != "ok":
            prior = GatewayCharge.objects.filter(idempotency_key=idempotency_key).first()
            if prior is not None:  # the key was approved before (another card): that answer stands
                return self._replay(prior, amount, currency)
            if kind == "decline":
                return GatewayResult(DECLINED, message=DECLINED_MESSAGE)
            if kind == "timeout":
                return GatewayResult(TIMEOUT, message=TIMEOUT_MESSAGE)
            return GatewayResult(DECLINED, message=INVALID_MESSAGE)
        # One statement: record the approval unless the key was seen, in which case its first answer stands.
        reference = "ch_sbx_" + secrets.token_hex(10)
        if not _record_once(GatewayCharge, idempotency_key=idempotency_key, amount=amount, currency=currency,
                            card=card, status=APPROVED, reference=reference):
            return self._replay(GatewayCharge.objects.get(idempotency_key=idempotency_key), amount, currency)
        return GatewayResult(APPROVED, reference=reference)

    def chargeback(self, *, charge_reference: str, reason: str = "Fraudulent: the cardholder does not recognise it",
                   reference: str = ""):
        """Report that the cardholder's bank reversed an approved sandbox charge, as a real gateway's
        dispute webhook does, and book it (`chargeback_record`, docs/decisions/0010). The chargeback
        reference defaults to one per charge, so reporting the same charge again books nothing."""
        charge = GatewayCharge.objects.filter(reference=charge_reference).first()
        if charge is None or charge.status not in (APPROVED, CHARGED_BACK):
            raise BusinessError("unknown_charge", f"The sandbox approved no charge {charge_reference!r}.")
        key = charge.idempotency_key
        bill = deposit = None
        if match := BILL_KEY.fullmatch(key):  # Bill.charge_key: bill-<id>, or bill-<id>-<n> after a chargeback
            bill = Bill.objects.filter(pk=int(match[1])).first()
        else:
            deposit = Deposit.objects.filter(idempotency_key=key, amount=charge.amount).exclude(card_last4="").first()
        if bill is None and deposit is None:
            raise BusinessError("unknown_charge", f"No bill or card deposit was paid by charge {charge_reference!r}.")
        with transaction.atomic():
            result = chargeback_record(reference=reference or f"cb_sbx_{charge.reference[7:]}", reason=reason,
                                       bill=bill, deposit=deposit, charge_reference=charge.reference)
            GatewayCharge.objects.filter(pk=charge.pk).update(status=CHARGED_BACK)
        return result

    def refund(self, *, charge_key: str, amount: Decimal, currency: str, idempotency_key: str) -> GatewayResult:
        with self._books:
            return self._refund(charge_key=charge_key, amount=Decimal(amount), currency=currency,
                                idempotency_key=idempotency_key)

    def _refund(self, *, charge_key: str, amount: Decimal, currency: str, idempotency_key: str) -> GatewayResult:
        prior = GatewayRefund.objects.filter(idempotency_key=idempotency_key).first()
        if prior is not None:
            return self._replay(prior, amount, currency)
        charge = GatewayCharge.objects.filter(idempotency_key=charge_key, status=APPROVED).first()
        if charge is None or charge.currency != currency:
            return GatewayResult(DECLINED, message="The gateway has no approved charge to refund.")
        refunded = sum(GatewayRefund.objects.filter(charge_key=charge_key).values_list("amount", flat=True), Decimal(0))
        if refunded + amount > charge.amount:
            return GatewayResult(DECLINED, message="The refund is more than the charge has left.")
        reference = "re_sbx_" + secrets.token_hex(10)
        if not _record_once(GatewayRefund, idempotency_key=idempotency_key, charge_key=charge_key, amount=amount,
                            currency=currency, reference=reference):
            return self._replay(GatewayRefund.objects.get(idempotency_key=idempotency_key), amount, currency)
        return GatewayResult(APPROVED, reference=reference)

    @staticmethod
    def _replay(prior, amount: Decimal, currency: str) -> GatewayResult:
        if prior.amount != amount or prior.currency != currency:
            return GatewayResult(DECLINED, message="This payment was already made with other details.")
        return GatewayResult(APPROVED, reference=prior.reference)


def _record_once(model, **values) -> bool:
    """Insert the sandbox's record of an answer unless its idempotency key was seen (one
    statement, so concurrent callers agree); whether this call inserted it."""
    values["created_at"] = timezone.now()
    columns = ", ".join(values)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {connection.ops.quote_name(model._meta.db_table)} ({columns})"
            f" VALUES ({', '.join(['%s'] * len(values))}) ON CONFLICT (idempotency_key) DO NOTHING RETURNING 1",
            list(values.values()),
        )
        return cursor.fetchone() is not None


def get_gateway() -> PaymentGateway:
    return import_string(getattr(settings, "PAYMENT_GATEWAY", "billing.gateway.SandboxGateway"))()


def gateway_charges(gateway: PaymentGateway, charges: list[dict | None]) -> list[GatewayResult | None]:
    """`gateway.charge(**c)` for each of a chunk's charges (None: no card, answered None), at
    most BILLING_GATEWAY_CONCURRENCY at a time, answers in the charges' order (R26).

    A gateway call is a network round trip: overlapping them is what makes a chunk of bills as
    fast as the gateway allows. The caller commits every bill before (R26: a crash leaves it
    open for the stuck-bill sweep) and books the answers after; each charge keeps its bill's own
    key, so a charge the gateway saw twice is taken once. The threads share the caller's database
    connection (the sandbox keeps its books there, one charge at a time)."""
    limit = max(1, int(getattr(settings, "BILLING_GATEWAY_CONCURRENCY", 1)))
    todo = [(i, c) for i, c in enumerate(charges) if c is not None]
    answers: list[GatewayResult | None] = [None] * len(charges)
    if limit == 1 or len(todo) <= 1:
        for i, c in todo:
            answers[i] = gateway.charge(**c)
        return answers
    shared = connections[DEFAULT_DB_ALIAS]
    shared.inc_thread_sharing()

    def call(c: dict) -> GatewayResult:
        connections[DEFAULT_DB_ALIAS] = shared
        try:
            return gateway.charge(**c)
        finally:
            del connections[DEFAULT_DB_ALIAS]  # the pool's thread keeps no reference to it

    try:
        with ThreadPoolExecutor(max_workers=min(limit, len(todo)), thread_name_prefix="gateway") as pool:
            for (i, _), answer in zip(todo, pool.map(call, [c for _, c in todo])):
                answers[i] = answer
    finally:
        shared.dec_thread_sharing()
    return answers
