"""Issue 13: every Payments page says where it is, the last crumb being the page itself
(templates/billing/_breadcrumb.html, one pattern)."""

import re

import pytest

from tests.pages_helpers import fast_password_hashing, logged_in, team, text  # noqa: F401

pytestmark = pytest.mark.django_db

PAGES = [
    ("payments/", "Overview"),
    ("payments/transactions/", "Transactions"),
    ("payments/bills/", "Bills & invoices"),
    ("payments/documents/", "Billing documents"),
    ("payments/billing-method/", "Billing method"),
    ("payments/payment-method/", "Billing method › Payment method"),
    ("payments/billing-profile/", "Billing profile"),
    ("payments/add-funds/", "Add funds"),
    ("payments/promotions/", "Promotions"),
    ("payments/refund/", "Refund & close"),
]


@pytest.mark.parametrize("path,trail", PAGES)
def test_each_payments_page_ends_its_breadcrumb_with_its_own_name(team, path, trail):
    response = logged_in(team.users["admin"]).get(f"/a/{team.advertiser.pk}/{path}")
    assert response.status_code == 200
    html = response.content.decode()
    nav = re.search(r'<nav aria-label="Breadcrumb">(.*?)</nav>', html, re.S)
    assert nav, "no breadcrumb"
    assert text(nav.group(1)) == f"Tools › Payments › {trail}"
    current = re.search(r'<span aria-current="page">(.*?)</span>', nav.group(1)).group(1)
    assert text(current) == trail.split(" › ")[-1]
