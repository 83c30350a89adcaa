"""The notification centre (SPEC R36, R1; issue 5 §4): a bell in the header with the account's
unread count and a page listing its notifications newest first, for the people who may see payment
data; "mark all read" over htmx or a plain POST; constant queries."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from portal.models import Notification
from tests.factories import UserFactory
from tests.pages_helpers import fast_password_hashing, logged_in, team, text  # noqa: F401

pytestmark = pytest.mark.django_db

_keys = iter(range(1, 10**6))


def note(advertiser, kind="credit_frozen", *, minutes_ago=0, read=False, **context):
    defaults = {
        "credit_frozen": {"reason": "unusual chargebacks"},
        "appeal_decided": {"appeal_id": 7, "decision": "approved", "note": "Documents check out.", "withdrawn": False},
        "credit_withdrawn": {"amount": "USD 40.00", "reason": "policy"},
    }[kind]
    subjects = {"credit_frozen": "Your ad credit has been frozen", "appeal_decided": "Your appeal #7 was approved",
                "credit_withdrawn": "USD 40.00 of ad credit was withdrawn"}
    created = timezone.now() - timedelta(minutes=minutes_ago)
    return Notification.objects.create(
        advertiser=advertiser, kind=kind, key=f"test:{next(_keys)}", subject=subjects[kind],
        context={**defaults, **context}, link=f"/a/{advertiser.pk}/payments/promotions/", created_at=created,
        read_at=created if read else None,
    )


def bell(response) -> str:
    html = response.content.decode()
    start = html.find('id="notification-bell"')
    return "" if start < 0 else html[start:html.find("</a>", start)]


def test_the_bell_shows_the_accounts_unread_count_to_payment_roles(team):
    # given two unread notifications and one read, and one of another advertiser
    note(team.advertiser)
    note(team.advertiser, "appeal_decided")
    note(team.advertiser, "credit_withdrawn", read=True)
    note(team.outsider.memberships.get().advertiser)
    for role in ("admin", "finance", "analyst"):
        # when a payments person opens the dashboard
        page = team.client(role).get(f"/a/{team.advertiser.pk}/")
        # then the header bell says 2 unread and links to the notification centre
        b = bell(page)
        assert 'class="bell-count">2<' in b, role
        assert f'href="/a/{team.advertiser.pk}/notifications/"' in b and "2 unread" in b


def test_an_operator_sees_no_bell_and_no_notifications(team):
    note(team.advertiser)
    client = team.client("operator")
    assert bell(client.get(f"/a/{team.advertiser.pk}/campaigns/")) == ""
    assert client.get(f"/a/{team.advertiser.pk}/notifications/").status_code == 403
    assert client.post(f"/a/{team.advertiser.pk}/notifications/read/").status_code == 403
    assert Notification.objects.filter(read_at__isnull=True).count() == 1


def test_another_advertisers_member_gets_404_and_anonymous_goes_to_login(team):
    note(team.advertiser)
    outsider = logged_in(team.outsider)
    assert outsider.get(f"/a/{team.advertiser.pk}/notifications/").status_code == 404
    assert outsider.post(f"/a/{team.advertiser.pk}/notifications/read/").status_code == 404
    assert Notification.objects.get().read_at is None
    anonymous = Client()
    for url in [f"/a/{team.advertiser.pk}/notifications/", f"/a/{team.advertiser.pk}/notifications/read/"]:
        response = anonymous.get(url) if url.endswith("notifications/") else anonymous.post(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/?next=")


def test_the_page_lists_the_accounts_notifications_newest_first_with_their_body(team):
    note(team.advertiser, minutes_ago=60)
    note(team.advertiser, "appeal_decided", minutes_ago=5)
    other = note(team.outsider.memberships.get().advertiser, "credit_withdrawn")
    page = team.client("finance").get(f"/a/{team.advertiser.pk}/notifications/")
    assert page.status_code == 200
    body = text(page)
    # newest first: the appeal decision, then the freeze
    assert body.index("Your appeal #7 was approved") < body.index("Your ad credit has been frozen")
    # the email body is shown, rendered from its template
    assert "Documents check out." in body and "Your ad credit is usable again" in body
    assert "unusual chargebacks" in body
    assert f'href="/a/{team.advertiser.pk}/payments/promotions/"' in page.content.decode()
    assert "2 unread" in body and other.subject not in body


def test_mark_all_read_over_htmx_swaps_the_list_and_clears_the_bell(team):
    note(team.advertiser)
    note(team.advertiser, "appeal_decided")
    elsewhere = note(team.outsider.memberships.get().advertiser)
    client = team.client("admin")
    response = client.post(f"/a/{team.advertiser.pk}/notifications/read/", headers={"HX-Request": "true"})
    assert response.status_code == 200
    html = response.content.decode()
    # the answer is the list alone plus the bell, swapped out of band, without a count
    assert html.lstrip().startswith('<section id="notification-list"') and "<html" not in html
    assert 'id="notification-bell"' in html and 'hx-swap-oob="true"' in html and "bell-count" not in html
    assert "All read" in html and "Mark all read" not in html
    assert not Notification.objects.filter(advertiser=team.advertiser, read_at__isnull=True).exists()
    elsewhere.refresh_from_db()
    assert elsewhere.read_at is None
    # and the dashboard bell has no count any more
    assert "bell-count" not in bell(client.get(f"/a/{team.advertiser.pk}/"))


def test_mark_all_read_without_javascript_redirects_back(team):
    note(team.advertiser)
    client = team.client("analyst")
    response = client.post(f"/a/{team.advertiser.pk}/notifications/read/")
    assert response.status_code == 302 and response["Location"] == f"/a/{team.advertiser.pk}/notifications/"
    assert Notification.objects.get().read_at is not None
    assert client.get(f"/a/{team.advertiser.pk}/notifications/read/").status_code == 405


def test_staff_see_the_bell_of_the_account_they_open(team):
    note(team.advertiser)
    staff = logged_in(UserFactory(is_staff=True))
    assert 'class="bell-count">1<' in bell(staff.get(f"/a/{team.advertiser.pk}/"))


def test_the_page_runs_a_constant_number_of_queries(team):
    client = team.client("admin")
    url = f"/a/{team.advertiser.pk}/notifications/"
    note(team.advertiser)
    client.get(url)  # warm up: session, content types
    with CaptureQueriesContext(connection) as few:
        assert client.get(url).status_code == 200
    for i in range(30):
        note(team.advertiser, "appeal_decided" if i % 2 else "credit_withdrawn", minutes_ago=i)
    with CaptureQueriesContext(connection) as many:
        page = client.get(url)
    assert "Page 1 of 2" in text(page)  # 31 notifications, 25 a page
    assert len(many) == len(few), [q["sql"] for q in many.captured_queries]
