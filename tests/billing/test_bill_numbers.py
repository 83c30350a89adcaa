"""Bill numbers per account (issue 13, decision 0031; SPEC R24, R26–R28): an account's automatic bills
— threshold, bill date and billing-method-change bills — are numbered 1, 2, 3… in the order they
were made, with no gaps, whatever other accounts are billed in between; monthly invoices keep their
own invoice number. The pages, the emails and the receipts say "Threshold bill 3", never a row id.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from billing.autopay import charge_bill_dates, charge_thresholds, payment_method_set
from billing.models import Bill, BillKind, BillStatus, Document, DocumentKind
from billing.spend import spend_record
from billing.switching import billing_method_switch, billing_settings_set
from portal.models import Advertiser
from tests.api_helpers import api, role_token  # noqa: F401
from tests.billing.bill_pages_helpers import DECLINE, auto_team, invoiced_team, last_month_invoice
from tests.billing.test_autopay import auto_account
from tests.billing.test_concurrency import no_errors, run_threads
from tests.factories import AdvertiserFactory
from tests.pages_helpers import element, fast_password_hashing, spend, text  # noqa: F401
from tests.reference_model import ledger_problems

D = Decimal


def numbers(adv) -> list[tuple]:
    """(kind, number in account) of the account's bills in the order they were made."""
    return list(Bill.objects.filter(advertiser=adv).order_by("pk").values_list("kind", "seq"))


def sent(django_capture_on_commit_callbacks, action) -> list:
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        action()
    return list(mail.outbox)


# --- 1. 1, 2, 3… per account, two accounts billed in between each other ------------------------

@pytest.mark.django_db
def test_each_account_numbers_its_automatic_bills_1_2_3_whoever_else_is_billed(django_capture_on_commit_callbacks):
    # given two automatic accounts on a 50.00 threshold, the second with a card that declines later
    a, b = auto_team(threshold="50.00"), auto_team(threshold="50.00")
    emails = []

    def run(action):
        emails.extend(sent(django_capture_on_commit_callbacks, action))

    # when they are billed in turns: A, B, then one threshold run with A due twice and B once,
    spend(a.campaign, "50.00")
    run(charge_thresholds)
    spend(b.campaign, "50.00")
    run(charge_thresholds)
    spend(a.campaign, "120.00")
    payment_method_set(advertiser=b.advertiser, card_number=DECLINE, expiry="12/30")
    spend(b.campaign, "50.00")
    run(charge_thresholds)
    # then A's bill date (the 20.00 rolled over), then A's move to monthly invoicing with spend accrued
    Advertiser.objects.filter(pk=a.advertiser.pk).update(next_bill_at=timezone.now() - timedelta(minutes=1))
    run(charge_bill_dates)
    spend(a.campaign, "7.00")
    billing_settings_set(advertiser=a.advertiser, credit_line_limit="1000.00", invoicing_eligible=True)
    run(lambda: billing_method_switch(advertiser=a.advertiser, billing_method="monthly_invoice"))

    # then each account counts its own bills from 1, in the order they were made, with no gaps
    assert numbers(a.advertiser) == [(BillKind.THRESHOLD, 1), (BillKind.THRESHOLD, 2), (BillKind.THRESHOLD, 3),
                                     (BillKind.BILL_DATE, 4), (BillKind.SWITCH, 5)]
    assert numbers(b.advertiser) == [(BillKind.THRESHOLD, 1), (BillKind.THRESHOLD, 2)]

    # and the emails name each bill by its number in the account
    subjects = [m.subject for m in emails]
    assert subjects.count("Payment received: USD 50.00 for threshold bill 1") == 2  # A's first, B's first
    assert "Payment received: USD 50.00 for threshold bill 2" in subjects
    assert "Payment received: USD 50.00 for threshold bill 3" in subjects
    assert "Payment failed: USD 50.00 for threshold bill 2" in subjects  # B's second
    assert "Payment received: USD 20.00 for bill 4" in subjects  # A's bill date
    assert "Payment received: USD 7.00 for bill 5" in subjects  # A's billing method change
    assert not any("#" in s for s in subjects), subjects
    failed = next(m for m in emails if m.subject.startswith("Payment failed"))
    assert "We could not charge USD 50.00 for threshold bill 2:" in failed.body
    # and so do the receipts of the payments
    receipts = Document.objects.filter(advertiser=a.advertiser, kind=DocumentKind.RECEIPT).order_by("pk")
    assert [r.lines[0]["description"] for r in receipts] == [
        "Payment of threshold bill 1 · card ···· 4242", "Payment of threshold bill 2 · card ···· 4242",
        "Payment of threshold bill 3 · card ···· 4242", "Payment of bill 4 · card ···· 4242",
        "Payment of bill 5 · card ···· 4242"]
    assert ledger_problems() == []


# --- 2. what the pages show ---------------------------------------------------------------------

@pytest.mark.django_db
def test_the_bills_page_the_banner_and_the_bill_show_the_number_in_the_account(fast_password_hashing):
    # given another account billed first, so that this account's bills have higher row ids
    other = auto_team(threshold="50.00")
    for _ in range(3):
        spend(other.campaign, "50.00")
        charge_thresholds()
    # and an account with a paid threshold bill, then one its card declined
    t = auto_team(threshold="50.00")
    spend(t.campaign, "50.00")
    charge_thresholds()
    payment_method_set(advertiser=t.advertiser, card_number=DECLINE, expiry="12/30")
    spend(t.campaign, "50.00")
    charge_thresholds()
    paid, failed = Bill.objects.filter(advertiser=t.advertiser).order_by("pk")
    assert (paid.seq, failed.seq, failed.status) == (1, 2, BillStatus.FAILED) and failed.pk > 2

    # when the finance member opens Bills & invoices
    html = t.client("finance").get(f"/a/{t.advertiser.pk}/payments/bills/").content.decode()
    # then the Number column says 2 and 1, newest first, not the row ids
    bills = element(html, "bills")
    assert "> 2 Threshold bill" in text(bills.split(f'data-bill="{failed.pk}"')[1].split("</tr>")[0])
    assert "> 1 Threshold bill" in text(bills.split(f'data-bill="{paid.pk}"')[1].split("</tr>")[0])
    assert f"#{failed.pk}" not in text(bills) and f"#{paid.pk}" not in text(bills)
    assert 'aria-label="Pay now: Threshold bill 2"' in bills and 'aria-label="PDF of Threshold bill 1"' in bills

    # and the Overview's banner names the failed bill the same way
    banner = text(element(t.admin.get(f"/a/{t.advertiser.pk}/payments/").content.decode(), "payment-failed"))
    assert "Threshold bill 2 · $50.00 Your card was declined." in banner

    # and the bill's own page and PDF are "Bill 2"
    detail = t.admin.get(f"/a/{t.advertiser.pk}/payments/bills/{failed.pk}/").content.decode()
    assert "<h1>Bill 2</h1>" in detail and "Bill 2" in text(element(detail, "invoice"))
    pdf = t.admin.get(f"/a/{t.advertiser.pk}/payments/bills/{failed.pk}.pdf")
    assert pdf["Content-Disposition"] == 'attachment; filename="bill-2.pdf"'

    # and Pay now says which bill it paid
    payment_method_set(advertiser=t.advertiser, card_number="4242424242424242", expiry="12/30")
    response = t.admin.post(f"/a/{t.advertiser.pk}/payments/bills/{failed.pk}/pay/", follow=True)
    assert "Threshold bill 2 paid: $50.00 charged to the card ending 4242." in text(response)


@pytest.mark.django_db
def test_a_monthly_invoice_keeps_its_invoice_number_and_takes_no_bill_number(fast_password_hashing):
    # given an account on monthly invoicing with last month's invoice issued
    t = invoiced_team()
    invoice = last_month_invoice(t, amount="300.00")
    # then it has its gapless invoice number and no number among the automatic bills
    assert invoice.seq is None and invoice.number.endswith("000001")
    assert (invoice.label, invoice.title) == (invoice.number, f"Invoice {invoice.number}")
    html = t.client("finance").get(f"/a/{t.advertiser.pk}/payments/bills/").content.decode()
    assert f"{invoice.number} Monthly invoice" in text(element(html, "bills"))


# --- 3. the API adds the number; every field it had stays ----------------------------------------

@pytest.mark.django_db
def test_the_bills_api_adds_number_in_account_and_keeps_number(api):
    # given an account with two threshold bills, billed after another account's bill
    other, camp = auto_account(threshold="50.00")
    spend(camp, "50.00")
    adv, camp = auto_account(threshold="50.00")
    spend(camp, "100.00")
    charge_thresholds()
    token = role_token(adv, "finance")
    # when finance lists the bills
    bills = api.get(f"/advertisers/{adv.pk}/bills", token=token).json()
    # then, newest first, each has the fields it had — `id` the row id, `number` still null for an
    # automatic bill — and its number in the account
    mine = Bill.objects.filter(advertiser=adv).order_by("-pk")
    assert [(b["id"], b["kind"], b["number"], b["number_in_account"]) for b in bills] == [
        (str(mine[0].pk), "threshold", None, 2), (str(mine[1].pk), "threshold", None, 1)]
    assert set(bills[0]) == {"id", "kind", "number", "number_in_account", "amount", "currency", "status",
                             "attempts", "issued_at", "due_at", "paid_at"}
    # and the OpenAPI document describes the new field
    schema = api.get("/openapi.json").json()["components"]["schemas"]["BillOut"]
    assert "number_in_account" in schema["properties"]


# --- 4. the database keeps the numbers unique per account ----------------------------------------

@pytest.mark.django_db
def test_a_second_bill_with_an_accounts_number_is_refused_by_the_database():
    adv, camp = auto_account(threshold="50.00")
    spend(camp, "50.00")
    charge_thresholds()
    bill = Bill.objects.get(advertiser=adv)
    with pytest.raises(IntegrityError), transaction.atomic():
        Bill.objects.create(advertiser=adv, kind=BillKind.THRESHOLD, seq=bill.seq, amount=D("1.00"), currency="USD")
    with pytest.raises(IntegrityError), transaction.atomic():  # an automatic bill always has a number…
        Bill.objects.bulk_create([Bill(advertiser=adv, kind=BillKind.THRESHOLD, amount=D("1.00"), currency="USD")])
    with pytest.raises(IntegrityError), transaction.atomic():  # … and an invoice never has one
        Bill.objects.create(advertiser=adv, kind=BillKind.MONTHLY_INVOICE, number="X-1", seq=7, amount=D("1.00"),
                            currency="USD")
    # while another account's bill 1 is fine, and a bill made directly takes the next number
    other = AdvertiserFactory(billing_method="automatic")
    assert Bill.objects.create(advertiser=other, kind=BillKind.SWITCH, amount=D("1.00"), currency="USD").seq == 1
    assert Bill.objects.create(advertiser=adv, kind=BillKind.SWITCH, amount=D("1.00"), currency="USD").seq == 2


# --- 5. concurrent billing on PostgreSQL: still 1, 2, 3… ----------------------------------------

THREADS, ROUNDS = 8, 5


@pytest.mark.django_db(transaction=True)
def test_concurrent_threshold_and_bill_date_runs_number_each_accounts_bills_without_gaps(spend_event, settings):
    if connection.vendor != "postgresql":
        pytest.skip("row locks and concurrent transactions: PostgreSQL")
    # given two accounts on a 20.00 threshold (kept fixed)
    settings.BILLING_PAYMENTS_PER_STEP = 10**6
    accounts = [auto_account(threshold="20.00") for _ in range(2)]
    past = timezone.now() - timedelta(days=1)

    # when 8 threads each spend on both accounts and run a threshold run or a bill-date run (its
    # own bill date each time), 5 times, all at once
    def work(t):
        for r in range(ROUNDS):
            for adv, camp in accounts:
                spend_record(event=spend_event(camp, "25.00" if (t + r) % 2 else "45.00", event_id=f"n-{t}-{r}-{adv.pk}"))
            if t % 2:
                charge_thresholds(chunk=1)
            else:
                for adv, _ in accounts:  # one row at a time: never two advertiser locks out of id order
                    Advertiser.objects.filter(pk=adv.pk).update(next_bill_at=past + timedelta(seconds=t * ROUNDS + r))
                charge_bill_dates()

    no_errors(run_threads(work, n=THREADS))
    charge_thresholds()

    # then each account's bills are numbered 1…n in the order they were made, both kinds mixed
    for adv, _ in accounts:
        made = numbers(adv)
        assert [seq for _, seq in made] == list(range(1, len(made) + 1)), made
        assert {kind for kind, _ in made} == {BillKind.THRESHOLD, BillKind.BILL_DATE}, made
    assert ledger_problems() == []


# --- 6. the migration numbers the bills already made ---------------------------------------------

BEFORE, AFTER = [("billing", "0017_document_list_indexes_with_id")], [("billing", "0018_bill_number_in_account")]


@pytest.mark.django_db(transaction=True)
def test_the_migration_numbers_existing_bills_per_account_by_issue_time_then_id():
    a, b = AdvertiserFactory(billing_method="automatic"), AdvertiserFactory(billing_method="automatic")
    executor = MigrationExecutor(connection)
    try:
        # given bills made before numbering, in an order that is not their issue order
        executor.migrate(BEFORE)
        executor.loader.build_graph()
        OldBill = executor.loader.project_state(BEFORE).apps.get_model("billing", "Bill")
        t0 = timezone.now() - timedelta(days=30)

        def old(adv, kind, days, **kw):
            return OldBill.objects.create(advertiser_id=adv.pk, kind=kind, amount=D("10.00"), currency="USD",
                                          issued_at=t0 + timedelta(days=days), **kw).pk

        a3 = old(a, "threshold", 5)
        b1 = old(b, "bill_date", 1)
        a1 = old(a, "threshold", 1)
        a_inv = old(a, "monthly_invoice", 2, number="ADC-000009")
        a2 = old(a, "switch", 3)
        b2 = old(b, "threshold", 3)
        a4, a5 = old(a, "threshold", 7), old(a, "threshold", 7)  # the same moment: by id
        # when the migration runs
        executor = MigrationExecutor(connection)
        executor.migrate(AFTER)
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    # then each account's automatic bills are numbered by (issued_at, id); the invoice keeps its own number
    seqs = dict(Bill.objects.values_list("pk", "seq"))
    assert [seqs[pk] for pk in (a1, a2, a3, a4, a5)] == [1, 2, 3, 4, 5]
    assert [seqs[pk] for pk in (b1, b2)] == [1, 2]
    assert seqs[a_inv] is None and Bill.objects.get(pk=a_inv).number == "ADC-000009"
    # and the next bill continues from there
    assert Bill.objects.create(advertiser=a, kind="threshold", amount=D("1.00"), currency="USD").seq == 6
