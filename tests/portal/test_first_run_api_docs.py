"""The readable API reference at /api/v1/docs (issue 13, decision 0028): Swagger UI vendored from
the npm registry in static/vendor/swagger-ui/, served by the portal itself and started without
any inline script, so it runs under the portal's Content Security Policy."""

import re

import pytest
from django.contrib.staticfiles import finders
from playwright.sync_api import expect

from tests.pages_helpers import browser_page  # noqa: F401

DOCS = "/api/v1/docs"
VENDORED = ["vendor/swagger-ui/swagger-ui-bundle.js", "vendor/swagger-ui/swagger-ui.css"]


def test_docs_page_references_only_the_portals_own_static_files(client):
    # when anyone opens the API reference
    response = client.get(DOCS)
    html = response.content.decode()
    # then it is a page, under the portal's CSP
    assert response.status_code == 200 and response["Content-Type"].startswith("text/html")
    csp = response["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "style-src 'self';" in csp
    # and everything it loads is a local static file that exists: the vendored Swagger UI and its starter
    urls = re.findall(r'\b(?:src|href)="([^"]+)"', html)
    assert urls and all(u.startswith("/") and not u.startswith("//") for u in urls), urls
    assert "cdn" not in html.lower() and "http" not in html.lower()
    assets = [u.removeprefix("/static/") for u in urls if u.startswith("/static/")]
    assert set(assets) >= {*VENDORED, "js/api-docs.js"}
    assert all(finders.find(a) for a in assets), assets
    # and its only scripts are files or data: no inline script for the CSP to refuse
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, flags=re.S)
    code = [attrs for attrs, body in scripts if 'type="application/json"' not in attrs]
    assert code and all("src=" in attrs for attrs in code)
    assert all(not body.strip() for attrs, body in scripts if "src=" in attrs)
    # and the settings point Swagger UI at the portal's OpenAPI document
    assert '"url": "/api/v1/openapi.json"' in html


def test_vendored_swagger_ui_is_listed_with_its_version_and_licence():
    from pathlib import Path

    vendor = Path(finders.find("vendor/README.md")).parent
    readme = (vendor / "README.md").read_text()
    assert re.search(r"`swagger-ui-dist@5\.\d+\.\d+`", readme)
    assert (vendor / "swagger-ui" / "LICENSE").read_text().lstrip().startswith("Apache License")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_docs_page_renders_the_operations_with_no_console_error(live_server, browser_page):
    page = browser_page
    csp_reports = []
    page.on("console", lambda m: "Content Security Policy" in m.text and csp_reports.append(m.text))
    # when a person opens the API reference in a browser
    page.goto(live_server.url + DOCS)
    # then Swagger UI has rendered the operations of the OpenAPI document, grouped by tag
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Ad Credit & Billing Portal API")
    operations = page.locator(".opblock")
    expect(operations.first).to_be_visible()
    assert operations.count() >= 20
    expect(page.locator(".opblock-tag-section").first).to_be_visible()
    expect(page.get_by_text("Create a Business Center (staff)")).to_be_visible()
    # and an operation opens to show its parameters and responses
    page.get_by_text("An advertiser (members, staff)").click()
    expect(page.locator(".opblock.is-open .responses-wrapper")).to_be_visible()
    # and nothing was refused or failed: CSP violations are console errors
    page.wait_for_load_state("networkidle")
    assert csp_reports == [] and page.console_errors == []
