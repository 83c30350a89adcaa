"""Schemathesis against the portal API's own OpenAPI document (issue 6): every operation, with a
staff token and with a member (the advertiser's admin) token, answers no 5xx and only what the
document says (status codes, content type, body schema); and no operation answers a request
without a token except with 401.

The schema is loaded from the running app (`/api/v1/openapi.json` through Django's WSGI app), and
requests go through the same WSGI app in the test's transaction, so the fixture world is visible.
Half the generated cases get a real id of the world in their path (advertiser, Business Center,
credit, bill, program, campaign, charge), so not everything is a 404.
"""

from datetime import timedelta

import pytest
import schemathesis
from django.utils import timezone
from hypothesis import HealthCheck, Phase, given, settings as hyp_settings, strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from billing.autopay import charge_thresholds, payment_method_set
from billing.models import Bill
from billing.spend import spend_record
from billing.switching import billing_method_switch
from promotions.programs import program_create
from tests.api_helpers import World

pytestmark = pytest.mark.django_db

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
MAX_EXAMPLES = 15
MIN_SUCCEEDING = {"staff": 12, "admin": 8}  # operations answering 2xx at least once


@pytest.fixture
def schema(app):
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)


@pytest.fixture
def full_world(db):
    """The API tests' world (advertiser with cash, a campaign, a coupon, a charge), plus bills
    (the account on automatic payment with a declining card) and a ladder program."""
    w = World()
    payment_method_set(advertiser=w.adv, card_number="4000 0000 0000 0002", expiry="12/39")
    billing_method_switch(advertiser=w.adv, billing_method="automatic")
    spend_record(event={
        "event_id": "world-charge-2", "advertiser_id": w.adv.pk, "campaign_id": w.campaign.pk,
        "amount": "600.00", "currency": "USD", "occurred_at": (timezone.now() - timedelta(minutes=1)).isoformat(),
    })
    charge_thresholds()
    w.bill = Bill.objects.filter(advertiser=w.adv).order_by("pk").first()
    assert w.bill is not None
    w.program = program_create(name="Spend 100 get 50", kind="new_advertiser", window_days=7,
                               tiers=[{"threshold": "100.00", "reward": "50.00"}])
    return w


RESOURCES = [  # the path prefix whose {id} names each kind of object of the world
    ("/advertisers/{id}", "adv"), ("/business-centers/{id}", "bc"), ("/credits/{id}", "coupon"),
    ("/bills/{id}", "bill"), ("/programs/{id}", "program"), ("/campaigns/{id}", "campaign"),
]


def _real_ids(w) -> dict[str, dict[str, str]]:
    """Per path prefix, the real id of that kind of object, so a drawn id is the right one
    whatever the database sequences are (other tests run before this one in the same database)."""
    return {"id": {prefix: str(getattr(w, attr).pk) for prefix, attr in RESOURCES}, "event_id": {"": w.event_id}}


def _real_id(real_ids, name: str, path: str) -> str | None:
    for prefix, value in real_ids.get(name, {}).items():
        if prefix in path:
            return value
    return None


def _operations(schema):
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30, [op.label for op in operations]
    return operations


def _run(operation, token: str, real_ids: dict, statuses: set) -> list[str]:
    failures: list[str] = []

    @given(case=operation.as_strategy(), data=st.data())
    @hyp_settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def run(case, data):
        for name in list(case.path_parameters or {}):
            real = _real_id(real_ids, name, operation.label)
            if real is not None and data.draw(st.booleans()):
                case.path_parameters[name] = real
        response = case.call(headers={"Access-Token": token})
        statuses.add((operation.label, response.status_code))
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as exc:
            failures.append(f"{operation.label}: {str(exc)[:1500]}")

    run()
    return failures


@pytest.mark.parametrize("who", ["staff", "admin"])
def test_every_operation_conforms_to_the_document(schema, full_world, who):
    real_ids = _real_ids(full_world)
    token = full_world.tokens[who]
    failures, statuses = [], set()
    for operation in _operations(schema):
        failures += _run(operation, token, real_ids, statuses)
    assert not failures, "\n\n".join(dict.fromkeys(failures))
    # the run reached real objects, not only 400s and 404s
    succeeded = {label for label, status in statuses if status < 300}
    assert len(succeeded) >= MIN_SUCCEEDING[who], sorted(statuses)


def test_no_operation_answers_without_a_token(schema, full_world):
    accepted = []
    for operation in _operations(schema):
        @given(case=operation.as_strategy())
        @hyp_settings(max_examples=3, deadline=None, database=None, derandomize=True,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        def run(case):
            response = case.call()
            if response.status_code != 401 or response.json()["error"]["code"] != "unauthorized":
                accepted.append(f"{operation.label}: {response.status_code} {response.text[:200]}")

        run()
    assert not accepted, "\n".join(accepted)


def test_the_openapi_document_itself_needs_no_token(app, db):
    from django.test import Client

    response = Client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.")


@pytest.mark.parametrize("text", ["bad \\u0000 key", "bad \\ud921 text"])
def test_unstorable_text_in_a_body_is_400_not_a_server_error(db, text):
    # found by schemathesis: PostgreSQL cannot store NUL or a lone surrogate; the grant was a 500
    from tests.api_helpers import Api, api_user, error_of
    from tests.factories import AdvertiserFactory, token_for

    adv = AdvertiserFactory()
    raw = f'{{"kind": "free", "amount": "10.00", "reason": "ok", "idempotency_key": "{text}"}}'
    response = Api().post(f"/advertisers/{adv.pk}/credits", raw=raw, token=token_for(api_user(is_staff=True)))
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_text"
    assert not adv.credits.exists()
