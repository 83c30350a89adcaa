"""The contract's edges (API.md common rules, SPEC R35): a wrong HTTP method on a known path answers
the JSON error shape, and the OpenAPI document describes the billing, program and appeal operations."""

import pytest

from tests.api_helpers import BASE, api, error_of, staff  # noqa: F401
from tests.factories import AdvertiserFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("method,path,allowed", [
    ("post", "/advertisers/{id}/balances", "GET"),
    ("delete", "/spend", "POST"),
    ("put", "/advertisers/{id}/freeze", "POST"),
    ("get", "/bills/1/pay", "POST"),
    ("patch", "/advertisers/{id}/appeals", "GET, POST"),
])
def test_wrong_method_on_a_known_path_is_a_json_405(api, staff, method, path, allowed):
    adv = AdvertiserFactory()
    url = BASE + path.format(id=adv.pk)
    # when a client uses a method the path does not accept, with or without a token
    for headers in ({"Access-Token": staff}, {}):
        response = getattr(api.client, method)(url, headers=headers)
        # then 405 in the error shape, naming what the path accepts, with the Allow header
        assert response.status_code == 405
        assert response["Content-Type"].startswith("application/json")
        error = error_of(response)
        assert error["code"] == "method_not_allowed"
        assert error["message"] == f"{method.upper()} is not allowed on {url}; it accepts {allowed}."
        assert response["Allow"] == allowed


def test_right_method_still_reaches_the_endpoint(api, staff):
    adv = AdvertiserFactory()
    assert api.get(f"/advertisers/{adv.pk}/balances", token=staff).json()["cash_balance"] == "0.00"
    assert api.post("/spend", {"events": []}, token=staff).status_code == 400


@pytest.fixture
def openapi(api):
    response = api.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def test_openapi_describes_the_new_operations(openapi):
    paths, schemas = openapi["paths"], openapi["components"]["schemas"]
    # the appeal is a multipart form with a message and attachments[]
    form = paths[f"{BASE}/advertisers/{{id}}/appeals"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert form["schema"]["required"] == ["message"]
    files = form["schema"]["properties"]["attachments[]"]
    assert (files["type"], files["items"]["format"]) == ("array", "binary")
    # request bodies name their fields
    assert schemas["ProgramIn"]["required"] == ["name", "kind", "window_days", "tiers", "reward_kind"]
    assert schemas["ProgramIn"]["properties"]["kind"]["enum"] == ["new_advertiser", "shop"]
    assert set(schemas["EnrollmentIn"]["properties"]) == {"program_id", "code"}
    assert schemas["PaymentMethodIn"]["required"] == ["card_number", "expiry"]
    assert schemas["DecisionIn"]["properties"]["decision"]["enum"] == ["approve", "reject"]
    assert schemas["BillingSettingsIn"]["properties"]["bill_cycle"]["anyOf"][0]["enum"] == ["weekly", "monthly"]
    assert "required" not in schemas["BillingSettingsIn"]  # every setting is optional
    # answers carry the contract's fields
    assert set(schemas["EnrollmentOut"]["required"]) >= {
        "id", "program_id", "status", "window_start", "window_end", "qualifying_spend", "reached_tier",
        "next_threshold", "credit_id"}
    assert set(schemas["BillOut"]["required"]) >= {
        "id", "kind", "number", "amount", "status", "attempts", "issued_at", "due_at"}
    assert {"threshold", "bill_date", "monthly_invoice"} <= set(schemas["BillOut"]["properties"]["kind"]["enum"])
    assert set(schemas["PaymentMethodOut"]["required"]) >= {"last4", "status"}
    assert "card_number" not in schemas["PaymentMethodOut"]["properties"]
    assert set(schemas["AppealOut"]["required"]) >= {
        "id", "status", "message", "created_at", "decision_note", "attachments"}
    assert set(schemas["AttachmentOut"]["required"]) == {"id", "name", "content_type", "size"}
    # every new operation documents the error shape
    for path, method in [("/programs", "post"), ("/advertisers/{id}/enrollments", "get"),
                         ("/bills/{id}/pay", "post"), ("/appeals/{id}/decision", "post"),
                         ("/advertisers/{id}/billing-settings", "post")]:
        responses = paths[BASE + path][method]["responses"]
        for status in ("400", "401", "403", "404", "409", "422"):
            assert responses[status]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut")


def test_no_cdn_docs_page_but_the_openapi_document_is_served(client):
    # the Swagger page is the portal's own (vendored Swagger UI, decision 0028): no CDN
    docs = client.get("/api/v1/docs")
    assert docs.status_code == 200
    assert b"cdn" not in docs.content.lower()
    schema = client.get("/api/v1/openapi.json")
    assert schema.status_code == 200 and schema.json()["openapi"].startswith("3.")
