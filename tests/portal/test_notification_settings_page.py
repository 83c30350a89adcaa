"""The Notification settings page (SPEC R44, R1; decision 0034): each member sets, per alert and
channel, what they get from the account, and their own low-balance amount; every role sets its
own; another advertiser's member gets 404, an anonymous visitor the login page."""

from html import unescape

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from billing.switching import billing_settings_set
from portal.models import AlertPreference, BCMembership, Notification
from portal.notifications import ALERTS
from tests.factories import AdvertiserFactory, BusinessCenterFactory, UserFactory
from tests.pages_helpers import ROLES, fast_password_hashing, logged_in, member, team, text  # noqa: F401

pytestmark = pytest.mark.django_db


def url(adv) -> str:
    return f"/a/{adv.pk}/notifications/settings/"


def everything_on(adv) -> dict:
    names = [n for n, a in ALERTS.items() if not a.billing_method or a.billing_method == adv.billing_method]
    return {f"{n}-{channel}": "on" for n in names for channel in ("email", "in_app")}


def prefs(user, adv) -> dict:
    return {p.alert: (p.email, p.in_app, p.amount) for p in AlertPreference.objects.filter(user=user, advertiser=adv)}


def test_the_owner_sees_every_alert_of_a_manual_account_with_its_default_channels(team):
    page = team.admin.get(url(team.advertiser))
    assert page.status_code == 200
    html, body = page.content.decode(), text(page)
    # a table of alerts × channels with header cells, each checkbox with its own label
    assert '<th scope="col">Alert</th><th scope="col">Email</th><th scope="col">In-app</th>' in html
    for name in ("low_balance", "credit_expiring", "threshold_charge", "payment_failed", "campaigns", "invoices",
                 "appeal_decided", "document_issued"):
        assert f'<th scope="row">{ALERTS[name].label}</th>' in html
        for channel in ("email", "in_app"):
            # on, except "document issued", which a member asks for (decision 0034)
            box = f'id="{name}-{channel}" name="{name}-{channel}"'
            assert (box + " checked>" in html) is ALERTS[name].default, (name, channel)
            assert box in html and f'<label for="{name}-{channel}">' in html
    # the credit line alert is for monthly invoicing only
    assert "Credit line over 80 % used" not in body
    # the low balance amount in the account's currency, in a fieldset with a legend
    assert '<legend class="card-title">Low balance</legend>' in html
    assert '<label for="id_low_balance_amount">Alert me when the balance is below (USD)</label>' in html
    assert "As an admin or finance member you get alerts by email and in the notification centre." in body


def test_the_notification_centre_links_to_the_page(team):
    html = team.admin.get(f"/a/{team.advertiser.pk}/notifications/").content.decode()
    assert f'href="{url(team.advertiser)}">Notification settings</a>' in html


def test_the_owner_saves_their_choices_and_amount(team):
    adv, owner, client = team.advertiser, team.users["admin"], team.admin
    form = everything_on(adv)
    del form["payment_failed-email"], form["campaigns-in_app"]
    response = client.post(url(adv), {**form, "low_balance_amount": "250.00"})
    assert response.status_code == 302 and response["Location"] == url(adv)
    saved = prefs(owner, adv)
    assert saved["payment_failed"][:2] == (False, True) and saved["campaigns"][:2] == (True, False)
    assert saved["low_balance"] == (True, True, 250)
    assert saved["credit_expiring"][:2] == (True, True)
    # and the page shows them back
    page = client.get(url(adv))
    html = page.content.decode()
    assert 'id="payment_failed-email" name="payment_failed-email">' in html  # not checked
    assert 'id="payment_failed-in_app" name="payment_failed-in_app" checked>' in html
    assert 'value="250.00"' in html and "Notification settings saved." in text(page)
    # nobody else's choices changed
    assert AlertPreference.objects.exclude(user=owner).count() == 0


@pytest.mark.parametrize("typed, says", [
    ("12,50", 'is not a decimal number written like "12.50"'),
    ("-5", "must be positive"),
    ("0", "must be greater than zero"),
    ("1.234", "places"),
])
def test_a_bad_amount_is_explained_beside_the_field_and_nothing_is_saved(team, typed, says):
    adv = team.advertiser
    form = everything_on(adv)
    del form["appeal_decided-email"]
    response = team.admin.post(url(adv), {**form, "low_balance_amount": typed})
    assert response.status_code == 422
    html = response.content.decode()
    start = html.index('id="id_low_balance_amount_error"')
    beside = unescape(html[start:html.index("</p>", start)])
    assert says in beside and "Nothing was saved." in beside
    assert 'aria-invalid="true"' in html
    assert 'aria-describedby="id_low_balance_amount_helptext id_low_balance_amount_error"' in html
    assert f'value="{typed}"' in html
    # what was ticked is shown as ticked, and nothing was stored
    assert 'id="appeal_decided-email" name="appeal_decided-email">' in html
    assert AlertPreference.objects.count() == 0


def test_an_empty_amount_means_no_low_balance_alert(team):
    adv = team.advertiser
    team.admin.post(url(adv), {**everything_on(adv), "low_balance_amount": "100.00"})
    team.admin.post(url(adv), {**everything_on(adv), "low_balance_amount": ""})
    assert prefs(team.users["admin"], adv)["low_balance"][2] is None


@pytest.mark.parametrize("role", ROLES)
def test_every_role_sets_its_own_choices(team, role):
    adv, user = team.advertiser, team.users[role]
    client = team.client(role)
    assert client.get(url(adv)).status_code == 200
    form = everything_on(adv)
    del form["document_issued-email"]
    response = client.post(url(adv), {**form, "low_balance_amount": "75.00"})
    assert response.status_code == 302
    assert prefs(user, adv)["document_issued"][:2] == (False, True)
    assert prefs(user, adv)["low_balance"][2] == 75
    assert set(AlertPreference.objects.values_list("user_id", flat=True)) == {user.pk}


def test_each_role_is_told_which_channels_reach_it(team):
    said = {role: text(team.client(role).get(url(team.advertiser))) for role in ROLES}
    assert "you get alerts by email and in the notification centre" in said["finance"]
    assert "Your role gets alerts in the notification centre; emails go to" in said["analyst"]
    assert "Your role sees no payment data, so these alerts do not reach you." in said["operator"]


def test_a_business_center_member_sets_their_own(team):
    bc = BusinessCenterFactory(name="Settings BC")
    adv = AdvertiserFactory(name="BC Shop", business_center=bc)
    bc_user = UserFactory(username="settings-bc")
    BCMembership.objects.create(user=bc_user, business_center=bc, role="finance")
    client = logged_in(bc_user)
    assert client.get(url(adv)).status_code == 200
    form = everything_on(adv)
    del form["invoices-in_app"]
    assert client.post(url(adv), form).status_code == 302
    assert prefs(bc_user, adv)["invoices"][:2] == (True, False)


def test_a_monthly_invoice_account_has_the_credit_line_alert_and_no_amount(team):
    adv = AdvertiserFactory(name="Invoiced", billing_method="monthly_invoice")
    owner = member(adv, "admin")
    billing_settings_set(advertiser=adv, credit_line_limit="1000.00")
    client = logged_in(owner)
    page = client.get(url(adv))
    html = page.content.decode()
    assert '<th scope="row">Credit line over 80 % used</th>' in html
    assert "low_balance" not in html and "Low balance" not in html
    form = everything_on(adv)
    del form["credit_line_high-email"]
    assert client.post(url(adv), form).status_code == 302
    assert prefs(owner, adv) == {name: (name != "credit_line_high", True, None)
                                 for name in ALERTS if name != "low_balance"}


def test_another_advertisers_member_gets_404_and_anonymous_goes_to_login(team):
    adv = team.advertiser
    outsider = logged_in(team.outsider)
    assert outsider.get(url(adv)).status_code == 404
    assert outsider.post(url(adv), {**everything_on(adv), "low_balance_amount": "10.00"}).status_code == 404
    assert AlertPreference.objects.count() == 0
    anonymous = Client()
    for response in (anonymous.get(url(adv)), anonymous.post(url(adv), everything_on(adv))):
        assert response.status_code == 302 and response["Location"].startswith("/login/?next=")
    assert AlertPreference.objects.count() == 0


def test_the_page_runs_a_constant_number_of_queries(team):
    adv, client = team.advertiser, team.admin
    client.get(url(adv))  # warm up: session, content types
    with CaptureQueriesContext(connection) as few:
        assert client.get(url(adv)).status_code == 200
    # with a choice stored for every alert, and notices (the bell) on the account
    client.post(url(adv), {"low_balance_amount": "20.00"})
    for i in range(30):
        Notification.objects.create(advertiser=adv, kind="credit_frozen", key=f"qc:{i}", subject="Frozen",
                                    context={"reason": "x"}, user=team.users["admin"] if i % 2 else None)
    with CaptureQueriesContext(connection) as many:
        page = client.get(url(adv))
    assert 'value="20.00"' in page.content.decode()
    assert len(many) == len(few), [q["sql"] for q in many.captured_queries]


def test_the_notification_centre_keeps_a_constant_number_of_queries_with_choices(team):
    adv, client = team.advertiser, team.admin
    centre = f"/a/{adv.pk}/notifications/"
    Notification.objects.create(advertiser=adv, kind="credit_frozen", key="qn:first", subject="First",
                                context={"reason": "x"})
    client.get(centre)
    with CaptureQueriesContext(connection) as few:
        client.get(centre)
    client.post(url(adv), {"low_balance_amount": "20.00"})  # every alert off on both channels
    for i in range(30):
        Notification.objects.create(advertiser=adv, kind="appeal_decided" if i % 3 else "credit_frozen",
                                    key=f"qn:{i}", subject=f"Notice {i}", user=team.users["admin"] if i % 2 else None,
                                    context={"appeal_id": i, "decision": "approved", "note": "", "reason": "x"})
    with CaptureQueriesContext(connection) as many:
        page = client.get(centre)
    # only the credit_frozen notices (not an alert) are left: 10 of 30, and the first
    assert "11 notifications" in text(page)
    assert len(many) == len(few), [q["sql"] for q in many.captured_queries]
