"""The whole support console (Django admin) in a real browser, at 1366 px and at 375 px (issue 13):
for EVERY registered ModelAdmin — its list, its add page (when a superuser may add) and the page of
one existing object — and for the console's own pages (the audit log's CSV export form, the action
confirmation pages that ask for a reason, the appeal's withdraw confirmation, the forms of Grant
credit, Create a program and Transfer cash), axe-core finds no serious or critical violation and,
on a phone, nothing scrolls the page sideways. On a phone a list's rows are stacked: the link
column and the status column of every row are inside the screen.

The pages are enumerated from `django.contrib.admin.site._registry`, so a newly registered model
is audited without touching this file (and fails here if it has no object to open)."""

from datetime import date, timedelta

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.test import RequestFactory
from django.urls import reverse
from playwright.sync_api import expect

from billing.autopay import threshold_set
from billing.bc import bc_transfer
from billing.chargebacks import chargeback_record
from billing.credit_notes import credit_note_issue
from billing.disputes import dispute_open
from billing.models import Document, TaxRate
from billing.profile import profile_set
from billing.reconcile import reconcile_ledger
from billing.topups import card_deposit_create
from tests.browser.test_accessibility import world
from tests.factories import AdvertiserFactory
from tests.pages_helpers import (  # noqa: F401
    PASSWORD,
    axe_violations,
    browser_page,
    describe_violations,
    fast_password_hashing,
    outside_viewport,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DESKTOP, PHONE = 1366, 375


@pytest.fixture(autouse=True)
def private_media(settings, tmp_path):
    settings.PRIVATE_MEDIA_ROOT = str(tmp_path)


def console_world():
    """test_accessibility's world (accounts with data on every page, a superuser "support-agent"),
    plus the records it does not make: a group, a Business Center transfer, a tax rate, a billing
    profile, card top-ups (one refunded by a credit note, one charged back), a threshold change, a
    reconciliation run and a dispute."""
    w = world()
    Group.objects.get_or_create(name="Auditors")
    deposit_bc(w["bc"], w)
    TaxRate.objects.create(country="IE", rate="23.000", effective_from=date(2020, 1, 1), note="Standard rate")
    adv = AdvertiserFactory(name="Acme Dublin", currency="EUR")
    profile_set(actor=None, reason="Set up for the audit", advertiser=adv, data={
        "legal_name": "Acme Dublin Ltd", "address_line1": "1 Main St", "city": "Dublin", "postal_code": "D01",
        "country": "IE", "tax_id": ""})
    first, _ = card_deposit_create(advertiser=adv, amount="100.00", card_number="4242 4242 4242 4242",
                                   idempotency_key="a11y-card-1")
    credit_note_issue(actor=None, document=Document.objects.get(deposit=first), amount="50.00",
                      reason="Wrong amount", idempotency_key="a11y-cn-1")
    second, _ = card_deposit_create(advertiser=adv, amount="80.00", card_number="4242 4242 4242 4242",
                                    idempotency_key="a11y-card-2")
    chargeback_record(deposit=second, reference="dp_a11y", reason="fraudulent")
    threshold_set(advertiser=w["auto"], amount="60.00", reason="Raised for the audit")
    reconcile_ledger()
    invoice = Document.objects.get(bill=w["invoice"])
    dispute_open(actor=w["owner"], document=invoice, reason="Two campaigns were billed twice in March.",
                 at=invoice.issued_at + timedelta(days=1))
    return w


def deposit_bc(bc, w):
    """A Business Center transfer: a refund of some of the Shop account's cash to its BC."""
    adv = w["shop"]
    bc_transfer(business_center=bc, advertiser_id=str(adv.pk), transfer_type="REFUND", cash_amount="10.00",
                request_id="a11y-transfer-1", by=w["support"], reason="Moving unused cash back to the group.")


def registry_pages(superuser) -> list[tuple[str, str]]:
    """(what, address) of every registered ModelAdmin's list, add page and one object's page."""
    request = RequestFactory().get("/admin/")
    request.user = superuser
    pages, missing = [], []
    for model, model_admin in sorted(admin.site._registry.items(), key=lambda i: i[0]._meta.label):
        opts = model._meta
        name = f"{opts.app_label}_{opts.model_name}"
        pages.append((f"{opts.label} list", reverse(f"admin:{name}_changelist")))
        if model_admin.has_add_permission(request):
            pages.append((f"{opts.label} add", reverse(f"admin:{name}_add")))
        obj = model_admin.get_queryset(request).order_by("pk").first()
        if obj is None:
            missing.append(opts.label)
        else:
            pages.append((f"{opts.label} #{obj.pk}", reverse(f"admin:{name}_change", args=[obj.pk])))
    assert not missing, f"no object to open for {missing}: make one in console_world()"
    return pages


def custom_pages() -> list[tuple[str, str]]:
    export = reverse("admin:portal_auditlog_export")
    return [
        ("admin index", reverse("admin:index")),
        ("audit log export", export),
        ("audit log export, refused", export + "?start=2026-13-01&end=x"),
    ]


def via_action(changelist: str, action: str):
    """A confirmation page of a list action: tick the first row, pick the action, Go."""
    def open_it(page, base):
        page.goto(base + changelist)
        page.locator("#result_list tbody input.action-select").first.check()
        page.select_option("select[name=action]", action)
        page.locator("button[name=index], .actions button[type=submit]").first.click()
        expect(page.locator("form input[name=confirm]")).to_have_count(1)
    return open_it


def via_appeal_withdraw(appeal_url: str):
    def open_it(page, base):
        page.goto(base + appeal_url)
        page.get_by_label("Decision note").fill("The cards were not yours.")
        page.get_by_role("button", name="Reject and withdraw the credit…").click()
        expect(page.locator("input[name=confirm]")).to_have_count(1)
    return open_it


def interactive_pages(w) -> list[tuple[str, object]]:
    """Pages reached by a POST from a form, as a staff user reaches them."""
    return [
        ("withdraw credit confirmation", via_action(reverse("admin:promotions_credit_changelist"),
                                                    "withdraw_credit")),
        ("freeze credit confirmation", via_action(reverse("admin:portal_advertiser_changelist"), "freeze_credit")),
        ("appeal withdraw confirmation",
         via_appeal_withdraw(reverse("admin:promotions_appeal_change", args=[w["appeal"].pk]))),
    ]


def admin_login(page, base, user):
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit], button[type=submit]")
    expect(page).to_have_url(f"{base}/admin/")


def phone_problems(page) -> list[str]:
    """At 375 px: nothing scrolls the page sideways; a list's rows are stacked, every cell — the link
    column and the status column first — inside the screen; the buttons are on screen."""
    problems = []
    scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    if scroll > inner:
        problems.append(f"the page scrolls sideways: {scroll} px wide in a {inner} px window")
    if page.locator("#result_list tbody tr").count():
        rows = page.locator("#result_list tbody tr").count()
        for what, selector in (("link column", "#result_list tbody tr > th"),
                               ("status column", "#result_list tbody td.field-status")):
            cells = page.locator(selector).count()
            if what == "link column" and cells < rows:
                problems.append(f"the list's {what}: {cells} cells for {rows} rows")
            off = outside_viewport(page, selector)
            if off:
                problems.append(f"the list's {what} is off-screen in {len(off)} rows, e.g. "
                                f"{off[0]['left']}..{off[0]['right']} px: {off[0]['html']}")
        if page.locator("#result_list.table-stack").count() == 0:
            problems.append("the list is not stacked (static/js/admin-a11y.js did not run)")
    # every stacked table: the list, a confirmation's, a change form's inlines and histories
    off = outside_viewport(page, "#content table.table-stack > tbody > tr > *, #content .submit-row input, "
                                 "#content .submit-row button, #content .submit-row a, .object-tools a, "
                                 ".actions button, .paginator a")
    problems += [f"off-screen ({o['left']}..{o['right']} px): {o['html']}" for o in off[:5]]
    if len(off) > 5:
        problems.append(f"... and {len(off) - 5} more off-screen cells or buttons")
    return problems


@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_every_admin_page_has_no_serious_violations_and_fits_a_phone(live_server, browser_page, width):
    w = console_world()
    page, base = browser_page, live_server.url
    page.set_viewport_size({"width": width, "height": 800})
    admin_login(page, base, w["support"])
    failures = []

    def audit(what, url):
        violations = axe_violations(page, base)
        if violations:
            failures.append(f"{what} {url} at {width} px:\n{describe_violations(violations)}")
        if width == PHONE:
            failures.extend(f"{what} {url} at {width} px: {p}" for p in phone_problems(page))

    pages = custom_pages() + registry_pages(w["support"])
    for what, url in pages:
        response = page.goto(base + url)
        if response.status != 200:
            failures.append(f"{what} {url}: HTTP {response.status}")
            continue
        audit(what, url)
    for what, open_it in interactive_pages(w):
        open_it(page, base)
        audit(what, page.url.removeprefix(base))
    print(f"audited {len(pages) + len(interactive_pages(w))} pages at {width} px")
    assert not failures, f"{len(failures)} problems:\n" + "\n".join(failures)
    assert page.console_errors == []
