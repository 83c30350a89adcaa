"""Portal API plumbing (API.md common rules): tokens, the token command, the error shape for
unknown routes and malformed bodies, and the OpenAPI document (R35)."""

import io

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from portal.models import ApiToken, BusinessCenter, hash_token
from tests.api_helpers import api, api_user, error_of, staff  # noqa: F401
from tests.factories import AdvertiserFactory, token_for

pytestmark = pytest.mark.django_db


def test_access_token_header_and_bearer_both_authenticate(api):
    # given a staff user's token
    raw = token_for(api_user(is_staff=True))
    # when it is sent either way
    a = api.post("/business-centers", {"name": "Via header"}, token=raw)
    b = api.post("/business-centers", {"name": "Via bearer"}, token=raw, bearer=True)
    # then both are accepted
    assert (a.status_code, b.status_code) == (201, 201)
    assert set(BusinessCenter.objects.values_list("name", flat=True)) == {"Via header", "Via bearer"}


@pytest.mark.parametrize("headers", [
    {},
    {"Access-Token": "act_unknown"},
    {"Authorization": "Bearer act_unknown"},
    {"Authorization": "Basic dXNlcjpwYXNz"},
    {"Access-Token": ""},
])
def test_missing_or_invalid_token_is_401(api, headers):
    response = api.client.get("/api/v1/advertisers/1", headers=headers)
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"
    assert "Access-Token" in error_of(response)["message"]


def test_revoked_token_and_inactive_user_are_401(api):
    adv = AdvertiserFactory()
    user = api_user(is_staff=True)
    token, raw = ApiToken.issue(user=user)
    assert api.get(f"/advertisers/{adv.pk}", token=raw).status_code == 200
    # when the token is revoked
    ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    assert api.get(f"/advertisers/{adv.pk}", token=raw).status_code == 401
    # and when a valid token's user is deactivated
    other = api_user(is_staff=True)
    raw2 = token_for(other)
    other.is_active = False
    other.save()
    assert api.get(f"/advertisers/{adv.pk}", token=raw2).status_code == 401


def test_tokens_are_stored_hashed(db):
    token, raw = ApiToken.issue(user=api_user())
    assert token.key_hash == hash_token(raw)
    assert not ApiToken.objects.filter(key_hash=raw).exists()


def _run(*args) -> list[str]:
    out = io.StringIO()
    call_command("create_api_token", *args, stdout=out)
    return out.getvalue().strip().splitlines()


def test_create_api_token_creates_a_staff_user_and_prints_a_working_token_last(api):
    # when the command creates a staff user
    lines = _run("robot", "--create", "--staff")
    raw = lines[-1]
    # then the last line is a token that acts as staff
    assert raw.startswith("act_") and " " not in raw
    response = api.post("/business-centers", {"name": "From CLI"}, token=raw)
    assert response.status_code == 201
    assert ApiToken.objects.get(key_hash=hash_token(raw)).user.username == "robot"


def test_create_api_token_for_an_existing_user_keeps_their_rights(api):
    adv = AdvertiserFactory()
    user = api_user(username="alice")
    from portal.models import Membership
    Membership.objects.create(user=user, advertiser=adv, role="analyst")
    raw = _run("alice")[-1]
    # then the token carries alice's rights: she reads her advertiser but is not staff
    assert api.get(f"/advertisers/{adv.pk}", token=raw).json()["name"] == adv.name
    assert api.post("/business-centers", {"name": "x"}, token=raw).status_code == 403


def test_create_api_token_refuses_an_unknown_user_without_create(db):
    with pytest.raises(CommandError, match="--create"):
        _run("nobody")
    assert not ApiToken.objects.exists()


def test_unknown_api_route_is_a_json_404(api, staff):
    for response in (api.get("/no-such-thing", token=staff), api.post("/advertisers/1/nope", {}, token=staff),
                     api.get("/no-such-thing")):
        assert response.status_code == 404
        assert response["Content-Type"].startswith("application/json")
        assert error_of(response)["code"] == "not_found"


def test_malformed_json_is_400_and_creates_nothing(api, staff):
    response = api.post("/business-centers", raw='{"name": "Broken', token=staff)
    assert response.status_code == 400
    assert error_of(response) == {"code": "malformed_json", "message": "The request body is not valid JSON."}
    assert not BusinessCenter.objects.exists()


@pytest.mark.parametrize("raw,code,message", [
    ("", "invalid_body", "The request body must be a JSON object."),
    ("[1, 2]", "invalid_body", "The request body must be a JSON object."),
    ('"text"', "invalid_body", "The request body must be a JSON object."),
    ("{}", "missing_field", "name is required."),
    ('{"name": 12}', "invalid_field", "name: Input should be a valid string."),
])
def test_bad_bodies_name_the_problem(api, staff, raw, code, message):
    response = api.post("/business-centers", raw=raw, token=staff)
    assert response.status_code == 400
    assert error_of(response)["code"] == code
    assert error_of(response)["message"] == message
    assert not BusinessCenter.objects.exists()


# --- OpenAPI -------------------------------------------------------------------------------------

OPERATIONS = {
    ("post", "/business-centers", 201), ("post", "/business-centers/{id}/members", 201),
    ("post", "/business-centers/{id}/deposits", 201), ("post", "/advertisers", 201),
    ("get", "/advertisers/{id}", 200), ("post", "/advertisers/{id}/members", 201),
    ("post", "/advertisers/{id}/campaigns", 201), ("get", "/advertisers/{id}/campaigns", 200),
    ("post", "/advertisers/{id}/deposits", 201), ("post", "/advertisers/{id}/refund", 200),
    ("get", "/advertisers/{id}/balances", 200), ("post", "/spend", 201),
    ("get", "/advertisers/{id}/charges/{event_id}", 200), ("get", "/advertisers/{id}/credits", 200),
    ("post", "/advertisers/{id}/credits", 201), ("post", "/credits/{id}/assign", 200),
    ("post", "/credits/{id}/transfer", 422), ("post", "/credits/{id}/withdraw", 200),
    ("post", "/programs", 201), ("post", "/advertisers/{id}/enrollments", 201),
    ("get", "/advertisers/{id}/enrollments", 200), ("post", "/advertisers/{id}/payment-method", 200),
    ("post", "/advertisers/{id}/billing-method", 200), ("post", "/advertisers/{id}/billing-settings", 200),
    ("get", "/advertisers/{id}/bills", 200), ("post", "/bills/{id}/pay", 200),
    ("post", "/advertisers/{id}/freeze", 200), ("post", "/advertisers/{id}/unfreeze", 200),
    ("post", "/advertisers/{id}/appeals", 201), ("get", "/advertisers/{id}/appeals", 200),
    ("post", "/appeals/{id}/decision", 200),
    # R37, R39
    ("get", "/advertisers/{id}/billing-profile", 200), ("put", "/advertisers/{id}/billing-profile", 200),
    ("get", "/advertisers/{id}/documents", 200), ("get", "/documents/{id}", 200),
    ("post", "/documents/{id}/payments", 200), ("post", "/documents/{id}/disputes", 201),
    ("post", "/documents/{id}/credit-notes", 201),
    # R43, R45, R47-R50 (and their additions: reading the limit, listing, deleting, redelivering)
    ("get", "/advertisers/{id}/spending-limit", 200), ("put", "/advertisers/{id}/spending-limit", 200),
    ("get", "/advertisers/{id}/insights", 200), ("get", "/advertisers/{id}/charges/{event_id}/explanation", 200),
    ("post", "/advertisers/{id}/webhooks", 201), ("get", "/advertisers/{id}/webhooks", 200),
    ("delete", "/advertisers/{id}/webhooks/{webhook_id}", 200),
    ("get", "/advertisers/{id}/webhooks/{webhook_id}/deliveries", 200),
    ("post", "/advertisers/{id}/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver", 200),
}


@pytest.fixture
def openapi(api, db):
    response = api.get("/openapi.json")  # no token: the document is public
    assert response.status_code == 200
    return response.json()


def test_openapi_lists_every_operation_with_security_and_schemas(openapi):
    assert openapi["openapi"].startswith("3.")
    paths = openapi["paths"]
    listed = {(m, p.removeprefix("/api/v1"), s) for p, ops in paths.items() for m, op in ops.items()
              for s in [next(int(c) for c in op["responses"] if c.startswith("2") or c == "422")]}
    assert listed == OPERATIONS
    for p, ops in paths.items():
        for method, op in ops.items():
            # both ways of sending the token, on every operation
            assert {k for s in op["security"] for k in s} == {"AccessTokenAuth", "BearerTokenAuth"}, (p, method)
            # the error shape is documented
            assert op["responses"]["401"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut")
            ok = [c for c in op["responses"] if c.startswith("2")]
            for c in ok:
                assert "schema" in op["responses"][c]["content"]["application/json"], (p, method)


def test_openapi_describes_security_schemes_and_request_bodies(openapi):
    schemes = openapi["components"]["securitySchemes"]
    assert schemes["AccessTokenAuth"] == {"type": "apiKey", "in": "header", "name": "Access-Token"}
    assert schemes["BearerTokenAuth"] == {"type": "http", "scheme": "bearer"}
    schemas = openapi["components"]["schemas"]
    body = openapi["paths"]["/api/v1/spend"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("/SpendIn")
    assert schemas["SpendIn"]["properties"]["events"]["maxItems"] == 1000
    event = schemas["SpendEventIn"]["properties"]
    assert event["amount"]["type"] == "string"
    assert event["occurred_at"]["format"] == "date-time"
    assert event["kind"]["enum"] == ["ad_spend", "fee"]
    assert schemas["DepositIn"]["required"] == ["amount", "idempotency_key"]
    assert set(schemas["BalancesOut"]["required"]) >= {
        "currency", "cash_balance", "arrears", "credit_balance", "frozen_credit_balance", "discount_cap_remaining",
        "accrued", "outstanding_bills", "credit_line_limit", "credit_line_used", "billing_threshold", "next_bill_date",
    }
    assert set(schemas["AllocationOut"]["required"]) >= {
        "discount", "coupons", "credits", "cash", "accrued", "credit_line", "arrears"}
    assert set(schemas["CreditOut"]["required"]) >= {
        "id", "kind", "source", "amount", "remaining", "percent", "status", "valid_from", "expires_at",
        "eligible_objectives", "eligible_product_source", "campaign_ids"}
    assert set(schemas["AdvertiserOut"]["required"]) >= {
        "id", "name", "currency", "timezone", "billing_method", "status", "registered_at", "signup_source",
        "shop_id", "credit_frozen"}
