"""The support console (issue 13): the appeal page's title and buttons, money in the currency's
places, sentences without rule numbers, an audit line for every admin action and for filing an
appeal, the audit log as CSV for a range of days, and the doors that were API-only — refund and
close, program creation, Business Center transfers — calling the API's services."""

import csv
import io
import json
import re
from datetime import datetime
from datetime import timezone as dt_timezone
from decimal import Decimal
from unittest import mock

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import models
from django.test import Client
from django.urls import reverse

from billing.autopay import charge_thresholds, payment_method_set, threshold_set
from billing.bc import bc_deposit_create, bc_transfer
from billing.credit_notes import credit_note_issue
from billing.deposits import cash_refund
from billing.disputes import dispute_open
from billing.invoice_payments import invoice_transfer_record
from billing.models import Bill, BCTransfer, Refund
from billing.selectors import advertiser_balances
from billing.spend import spend_record
from portal.admin import sentence
from portal.errors import Conflict
from portal.models import Advertiser, AdvertiserStatus, AuditLog
from portal.permissions import BILLING_MANAGER, SUPPORT_AGENT
from promotions.appeals import appeal_file
from promotions.freeze import credit_freeze
from promotions.models import Appeal, Program
from promotions.programs import program_create
from tests.api_helpers import api  # noqa: F401
from tests.billing.test_documents_tax import _invoiced
from tests.factories import (
    AdvertiserFactory,
    BusinessCenterFactory,
    CampaignFactory,
    UserFactory,
    deposit,
    grant,
    member,
    token_for,
)
from tests.pages_helpers import fast_password_hashing  # noqa: F401

pytestmark = pytest.mark.django_db

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
RULE_NUMBER = re.compile(r"\bR\d{1,2}\b")


@pytest.fixture(autouse=True)
def private_media(settings, tmp_path):
    settings.PRIVATE_MEDIA_ROOT = str(tmp_path)


def staff_client(role: str) -> tuple[Client, object]:
    user = UserFactory(is_staff=True, is_superuser=role == "superuser")
    if role != "superuser":
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    client = Client()
    client.force_login(user)
    return client, user


def frozen_with_appeal(name="Frozen Fashion", message="Our own cards; one had expired."):
    adv = AdvertiserFactory(name=name)
    owner = member(adv, "admin")
    grant(adv, "free", "80.00")
    credit_freeze(advertiser=adv, reason="chargeback pattern", by=UserFactory(is_staff=True))
    return adv, owner, appeal_file(advertiser=adv, user=owner, message=message)


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def audit_lines(**filters) -> list[AuditLog]:
    return list(AuditLog.objects.filter(**filters).order_by("pk"))


# --- titles: no "X object (n)" anywhere in the console -----------------------------------------

def console_models():
    """Every model the console shows: registered ModelAdmins of the three apps and their inlines."""
    found = set()
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label in ("portal", "billing", "promotions"):
            found.add(model)
            found.update(inline.model for inline in model_admin.inlines)
    return found


def test_every_model_the_console_shows_has_a_name_of_its_own():
    unnamed = sorted(m.__name__ for m in console_models() if m.__str__ is models.Model.__str__)
    assert unnamed == []


def test_the_appeal_page_is_titled_by_appeal_advertiser_and_status():
    adv, _, appeal = frozen_with_appeal(name="Acme Shoes")
    client, _ = staff_client(SUPPORT_AGENT)
    page = client.get(reverse("admin:promotions_appeal_change", args=[appeal.pk]))
    assert page.status_code == 200
    title = f"Appeal #{appeal.pk} · Acme Shoes · Under review"
    assert f"<h2>{title}</h2>" in page.text and f"<title>{title} |" in page.text
    assert "Appeal object" not in page.text


# --- the appeal page: one row of buttons, styled as the admin's ---------------------------------

def test_an_open_appeal_has_only_the_decision_buttons_styled_as_admin_buttons():
    _, _, appeal = frozen_with_appeal()
    client, _ = staff_client(BILLING_MANAGER)
    html = client.get(reverse("admin:promotions_appeal_change", args=[appeal.pk])).text
    assert 'class="closelink"' not in html  # no stray "Close" row above the decision form
    assert html.count('class="submit-row"') == 1
    buttons = re.findall(r'<button type="submit" name="decision" value="(\w+)" class="([^"]+)"', html)
    assert buttons == [("approve", "button default"), ("reject", "button"), ("reject_withdraw", "button danger")]
    assert "/static/css/admin.css" in html


def test_a_decided_appeal_keeps_the_close_button():
    _, _, appeal = frozen_with_appeal()
    client, _ = staff_client(SUPPORT_AGENT)
    decide = reverse("admin:promotions_appeal_decide", args=[appeal.pk])
    client.post(decide, {"decision": "reject", "reason": "Documents do not match."})
    html = client.get(reverse("admin:promotions_appeal_change", args=[appeal.pk])).text
    assert 'class="closelink"' in html and 'name="decision"' not in html
    assert f"Appeal #{appeal.pk} · Frozen Fashion · Rejected" in html


def test_the_appeals_queue_shows_filed_and_decided_in_two_short_columns():
    adv, _, appeal = frozen_with_appeal()
    client, agent = staff_client(SUPPORT_AGENT)
    client.post(reverse("admin:promotions_appeal_decide", args=[appeal.pk]), {"decision": "reject", "reason": "no"})
    page = client.get(reverse("admin:promotions_appeal_changelist"), {"queue": "all"})
    assert [h["text"].capitalize() for h in page.context["result_headers"]
            if "action-checkbox" not in h["class_attrib"]] == [
        "Id", "Advertiser", "Status", "Waiting", "Files", "Filed", "Decided"]
    appeal.refresh_from_db()
    assert f"{appeal.decided_at:%Y-%m-%d %H:%M} UTC by {agent.username}" in page.text


# --- money in the currency's places -------------------------------------------------------------

def test_read_only_amounts_show_the_currency_places_not_four():
    usd = AdvertiserFactory(billing_method="monthly_invoice")  # credit line limit 0 by default
    yen = AdvertiserFactory(currency="JPY")
    program = Program.objects.create(name="Spend 100", kind="new_advertiser", window_days=30)
    program.tiers.create(threshold=Decimal("100"), reward=Decimal("20"))
    client, _ = staff_client(SUPPORT_AGENT)  # view only: every field is read-only
    page = client.get(reverse("admin:portal_advertiser_change", args=[usd.pk])).text
    assert '<div class="readonly">$0.00</div>' in page and "0.0000" not in page
    assert '<div class="readonly">¥0</div>' in client.get(reverse("admin:portal_advertiser_change", args=[yen.pk])).text
    program_page = client.get(reverse("admin:promotions_program_change", args=[program.pk])).text
    assert "$100.00" in program_page and "$20.00" in program_page and "100.0000" not in program_page


def test_ledger_pages_show_no_four_place_amounts():
    adv = AdvertiserFactory()
    dep = deposit(adv, "150.00")
    client, _ = staff_client(SUPPORT_AGENT)
    for url in [reverse("admin:billing_deposit_change", args=[dep.pk]),
                reverse("admin:billing_ledgertransaction_change", args=[dep.transaction_id]),
                reverse("admin:billing_deposit_changelist")]:
        page = client.get(url)
        assert page.status_code == 200 and ("$150.00" in page.text or "150.00 USD" in page.text), url
        assert not re.search(r"\d\.\d{4}\b", re.sub(r"<(script|svg)\b.*?</\1>", "", page.text, flags=re.S)), url


def test_an_editable_credit_line_shows_the_currency_places():
    adv = AdvertiserFactory(billing_method="monthly_invoice")
    client, _ = staff_client(BILLING_MANAGER)
    page = client.get(reverse("admin:portal_advertiser_change", args=[adv.pk])).text
    field = re.search(r'<input[^>]*name="credit_line_limit"[^>]*>', page).group(0)
    assert 'value="0.00"' in field


# --- words: sentences, no rule numbers, the credit line's real rule ---------------------------------

@pytest.mark.parametrize("raw, shown", [
    ("credit line limit must be zero or more, got -100.", "Credit line limit must be zero or more, got -100."),
    ("expires_at must be after valid_from.", "Expires at must be after valid from."),
    ("window_days must be a whole number between 1 and 3,650",
     "Window days must be a whole number between 1 and 3,650."),
    ("idempotency_key 'admin_key_1' was already used", "Idempotency key 'admin_key_1' was already used."),
    ("This appeal was already approved.", "This appeal was already approved."),
])
def test_a_refusal_reads_as_a_sentence(raw, shown):
    assert sentence(raw) == shown


def change_form(adv, **overrides):
    data = {"name": adv.name, "status": adv.status, "shop_id": adv.shop_id, "invoicing_eligible": "",
            "credit_line_limit": "0.00", "billing_threshold": "", "bill_cycle": adv.bill_cycle,
            "change_reason": "", "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0",
            "campaigns-TOTAL_FORMS": "0", "campaigns-INITIAL_FORMS": "0"}
    return {**data, **overrides}


def test_a_negative_credit_line_limit_says_zero_or_more_and_zero_is_accepted():
    adv = AdvertiserFactory(billing_method="monthly_invoice")
    client, _ = staff_client(BILLING_MANAGER)
    url = reverse("admin:portal_advertiser_change", args=[adv.pk])
    bad = client.post(url, change_form(adv, credit_line_limit="-100", change_reason="typo"))
    assert bad.status_code == 200
    assert bad.context["adminform"].form.errors["credit_line_limit"] == [
        "Credit line limit must be zero or more, got -100."]
    assert not AuditLog.objects.exists()
    assert client.post(url, change_form(adv, credit_line_limit="250.00", change_reason="raised")).status_code == 302
    assert client.post(url, change_form(adv, credit_line_limit="0", change_reason="closed the line")).status_code == 302
    adv.refresh_from_db()
    assert adv.credit_line_limit == 0


def confirmation_pages(spend_event):
    """Every admin confirmation page a Billing manager can open: (changelist, action, pk)."""
    adv = AdvertiserFactory()
    deposit(adv, "100.00")
    frozen = AdvertiserFactory()
    credit_freeze(advertiser=frozen, reason="x", by=None)
    credit = grant(adv, "free", "10.00")
    bill = paid_bill(spend_event)
    _, invoice = _invoiced(spend_event)
    dispute = dispute_open(actor=None, document=invoice, reason="Paused on the 3rd")
    _, _, appeal = frozen_with_appeal()
    return [
        ("admin:portal_advertiser_changelist", "freeze_credit", adv.pk),
        ("admin:portal_advertiser_changelist", "unfreeze_credit", frozen.pk),
        ("admin:portal_advertiser_changelist", "mark_invoicing_eligible", adv.pk),
        ("admin:portal_advertiser_changelist", "refund_and_close", adv.pk),
        ("admin:promotions_credit_changelist", "withdraw_credit", credit.pk),
        ("admin:promotions_appeal_changelist", "approve_appeal", appeal.pk),
        ("admin:promotions_appeal_changelist", "reject_and_withdraw_appeal", appeal.pk),
        ("admin:billing_bill_changelist", "record_chargeback", bill.pk),
        ("admin:billing_document_changelist", "issue_credit_note", invoice.pk),
        ("admin:billing_dispute_changelist", "resolve_with_credit_note", dispute.pk),
    ]


def test_no_confirmation_shows_a_rule_number(spend_event):
    client, _ = staff_client(BILLING_MANAGER)
    for changelist, action, pk in confirmation_pages(spend_event):
        page = client.post(reverse(changelist), {"action": action, "_selected_action": [str(pk)]})
        assert page.status_code == 200, action
        body = re.sub(r"<(script|style)\b.*?</\1>", "", page.text, flags=re.S)
        shown = re.sub(r"<[^>]+>", " ", body)
        assert not RULE_NUMBER.search(shown), (action, RULE_NUMBER.search(shown))
    freeze = client.post(reverse("admin:portal_advertiser_changelist"),
                         {"action": "freeze_credit", "_selected_action": [str(Advertiser.objects.first().pk)]})
    assert "expiry dates do not move. The advertiser is notified" in freeze.text


# --- audit: filing an appeal, and every admin action ----------------------------------------------

def test_filing_an_appeal_writes_an_audit_line_in_its_transaction():
    adv = AdvertiserFactory(name="Appealing Co")
    owner = member(adv, "finance")
    credit_freeze(advertiser=adv, reason="risk review", by=None)
    appeal = appeal_file(advertiser=adv, user=owner, message="We are a real business.",
                         files=[SimpleUploadedFile("bank-letter.png", PNG, content_type="image/png")])
    line = AuditLog.objects.get(action="appeal_file")
    assert (line.actor, line.advertiser, line.target) == (owner, adv, f"appeal {appeal.pk}")
    assert line.reason == "We are a real business."
    assert line.after == {"status": "open", "attachments": ["bank-letter.png"]}
    # a refused filing (one open appeal at a time) writes nothing
    with pytest.raises(Conflict):
        appeal_file(advertiser=adv, user=owner, message="again")
    assert AuditLog.objects.filter(action="appeal_file").count() == 1


def paid_bill(spend_event) -> Bill:
    adv = AdvertiserFactory(billing_method="automatic")
    payment_method_set(advertiser=adv, card_number="4242424242424242", expiry="12/30")
    threshold_set(advertiser=adv, amount="180.00", reason="test")
    spend_record(event=spend_event(CampaignFactory(advertiser=adv), "185.00"))
    charge_thresholds()
    return Bill.objects.get(advertiser=adv, status="paid")


def _manual_with_cash():
    adv = AdvertiserFactory()
    deposit(adv, "120.00")
    return adv


def _frozen():
    adv = AdvertiserFactory()
    credit_freeze(advertiser=adv, reason="x", by=None)
    return adv


def _appeal():
    return frozen_with_appeal()[2]


def _bank_refund(spend_event):
    _, invoice = _invoiced(spend_event)
    invoice_transfer_record(actor=None, document=invoice, amount="123.00", reference="BANK-1")
    credit_note_issue(actor=None, document=invoice, amount="10.00", reason="x", idempotency_key="cn")
    return Refund.objects.get()


# Every admin action of the console: (changelist, its object, what the confirmation adds, the audit action).
ADMIN_ACTIONS = {
    ("advertiser", "freeze_credit"): (lambda ev: AdvertiserFactory(), {}, "credit_freeze"),
    ("advertiser", "unfreeze_credit"): (lambda ev: _frozen(), {}, "credit_unfreeze"),
    ("advertiser", "mark_invoicing_eligible"): (lambda ev: AdvertiserFactory(), {}, "billing_settings"),
    ("advertiser", "refund_and_close"): (lambda ev: _manual_with_cash(), {}, "cash_refund"),
    ("credit", "withdraw_credit"): (lambda ev: grant(AdvertiserFactory(), "free", "10.00"), {}, "credit_withdraw"),
    ("appeal", "approve_appeal"): (lambda ev: _appeal(), {}, "appeal_approve"),
    ("appeal", "reject_appeal"): (lambda ev: _appeal(), {}, "appeal_reject"),
    ("appeal", "reject_and_withdraw_appeal"): (lambda ev: _appeal(), {}, "appeal_reject"),
    ("bill", "record_chargeback"): (paid_bill, {"reference": "dp_1"}, "chargeback_record"),
    ("document", "issue_credit_note"): (lambda ev: _invoiced(ev)[1], {"amount": "12.30", "idempotency_key": "k-1"},
                                        "credit_note_issue"),
    ("dispute", "resolve_with_credit_note"): (
        lambda ev: dispute_open(actor=None, document=_invoiced(ev)[1], reason="Paused"),
        {"amount": "12.30", "idempotency_key": "k-2"}, "invoice_dispute_credit"),
    ("dispute", "reject"): (lambda ev: dispute_open(actor=None, document=_invoiced(ev)[1], reason="Paused"), {},
                            "invoice_dispute_reject"),
    ("refund", "mark_sent"): (_bank_refund, {}, "refund_mark_sent"),
}


def test_the_audited_list_names_every_admin_action_of_the_console():
    actions = {(model._meta.model_name, name) for model, model_admin in admin.site._registry.items()
               if model._meta.app_label in ("portal", "billing", "promotions")
               for name in (model_admin.actions or []) if isinstance(name, str)}
    assert actions == set(ADMIN_ACTIONS)


@pytest.mark.parametrize("model_name, action", sorted(ADMIN_ACTIONS))
def test_every_admin_action_writes_an_audit_line_naming_the_staff_user_and_reason(model_name, action, spend_event):
    make, extra, audit_action = ADMIN_ACTIONS[(model_name, action)]
    obj = make(spend_event)
    client, manager = staff_client(BILLING_MANAGER)
    model_admin = next(a for m, a in admin.site._registry.items() if m._meta.model_name == model_name)
    changelist = reverse(f"admin:{model_admin.opts.app_label}_{model_name}_changelist")
    before_pk = AuditLog.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    response = client.post(changelist, {"action": action, "_selected_action": [str(obj.pk)], "confirm": "yes",
                                        "reason": "Support ticket 4711", **extra}, follow=True)
    assert response.status_code == 200
    assert not [m for m in messages_of(response) if "done for" not in m and "issued" not in m], messages_of(response)
    line = AuditLog.objects.filter(pk__gt=before_pk, action=audit_action).get()
    assert (line.actor, line.reason) == (manager, "Support ticket 4711")


def test_marking_an_eligible_account_again_is_refused_and_records_nothing():
    adv = AdvertiserFactory()
    client, _ = staff_client(BILLING_MANAGER)
    post = {"action": "mark_invoicing_eligible", "_selected_action": [str(adv.pk)], "confirm": "yes", "reason": "x"}
    client.post(reverse("admin:portal_advertiser_changelist"), post)
    again = client.post(reverse("admin:portal_advertiser_changelist"), post, follow=True)
    assert f"{adv}: This account is already eligible for monthly invoicing." in messages_of(again)
    assert AuditLog.objects.filter(action="billing_settings").count() == 1


def test_staff_users_and_groups_created_edited_and_deleted_in_the_admin_are_audited():
    client, root = staff_client("superuser")
    add = client.post(reverse("admin:auth_user_add"), {"username": "new-agent", "password1": "pw-Correct-horse-9",
                                                       "password2": "pw-Correct-horse-9", "usable_password": "true"})
    assert add.status_code == 302, add.content.decode()[:2000]
    created = AuditLog.objects.get(action="staff_user_create")
    assert (created.actor, created.target, created.after["username"]) == (root, "user new-agent", "new-agent")
    user = type(root).objects.get(username="new-agent")
    pw = client.post(reverse("admin:auth_user_password_change", args=[user.pk]),
                     {"password1": "pw-Other-horse-10", "password2": "pw-Other-horse-10", "usable_password": "true"})
    assert pw.status_code == 302
    line = AuditLog.objects.get(action="staff_user_password")
    assert "pw-Other" not in json.dumps([line.reason, line.before, line.after])
    client.post(reverse("admin:auth_user_delete", args=[user.pk]), {"post": "yes"})
    assert not type(root).objects.filter(username="new-agent").exists()
    assert AuditLog.objects.get(action="staff_user_delete").before["username"] == "new-agent"
    group = Group.objects.create(name="Temp role")
    client.post(reverse("admin:auth_group_change", args=[group.pk]), {"name": "Renamed role", "permissions": []})
    assert AuditLog.objects.get(action="staff_group_change").after["name"] == "Renamed role"


# --- the audit log as CSV ----------------------------------------------------------------------------

EXPORT_URL = reverse("admin:portal_auditlog_export")


def at(day: str, hour: int = 12) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=dt_timezone.utc)


def csv_of(response) -> list[dict]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


def test_the_audit_log_exports_the_lines_of_a_range_of_days_as_csv():
    adv = AdvertiserFactory(name="Logged Co")
    for when, action, reason in [(at("2026-03-31", 23), "before_range", "too early"),
                                 (at("2026-04-01", 0), "first_day", "=HYPERLINK(\"x\")"),
                                 (at("2026-04-15"), "middle", "a reason, with a comma"),
                                 (at("2026-04-30", 23), "last_day", "late"),
                                 (at("2026-05-01", 0), "after_range", "too late")]:
        AuditLog.objects.create(actor_name="bm-jane", action=action, advertiser=adv, target="advertiser x",
                                reason=reason, before={"limit": "0.00"}, after={"limit": "250.00"}, created_at=when)
    client, agent = staff_client(SUPPORT_AGENT)
    # the changelist links to the export
    assert EXPORT_URL in client.get(reverse("admin:portal_auditlog_changelist")).text
    response = client.get(EXPORT_URL, {"start": "2026-04-01", "end": "2026-04-30"})
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="audit-log-2026-04-01-to-2026-04-30.csv"'
    rows = csv_of(response)
    assert [r["action"] for r in rows] == ["first_day", "middle", "last_day"]
    first = rows[0]
    assert first["created_at"] == "2026-04-01T00:00:00+00:00" and first["actor"] == "bm-jane"
    assert (first["advertiser_id"], first["advertiser"]) == (str(adv.pk), "Logged Co")
    assert first["reason"] == "'=HYPERLINK(\"x\")"  # a spreadsheet shows it as text, never runs it
    assert rows[1]["reason"] == "a reason, with a comma"
    assert json.loads(rows[1]["before"]) == {"limit": "0.00"} and json.loads(rows[1]["after"]) == {"limit": "250.00"}
    # and the export is itself audited
    assert AuditLog.objects.get(action="audit_log_export").actor == agent


@pytest.mark.parametrize("params, field, message", [
    ({"start": "2026-04-30", "end": "2026-04-01"}, "end", "The last day must be on or after the first day."),
    ({"start": "2026-02-30", "end": "2026-04-01"}, "start", "Enter a valid date."),
    ({"start": "1999-12-31", "end": "2026-04-01"}, "start", "Choose a day from 2000-01-01 to 2099-12-31."),
    ({"start": "2026-04-01"}, "end", "This field is required."),
])
def test_a_wrong_range_shows_the_form_with_the_error_and_exports_nothing(params, field, message):
    client, _ = staff_client(SUPPORT_AGENT)
    response = client.get(EXPORT_URL, params)
    assert response.status_code == 200 and not response.streaming
    assert message in response.context["form"].errors[field]
    assert not AuditLog.objects.filter(action="audit_log_export").exists()


def test_the_export_form_without_dates():
    client, _ = staff_client(SUPPORT_AGENT)
    page = client.get(EXPORT_URL)
    assert page.status_code == 200 and 'type="date"' in page.text and not page.context["form"].errors


# --- refund and close, programs, BC transfers: the API's services, in the admin ---------------------

ADVERTISERS = reverse("admin:portal_advertiser_changelist")


def test_refund_and_close_calls_cash_refund_and_shows_a_refusal_without_recording_it():
    good = _manual_with_cash()
    owing = AdvertiserFactory(name="Owing Co")
    client, manager = staff_client(BILLING_MANAGER)
    # the confirmation says who can be refunded
    page = client.post(ADVERTISERS, {"action": "refund_and_close", "_selected_action": [str(good.pk), str(owing.pk)]})
    assert page.status_code == 200 and "$120.00" in page.text
    assert "There is no unspent cash balance to refund." in page.text
    with mock.patch("portal.admin.cash_refund", wraps=cash_refund) as service:
        done = client.post(ADVERTISERS, {"action": "refund_and_close", "confirm": "yes",
                                         "reason": "Customer asked to close",
                                         "_selected_action": [str(good.pk), str(owing.pk)]}, follow=True)
    assert service.call_count == 2
    good.refresh_from_db()
    owing.refresh_from_db()
    assert good.status == AdvertiserStatus.CLOSED and advertiser_balances(advertiser=good).cash_balance == 0
    assert owing.status == AdvertiserStatus.ACTIVE
    assert "Owing Co (USD): There is no unspent cash balance to refund." in messages_of(done)
    line = AuditLog.objects.get(action="cash_refund")
    assert (line.actor, line.advertiser, line.reason) == (manager, good, "Customer asked to close")
    assert line.after["refunded"] == "120.00"


def test_refund_from_the_api_is_audited_with_who_asked(api):  # noqa: F811
    adv = _manual_with_cash()
    owner = member(adv, "admin")
    response = api.post(f"/advertisers/{adv.pk}/refund", token=token_for(owner))
    assert response.status_code == 200
    line = AuditLog.objects.get(action="cash_refund")
    assert (line.actor, line.advertiser, line.after["refunded"]) == (owner, adv, "120.00")


def test_refund_from_the_refund_and_close_page_is_audited():
    adv = _manual_with_cash()
    owner = member(adv, "admin")
    client = Client()
    client.force_login(owner)
    client.post(reverse("payments_refund_close", args=[adv.pk]), {"confirm": "on"})
    adv.refresh_from_db()
    assert adv.status == AdvertiserStatus.CLOSED
    assert AuditLog.objects.get(action="cash_refund").actor == owner


PROGRAM_ADD = reverse("admin:promotions_program_add")


def program_post(**overrides) -> dict:
    data = {"name": "Spend 500, get 100", "kind": "new_advertiser", "currency": "USD", "window_days": "30",
            "reward_kind": "free", "reward_validity_days": "90", "eligible_product_source": "", "code": "",
            "max_redemptions": "", "ends_at_0": "", "ends_at_1": "", "reason": "Q3 campaign",
            "tier_1_threshold": "500.00", "tier_1_reward": "100.00", "tier_2_threshold": "1000.00",
            "tier_2_reward": "250.00", "tier_2_immediate": "on"}
    return {**data, **overrides}


def test_a_billing_manager_creates_a_program_through_program_create():
    client, manager = staff_client(BILLING_MANAGER)
    page = client.get(PROGRAM_ADD)
    assert page.status_code == 200 and 'name="tier_1_threshold"' in page.text
    with mock.patch("promotions.admin.program_create", wraps=program_create) as service:
        response = client.post(PROGRAM_ADD, program_post(code="SPRING500", max_redemptions="50"))
    assert response.status_code == 302
    assert service.call_args.kwargs["tiers"] == [
        {"threshold": "500.00", "reward": "100.00", "immediate": False},
        {"threshold": "1000.00", "reward": "250.00", "immediate": True}]
    program = Program.objects.get()
    assert (program.name, program.code, program.max_redemptions) == ("Spend 500, get 100", "SPRING500", 50)
    assert [(t.threshold, t.reward, t.immediate) for t in program.tiers.all()] == [
        (Decimal("500.00"), Decimal("100.00"), False), (Decimal("1000.00"), Decimal("250.00"), True)]
    line = AuditLog.objects.get(action="program_create")
    assert (line.actor, line.reason, line.target) == (manager, "Q3 campaign", f"program {program.pk}")


@pytest.mark.parametrize("overrides, field, message", [
    ({"window_days": "0"}, "window_days", "Window days must be a whole number between 1 and 3,650."),
    ({"tier_1_threshold": "", "tier_1_reward": "", "tier_2_threshold": "", "tier_2_reward": ""}, "tier_1_threshold",
     "A program needs at least one tier."),
    ({"tier_2_reward": "2.505"}, "tier_1_threshold",
     "Tier 2's reward 2.505 has more decimal places than USD allows (2)."),
    ({"tier_2_threshold": "500.00"}, "tier_1_threshold", "Two tiers have the same threshold."),
    ({"code": "TAKEN"}, "code", "The promo code 'TAKEN' is already in use."),
])
def test_a_refused_program_is_shown_on_the_form_and_records_nothing(overrides, field, message):
    Program.objects.create(name="Old", kind="new_advertiser", window_days=30, code="TAKEN")
    client, _ = staff_client(BILLING_MANAGER)
    response = client.post(PROGRAM_ADD, program_post(**overrides))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors[field] == [message]
    assert Program.objects.count() == 1 and not AuditLog.objects.filter(action="program_create").exists()


TRANSFER_ADD = reverse("admin:billing_bctransfer_add")


def bc_with_account(cash="500.00"):
    bc = BusinessCenterFactory(name="Agency BC")
    bc_deposit_create(business_center=bc, amount=cash, idempotency_key="bc-dep-1")
    return bc, AdvertiserFactory(name="Agency Client", business_center=bc)


def transfer_post(bc, adv, **overrides):
    return {"business_center": str(bc.pk), "advertiser_id": str(adv.pk), "transfer_type": "RECHARGE",
            "cash_amount": "200.00", "reason": "Client prepaid by wire", "request_id": "admin-req-1", **overrides}


def test_a_billing_manager_transfers_bc_cash_through_bc_transfer_once_per_submit():
    bc, adv = bc_with_account()
    client, manager = staff_client(BILLING_MANAGER)
    bc_page = client.get(reverse("admin:portal_businesscenter_change", args=[bc.pk])).text
    assert f'href="{TRANSFER_ADD}?business_center={bc.pk}"' in bc_page  # "Transfer cash" on the BC's page
    page = client.get(TRANSFER_ADD, {"business_center": bc.pk})
    assert page.context["adminform"].form["business_center"].value() == str(bc.pk)
    request_id = page.context["adminform"].form["request_id"].value()
    assert page.status_code == 200 and request_id.startswith("admin-")
    with mock.patch("billing.admin.bc_transfer", wraps=bc_transfer) as service:
        first = client.post(TRANSFER_ADD, transfer_post(bc, adv, request_id=request_id))
        again = client.post(TRANSFER_ADD, transfer_post(bc, adv, request_id=request_id))  # a double submit
    assert first.status_code == again.status_code == 302 and service.call_count == 2
    transfer = BCTransfer.objects.get()
    assert (transfer.amount, transfer.transfer_type, transfer.created_by) == (Decimal("200.00"), "RECHARGE", manager)
    assert advertiser_balances(advertiser=adv).cash_balance == Decimal("200.00")
    line = AuditLog.objects.get(action="bc_transfer")
    assert (line.actor, line.advertiser, line.reason) == (manager, adv, "Client prepaid by wire")


@pytest.mark.parametrize("overrides, field, message", [
    ({"cash_amount": "900.00"}, "cash_amount", "The Business Center's cash balance is 500.00 USD, less than 900.00."),
    ({"cash_amount": "-5"}, "cash_amount", "Cash amount must be positive, got -5."),
    ({"transfer_type": "REFUND"}, "cash_amount", "The advertiser's cash balance is 0.00 USD, less than 200.00."),
])
def test_a_refused_transfer_is_shown_on_the_form_and_moves_nothing(overrides, field, message):
    bc, adv = bc_with_account()
    client, _ = staff_client(BILLING_MANAGER)
    response = client.post(TRANSFER_ADD, transfer_post(bc, adv, **overrides))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors[field] == [message]
    assert not BCTransfer.objects.exists() and not AuditLog.objects.filter(action="bc_transfer").exists()


def test_an_advertiser_of_another_bc_is_refused():
    bc, _ = bc_with_account()
    stranger = AdvertiserFactory(name="Elsewhere")
    client, _ = staff_client(BILLING_MANAGER)
    response = client.post(TRANSFER_ADD, transfer_post(bc, stranger))
    assert response.context["adminform"].form.errors["advertiser_id"] == [
        "No such advertiser in this Business Center."]
    assert not BCTransfer.objects.exists()


# --- who may reach these pages -------------------------------------------------------------------------

NEW_PAGES = [PROGRAM_ADD, TRANSFER_ADD, EXPORT_URL]


def test_advertiser_members_and_anonymous_users_cannot_reach_the_new_pages():
    adv = _manual_with_cash()
    owner = member(adv, "admin")
    signed_in = Client()
    signed_in.force_login(owner)
    plain_staff = Client()  # the staff flag without a role: an API service account
    plain_staff.force_login(UserFactory(is_staff=True))
    for client in (Client(), signed_in, plain_staff):
        for url in NEW_PAGES:
            response = client.get(url)
            assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), url
        client.post(ADVERTISERS, {"action": "refund_and_close", "_selected_action": [str(adv.pk)], "confirm": "yes",
                                  "reason": "self-service"})
    adv.refresh_from_db()
    assert adv.status == AdvertiserStatus.ACTIVE and not AuditLog.objects.filter(action="cash_refund").exists()


def test_a_support_agent_cannot_create_programs_transfer_cash_or_refund():
    adv = _manual_with_cash()
    bc, child = bc_with_account()
    client, _ = staff_client(SUPPORT_AGENT)
    assert client.get(PROGRAM_ADD).status_code == 403
    assert client.post(PROGRAM_ADD, program_post()).status_code == 403
    assert client.get(TRANSFER_ADD).status_code == 403
    assert "Transfer cash" not in client.get(reverse("admin:portal_businesscenter_change", args=[bc.pk])).text
    assert client.post(TRANSFER_ADD, transfer_post(bc, child)).status_code == 403
    assert "refund_and_close" not in client.get(ADVERTISERS).text
    client.post(ADVERTISERS, {"action": "refund_and_close", "_selected_action": [str(adv.pk)], "confirm": "yes",
                              "reason": "x"})
    adv.refresh_from_db()
    assert adv.status == AdvertiserStatus.ACTIVE
    assert not Program.objects.exists() and not BCTransfer.objects.exists()
    # but they may export the audit log, which they may read
    assert client.get(EXPORT_URL).status_code == 200


def test_the_appeal_title_is_used_in_the_bulk_decision_message():
    _, _, appeal = frozen_with_appeal(name="Bulk Co")
    client, _ = staff_client(SUPPORT_AGENT)
    done = client.post(reverse("admin:promotions_appeal_changelist"), {
        "action": "approve_appeal", "_selected_action": [str(appeal.pk)], "confirm": "yes", "reason": "ok"},
        follow=True)
    assert f"Approve appeal: done for Appeal #{appeal.pk} · Bulk Co · Approved." in messages_of(done)
    assert Appeal.objects.get().status == "approved"
