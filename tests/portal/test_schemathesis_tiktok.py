"""Schemathesis over the TikTok Business API subset (issue 9), against its own OpenAPI document
(`/open_api/v1.3/openapi.json`): every operation, with a Business Center admin's token and with
staff's, answers HTTP 200 and what the document says; and in TikTok's own terms: client input is
answered 0, 40001 (bad parameter) or 40002 (not allowed), never 50000 (server error), and an
error's `data` names its reason.

Half the generated cases get the world's real Business Center and advertiser ids, so runs reach
the services and not only the parameter checks.
"""

import json

import pytest
import schemathesis
from schemathesis import GenerationMode
from django.test import Client
from hypothesis import HealthCheck, Phase, given, settings as hyp_settings, strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from portal import open_api
from tests.portal.open_api_world import World

pytestmark = pytest.mark.django_db

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
MAX_EXAMPLES = 80
CLIENT_CODES = {open_api.OK, open_api.BAD_PARAMETER, open_api.NOT_ALLOWED}


@pytest.fixture
def schema(app):
    return schemathesis.openapi.from_wsgi("/open_api/v1.3/openapi.json", app)


@pytest.fixture
def world(db):
    return World()


def _with_real_ids(case, world, draw) -> None:
    real = {"bc_id": str(world.bc.pk), "advertiser_id": str(world.manual.pk)}
    for container in (case.query, case.body):
        if isinstance(container, dict):
            for name, value in real.items():
                if name in container and draw(st.booleans()):
                    container[name] = value
    if isinstance(case.query, dict) and "advertiser_ids" in case.query and draw(st.booleans()):
        case.query["advertiser_ids"] = json.dumps([str(world.manual.pk)])  # JSON-encoded, as generated


def _tiktok_terms(response) -> str | None:
    """What TikTok's own clients rely on, beyond the document: the code is a client one and an
    error names its reason; the request id is in the header too."""
    envelope = response.json()
    if envelope["code"] not in CLIENT_CODES:
        return f"code {envelope['code']} for client input: {envelope}"
    if envelope["code"] != open_api.OK and set(envelope["data"]) != {"error_code"}:
        return f"an error without its reason: {envelope}"
    header = Response.from_any(response).headers.get("x-request-id")
    if header != [envelope["request_id"]]:
        return f"X-Request-Id {header!r} is not {envelope['request_id']!r}"
    return None


def _run(operation, token: str, world, codes: set) -> list[str]:
    failures: list[str] = []

    # valid requests, and requests that break the document (NEGATIVE): both are client input
    cases = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(GenerationMode.NEGATIVE)

    @given(case=cases, data=st.data())
    @hyp_settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def run(case, data):
        _with_real_ids(case, world, data.draw)
        # the caller's token, even where a NEGATIVE case broke the security header: parameters are tested here
        case.headers = {**(case.headers or {}), "Access-Token": token}
        response = case.call()
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as exc:
            failures.append(f"{operation.label}: {str(exc)[:1500]}")
            return
        problem = _tiktok_terms(response)
        if problem:
            failures.append(f"{operation.label} {case.query or case.body!r}: {problem}")
        codes.add((operation.label, response.json()["code"]))

    run()
    return failures


@pytest.mark.parametrize("who", ["bc_admin", "staff"])
def test_every_tiktok_operation_conforms_to_its_document(schema, world, who):
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 5, [op.label for op in operations]
    failures, codes = [], set()
    for operation in operations:
        failures += _run(operation, world.tokens[who], world, codes)
    assert not failures, "\n\n".join(dict.fromkeys(failures))
    # every operation answered a valid request at least once: the run reached the services
    succeeded = {label for label, code in codes if code == open_api.OK}
    assert succeeded == {op.label for op in operations}, sorted(codes)


def test_the_tiktok_document_needs_no_token_and_lists_the_operations(db):
    response = Client().get("/open_api/v1.3/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == {"/advertiser/info/", "/advertiser/balance/get/", "/bc/balance/get/",
                                      "/bc/account/transaction/get/", "/bc/transfer/"}
