"""The TikTok Business API v1.3 subset (SPEC R35, R8; API.md `/open_api/v1.3/`; decision 0012):
envelope and request ids, tokens and rights, balances, account info, BC cash and the field names
and codes TikTok clients read. Transfers and transactions: test_open_api_transfers.py and
test_open_api_transactions.py; the official SDK: test_open_api_sdk.py."""

import json
import logging
from decimal import Decimal

import pytest
from django.utils import timezone

from billing.selectors import advertiser_balances
from portal.models import Advertiser, ApiToken
from promotions.freeze import credit_freeze
from tests.api_helpers import api_user
from tests.factories import AdvertiserFactory, BusinessCenterFactory, deposit, grant, token_for
from tests.portal.open_api_world import TikTokClient, World, ok, refused

pytestmark = pytest.mark.django_db

GETS = {
    "/advertiser/info/": lambda w: {"advertiser_ids": [str(w.manual.pk)]},
    "/advertiser/balance/get/": lambda w: {"bc_id": str(w.bc.pk)},
    "/bc/balance/get/": lambda w: {"bc_id": str(w.bc.pk)},
    "/bc/account/transaction/get/": lambda w: {"bc_id": str(w.bc.pk)},
}
BALANCE_FIELDS = ["account_balance", "valid_account_balance", "frozen_balance", "tax", "cash_balance",
                  "valid_cash_balance", "grant_balance", "valid_grant_balance"]


@pytest.fixture
def w(db):
    return World()


@pytest.fixture
def tt():
    return TikTokClient()


# --- envelope, request ids, log ------------------------------------------------------------------

def test_every_answer_is_the_envelope_with_a_request_id_in_body_header_and_log(w, tt, caplog):
    # given a BC admin
    caplog.set_level(logging.INFO, logger="portal.open_api")
    token = w.tokens["bc_admin"]
    # when they call each read twice
    ids = []
    for path, params in GETS.items():
        for _ in range(2):
            envelope = tt.get(path, token, **params(w))
            assert ok(envelope) is not None
            ids.append(envelope["request_id"])
    # then every answer carried its own request id (TikTok-like: time, then hex), logged with its path
    assert len(set(ids)) == len(ids) == 8
    assert all(len(i) == 34 and i[:14].isdigit() for i in ids)
    lines = [r.getMessage() for r in caplog.records if r.name == "portal.open_api"]
    for rid in ids:
        [line] = [ln for ln in lines if f"request_id={rid}" in ln]
        assert "code=0" in line and "/open_api/v1.3/" in line


def test_an_error_answer_carries_its_request_id_too(tt, caplog, db):
    caplog.set_level(logging.INFO, logger="portal.open_api")
    envelope = refused(tt.get("/bc/balance/get/", None, bc_id="1"), 40100, "invalid_token")
    assert any(f"request_id={envelope['request_id']}" in r.getMessage() and "code=40100" in r.getMessage()
               for r in caplog.records)


@pytest.mark.parametrize("path", [*GETS, "/bc/transfer/"])
@pytest.mark.parametrize("case", ["none", "unknown", "empty", "revoked", "inactive_user", "bearer_only"])
def test_missing_or_invalid_token_is_40100_and_reveals_nothing(w, tt, path, case):
    # given a request without a usable Access-Token
    user = api_user(is_staff=True)
    token = {"none": None, "unknown": "act_unknown", "empty": ""}.get(case, token_for(user))
    if case == "revoked":
        ApiToken.objects.filter(user=user).update(revoked_at=timezone.now())
    if case == "inactive_user":
        user.is_active = False
        user.save()
    headers = {"Access-Token": token} if token is not None else {}
    if case == "bearer_only":  # TikTok clients send Access-Token; Authorization alone is no token here
        headers = {"Authorization": f"Bearer {token}"}
    # when it calls the endpoint
    if path == "/bc/transfer/":
        body = {"bc_id": str(w.bc.pk), "advertiser_id": str(w.manual.pk), "transfer_type": "RECHARGE",
                "cash_amount": 10, "request_id": "r-auth"}
        response = tt.client.post("/open_api/v1.3" + path, json.dumps(body), content_type="application/json",
                                  headers=headers)
    else:
        response = tt.client.get("/open_api/v1.3" + path, tt._query(GETS[path](w)), headers=headers)
    envelope = tt._parse(response)
    # then HTTP 200 with code 40100, no data, and nothing moved
    refused(envelope, 40100, "invalid_token")
    assert "Access-Token" in envelope["message"]
    assert w.manual.bc_transfers.count() == 0


def test_money_is_a_json_number_with_the_currency_places(tt, db):
    # given a USD account with 1,000.50 and a KWD account with 7.250, and a JPY one with 5,000
    bc_usd = BusinessCenterFactory()
    usd = AdvertiserFactory(business_center=bc_usd)
    deposit(usd, "1000.50", key="d1")
    kwd = AdvertiserFactory(currency="KWD", business_center=BusinessCenterFactory(currency="KWD"))
    deposit(kwd, "7.250", key="d2")
    jpy = AdvertiserFactory(currency="JPY", business_center=BusinessCenterFactory(currency="JPY"))
    deposit(jpy, "5000", key="d3")
    staff = token_for(api_user(is_staff=True))
    # when staff read their balances
    bodies = {}
    for adv in (usd, kwd, jpy):
        tt.get("/advertiser/balance/get/", staff, bc_id=str(adv.business_center_id))
        bodies[adv.currency] = tt.last.content.decode()
    # then amounts are numbers written with exactly the currency's places, ids are strings
    assert '"cash_balance": 1000.50' in bodies["USD"] and '"tax": 0.00' in bodies["USD"]
    assert '"cash_balance": 7.250' in bodies["KWD"] and '"grant_balance": 0.000' in bodies["KWD"]
    assert '"cash_balance": 5000,' in bodies["JPY"] and '"frozen_balance": 0,' in bodies["JPY"]
    assert f'"advertiser_id": "{usd.pk}"' in bodies["USD"]


# --- advertiser/info/ ----------------------------------------------------------------------------

def test_advertiser_info_for_a_member(w, tt):
    # when the advertiser's admin asks for its info (the JSON array TikTok clients send)
    data = ok(tt.get("/advertiser/info/", w.tokens["admin"], advertiser_ids=[str(w.manual.pk)]))
    # then it is the account, balance being the usable cash and credit
    b = advertiser_balances(advertiser=w.manual)
    assert data == {"list": [{
        "advertiser_id": str(w.manual.pk), "name": "Manual Shop", "currency": "USD",
        "timezone": "America/New_York", "status": "STATUS_ENABLE",
        "balance": b.cash_balance + b.credit_balance,
    }]}
    assert data["list"][0]["balance"] == Decimal("1150.00")


def test_advertiser_info_balance_is_hidden_from_an_operator(w, tt):
    # R1: an operator sees no payment data
    [row] = ok(tt.get("/advertiser/info/", w.tokens["operator"], advertiser_ids=[str(w.manual.pk)]))["list"]
    assert row["balance"] is None and row["name"] == "Manual Shop"
    [row] = ok(tt.get("/advertiser/info/", w.tokens["analyst"], advertiser_ids=[str(w.manual.pk)]))["list"]
    assert row["balance"] == Decimal("1150.00")


def test_advertiser_info_for_a_bc_admin_and_staff_covers_several_accounts(w, tt):
    ids = [str(w.manual.pk), str(w.automatic.pk), str(w.invoiced.pk), str(w.manual.pk)]
    for who in ("bc_admin", "staff"):
        rows = ok(tt.get("/advertiser/info/", w.tokens[who], advertiser_ids=ids))["list"]
        assert [r["advertiser_id"] for r in rows] == ids[:3]  # in the order asked, once each
    rows = ok(tt.get("/advertiser/info/", w.tokens["staff"], advertiser_ids=[w.other_adv.pk]))["list"]
    assert rows[0]["name"] == "Other Co"  # integer ids are accepted too


def test_advertiser_info_fields_narrow_the_answer(w, tt):
    rows = ok(tt.get("/advertiser/info/", w.tokens["admin"], advertiser_ids=[str(w.manual.pk)],
                     fields=["advertiser_id", "status"]))["list"]
    assert rows == [{"advertiser_id": str(w.manual.pk), "status": "STATUS_ENABLE"}]
    refused(tt.get("/advertiser/info/", w.tokens["admin"], advertiser_ids=[str(w.manual.pk)], fields=["secret"]),
            40001)


def test_advertiser_info_of_someone_elses_or_unknown_account_is_40002_alike(w, tt):
    # given the admin of another advertiser
    other = refused(tt.get("/advertiser/info/", w.tokens["other"], advertiser_ids=[str(w.manual.pk)]), 40002,
                    "no_access")
    unknown = refused(tt.get("/advertiser/info/", w.tokens["other"], advertiser_ids=["99999999"]), 40002, "no_access")
    # then both answers read the same (nothing revealed), and a list with one foreign id is refused whole
    assert other["message"].replace(str(w.manual.pk), "X") == unknown["message"].replace("99999999", "X")
    refused(tt.get("/advertiser/info/", w.tokens["admin"], advertiser_ids=[str(w.manual.pk), str(w.other_adv.pk)]),
            40002)
    refused(tt.get("/advertiser/info/", w.tokens["stranger"], advertiser_ids=[str(w.manual.pk)]), 40002)


@pytest.mark.parametrize("params", [
    {},
    {"advertiser_ids": "1,2"},
    {"advertiser_ids": '{"id": 1}'},
    {"advertiser_ids": "[]"},
    {"advertiser_ids": '["abc"]'},
    {"advertiser_ids": json.dumps([str(i) for i in range(1, 102)])},
])
def test_advertiser_info_bad_advertiser_ids_is_40001(w, tt, params):
    response = tt.client.get("/open_api/v1.3/advertiser/info/", params, headers={"Access-Token": w.tokens["staff"]})
    envelope = refused(tt._parse(response), 40001)
    assert "advertiser_ids" in envelope["message"]


# --- advertiser/balance/get/ ---------------------------------------------------------------------

def _row(data, adv):
    [row] = [r for r in data["advertiser_account_list"] if r["advertiser_id"] == str(adv.pk)]
    return row


def test_balances_say_cash_grant_valid_and_frozen(w, tt):
    # given the manual account (1,000 cash; free 100 + coupon 50; a discount cap of 30) and, in the
    # same BC, an automatic account whose 80.00 of credit is frozen
    grant(w.automatic, "free", "80.00", key="auto-free")
    credit_freeze(advertiser=w.automatic, reason="risk review")
    # when the BC admin reads the balances
    data = ok(tt.get("/advertiser/balance/get/", w.tokens["bc_admin"], bc_id=str(w.bc.pk)))
    # then the manual account: cash + grant, all usable; the discount cap is not a balance
    row = _row(data, w.manual)
    assert row == {
        "advertiser_id": str(w.manual.pk), "advertiser_name": "Manual Shop", "advertiser_status": "STATUS_ENABLE",
        "currency": "USD", "timezone": "America/New_York",
        "account_balance": Decimal("1150.00"), "valid_account_balance": Decimal("1150.00"),
        "frozen_balance": Decimal("0.00"), "tax": Decimal("0.00"),
        "cash_balance": Decimal("1000.00"), "valid_cash_balance": Decimal("1000.00"),
        "grant_balance": Decimal("150.00"), "valid_grant_balance": Decimal("150.00"),
    }
    # and the frozen one: its credit is still its balance, but frozen and not usable
    row = _row(data, w.automatic)
    assert (row["grant_balance"], row["valid_grant_balance"], row["frozen_balance"]) == (
        Decimal("80.00"), Decimal("0.00"), Decimal("80.00"))
    assert (row["account_balance"], row["valid_account_balance"]) == (Decimal("80.00"), Decimal("0.00"))
    # and every account's numbers are the selector's (what the Payments pages show)
    for adv in (w.manual, w.automatic, w.invoiced):
        b = advertiser_balances(advertiser=Advertiser.objects.get(pk=adv.pk))
        row = _row(data, adv)
        assert row["cash_balance"] == b.cash_balance
        assert row["valid_grant_balance"] == b.credit_balance
        assert row["frozen_balance"] == b.frozen_credit_balance
        assert row["account_balance"] == row["cash_balance"] + row["grant_balance"]
        assert row["valid_account_balance"] == row["account_balance"] - row["frozen_balance"]


def test_balances_of_a_suspended_account_are_not_usable_credit(w, tt):
    Advertiser.objects.filter(pk=w.manual.pk).update(status="suspended")
    row = _row(ok(tt.get("/advertiser/balance/get/", w.tokens["bc_finance"], bc_id=str(w.bc.pk))), w.manual)
    assert row["advertiser_status"] == "STATUS_LIMIT"
    assert (row["grant_balance"], row["valid_grant_balance"], row["frozen_balance"]) == (
        Decimal("150.00"), Decimal("0.00"), Decimal("150.00"))


def test_balances_page_and_filter(w, tt):
    # given two more accounts in the BC, one of them closed
    extra = [AdvertiserFactory(name=f"Extra {i}", business_center=w.bc) for i in range(2)]
    Advertiser.objects.filter(pk=extra[1].pk).update(status="closed")
    token = w.tokens["bc_admin"]
    # when read two at a time
    pages = [ok(tt.get("/advertiser/balance/get/", token, bc_id=str(w.bc.pk), page=p, page_size=2))
             for p in (1, 2, 3, 4)]
    # then the pages hold the five accounts by id, once each, and say so
    ids = [r["advertiser_id"] for d in pages for r in d["advertiser_account_list"]]
    expected = [str(a.pk) for a in (w.manual, w.automatic, w.invoiced, *extra)]
    assert ids == expected
    assert pages[0]["page_info"] == {"page": 1, "page_size": 2, "total_number": 5, "total_page": 3}
    assert pages[3]["advertiser_account_list"] == []
    # and the filters narrow by TikTok status and by name or id
    closed = ok(tt.get("/advertiser/balance/get/", token, bc_id=str(w.bc.pk),
                       filtering={"advertiser_status": ["STATUS_DISABLE"]}))
    assert [r["advertiser_id"] for r in closed["advertiser_account_list"]] == [str(extra[1].pk)]
    named = ok(tt.get("/advertiser/balance/get/", token, bc_id=str(w.bc.pk), filtering={"keyword": "extra"}))
    assert named["page_info"]["total_number"] == 2
    by_id = ok(tt.get("/advertiser/balance/get/", token, bc_id=str(w.bc.pk), filtering={"keyword": str(w.manual.pk)}))
    assert [r["advertiser_id"] for r in by_id["advertiser_account_list"]] == [str(w.manual.pk)]


@pytest.mark.parametrize("params, word", [
    ({"page_size": "0"}, "page_size"),
    ({"page_size": "101"}, "page_size"),
    ({"page": "x"}, "page"),
    ({"filtering": "not json"}, "filtering"),
    ({"filtering": "[1]"}, "filtering"),
    ({"filtering": '{"advertiser_status": ["ACTIVE"]}'}, "advertiser_status"),
    ({"filtering": '{"unknown": 1}'}, "unknown"),
    ({"bc_id": ""}, "bc_id"),
    ({"bc_id": "12a"}, "bc_id"),
])
def test_balances_bad_parameters_are_40001(w, tt, params, word):
    query = {"bc_id": str(w.bc.pk), **params}
    response = tt.client.get("/open_api/v1.3/advertiser/balance/get/", query,
                             headers={"Access-Token": w.tokens["bc_admin"]})
    assert word in refused(tt._parse(response), 40001)["message"]


def test_balances_who_sees_which_accounts(w, tt):
    every = {str(a.pk) for a in (w.manual, w.automatic, w.invoiced)}

    def seen(who):
        envelope = tt.get("/advertiser/balance/get/", w.tokens[who], bc_id=str(w.bc.pk))
        if envelope["code"]:
            return envelope["code"]
        return {r["advertiser_id"] for r in envelope["data"]["advertiser_account_list"]}

    # staff and the BC's admins and finance: every account of the BC
    assert seen("staff") == seen("bc_admin") == seen("bc_finance") == every
    # an advertiser's admin, finance and analyst: their own account only
    assert seen("admin") == seen("finance") == seen("analyst") == {str(w.manual.pk)}
    # an operator (no payment data, R1), another BC's advertiser, a stranger: 40002
    assert seen("operator") == seen("other") == seen("stranger") == 40002
    # an unknown BC reads like someone else's
    unknown = tt.get("/advertiser/balance/get/", w.tokens["bc_admin"], bc_id="99999999")
    refused(unknown, 40002, "no_access")


# --- bc/balance/get/ -----------------------------------------------------------------------------

def test_bc_balance_is_the_bc_cash(w, tt):
    data = ok(tt.get("/bc/balance/get/", w.tokens["bc_finance"], bc_id=str(w.bc.pk)))
    assert data == {
        "bc_id": str(w.bc.pk), "currency": "USD",
        "account_balance": Decimal("5000.00"), "valid_account_balance": Decimal("5000.00"),
        "frozen_balance": Decimal("0.00"), "tax": Decimal("0.00"),
        "cash_balance": Decimal("5000.00"), "valid_cash_balance": Decimal("5000.00"),
        "grant_balance": Decimal("0.00"), "valid_grant_balance": Decimal("0.00"),
    }
    assert ok(tt.get("/bc/balance/get/", w.tokens["staff"], bc_id=str(w.bc.pk)))["cash_balance"] == Decimal("5000.00")


@pytest.mark.parametrize("who", ["admin", "finance", "analyst", "operator", "other", "stranger"])
def test_bc_balance_is_40002_for_anyone_but_the_bc_and_staff(w, tt, who):
    envelope = refused(tt.get("/bc/balance/get/", w.tokens[who], bc_id=str(w.bc.pk)), 40002, "no_access")
    # the BC's 5,000.00 appears nowhere (the request id, random hex, may hold the digits "5000")
    assert "5000" not in json.dumps({k: v for k, v in envelope.items() if k != "request_id"}, default=str)


def test_bc_balance_needs_a_bc_id(w, tt):
    assert "bc_id" in refused(tt.get("/bc/balance/get/", w.tokens["bc_admin"]), 40001, "missing_parameter")["message"]


# --- plumbing ------------------------------------------------------------------------------------

def test_wrong_method_is_40001_and_changes_nothing(w, tt):
    envelope = tt.post("/bc/balance/get/", w.tokens["bc_admin"], {"bc_id": str(w.bc.pk)})
    assert "GET" in refused(envelope, 40001, "method_not_allowed")["message"]
    response = tt.client.get("/open_api/v1.3/bc/transfer/", headers={"Access-Token": w.tokens["bc_admin"]})
    assert "POST" in refused(tt._parse(response), 40001, "method_not_allowed")["message"]


@pytest.mark.parametrize("path", ["/bc/balance/get", "/nope/", "/advertiser/get/"])
def test_unknown_path_is_40001_not_a_redirect(w, tt, path):
    envelope = refused(tt.get(path, w.tokens["bc_admin"], bc_id=str(w.bc.pk)), 40001, "unknown_endpoint")
    assert "slash" in envelope["message"]


def test_an_unexpected_failure_is_50000_with_the_request_id(w, tt, monkeypatch, caplog):
    # given a read that fails unexpectedly
    def boom(**_):
        raise RuntimeError("database on fire")

    monkeypatch.setattr("portal.open_api_reads.advertiser_balances", boom)
    caplog.set_level(logging.INFO, logger="portal.open_api")
    # when it is called
    envelope = refused(tt.get("/advertiser/balance/get/", w.tokens["bc_admin"], bc_id=str(w.bc.pk)), 50000,
                       "server_error")
    # then the caller gets the request id to quote, not the error; the log has both
    assert envelope["request_id"] in envelope["message"] and "fire" not in envelope["message"]
    failed = [r for r in caplog.records if r.levelno == logging.ERROR and envelope["request_id"] in r.getMessage()]
    assert failed and failed[0].exc_info is not None
