"""Ladder programs and enrollments through the portal API (SPEC R16–R20): staff create programs,
admins enroll by program or promo code, every R19 refusal names its rule, and the enrollment list
shows progress as qualifying spend comes in."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from portal.models import Advertiser
from promotions.models import Enrollment, Program, Tier
from promotions.programs import close_ladder_windows, enrollment_create
from tests.api_helpers import api, error_of, role_token, staff, world  # noqa: F401
from tests.api_matrix import Endpoint, database_state, matrix
from tests.factories import AdvertiserFactory, BusinessCenterFactory, CampaignFactory, deposit
from tests.promotions.ladder_helpers import new_program

pytestmark = pytest.mark.django_db


def new_advertiser(**kw):
    fields = dict(signup_source="official_offer", registered_at=timezone.now() - timedelta(days=3))
    fields.update(kw)
    return AdvertiserFactory(**fields)


def _enrollable(w):
    """The world's account came through the official offer; its only spend is from 2024."""
    Advertiser.objects.filter(pk=w.adv.pk).update(signup_source="official_offer")
    w.program = new_program()


def _enrolled(w):
    _enrollable(w)
    w.enrollment = enrollment_create(advertiser=Advertiser.objects.get(pk=w.adv.pk), program=w.program)


PROGRAM_BODY = {"name": "Spend 100 get 50", "kind": "new_advertiser", "window_days": 30,
                "tiers": [{"threshold": "100.00", "reward": "50.00"}], "reward_kind": "free"}

ENDPOINTS = [
    Endpoint("create program", "post", lambda w: "/programs", lambda w: PROGRAM_BODY,
             allowed=("staff",), forbidden=("admin", "finance", "bc_admin"), ok_status=201, other_status=403,
             check=lambda w, j: Program.objects.get(pk=int(j["id"])).name == "Spend 100 get 50" or pytest.fail(j)),
    Endpoint("enroll", "post", lambda w: f"/advertisers/{w.adv.pk}/enrollments",
             lambda w: {"program_id": str(w.program.pk)}, prepare=_enrollable,
             allowed=("staff", "admin", "bc_admin"), forbidden=("finance", "operator", "analyst", "bc_finance"),
             ok_status=201,
             check=lambda w, j: Enrollment.objects.get(pk=int(j["id"])).advertiser_id == w.adv.pk or pytest.fail(j)),
    Endpoint("list enrollments", "get", lambda w: f"/advertisers/{w.adv.pk}/enrollments", prepare=_enrolled,
             allowed=("staff", "admin", "finance", "analyst", "bc_admin", "bc_finance"), forbidden=("operator",),
             check=lambda w, j: [e["id"] for e in j] == [str(w.enrollment.pk)] or pytest.fail(j)),
]

(test_no_token_is_401, test_right_role_passes, test_wrong_role_is_403_and_changes_nothing,
 test_other_advertisers_user_gets_404) = matrix(ENDPOINTS)


# --- programs ------------------------------------------------------------------------------------

def test_staff_creates_a_program_with_tiers_and_a_promo_code(api, staff):
    response = api.post("/programs", {
        "name": "Welcome ladder", "kind": "new_advertiser", "window_days": "30",
        "tiers": [{"threshold": "2000", "reward": "1500.00", "immediate": True},
                  {"threshold": "100.00", "reward": 50}],
        "reward_kind": "assignable", "reward_validity_days": 60, "eligible_objectives": ["TRAFFIC"],
        "code": "WELCOME50", "max_redemptions": 100, "ends_at": "2031-01-01T09:00:00+09:00",
    }, token=staff)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body == {
        "id": body["id"], "name": "Welcome ladder", "kind": "new_advertiser", "currency": "USD", "window_days": 30,
        "tiers": [{"threshold": "100.00", "reward": "50.00", "immediate": False},
                  {"threshold": "2000.00", "reward": "1500.00", "immediate": True}],
        "reward_kind": "assignable", "reward_validity_days": 60, "eligible_objectives": ["TRAFFIC"],
        "eligible_product_source": None, "code": "WELCOME50", "max_redemptions": 100, "redemptions": 0,
        "ends_at": "2031-01-01T00:00:00+00:00", "created_at": body["created_at"],
    }
    program = Program.objects.get(pk=int(body["id"]))
    assert [(t.threshold, t.reward) for t in program.tiers.all()] == [
        (Decimal("100.00"), Decimal("50.00")), (Decimal("2000.00"), Decimal("1500.00"))]


def test_reward_validity_defaults_to_90_days(api, staff):
    body = api.post("/programs", PROGRAM_BODY, token=staff).json()
    assert body["reward_validity_days"] == 90 and body["code"] is None and body["ends_at"] is None


@pytest.mark.parametrize("change,code", [
    ({"tiers": []}, "invalid_tiers"),
    ({"tiers": [{"threshold": "100.00", "reward": "5"}, {"threshold": "100", "reward": "9"}]}, "invalid_tiers"),
    ({"tiers": [{"threshold": "100.001", "reward": "5"}]}, "invalid_tiers"),
    ({"tiers": [{"threshold": "-1", "reward": "5"}]}, "invalid_tiers"),
    ({"tiers": [{"reward": "5"}]}, "invalid_tiers"),
    ({"tiers": ["100"]}, "invalid_field"),
    ({"tiers": [{"threshold": "100", "reward": "5", "immediate": "yes"}]}, "invalid_field"),
    ({"tiers": "100:50"}, "invalid_field"),
    ({"kind": "loyalty"}, "invalid_kind"),
    ({"reward_kind": "discount"}, "invalid_reward_kind"),
    ({"window_days": 0}, "invalid_window_days"),
    ({"window_days": "a month"}, "invalid_window_days"),
    ({"reward_validity_days": -5}, "invalid_reward_validity_days"),
    ({"max_redemptions": 0}, "invalid_max_redemptions"),
    ({"name": "  "}, "invalid_name"),
    ({"code": ""}, "invalid_code"),
    ({"ends_at": "next year"}, "invalid_timestamp"),
    ({"eligible_objectives": ["FAME"]}, "invalid_objective"),
    ({"currency": "XXX"}, "invalid_currency"),
])
def test_bad_program_is_400_and_records_nothing(api, staff, change, code):
    before = database_state()
    response = api.post("/programs", {**PROGRAM_BODY, **change}, token=staff)
    assert response.status_code == 400, response.content
    assert error_of(response)["code"] == code
    assert database_state() == before


@pytest.mark.parametrize("missing", ["name", "kind", "window_days", "tiers", "reward_kind"])
def test_program_without_a_required_field_names_it(api, staff, missing):
    body = {k: v for k, v in PROGRAM_BODY.items() if k != missing}
    response = api.post("/programs", body, token=staff)
    assert response.status_code == 400
    assert error_of(response) == {"code": "missing_field", "message": f"{missing} is required.", "field": missing}
    assert not Program.objects.exists()


def test_a_promo_code_in_use_is_422(api, staff):
    new_program(code="SPRING")
    response = api.post("/programs", {**PROGRAM_BODY, "code": "spring"}, token=staff)
    assert response.status_code == 422 and error_of(response)["code"] == "code_taken"
    assert Program.objects.count() == 1


# --- enrolling (R19, R20) ------------------------------------------------------------------------

def test_admin_enrolls_by_program_id(api):
    adv = new_advertiser()
    program = new_program(window_days=7)
    response = api.post(f"/advertisers/{adv.pk}/enrollments", {"program_id": program.pk},
                        token=role_token(adv, "admin"))
    assert response.status_code == 201
    body = response.json()
    assert {k: body[k] for k in ("program_id", "status", "qualifying_spend", "reached_tier", "next_threshold",
                                 "credit_id", "via_code")} == {
        "program_id": str(program.pk), "status": "open", "qualifying_spend": "0.00", "reached_tier": None,
        "next_threshold": "100.00", "credit_id": None, "via_code": False}
    start, end = (Enrollment.objects.get(pk=int(body["id"])).window_start,
                  Enrollment.objects.get(pk=int(body["id"])).window_end)
    assert end - start == timedelta(days=7)
    assert body["window_start"] == start.isoformat().replace("Z", "+00:00")
    assert body["window_end"].endswith("+00:00")


def test_admin_enrolls_by_promo_code_in_any_case(api):
    adv = new_advertiser()
    program = new_program(code="WELCOME50", max_redemptions=10)
    response = api.post(f"/advertisers/{adv.pk}/enrollments", {"code": "welcome50"}, token=role_token(adv, "admin"))
    assert response.status_code == 201
    assert (response.json()["program_id"], response.json()["via_code"]) == (str(program.pk), True)
    program.refresh_from_db()
    assert program.redemptions == 1


@pytest.mark.parametrize("body,code,message", [
    ({}, "invalid_field", "Request body: send either program_id or code."),
    ({"program_id": "1", "code": "X"}, "invalid_field", "Request body: send either program_id or code."),
    ({"program_id": "999999"}, "unknown_program", "Program '999999' does not exist."),
    ({"program_id": "abc"}, "unknown_program", "Program 'abc' does not exist."),
    ({"code": "  "}, "invalid_code", "Enter a promo code."),
])
def test_bad_enrollment_body_is_400_and_records_nothing(api, staff, body, code, message):
    adv = new_advertiser()
    new_program(code="X")
    before = database_state()
    response = api.post(f"/advertisers/{adv.pk}/enrollments", body, token=staff)
    assert response.status_code == 400
    assert (error_of(response)["code"], error_of(response)["message"]) == (code, message)
    assert database_state() == before


def _spent_recently(adv):
    from billing.spend import spend_record

    camp = CampaignFactory(advertiser=adv)
    deposit(adv, "100.00")
    spend_record(event={"event_id": f"recent-{adv.pk}", "advertiser_id": adv.pk, "campaign_id": camp.pk,
                        "amount": "5.00", "currency": "USD",
                        "occurred_at": (timezone.now() - timedelta(days=10)).isoformat()})
    return adv


def _bc_sibling_enrolled():
    bc = BusinessCenterFactory()
    program = new_program()
    enrollment_create(advertiser=new_advertiser(business_center=bc), program=program)
    return new_advertiser(business_center=bc), {"program_id": str(program.pk)}


def _code_used_up():
    new_program(code="ONCE", max_redemptions=1)
    enrollment_create(advertiser=new_advertiser(), code="ONCE")
    return new_advertiser(), {"code": "ONCE"}


R19_REFUSALS = {
    "not_official_offer": lambda: (new_advertiser(signup_source="organic"), {"program_id": str(new_program().pk)}),
    "account_too_old": lambda: (new_advertiser(registered_at=timezone.now() - timedelta(days=61)),
                                {"program_id": str(new_program().pk)}),
    "recent_spend": lambda: (_spent_recently(new_advertiser()), {"program_id": str(new_program().pk)}),
    "already_enrolled_bc": _bc_sibling_enrolled,
    "code_activation_expired": lambda: (new_advertiser(registered_at=timezone.now() - timedelta(days=15)),
                                        {"code": str(new_program(code="LATE").code)}),
    "code_redemption_limit": _code_used_up,
    "unknown_code": lambda: (new_advertiser(), {"code": "NO-SUCH-CODE"}),
    "program_ended": lambda: (new_advertiser(),
                              {"program_id": str(new_program(ends_at=timezone.now() - timedelta(days=1)).pk)}),
}


@pytest.mark.parametrize("code", R19_REFUSALS)
def test_r19_each_refusal_names_its_rule_and_records_nothing(api, code):
    # given an advertiser that breaks exactly one rule
    adv, body = R19_REFUSALS[code]()
    admin = role_token(adv, "admin")
    before = database_state()
    # when its admin tries to enroll
    response = api.post(f"/advertisers/{adv.pk}/enrollments", body, token=admin)
    # then 422 names the rule, with a sentence for a person, and nothing was recorded
    assert response.status_code == 422, response.content
    assert error_of(response)["code"] == code
    assert database_state() == before


def test_enrolling_twice_is_422(api):
    adv = new_advertiser()
    program = new_program()
    admin = role_token(adv, "admin")
    assert api.post(f"/advertisers/{adv.pk}/enrollments", {"program_id": program.pk}, token=admin).status_code == 201
    response = api.post(f"/advertisers/{adv.pk}/enrollments", {"program_id": program.pk}, token=admin)
    assert response.status_code == 422 and error_of(response)["code"] == "already_enrolled"
    assert Enrollment.objects.count() == 1


def test_a_shop_program_needs_a_linked_shop(api, staff):
    program = new_program(kind="shop", eligible_product_source="TIKTOK_SHOP")
    response = api.post(f"/advertisers/{AdvertiserFactory().pk}/enrollments", {"program_id": program.pk}, token=staff)
    assert response.status_code == 422 and error_of(response)["code"] == "no_shop_linked"
    shop_adv = AdvertiserFactory(shop_id="shop-9")
    response = api.post(f"/advertisers/{shop_adv.pk}/enrollments", {"program_id": program.pk}, token=staff)
    assert response.status_code == 201


# --- progress (R16–R18) --------------------------------------------------------------------------

def _spend(api, staff, camp, amount, event_id):
    response = api.post("/spend", {"events": [{
        "event_id": event_id, "advertiser_id": str(camp.advertiser_id), "campaign_id": str(camp.pk),
        "amount": amount, "currency": "USD", "occurred_at": timezone.now().isoformat()}]}, token=staff)
    assert response.status_code == 201, response.content
    return response.json()["results"][0]["allocation"]


def test_enrollment_list_shows_progress_after_spend_and_the_reward_after_the_window(api, staff):
    # given an enrolled new advertiser with cash
    adv = new_advertiser()
    camp = CampaignFactory(advertiser=adv)
    deposit(adv, "1000.00")
    analyst = role_token(adv, "analyst")
    program = new_program()
    enrolled = api.post(f"/advertisers/{adv.pk}/enrollments", {"program_id": str(program.pk)}, token=staff).json()
    # when it spends 150 of its own cash
    assert _spend(api, staff, camp, "150.00", "ladder-1")["cash"] == "150.00"
    # then the list shows 150 qualifying, the 100 tier reached and 500 next — no reward yet
    [row] = api.get(f"/advertisers/{adv.pk}/enrollments", token=analyst).json()
    assert row == {**enrolled, "qualifying_spend": "150.00", "reached_tier": "100.00", "next_threshold": "500.00",
                   "credit_id": None, "status": "open"}
    # when it spends 400 more
    _spend(api, staff, camp, "400.00", "ladder-2")
    [row] = api.get(f"/advertisers/{adv.pk}/enrollments", token=analyst).json()
    assert (row["qualifying_spend"], row["reached_tier"], row["next_threshold"]) == ("550.00", "500.00", "2000.00")
    # when the window has closed and the job ran
    close_ladder_windows(at=Enrollment.objects.get().window_end + timedelta(hours=2))
    [row] = api.get(f"/advertisers/{adv.pk}/enrollments", token=analyst).json()
    # then the highest tier reached is paid as a credit, and there is nothing left to reach
    assert (row["status"], row["reached_tier"], row["next_threshold"]) == ("awarded", "500.00", None)
    credits = api.get(f"/advertisers/{adv.pk}/credits", token=analyst).json()
    assert [(c["id"], c["source"], c["amount"]) for c in credits] == [(row["credit_id"], "ladder", "300.00")]


def test_an_immediate_tier_pays_at_once_and_shows_the_credit(api, staff):
    adv = new_advertiser()
    camp = CampaignFactory(advertiser=adv)
    deposit(adv, "5000.00")
    enrollment_create(advertiser=adv, program=new_program())
    _spend(api, staff, camp, "2100.00", "big-1")
    [row] = api.get(f"/advertisers/{adv.pk}/enrollments", token=staff).json()
    assert (row["status"], row["qualifying_spend"], row["reached_tier"], row["next_threshold"]) == (
        "awarded", "2100.00", "2000.00", None)
    assert Enrollment.objects.get().credit.amount == Decimal("1500.00")
    assert row["credit_id"] == str(Enrollment.objects.get().credit_id)


def test_enrollments_are_listed_newest_first(api, staff):
    adv = new_advertiser(shop_id="shop-1")
    first = enrollment_create(advertiser=adv, program=new_program(name="A"))
    second = enrollment_create(advertiser=adv, program=new_program(name="B", kind="shop"))
    rows = api.get(f"/advertisers/{adv.pk}/enrollments", token=staff).json()
    assert [r["id"] for r in rows] == [str(second.pk), str(first.pk)]
    assert Tier.objects.count() == 6
