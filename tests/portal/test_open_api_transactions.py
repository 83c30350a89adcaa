"""`GET /open_api/v1.3/bc/account/transaction/get/` (SPEC R14, R35; decision 0012): the ledger in
TikTok's words — one row per ledger transaction, types mapped from ledger kinds, filters by type,
account, billing type and time, pages."""

from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone as dt_timezone
from decimal import Decimal

import pytest
from django.db import transaction
from django.db.models import Count, Sum
from django.utils import timezone

from billing.autopay import bill_collect, charge_thresholds, payment_method_set
from billing.bc import bc_transfer
from billing.deposits import cash_refund
from billing.invoicing import invoice_issue
from billing.ledger import lock_advertisers
from billing.models import Bill, LedgerTransaction, TxKind
from billing.spend import spend_record
from billing.switching import billing_settings_set
from promotions.credits import credit_withdraw
from tests.factories import AdvertiserFactory, CampaignFactory, deposit, grant
from tests.portal.open_api_world import TikTokClient, World, ok, refused

pytestmark = pytest.mark.django_db
D = Decimal
KIND_TYPE = {
    "deposit": "ADD_BALANCE", "refund": "REFUND", "charge": "AD_SPEND", "fee": "FEE", "bill": "BILL_ISSUED",
    "payment": "BILL_PAYMENT", "credit_issue": "PROMOTION_ISSUED", "credit_expire": "PROMOTION_EXPIRED",
    "credit_forfeit": "PROMOTION_EXPIRED", "credit_withdraw": "PROMOTION_WITHDRAWN",
}


def _charge(campaign, amount, *, event_id, at=None, kind=None):
    event = {"event_id": event_id, "advertiser_id": campaign.advertiser_id, "campaign_id": campaign.pk,
             "amount": amount, "currency": "USD", "occurred_at": (at or timezone.now()).isoformat()}
    if kind:
        event["kind"] = kind
    return spend_record(event=event)


class Ledger(World):
    """World plus every kind of ledger transaction a BC's accounts can have."""

    def __init__(self):
        super().__init__()
        now = timezone.now()
        # the BC moves cash both ways
        self.recharge = bc_transfer(business_center=self.bc, advertiser_id=self.manual.pk, transfer_type="RECHARGE",
                                    cash_amount="200.00", request_id="t-1")
        self.refund = bc_transfer(business_center=self.bc, advertiser_id=self.manual.pk, transfer_type="REFUND",
                                  cash_amount="50.00", request_id="t-2")
        # manual: a charge paid by credit only, one by credit and cash, a fee (never credit, R8)
        self.charge_grant = _charge(self.campaign, "40.00", event_id="c-grant", at=now - timedelta(minutes=3))
        self.charge_mixed = _charge(self.campaign, "300.00", event_id="c-mixed", at=now - timedelta(minutes=2))
        self.fee = _charge(self.campaign, "5.00", event_id="c-fee", kind="fee", at=now - timedelta(minutes=1))
        credit_withdraw(credit=self.coupon, reason="policy")
        # automatic: spend over the threshold, billed and paid by card; two charges at fixed times
        payment_method_set(advertiser=self.automatic, card_number="4242424242424242", expiry="12/39")
        self.auto_campaign = CampaignFactory(advertiser=self.automatic)
        self.t_old = (now - timedelta(days=10)).replace(microsecond=0)
        self.t_new = (now - timedelta(days=5)).replace(microsecond=0)
        _charge(self.auto_campaign, "30.00", event_id="a-old", at=self.t_old)
        _charge(self.auto_campaign, "45.00", event_id="a-new", at=self.t_new)
        assert charge_thresholds(at=now)["paid"] == 1
        self.threshold_bill = Bill.objects.get(advertiser=self.automatic)
        # invoiced: spend on the credit line, invoiced on the 1st and paid by card
        billing_settings_set(advertiser=self.invoiced, credit_line_limit="1000", reason="test")
        _charge(CampaignFactory(advertiser=self.invoiced), "120.00", event_id="i-1")
        first_next = (now.replace(day=1) + timedelta(days=32)).replace(day=1, hour=0, minute=0, second=0)
        with transaction.atomic():
            self.invoice = invoice_issue(advertiser=lock_advertisers([self.invoiced.pk])[self.invoiced.pk],
                                         at=first_next)
        payment_method_set(advertiser=self.invoiced, card_number="4242424242424242", expiry="12/39")
        assert bill_collect(bill_id=self.invoice.pk).status == "paid"
        # a fourth account refunds its cash to the card, which forfeits its credit
        self.closing = AdvertiserFactory(name="Closing Co", business_center=self.bc)
        deposit(self.closing, "100.00", key="closing")
        grant(self.closing, "free", "10.00", key="closing-free")
        cash_refund(advertiser=self.closing)


@pytest.fixture
def led(db):
    return Ledger()


@pytest.fixture
def w(db):
    return World()


@pytest.fixture
def tt():
    return TikTokClient()


def all_rows(tt, token, bc, **params):
    rows, page = [], 1
    while True:
        data = ok(tt.get("/bc/account/transaction/get/", token, bc_id=str(bc.pk), page=page, page_size=7, **params))
        rows += data["transaction_list"]
        if page >= data["page_info"]["total_page"]:
            assert len(rows) == data["page_info"]["total_number"]
            return rows
        page += 1


def test_advertiser_level_is_every_ledger_transaction_of_the_bcs_accounts(led, tt):
    # when the BC admin reads its advertisers' transactions, page by page
    rows = all_rows(tt, led.tokens["bc_admin"], led.bc, transaction_level="ADVERTISER")
    # then there is one row per ledger transaction, newest first, with the ledger's amount and type
    ledger = LedgerTransaction.objects.filter(advertiser__business_center=led.bc).order_by("-occurred_at", "-pk")
    assert [r["transaction_id"] for r in rows] == [str(t.pk) for t in ledger]
    by_id = {t.pk: t for t in ledger}
    for r in rows:
        tx = by_id[int(r["transaction_id"])]
        assert r["amount"] == r["subtotal"] == tx.amount and r["tax_amount"] == D("0.00")
        assert r["transaction_type"] == KIND_TYPE[tx.kind]
        assert r["account_id"] == str(tx.advertiser_id) and r["bc_id"] == str(led.bc.pk)
        assert r["create_time"] == tx.occurred_at.astimezone(dt_timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        assert r["currency"] == "USD" and r["cash_amount"] + r["grant_amount"] == r["amount"]
    assert {r["transaction_type"] for r in rows} == {
        "ADD_BALANCE", "REFUND", "AD_SPEND", "FEE", "BILL_ISSUED", "BILL_PAYMENT", "PROMOTION_ISSUED",
        "PROMOTION_EXPIRED", "PROMOTION_WITHDRAWN",
    }
    # and counts and sums per type are the ledger's per kind
    got_n, got_sum = Counter(), defaultdict(D)
    for r in rows:
        got_n[r["transaction_type"]] += 1
        got_sum[r["transaction_type"]] += r["amount"]
    want_n, want_sum = Counter(), defaultdict(D)
    for kind, n, s in ledger.order_by().values_list("kind").annotate(n=Count("pk"), s=Sum("amount")).values_list(
            "kind", "n", "s"):
        want_n[KIND_TYPE[kind]] += n
        want_sum[KIND_TYPE[kind]] += s
    assert got_n == want_n and got_sum == want_sum


def test_rows_say_who_how_and_what_paid(led, tt):
    rows = {r["transaction_id"]: r for r in all_rows(tt, led.tokens["staff"], led.bc, transaction_level="ADVERTISER")}
    by_event = {e: LedgerTransaction.objects.get(spend_event__event_id=e).pk for e in ("c-grant", "c-mixed", "c-fee")}
    # a charge paid by the discount and free credit only
    r = rows[str(by_event["c-grant"])]
    assert (r["transaction_type"], r["amount_type"], r["grant_amount"], r["cash_amount"]) == (
        "AD_SPEND", "GRANT", D("40.00"), D("0.00"))
    assert (r["account_name"], r["billing_type"], r["timezone"]) == ("Manual Shop", "MANUAL_PAYMENT",
                                                                      "America/New_York")
    # a charge paid by what was left of the credits, then cash: discount 10 (cap), free 80, cash 210
    r = rows[str(by_event["c-mixed"])]
    assert (r["amount_type"], r["grant_amount"], r["cash_amount"]) == ("CASH_AND_GRANT", D("90.00"), D("210.00"))
    # a fee: cash only
    r = rows[str(by_event["c-fee"])]
    assert (r["transaction_type"], r["amount_type"], r["cash_amount"]) == ("FEE", "CASH", D("5.00"))
    # promotions are grant; a recharge from the BC is ADD_BALANCE and a refund to it REFUND, in cash
    r = rows[str(led.recharge.transaction_id)]
    assert (r["transaction_type"], r["amount"], r["amount_type"]) == ("ADD_BALANCE", D("200.00"), "CASH")
    r = rows[str(led.refund.transaction_id)]
    assert (r["transaction_type"], r["amount"], r["amount_type"]) == ("REFUND", D("50.00"), "CASH")
    issued = [r for r in rows.values() if r["transaction_type"] == "PROMOTION_ISSUED"]
    assert issued and all(r["amount_type"] == "GRANT" and r["cash_amount"] == 0 for r in issued)
    # bills and payments name their bill: an automatic bill by id, an invoice by its number
    auto = [r for r in rows.values() if r["account_id"] == str(led.automatic.pk)
            and r["transaction_type"] in ("BILL_ISSUED", "BILL_PAYMENT")]
    assert len(auto) == 2 and {r["invoice_id"] for r in auto} == {str(led.threshold_bill.pk)}
    assert {r["billing_type"] for r in auto} == {"AUTOMATIC_PAYMENT"}
    [paid] = [r for r in rows.values() if r["account_id"] == str(led.invoiced.pk)
              and r["transaction_type"] == "BILL_PAYMENT"]
    assert paid["invoice_id"] == led.invoice.number and paid["amount"] == D("120.00")
    assert paid["billing_type"] == "MONTHLY_INVOICING"
    assert all(r["invoice_id"] is None for r in rows.values()
               if r["transaction_type"] not in ("BILL_ISSUED", "BILL_PAYMENT"))


def test_bc_level_is_the_bc_cash(led, tt):
    # when the BC's own transactions are read (the default level)
    rows = all_rows(tt, led.tokens["bc_finance"], led.bc)
    # then: the deposit into the BC, the recharge out of it and the refund back into it
    assert [(r["transaction_type"], r["amount"]) for r in rows] == [
        ("TRANSFER_IN", D("50.00")), ("TRANSFER_OUT", D("200.00")), ("ADD_BALANCE", D("5000.00"))]
    assert {(r["account_id"], r["account_name"], r["billing_type"], r["timezone"]) for r in rows} == {
        (str(led.bc.pk), "Agency BC", None, "UTC")}
    assert [r["transaction_id"] for r in rows[:2]] == [str(led.refund.transaction_id),
                                                      str(led.recharge.transaction_id)]
    # and their sum is what moved the BC's cash
    ins = sum(r["amount"] for r in rows if r["transaction_type"] in ("ADD_BALANCE", "TRANSFER_IN"))
    outs = sum(r["amount"] for r in rows if r["transaction_type"] == "TRANSFER_OUT")
    assert ok(tt.get("/bc/balance/get/", led.tokens["bc_finance"], bc_id=str(led.bc.pk)))["cash_balance"] == ins - outs


def test_filter_by_type_account_billing_type_and_name(led, tt):
    token = led.tokens["bc_admin"]

    def ids(level="ADVERTISER", **filtering):
        return {(r["account_id"], r["transaction_type"]) for r in
                all_rows(tt, token, led.bc, transaction_level=level, filtering=filtering)}

    spend = ids(transaction_types=["AD_SPEND", "FEE"])
    assert {t for _, t in spend} == {"AD_SPEND", "FEE"}
    assert len(all_rows(tt, token, led.bc, transaction_level="ADVERTISER",
                        filtering={"transaction_types": ["AD_SPEND", "FEE"]})) == \
        LedgerTransaction.objects.filter(advertiser__business_center=led.bc, kind__in=["charge", "fee"]).count()
    assert {a for a, _ in ids(account_ids=[str(led.automatic.pk)])} == {str(led.automatic.pk)}
    assert {a for a, _ in ids(billing_types=["MONTHLY_INVOICING"])} == {str(led.invoiced.pk)}
    assert {a for a, _ in ids(account_name="closing")} == {str(led.closing.pk)}
    assert {t for _, t in ids(account_ids=[str(led.closing.pk)])} == {"ADD_BALANCE", "PROMOTION_ISSUED", "REFUND",
                                                                      "PROMOTION_EXPIRED"}
    assert ids(level="BC", transaction_types=["TRANSFER_OUT"]) == {(str(led.bc.pk), "TRANSFER_OUT")}
    assert ids(level="BC", account_ids=[str(led.other_bc.pk)]) == set()
    assert ids(level="BC", billing_types=["MANUAL_PAYMENT"]) == set()


def test_filter_by_time_is_inclusive_to_the_second(led, tt):
    token = led.tokens["bc_admin"]

    def spend_at(**filtering):
        rows = all_rows(tt, token, led.bc, transaction_level="ADVERTISER",
                        filtering={"account_ids": [str(led.automatic.pk)], "transaction_types": ["AD_SPEND"],
                                   **filtering})
        return sorted(r["amount"] for r in rows)

    fmt = "%Y-%m-%d %H:%M:%S"
    old, new = led.t_old.astimezone(dt_timezone.utc), led.t_new.astimezone(dt_timezone.utc)
    assert spend_at() == [D("30.00"), D("45.00")]
    assert spend_at(start_time=(old + timedelta(seconds=1)).strftime(fmt)) == [D("45.00")]
    assert spend_at(start_time=old.strftime(fmt)) == [D("30.00"), D("45.00")]
    assert spend_at(end_time=new.strftime(fmt)) == [D("30.00"), D("45.00")]
    assert spend_at(end_time=(new - timedelta(seconds=1)).strftime(fmt)) == [D("30.00")]
    assert spend_at(start_time=old.strftime("%Y-%m-%d"), end_time=old.strftime("%Y-%m-%d")) == [D("30.00")]
    assert spend_at(start_time=new.isoformat()) == [D("45.00")]
    later = (datetime.now(dt_timezone.utc) + timedelta(days=1)).strftime(fmt)
    assert spend_at(start_time=later) == []


def test_pages(led, tt):
    token = led.tokens["bc_admin"]
    total = LedgerTransaction.objects.filter(advertiser__business_center=led.bc).count()
    first = ok(tt.get("/bc/account/transaction/get/", token, bc_id=str(led.bc.pk), transaction_level="ADVERTISER",
                      page_size=5))
    assert first["page_info"] == {"page": 1, "page_size": 5, "total_number": total, "total_page": -(-total // 5)}
    assert len(first["transaction_list"]) == 5
    past = ok(tt.get("/bc/account/transaction/get/", token, bc_id=str(led.bc.pk), transaction_level="ADVERTISER",
                     page=1000, page_size=5))
    assert past["transaction_list"] == [] and past["page_info"]["total_number"] == total
    default = ok(tt.get("/bc/account/transaction/get/", token, bc_id=str(led.bc.pk), transaction_level="ADVERTISER"))
    assert default["page_info"]["page_size"] == 10 and len(default["transaction_list"]) == 10


@pytest.mark.parametrize("params, word", [
    ({"transaction_level": "CAMPAIGN"}, "transaction_level"),
    ({"filtering": '{"transaction_types": ["TRANSFER_OUT"]}', "transaction_level": "ADVERTISER"}, "TRANSFER_OUT"),
    ({"filtering": '{"transaction_types": ["AD_SPEND"]}'}, "AD_SPEND"),
    ({"filtering": '{"transaction_types": "AD_SPEND"}'}, "transaction_types"),
    ({"filtering": '{"owner_of_account": ["x"]}'}, "owner_of_account"),
    ({"filtering": '{"account_ids": "1"}'}, "account_ids"),
    ({"filtering": '{"account_ids": ["x1"]}'}, "account_ids"),
    ({"filtering": '{"start_time": "yesterday"}'}, "start_time"),
    ({"filtering": '{"end_time": "2026-13-01 00:00:00"}'}, "end_time"),
    ({"filtering": '{"billing_types": ["PREPAID"]}'}, "billing_types"),
    ({"filtering": '{"account_name": 5}'}, "account_name"),
    ({"page_size": "1001"}, "page_size"),
    ({"page": "0"}, "page"),
])
def test_bad_parameters_are_40001(w, tt, params, word):
    envelope = tt.get("/bc/account/transaction/get/", w.tokens["bc_admin"], bc_id=str(w.bc.pk), **params)
    assert word in refused(envelope, 40001)["message"]


@pytest.mark.parametrize("who", ["admin", "finance", "analyst", "operator", "other", "stranger"])
def test_only_the_bc_and_staff_read_its_transactions(w, tt, who):
    for level in ("BC", "ADVERTISER"):
        envelope = tt.get("/bc/account/transaction/get/", w.tokens[who], bc_id=str(w.bc.pk),
                          transaction_level=level)
        refused(envelope, 40002, "no_access")
        assert envelope["data"] == {"error_code": "no_access"}
