"""Hostile values against every write endpoint of both APIs (issue 9, decision 0018).

Hypothesis draws bodies whose fields hold text with NUL and lone surrogates, huge and negative
integers, exotic decimal spellings, timestamps from year 1 to 9999 with any offset, deep JSON,
floats, booleans and nulls — mixed with valid values, so refusals come from every field — and
sends them to each POST/PUT operation of the portal API's own OpenAPI document (so an endpoint
added later is covered by being documented) and to every operation of the TikTok surface. Each
answer must be no 5xx (no 50000 on the TikTok surface), the door's documented error shape, and on
refusal nothing recorded.
"""

import json
from datetime import date, timedelta
from urllib.parse import quote

import pytest
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given, settings as hyp_settings, strategies as st

from billing.models import BCTransfer, Deposit, LedgerAccount, LedgerEntry, LedgerTransaction, SpendEvent
from portal.models import Advertiser, Campaign, Membership
from promotions.freeze import credit_freeze
from promotions.models import Appeal, Credit, Enrollment, Program
from promotions.programs import program_create
from tests.portal.open_api_world import World

pytestmark = pytest.mark.django_db

SETTINGS = dict(deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


def recorded() -> tuple:
    return (
        SpendEvent.objects.count(), LedgerTransaction.objects.count(), LedgerEntry.objects.count(),
        Credit.objects.count(), Program.objects.count(), Enrollment.objects.count(), Deposit.objects.count(),
        Appeal.objects.count(), Advertiser.objects.count(), Campaign.objects.count(), BCTransfer.objects.count(),
        Membership.objects.count(), sorted(LedgerAccount.objects.values_list("pk", "balance")),
    )


# --- hostile values -------------------------------------------------------------------------------

hostile_text = st.one_of(
    st.text(alphabet=st.characters(exclude_categories=()), max_size=30),  # lone surrogates included
    st.text(max_size=10).map(lambda t: t + "\x00" + t),
    st.text(max_size=10).map(lambda t: t + "\x00"),
    st.sampled_from(["\ud800", "a\udfffb", "\x00", "\x07bell", " ", "", "x" * 10_001]),
)
hostile_int = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 2**31, 2**40, 2**63, 2**64, 3_000_000]),
)
hostile_decimal = st.sampled_from([
    "1_000", "2_5.00", " 25.00 ", "+25.00", "2.5e1", "25.", ".5", "-0", "1e3", "NaN", "-Infinity", "0x10",
    "٢٥", "25,00", "1" * 40, "0." + "0" * 30 + "1", "12.345", "0", "10.00", "99999999999999999",
])
BOUNDARY_TIMES = st.sampled_from([
    "9999-12-31", "0001-01-01", "0001-01-01T00:00:00+14:00", "9999-12-31 23:59:59", "9999-12-31T23:59:59-14:00",
    "1999-12-31T23:59:59Z", "2100-01-01T00:00:00Z", "0001-01-01 00:00:00", "9999-12-31T23:59:59.999999+00:00",
])
timestamps = st.one_of(
    BOUNDARY_TIMES,
    BOUNDARY_TIMES,
    st.builds(
        lambda d, h, off, sep: f"{d.isoformat()}{sep}{h:02d}:00:00{off}",
        st.dates(), st.integers(0, 23), st.sampled_from(["+14:00", "-12:00", "+00:00", "Z", "", "+99:00"]),
        st.sampled_from(["T", " "]),
    ),
    st.dates().map(date.isoformat),
)
floats = st.floats(allow_nan=True, allow_infinity=True)


def deep(depth: int):
    return "[" * depth + "]" * depth


scalar = st.one_of(hostile_text, hostile_text, hostile_int, hostile_decimal, timestamps, floats, st.booleans(), st.none())
hostile = st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                         st.dictionaries(hostile_text, inner, max_size=3)),
                       max_leaves=8)


def _json(value) -> str:
    return json.dumps(value, allow_nan=False) if _finite(value) else json.dumps(None)


def _finite(value) -> bool:
    try:
        json.dumps(value, allow_nan=False)
        return True
    except ValueError:
        return False


# --- the portal API ---------------------------------------------------------------------------------


@pytest.fixture
def world(db):
    w = World()
    w.program = program_create(name="Spend 100 get 10", kind="new_advertiser", window_days=30,
                               tiers=[{"threshold": "100.00", "reward": "10.00"}])
    w.event = SpendEvent.objects.order_by("pk").first()
    credit_freeze(advertiser=w.automatic, reason="risk review", by=None)  # so appeals reach the service
    return w


def _write_operations(client) -> list[tuple[str, str, dict]]:
    """(method, path, properties of the JSON body) of every documented write operation."""
    doc = client.get("/api/v1/openapi.json").json()
    schemas = doc["components"]["schemas"]
    out = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method not in ("post", "put", "patch"):
                continue
            content = op.get("requestBody", {}).get("content", {})
            props = {}
            for media in content.values():
                ref = media["schema"].get("$ref", "")
                schema = schemas[ref.rsplit("/", 1)[-1]] if ref else media["schema"]
                props = schema.get("properties", {})
            out.append((method, path, props))
    return out


def _valid(name: str, w) -> object:
    """A plausible value for a field, so a drawn body can get past its other fields."""
    now = timezone.now()
    return {
        "amount": "10.00", "idempotency_key": "hostile-key", "name": "Hostile", "currency": "USD",
        "reason": "checking", "note": "checked", "kind": "free", "username": "hostile-user", "role": "admin",
        "objective": "TRAFFIC", "window_days": 7, "reward_kind": "free", "program_id": str(w.program.pk),
        "tiers": [{"threshold": "100.00", "reward": "10.00"}], "billing_method": "automatic",
        "valid_from": (now - timedelta(days=1)).isoformat(), "expires_at": (now + timedelta(days=30)).isoformat(),
        "campaign_ids": [str(w.campaign.pk)], "decision": "reject", "card_number": "4242424242424242",
        "expiry": "12/39", "billing_threshold": "100.00", "message": "please",
        "events": [{"event_id": "hostile-ev", "advertiser_id": str(w.manual.pk), "campaign_id": str(w.campaign.pk),
                    "amount": "1.00", "currency": "USD", "occurred_at": (now - timedelta(minutes=5)).isoformat()}],
    }.get(name)


def _path(path: str, w, draw) -> str:
    ids = {"advertisers": w.manual.pk, "business-centers": w.bc.pk, "credits": w.coupon.pk,
           "appeals": 1, "bills": 1, "programs": w.program.pk, "documents": 1}
    parts = path.split("/")
    for i, part in enumerate(parts):
        if part.startswith("{"):
            real = ids.get(parts[i - 1], 1)
            parts[i] = draw(st.one_of(st.just(str(real)), st.sampled_from(
                ["0", "-1", "9" * 25, "%00", "abc", "%F0%9F%92%A9", str(2**63)])))
    return "/".join(parts)


def _error_shape(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error["code"], str) and error["code"], error
    assert isinstance(error["message"], str) and error["message"], error
    return error


def test_hostile_bodies_on_every_portal_write_endpoint(world):
    client = Client()
    operations = _write_operations(client)
    assert len(operations) >= 20, [op[:2] for op in operations]
    token = world.tokens["staff"]
    seen = set()

    @given(data=st.data())
    @hyp_settings(max_examples=400, **SETTINGS)
    def run(data):
        method, path, props = data.draw(st.sampled_from(operations))
        url = _path(path, world, data.draw)
        # one field (sometimes two) hostile, the others valid: so the refusal comes from that field
        targets = set(data.draw(st.lists(st.sampled_from(sorted(props) or ["x"]), min_size=1, max_size=2)))
        body = {}
        for name in props:
            if name in targets:
                body[name] = data.draw(hostile)
            elif _valid(name, world) is not None and data.draw(st.integers(0, 9)) > 0:
                body[name] = _valid(name, world)
        shape = data.draw(st.sampled_from(["object", "object", "object", "deep", "raw"]))
        raw = {"object": lambda: _json(body), "deep": lambda: deep(data.draw(st.integers(30, 20_000))),
               "raw": lambda: data.draw(st.sampled_from(['{"a": 1e99999}', '{"a": "\\ud800"}', "nul\x00",
                                                         '{"a": -}', "[]", "null", '"x"']))}[shape]()
        before = recorded()
        if path.endswith("/appeals"):
            response = client.post(url, data={"message": body.get("message") if isinstance(body.get("message"), str)
                                              else "hello\x00world"}, headers={"Access-Token": token})
        else:
            response = client.generic(method.upper(), url, raw, content_type="application/json",
                                      headers={"Access-Token": token})
        seen.add((path, response.status_code))
        assert response.status_code < 500, (method, url, raw[:300], response.content[:500])
        if response.status_code >= 400:
            _error_shape(response)
            assert recorded() == before, (method, url, raw[:300], response.content[:300])

    run()
    # the run reached the services, not only the parsers
    assert any(status < 300 for _, status in seen), sorted(seen)
    assert len({p for p, _ in seen}) >= len(operations) * 0.8, sorted(seen)


# --- the TikTok surface --------------------------------------------------------------------------------


def _one_hostile(valid: dict, bad: dict, *, absent=()):
    """Every parameter valid but one, drawn from its hostile values (so the refusal, or the
    server error, is that parameter's); parameters in `absent` may also be left out. One draw in
    ten is the valid request itself, so a run shows the valid request getting through."""
    def build(target):
        fields = {k: st.just(v) for k, v in valid.items() if k != target and k not in absent}
        optional = {k: st.just(v) for k, v in valid.items() if k != target and k in absent}
        return st.fixed_dictionaries({**fields, target: bad[target]}, optional=optional)

    hostile_one = st.sampled_from(sorted(bad)).flatmap(build)
    return st.integers(0, 9).flatmap(lambda n: st.just(dict(valid)) if n == 0 else hostile_one)


def _tiktok_strategies(w) -> dict:
    bc, adv = str(w.bc.pk), str(w.manual.pk)
    names = st.lists(st.one_of(hostile_text, st.sampled_from(["ADD_BALANCE", "STATUS_ENABLE", "PREPAY"])), max_size=3)
    ids = st.lists(st.one_of(hostile_int, hostile_text, st.just(adv)), max_size=3)
    filter_values = {  # each filter's hostile values of its own kind, or any
        "keyword": st.one_of(hostile_text, hostile), "account_name": st.one_of(hostile_text, hostile),
        "start_time": st.one_of(timestamps, hostile), "end_time": st.one_of(timestamps, hostile),
        "advertiser_status": st.one_of(names, hostile), "transaction_types": st.one_of(names, hostile),
        "billing_types": st.one_of(names, hostile), "account_ids": st.one_of(ids, hostile),
    }
    filtering = st.one_of(
        st.sampled_from(sorted(filter_values)).flatmap(lambda f: st.fixed_dictionaries({f: filter_values[f]})),
        st.fixed_dictionaries({}, optional=filter_values), hostile)
    paging = {"page": hostile, "page_size": hostile}
    transfer = {"bc_id": bc, "advertiser_id": adv, "transfer_type": "RECHARGE", "cash_amount": 1,
                "request_id": "hostile-r", "grant_amount": 0}
    return {
        ("GET", "/advertiser/info/"): _one_hostile(
            {"advertiser_ids": [adv], "fields": ["name"]},
            {"advertiser_ids": st.one_of(ids, hostile), "fields": st.one_of(names, hostile)}, absent={"fields"}),
        ("GET", "/advertiser/balance/get/"): _one_hostile(
            {"bc_id": bc, "page": 1, "page_size": 10, "filtering": {"keyword": "Manual"}},
            {"bc_id": hostile, **paging, "filtering": filtering}, absent={"page", "page_size", "filtering"}),
        ("GET", "/bc/balance/get/"): _one_hostile({"bc_id": bc}, {"bc_id": hostile}),
        ("GET", "/bc/account/transaction/get/"): _one_hostile(
            {"bc_id": bc, "page": 1, "page_size": 10, "transaction_level": "ADVERTISER", "filtering": {}},
            {"bc_id": hostile, **paging, "transaction_level": hostile, "filtering": filtering},
            absent={"page", "page_size", "transaction_level", "filtering"}),
        ("POST", "/bc/transfer/"): st.one_of(
            _one_hostile(transfer, {"bc_id": hostile, "advertiser_id": hostile, "transfer_type": hostile,
                                    "cash_amount": st.one_of(hostile_decimal, hostile),
                                    "request_id": st.one_of(hostile_text, hostile), "grant_amount": hostile},
                         absent={"grant_amount"}),
            st.integers(30, 20_000).map(deep),
        ),
    }


def _query(params: dict) -> str:
    def text(value):
        return value if isinstance(value, str) else _json(value)

    return "&".join(f"{quote(k)}={quote(text(v).encode('utf-8', 'surrogatepass'))}" for k, v in params.items())


@pytest.mark.parametrize("operation", ["/advertiser/info/", "/advertiser/balance/get/", "/bc/balance/get/",
                                       "/bc/account/transaction/get/", "/bc/transfer/"])
def test_hostile_parameters_on_every_tiktok_operation(world, operation):
    client = Client()
    token = world.tokens["bc_admin"]
    (method, path), strategy = next((k, v) for k, v in _tiktok_strategies(world).items() if k[1] == operation)
    answered = set()

    @given(params=strategy)
    @hyp_settings(max_examples=150, **SETTINGS)
    def run(params):
        before = recorded()
        if method == "POST":
            raw = params if isinstance(params, str) else _json(params)
            response = client.post("/open_api/v1.3" + path, raw, content_type="application/json",
                                   headers={"Access-Token": token})
        else:
            response = client.get(f"/open_api/v1.3{path}?{_query(params)}", headers={"Access-Token": token})
        assert response.status_code == 200
        envelope = response.json()
        assert set(envelope) == {"code", "message", "request_id", "data"}, envelope
        assert envelope["code"] != 50000, (params, envelope)
        answered.add(envelope["code"])
        if envelope["code"] != 0:
            assert envelope["code"] in (40001, 40002), envelope
            assert recorded() == before

    run()
    assert 0 in answered and 40001 in answered, answered  # valid requests got through, hostile ones did not
