"""Monthly statements (SPEC R39, decision 0025): a job in beat and run_job, idempotent and
chunked; for random histories the closing balances are the ledger's at the month's end."""

from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.deposits import deposit_create
from billing.invoicing import month_bounds
from billing.models import NORMAL_SIDE, Document, DocumentKind, LedgerEntry, LedgerTransaction, Purpose
from billing.spend import spend_record
from billing.statements import BALANCES, _balance_key, issue_statements, statements_issue
from portal.jobs import job_run
from promotions.models import Credit
from tests.api_helpers import api, role_token  # noqa: F401
from tests.factories import AdvertiserFactory, CampaignFactory, grant

pytestmark = pytest.mark.django_db
D = Decimal


def month_start():
    now = timezone.now()
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def old_account(**kw):
    adv = AdvertiserFactory(**kw)
    adv.created_at = month_start() - timedelta(days=70)
    adv.save(update_fields=["created_at"])
    return adv


def backdate(transactions, **update):
    """Move when transactions were booked. Ledger rows are immutable (a trigger refuses UPDATE);
    the test turns the session's triggers off around this one statement (superuser)."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        transactions.update(**update)
        cursor.execute("SET LOCAL session_replication_role = origin")


def ledger_balances_at(adv, moment) -> dict:
    """The ledger's balances by statement key: every entry booked before `moment`, signed."""
    kinds = dict(Credit.objects.filter(advertiser=adv).values_list("ledger_account_id", "kind"))
    out = defaultdict(Decimal)
    for purpose, account_id, side, amount in LedgerEntry.objects.filter(
            account__advertiser=adv, transaction__created_at__lt=moment).values_list(
            "account__purpose", "account_id", "side", "amount"):
        key = _balance_key(purpose, kinds.get(account_id))
        if key:
            out[key] += amount if side == NORMAL_SIDE[purpose] else -amount
    return {k: out[k] for k, _ in BALANCES}


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.tuples(st.sampled_from(["deposit", "grant", "spend"]), st.integers(1, 30000),
                              st.integers(-900, 400)), min_size=1, max_size=8))
def test_property_closing_balances_are_the_ledgers_for_random_histories(spend_event, ops):
    """Each operation is booked at a random hour around the month's end (before it, in it or
    after it): the statement's opening and closing balances are the ledger's at the month's
    bounds, and with nothing booked after the month the closing balances are the stored ones."""
    adv = old_account(currency="USD")
    camp = CampaignFactory(advertiser=adv)
    end = month_start()
    start, _ = month_bounds(adv, end + timedelta(hours=1))
    for n, (op, cents, hours) in enumerate(ops):
        before = set(LedgerTransaction.objects.filter(advertiser=adv).values_list("pk", flat=True))
        amount = f"{D(cents) / 100:.2f}"
        if op == "deposit":
            deposit_create(advertiser=adv, amount=f"{max(D(amount), D('20')):.2f}", idempotency_key=f"d{n}")
        elif op == "grant":
            grant(adv, "free", amount)
        else:
            spend_record(event=spend_event(camp, amount))
        backdate(LedgerTransaction.objects.filter(advertiser=adv).exclude(pk__in=before),
                 created_at=end + timedelta(hours=hours))
    statements_issue([adv], at=end + timedelta(hours=1))
    data = Document.objects.get(advertiser=adv, kind=DocumentKind.STATEMENT).data
    assert {k: D(v) for k, v in data["closing"].items()} == ledger_balances_at(adv, end)
    assert {k: D(v) for k, v in data["opening"].items()} == ledger_balances_at(adv, start)
    if not LedgerTransaction.objects.filter(advertiser=adv, created_at__gte=end).exists():
        stored = ledger_balances_at(adv, timezone.now() + timedelta(days=365))
        assert {k: D(v) for k, v in data["closing"].items()} == stored


def test_a_statement_shows_the_months_activity_by_funding_source(spend_event):
    adv = old_account(currency="USD")
    camp = CampaignFactory(advertiser=adv)
    deposit_create(advertiser=adv, amount="100.00", idempotency_key="d1")
    grant(adv, "free", "30.00")
    spend_record(event=spend_event(camp, "50.00"))  # 30 free credit, then 20 cash
    backdate(LedgerTransaction.objects.filter(advertiser=adv), created_at=F("created_at") - timedelta(days=40))
    at = timezone.now() + timedelta(days=40)  # the statement of this month, all of it in it
    statements_issue([adv], at=at)
    doc = Document.objects.get(advertiser=adv, kind=DocumentKind.STATEMENT)
    start, end = month_bounds(adv, at)
    assert doc.number.startswith(f"STM-{at.year}-") and (doc.period_start, doc.period_end) == (start, end)
    act = doc.data["activity"]
    # everything was booked 40 days before this month: the month has no activity, opening = closing
    assert set(act.values()) == {"0.00"} and doc.data["opening"] == doc.data["closing"]
    assert (doc.data["closing"]["cash"], doc.data["closing"]["free"]) == ("80.00", "0.00")
    # the same history booked inside the month
    other = old_account(currency="USD")
    camp = CampaignFactory(advertiser=other)
    deposit_create(advertiser=other, amount="100.00", idempotency_key="d1")
    grant(other, "free", "30.00")
    spend_record(event=spend_event(camp, "50.00"))
    statements_issue([other], at=timezone.now() + timedelta(days=40))
    doc = Document.objects.get(advertiser=other, kind=DocumentKind.STATEMENT)
    act = doc.data["activity"]
    assert (act["deposits"], act["credit_issued"], act["spend_free"], act["spend_cash"], act["credit_used"],
            act["payments"]) == ("100.00", "30.00", "30.00", "20.00", "30.00", "100.00")
    assert doc.data["opening"]["cash"] == "0.00" and doc.data["closing"]["cash"] == "80.00"


def test_issue_statements_is_chunked_idempotent_and_a_job(django_assert_max_num_queries):
    accounts = [old_account() for _ in range(5)]
    young = AdvertiserFactory()  # opened this month: no statement of last month
    at = timezone.now()
    assert issue_statements(at=at, chunk=2) == {"statements": 5}
    assert issue_statements(at=at, chunk=2) == {"statements": 0}  # a rerun issues nothing
    assert job_run(name="issue_statements", at=at) == {"statements": 0}
    docs = Document.objects.filter(kind=DocumentKind.STATEMENT)
    assert sorted(docs.values_list("advertiser_id", flat=True)) == sorted(a.pk for a in accounts)
    assert not docs.filter(advertiser=young).exists()
    numbers = sorted(int(n.rsplit("-", 1)[1]) for n in docs.values_list("number", flat=True))
    assert numbers == list(range(numbers[0], numbers[0] + 5))  # gapless
    # a chunk costs a constant number of queries, however many accounts it has
    more = [old_account() for _ in range(30)]
    with django_assert_max_num_queries(14):
        assert statements_issue(more, at=at) == 30


def test_statements_are_listed_with_a_pdf(client, api):
    from pypdf import PdfReader
    from io import BytesIO

    from tests.factories import member
    adv = old_account(currency="EUR")
    deposit_create(advertiser=adv, amount="100.00", idempotency_key="d1")
    backdate(LedgerTransaction.objects.filter(advertiser=adv), created_at=month_start() - timedelta(days=3))
    issue_statements(at=timezone.now())
    doc = Document.objects.get(advertiser=adv, kind=DocumentKind.STATEMENT)
    rows = api.get(f"/advertisers/{adv.pk}/documents?kind=statement", token=role_token(adv, "analyst")).json()
    assert [(r["number"], r["status"], r["total"]) for r in rows] == [(doc.number, "issued", "0.00")]
    detail = api.get(f"/documents/{doc.pk}", token=role_token(adv, "analyst")).json()
    assert detail["statement"]["closing"]["cash"] == "100.00"
    assert detail["statement"]["activity"]["deposits"] == "100.00"
    client.force_login(member(adv, "finance"))
    page = client.get(f"/a/{adv.pk}/payments/documents/?kind=statement")
    assert doc.number in page.text
    pdf = client.get(f"/a/{adv.pk}/payments/documents/{doc.pk}/pdf/")
    text = "".join(p.extract_text() for p in PdfReader(BytesIO(pdf.content)).pages)
    assert "Statement" in text and doc.number in text and "Closing" in text and "Period" in text and "Cash balance" in text
    assert "100.00" in text and "Deposits" in text


@pytest.mark.django_db(transaction=True)
def test_concurrent_runs_issue_each_statement_once_with_gapless_numbers(spend_event):
    """Three runs of the job at once, with spend booked on the same accounts meanwhile (decision
    0025): one statement per account, numbers 1..n with no gap, and every closing balance is
    the ledger's at the month's end (the spend booked during the runs is after it)."""
    import threading

    accounts = [old_account() for _ in range(12)]
    for n, adv in enumerate(accounts):
        deposit_create(advertiser=adv, amount="50.00", idempotency_key=f"d{n}")
    with transaction.atomic():  # SET LOCAL needs a transaction
        backdate(LedgerTransaction.objects.all(), created_at=month_start() - timedelta(days=2))
    camps = [CampaignFactory(advertiser=adv) for adv in accounts]
    at = timezone.now()
    errors, counts, barrier = [], [], threading.Barrier(4)

    def run():
        try:
            barrier.wait(timeout=30)
            counts.append(issue_statements(at=at, chunk=5)["statements"])
        except Exception as e:  # noqa: BLE001
            errors.append(e)
        finally:
            connection.close()

    def spend():
        try:
            barrier.wait(timeout=30)
            for camp in camps:
                spend_record(event=spend_event(camp, "1.25"))
        except Exception as e:  # noqa: BLE001
            errors.append(e)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(3)] + [threading.Thread(target=spend)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sum(counts) == 12
    docs = Document.objects.filter(kind=DocumentKind.STATEMENT)
    assert sorted(docs.values_list("advertiser_id", flat=True)) == sorted(a.pk for a in accounts)
    assert sorted(int(n.rsplit("-", 1)[1]) for n in docs.values_list("number", flat=True)) == list(range(1, 13))
    for doc in docs:
        assert (doc.data["opening"]["cash"], doc.data["closing"]["cash"]) == ("0.00", "50.00")
        assert {k: D(v) for k, v in doc.data["closing"].items()} == ledger_balances_at(doc.advertiser, month_start())
