"""Request ids on the portal API (portal/request_id.py): a header on every answer, the id in
error bodies, one log line per request."""

import logging
import re

import pytest

from tests.api_helpers import api, api_user, error_of, staff  # noqa: F401
from tests.factories import AdvertiserFactory

pytestmark = pytest.mark.django_db

GENERATED = re.compile(r"^\d{14}[0-9A-F]{20}$")


def test_success_answer_has_a_fresh_request_id(api, staff):
    adv = AdvertiserFactory()
    a = api.get(f"/advertisers/{adv.pk}", token=staff)
    b = api.get(f"/advertisers/{adv.pk}", token=staff)
    assert a.status_code == 200
    assert GENERATED.match(a["X-Request-Id"])
    assert a["X-Request-Id"] != b["X-Request-Id"]


def test_error_body_quotes_the_same_request_id(api):
    response = api.get("/advertisers/1")
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"
    assert response.json()["error"]["request_id"] == response["X-Request-Id"]


def test_unknown_route_and_wrong_method_carry_the_id(api, staff):
    unknown = api.get("/no-such-thing", token=staff)
    wrong = api.client.delete("/api/v1/advertisers/1", headers={"Access-Token": staff})
    assert (unknown.status_code, wrong.status_code) == (404, 405)
    for response in (unknown, wrong):
        assert response.json()["error"]["request_id"] == response["X-Request-Id"]


def test_a_sane_incoming_id_is_reused(api, staff):
    response = api.client.get("/api/v1/advertisers/999999",
                              headers={"Access-Token": staff, "X-Request-Id": "client-42.a:b_c"})
    assert response.status_code == 404
    assert response["X-Request-Id"] == "client-42.a:b_c"
    assert response.json()["error"]["request_id"] == "client-42.a:b_c"


@pytest.mark.parametrize("incoming", ["has space", "x" * 65, "<script>", "é"])
def test_an_unsafe_incoming_id_is_replaced(api, incoming):
    response = api.client.get("/api/v1/advertisers/1", headers={"X-Request-Id": incoming})
    assert response["X-Request-Id"] != incoming
    assert GENERATED.match(response["X-Request-Id"])


def test_one_log_line_per_request_with_id_method_path_status_and_duration(api, staff, caplog):
    adv = AdvertiserFactory()
    with caplog.at_level(logging.INFO, logger="portal.api"):
        response = api.get(f"/advertisers/{adv.pk}", token=staff)
    lines = [r.getMessage() for r in caplog.records if r.name == "portal.api"]
    assert len(lines) == 1
    line = lines[0]
    assert f"request_id={response['X-Request-Id']} " in line
    assert f"method=GET path=/api/v1/advertisers/{adv.pk} status=200 " in line
    assert re.search(r"duration_ms=\d+$", line)


def test_pages_outside_the_api_get_no_request_id(client):
    response = client.get("/login/")
    assert "X-Request-Id" not in response
