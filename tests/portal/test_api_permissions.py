"""Who may call what (API.md "who" column, SPEC R1): for every endpoint of the portal API, each
right role passes, each wrong role gets 403, a user of another advertiser gets 404 (never learns the
object exists) and a request without a token gets 401. Responses always carry the error shape."""

import itertools
from dataclasses import dataclass, field

import pytest

from billing.models import Deposit, LedgerTransaction
from portal.models import Advertiser, BusinessCenter, Campaign, Membership
from promotions.models import Credit
from tests.api_helpers import api, error_of, world  # noqa: F401

pytestmark = pytest.mark.django_db
_n = itertools.count(1)


@dataclass
class Endpoint:
    name: str
    method: str
    path: object  # callable(world) -> str
    body: object = None  # callable(world) -> dict
    allowed: tuple = ()
    forbidden: tuple = ()
    other_status: int = 404  # what a user of another advertiser gets
    ok_status: int = 200
    check: object = None  # callable(world, json) -> None; asserts what the caller sees
    extra: dict = field(default_factory=dict)


def _adv(w):
    return f"/advertisers/{w.adv.pk}"


def _spend(w):
    return {"events": [{"event_id": f"perm-{next(_n)}", "advertiser_id": str(w.adv.pk),
                        "campaign_id": str(w.campaign.pk), "amount": "5.00", "currency": "USD",
                        "occurred_at": "2024-01-02T00:00:00+00:00"}]}


def _check_bc_created(w, j):
    assert BusinessCenter.objects.get(pk=int(j["id"])).name == "New BC"


def _check_advertiser(w, j):
    assert j["id"] == str(w.adv.pk) and j["currency"] == "USD"


def _check_campaign_created(w, j):
    assert Campaign.objects.get(pk=int(j["id"])).advertiser_id == w.adv.pk


def _check_member_added(w, j):
    assert Membership.objects.filter(advertiser=w.adv, user__username=j["username"], role="analyst").exists()


def _check_deposit(w, j):
    assert j["cash_balance"] == "510.00"  # 500 loaded, 10 spent, 20 more


ENDPOINTS = [
    Endpoint("create BC", "post", lambda w: "/business-centers", lambda w: {"name": "New BC"},
             allowed=("staff",), forbidden=("admin", "bc_admin"), ok_status=201, check=_check_bc_created),
    Endpoint("add BC member", "post", lambda w: f"/business-centers/{w.bc.pk}/members",
             lambda w: {"username": f"bcm{next(_n)}", "role": "finance"},
             allowed=("staff",), forbidden=("bc_admin", "bc_finance", "admin"), ok_status=201,
             check=lambda w, j: j["role"] == "finance" or pytest.fail(j)),
    Endpoint("BC deposit", "post", lambda w: f"/business-centers/{w.bc.pk}/deposits",
             lambda w: {"amount": "100.00", "idempotency_key": f"bcd{next(_n)}"},
             allowed=("staff", "bc_admin", "bc_finance"), forbidden=("admin", "finance", "analyst"), ok_status=201,
             check=lambda w, j: j["cash_balance"] == "100.00" or pytest.fail(j)),
    Endpoint("create advertiser", "post", lambda w: "/advertisers",
             lambda w: {"name": "Acme", "currency": "EUR", "timezone": "Europe/Paris", "billing_method": "manual"},
             allowed=("staff",), forbidden=("admin", "bc_admin"), ok_status=201,
             check=lambda w, j: Advertiser.objects.get(pk=int(j["id"])).currency == "EUR" or pytest.fail(j)),
    Endpoint("get advertiser", "get", _adv,
             allowed=("staff", "admin", "finance", "operator", "analyst", "bc_admin", "bc_finance"),
             check=_check_advertiser),
    Endpoint("add member", "post", lambda w: _adv(w) + "/members",
             lambda w: {"username": f"m{next(_n)}", "role": "analyst"},
             allowed=("staff", "admin", "bc_admin"), forbidden=("finance", "operator", "analyst", "bc_finance"),
             ok_status=201, check=_check_member_added),
    Endpoint("create campaign", "post", lambda w: _adv(w) + "/campaigns",
             lambda w: {"name": "Spring", "objective": "REACH", "product_source": "NONE"},
             allowed=("staff", "admin", "operator", "bc_admin"), forbidden=("finance", "analyst", "bc_finance"),
             ok_status=201, check=_check_campaign_created),
    Endpoint("list campaigns", "get", lambda w: _adv(w) + "/campaigns",
             allowed=("staff", "admin", "finance", "operator", "analyst", "bc_finance"),
             check=lambda w, j: [c["id"] for c in j] == [str(w.campaign.pk)] or pytest.fail(j)),
    Endpoint("deposit", "post", lambda w: _adv(w) + "/deposits",
             lambda w: {"amount": "20.00", "idempotency_key": f"d{next(_n)}"},
             allowed=("staff", "admin", "finance", "bc_admin", "bc_finance"), forbidden=("operator", "analyst"),
             ok_status=201, check=_check_deposit),
    Endpoint("refund", "post", lambda w: _adv(w) + "/refund", lambda w: {},
             allowed=("staff", "admin", "bc_admin"), forbidden=("finance", "operator", "analyst", "bc_finance"),
             check=lambda w, j: j == {"refunded": "490.00", "status": "closed"} or pytest.fail(j)),
    Endpoint("balances", "get", lambda w: _adv(w) + "/balances",
             allowed=("staff", "admin", "finance", "analyst", "bc_finance"), forbidden=("operator",),
             check=lambda w, j: j["cash_balance"] == "490.00" or pytest.fail(j)),
    Endpoint("spend", "post", lambda w: "/spend", _spend,
             allowed=("staff",), forbidden=("admin", "finance", "bc_admin"), ok_status=201,
             check=lambda w, j: j["results"][0]["allocation"]["cash"] == "5.00" or pytest.fail(j)),
    Endpoint("charge", "get", lambda w: _adv(w) + f"/charges/{w.event_id}",
             allowed=("staff", "admin", "finance", "analyst", "bc_admin"), forbidden=("operator",),
             check=lambda w, j: j["cash"] == "10.00" or pytest.fail(j)),
    Endpoint("list credits", "get", lambda w: _adv(w) + "/credits",
             allowed=("staff", "admin", "finance", "analyst", "bc_finance"), forbidden=("operator",),
             check=lambda w, j: [c["id"] for c in j] == [str(w.coupon.pk)] or pytest.fail(j)),
    Endpoint("grant credit", "post", lambda w: _adv(w) + "/credits",
             lambda w: {"kind": "free", "amount": "25.00", "reason": "goodwill", "idempotency_key": f"g{next(_n)}"},
             allowed=("staff",), forbidden=("admin", "finance", "bc_admin"), ok_status=201,
             check=lambda w, j: Credit.objects.get(pk=int(j["id"])).advertiser_id == w.adv.pk or pytest.fail(j)),
    Endpoint("assign coupon", "post", lambda w: f"/credits/{w.coupon.pk}/assign",
             lambda w: {"campaign_ids": [str(w.campaign.pk)]},
             allowed=("staff", "admin", "bc_admin"), forbidden=("finance", "operator", "analyst", "bc_finance"),
             check=lambda w, j: j["campaign_ids"] == [str(w.campaign.pk)] or pytest.fail(j)),
    Endpoint("transfer credit", "post", lambda w: f"/credits/{w.coupon.pk}/transfer", lambda w: {},
             other_status=422),
    Endpoint("withdraw credit", "post", lambda w: f"/credits/{w.coupon.pk}/withdraw",
             lambda w: {"reason": "policy violation"},
             allowed=("staff",), forbidden=("admin", "finance", "bc_admin"),
             check=lambda w, j: j["status"] == "withdrawn" or pytest.fail(j)),
]
BY_NAME = {e.name: e for e in ENDPOINTS}


def call(api, w, ep: Endpoint, token):
    path = ep.path(w)
    if ep.method == "get":
        return api.get(path, token=token)
    return api.post(path, ep.body(w) if ep.body else {}, token=token)


@pytest.mark.parametrize("name", BY_NAME)
def test_no_token_is_401(api, world, name):
    # given no token (or an unknown one) when calling the endpoint
    for token in (None, "act_not-a-real-token"):
        response = call(api, world, BY_NAME[name], token)
        # then 401 with the error shape
        assert response.status_code == 401, response.content
        assert error_of(response)["code"] == "unauthorized"


@pytest.mark.parametrize(
    "name,role", [(e.name, r) for e in ENDPOINTS for r in e.allowed]
)
def test_right_role_passes(api, world, name, role):
    ep = BY_NAME[name]
    # when a caller with an allowed role calls it
    response = call(api, world, ep, world.tokens[role])
    # then it succeeds and shows the expected data
    assert response.status_code == ep.ok_status, response.content
    ep.check(world, response.json())


@pytest.mark.parametrize(
    "name,role", [(e.name, r) for e in ENDPOINTS for r in e.forbidden]
)
def test_wrong_role_is_403_and_changes_nothing(api, world, name, role):
    before = (LedgerTransaction.objects.count(), Deposit.objects.count(), Credit.objects.count(),
              Campaign.objects.count(), Membership.objects.count(), Advertiser.objects.count(),
              BusinessCenter.objects.count())
    # when a caller whose role does not allow it calls it
    response = call(api, world, BY_NAME[name], world.tokens[role])
    # then 403 forbidden, and nothing was written
    assert response.status_code == 403, response.content
    assert error_of(response)["code"] == "forbidden"
    assert before == (LedgerTransaction.objects.count(), Deposit.objects.count(), Credit.objects.count(),
                      Campaign.objects.count(), Membership.objects.count(), Advertiser.objects.count(),
                      BusinessCenter.objects.count())


WITH_OBJECT = [e.name for e in ENDPOINTS if e.name not in ("create BC", "create advertiser", "spend")]


@pytest.mark.parametrize("name", WITH_OBJECT)
@pytest.mark.parametrize("who", ["other", "stranger"])
def test_other_advertisers_user_gets_404(api, world, name, who):
    ep = BY_NAME[name]
    # when the admin of another advertiser (or a user of nothing) calls it on our objects
    response = call(api, world, ep, world.tokens[who])
    # then 404: it is not theirs, and they cannot tell whether it exists
    assert response.status_code == ep.other_status, response.content
    if ep.other_status == 404:
        assert error_of(response)["code"] == "not_found"
        assert str(world.adv.name) not in response.content.decode()


@pytest.mark.parametrize("name", ["create BC", "create advertiser", "spend"])
def test_staff_only_endpoints_without_object_refuse_a_stranger(api, world, name):
    # a user who belongs to nothing is simply not staff
    response = call(api, world, BY_NAME[name], world.tokens["stranger"])
    assert response.status_code == 403
    assert error_of(response)["code"] == "forbidden"


@pytest.mark.parametrize("path", [
    "/advertisers/999999", "/advertisers/abc", "/advertisers/999999/balances", "/advertisers/999999/credits",
])
def test_unknown_advertiser_is_404_even_for_staff(api, world, path):
    response = api.get(path, token=world.tokens["staff"])
    assert response.status_code == 404
    assert error_of(response) == {"code": "not_found", "message": "No such advertiser."}


def test_unknown_credit_and_charge_are_404(api, world):
    staff = world.tokens["staff"]
    r = api.post("/credits/999999/assign", {"campaign_ids": []}, token=staff)
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"
    r = api.post("/credits/999999/withdraw", {"reason": "x"}, token=staff)
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"
    r = api.get(f"/advertisers/{world.adv.pk}/charges/no-such-event", token=staff)
    assert r.status_code == 404 and error_of(r)["message"] == "No such charge."


def test_a_charge_of_another_advertiser_is_404(api, world):
    # given the other advertiser's admin, who may read charges of their own account
    # when they ask for our charge under their own advertiser id
    r = api.get(f"/advertisers/{world.other_adv.pk}/charges/{world.event_id}", token=world.tokens["other"])
    # then it does not exist for them
    assert r.status_code == 404 and error_of(r)["message"] == "No such charge."


def test_another_advertisers_credit_is_404_for_its_admin(api, world):
    r = api.post(f"/credits/{world.coupon.pk}/assign", {"campaign_ids": []}, token=world.tokens["other"])
    assert r.status_code == 404
    assert error_of(r) == {"code": "not_found", "message": "No such credit."}
    assert list(world.coupon.campaigns.all()) == []
