"""Every advertiser page, found by walking Django's URL resolver, answers only its own members
(SPEC R1; "every page and endpoint is tested against another advertiser's user and an anonymous
one").

The hand-written page lists of the other page tests cover what their authors thought of; this
sweep covers every pattern whose route takes an `advertiser_id` (the `/a/<advertiser_id>/…` pages
of portal/web_urls.py and anything included later), so a page added without such a test is still
checked. For each one it builds a URL for advertiser A out of real objects of A, then:

- an anonymous client is sent to the login page, for GET and POST;
- the admin of another advertiser B gets 404 for every method the page accepts (405 for one it
  does not), never sees A's name, and no row of the portal, billing or promotions tables changes;
- A's own admin gets a non-error answer, so the sweep reached a real page rather than a 404 made by
  a wrong object id. A's requests run in a savepoint that is rolled back, so one page's POST (revoke
  a token, pay a bill) does not change what the next page shows. A page accepts POST when its
  owner's POST is not answered 405.

A new advertiser page whose route has a parameter not in FILL fails
`test_every_advertiser_page_can_be_built` with the pattern's name: add how to fill it (a real object
of A in `world`), or list the pattern in EXCLUDED with the reason.

The JSON API is not swept here: `tests/portal/test_schemathesis.py`
(`test_no_operation_answers_without_a_token`) already calls every operation of
`/api/v1/openapi.json` without a token and requires 401 `unauthorized`, and `tests/api_matrix.py`
gives each API module its other-advertiser 404 tests. Its routes name the advertiser `{id}`, not
`advertiser_id`, so the walk below does not pick them up.
"""

from dataclasses import dataclass
from types import SimpleNamespace

import pytest
from django.contrib.auth.views import redirect_to_login
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve, reverse
from django.urls.resolvers import RoutePattern

from billing.models import Document, SpendEvent
from portal.api_access import api_token_create
from portal.webhooks import webhook_create, webhooks_fan_out
from promotions.appeals import appeal_file
from tests.api_matrix import database_state
from tests.billing.bill_pages_helpers import auto_team, threshold_bill
from tests.factories import grant
from tests.pages_helpers import fast_password_hashing, logged_in  # noqa: F401
from tests.portal.webhook_helpers import emit
from tests.promotions.promotions_helpers import PNG, freeze, private_media, upload  # noqa: F401

pytestmark = pytest.mark.django_db

SCOPE = "advertiser_id"

# How to fill each path parameter of an advertiser page: a real object of advertiser A.
FILL = {
    "advertiser_id": lambda w: w.adv.pk,
    "bill_id": lambda w: w.bill.pk,
    "document_id": lambda w: w.document.pk,
    "token_id": lambda w: w.token.pk,
    "credit_id": lambda w: w.coupon.pk,
    "appeal_id": lambda w: w.appeal.pk,
    "attachment_id": lambda w: w.attachment.pk,
    "webhook_id": lambda w: w.webhook.pk,
    "delivery_id": lambda w: w.delivery.pk,
    "transaction_id": lambda w: w.charge.transaction_id,  # a charge's ledger transaction (its "Why?")
}

# Advertiser pages this sweep does not call, by full route, with the reason. None today.
EXCLUDED: dict[str, str] = {}


# --- the walk -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Page:
    route: str  # the full route, e.g. "a/<int:advertiser_id>/payments/bills/<int:bill_id>/"
    name: str | None  # with its namespaces, for reverse()
    params: tuple[str, ...]


def _params(pattern) -> list[str]:
    if isinstance(pattern, RoutePattern):
        return list(pattern.converters)
    return list(pattern.regex.groupindex)


def _walk(resolver, prefix="", namespaces=(), params=()):
    for entry in resolver.url_patterns:
        route = prefix + str(entry.pattern)
        found = (*params, *_params(entry.pattern))
        if isinstance(entry, URLResolver):
            ns = (*namespaces, entry.namespace) if entry.namespace else namespaces
            yield from _walk(entry, route, ns, found)
        elif isinstance(entry, URLPattern):
            name = ":".join((*namespaces, entry.name)) if entry.name else None
            yield Page(route, name, found)


def advertiser_pages() -> list[Page]:
    """Every URL pattern, through every include, whose route takes an advertiser id."""
    return [p for p in _walk(get_resolver()) if SCOPE in p.params]


def swept_pages() -> list[Page]:
    return [p for p in advertiser_pages() if p.route not in EXCLUDED]


def url_of(page: Page, w) -> str:
    return reverse(page.name, kwargs={name: FILL[name](w) for name in page.params})


def test_every_advertiser_page_can_be_built():
    pages = advertiser_pages()
    # the walk reached the dashboard through its include
    assert {"advertiser_home", "payments_bill", "appeal_attachment"} <= {p.name for p in pages}, pages
    problems = []
    for page in pages:
        if page.route in EXCLUDED:
            continue
        if page.name is None:
            problems.append(f"{page.route}: give the pattern a name, so the sweep can reverse it")
        unknown = [name for name in page.params if name not in FILL]
        if unknown:
            problems.append(f"{page.name or page.route} ({page.route}): no way to fill {unknown} — add it to FILL "
                            "(a real object of advertiser A in `world`) or list the pattern in EXCLUDED")
    assert not problems, "\n".join(problems)
    # nothing listed is stale
    routes = {p.route for p in pages}
    assert not [r for r in EXCLUDED if r not in routes], "EXCLUDED names routes that no longer exist"
    used = {name for p in pages if p.route not in EXCLUDED for name in p.params}
    assert set(FILL) <= used, f"FILL has parameters no page takes: {sorted(set(FILL) - used)}"


# --- the world: advertiser A with one object of every kind a page needs -------------------------

@pytest.fixture
def world(db, private_media):
    t = auto_team(threshold="50.00", name="Acme Shoes")  # automatic payment, a card on file
    admin = t.users["admin"]
    bill = threshold_bill(t)
    coupon = grant(t.advertiser, "assignable", "20.00")
    freeze(t.advertiser)
    appeal = appeal_file(advertiser=t.advertiser, user=admin, message="The cards were our own.",
                         files=[upload("receipt.png", PNG)])
    token, _ = api_token_create(advertiser=t.advertiser, user=admin, label="Sweep", idempotency_key="sweep-key-1")
    webhook = webhook_create(advertiser=t.advertiser, url="https://hooks.example.com/sweep",
                             events=["deposit.received"], by=admin)
    emit(t.advertiser)
    webhooks_fan_out()
    w = SimpleNamespace(adv=t.advertiser, admin=admin, outsider=t.outsider, bill=bill, coupon=coupon,
                        appeal=appeal, attachment=appeal.attachments.get(), token=token,
                        webhook=webhook, delivery=webhook.deliveries.get(),
                        document=Document.objects.get(advertiser=t.advertiser, bill=bill),  # the bill's receipt
                        charge=SpendEvent.objects.filter(advertiser=t.advertiser).order_by("pk").first())
    w.pages = [(page, url_of(page, w)) for page in swept_pages()]
    for page, url in w.pages:
        assert resolve(url).route == page.route, (page.name, url)  # reverse() found this very pattern
    return w


def call(client: Client, method: str, url: str):
    response = client.get(url) if method == "get" else client.post(url, {})
    # A download holds its file open until read to the end, when the test client closes it (calling
    # response.close() here would send request_finished and close the test's database connection).
    if response.streaming:
        response.body = b"".join(response.streaming_content)
    return response


def owners_answer(w, method: str, url: str):
    """A's admin calls the page in a savepoint that is then rolled back."""
    with transaction.atomic():
        response = call(logged_in(w.admin), method, url)
        transaction.set_rollback(True)
    return response


def accepts(w, url: str) -> set[str]:
    return {m for m in ("get", "post") if owners_answer(w, m, url).status_code != 405}


# --- the sweep ----------------------------------------------------------------------------------

def test_the_advertisers_own_admin_reaches_every_page(world):
    problems = []
    for page, url in world.pages:
        get, post = owners_answer(world, "get", url), owners_answer(world, "post", url)
        post_only = get.status_code == 405 and post.status_code != 405
        if not (get.status_code < 400 or post_only):
            problems.append(f"GET {url} ({page.name}): {get.status_code}")
        if post.status_code >= 500 or post.status_code in (401, 403, 404):
            problems.append(f"POST {url} ({page.name}): {post.status_code}")
    assert not problems, "\n".join(problems)


def test_anonymous_is_sent_to_login_from_every_page(world):
    anonymous = Client()
    before = database_state()
    problems = []
    for page, url in world.pages:
        for method in ("get", "post"):
            response = call(anonymous, method, url)
            location = response.get("Location", "")
            if response.status_code != 302 or location != redirect_to_login(url)["Location"] \
                    or not location.startswith("/login/?next="):
                problems.append(f"{method.upper()} {url} ({page.name}): {response.status_code} {location}")
    assert not problems, "\n".join(problems)
    assert database_state() == before


def test_another_advertisers_admin_gets_404_everywhere_and_changes_nothing(world):
    other = logged_in(world.outsider)
    problems = []
    before = database_state()
    for page, url in world.pages:
        methods = accepts(world, url)
        assert methods, f"{url} ({page.name}) answers its owner 405 for GET and POST"
        for method in ("get", "post"):
            response = call(other, method, url)
            allowed = {404} if method in methods else {404, 405}  # 405: the page takes no such request
            if response.status_code not in allowed:
                problems.append(f"{method.upper()} {url} ({page.name}): {response.status_code}, not {allowed}")
            elif world.adv.name.encode() in (response.body if response.streaming else response.content):
                problems.append(f"{method.upper()} {url} ({page.name}): the answer names the advertiser")
        after = database_state()
        if after != before:
            problems.append(f"{url} ({page.name}): another advertiser's request changed the database")
            before = after
    assert not problems, "\n".join(problems)
