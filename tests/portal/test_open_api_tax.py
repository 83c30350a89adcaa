"""Tax on the TikTok surface (SPEC R38, decisions 0012 and 0023): `bc/account/transaction/get/`
says what each payment charged (`amount`, tax included), without its tax (`subtotal`) and the tax
it booked (`tax_amount`, collected or given back); `advertiser/balance/get/` reports the account's
tax payable as `tax`. All from the ledger, in a constant number of queries per page."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing.autopay import charge_thresholds, payment_method_set, threshold_set
from billing.chargebacks import chargeback_record
from billing.credit_notes import credit_note_issue
from billing.invoice_payments import invoice_transfer_record
from billing.invoicing import issue_monthly_invoices
from billing.models import Bill, Document, LedgerAccount, Purpose
from billing.spend import spend_record
from billing.switching import billing_settings_set
from billing.topups import card_deposit_create
from tests.api_helpers import bc_role_token
from tests.billing.test_documents_tax import profile
from tests.factories import AdvertiserFactory, BusinessCenterFactory, CampaignFactory, deposit
from tests.portal.open_api_world import TikTokClient, ok

pytestmark = pytest.mark.django_db
D = Decimal
CARD = "4242 4242 4242 4242"


class Taxed:
    """A EUR Business Center with a manual account billed in Ireland (23 %) and one with no
    billing address (no place of supply: no tax), and its admin's token."""

    def __init__(self):
        self.bc = BusinessCenterFactory(name="Dublin BC", currency="EUR")
        self.adv = AdvertiserFactory(name="Irish Shop", currency="EUR", business_center=self.bc)
        profile(self.adv, country="IE")
        self.untaxed = AdvertiserFactory(name="Nowhere Co", currency="EUR", business_center=self.bc)
        self.token = bc_role_token(self.bc, "admin")

    def account(self, **kw):
        adv = AdvertiserFactory(currency="EUR", business_center=self.bc, **kw)
        profile(adv, country="IE")
        return adv


@pytest.fixture
def tx(db):
    return Taxed()


@pytest.fixture
def tt():
    return TikTokClient()


def rows_by_id(tt, w: Taxed, **params) -> dict[str, dict]:
    data = ok(tt.get("/bc/account/transaction/get/", w.token, bc_id=str(w.bc.pk), transaction_level="ADVERTISER",
                     page_size=1000, **params))
    return {r["transaction_id"]: r for r in data["transaction_list"]}


def balance_tax(tt, w: Taxed) -> dict[str, Decimal]:
    data = ok(tt.get("/advertiser/balance/get/", w.token, bc_id=str(w.bc.pk), page_size=100))
    return {r["advertiser_id"]: r["tax"] for r in data["advertiser_account_list"]}


def money(row) -> tuple:
    return row["amount"], row["subtotal"], row["tax_amount"]


def test_a_taxed_card_deposit_reports_the_card_charge_the_amount_loaded_and_the_tax(tx, tt):
    # given a card deposit of 100.00 by an account billed in Ireland: the card pays 123.00
    dep, _ = card_deposit_create(advertiser=tx.adv, amount="100.00", card_number=CARD, idempotency_key="d-1")
    assert (dep.amount, dep.tax, dep.transaction.amount) == (D("100.00"), D("23.00"), D("100.00"))
    # when the BC admin reads its accounts' transactions
    row = rows_by_id(tt, tx)[str(dep.transaction_id)]
    # then amount is what was charged, subtotal what was loaded and tax_amount the tax booked
    assert row["transaction_type"] == "ADD_BALANCE"
    assert money(row) == (D("123.00"), D("100.00"), D("23.00"))
    assert (row["amount_type"], row["cash_amount"], row["grant_amount"]) == ("CASH", D("123.00"), D("0.00"))
    # and, in the body, with the currency's places
    assert '"amount": 123.00, "subtotal": 100.00, "tax_amount": 23.00' in tt.last.content.decode()


def test_an_untaxed_deposit_keeps_amount_equal_to_subtotal(tx, tt):
    dep = deposit(tx.untaxed, "100.00", key="u-1")
    row = rows_by_id(tt, tx)[str(dep.transaction_id)]
    assert money(row) == (D("100.00"), D("100.00"), D("0.00"))


def test_a_chargeback_reports_the_tax_it_gives_back_as_a_positive_amount(tx, tt):
    dep, _ = card_deposit_create(advertiser=tx.adv, amount="100.00", card_number=CARD, idempotency_key="d-1")
    chargeback, _ = chargeback_record(reference="cb-1", reason="fraud", deposit=dep)
    row = rows_by_id(tt, tx)[str(chargeback.transaction_id)]
    assert row["transaction_type"] == "REFUND"
    assert money(row) == (D("123.00"), D("100.00"), D("23.00"))  # the card gets back the charge and its tax


def test_a_credit_note_refunding_a_deposit_reports_its_share_of_the_tax(tx, tt):
    dep, _ = card_deposit_create(advertiser=tx.adv, amount="100.00", card_number=CARD, idempotency_key="d-1")
    receipt = Document.objects.get(deposit=dep)
    note, _ = credit_note_issue(actor=None, document=receipt, amount="50.00", reason="Wrong amount",
                                idempotency_key="cn-1")
    assert (note.net, note.tax) == (D("40.66"), D("9.34"))
    row = rows_by_id(tt, tx)[str(note.data["transaction"])]
    assert money(row) == (D("50.00"), D("40.66"), D("9.34"))


def test_a_bill_paid_by_card_reports_its_charge_and_tax_and_the_bill_itself_none(tx, tt, spend_event):
    adv = tx.account(billing_method="automatic", name="Irish Auto")
    payment_method_set(advertiser=adv, card_number="4242424242424242", expiry="12/39")
    threshold_set(advertiser=adv, amount="180.00", reason="test")
    spend_record(event=spend_event(CampaignFactory(advertiser=adv), "180.00"))
    assert charge_thresholds()["paid"] == 1
    bill = Bill.objects.get(advertiser=adv)
    assert (bill.amount, bill.tax) == (D("180.00"), D("41.40"))
    rows = [r for r in rows_by_id(tt, tx).values() if r["account_id"] == str(adv.pk)]
    by_type = {r["transaction_type"]: r for r in rows}
    assert money(by_type["BILL_PAYMENT"]) == (D("221.40"), D("180.00"), D("41.40"))
    assert money(by_type["BILL_ISSUED"]) == (D("180.00"), D("180.00"), D("0.00"))  # tax is booked when paid
    assert money(by_type["AD_SPEND"]) == (D("180.00"), D("180.00"), D("0.00"))


def test_a_bank_transfer_reports_the_invoices_tax_in_proportion(tx, tt, spend_event):
    adv = tx.account(billing_method="monthly_invoice", name="Irish Games")
    billing_settings_set(advertiser=adv, credit_line_limit="1000.00")
    now = timezone.now()
    spend_record(event=spend_event(CampaignFactory(advertiser=adv), "100.00",
                                   occurred_at=(now.replace(day=1) - timedelta(days=3)).replace(hour=12)))
    issue_monthly_invoices(at=now)
    invoice = Document.objects.get(advertiser=adv, kind="invoice")  # 100.00 + 23.00
    payment = invoice_transfer_record(actor=None, document=invoice, amount="61.50", reference="BANK-1")
    row = rows_by_id(tt, tx)[str(payment.transaction_id)]
    assert row["transaction_type"] == "BILL_PAYMENT"
    assert money(row) == (D("61.50"), D("50.00"), D("11.50"))  # round_down(61.50 × 23 / 123)


def test_balance_tax_is_the_accounts_tax_payable(tx, tt):
    # given nothing paid yet: no tax payable anywhere
    assert balance_tax(tt, tx) == {str(tx.adv.pk): D("0.00"), str(tx.untaxed.pk): D("0.00")}
    # when the Irish account pays two taxed deposits and the untaxed one an untaxed deposit
    first, _ = card_deposit_create(advertiser=tx.adv, amount="100.00", card_number=CARD, idempotency_key="d-1")
    card_deposit_create(advertiser=tx.adv, amount="50.00", card_number=CARD, idempotency_key="d-2")
    deposit(tx.untaxed, "100.00", key="u-1")
    # then tax is the tax its payments carried (the balances themselves exclude it)
    ok_data = ok(tt.get("/advertiser/balance/get/", tx.token, bc_id=str(tx.bc.pk), page_size=100))
    irish = next(r for r in ok_data["advertiser_account_list"] if r["advertiser_id"] == str(tx.adv.pk))
    assert (irish["tax"], irish["cash_balance"], irish["account_balance"]) == (D("34.50"), D("150.00"), D("150.00"))
    assert balance_tax(tt, tx) == {str(tx.adv.pk): D("34.50"), str(tx.untaxed.pk): D("0.00")}
    # and a chargeback takes its tax back out
    chargeback_record(reference="cb-1", reason="fraud", deposit=first)
    assert balance_tax(tt, tx)[str(tx.adv.pk)] == D("11.50")
    assert LedgerAccount.objects.get(advertiser=tx.adv, purpose=Purpose.TAX_PAYABLE).balance == D("11.50")
    # and a Business Center's own cash carries no tax
    assert ok(tt.get("/bc/balance/get/", tx.token, bc_id=str(tx.bc.pk)))["tax"] == D("0.00")


def test_the_rows_tax_adds_up_to_the_tax_payable_reported_on_the_balance(tx, tt):
    deps = [card_deposit_create(advertiser=tx.adv, amount=a, card_number=CARD, idempotency_key=f"d-{a}")[0]
            for a in ("100.00", "33.33", "20.01")]
    chargeback_record(reference="cb-1", reason="fraud", deposit=deps[1])
    credit_note_issue(actor=None, document=Document.objects.get(deposit=deps[0]), amount="12.30", reason="x",
                      idempotency_key="cn-1")
    rows = [r for r in rows_by_id(tt, tx).values() if r["account_id"] == str(tx.adv.pk)]
    for r in rows:
        assert r["subtotal"] + r["tax_amount"] == r["amount"] and r["tax_amount"] >= 0
        assert r["cash_amount"] + r["grant_amount"] == r["amount"]
    given_back = {"REFUND", "CREDIT_NOTE"}
    signed = sum((-r["tax_amount"] if r["transaction_type"] in given_back else r["tax_amount"] for r in rows), D(0))
    # 23.00 + 7.66 + 4.60 collected, 7.66 (chargeback) and round_down(12.30 × 23 / 123) = 2.30 given back
    assert signed == balance_tax(tt, tx)[str(tx.adv.pk)] == D("25.30")


def _queries(tt, token, **params) -> int:
    with CaptureQueriesContext(connection) as ctx:
        ok(tt.get("/bc/account/transaction/get/", token, **params))
    return len(ctx.captured_queries)


def test_a_transaction_page_costs_the_same_queries_however_many_taxed_rows_it_holds(tx, tt):
    params = {"bc_id": str(tx.bc.pk), "transaction_level": "ADVERTISER", "page_size": 100}
    card_deposit_create(advertiser=tx.adv, amount="100.00", card_number=CARD, idempotency_key="q-0")
    one = _queries(tt, tx.token, **params)
    for i in range(1, 8):
        dep, _ = card_deposit_create(advertiser=tx.adv, amount="20.00", card_number=CARD, idempotency_key=f"q-{i}")
        if i % 2:
            chargeback_record(reference=f"cb-{i}", reason="fraud", deposit=dep)
    assert _queries(tt, tx.token, **params) == one
