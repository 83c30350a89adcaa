"""Concurrency on real PostgreSQL with threads (SPEC R11, R13, R15, R23).

Each thread has its own database connection (closed in `finally`); all start together at a
barrier. Threads must finish within a timeout (no deadlock, no lock wait that never ends) and no
thread may see a database error: every refusal is a business error with a code.
"""

import threading
import time
from decimal import Decimal

import pytest
from django.db import connection

from billing.deposits import deposit_create
from billing.models import Deposit, LedgerTransaction, Purpose, SpendEvent
from billing.selectors import advertiser_balances
from billing.spend import spend_record, spend_record_batch
from portal.errors import BusinessError
from portal.models import Advertiser, Campaign
from promotions.models import Credit
from tests.factories import AdvertiserFactory, CampaignFactory, deposit, grant
from tests.reference_model import RefAccount, RefCampaign, RefCredit, ledger_problems, normalise, purpose_balance

pytestmark = pytest.mark.django_db(transaction=True)
D = Decimal
THREADS = 8
TIMEOUT = 90
BATCHES = 20


def run_threads(work, n=THREADS):
    """Run work(i) in n threads started together; return each thread's result or exception."""
    barrier = threading.Barrier(n)
    out: list = [None] * n

    def body(i):
        try:
            barrier.wait(timeout=30)
            out[i] = work(i)
        except BaseException as e:  # noqa: BLE001 — reported to the test, which decides
            out[i] = e
        finally:
            connection.close()

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + TIMEOUT
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    hung = [i for i, t in enumerate(threads) if t.is_alive()]
    assert hung == [], f"threads {hung} did not finish in {TIMEOUT}s: deadlock or endless lock wait"
    return out


def no_errors(results):
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == [], errors
    return results


def amount_for(thread: int, k: int) -> Decimal:
    return D(1 + (thread * 50 + k) % 7) * D("0.13")  # 0.13 … 0.91


def test_r11_r13_many_threads_charging_one_advertiser_never_overdraw_credit_cap_or_cash(spend_event):
    # given one advertiser with a small free credit, a small discount cap and some cash
    adv = AdvertiserFactory()
    camp = CampaignFactory(advertiser=adv)
    free = grant(adv, "free", "20.00")
    disc = grant(adv, "discount", "10.00", percent="50")
    deposit(adv, "100.00")
    events = [[spend_event(camp, str(amount_for(t, k)), event_id=f"c-{t}-{k}") for k in range(50)]
              for t in range(THREADS)]
    total = sum(D(ev["amount"]) for evs in events for ev in evs)
    assert total > D("130.00")

    # when 8 threads post 50 charges each, one event per call
    results = no_errors(run_threads(lambda t: [spend_record(event=ev) for ev in events[t]]))

    # then every charge was applied once and its parts add up to it
    flat = [r for rs in results for r in rs]
    assert len(flat) == 400 and {r.status for r in flat} == {"applied"}
    for evs, rs in zip(events, results):
        for ev, r in zip(evs, rs):
            assert r.allocation.total() == D(ev["amount"])
    # and the parts over all charges add up: discount cap, credit, cash used exactly, the rest arrears
    assert sum(r.allocation.discount for r in flat) == D("10.00")
    assert sum(a for r in flat for _, a in r.allocation.credits) == D("20.00")
    assert sum(r.allocation.cash for r in flat) == D("100.00")
    assert sum(r.allocation.arrears for r in flat) == total - D("130.00")
    # and nothing was overdrawn: the stored state is exactly that, and equals its ledger entries
    bal = advertiser_balances(advertiser=adv)
    assert (bal.cash_balance, bal.arrears, bal.credit_balance, bal.discount_cap_remaining) == (
        D("0"), total - D("130.00"), D("0"), D("0"))
    assert {c.pk: (c.remaining, c.status) for c in Credit.objects.filter(advertiser=adv)} == {
        free.pk: (D("0"), "used_up"), disc.pk: (D("0"), "used_up")}
    assert purpose_balance(adv.pk, Purpose.REVENUE) == total
    assert purpose_balance(adv.pk, Purpose.ARREARS) == total - D("130.00")
    assert ledger_problems() == []
    assert SpendEvent.objects.count() == 400
    # and the outcome is that of some serial order — the order the advertiser lock granted, which
    # is the order of the charges' ledger transactions: the reference model, fed the charges in
    # that order, pays each one exactly as it was paid
    model = RefAccount()
    model.cash = D("100.00")
    model.campaigns[camp.pk] = RefCampaign(camp.pk, camp.objective, camp.product_source)
    for c in (free, disc):
        model.credits[c.pk] = RefCredit(id=c.pk, kind=c.kind, left=c.amount, valid_from=c.valid_from,
                                        expires_at=c.expires_at, percent=c.percent)
    by_event = {r.event_id: r.allocation for r in flat}
    for ev in SpendEvent.objects.order_by("transaction_id"):
        want = model.charge(amount=ev.amount, campaign_id=camp.pk, at=ev.occurred_at)
        assert normalise(by_event[ev.event_id]) == want, ev.event_id


def test_r11_multi_advertiser_batches_in_opposite_orders_do_not_deadlock_or_overdraw(spend_event):
    # given two advertisers, each with a small credit and some cash
    a1, a2 = AdvertiserFactory(), AdvertiserFactory()
    c1, c2 = CampaignFactory(advertiser=a1), CampaignFactory(advertiser=a2)
    grant(a1, "free", "15.00")
    grant(a2, "free", "25.00")
    deposit(a1, "40.00")
    deposit(a2, "30.00")

    def batches(t):
        out = []
        for k in range(BATCHES):
            pair = [spend_event(c1, str(amount_for(t, k)), event_id=f"m1-{t}-{k}"),
                    spend_event(c2, str(amount_for(t, k + 3)), event_id=f"m2-{t}-{k}")]
            out.append(pair if t % 2 == 0 else pair[::-1])  # half the threads lock-order "backwards"
        return out

    plan = [batches(t) for t in range(THREADS)]
    # when 8 threads post 20 two-advertiser batches each, in opposite orders
    results = no_errors(run_threads(lambda t: [spend_record_batch(events=b) for b in plan[t]]))

    # then every batch was applied whole, and each advertiser paid from its own funds, exactly
    assert all(r.status == "applied" for rs in results for batch in rs for r in batch)
    for adv, prefix, credit, cash in ((a1, "m1-", D("15.00"), D("40.00")), (a2, "m2-", D("25.00"), D("30.00"))):
        spent = sum(D(ev["amount"]) for p in plan for b in p for ev in b if ev["event_id"].startswith(prefix))
        bal = advertiser_balances(advertiser=adv)
        assert (bal.cash_balance, bal.credit_balance, bal.arrears) == (D("0"), D("0"), spent - credit - cash)
        assert purpose_balance(adv.pk, Purpose.REVENUE) == spent
    assert ledger_problems() == []
    assert SpendEvent.objects.count() == THREADS * BATCHES * 2


def test_r11_r27_concurrent_charges_never_take_a_credit_line_over_its_limit(spend_event):
    # given a monthly-invoicing advertiser with a 30.00 credit line and 5.00 of free credit
    adv = AdvertiserFactory(billing_method="monthly_invoice")
    Advertiser.objects.filter(pk=adv.pk).update(credit_line_limit=D("30.00"))
    camp = CampaignFactory(advertiser=adv)
    grant(adv, "free", "5.00")
    events = [[spend_event(camp, str(amount_for(t, k)), event_id=f"l-{t}-{k}") for k in range(10)]
              for t in range(THREADS)]
    total = sum(D(ev["amount"]) for evs in events for ev in evs)
    assert total > D("35.00")

    # when 8 threads post 10 charges each
    no_errors(run_threads(lambda t: [spend_record(event=ev) for ev in events[t]]))

    # then the line is used exactly to its limit, never over; the rest is arrears; delivery pauses
    bal = advertiser_balances(advertiser=adv)
    assert (bal.credit_line_used, bal.credit_balance, bal.arrears) == (D("30.00"), D("0"), total - D("35.00"))
    assert purpose_balance(adv.pk, Purpose.CREDIT_LINE) == D("30.00")
    assert list(Campaign.objects.filter(advertiser=adv).values_list("status", flat=True)) == ["paused_funds"]
    assert ledger_problems() == []


def test_r23_concurrent_deposits_with_one_key_make_exactly_one_deposit():
    # given an advertiser; half the threads send 100.00 and half 200.00 under the same key
    adv = AdvertiserFactory()
    amounts = ["100.00" if t % 2 == 0 else "200.00" for t in range(THREADS)]

    # when all send at once
    results = run_threads(lambda t: deposit_create(advertiser=adv, amount=amounts[t], idempotency_key="same"))

    # then there is exactly one deposit; every sender of its amount got it, the others a conflict
    assert Deposit.objects.count() == 1
    only = Deposit.objects.get()
    for t, r in enumerate(results):
        if D(amounts[t]) == only.amount:
            assert isinstance(r, Deposit) and r.pk == only.pk
        else:
            assert isinstance(r, BusinessError) and r.code == "idempotency_key_reused", r
    assert advertiser_balances(advertiser=adv).cash_balance == only.amount
    assert LedgerTransaction.objects.filter(kind="deposit").count() == 1
    assert ledger_problems() == []


def test_r15_concurrent_replays_of_one_event_apply_it_exactly_once(spend_event):
    # given one charge event, partly paid by credit
    adv = AdvertiserFactory()
    camp = CampaignFactory(advertiser=adv)
    credit = grant(adv, "free", "3.00")
    deposit(adv, "50.00")
    ev = spend_event(camp, "10.00", event_id="once")

    # when 8 threads send it at once
    results = no_errors(run_threads(lambda t: spend_record(event=ev)))

    # then one applied it and 7 got the same allocation as duplicates; it is booked once
    assert sorted(r.status for r in results) == ["applied"] + ["duplicate"] * 7
    assert {(tuple(r.allocation.credits), r.allocation.cash) for r in results} == {(((credit.pk, D("3.00")),), D("7.00"))}
    assert SpendEvent.objects.count() == 1
    assert LedgerTransaction.objects.filter(kind="charge").count() == 1
    assert advertiser_balances(advertiser=adv).cash_balance == D("43.00")
    assert ledger_problems() == []


def test_r15_one_event_id_sent_concurrently_for_two_advertisers_is_applied_once_and_otherwise_a_conflict(spend_event):
    # given the same event_id used for two different advertisers' charges (different content)
    a1, a2 = AdvertiserFactory(), AdvertiserFactory()
    c1, c2 = CampaignFactory(advertiser=a1), CampaignFactory(advertiser=a2)
    deposit(a1, "50.00")
    deposit(a2, "50.00")
    evs = [spend_event(c1, "5.00", event_id="shared"), spend_event(c2, "5.00", event_id="shared")]

    # when 8 threads send them at once, alternating
    results = run_threads(lambda t: spend_record(event=evs[t % 2]))

    # then exactly one charge is booked; the other advertiser's senders get a 409 conflict, never a
    # database error; the winner's other senders get duplicates
    winner = SpendEvent.objects.get(event_id="shared").advertiser_id
    for t, r in enumerate(results):
        if int(evs[t % 2]["advertiser_id"]) == winner:
            assert not isinstance(r, BaseException), r
            assert r.status in ("applied", "duplicate")
        else:
            assert isinstance(r, BusinessError), repr(r)
            assert (r.code, r.status) == ("event_id_conflict", 409)
    assert sum(1 for r in results if not isinstance(r, BaseException) and r.status == "applied") == 1
    assert LedgerTransaction.objects.filter(kind="charge").count() == 1
    loser = a2 if winner == a1.pk else a1
    assert advertiser_balances(advertiser=loser).cash_balance == D("50.00")
    assert ledger_problems() == []
