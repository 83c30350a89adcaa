"""Tools → Payments → Billing profile (SPEC R37): who documents are billed to, on the dashboard
(admin and finance edit, analyst reads, operator refused) and in the Django admin (audited through
`profile_set`; tax rates editable; issued documents read-only)."""

import re

import pytest
from django.test import Client
from django.urls import reverse

from billing.models import BillingProfile, Document
from billing.profile import profile_set
from portal.models import AuditLog
from tests.factories import AdvertiserFactory, BusinessCenterFactory, UserFactory
from tests.pages_helpers import (  # noqa: F401
    element,
    fast_password_hashing,
    logged_in,
    member,
    team,
    text,
)

pytestmark = pytest.mark.django_db

VALID = {
    "legal_name": "Acme Shoes GmbH",
    "address_line1": "Friedrichstraße 10",
    "address_line2": "",
    "city": "Berlin",
    "postal_code": "10117",
    "country": "DE",
    "tax_id": "DE136695976",
    "invoice_emails": "billing@acme.example, ap@acme.example",
    "po_number": "PO-42",
}


def url(t):
    return f"/a/{t.advertiser.pk}/payments/billing-profile/"


def own_profile(t):
    return BillingProfile.objects.filter(advertiser=t.advertiser).first()


def field_block(html: str, field: str) -> str:
    m = re.search(rf'<div class="field( has-error)?">\s*<label for="id_{field}">.*?</div>', html, re.S)
    assert m, f"no field {field}"
    return m.group(0)


# --- the dashboard page ------------------------------------------------------------------------
@pytest.mark.parametrize("role", ["admin", "finance"])
def test_admin_and_finance_save_the_profile_and_it_is_audited(team, role):
    client = team.client(role)
    page = client.get(url(team))
    assert page.status_code == 200
    html = page.content.decode()
    assert re.search(r'<select name="country"[^>]*id="id_country"', html)
    assert '<option value="DE">Germany</option>' in html
    assert 'type="submit"' in element(html, "billing-profile-form") and "disabled" not in re.search(r'<input[^>]*name="legal_name"[^>]*>', html).group(0)

    response = client.post(url(team), VALID, follow=True)

    assert response.redirect_chain == [(url(team), 302)]
    assert "Billing profile saved." in text(response)
    profile = own_profile(team)
    assert (profile.legal_name, profile.city, profile.country, profile.tax_id, profile.po_number) == (
        "Acme Shoes GmbH", "Berlin", "DE", "DE136695976", "PO-42")
    assert profile.invoice_emails == ["billing@acme.example", "ap@acme.example"]
    log = AuditLog.objects.get(action="billing_profile_set")
    assert log.actor == team.users[role] and log.advertiser_id == team.advertiser.pk
    assert log.reason == "Edited on the Billing profile page"
    assert log.after["tax_id"] == "DE136695976" and log.before == {}
    # the page now shows the saved profile, the recipients as one line
    html = response.content.decode()
    assert 'value="billing@acme.example, ap@acme.example"' in html
    assert '<option value="DE" selected>Germany</option>' in html
    assert "profile-own" in html


def test_the_page_is_in_the_payments_navigation(team):
    html = team.admin.get(f"/a/{team.advertiser.pk}/payments/").content.decode()
    assert f'href="{url(team)}"' in html
    page = team.admin.get(url(team)).content.decode()
    assert re.search(rf'<a href="{re.escape(url(team))}" class="nav-item nav-sub is-active" aria-current="page">', page)


def test_analyst_reads_the_profile_and_cannot_save(team):
    profile_set(actor=None, data=VALID, reason="setup", advertiser=team.advertiser)
    client = team.client("analyst")
    page = client.get(url(team))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'type="submit"' not in element(html, "billing-profile-form")
    assert "Only an admin or finance member of the account can change its billing profile." in text(page)
    legal = re.search(r'<input[^>]*name="legal_name"[^>]*>', html).group(0)
    assert "disabled" in legal and 'value="Acme Shoes GmbH"' in legal
    assert "disabled" in re.search(r'<select name="country"[^>]*>', html).group(0)

    response = client.post(url(team), {**VALID, "legal_name": "Changed by analyst"})

    assert response.status_code == 403
    assert own_profile(team).legal_name == "Acme Shoes GmbH"
    assert AuditLog.objects.filter(action="billing_profile_set").count() == 1


def test_operator_is_refused_like_on_other_payments_pages(team):
    client = team.client("operator")
    assert client.get(url(team)).status_code == 403
    assert client.get(f"/a/{team.advertiser.pk}/payments/billing-method/").status_code == 403
    assert client.post(url(team), VALID).status_code == 403
    assert own_profile(team) is None
    assert f'href="{url(team)}"' not in client.get(f"/a/{team.advertiser.pk}/").content.decode()


def test_other_advertisers_user_gets_404_and_anonymous_goes_to_login(team):
    outsider = logged_in(team.outsider)
    assert outsider.get(url(team)).status_code == 404
    assert outsider.post(url(team), VALID).status_code == 404
    anonymous = Client().get(url(team))
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/login/?next=")
    assert Client().post(url(team), VALID).status_code == 302
    assert not BillingProfile.objects.exists()


def test_an_invalid_german_vat_id_is_shown_on_the_tax_id_field_and_nothing_is_saved(team):
    response = team.admin.post(url(team), {**VALID, "tax_id": "DE123456789"})
    assert response.status_code == 422
    html = response.content.decode()
    block = field_block(html, "tax_id")
    assert 'class="field has-error"' in block
    assert "is not a valid Germany tax ID" in text(block)
    tax_input = re.search(r'<input[^>]*name="tax_id"[^>]*>', html).group(0)
    assert 'aria-invalid="true"' in tax_input and "id_tax_id_error" in tax_input
    assert 'value="Acme Shoes GmbH"' in html  # what was typed is kept
    assert own_profile(team) is None
    assert not AuditLog.objects.filter(action="billing_profile_set").exists()


def test_a_valid_german_vat_id_is_saved_in_its_compact_form(team):
    response = team.admin.post(url(team), {**VALID, "tax_id": "de 136 695 976"})
    assert response.status_code == 302
    assert own_profile(team).tax_id == "DE136695976"


def test_a_vat_id_without_its_prefix_is_saved_with_it(team):
    assert team.admin.post(url(team), {**VALID, "tax_id": "136695976"}).status_code == 302
    assert own_profile(team).tax_id == "DE136695976"


@pytest.mark.parametrize("changes,field", [
    ({"country": "XX"}, "country"),
    ({"invoice_emails": "billing@acme.example, not-an-address"}, "invoice_emails"),
    ({"legal_name": ""}, "legal_name"),
    ({"city": "   "}, "city"),
])
def test_other_errors_are_shown_under_their_field(team, changes, field):
    response = team.admin.post(url(team), {**VALID, **changes})
    assert response.status_code == 422
    assert 'class="field has-error"' in field_block(response.content.decode(), field)
    assert own_profile(team) is None


def test_the_business_centers_profile_is_shown_as_inherited(db):
    bc = BusinessCenterFactory(name="Acme Group")
    adv = AdvertiserFactory(name="Acme Shoes", business_center=bc)
    admin = member(adv, "admin")
    profile_set(actor=None, data={**VALID, "legal_name": "Acme Group Holding BV", "country": "NL",
                                  "tax_id": "", "city": "Amsterdam"}, reason="setup", business_center=bc)
    client = logged_in(admin)
    page = client.get(f"/a/{adv.pk}/payments/billing-profile/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Inherited from the Business Center Acme Group." in text(element(html, "profile-inherited"))
    assert 'value="Acme Group Holding BV"' in html and '<option value="NL" selected>' in html
    # saving gives the advertiser its own profile; the BC's is unchanged
    assert client.post(f"/a/{adv.pk}/payments/billing-profile/", VALID).status_code == 302
    assert BillingProfile.objects.get(advertiser=adv).legal_name == "Acme Shoes GmbH"
    assert BillingProfile.objects.get(business_center=bc).legal_name == "Acme Group Holding BV"
    assert "profile-inherited" not in client.get(f"/a/{adv.pk}/payments/billing-profile/").content.decode()


def test_no_profile_yet_shows_an_empty_form(team):
    page = team.admin.get(url(team))
    assert "No billing profile yet" in text(element(page.content.decode(), "profile-none"))


# --- the Django admin ----------------------------------------------------------------------------
@pytest.fixture
def root(db):
    user = UserFactory(username="root", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(user)
    return user, client


def admin_post(data, **overrides):
    return {**data, "change_reason": "Customer asked, ticket #12", **overrides}


def test_a_superuser_changes_a_billing_profile_in_the_admin_and_it_is_audited(team, root):
    user, client = root
    profile = profile_set(actor=None, data=VALID, reason="setup", advertiser=team.advertiser)
    change_url = reverse("admin:billing_billingprofile_change", args=[profile.pk])
    page = client.get(change_url)
    assert page.status_code == 200 and 'value="billing@acme.example, ap@acme.example"' in page.text

    response = client.post(change_url, admin_post(VALID, legal_name="Acme Shoes AG", tax_id="136695976"))

    assert response.status_code == 302, response.content.decode()[:3000]
    profile.refresh_from_db()
    assert (profile.legal_name, profile.tax_id) == ("Acme Shoes AG", "DE136695976")
    assert profile.invoice_emails == ["billing@acme.example", "ap@acme.example"]
    log = AuditLog.objects.filter(action="billing_profile_set").latest("pk")
    assert log.actor == user and log.advertiser_id == team.advertiser.pk
    assert log.reason == "Customer asked, ticket #12"
    assert log.before["legal_name"] == "Acme Shoes GmbH" and log.after["legal_name"] == "Acme Shoes AG"


def test_an_invalid_tax_id_in_the_admin_is_a_field_error_and_nothing_changes(team, root):
    _, client = root
    profile = profile_set(actor=None, data=VALID, reason="setup", advertiser=team.advertiser)
    change_url = reverse("admin:billing_billingprofile_change", args=[profile.pk])
    response = client.post(change_url, admin_post(VALID, tax_id="DE123456789"))
    assert response.status_code == 200
    assert "tax_id" in response.context["adminform"].form.errors
    profile.refresh_from_db()
    assert profile.tax_id == "DE136695976"
    assert AuditLog.objects.filter(action="billing_profile_set").count() == 1


def test_a_superuser_adds_a_business_center_profile_in_the_admin(root):
    _, client = root
    bc = BusinessCenterFactory(name="Acme Group")
    response = client.post(reverse("admin:billing_billingprofile_add"),
                           admin_post(VALID, business_center=str(bc.pk), advertiser=""))
    assert response.status_code == 302, response.content.decode()[:3000]
    assert BillingProfile.objects.get(business_center=bc).tax_id == "DE136695976"
    assert AuditLog.objects.filter(action="billing_profile_set").count() == 1


def test_tax_rates_are_listed_and_editable_by_staff(root):
    _, client = root
    changelist = client.get(reverse("admin:billing_taxrate_changelist") + "?country=DE")
    assert changelist.status_code == 200
    response = client.post(reverse("admin:billing_taxrate_add"), {
        "country": "DE", "rate": "21.000", "effective_from": "2099-01-01", "note": "test rate",
        "change_reason": "",
    })
    assert response.status_code == 302, response.content.decode()[:3000]
    assert AuditLog.objects.filter(action="tax_rate_create").exists()


def test_documents_are_read_only_in_the_admin(root):
    user, client = root
    from billing.admin import DocumentAdmin
    from django.contrib import admin as django_admin

    model_admin = django_admin.site._registry[Document]
    assert isinstance(model_admin, DocumentAdmin)
    request = type("R", (), {"user": user})()
    assert model_admin.has_view_permission(request)
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request)
    assert not model_admin.has_delete_permission(request)
    assert client.get(reverse("admin:billing_document_changelist")).status_code == 200
    assert client.get(reverse("admin:billing_document_add")).status_code == 403


def test_a_support_agent_sees_billing_profiles_read_only(team):
    from django.contrib.auth.models import Group

    agent = UserFactory(is_staff=True)
    agent.groups.add(Group.objects.get(name="Support agent"))
    profile = profile_set(actor=None, data=VALID, reason="setup", advertiser=team.advertiser)
    client = logged_in(agent)
    change_url = reverse("admin:billing_billingprofile_change", args=[profile.pk])
    page = client.get(change_url)
    assert page.status_code == 200 and 'name="_save"' not in page.text and "Acme Shoes GmbH" in page.text
    assert client.post(change_url, admin_post(VALID, legal_name="Changed")).status_code == 403
    assert client.get(reverse("admin:billing_taxrate_add")).status_code == 403
    profile.refresh_from_db()
    assert profile.legal_name == "Acme Shoes GmbH"
