"""`POST /open_api/v1.3/bc/transfer/` and the `bc_transfer` service (SPEC R8, R13, R14, R23;
decision 0012): cash between a Business Center and its advertisers, idempotent by `request_id`,
never credit."""

import threading
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from billing.bc import bc_cash_balance, bc_deposit_create, bc_transfer
from billing.deposits import cash_refund
from billing.models import (
    BCTransfer,
    Deposit,
    LedgerAccount,
    LedgerTransaction,
    Purpose,
    TxKind,
)
from billing.reconcile import reconcile_ledger
from billing.selectors import advertiser_balances
from billing.spend import spend_record
from portal.errors import BusinessError
from portal.models import Advertiser, Campaign
from tests.factories import AdvertiserFactory, CampaignFactory
from tests.pages_helpers import logged_in, text
from tests.portal.open_api_world import TikTokClient, World, ok, refused

D = Decimal


@pytest.fixture
def w(db):
    return World()


@pytest.fixture
def tt():
    return TikTokClient()


def body(w, **over):
    return {"bc_id": str(w.bc.pk), "advertiser_id": str(w.manual.pk), "transfer_type": "RECHARGE",
            "cash_amount": 250.5, "request_id": "req-1", **over}


def cash(adv) -> D:
    return advertiser_balances(advertiser=Advertiser.objects.get(pk=adv.pk)).cash_balance


def snapshot():
    return (sorted(LedgerAccount.objects.values_list("pk", "balance")), LedgerTransaction.objects.count(),
            BCTransfer.objects.count(), Deposit.objects.count())


# --- RECHARGE --------------------------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("who", ["bc_admin", "bc_finance", "staff"])
def test_recharge_moves_bc_cash_to_the_advertiser(w, tt, who):
    # when the BC recharges the manual account with 250.50
    data = ok(tt.post("/bc/transfer/", w.tokens[who], body(w)))
    # then BC cash went down and the account's cash up by exactly that, in one balanced transaction
    assert bc_cash_balance(business_center=w.bc) == D("4749.50")
    assert cash(w.manual) == D("1250.50")
    transfer = BCTransfer.objects.get()
    assert data == {
        "bc_id": str(w.bc.pk), "advertiser_id": str(w.manual.pk), "transfer_type": "RECHARGE",
        "cash_amount": D("250.50"), "grant_amount": D("0.00"), "currency": "USD", "request_id": "req-1",
        "transaction_id": str(transfer.transaction_id), "create_time": data["create_time"],
    }
    tx = transfer.transaction
    assert (tx.kind, tx.amount, tx.advertiser_id, tx.business_center_id) == (
        TxKind.DEPOSIT, D("250.50"), w.manual.pk, w.bc.pk)
    moves = {(e.account.purpose, e.side): e.amount for e in tx.entries.select_related("account")}
    assert moves == {(Purpose.BC_CASH, "D"): D("250.50"), (Purpose.BC_SETTLEMENT, "C"): D("250.50"),
                     (Purpose.SETTLEMENT, "D"): D("250.50"), (Purpose.CASH, "C"): D("250.50")}
    # and the advertiser's side is a deposit "From Business Center"; nothing else moved (no credit)
    deposit = Deposit.objects.get(transaction=tx)
    assert (deposit.source, deposit.amount) == ("bc_transfer", D("250.50"))
    assert advertiser_balances(advertiser=w.manual).credit_balance == D("150.00")
    assert reconcile_ledger()["differences"] == 0


@pytest.mark.django_db
def test_the_advertiser_sees_the_recharge_from_the_business_center(w, tt):
    ok(tt.post("/bc/transfer/", w.tokens["bc_admin"], body(w, cash_amount="75.00")))
    page = logged_in(w.member_user("finance")).get(f"/a/{w.manual.pk}/payments/transactions/")
    assert page.status_code == 200
    assert "From Business Center $75.00" in text(page)


@pytest.mark.django_db
def test_recharge_settles_arrears_first_and_resumes_campaigns(w, tt):
    # given a charge of 2,310.00: discount 30, free credit 100, cash 1,000, and 1,180.00 in arrears
    campaign = CampaignFactory(advertiser=w.manual)
    spend_record(event={"event_id": "big", "advertiser_id": w.manual.pk, "campaign_id": campaign.pk,
                        "amount": "2310.00", "currency": "USD", "occurred_at": timezone.now().isoformat()})
    b = advertiser_balances(advertiser=w.manual)
    assert (b.cash_balance, b.arrears) == (D("0.00"), D("1180.00"))
    assert Campaign.objects.get(pk=campaign.pk).status == "paused_funds"
    # when the BC recharges 1,000.00: still owing, still paused
    ok(tt.post("/bc/transfer/", w.tokens["bc_admin"], body(w, cash_amount=1000, request_id="a")))
    b = advertiser_balances(advertiser=w.manual)
    assert (b.cash_balance, b.arrears) == (D("0.00"), D("180.00"))
    assert Campaign.objects.get(pk=campaign.pk).status == "paused_funds"
    # and then 200.00: arrears paid first, 20.00 left as cash, delivery resumes
    ok(tt.post("/bc/transfer/", w.tokens["bc_admin"], body(w, cash_amount=200, request_id="b")))
    b = advertiser_balances(advertiser=w.manual)
    assert (b.cash_balance, b.arrears) == (D("20.00"), D("0.00"))
    assert Campaign.objects.get(pk=campaign.pk).status == "active"
    assert bc_cash_balance(business_center=w.bc) == D("3800.00")
    assert reconcile_ledger()["differences"] == 0


@pytest.mark.django_db
def test_recharged_cash_can_later_be_refunded_to_the_advertiser_in_full(w, tt):
    # given an account whose only money came from its BC
    fresh = AdvertiserFactory(business_center=w.bc)
    ok(tt.post("/bc/transfer/", w.tokens["bc_admin"], body(w, advertiser_id=str(fresh.pk), cash_amount=300)))
    # when the advertiser refunds its unspent cash (R23) — payments received must cover it
    refunded = cash_refund(advertiser=fresh)
    # then it works, and every balance still equals its entries
    assert refunded == D("300.00") and cash(fresh) == D("0.00")
    assert Advertiser.objects.get(pk=fresh.pk).status == "closed"
    assert reconcile_ledger()["differences"] == 0


@pytest.mark.django_db
def test_recharge_beyond_the_bc_cash_is_refused_and_moves_nothing(w, tt):
    before = snapshot()
    refused(tt.post("/bc/transfer/", w.tokens["bc_admin"], body(w, cash_amount=5000.01)), 40002,
            "insufficient_bc_balance")
    assert snapshot() == before
    ok(tt.post("/bc/transfer/", w.tokens["bc_admin"], body(w, cash_amount=5000)))
    assert bc_cash_balance(business_center=w.bc) == D("0.00")


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["automatic", "monthly_invoice"])
def test_recharge_is_for_manual_payment_accounts(w, tt, method):
    adv = w.automatic if method == "automatic" else w.invoiced
    before = snapshot()
    refused(tt.post("/bc/transfer/", w.tokens["bc_admin"], body(w, advertiser_id=str(adv.pk))), 40002,
            "transfer_not_allowed")
    assert snapshot() == before


@pytest.mark.django_db
def test_recharge_of_a_closed_account_is_refused(w, tt):
    Advertiser.objects.filter(pk=w.manual.pk).update(status="closed")
    refused(tt.post("/bc/transfer/", w.tokens["bc_admin"], body(w)), 40002, "account_closed")


@pytest.mark.django_db
def test_an_account_in_another_currency_cannot_take_the_bc_cash(w, tt):
    eur = AdvertiserFactory(currency="EUR", business_center=w.bc)
    refused(tt.post("/bc/transfer/", w.tokens["bc_admin"], body(w, advertiser_id=str(eur.pk))), 40002,
            "currency_mismatch")


# --- idempotency -----------------------------------------------------------------------------------

@pytest.mark.django_db
def test_a_repeated_request_id_moves_cash_once_and_answers_the_same(w, tt):
    # when the same transfer is sent three times
    answers = [ok(tt.post("/bc/transfer/", w.tokens["bc_admin"], body(w))) for _ in range(3)]
    # then it moved once, and every answer is the first one
    assert answers[0] == answers[1] == answers[2]
    assert cash(w.manual) == D("1250.50") and bc_cash_balance(business_center=w.bc) == D("4749.50")
    assert BCTransfer.objects.count() == 1
    # even if the account changed since (a replay returns the first result)
    Advertiser.objects.filter(pk=w.manual.pk).update(status="closed")
    assert ok(tt.post("/bc/transfer/", w.tokens["bc_finance"], body(w))) == answers[0]


@pytest.mark.django_db
@pytest.mark.parametrize("change", [
    {"cash_amount": 250.51},
    {"transfer_type": "REFUND"},
    {"advertiser_id": "AUTOMATIC"},
])
def test_a_request_id_reused_with_other_content_is_refused(w, tt, change):
    ok(tt.post("/bc/transfer/", w.tokens["bc_admin"], body(w)))
    if change.get("advertiser_id") == "AUTOMATIC":
        change = {"advertiser_id": str(w.automatic.pk)}
    before = snapshot()
    envelope = refused(tt.post("/bc/transfer/", w.tokens["bc_admin"], body(w, **change)), 40002, "request_id_reused")
    assert "req-1" in envelope["message"]
    assert snapshot() == before


@pytest.mark.django_db
def test_request_ids_are_per_business_center(w, tt):
    bc_deposit_create(business_center=w.other_bc, amount="100.00", idempotency_key="o")
    ok(tt.post("/bc/transfer/", w.tokens["bc_admin"], body(w, cash_amount=10)))
    ok(tt.post("/bc/transfer/", w.tokens["staff"], body(w, bc_id=str(w.other_bc.pk),
                                                        advertiser_id=str(w.other_adv.pk), cash_amount=20)))
    assert sorted(BCTransfer.objects.values_list("amount", flat=True)) == [D("10.00"), D("20.00")]


@pytest.mark.django_db
def test_the_database_refuses_a_second_transfer_with_the_same_request_id(w):
    first = bc_transfer(business_center=w.bc, advertiser_id=w.manual.pk, transfer_type="RECHARGE",
                        cash_amount="10.00", request_id="dup")
    with pytest.raises(IntegrityError), transaction.atomic():
        BCTransfer.objects.create(business_center=w.bc, advertiser=w.manual, request_id="dup",
                                  transfer_type="RECHARGE", amount=D("10.00"),
                                  transaction=LedgerTransaction.objects.create(kind=TxKind.DEPOSIT, amount=D("10"),
                                                                               currency="USD"))
    assert BCTransfer.objects.get().pk == first.pk


@pytest.mark.django_db(transaction=True)
def test_the_same_request_id_sent_concurrently_moves_cash_once():
    # given a BC and its account, and eight threads sending the same transfer at once
    w = World()
    results: list = [None] * 8
    barrier = threading.Barrier(8)

    def work(i):
        try:
            barrier.wait(timeout=30)
            results[i] = bc_transfer(business_center=w.bc, advertiser_id=w.manual.pk, transfer_type="RECHARGE",
                                     cash_amount="100.00", request_id="same").transaction_id
        except BaseException as e:  # noqa: BLE001 — reported below
            results[i] = e
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    # then every thread got the one transfer, and the cash moved once
    assert len(set(results)) == 1 and isinstance(results[0], int), results
    assert BCTransfer.objects.count() == 1
    assert cash(w.manual) == D("1100.00") and bc_cash_balance(business_center=w.bc) == D("4900.00")


# --- REFUND ----------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_refund_returns_advertiser_cash_to_the_bc_without_closing_the_account(w, tt):
    # when the BC takes 400.00 of the manual account's 1,000.00 back
    data = ok(tt.post("/bc/transfer/", w.tokens["bc_finance"], body(w, transfer_type="REFUND", cash_amount="400")))
    # then the cash moved back, the account stays open with its credit, on one balanced transaction
    assert data["transfer_type"] == "REFUND" and data["cash_amount"] == D("400.00")
    assert cash(w.manual) == D("600.00") and bc_cash_balance(business_center=w.bc) == D("5400.00")
    adv = Advertiser.objects.get(pk=w.manual.pk)
    assert adv.status == "active" and advertiser_balances(advertiser=adv).credit_balance == D("150.00")
    tx = BCTransfer.objects.get().transaction
    assert tx.kind == TxKind.REFUND
    moves = {(e.account.purpose, e.side): e.amount for e in tx.entries.select_related("account")}
    assert moves == {(Purpose.CASH, "D"): D("400.00"), (Purpose.SETTLEMENT, "C"): D("400.00"),
                     (Purpose.BC_SETTLEMENT, "D"): D("400.00"), (Purpose.BC_CASH, "C"): D("400.00")}
    # and the rest can still be refunded to the card, all of it
    assert cash_refund(advertiser=adv) == D("600.00")
    assert reconcile_ledger()["differences"] == 0


@pytest.mark.django_db
def test_refund_is_at_most_the_cash_balance(w, tt):
    before = snapshot()
    envelope = refused(tt.post("/bc/transfer/", w.tokens["bc_admin"],
                               body(w, transfer_type="REFUND", cash_amount="1000.01")), 40002, "refund_exceeds_cash")
    assert "1000.00" in envelope["message"]
    assert snapshot() == before
    ok(tt.post("/bc/transfer/", w.tokens["bc_admin"], body(w, transfer_type="REFUND", cash_amount="1000.00")))
    assert cash(w.manual) == D("0.00")


@pytest.mark.django_db
@pytest.mark.parametrize("state, reason", [
    ("suspended", "not_in_good_standing"),
    ("arrears", "not_in_good_standing"),
    ("automatic", "transfer_not_allowed"),
])
def test_refund_only_from_a_manual_account_in_good_standing(w, tt, state, reason):
    adv = w.manual
    if state == "suspended":
        Advertiser.objects.filter(pk=adv.pk).update(status="suspended")
    if state == "arrears":
        campaign = CampaignFactory(advertiser=adv)
        spend_record(event={"event_id": "arrears", "advertiser_id": adv.pk, "campaign_id": campaign.pk,
                            "amount": "1300.00", "currency": "USD", "occurred_at": timezone.now().isoformat()})
    if state == "automatic":
        adv = w.automatic
    before = snapshot()
    refused(tt.post("/bc/transfer/", w.tokens["bc_admin"],
                    body(w, advertiser_id=str(adv.pk), transfer_type="REFUND", cash_amount="1")), 40002, reason)
    assert snapshot() == before


# --- credit is never transferable (R8) -------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("who", ["bc_admin", "staff", "admin", "other", "stranger"])
@pytest.mark.parametrize("grant_amount", [10, 0.01, "5.00", -1, "abc"])
def test_any_grant_amount_is_refused_to_everyone_and_moves_nothing(w, tt, who, grant_amount):
    before = snapshot()
    for transfer_type in ("RECHARGE", "REFUND"):
        envelope = tt.post("/bc/transfer/", w.tokens[who], body(w, transfer_type=transfer_type,
                                                                grant_amount=grant_amount))
        assert "credit" in refused(envelope, 40002, "credit_not_transferable")["message"].lower()
    assert snapshot() == before


@pytest.mark.django_db
@pytest.mark.parametrize("grant_amount", [0, 0.0, "0.00", None])
def test_a_zero_grant_amount_is_no_grant(w, tt, grant_amount):
    ok(tt.post("/bc/transfer/", w.tokens["bc_admin"], body(w, grant_amount=grant_amount)))
    assert cash(w.manual) == D("1250.50")


def test_the_service_refuses_grant_before_anything_else(db):
    with pytest.raises(BusinessError) as e:
        bc_transfer(business_center=None, advertiser_id=None, transfer_type="nope", cash_amount=None,
                    grant_amount="1", request_id="")
    assert e.value.code == "credit_not_transferable"


# --- who, and bad input ----------------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("who", ["admin", "finance", "analyst", "operator", "other", "stranger"])
def test_only_the_bc_and_staff_may_transfer(w, tt, who):
    before = snapshot()
    refused(tt.post("/bc/transfer/", w.tokens[who], body(w)), 40002, "no_access")
    assert snapshot() == before


@pytest.mark.django_db
def test_an_advertiser_of_another_bc_or_unknown_reads_alike(w, tt):
    a = refused(tt.post("/bc/transfer/", w.tokens["bc_admin"], body(w, advertiser_id=str(w.other_adv.pk))), 40002,
                "no_access")
    b = refused(tt.post("/bc/transfer/", w.tokens["bc_admin"], body(w, advertiser_id="99999999")), 40002, "no_access")
    assert a["message"].replace(str(w.other_adv.pk), "X") == b["message"].replace("99999999", "X")
    assert BCTransfer.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("change, word", [
    ({"cash_amount": "10.001"}, "cash_amount"),
    ({"cash_amount": 0}, "cash_amount"),
    ({"cash_amount": -5}, "cash_amount"),
    ({"cash_amount": None}, "cash_amount"),
    ({"request_id": ""}, "request_id"),
    ({"request_id": "x" * 65}, "request_id"),
    ({"transfer_type": "GIFT"}, "transfer_type"),
    ({"bc_id": "abc"}, "bc_id"),
    ({"advertiser_id": None}, "advertiser_id"),
    ({"child_bc_id": "7"}, "child_bc_id"),
    ({"transfer_level": "BC"}, "transfer_level"),
])
def test_bad_transfer_input_is_40001_and_moves_nothing(w, tt, change, word):
    before = snapshot()
    envelope = refused(tt.post("/bc/transfer/", w.tokens["bc_admin"], body(w, **change)), 40001)
    assert word in envelope["message"]
    assert snapshot() == before


@pytest.mark.django_db
@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", '"text"'])
def test_a_body_that_is_not_a_json_object_is_40001(w, tt, raw):
    refused(tt.post("/bc/transfer/", w.tokens["bc_admin"], raw=raw), 40001)
