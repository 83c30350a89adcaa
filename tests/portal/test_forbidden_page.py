"""Issue 13: a member whose role may not open a page is told who may, in words about a page
(not "this action"); a refused form post says "This action"."""

import pytest

from tests.pages_helpers import fast_password_hashing, logged_in, team, text  # noqa: F401

pytestmark = pytest.mark.django_db


def test_an_operator_opening_payments_is_told_which_roles_may(team):
    response = logged_in(team.users["operator"]).get(f"/a/{team.advertiser.pk}/payments/")
    assert response.status_code == 403
    body = text(response)
    assert "Your role on this account is Operator." in body
    assert "This page is for the account's admins, finance members and analysts." in body
    assert "action" not in body


def test_an_analyst_posting_a_payments_form_is_told_this_action_is_for_admins_and_finance(team):
    response = logged_in(team.users["analyst"]).post(f"/a/{team.advertiser.pk}/payments/add-funds/", {"amount": "10"})
    assert response.status_code == 403
    assert "This action is for the account's admins and finance members." in text(response)


def test_an_admin_only_page_names_admins(team):
    response = logged_in(team.users["finance"]).get(f"/a/{team.advertiser.pk}/api-access/")
    assert response.status_code == 403
    assert "This page is for the account's admins." in text(response)
