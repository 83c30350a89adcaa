"""In a real browser, at 1366 px and at 375 px (issue 13, decision 0029): axe-core finds no
serious or critical violation on any dashboard page or support-console page; on a phone no page
scrolls sideways and every table's cells and buttons (a failed bill's Pay now, a credit's
Remaining, Valid and Status) are inside the screen; the chart's labels stay >= 11 px; a skip
link is the first stop; the navigation folds behind a Menu button; a refused promo code puts
focus on its field with the error in view.

Every URL name of portal/web_urls.py is either audited here or listed as not being a page, so a
new page cannot skip the audit."""

from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from billing.models import SpendEvent
from portal import web_urls
from portal.models import ApiToken, AuditLog, BCMembership, Membership
from portal.notifications import Draft, notify_many
from portal.webhooks import webhook_create, webhooks_fan_out
from promotions.appeals import appeal_file
from promotions.credits import credit_assign, credit_withdraw
from promotions.expiry import expire_credits
from tests.billing.bill_pages_helpers import DECLINE, auto_team, invoiced_team, last_month_invoice, threshold_bill
from tests.factories import BusinessCenterFactory, CampaignFactory, UserFactory, deposit, grant
from tests.pages_helpers import (  # noqa: F401
    PASSWORD,
    axe_violations,
    browser_login,
    browser_page,
    describe_violations,
    fast_password_hashing,
    make_team,
    outside_viewport,
    spend,
)
from tests.promotions.promotions_helpers import enroll, freeze, program

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DESKTOP, PHONE = 1366, 375
WRONG_CODE = "WELCOME5"
REFUSED = "status of 422"  # a refused form answers 422, which Chromium logs as a console error

# URL names of portal/web_urls.py that are not pages to audit: files, redirects, POST-only
# actions (their refusals are pages audited here: the redeem error)
NOT_PAGES = {
    "logout": "POST only",
    "notifications_read": "POST only",
    "api_token_revoke": "its confirmation is the API access page's row, audited there",
    "webhook_delete": "its confirmation is the webhook page's row, audited there",
    "webhook_redeliver": "POST only; the button is audited on the delivery log",
    "payments_transactions_csv": "a CSV file",
    "payments_bill_pdf": "a PDF file",
    "payments_bill_pay": "POST only; Pay now is audited on Bills & invoices",
    "payments_document_pdf": "a PDF file",
    "payments_credit_assign": "POST only; the form is audited on Promotions",
    "payments_appeal": "POST only; the form and its answer are audited on Promotions",
    "appeal_attachment": "a file download",
    "payments_credits": "a redirect to Promotions (old address)",
}


def world():
    """One admin ("owner") of four accounts and of a Business Center, with something on every
    page: a failed bill and a chart, a monthly invoice and documents, credits in every state with
    a ladder and a Shop program, a frozen account with an appeal, an API token; and a support
    agent for the admin."""
    now = timezone.now()
    # automatic payment: the card declined a threshold bill, more spend since (Pay now, banners)
    auto = auto_team(card=DECLINE, threshold="50.00", tz="America/New_York", name="Acme Shoes")
    failed = threshold_bill(auto)
    spend(auto.campaign, "32.40")
    owner = auto.users["admin"]
    ApiToken.issue(user=owner, label="Reporting script", advertiser=auto.advertiser)
    webhook = webhook_create(advertiser=auto.advertiser, url="https://hooks.example.com/adcredit",
                             events=["deposit.received", "bill.paid", "payment.failed"], by=owner)
    notify_many([Draft(auto.advertiser, "deposit_received", "a11y-webhook-deposit", {"amount": "$50.00"})])
    webhooks_fan_out()  # a delivery in the log

    # monthly invoicing, in a Business Center: an invoice and its documents
    bc = BusinessCenterFactory(name="Acme Group")
    invoiced = invoiced_team(name="Acme Invoices", business_center=bc)
    invoice = last_month_invoice(invoiced, amount="300.00")
    spend(invoiced.campaign, "120.00")
    BCMembership.objects.create(user=owner, business_center=bc, role="admin")

    # manual payment, a TikTok Shop seller: credits in every state, a ladder, a Shop program
    shop = make_team(name="Acme Shop", shop_id="S-100", business_center=bc, timezone_name="Asia/Singapore",
                     signup_source="official_offer", registered_at=now - timedelta(days=3))
    adv = shop.advertiser
    live = CampaignFactory(advertiser=adv, name="Live shopping", objective="PRODUCT_SALES",
                           product_source="TIKTOK_SHOP", shop_id="S-100")
    deposit(adv, "800.00")
    enroll(adv, name="New advertiser offer: spend $100, get $20")
    enroll(adv, name="Shop Ads Spend & Get", kind="shop", window_days=28,
           tiers=[{"threshold": "100.00", "reward": "20.00"}, {"threshold": "500.00", "reward": "150.00"}])
    program("Welcome offer", code="WELCOME50", window_days=30)
    grant(adv, "discount", "200.00", percent="50", source="discount", valid_from=now - timedelta(days=5))
    coupon = grant(adv, "assignable", "60.00", source="promo_code", valid_from=now - timedelta(days=5))
    credit_assign(credit=coupon, campaign_ids=[shop.campaign.pk])
    grant(adv, "assignable", "40.00", source="managed", eligible_objectives=["PRODUCT_SALES"],
          eligible_product_source="TIKTOK_SHOP")
    grant(adv, "free", "25.00", source="managed", valid_from=now - timedelta(days=85),
          expires_at=now + timedelta(days=3), eligible_objectives=["LEAD_GENERATION"])
    grant(adv, "free", "30.00", valid_from=now - timedelta(days=40), expires_at=now - timedelta(days=2))
    expire_credits()
    credit_withdraw(credit=grant(adv, "free", "20.00"), reason="policy")
    spend(shop.campaign, "180.00", occurred_at=now)
    spend(live, "160.00", occurred_at=now)

    # a frozen account that appealed
    frozen = make_team(name="Acme Frozen")
    grant(frozen.advertiser, "free", "50.00")
    freeze(frozen.advertiser, reason="Several cards were declined on this account within one hour.")
    appeal = appeal_file(advertiser=frozen.advertiser, user=frozen.users["finance"],
                         message="These are our own company cards; one was expired.")

    for team in (invoiced, shop, frozen):
        Membership.objects.create(user=owner, advertiser=team.advertiser, role="admin")
    support = UserFactory(username="support-agent", is_staff=True, is_superuser=True)
    return {"owner": owner, "support": support, "auto": auto.advertiser, "failed": failed,
            "invoiced": invoiced.advertiser, "invoice": invoice, "bc": bc, "shop": adv,
            "frozen": frozen.advertiser, "appeal": appeal, "coupon": coupon, "webhook": webhook,
            "charge": SpendEvent.objects.filter(advertiser=adv).latest("pk").transaction}


def redeem_wrong_code(page):
    page.get_by_role("textbox", name="Promo code").fill(WRONG_CODE)
    page.get_by_role("button", name="Redeem").click()
    expect(page.locator("#id_code_error")).to_contain_text("does not exist")


def show_expired_credits(page):
    """A filter tab swaps the credits table in with htmx: the new table is labelled too."""
    page.locator("#credits .tabs").get_by_role("link", name="Expired").click()
    expect(page.locator("#credits-count")).to_have_text("1 expired credit")
    expect(page.locator(".credits-table td[data-label='Status']")).to_have_count(1)


def dashboard_pages(w):
    """(URL name, address, what to do there first, column labels that must be on screen)."""
    a, inv, shop = w["auto"].pk, w["invoiced"].pk, w["shop"].pk
    return [
        ("dashboard", reverse("dashboard"), None, ()),
        ("advertiser_home", reverse("advertiser_home", args=[a]), None, ()),
        ("campaigns", reverse("campaigns", args=[shop]), None, ("Status",)),
        ("notifications", reverse("notifications", args=[a]), None, ()),
        ("notification_settings", reverse("notification_settings", args=[shop]), None, ("Email", "In-app")),
        ("api_access", reverse("api_access", args=[a]), None, ("Status",)),
        ("webhooks", reverse("webhooks", args=[a]), None, ("Events",)),
        ("webhook_deliveries", reverse("webhook_deliveries", args=[a, w["webhook"].pk]), None, ("Status", "Attempts")),
        ("payments_overview", reverse("payments_overview", args=[a]), None, ("Amount", "Funding source")),
        ("payments_overview", reverse("payments_overview", args=[inv]), None, ()),
        ("payments_transactions", reverse("payments_transactions", args=[shop]), None, ("Amount", "Funding source")),
        ("payments_charge_explanation", reverse("payments_charge_explanation", args=[shop, w["charge"].pk]), None,
         ("Credit",)),
        ("payments_add_funds", reverse("payments_add_funds", args=[shop]), None, ()),
        ("payments_bills", reverse("payments_bills", args=[a]), None, ("Amount", "Status")),
        ("payments_bills", reverse("payments_bills", args=[inv]), None, ("Amount", "Status")),
        ("payments_bill", reverse("payments_bill", args=[a, w["failed"].pk]), None, ()),
        ("payments_bill", reverse("payments_bill", args=[inv, w["invoice"].pk]), None, ()),
        ("payments_documents", reverse("payments_documents", args=[inv]), None, ("Total", "Status")),
        ("payments_payment_method", reverse("payments_payment_method", args=[a]), None, ()),
        ("payments_billing_method", reverse("payments_billing_method", args=[a]), None, ()),
        ("payments_billing_profile", reverse("payments_billing_profile", args=[inv]), None, ()),
        ("payments_refund_close", reverse("payments_refund_close", args=[shop]), None, ("Remaining",)),
        ("payments_promotions", reverse("payments_promotions", args=[shop]), None, ("Remaining", "Valid", "Status")),
        ("payments_promotions", reverse("payments_promotions", args=[shop]), show_expired_credits, ("Status",)),
        ("payments_promotions", reverse("payments_promotions", args=[w["frozen"].pk]), None, ()),
        ("payments_redeem_code", reverse("payments_promotions", args=[shop]), redeem_wrong_code, ()),
        ("payments_credit_usage", reverse("payments_credit_usage", args=[shop, w["coupon"].pk]), None,
         ("Amount", "Remaining after")),
        ("shop_coupon_progress", reverse("shop_coupon_progress", args=[shop]), None, ()),
        ("bc_documents", reverse("bc_documents", args=[w["bc"].pk]), None, ("Account", "Total", "Status")),
    ]


def support_pages(w):
    return [
        ("admin index", reverse("admin:index")),
        ("advertiser", reverse("admin:portal_advertiser_change", args=[w["auto"].pk])),
        ("appeals", reverse("admin:promotions_appeal_changelist")),
        ("appeal", reverse("admin:promotions_appeal_change", args=[w["appeal"].pk])),
        ("audit log", reverse("admin:portal_auditlog_changelist")),
    ]


def phone_layout_problems(page, labels) -> list[str]:
    """At 375 px: nothing scrolls the page sideways; every table cell and button, every primary
    button, is inside the screen; the named columns are there and on screen."""
    problems = []
    scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    if scroll > inner:
        problems.append(f"the page scrolls sideways: {scroll} px wide in a {inner} px window")
    off = outside_viewport(page, "#content table tbody td, #content table .btn, #content .btn-primary")
    problems += [f"off-screen ({o['left']}..{o['right']} px): {o['html']}" for o in off]
    for label in labels:
        cells = page.locator(f"#content table.table-stack td[data-label='{label}']")
        if cells.count() == 0:
            problems.append(f"no {label!r} cell in a stacked table")
    return problems


def chart_label_sizes(page) -> list[float]:
    """The rendered size (px) of each label of the spend chart: font size × the SVG's scale."""
    return page.evaluate("""() => Array.from(document.querySelectorAll('#spend-chart text')).map(
        t => parseFloat(getComputedStyle(t).fontSize) * t.getScreenCTM().a)""")


def test_every_web_url_name_is_audited_or_not_a_page():
    names = {p.name for p in web_urls.urlpatterns}
    rows = {k: SimpleNamespace(pk=1) for k in ("auto", "invoiced", "shop", "failed", "invoice", "bc", "frozen", "coupon",
                                                   "webhook", "charge")}
    audited = {name for name, *_ in dashboard_pages(rows)} | {"login"}
    assert names - audited - set(NOT_PAGES) == set(), "pages without an accessibility audit"
    assert set(NOT_PAGES) <= names and audited <= names


@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_dashboard_pages_have_no_serious_violations_and_fit_a_phone(live_server, browser_page, width):
    # given an admin of accounts with data on every page
    w = world()
    page, base = browser_page, live_server.url
    page.set_viewport_size({"width": width, "height": 800})
    failures = []

    def audit(name, url):
        violations = axe_violations(page, base)
        if violations:
            failures.append(f"{name} {url} at {width} px:\n{describe_violations(violations)}")

    # the login page, before logging in
    page.goto(base + reverse("login"))
    audit("login", reverse("login"))
    browser_login(page, base, w["owner"])
    # when they open every page of the dashboard
    for name, url, action, labels in dashboard_pages(w):
        response = page.goto(base + url)
        assert response.status == 200, f"{url}: {response.status}"
        if action:
            action(page)
        # then axe finds nothing serious or critical
        audit(name, url)
        # and on a phone the page fits the screen, tables included
        if width == PHONE:
            failures += [f"{name} {url} at {width} px: {p}" for p in phone_layout_problems(page, labels)]
        # and the chart's labels are readable
        if page.locator("#spend-chart").count():
            small = [round(s, 1) for s in chart_label_sizes(page) if s < 11]
            if small:
                failures.append(f"{name} {url} at {width} px: chart labels under 11 px: {small}")
    # the failed bill's Pay now is on screen
    page.goto(base + reverse("payments_bills", args=[w["auto"].pk]))
    pay = page.locator(f'tr[data-bill="{w["failed"].pk}"]').get_by_role("button", name="Pay now")
    expect(pay).to_be_in_viewport()
    assert not failures, "\n".join(failures)
    assert [e for e in page.console_errors if REFUSED not in e] == []


@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_support_console_pages_have_no_serious_violations(live_server, browser_page, width):
    w = world()
    assert AuditLog.objects.exists()  # the freeze and the grants wrote audit lines to list
    page, base = browser_page, live_server.url
    page.set_viewport_size({"width": width, "height": 800})
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("#id_username", w["support"].username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit], button[type=submit]")
    expect(page).to_have_url(f"{base}/admin/")
    failures = []
    for name, url in support_pages(w):
        response = page.goto(base + url)
        assert response.status == 200, f"{url}: {response.status}"
        violations = axe_violations(page, base)
        if violations:
            failures.append(f"{name} {url} at {width} px:\n{describe_violations(violations)}")
        scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        if scroll > inner:
            failures.append(f"{name} {url} at {width} px: the page scrolls sideways ({scroll} px)")
    assert not failures, "\n".join(failures)
    assert page.console_errors == []


def test_skip_link_is_the_first_stop_and_moves_focus_to_the_content(live_server, browser_page):
    team = make_team(name="Acme Shoes")
    page = browser_page
    browser_login(page, live_server.url, team.users["admin"])
    page.goto(f"{live_server.url}/a/{team.advertiser.pk}/payments/")
    # when a keyboard user presses Tab once
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    # then the skip link has focus and shows
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    # and Enter puts focus on the page's content, past the navigation
    page.keyboard.press("Enter")
    expect(page.locator("main#content")).to_be_focused()
    page.keyboard.press("Tab")
    assert page.evaluate("document.getElementById('content').contains(document.activeElement)")
    assert page.console_errors == []


def test_navigation_folds_behind_a_menu_button_on_a_phone(live_server, browser_page):
    team = make_team(name="Acme Shoes")
    page = browser_page
    browser_login(page, live_server.url, team.users["admin"])
    overview = f"{live_server.url}/a/{team.advertiser.pk}/payments/"
    page.set_viewport_size({"width": PHONE, "height": 800})
    page.goto(overview)
    menu = page.get_by_role("button", name="Menu")
    nav = page.locator("#main-nav")
    # on a phone the links are folded behind the Menu button
    expect(menu).to_have_attribute("aria-expanded", "false")
    expect(menu).to_have_attribute("aria-controls", "main-nav")
    expect(nav).to_be_hidden()
    assert page.locator("#content").bounding_box()["y"] < 200  # the content starts near the top
    # when the button is pressed the menu opens, and Escape closes it again
    menu.click()
    expect(menu).to_have_attribute("aria-expanded", "true")
    expect(nav.get_by_role("link", name="Transactions")).to_be_visible()
    page.keyboard.press("Escape")
    expect(nav).to_be_hidden()
    expect(menu).to_be_focused()
    menu.press("Enter")
    nav.get_by_role("link", name="Transactions").click()
    expect(page).to_have_url(overview + "transactions/")
    # on a desktop the navigation shows and the button does not
    page.set_viewport_size({"width": DESKTOP, "height": 800})
    expect(nav.get_by_role("link", name="Overview")).to_be_visible()
    expect(menu).to_be_hidden()
    assert page.console_errors == []
    # and without JavaScript a phone lists the links (nothing it cannot open)
    context = page.context.browser.new_context(viewport={"width": PHONE, "height": 800}, java_script_enabled=False)
    try:
        bare = context.new_page()
        browser_login(bare, live_server.url, team.users["admin"])
        bare.goto(overview)
        expect(bare.locator("#main-nav").get_by_role("link", name="Transactions")).to_be_visible()
        expect(bare.get_by_role("button", name="Menu")).to_be_hidden()
    finally:
        context.close()


@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_a_refused_promo_code_puts_focus_on_the_field_with_its_error_in_view(live_server, browser_page, width):
    # given an admin of an account whose Promotions page is long (credits above the redeem card)
    team = make_team(name="Fresh Start", signup_source="official_offer",
                     registered_at=timezone.now() - timedelta(days=3))
    for i in range(12):
        grant(team.advertiser, "free", f"{10 + i}.00")
    program("Welcome offer", code="WELCOME50", window_days=30)
    page = browser_page
    page.set_viewport_size({"width": width, "height": 800})
    browser_login(page, live_server.url, team.users["admin"])
    page.goto(f"{live_server.url}/a/{team.advertiser.pk}/payments/promotions/")
    # when they redeem a code that does not exist
    page.get_by_role("textbox", name="Promo code").fill(WRONG_CODE)
    page.get_by_role("button", name="Redeem").click()
    # then the answer is the redeem page, with focus on the refused field
    expect(page).to_have_url(f"{live_server.url}/a/{team.advertiser.pk}/payments/promotions/redeem/")
    field = page.get_by_role("textbox", name="Promo code")
    expect(field).to_be_focused()
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_have_attribute("aria-describedby", "id_code_error")
    expect(field).to_have_value(WRONG_CODE)
    # and the error is in view, not somewhere below
    error = page.locator("#id_code_error")
    expect(error).to_have_text(f"The promo code '{WRONG_CODE}' does not exist.")
    expect(error).to_be_in_viewport()
    expect(field).to_be_in_viewport()
    assert page.evaluate("window.scrollY") > 0 or width == DESKTOP
    assert [e for e in page.console_errors if REFUSED not in e] == []
