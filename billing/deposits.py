"""Manual payment (SPEC R13, R23): deposits, arrears recovery and refund of unspent cash."""

from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from billing.documents import receipt_for_deposit
from billing.ledger import (
    Posting,
    Rider,
    advertiser_accounts,
    ledger_post,
    ledger_post_many,
    lock_advertisers,
    tax_account,
)
from billing.models import BC_TRANSFER, Deposit, Purpose, TxKind
from billing.money import ZERO, fmt, parse_amount
from billing.tax import tax_for
from portal import inputs
from portal.audit import audit_record
from portal.errors import BadInput, BusinessError, Conflict
from portal.models import AdvertiserStatus, BillingMethod, Campaign, CampaignStatus
from portal.notifications import Draft, notify_many
from promotions.credits import credits_forfeit_postings


def deposit_limits(currency: str) -> tuple[Decimal, Decimal]:
    low, high = settings.DEPOSIT_LIMITS.get(currency, settings.DEFAULT_DEPOSIT_LIMITS)
    return Decimal(low), Decimal(high)


def deposit_tax(advertiser, amount: Decimal) -> Decimal:
    """The tax charged on top of a deposit (R38: the card pays amount + tax, the balance gets amount)."""
    return tax_for(advertiser, amount, timezone.localdate())[0]


def deposit_create(*, advertiser, amount, idempotency_key: str, source: str = "api", card_last4: str = "",
                   tax: Decimal | None = None) -> Deposit:
    """Load cash (R23). Arrears are settled first and paused campaigns resume (R13). The payment
    carries its tax (R38) to the tax-payable account and gets a receipt (R39); a Business
    Center's recharge is cash already paid, so it has neither.

    Idempotent by key: the same key and amount returns the first deposit; the same key with
    another amount is a Conflict.
    """
    amount = parse_amount(amount, advertiser.currency)
    key = inputs.key(idempotency_key, max_length=inputs.max_length(Deposit, "idempotency_key"))
    with transaction.atomic():
        adv = lock_advertisers([advertiser.pk])[advertiser.pk]
        # A BC transfer's deposit row has a key space of its own (its BCTransfer's request id).
        prior = Deposit.objects.filter(advertiser=adv, idempotency_key=key).exclude(source=BC_TRANSFER).first()
        if prior is not None:
            if prior.amount != amount:
                raise Conflict(
                    "idempotency_key_reused",
                    f"idempotency_key {key!r} was already used for a deposit of {fmt(prior.amount, adv.currency)}.",
                )
            return prior
        if adv.billing_method != BillingMethod.MANUAL:
            raise BusinessError(
                "deposit_not_allowed",
                "Deposits are for manual-payment accounts; this account pays by "
                f"{adv.get_billing_method_display().lower()}.",
            )
        if adv.status == AdvertiserStatus.CLOSED:
            raise BusinessError("account_closed", "This advertiser account is closed.")
        low, high = deposit_limits(adv.currency)
        if not low <= amount <= high:
            raise BusinessError(
                "deposit_out_of_range",
                f"A deposit must be between {fmt(low, adv.currency)} and {fmt(high, adv.currency)} {adv.currency}.",
            )
        acc = advertiser_accounts([adv.pk])[adv.pk]
        if source == BC_TRANSFER:
            tax, treatment = ZERO, None
        else:  # the card door passes the tax it charged; the treatment is the receipt's
            computed, treatment = tax_for(adv, amount, timezone.localdate())
            tax = computed if tax is None else tax
        to_arrears = min(acc[Purpose.ARREARS].balance, amount)
        p = Posting(kind=TxKind.DEPOSIT, currency=adv.currency, amount=amount, lines=[], advertiser_id=adv.pk,
                    memo=f"Deposit ({source})")
        p.move(debit=acc[Purpose.SETTLEMENT], credit=acc[Purpose.ARREARS], amount=to_arrears)
        p.move(debit=acc[Purpose.SETTLEMENT], credit=acc[Purpose.CASH], amount=amount - to_arrears)
        if tax:
            p.move(debit=acc[Purpose.SETTLEMENT], credit=tax_account(adv), amount=tax)
        tx = ledger_post(p)
        deposit = Deposit.objects.create(
            advertiser=adv, amount=amount, idempotency_key=key, source=source, card_last4=card_last4, transaction=tx,
            tax=tax,
        )
        if source != BC_TRANSFER:
            receipt_for_deposit(adv, deposit, treatment)
        deposit_notify(adv, deposit, arrears_paid=to_arrears, cash=acc[Purpose.CASH].balance)
        if acc[Purpose.ARREARS].balance == 0:
            campaigns_resume(advertiser=adv)
    return deposit


def deposit_notify(adv, deposit: Deposit, *, arrears_paid: Decimal, cash: Decimal) -> None:
    """"Funds added" (R36), once per deposit: what came in, what it paid of the arrears and the
    cash balance it leaves. Caller holds the advertiser lock, inside the deposit's transaction."""
    cur = adv.currency

    def money(x):
        return f"{cur} {fmt(x, cur)}"

    notify_many([Draft(adv, "deposit_received", f"deposit_received:{deposit.pk}", {
        "amount": money(deposit.amount), "deposit_id": deposit.pk, "card": deposit.card_last4,
        "from_bc": deposit.source == BC_TRANSFER, "tax": money(deposit.tax) if deposit.tax else "",
        "charged": money(deposit.amount + deposit.tax), "arrears_paid": money(arrears_paid) if arrears_paid else "",
        "cash": money(cash),
    })])


def campaigns_pause(*, advertiser) -> int:
    """Active campaigns go to `paused_funds` while the account cannot pay (R13, R26, R27)."""
    return _pausable([advertiser.pk]).update(status=CampaignStatus.PAUSED_FUNDS)


def campaigns_pause_rider(pauses: dict[int, str]) -> Rider:
    """Pause the active campaigns of these accounts, each with its reason's status (`paused_funds`,
    R10/R13/R27; `paused_limit`, R43), written in a booking's own statement (spend)."""
    table = connection.ops.quote_name(Campaign._meta.db_table)
    ids = sorted(pauses)

    def orm(tx_ids):
        for pk in ids:
            _pausable([pk]).update(status=pauses[pk])

    return Rider(
        sql=f"""paused AS (UPDATE {table} c SET status = p.status
                  FROM unnest(%s::bigint[], %s::text[]) AS p(advertiser_id, status)
                 WHERE c.advertiser_id = p.advertiser_id AND c.status = %s)""",
        params=[ids, [pauses[pk] for pk in ids], CampaignStatus.ACTIVE],
        orm=orm,
    )


def _pausable(advertiser_ids):
    return Campaign.objects.filter(advertiser_id__in=list(advertiser_ids), status=CampaignStatus.ACTIVE)


def out_of_funds(adv, accounts: dict) -> bool:
    """R13, R27: the account cannot pay a charge — it owes arrears, or it is invoiced and its
    credit line is used up. `accounts` are its ledger accounts by purpose."""
    if accounts[Purpose.ARREARS].balance > 0:
        return True
    used_up = accounts[Purpose.CREDIT_LINE].balance >= adv.credit_line_limit
    return adv.billing_method == BillingMethod.MONTHLY_INVOICE and used_up


def campaigns_paused_notify(advertisers: list, accounts: dict, tx_ids: dict) -> None:
    """Tell the accounts a spend booking just took out of funds that their campaigns are paused
    (R13, R27, R36): only on running out, not on every charge after it, and in one statement.
    `accounts` are the booked balances by purpose; the key names the charge that ran out."""
    drafts = []
    for adv in advertisers:
        cur, acc = adv.currency, accounts[adv.pk]
        owed = acc[Purpose.ARREARS].balance
        if adv.billing_method == BillingMethod.MONTHLY_INVOICE:
            drafts.append(Draft(adv, "campaigns_paused_credit_line", f"campaigns_paused:{tx_ids[adv.pk]}", {
                "limit": f"{cur} {fmt(adv.credit_line_limit, cur)}",
                "owed": f"{cur} {fmt(owed, cur)}" if owed else "",
            }))
        else:
            drafts.append(Draft(adv, "campaigns_paused_arrears", f"campaigns_paused:{tx_ids[adv.pk]}", {
                "owed": f"{cur} {fmt(owed, cur)}",
            }))
    notify_many(drafts)


def campaigns_resume(*, advertiser, reason: str = CampaignStatus.PAUSED_FUNDS) -> int:
    """Campaigns paused for one reason come back once it is gone — `paused_funds` when the account
    owes nothing (R3, R13), `paused_limit` when the spending limit is raised, removed or the month
    turns (R43) — unless the other reason holds, which they then wait for. The account is told
    when that resumed any (R36). Caller holds the advertiser lock, so a second call finds nothing
    paused and tells nobody."""
    now = timezone.now()
    if reason == CampaignStatus.PAUSED_FUNDS:
        to = CampaignStatus.PAUSED_LIMIT if advertiser.limit_reached_at(now) else CampaignStatus.ACTIVE
    else:
        accounts = advertiser_accounts([advertiser.pk])
        to = CampaignStatus.PAUSED_FUNDS if out_of_funds(advertiser, accounts[advertiser.pk]) else CampaignStatus.ACTIVE
    n = advertiser.campaigns.filter(status=reason).update(status=to)
    if n and to == CampaignStatus.ACTIVE:
        notify_many([Draft(advertiser, "campaigns_resumed",
                           f"campaigns_resumed:{advertiser.pk}:{now.timestamp()}", {"count": n})])
    return n if to == CampaignStatus.ACTIVE else 0


def cash_refund_refusal(advertiser, balances: dict) -> BusinessError | None:
    """Why R23's refund is refused for an account with these balances (by purpose), or None: the
    one definition `cash_refund` raises and the Refund & close page shows before anyone clicks."""
    if advertiser.status != AdvertiserStatus.ACTIVE:
        return BusinessError("not_in_good_standing", f"A refund needs an active account; this one is {advertiser.status}.")
    if balances.get(Purpose.ARREARS, ZERO) > 0:
        return BusinessError("not_in_good_standing", "The account has unpaid arrears.")
    # Cash left from manual payment after a switch (decision 0006) is refundable too, once
    # nothing is owed under the new method.
    if sum(balances.get(p, ZERO) for p in (Purpose.ACCRUED, Purpose.BILLED, Purpose.CREDIT_LINE)) > 0:
        return BusinessError("not_in_good_standing", "Settle the current bill or invoice before refunding the cash balance.")
    if balances.get(Purpose.CASH, ZERO) <= 0:
        return BusinessError("nothing_to_refund", "There is no unspent cash balance to refund.")
    return None


def cash_refund(*, advertiser, by=None, reason: str = "") -> Decimal:
    """Refund the whole unspent cash balance (R23): only in good standing; closes the account
    and forfeits its credits (R8: credit itself is never refunded). Audited: `by` is who asked
    (the advertiser's admin, or staff with a `reason`)."""
    with transaction.atomic():
        adv = lock_advertisers([advertiser.pk])[advertiser.pk]
        acc = advertiser_accounts([adv.pk])[adv.pk]
        refused = cash_refund_refusal(adv, {purpose: a.balance for purpose, a in acc.items()})
        if refused is not None:
            raise refused
        cash = acc[Purpose.CASH].balance
        p = Posting(kind=TxKind.REFUND, currency=adv.currency, amount=cash, lines=[], advertiser_id=adv.pk,
                    memo="Refund of unspent cash; account closed")
        p.move(debit=acc[Purpose.CASH], credit=acc[Purpose.SETTLEMENT], amount=cash)
        forfeits = credits_forfeit_postings(advertiser=adv, accounts=acc, reason="account closed")
        ledger_post_many([p, *forfeits])
        adv.status = AdvertiserStatus.CLOSED
        adv.save(update_fields=["status"])
        audit_record(actor=by, action="cash_refund", advertiser=adv, target=f"advertiser {adv.pk}",
                     reason=reason.strip() or "Refund of the unspent cash balance; the account is closed.",
                     before={"status": AdvertiserStatus.ACTIVE, "cash_balance": fmt(cash, adv.currency)},
                     after={"status": adv.status, "refunded": fmt(cash, adv.currency),
                            "credits_forfeited": len(forfeits)})
        adv.campaigns.exclude(status=CampaignStatus.PAUSED).update(status=CampaignStatus.PAUSED)
        advertiser.status = adv.status
    return cash
