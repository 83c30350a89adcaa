"""The permission matrix of the portal API (API.md "who" column, SPEC R1), for endpoint tables.

A test module lists its endpoints and gets the four tests every endpoint needs:

    ENDPOINTS = [Endpoint("list bills", "get", lambda w: f"/advertisers/{w.adv.pk}/bills", ...)]
    (test_no_token_is_401, test_right_role_passes, test_wrong_role_is_403_and_changes_nothing,
     test_other_advertisers_user_gets_404) = matrix(ENDPOINTS)

Each test gets a fresh `tests.api_helpers.World`; `prepare(world)` adds what the endpoint needs
(a bill, a freeze, an appeal...). "Changes nothing" compares every row of the portal, billing and
promotions tables before and after the call.
"""

from dataclasses import dataclass

import pytest
from django.apps import apps

from tests.api_helpers import BASE, error_of


@dataclass
class Endpoint:
    name: str
    method: str
    path: object  # callable(world) -> str
    body: object = None  # callable(world) -> dict (JSON), or form fields and files when multipart
    allowed: tuple = ()
    forbidden: tuple = ()
    ok_status: int = 200
    check: object = None  # callable(world, json) -> None; asserts what the caller sees
    prepare: object = None  # callable(world) -> None
    multipart: bool = False
    other_status: int = 404  # 403 for a staff-only call with no advertiser in its path


def call(api, w, ep: Endpoint, token):
    path = ep.path(w)
    if ep.method == "get":
        return api.get(path, token=token)
    if ep.method == "delete":
        return api.client.delete(BASE + path, headers={"Access-Token": token} if token else {})
    if ep.method == "put":
        return api.put(path, ep.body(w) if ep.body else {}, token=token)
    if ep.multipart:
        headers = {"Access-Token": token} if token else {}
        return api.client.post(BASE + path, data=ep.body(w), headers=headers)
    return api.post(path, ep.body(w) if ep.body else {}, token=token)


def database_state() -> dict:
    """Every row of the project's own tables."""
    state = {}
    for label in ("portal", "billing", "promotions"):
        for model in apps.get_app_config(label).get_models():
            state[model._meta.label] = list(model.objects.order_by("pk").values())
    return state


def matrix(endpoints: list[Endpoint]):
    by_name = {e.name: e for e in endpoints}

    def _world(world, ep):
        if ep.prepare:
            ep.prepare(world)
        return world

    @pytest.mark.parametrize("name", by_name)
    def test_no_token_is_401(api, world, name):
        ep = by_name[name]
        w = _world(world, ep)
        before = database_state()
        # given no token, or one the portal never issued
        for token in (None, "act_not-a-real-token"):
            response = call(api, w, ep, token)
            # then 401 with the error shape, and nothing happened
            assert response.status_code == 401, response.content
            assert error_of(response)["code"] == "unauthorized"
        assert database_state() == before

    @pytest.mark.parametrize("name,role", [(e.name, r) for e in endpoints for r in e.allowed])
    def test_right_role_passes(api, world, name, role):
        ep = by_name[name]
        w = _world(world, ep)
        # when a caller with an allowed role calls it
        response = call(api, w, ep, w.tokens[role])
        # then it succeeds and shows the expected data
        assert response.status_code == ep.ok_status, response.content
        ep.check(w, response.json())

    @pytest.mark.parametrize("name,role", [(e.name, r) for e in endpoints for r in e.forbidden])
    def test_wrong_role_is_403_and_changes_nothing(api, world, name, role):
        ep = by_name[name]
        w = _world(world, ep)
        before = database_state()
        # when a member whose role does not allow it calls it
        response = call(api, w, ep, w.tokens[role])
        # then 403 forbidden, and nothing was written
        assert response.status_code == 403, response.content
        assert error_of(response)["code"] == "forbidden"
        assert database_state() == before

    @pytest.mark.parametrize("name", by_name)
    @pytest.mark.parametrize("who", ["other", "stranger"])
    def test_other_advertisers_user_gets_404(api, world, name, who):
        ep = by_name[name]
        w = _world(world, ep)
        before = database_state()
        # when the admin of another advertiser (or a user of nothing) calls it on our objects
        response = call(api, w, ep, w.tokens[who])
        # then 404 (or 403 for a staff-only call without an object): not theirs, and nothing changed
        assert response.status_code == ep.other_status, response.content
        assert error_of(response)["code"] == {404: "not_found", 403: "forbidden"}[ep.other_status]
        assert w.adv.name not in response.content.decode()
        assert database_state() == before

    return test_no_token_is_401, test_right_role_passes, test_wrong_role_is_403_and_changes_nothing, \
        test_other_advertisers_user_gets_404
