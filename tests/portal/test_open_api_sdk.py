"""Contract tests with TikTok's official Python SDK (`tiktok-business-api-sdk-official`, module
`business_api_client`) against a live test server (SPEC R35; issue 6; decision 0012).

Only the host changes: `Configuration().host` is the live server's URL, because the SDK's paths
already start with `/open_api/v1.3/`. The SDK raises `TiktokSDKError` ("Error Code: N, ...") for
any non-zero code and returns `{"data": ..., "request_id": ...}` otherwise.
"""

import re
from collections import defaultdict
from datetime import datetime, timedelta, timezone as dt_timezone
from decimal import Decimal
from io import StringIO

import business_api_client as sdk
import pytest
from business_api_client.tiktok_business.tiktok_exceptions import TiktokSDKError
from django.core.management import call_command
from django.db.models import Count, Sum

from billing.autopay import payment_method_set
from billing.bc import bc_cash_balance, bc_deposit_create
from billing.models import BCDeposit, BCTransfer, LedgerTransaction
from billing.selectors import advertiser_balances
from billing.switching import billing_method_switch, billing_settings_set
from billing.templatetags.money import format_money
from portal.models import Advertiser, ApiToken, BCMembership, BusinessCenter, Membership
from promotions.freeze import credit_freeze
from tests.api_helpers import api_user
from tests.factories import AdvertiserFactory, BusinessCenterFactory, deposit, grant, token_for
from tests.pages_helpers import logged_in, text
from tests.portal.open_api_world import World

pytestmark = pytest.mark.django_db(transaction=True)
D = Decimal
KIND_TYPE = {
    "deposit": "ADD_BALANCE", "refund": "REFUND", "charge": "AD_SPEND", "fee": "FEE", "bill": "BILL_ISSUED",
    "payment": "BILL_PAYMENT", "credit_issue": "PROMOTION_ISSUED", "credit_expire": "PROMOTION_EXPIRED",
    "credit_forfeit": "PROMOTION_EXPIRED", "credit_withdraw": "PROMOTION_WITHDRAWN",
}


@pytest.fixture
def client_for(live_server):
    """`client_for(sdk.BCApi)` → that API of the SDK, talking to the live test server."""

    def make(api_class):
        configuration = sdk.Configuration()
        configuration.host = live_server.url  # the SDK appends /open_api/v1.3/<path>/ itself
        return api_class(sdk.ApiClient(configuration))

    return make


def money(value) -> D:
    """The SDK parses JSON numbers as floats; their shortest repr is the decimal that was sent."""
    return D(repr(value))


def error_code(exc: TiktokSDKError) -> int:
    return int(re.search(r"Error Code: (\d+)", str(exc)).group(1))


def transfer_body(w, **over):
    fields = {"bc_id": str(w.bc.pk), "advertiser_id": str(w.manual.pk), "transfer_type": "RECHARGE",
              "cash_amount": 120.25, "request_id": "sdk-1", **over}
    return sdk.BcTransferBody(**fields)


def test_the_sdk_calls_every_endpoint(client_for):
    w = World()
    bc_api, accounts = client_for(sdk.BCApi), client_for(sdk.AccountManagementApi)
    # advertiser/info/ (advertiser_ids sent as the SDK encodes a list: a JSON array)
    info = accounts.advertiser_info([str(w.manual.pk)], w.tokens["admin"])
    assert info["request_id"]
    [row] = info["data"]["list"]
    assert (row["advertiser_id"], row["name"], row["currency"], row["status"], money(row["balance"])) == (
        str(w.manual.pk), "Manual Shop", "USD", "STATUS_ENABLE", D("1150.00"))
    # advertiser/balance/get/ with the SDK's filtering model and paging
    balances = bc_api.advertiser_balance_get(
        str(w.bc.pk), w.tokens["bc_admin"], page=1, page_size=2,
        filtering=sdk.FilteringAdvertiserBalanceGet(advertiser_status=["STATUS_ENABLE"]),
    )["data"]
    assert balances["page_info"] == {"page": 1, "page_size": 2, "total_number": 3, "total_page": 2}
    first = balances["advertiser_account_list"][0]
    assert first["advertiser_id"] == str(w.manual.pk)
    assert [money(first[k]) for k in ("cash_balance", "grant_balance", "frozen_balance", "account_balance")] == [
        D("1000.00"), D("150.00"), D("0.00"), D("1150.00")]
    # bc/balance/get/
    bc = bc_api.bc_balance_get(str(w.bc.pk), w.tokens["bc_finance"])["data"]
    assert (bc["bc_id"], bc["currency"], money(bc["cash_balance"])) == (str(w.bc.pk), "USD", D("5000.00"))
    # bc/transfer/
    moved = bc_api.bc_transfer(w.tokens["bc_finance"], body=transfer_body(w))["data"]
    assert (moved["transfer_type"], money(moved["cash_amount"]), moved["advertiser_id"]) == (
        "RECHARGE", D("120.25"), str(w.manual.pk))
    assert advertiser_balances(advertiser=w.manual).cash_balance == D("1120.25")
    # bc/account/transaction/get/ with the SDK's filtering model, at both levels
    issued = bc_api.bc_account_transaction_get(
        w.tokens["bc_admin"], bc_id=str(w.bc.pk), transaction_level="ADVERTISER", page=1, page_size=50,
        filtering=sdk.FilteringBcAccountTransactionGet(transaction_types=["PROMOTION_ISSUED"],
                                                       account_ids=[str(w.manual.pk)]),
    )["data"]
    assert sorted(money(r["amount"]) for r in issued["transaction_list"]) == [D("30.00"), D("50.00"), D("100.00")]
    own = bc_api.bc_account_transaction_get(w.tokens["bc_admin"], bc_id=str(w.bc.pk), transaction_level="BC")["data"]
    assert [(r["transaction_type"], money(r["amount"])) for r in own["transaction_list"]] == [
        ("TRANSFER_OUT", D("120.25")), ("ADD_BALANCE", D("5000.00"))]


def test_the_sdk_reports_a_bad_token_as_an_error_code_for_every_endpoint(client_for):
    w = World()
    bc_api, accounts = client_for(sdk.BCApi), client_for(sdk.AccountManagementApi)
    calls = {
        "advertiser/info": lambda t: accounts.advertiser_info([str(w.manual.pk)], t),
        "advertiser/balance/get": lambda t: bc_api.advertiser_balance_get(str(w.bc.pk), t),
        "bc/balance/get": lambda t: bc_api.bc_balance_get(str(w.bc.pk), t),
        "bc/account/transaction/get": lambda t: bc_api.bc_account_transaction_get(t, bc_id=str(w.bc.pk)),
        "bc/transfer": lambda t: bc_api.bc_transfer(t, body=transfer_body(w)),
    }
    for name, call in calls.items():
        with pytest.raises(TiktokSDKError) as exc:
            call("act_not-a-real-token")
        assert error_code(exc.value) == 40100, name
        assert "request_id: 20" in str(exc.value)  # the SDK quotes our request id
    # and someone else's token is refused with 40002, not served
    with pytest.raises(TiktokSDKError) as exc:
        bc_api.bc_balance_get(str(w.bc.pk), w.tokens["other"])
    assert error_code(exc.value) == 40002
    assert bc_cash_balance(business_center=w.bc) == D("5000.00") and BCTransfer.objects.count() == 0


def test_the_sdk_cannot_transfer_credit_and_a_repeated_request_id_moves_cash_once(client_for):
    w = World()
    bc_api = client_for(sdk.BCApi)
    # a transfer with grant_amount fails with a non-zero code and moves nothing (R8)
    for grant_amount in (10.0, 0.01):
        with pytest.raises(TiktokSDKError) as exc:
            bc_api.bc_transfer(w.tokens["bc_admin"], body=transfer_body(w, grant_amount=grant_amount))
        assert error_code(exc.value) == 40002 and "credit" in str(exc.value).lower()
    assert BCTransfer.objects.count() == 0
    # the same request_id three times moves the cash once, and answers the same each time
    answers = [bc_api.bc_transfer(w.tokens["bc_admin"], body=transfer_body(w, request_id="once"))["data"]
               for _ in range(3)]
    assert answers[0] == answers[1] == answers[2]
    assert advertiser_balances(advertiser=w.manual).cash_balance == D("1120.25")
    assert bc_cash_balance(business_center=w.bc) == D("4879.75")
    # the same request_id with another amount is refused
    with pytest.raises(TiktokSDKError) as exc:
        bc_api.bc_transfer(w.tokens["bc_admin"], body=transfer_body(w, request_id="once", cash_amount=1.0))
    assert error_code(exc.value) == 40002
    # and a REFUND through the SDK brings cash back to the BC
    back = bc_api.bc_transfer(w.tokens["bc_admin"], body=transfer_body(w, request_id="back", transfer_type="REFUND",
                                                                       cash_amount=20.25))["data"]
    assert back["transfer_type"] == "REFUND"
    assert advertiser_balances(advertiser=w.manual).cash_balance == D("1100.00")
    assert bc_cash_balance(business_center=w.bc) == D("4900.00")


def _stat(html: str, stat_id: str) -> str | None:
    m = re.search(rf'id="{stat_id}".*?<span class="stat-value">([^<]+)</span>', html, re.S)
    return m.group(1).strip() if m else None


@pytest.mark.parametrize("frozen", [False, True], ids=["usable", "frozen"])
@pytest.mark.parametrize("method", ["manual", "automatic", "monthly_invoice"])
def test_the_sdk_reads_the_balances_the_payments_page_shows(client_for, method, frozen):
    # given an account on each billing method, with cash (kept from manual payment when it switched),
    # free credit and a coupon, a discount cap, and maybe a freeze
    bc = BusinessCenterFactory()
    adv = AdvertiserFactory(name=f"Parity {method}", business_center=bc)
    deposit(adv, "730.25", key="parity")
    grant(adv, "free", "64.10", key="free")
    grant(adv, "assignable", "20.00", key="coupon")
    grant(adv, "discount", "15.00", percent="10", key="discount")
    if method == "automatic":
        payment_method_set(advertiser=adv, card_number="4242424242424242", expiry="12/39")
    if method == "monthly_invoice":
        billing_settings_set(advertiser=adv, invoicing_eligible=True, credit_line_limit="500", reason="parity")
    if method != "manual":
        billing_method_switch(advertiser=adv, billing_method=method)
    if frozen:
        credit_freeze(advertiser=adv, reason="parity check")
    admin = api_user()
    Membership.objects.create(user=admin, advertiser=adv, role="admin")
    # when the admin opens the Payments page, and reads the balances through the SDK with their token
    page = logged_in(admin).get(f"/a/{adv.pk}/payments/")
    assert page.status_code == 200
    html = page.content.decode()
    data = client_for(sdk.BCApi).advertiser_balance_get(str(bc.pk), token_for(admin))["data"]
    [row] = data["advertiser_account_list"]
    # then cash, usable credit and frozen credit read the same in both
    assert Advertiser.objects.get(pk=adv.pk).billing_method == method
    assert _stat(html, "cash-balance") == format_money(money(row["cash_balance"]), "USD") == "$730.25"
    assert _stat(html, "credit-balance") == format_money(money(row["valid_grant_balance"]), "USD")
    assert money(row["grant_balance"]) == D("84.10")
    if frozen:
        assert money(row["frozen_balance"]) == D("84.10") and money(row["valid_grant_balance"]) == D("0.00")
        assert f"paused the use of {format_money(money(row['frozen_balance']), 'USD')} of credit" in text(page)
    else:
        assert money(row["frozen_balance"]) == D("0.00") and money(row["valid_grant_balance"]) == D("84.10")
        assert "credit is frozen" not in text(page)
    assert money(row["account_balance"]) == D("814.35")
    assert money(row["valid_account_balance"]) == money(row["cash_balance"]) + money(row["valid_grant_balance"])


def test_the_sdk_reads_a_month_of_demo_spend_as_the_ledger_holds_it(client_for):
    # given the demo data (a month of spend on three accounts of one BC), and a BC deposit and a
    # recharge so the BC's own cash has a history too
    call_command("load_demo", stdout=StringIO())
    bc = BusinessCenter.objects.get(name="Demo Agency BC")
    token = ApiToken.issue(user=BCMembership.objects.get(business_center=bc, role="admin").user)[1]
    bc_deposit_create(business_center=bc, amount="1000.00", idempotency_key="demo-sdk")
    bc_api = client_for(sdk.BCApi)
    manual = Advertiser.objects.filter(business_center=bc, billing_method="manual", status="active").order_by("pk")[0]
    bc_api.bc_transfer(token, body=sdk.BcTransferBody(bc_id=str(bc.pk), advertiser_id=str(manual.pk),
                                                      transfer_type="RECHARGE", cash_amount=100.0,
                                                      request_id="demo-recharge"))

    def read_all(level, filtering=None):
        rows, page = [], 1
        while True:
            kwargs = {"filtering": filtering} if filtering else {}
            data = bc_api.bc_account_transaction_get(token, bc_id=str(bc.pk), transaction_level=level, page=page,
                                                     page_size=1000, **kwargs)["data"]
            rows += data["transaction_list"]
            if page >= data["page_info"]["total_page"]:
                assert len(rows) == data["page_info"]["total_number"]
                return rows
            page += 1

    def by_type(rows):
        out = defaultdict(lambda: [0, D(0)])
        for r in rows:
            out[r["transaction_type"]][0] += 1
            out[r["transaction_type"]][1] += money(r["amount"])
        return dict(out)

    def ledger_by_type(qs):
        out = defaultdict(lambda: [0, D(0)])
        for kind, n, s in qs.order_by().values_list("kind").annotate(n=Count("pk"), s=Sum("amount")).values_list(
                "kind", "n", "s"):
            out[KIND_TYPE[kind]][0] += n
            out[KIND_TYPE[kind]][1] += s
        return dict(out)

    # when the BC admin reads every transaction of its accounts through the SDK
    rows = read_all("ADVERTISER")
    ledger = LedgerTransaction.objects.filter(advertiser__business_center=bc)
    # then count and sums per type are the ledger's, and every transaction appears once
    assert len(rows) == ledger.count() > 1000
    assert len({r["transaction_id"] for r in rows}) == len(rows)
    assert by_type(rows) == ledger_by_type(ledger)
    assert by_type(rows)["AD_SPEND"][0] > 1000
    # and per account, the spend read equals the spend the ledger recorded
    for adv in Advertiser.objects.filter(business_center=bc):
        spent = sum((money(r["amount"]) for r in rows
                     if r["account_id"] == str(adv.pk) and r["transaction_type"] == "AD_SPEND"), D(0))
        assert spent == (ledger.filter(advertiser=adv, kind="charge").aggregate(s=Sum("amount"))["s"] or D(0))
    # and a time window of the last two weeks of spend, filtered by the server, matches too
    end = datetime.now(dt_timezone.utc).replace(microsecond=0)
    start = end - timedelta(days=14)
    window = read_all("ADVERTISER", sdk.FilteringBcAccountTransactionGet(
        transaction_types=["AD_SPEND"], start_time=start.strftime("%Y-%m-%d %H:%M:%S"),
        end_time=end.strftime("%Y-%m-%d %H:%M:%S")))
    in_window = ledger.filter(kind="charge", occurred_at__gte=start, occurred_at__lt=end + timedelta(seconds=1))
    assert by_type(window) == ledger_by_type(in_window) and 0 < len(window) < by_type(rows)["AD_SPEND"][0]
    # and the BC's own cash: its deposits in, recharges out, refunds back in
    own = read_all("BC")
    expected = defaultdict(lambda: [0, D(0)])
    for amount in BCDeposit.objects.filter(business_center=bc).values_list("amount", flat=True):
        expected["ADD_BALANCE"][0] += 1
        expected["ADD_BALANCE"][1] += amount
    for kind, amount in BCTransfer.objects.filter(business_center=bc).values_list("transfer_type", "amount"):
        key = "TRANSFER_OUT" if kind == "RECHARGE" else "TRANSFER_IN"
        expected[key][0] += 1
        expected[key][1] += amount
    assert by_type(own) == dict(expected)
    assert by_type(own)["TRANSFER_OUT"][1] >= D("100.00") and by_type(own)["ADD_BALANCE"][1] >= D("1000.00")
    assert len(own) == LedgerTransaction.objects.filter(business_center=bc).count()
