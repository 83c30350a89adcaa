"""Bad input never reaches the database (issue 9, decision 0018): each case a hostile client found,
through the door where it was found, answered with the door's own error shape and a code naming
the problem, and nothing recorded."""

import json
from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.db import connection
from django.utils import timezone

from billing.models import (
    BCTransfer, Deposit, LedgerAccount, LedgerEntry, LedgerTransaction, ReconciliationRun, SpendEvent,
)
from billing.reconcile import reconcile_ledger
from portal.models import Advertiser, BusinessCenter
from promotions.models import Appeal, Credit, Enrollment, Program
from tests.api_helpers import World, api, error_of  # noqa: F401 (fixtures)
from tests.portal.open_api_world import TikTokClient, refused
from tests.portal.open_api_world import World as TikTokWorld

pytestmark = pytest.mark.django_db


def recorded() -> tuple:
    """Everything a refused request must leave as it was."""
    return (
        SpendEvent.objects.count(), LedgerTransaction.objects.count(), LedgerEntry.objects.count(),
        Credit.objects.count(), Program.objects.count(), Enrollment.objects.count(), Deposit.objects.count(),
        Appeal.objects.count(), Advertiser.objects.count(), BCTransfer.objects.count(),
        sorted(LedgerAccount.objects.values_list("pk", "balance")),
    )


@pytest.fixture
def w(db):
    return World()


def staff(w):
    return w.tokens["staff"]


def event(w, **over):
    return {"event_id": "hostile-1", "advertiser_id": str(w.adv.pk), "campaign_id": str(w.campaign.pk),
            "amount": "10.00", "currency": "USD",
            "occurred_at": (timezone.now() - timedelta(minutes=5)).isoformat(), **over}


def refused_400(response, code: str, before) -> dict:
    assert response.status_code == 400, response.content
    error = error_of(response)
    assert error["code"] == code, error
    assert recorded() == before
    return error


# --- 1. timestamps ------------------------------------------------------------------------------


@pytest.mark.parametrize("when", [
    "0001-01-01T00:00:00+14:00",  # year 0 in UTC: the case that poisoned an account
    "0001-01-01T00:00:00+00:00",
    "1999-12-31T23:59:59+00:00",
    "2100-01-01T00:00:00+00:00",
    "9999-12-31T23:59:59-14:00",
])
def test_spend_outside_the_accepted_time_range_is_refused(w, api, when):
    before = recorded()
    error = refused_400(api.post("/spend", {"events": [event(w, occurred_at=when)]}, token=staff(w)),
                        "invalid_timestamp", before)
    assert error["index"] == 0 and "accepted range" in error["message"]


def test_spend_at_the_range_floor_is_booked(w, api):
    response = api.post("/spend", {"events": [event(w, occurred_at="2000-01-01T00:00:00+00:00")]}, token=staff(w))
    assert response.status_code == 201, response.content
    assert response.json()["results"][0]["status"] == "applied"


@pytest.mark.parametrize("field", ["valid_from", "expires_at"])
def test_credit_validity_outside_the_range_is_refused(w, api, field):
    before = recorded()
    body = {"kind": "free", "amount": "10.00", "reason": "r", "idempotency_key": "k1",
            field: "0001-01-01T00:00:00+14:00"}
    refused_400(api.post(f"/advertisers/{w.adv.pk}/credits", body, token=staff(w)), "invalid_timestamp", before)


def test_advertiser_registered_before_the_range_is_refused(w, api):
    before = recorded()
    body = {"name": "Old", "currency": "USD", "registered_at": "0001-01-01T00:00:00+14:00"}
    refused_400(api.post("/advertisers", body, token=staff(w)), "invalid_timestamp", before)


def test_a_row_written_before_the_bound_no_longer_breaks_reads_and_is_reported(w, api, client):
    """Rows already written with a year-0 timestamp: the charge, the replay, the Transactions page
    and its CSV answer, and reconcile_ledger lists the row."""
    with connection.cursor() as cur:
        cur.execute("SET LOCAL session_replication_role = replica")  # past the ledger's immutability guard
        cur.execute("UPDATE billing_spendevent SET occurred_at = '0001-01-01T00:00:00+14:00' WHERE event_id = %s",
                    [w.event_id])
        cur.execute("UPDATE billing_ledgertransaction SET occurred_at = '0001-01-01T00:00:00+14:00' "
                    "WHERE id = (SELECT transaction_id FROM billing_spendevent WHERE event_id = %s)", [w.event_id])
        cur.execute("SET LOCAL session_replication_role = origin")
    charge = api.get(f"/advertisers/{w.adv.pk}/charges/{w.event_id}", token=staff(w))
    assert charge.status_code == 200, charge.content
    ev = SpendEvent.objects.get(event_id=w.event_id)
    assert ev.occurred_at.year == 1
    from django.contrib.auth import get_user_model
    from portal.models import Membership
    user = get_user_model().objects.get(pk=Membership.objects.filter(advertiser=w.adv, role="admin").first().user_id)
    client.force_login(user)
    assert client.get(f"/a/{w.adv.pk}/payments/transactions/").status_code == 200
    assert client.get(f"/a/{w.adv.pk}/payments/transactions.csv").status_code == 200
    reconcile_ledger()
    run = ReconciliationRun.objects.latest("pk")
    out_of_range = [d for d in run.differences if d.get("kind") == "timestamp_out_of_range"]
    assert {(d["table"], d["row"]) for d in out_of_range} >= {("billing_spendevent", ev.pk)}
    assert not run.ok


# --- 2. lengths and numbers -----------------------------------------------------------------------


def program(**over):
    return {"name": "P", "kind": "new_advertiser", "window_days": 7,
            "tiers": [{"threshold": "100.00", "reward": "10.00"}], "reward_kind": "free", **over}


@pytest.mark.parametrize("over, code", [
    ({"name": "n" * 201}, "invalid_name"),
    ({"window_days": 2**40}, "invalid_window_days"),
    ({"window_days": 3_000_000}, "invalid_window_days"),
    ({"window_days": 0}, "invalid_window_days"),
    ({"reward_validity_days": 2**40}, "invalid_reward_validity_days"),
    ({"max_redemptions": 2**40}, "invalid_max_redemptions"),
    ({"code": "C" * 65}, "invalid_code"),
    ({"ends_at": "0001-01-01T00:00:00+14:00"}, "invalid_timestamp"),
])
def test_program_bounds(w, api, over, code):
    before = recorded()
    refused_400(api.post("/programs", program(**over), token=staff(w)), code, before)


def test_a_program_at_the_bounds_enrolls(w, api):
    response = api.post("/programs", program(window_days=3650, reward_validity_days=3650), token=staff(w))
    assert response.status_code == 201, response.content
    enrolled = api.post(f"/advertisers/{w.adv.pk}/enrollments", {"program_id": response.json()["id"]},
                        token=staff(w))
    assert enrolled.status_code in (201, 422), enrolled.content  # eligibility is R19's, not the bound's
    assert enrolled.status_code != 500


def test_a_program_written_before_the_bound_refuses_enrollment_by_name(w, api):
    p = Program.objects.create(name="Huge", kind="new_advertiser", window_days=3_000_000, reward_kind="free")
    before = recorded()
    response = api.post(f"/advertisers/{w.adv.pk}/enrollments", {"program_id": str(p.pk)}, token=staff(w))
    assert response.status_code == 422 and error_of(response)["code"] == "program_misconfigured"
    assert recorded() == before
    reconcile_ledger()
    differences = ReconciliationRun.objects.latest("pk").differences
    assert any(d.get("kind") == "program_out_of_range" and d["row"] == p.pk for d in differences)


def test_credit_key_over_100_characters(w, api):
    before = recorded()
    body = {"kind": "free", "amount": "10.00", "reason": "r", "idempotency_key": "k" * 101}
    refused_400(api.post(f"/advertisers/{w.adv.pk}/credits", body, token=staff(w)), "invalid_idempotency_key", before)


def test_shop_id_over_64_characters(w, api):
    before = recorded()
    refused_400(api.post("/advertisers", {"name": "S", "currency": "USD", "shop_id": "s" * 65}, token=staff(w)),
                "invalid_shop_id", before)


# --- 3. a grant needs its key (R22) ---------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "", "   ", {"a": 1}, 12, True, ["k"]])
def test_credit_grant_without_a_string_key_is_refused(w, api, key):
    before = recorded()
    body = {"kind": "free", "amount": "10.00", "reason": "r", "idempotency_key": key}
    for _ in range(2):
        refused_400(api.post(f"/advertisers/{w.adv.pk}/credits", body, token=staff(w)),
                    "invalid_idempotency_key", before)


def test_credit_grant_without_the_key_field_is_refused(w, api):
    before = recorded()
    response = api.post(f"/advertisers/{w.adv.pk}/credits", {"kind": "free", "amount": "10.00", "reason": "r"},
                        token=staff(w))
    assert response.status_code == 400 and error_of(response)["code"] in ("missing_field", "invalid_idempotency_key")
    assert recorded() == before


# --- 4. NUL bytes ------------------------------------------------------------------------------------


def test_nul_in_a_charge_path_is_400(w, api):
    before = recorded()
    refused_400(api.get(f"/advertisers/{w.adv.pk}/charges/%00", token=staff(w)), "invalid_event_id", before)


def test_nul_in_a_multipart_appeal_message(w, api):
    from promotions.freeze import credit_freeze
    credit_freeze(advertiser=w.adv, reason="risk", by=None)
    before = recorded()
    response = api.client.post(f"/api/v1/advertisers/{w.adv.pk}/appeals", data={"message": "hello\x00world"},
                               headers={"Access-Token": w.tokens["admin"]})
    refused_400(response, "invalid_text", before)


# --- 5. the TikTok surface answers 40001 ---------------------------------------------------------------


@pytest.fixture
def tw(db):
    return TikTokWorld()


@pytest.fixture
def tt():
    return TikTokClient()


def transfer(tw, **over):
    return {"bc_id": str(tw.bc.pk), "advertiser_id": str(tw.manual.pk), "transfer_type": "RECHARGE",
            "cash_amount": 10, "request_id": "r-1", **over}


@pytest.mark.parametrize("request_id", ["a\u0000b", "\ud800", "a\x07b"])
def test_bc_transfer_request_id_that_cannot_be_stored(tw, tt, request_id):
    before = recorded()
    raw = json.dumps(transfer(tw, request_id=request_id))  # ensure_ascii: the escapes stay JSON escapes
    refused(tt.post("/bc/transfer/", tw.tokens["bc_admin"], raw=raw), 40001)
    assert recorded() == before


@pytest.mark.parametrize("raw, reason", [
    ("[" * 100_000, "body_too_deep"),
    ('{"a": ' + json.dumps("x" * (5 * 1024 * 1024)) + "}", "body_too_large"),
    ("[" * 40 + "]" * 40, "body_too_deep"),
])
def test_bc_transfer_deep_or_huge_bodies(tw, tt, raw, reason):
    before = recorded()
    refused(tt.post("/bc/transfer/", tw.tokens["bc_admin"], raw=raw), 40001, reason)
    assert recorded() == before


def test_balance_filter_keyword_with_nul(tw, tt):
    refused(tt.get("/advertiser/balance/get/", tw.tokens["bc_admin"], bc_id=tw.bc.pk,
                   filtering={"keyword": "\u0000"}), 40001)


@pytest.mark.parametrize("filtering", [{"end_time": "9999-12-31"}, {"start_time": "0001-01-01"},
                                       {"end_time": "9999-12-31 23:59:59"}])
def test_transaction_filter_times_outside_the_range(tw, tt, filtering):
    refused(tt.get("/bc/account/transaction/get/", tw.tokens["bc_admin"], bc_id=tw.bc.pk, filtering=filtering),
            40001)


@pytest.mark.parametrize("params", [{"page": str(2**70)}, {"page_size": "-1"}, {"page": "1e3"}])
def test_paging_out_of_range(tw, tt, params):
    refused(tt.get("/bc/account/transaction/get/", tw.tokens["bc_admin"], bc_id=tw.bc.pk, **params), 40001)


def test_bc_id_that_overflows_a_bigint(tw, tt):
    refused(tt.get("/bc/balance/get/", tw.tokens["bc_admin"], bc_id="9" * 19), 40001)


# --- 6. a 5 MB body on the portal API ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/spend", "/advertisers/{adv}/deposits", "/programs", "/advertisers/{adv}/credits"])
def test_a_5mb_body_gets_the_error_shape(w, api, path):
    before = recorded()
    raw = json.dumps({"events": [], "pad": "x" * (5 * 1024 * 1024)})
    response = api.post(path.format(adv=w.adv.pk), raw=raw, token=staff(w))
    assert response.status_code == 413, response.content[:200]
    assert error_of(response)["code"] == "body_too_large"
    assert recorded() == before


def test_a_deeply_nested_body_gets_the_error_shape(w, api):
    before = recorded()
    refused_400(api.post("/spend", raw="[" * 100_000, token=staff(w)), "body_too_deep", before)


# --- 7. one written form of an amount ------------------------------------------------------------------


@pytest.mark.parametrize("amount", ["1_000", "2_5.00", " 25.00 ", "+25.00", "2.5e1", "25.", ".5", "-1", "1e3",
                                    "NaN", "Infinity", "0x10", "２５", "25.00\n", ""])
def test_amount_spellings_refused_on_the_portal_api(w, api, amount):
    before = recorded()
    response = api.post(f"/advertisers/{w.adv.pk}/deposits", {"amount": amount, "idempotency_key": "dep-x"},
                        token=staff(w))
    assert response.status_code == 400, response.content
    assert error_of(response)["code"] == "invalid_amount"
    assert recorded() == before


@pytest.mark.parametrize("amount", ["1_000", "2.5e1", "+25"])
def test_amount_spellings_refused_in_spend_and_grants(w, api, amount):
    before = recorded()
    refused_400(api.post("/spend", {"events": [event(w, amount=amount)]}, token=staff(w)), "invalid_amount", before)
    refused_400(api.post(f"/advertisers/{w.adv.pk}/credits",
                         {"kind": "free", "amount": amount, "reason": "r", "idempotency_key": "g-1"}, token=staff(w)),
                "invalid_amount", before)


@pytest.mark.parametrize("amount", ["1_000", "1e3", "+25.00", "25."])
def test_amount_spellings_refused_on_the_tiktok_surface(tw, tt, amount):
    before = recorded()
    refused(tt.post("/bc/transfer/", tw.tokens["bc_admin"], transfer(tw, cash_amount=amount)), 40001, "invalid_amount")
    assert recorded() == before


@pytest.mark.parametrize("amount", ["1e3", "1_000", "+25", "25."])
def test_add_funds_refuses_other_spellings(w, client, amount):
    from django.contrib.auth import get_user_model
    from portal.models import Membership
    user = get_user_model().objects.get(pk=Membership.objects.get(advertiser=w.adv, role="admin").user_id)
    client.force_login(user)
    before = recorded()
    response = client.post(f"/a/{w.adv.pk}/payments/add-funds/", {"amount": amount, "card_number": "4242 4242 4242 4242",
                                                         "expiry": "12/39", "idempotency_key": "web-1"})
    assert response.status_code == 422  # a refused form (decision 0008)
    assert "amount" in response.context["form"].errors
    assert recorded() == before


def test_admin_credit_line_refuses_an_exponent(w, admin_client):
    before = recorded()
    adv = w.adv
    page = admin_client.get(f"/admin/portal/advertiser/{adv.pk}/change/")
    form = page.context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and not isinstance(v, (list, dict))}
    data.update({"credit_line_limit": "1e3", "change_reason": "x", "name": adv.name})
    response = admin_client.post(f"/admin/portal/advertiser/{adv.pk}/change/", data)
    assert response.status_code == 200
    assert "credit_line_limit" in response.context["adminform"].form.errors
    adv.refresh_from_db()
    assert adv.credit_line_limit == 0
    assert recorded() == before


# --- 8. key spaces ------------------------------------------------------------------------------------------


def test_a_bc_transfer_and_an_advertiser_deposit_do_not_share_keys(tw, tt, api):
    """The advertiser's deposit under `bc-transfer:<bc>:<id>` and the BC's transfer with request id
    `<id>` are two deposits; neither answers for the other."""
    key = f"bc-transfer:{tw.bc.pk}:r-1"
    response = api.post(f"/advertisers/{tw.manual.pk}/deposits", {"amount": "20.00", "idempotency_key": key},
                        token=tw.tokens["staff"])
    assert response.status_code == 201, response.content
    envelope = tt.post("/bc/transfer/", tw.tokens["bc_admin"], transfer(tw, cash_amount=30))
    assert envelope["code"] == 0, envelope
    deposits = Deposit.objects.filter(advertiser=tw.manual, idempotency_key=key)
    assert sorted((d.source, d.amount) for d in deposits) == [("api", D("20.00")), ("bc_transfer", D("30.00"))]
    # and the advertiser's replay of its own key is still its own deposit
    again = api.post(f"/advertisers/{tw.manual.pk}/deposits", {"amount": "20.00", "idempotency_key": key},
                     token=tw.tokens["staff"])
    assert again.status_code == 201
    assert Deposit.objects.filter(advertiser=tw.manual, idempotency_key=key).count() == 2


def test_business_center_id_that_overflows(w, api):
    before = recorded()
    refused_400(api.post("/advertisers", {"name": "X", "currency": "USD", "business_center_id": "9" * 30},
                         token=staff(w)), "unknown_business_center", before)
    assert BusinessCenter.objects.count() == 1
