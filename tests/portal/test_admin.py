"""The support-staff admin (SPEC §1, R14, R22): credit granted and withdrawn only through the
services, the ledger read-only, advertisers searchable with their balances on the change page."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.admin.models import LogEntry
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models import Sum
from django.urls import reverse

from billing.models import (
    ADVERTISER_PURPOSES,
    CREDIT,
    DEBIT,
    Deposit,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    SpendEvent,
    ThresholdChange,
    TxKind,
)
from billing.selectors import advertiser_balances
from billing.deposits import deposit_create
from billing.spend import spend_record
from portal.models import Advertiser, AuditLog, Membership
from promotions.appeals import appeal_file
from promotions.freeze import credit_freeze
from promotions.models import Credit, CreditStatus
from tests.factories import AdvertiserFactory, CampaignFactory, UserFactory, deposit, grant, member

pytestmark = pytest.mark.django_db

ADD_URL = reverse("admin:promotions_credit_add")
CREDITS_URL = reverse("admin:promotions_credit_changelist")


@pytest.fixture
def support(client):
    user = UserFactory(username="support-agent", is_staff=True, is_superuser=True)
    client.force_login(user)
    return user


def grant_post(advertiser, **overrides):
    data = {
        "advertiser": str(advertiser.pk),
        "kind": "free",
        "amount": "250.00",
        "percent": "",
        "reason": "Compensation for delivery outage ticket #4411",
        "idempotency_key": "admin-test-key-1",
        "valid_from_0": "",
        "valid_from_1": "",
        "expires_at_0": "",
        "expires_at_1": "",
        "eligible_product_source": "",
    }
    data.update(overrides)
    return data


def assert_ledger_balanced():
    """Every transaction's debits equal its credits, and every stored balance is its entries' sum (R14)."""
    for tx in LedgerTransaction.objects.prefetch_related("entries"):
        debits = sum((e.amount for e in tx.entries.all() if e.side == DEBIT), Decimal(0))
        credits = sum((e.amount for e in tx.entries.all() if e.side == CREDIT), Decimal(0))
        assert debits == credits, tx
    for account in LedgerAccount.objects.all():
        on_normal = account.entries.filter(side=account.normal).aggregate(s=Sum("amount"))["s"] or 0
        off_normal = account.entries.exclude(side=account.normal).aggregate(s=Sum("amount"))["s"] or 0
        assert account.balance == on_normal - off_normal, account


def test_staff_grants_credit_through_the_admin_add_form(client, support):
    # given an advertiser and the grant form
    adv = AdvertiserFactory(name="Acme Outdoor")
    page = client.get(ADD_URL + f"?advertiser={adv.pk}")
    assert page.status_code == 200
    assert 'name="reason"' in page.text
    assert 'name="idempotency_key"' in page.text and 'value="admin-' in page.text
    # when support posts a grant with a reason
    response = client.post(ADD_URL, grant_post(adv))
    # then one managed credit exists, granted by the staff user, booked on a balanced ledger
    credit = Credit.objects.get(advertiser=adv)
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:promotions_credit_change", args=[credit.pk])
    assert (credit.kind, credit.source, credit.amount, credit.status) == ("free", "managed", Decimal("250.00"), "active")
    assert credit.granted_by == support
    assert credit.reason == "Compensation for delivery outage ticket #4411"
    assert credit.idempotency_key == "admin-test-key-1"
    assert credit.expires_at - credit.valid_from == timedelta(days=90)
    issue = LedgerTransaction.objects.get(advertiser=adv, kind=TxKind.CREDIT_ISSUE)
    assert issue.amount == Decimal("250.00")
    assert {(e.account.purpose, e.side, e.amount) for e in issue.entries.select_related("account")} == {
        ("promotion_expense", DEBIT, Decimal("250.00")),
        ("credit", CREDIT, Decimal("250.00")),
    }
    assert_ledger_balanced()
    assert advertiser_balances(advertiser=adv).credit_balance == Decimal("250.00")
    # and the advertiser's admin page shows it, and the grant is in the admin history
    change = client.get(reverse("admin:portal_advertiser_change", args=[adv.pk]))
    assert "Usable credit (free + coupons)</th><td>250.00 USD" in change.text
    assert "Promotion issued" in change.text
    assert LogEntry.objects.filter(object_id=str(credit.pk), user=support).exists()


def test_double_submit_of_one_grant_form_grants_once(client, support):
    adv = AdvertiserFactory()
    client.post(ADD_URL, grant_post(adv))
    client.post(ADD_URL, grant_post(adv))
    assert Credit.objects.filter(advertiser=adv).count() == 1
    assert advertiser_balances(advertiser=adv).credit_balance == Decimal("250.00")


def test_discount_grant_with_eligibility_and_validity(client, support):
    adv = AdvertiserFactory()
    response = client.post(ADD_URL, grant_post(
        adv, kind="discount", amount="100.00", percent="50", eligible_objectives=["TRAFFIC", "REACH"],
        eligible_product_source="TIKTOK_SHOP", valid_from_0="2026-01-01", valid_from_1="00:00:00",
        expires_at_0="2026-03-01", expires_at_1="00:00:00",
    ))
    assert response.status_code == 302
    credit = Credit.objects.get(advertiser=adv)
    assert (credit.kind, credit.percent, credit.amount) == ("discount", Decimal("50.00"), Decimal("100.00"))
    assert credit.eligible_objectives == ["REACH", "TRAFFIC"]
    assert credit.eligible_product_source == "TIKTOK_SHOP"
    assert credit.valid_from.isoformat() == "2026-01-01T00:00:00+00:00"
    assert credit.expires_at.isoformat() == "2026-03-01T00:00:00+00:00"
    assert advertiser_balances(advertiser=adv).discount_cap_remaining == Decimal("100.00")


@pytest.mark.parametrize(
    "overrides, field, message",
    [
        ({"reason": ""}, "reason", "This field is required."),
        ({"reason": "   "}, "reason", "This field is required."),
        ({"amount": "10.005"}, "amount", "has more decimal places than USD allows"),
        ({"amount": "-5"}, "amount", "must be positive"),
        ({"kind": "discount"}, "percent", "A discount needs a percent."),
        ({"valid_from_0": "2026-03-01", "valid_from_1": "00:00", "expires_at_0": "2026-02-01",
          "expires_at_1": "00:00"}, "expires_at", "Expires at must be after valid from."),
    ],
)
def test_invalid_grant_shows_the_error_and_records_nothing(client, support, overrides, field, message):
    adv = AdvertiserFactory()
    response = client.post(ADD_URL, grant_post(adv, **overrides))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert message in " ".join(errors[field])
    assert message in response.text or message.replace("'", "&#x27;") in response.text
    assert not Credit.objects.exists()
    assert not LedgerTransaction.objects.exists()
    assert advertiser_balances(advertiser=adv).credit_balance == 0


def test_grant_to_a_closed_account_is_refused_on_the_form(client, support):
    adv = AdvertiserFactory()
    Advertiser.objects.filter(pk=adv.pk).update(status="closed")
    response = client.post(ADD_URL, grant_post(adv))
    assert response.status_code == 200
    assert "Credit cannot be issued to a closed account." in response.text
    assert not Credit.objects.exists()


def test_withdraw_action_asks_for_a_reason_then_books_the_withdrawal(client, support, spend_event):
    # given a credit partly used
    adv = AdvertiserFactory()
    camp = CampaignFactory(advertiser=adv)
    deposit(adv, "100.00")
    credit = grant(adv, "free", "80.00")
    spend_record(event=spend_event(camp, "30.00"))
    action = {"action": "withdraw_credit", "_selected_action": [str(credit.pk)], "index": "0"}
    # when support picks the action, they get a confirmation page asking for a reason
    page = client.post(CREDITS_URL, action)
    assert page.status_code == 200
    assert "Withdraw credit" in page.text and "50.00 USD" in page.text and 'name="reason"' in page.text
    credit.refresh_from_db()
    assert credit.status == CreditStatus.ACTIVE
    # when they confirm without a reason, nothing happens
    confirm = {"action": "withdraw_credit", "_selected_action": [str(credit.pk)], "confirm": "yes"}
    again = client.post(CREDITS_URL, {**confirm, "reason": ""})
    assert again.status_code == 200 and "This field is required." in again.text
    credit.refresh_from_db()
    assert credit.status == CreditStatus.ACTIVE
    assert not LedgerTransaction.objects.filter(kind=TxKind.CREDIT_WITHDRAW).exists()
    # when they confirm with a reason
    done = client.post(CREDITS_URL, {**confirm, "reason": "Policy violation: fake business documents"}, follow=True)
    # then what was left (50) is withdrawn on the ledger and the credit is marked withdrawn
    credit.refresh_from_db()
    assert credit.status == CreditStatus.WITHDRAWN
    assert credit.remaining == 0
    tx = LedgerTransaction.objects.get(kind=TxKind.CREDIT_WITHDRAW)
    assert tx.amount == Decimal("50.00")
    assert "Policy violation: fake business documents" in tx.memo
    assert_ledger_balanced()
    assert advertiser_balances(advertiser=adv).credit_balance == 0
    assert f"Withdraw credit: done for Free credit #{credit.pk}." in done.text


def test_withdraw_action_is_offered_on_the_credit_page(client, support):
    adv = AdvertiserFactory()
    credit = grant(adv, "assignable", "40.00")
    page = client.get(reverse("admin:promotions_credit_change", args=[credit.pk]))
    assert page.status_code == 200
    assert 'value="withdraw_credit"' in page.text
    assert 'name="_save"' not in page.text  # read-only: nothing to save
    assert "Not assigned: pays nothing until" in page.text
    # picking it there leads to the same confirmation page
    confirm = client.post(reverse("admin:promotions_credit_change", args=[credit.pk]),
                          {"CHANGE_FORM-action": "withdraw_credit", "_selected_action": [str(credit.pk)]})
    assert confirm.status_code == 200
    assert 'name="reason"' in confirm.text and "40.00 USD" in confirm.text
    credit.refresh_from_db()
    assert credit.status == CreditStatus.ACTIVE


def test_withdrawing_an_already_withdrawn_credit_is_reported(client, support):
    adv = AdvertiserFactory()
    credit = grant(adv, "free", "40.00")
    confirm = {"action": "withdraw_credit", "_selected_action": [str(credit.pk)], "confirm": "yes", "reason": "x"}
    client.post(CREDITS_URL, confirm)
    second = client.post(CREDITS_URL, confirm, follow=True)
    assert "This credit is already withdrawn." in second.text
    assert LedgerTransaction.objects.filter(kind=TxKind.CREDIT_WITHDRAW).count() == 1


def test_credit_admin_refuses_edit_and_delete(client, support):
    credit = grant(AdvertiserFactory(), "free", "40.00")
    change_url = reverse("admin:promotions_credit_change", args=[credit.pk])
    assert client.post(change_url, {"reason": "edited"}).status_code == 403
    assert client.get(reverse("admin:promotions_credit_delete", args=[credit.pk])).status_code == 403
    credit.refresh_from_db()
    assert credit.reason == "test grant"


def ledger_rows(spend_event):
    adv = AdvertiserFactory()
    camp = CampaignFactory(advertiser=adv)
    dep = deposit(adv, "100.00")
    spend_record(event=spend_event(camp, "12.00", event_id="ev-admin-1"))
    event = SpendEvent.objects.get(event_id="ev-admin-1")
    account = LedgerAccount.objects.get(advertiser=adv, purpose="cash")
    return {
        "ledgertransaction": event.transaction,
        "ledgeraccount": account,
        "deposit": dep,
        "spendevent": event,
    }


@pytest.mark.parametrize("model", ["ledgertransaction", "ledgeraccount", "deposit", "spendevent"])
def test_ledger_admin_is_read_only(client, support, spend_event, model):
    obj = ledger_rows(spend_event)[model]
    before = {(a.pk, a.balance) for a in LedgerAccount.objects.all()}
    changelist = client.get(reverse(f"admin:billing_{model}_changelist"))
    assert changelist.status_code == 200
    assert reverse(f"admin:billing_{model}_add") not in changelist.text  # no "Add" button
    change_url = reverse(f"admin:billing_{model}_change", args=[obj.pk])
    page = client.get(change_url)
    assert page.status_code == 200
    assert 'name="_save"' not in page.text and "deletelink" not in page.text
    assert client.post(change_url, {"amount": "1.00"}).status_code == 403
    assert client.get(reverse(f"admin:billing_{model}_delete", args=[obj.pk])).status_code == 403
    assert client.post(reverse(f"admin:billing_{model}_delete", args=[obj.pk]), {"post": "yes"}).status_code == 403
    assert client.get(reverse(f"admin:billing_{model}_add")).status_code == 403
    bulk = client.post(reverse(f"admin:billing_{model}_changelist"),
                       {"action": "delete_selected", "_selected_action": [str(obj.pk)], "post": "yes", "index": "0"})
    assert bulk.status_code in (200, 302)
    assert type(obj).objects.filter(pk=obj.pk).exists()
    assert {(a.pk, a.balance) for a in LedgerAccount.objects.all()} == before


def test_ledger_transaction_page_shows_its_entries(client, support, spend_event):
    tx = ledger_rows(spend_event)["ledgertransaction"]
    page = client.get(reverse("admin:billing_ledgertransaction_change", args=[tx.pk]))
    assert "Cash balance" in page.text and "Ad revenue" in page.text
    assert page.text.count("$12.00") >= 2 and "12.0000" not in page.text  # debit and credit entry


def test_advertiser_search_by_name_id_and_member_username(client, support):
    a = AdvertiserFactory(name="Blue Lagoon Cosmetics")
    b = AdvertiserFactory(name="Red Canyon Tools", billing_method="automatic")
    member(b, "finance", username="jdoe-finance")
    url = reverse("admin:portal_advertiser_changelist")

    def found(**params):
        return set(client.get(url, params).context["cl"].result_list)

    assert found(q="lagoon") == {a}
    assert found(q=str(b.pk)) == {b}
    assert found(q="jdoe-finance") == {b}
    assert found(billing_method__exact="automatic") == {b}
    assert found(status__exact="active", currency="USD") == {a, b}


def test_advertiser_change_page_shows_balances_members_and_campaigns(client, support, spend_event):
    adv = AdvertiserFactory(name="Northwind Snacks")
    camp = CampaignFactory(advertiser=adv, name="Summer Crunch")
    member(adv, "analyst", username="ana-lyst")
    deposit(adv, "500.00")
    grant(adv, "free", "20.00")
    spend_record(event=spend_event(camp, "50.00"))
    page = client.get(reverse("admin:portal_advertiser_change", args=[adv.pk]))
    assert page.status_code == 200
    text = page.text
    assert "Cash balance</th><td>470.00 USD" in text  # 500 − (50 − 20 paid by credit)
    assert "Usable credit (free + coupons)</th><td>0.00 USD" in text
    assert "Ad spend" in text and "Deposit" in text and "Promotion issued" in text
    assert "ana-lyst" in text and "Summer Crunch" in text
    assert f'href="{ADD_URL}?advertiser={adv.pk}"' in text  # "Grant credit", for a role that may grant


def test_advertiser_created_in_admin_has_its_ledger_accounts(client, support):
    response = client.post(reverse("admin:portal_advertiser_add"), {
        "name": "Fresh Start LLC", "currency": "JPY", "timezone": "Asia/Tokyo", "billing_method": "manual",
        "signup_source": "organic", "registered_at_0": "2026-01-05", "registered_at_1": "09:00:00", "shop_id": "",
        "credit_line_limit": "0", "billing_threshold": "", "bill_cycle": "monthly", "business_center": "",
        "change_reason": "Onboarding ticket #77",
    })
    assert response.status_code == 302
    adv = Advertiser.objects.get(name="Fresh Start LLC")
    assert (adv.currency, adv.timezone) == ("JPY", "Asia/Tokyo")
    assert LedgerAccount.objects.filter(advertiser=adv).count() == len(ADVERTISER_PURPOSES)
    assert advertiser_balances(advertiser=adv).cash_balance == 0
    log = AuditLog.objects.get(action="advertiser_create", advertiser=adv)
    assert (log.actor, log.reason, log.after["name"]) == (support, "Onboarding ticket #77", "Fresh Start LLC")


def test_advertiser_admin_rejects_unknown_currency_and_closing_by_edit(client, support):
    response = client.post(reverse("admin:portal_advertiser_add"), {
        "name": "Bad Money", "currency": "XXX", "timezone": "UTC", "billing_method": "manual",
        "signup_source": "organic", "registered_at_0": "2026-01-05", "registered_at_1": "09:00:00",
        "credit_line_limit": "0", "bill_cycle": "monthly",
    })
    assert response.status_code == 200 and "Unknown currency" in response.text
    assert not Advertiser.objects.filter(name="Bad Money").exists()
    adv = AdvertiserFactory()
    change = client.post(reverse("admin:portal_advertiser_change", args=[adv.pk]),
                         advertiser_change_post(adv, status="closed"))
    assert change.status_code == 200 and "An account is closed only by refunding" in change.text
    adv.refresh_from_db()
    assert adv.status == "active"


def advertiser_change_post(adv, **overrides):
    data = {
        "name": adv.name, "status": adv.status, "shop_id": adv.shop_id,
        "invoicing_eligible": "on" if adv.invoicing_eligible else "",
        "credit_line_limit": str(adv.credit_line_limit),
        "billing_threshold": "" if adv.billing_threshold is None else str(adv.billing_threshold),
        "bill_cycle": adv.bill_cycle,
        "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0",
        "campaigns-TOTAL_FORMS": "0", "campaigns-INITIAL_FORMS": "0",
        "change_reason": "Per finance review",
    }
    data.update(overrides)
    return data


def test_raising_a_credit_line_resumes_paused_campaigns_and_is_audited(client, support, spend_event):
    # given an invoiced account whose credit line ran out: campaigns paused by billing
    adv = AdvertiserFactory(billing_method="monthly_invoice")
    Advertiser.objects.filter(pk=adv.pk).update(credit_line_limit=Decimal("100"))
    adv.refresh_from_db()
    camp = CampaignFactory(advertiser=adv)
    spend_record(event=spend_event(camp, "100.00"))
    camp.refresh_from_db()
    assert camp.status == "paused_funds"
    # when support raises the credit line in the admin
    url = reverse("admin:portal_advertiser_change", args=[adv.pk])
    response = client.post(url, advertiser_change_post(adv, credit_line_limit="5000"))
    # then the limit is set through the billing service and delivery resumes
    assert response.status_code == 302
    adv.refresh_from_db()
    camp.refresh_from_db()
    assert adv.credit_line_limit == Decimal("5000")
    assert advertiser_balances(advertiser=adv).credit_line_limit == Decimal("5000")
    assert camp.status == "active"
    assert "Credit line limit" in LogEntry.objects.get(object_id=str(adv.pk)).get_change_message()
    log = AuditLog.objects.get(action="billing_settings", advertiser=adv)
    assert (log.actor, log.reason) == (support, "Per finance review")
    assert (log.before["credit_line_limit"], log.after["credit_line_limit"]) == ("100.0000", "5000.0000")
    # and a limit with more places than the currency allows is refused on the form
    bad = client.post(url, advertiser_change_post(adv, credit_line_limit="10.123"))
    assert bad.status_code == 200 and "more decimal places than USD allows" in bad.text
    adv.refresh_from_db()
    assert adv.credit_line_limit == Decimal("5000")


def test_threshold_changes_are_counted_and_limited_to_three_a_month(client, support):
    adv = AdvertiserFactory(billing_method="automatic")
    url = reverse("admin:portal_advertiser_change", args=[adv.pk])
    for amount in ("200.00", "300.00", "400.00"):
        adv.refresh_from_db()
        assert client.post(url, advertiser_change_post(adv, billing_threshold=amount)).status_code == 302
    adv.refresh_from_db()
    assert adv.billing_threshold == Decimal("400.00")
    assert list(ThresholdChange.objects.filter(advertiser=adv).order_by("pk").values_list("new", flat=True)) == [
        Decimal("200.00"), Decimal("300.00"), Decimal("400.00")]
    assert ThresholdChange.objects.filter(advertiser=adv, reason="Per finance review").count() == 3
    refused = client.post(url, advertiser_change_post(adv, billing_threshold="500.00"))
    assert refused.status_code == 200 and "at most 3 times in a calendar month" in refused.text
    adv.refresh_from_db()
    assert adv.billing_threshold == Decimal("400.00")
    # other fields still save without touching the threshold
    assert client.post(url, advertiser_change_post(adv, name="Renamed Co")).status_code == 302
    adv.refresh_from_db()
    assert adv.name == "Renamed Co" and ThresholdChange.objects.filter(advertiser=adv).count() == 3


def test_non_staff_user_is_sent_to_the_admin_login(client):
    user = UserFactory(username="advertiser-admin")
    adv = AdvertiserFactory()
    Membership.objects.create(user=user, advertiser=adv, role="admin")
    client.force_login(user)
    for url in ["/admin/", ADD_URL, reverse("admin:billing_ledgertransaction_changelist")]:
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
    assert client.post(ADD_URL, grant_post(adv)).status_code == 302
    assert not Credit.objects.exists()


def test_anonymous_is_sent_to_the_admin_login(client):
    response = client.get("/admin/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_staff_without_a_role_is_sent_to_the_admin_login(client):
    # a staff flag alone (a service account) does not open the admin: it needs a staff role
    viewer = UserFactory(username="viewer", is_staff=True)
    client.force_login(viewer)
    adv = AdvertiserFactory()
    for url in ["/admin/", ADD_URL]:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    assert client.post(ADD_URL, grant_post(adv)).status_code == 302
    assert not Credit.objects.exists()
    assert not Deposit.objects.exists() and not LedgerEntry.objects.exists()


ADVERTISERS_URL = reverse("admin:portal_advertiser_changelist")
APPEALS_URL = reverse("admin:promotions_appeal_changelist")
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def test_freeze_and_unfreeze_credit_from_the_advertiser_admin_are_audited(client, support):
    # given an advertiser with 60 of free credit
    adv = AdvertiserFactory(name="Risky Widgets")
    credit = grant(adv, "free", "60.00")
    pick = {"action": "freeze_credit", "_selected_action": [str(adv.pk)], "index": "0"}
    # when support picks "Freeze credit", a confirmation page asks for a reason
    page = client.post(ADVERTISERS_URL, pick)
    assert page.status_code == 200 and "Freeze credit" in page.text and "60.00 USD" in page.text
    adv.refresh_from_db()
    assert not adv.credit_frozen
    # when they confirm with a reason
    confirm = {"action": "freeze_credit", "_selected_action": [str(adv.pk)], "confirm": "yes",
               "reason": "Chargeback pattern under review"}
    client.post(ADVERTISERS_URL, confirm)
    # then the credit is frozen: not usable, shown as frozen, and the action is in the audit log
    adv.refresh_from_db()
    credit.refresh_from_db()
    assert adv.credit_frozen and credit.status == CreditStatus.FROZEN
    b = advertiser_balances(advertiser=adv)
    assert (b.credit_balance, b.frozen_credit_balance) == (0, Decimal("60.00"))
    log = AuditLog.objects.get(action="credit_freeze", advertiser=adv)
    assert (log.actor, log.reason) == (support, "Chargeback pattern under review")
    change = client.get(reverse("admin:portal_advertiser_change", args=[adv.pk]))
    assert "credit_freeze" in change.text and "Chargeback pattern under review" in change.text
    # freezing again is refused with the service's message
    again = client.post(ADVERTISERS_URL, confirm, follow=True)
    assert "already frozen" in again.text
    assert AuditLog.objects.filter(action="credit_freeze").count() == 1
    # unfreezing makes the credit usable again
    client.post(ADVERTISERS_URL, {**confirm, "action": "unfreeze_credit", "reason": "Reviewed: legitimate"})
    credit.refresh_from_db()
    adv.refresh_from_db()
    assert credit.status == CreditStatus.ACTIVE and not adv.credit_frozen
    assert advertiser_balances(advertiser=adv).credit_balance == Decimal("60.00")
    assert AuditLog.objects.get(action="credit_unfreeze").actor == support


@pytest.fixture
def appeal(settings, tmp_path, support):
    settings.PRIVATE_MEDIA_ROOT = str(tmp_path)
    adv = AdvertiserFactory(name="Appealing Co")
    owner = member(adv, "admin", username="appeal-owner")
    credit = grant(adv, "free", "80.00")
    credit_freeze(advertiser=adv, reason="unusual activity", by=support)
    filed = appeal_file(advertiser=adv, user=owner, message="These were real customers; invoices attached.",
                        files=[SimpleUploadedFile("invoice.png", PNG, content_type="image/png")])
    return filed, credit


def test_staff_read_an_appeal_and_its_attachment(client, support, appeal):
    filed, _ = appeal
    page = client.get(reverse("admin:promotions_appeal_change", args=[filed.pk]))
    assert page.status_code == 200
    assert "These were real customers; invoices attached." in page.text
    url = reverse("admin:promotions_appeal_attachment", args=[filed.pk, filed.attachments.get().pk])
    assert url in page.text
    download = client.get(url)
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == PNG
    assert download["Content-Type"] == "image/png" and "attachment" in download["Content-Disposition"]
    assert download["X-Content-Type-Options"] == "nosniff"
    # the file's owner is not staff: the admin URL sends them to the admin login
    client.force_login(filed.filed_by)
    refused = client.get(url)
    assert refused.status_code == 302 and refused["Location"].startswith("/admin/login/")


def test_approving_an_appeal_unfreezes_the_credit(client, support, appeal):
    filed, credit = appeal
    pick = {"action": "approve_appeal", "_selected_action": [str(filed.pk)], "index": "0"}
    assert "Decision note" in client.post(APPEALS_URL, pick).text
    confirm = {"action": "approve_appeal", "_selected_action": [str(filed.pk)], "confirm": "yes", "reason": ""}
    assert "This field is required." in client.post(APPEALS_URL, confirm).text
    filed.refresh_from_db()
    assert filed.status == "open"
    client.post(APPEALS_URL, {**confirm, "reason": "Documents check out."})
    filed.refresh_from_db()
    credit.refresh_from_db()
    assert (filed.status, filed.decided_by, filed.decision_note) == ("approved", support, "Documents check out.")
    assert credit.status == CreditStatus.ACTIVE and not credit.advertiser.credit_frozen
    assert advertiser_balances(advertiser=credit.advertiser).credit_balance == Decimal("80.00")
    assert AuditLog.objects.filter(action="appeal_approve", actor=support).exists()
    # a decided appeal cannot be decided again
    second = client.post(APPEALS_URL, {**confirm, "action": "reject_appeal", "reason": "no"}, follow=True)
    assert "already approved" in second.text


def test_rejecting_an_appeal_may_withdraw_the_credit_on_the_ledger(client, support, appeal):
    filed, credit = appeal
    client.post(APPEALS_URL, {"action": "reject_and_withdraw_appeal", "_selected_action": [str(filed.pk)],
                              "confirm": "yes", "reason": "Policy violation confirmed."})
    filed.refresh_from_db()
    credit.refresh_from_db()
    assert filed.status == "rejected" and filed.credits_withdrawn
    assert credit.status == CreditStatus.WITHDRAWN and credit.remaining == 0
    tx = LedgerTransaction.objects.get(kind=TxKind.CREDIT_WITHDRAW, advertiser=credit.advertiser)
    assert tx.amount == Decimal("80.00")
    assert_ledger_balanced()
    assert advertiser_balances(advertiser=credit.advertiser).frozen_credit_balance == 0


def test_audit_log_admin_is_read_only(client, support):
    adv = AdvertiserFactory()
    credit_freeze(advertiser=adv, reason="manual check", by=support)
    log = AuditLog.objects.get()
    listing = client.get(reverse("admin:portal_auditlog_changelist"))
    assert listing.status_code == 200 and "manual check" in listing.text
    change_url = reverse("admin:portal_auditlog_change", args=[log.pk])
    assert 'name="_save"' not in client.get(change_url).text
    assert client.post(change_url, {"reason": "edited"}).status_code == 403
    assert client.post(reverse("admin:portal_auditlog_delete", args=[log.pk]), {"post": "yes"}).status_code == 403
    log.refresh_from_db()
    assert log.reason == "manual check"


@pytest.mark.parametrize("model", ["bill", "thresholdchange", "paymentmethod", "reconciliationrun"])
def test_billing_records_have_no_add_button(client, support, model):
    listing = client.get(reverse(f"admin:billing_{model}_changelist"))
    assert listing.status_code == 200
    assert reverse(f"admin:billing_{model}_add") not in listing.text
    assert client.get(reverse(f"admin:billing_{model}_add")).status_code == 403


def test_r43_staff_set_a_spending_limit_in_the_admin_through_its_rule(client, support, spend_event):
    # given an account that spent 30.00
    adv = AdvertiserFactory()
    camp = CampaignFactory(advertiser=adv)
    deposit_create(advertiser=adv, amount="100.00", idempotency_key="admin-limit")
    spend_record(event=spend_event(camp, "30.00"))
    url = reverse("admin:portal_advertiser_change", args=[adv.pk])
    # when support sets a lifetime limit below what was spent
    response = client.post(url, advertiser_change_post(adv, spending_limit="25.00", spending_limit_period="lifetime"))
    # then it is set by spending_limit_set: counted, campaigns paused, audited with the reason
    assert response.status_code == 302, response.text[:2000]
    adv.refresh_from_db()
    camp.refresh_from_db()
    assert (adv.spending_limit, adv.spending_limit_period, adv.limit_spent) == (Decimal("25.00"), "lifetime",
                                                                                Decimal("30.00"))
    assert camp.status == "paused_limit"
    log = AuditLog.objects.get(action="spending_limit", advertiser=adv)
    assert (log.actor, log.reason, log.after) == (support, "Per finance review", {"amount": "25.00", "period": "lifetime"})
    # and a bad amount is refused on the form, nothing changed
    bad = client.post(url, advertiser_change_post(adv, spending_limit="-1"))
    assert bad.status_code == 200 and "must be zero or more" in bad.text
    removed = client.post(url, advertiser_change_post(adv, spending_limit=""))
    assert removed.status_code == 302
    camp.refresh_from_db()
    adv.refresh_from_db()
    assert (adv.spending_limit, camp.status) == (None, "active")
