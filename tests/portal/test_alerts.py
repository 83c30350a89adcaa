"""Alerts with per-member preferences (SPEC R44, on the outbox R46; decision 0034).

Each alert of the catalogue reaches, by email, the payments people who left its email on and, in
the notification centre, the members who left it on in-app; a member's own alert reaches only
them. The level alerts (`alerts_check`) fire once per crossing: a balance below a member's amount,
a credit line 80 % used; a recovery re-arms them silently; two runs at once fire once.
"""

import threading
import time
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection, transaction
from django.utils import timezone

from billing.deposits import deposit_create
from billing.spend import spend_record
from billing.switching import billing_settings_set
from portal.alerts import alert_preferences_set, alerts_check, low_balance_key
from portal.jobs import JOBS, job_run
from portal.models import AlertPreference, AlertState, BCMembership, Notification
from portal.notifications import ALERT_OF_KIND, ALERTS, KINDS, Draft, notify_many
from portal.views import with_unread_count
from promotions.freeze import credit_freeze
from tests.factories import AdvertiserFactory, BusinessCenterFactory, CampaignFactory, UserFactory, grant, member
from tests.pages_helpers import fast_password_hashing, logged_in, text  # noqa: F401

_events = iter(range(1, 10**6))


def charge(campaign, amount: str):
    """A spend event booked through the money path (R10)."""
    return spend_record(event={
        "event_id": f"alerts-ev-{next(_events)}", "advertiser_id": str(campaign.advertiser_id),
        "campaign_id": str(campaign.pk), "amount": amount, "currency": campaign.advertiser.currency,
        "occurred_at": (timezone.now() - timedelta(minutes=1)).isoformat(),
    })


def notices(adv, kind):
    return list(Notification.objects.filter(advertiser=adv, kind=kind).order_by("pk"))


# --- preferences applied to every alert -----------------------------------------------------------

# A context for each kind of the catalogue, as its emitter writes it (subject, link and body).
SAMPLE = {
    "low_balance": {"threshold": "USD 50.00", "balance": "USD 40.00", "cash": "USD 40.00", "credit": "USD 0.00"},
    "credit_line_high": {"used": "USD 850.00", "limit": "USD 1000.00", "percent": "85 %"},
    "credit_expiring": {"amount": "USD 40.00", "date": "Dec 11, 2026", "kind_label": "free credit", "credit_id": 3},
    "bill_paid": {"amount": "USD 180.00", "bill_id": 5, "bill_label": "threshold bill", "number": "B-1",
                  "card": "4242"},
    "payment_failed": {"amount": "USD 180.00", "bill_id": 5, "bill_label": "threshold bill", "number": "B-1",
                       "card": "0002"},
    "campaigns_paused_arrears": {"owed": "USD 10.00"},
    "campaigns_paused_credit_line": {"limit": "USD 100.00", "owed": ""},
    "campaigns_resumed": {"count": 2},
    "spending_limit_reached": {"amount": "USD 500.00", "period": "monthly", "spent": "USD 512.30"},
    "invoice_issued": {"number": "INV-1", "month": "November 2026", "amount": "USD 100.00", "due": "Dec 31",
                       "bill_id": 6},
    "invoice_overdue": {"number": "INV-1", "amount": "USD 100.00", "bill_id": 6},
    "invoice_reminder": {"number": "INV-1", "amount": "USD 100.00", "when": "is due in 7 days"},
    "appeal_decided": {"appeal_id": 7, "decision": "approved", "note": "Documents check out.", "withdrawn": False},
    "document_issued": {"number": "RCT-2026-000042", "document": "Receipt", "amount": "USD 100.00"},
}


@pytest.fixture
def crew(db):
    """A manual account with two admins, a finance member and an analyst (all default: every
    alert on), a Business Center finance member, and another account's admin."""
    bc = BusinessCenterFactory(name="Alerts BC")
    adv = AdvertiserFactory(name="Alerts Shop", business_center=bc)
    crew = type("Crew", (), {})()
    crew.adv = adv
    crew.admin = member(adv, "admin", username="al-admin")
    crew.admin2 = member(adv, "admin", username="al-admin2")
    crew.finance = member(adv, "finance", username="al-finance")
    crew.analyst = member(adv, "analyst", username="al-analyst")
    crew.bc_finance = UserFactory(username="al-bc-finance")
    BCMembership.objects.create(user=crew.bc_finance, business_center=bc, role="finance")
    crew.other = member(AdvertiserFactory(name="Elsewhere"), "admin", username="al-other")
    return crew


def emit(django_capture_on_commit_callbacks, *drafts):
    """Write the notices in a transaction, as their emitters do, and return the emails sent."""
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        notify_many(list(drafts))
    return list(mail.outbox)


def centre(user, adv) -> str:
    return text(logged_in(user).get(f"/a/{adv.pk}/notifications/"))


def test_the_catalogue_covers_r44_and_its_kinds_are_known():
    assert set(SAMPLE) == set(ALERT_OF_KIND)  # every kind of the catalogue is tested below
    assert set(ALERT_OF_KIND) <= set(KINDS)
    assert len(ALERTS) == 9  # R44's nine alerts
    assert ALERTS["low_balance"].own and ALERTS["low_balance"].billing_method == "manual"
    assert ALERTS["credit_line_high"].billing_method == "monthly_invoice"
    assert ALERT_OF_KIND["spending_limit_reached"] == "campaigns" and ALERT_OF_KIND["bill_paid"] == "threshold_charge"


@pytest.mark.django_db
@pytest.mark.parametrize("kind", sorted(SAMPLE))
def test_each_alert_goes_by_each_channel_only_to_who_left_it_on(kind, crew, django_capture_on_commit_callbacks):
    alert = ALERT_OF_KIND[kind]
    # given: finance turned the alert's email off, the second admin its in-app, the analyst both;
    # the first admin changed another alert only
    alert_preferences_set(user=crew.finance, advertiser=crew.adv, choices={alert: {"email": False, "in_app": True}})
    alert_preferences_set(user=crew.admin2, advertiser=crew.adv, choices={alert: {"email": True, "in_app": False}})
    alert_preferences_set(user=crew.analyst, advertiser=crew.adv, choices={alert: {"email": False, "in_app": False}})
    elsewhere = next(name for name in ALERTS if name != alert)
    alert_preferences_set(user=crew.admin, advertiser=crew.adv, choices={elsewhere: {"email": False, "in_app": False}})

    # when a notice of the alert is written
    emails = emit(django_capture_on_commit_callbacks, Draft(crew.adv, kind, f"al:{kind}", SAMPLE[kind]))

    # then one email, to the payments people who left its email on (never the analyst) — or, for
    # an alert one must ask for (decision 0034: "document issued"), to who turned it on
    note = Notification.objects.get(key=f"al:{kind}")
    default = ALERTS[alert].default
    to = [crew.admin.email, crew.admin2.email, crew.bc_finance.email] if default else [crew.admin2.email]
    assert [m.to for m in emails] == [sorted(to)]
    assert note.emailed_at is not None
    # and the notification centre lists it for those who left it on in-app
    for user, sees in [(crew.admin, default), (crew.finance, True), (crew.bc_finance, default), (crew.admin2, False),
                       (crew.analyst, False)]:
        assert (note.subject in centre(user, crew.adv)) is sees, (user.username, note.subject)


@pytest.mark.django_db
def test_document_issued_is_an_alert_a_member_asks_for(crew, django_capture_on_commit_callbacks):
    # every receipt, invoice and credit note comes with its own notice already: by default no one
    # gets "document issued" twice
    assert [name for name, a in ALERTS.items() if not a.default] == ["document_issued"]
    draft = Draft(crew.adv, "document_issued", "al:doc-1", SAMPLE["document_issued"])
    assert emit(django_capture_on_commit_callbacks, draft) == []
    assert "Receipt RCT-2026-000042 issued" not in centre(crew.admin, crew.adv)
    # when the admin turns it on, by email and in-app
    alert_preferences_set(user=crew.admin, advertiser=crew.adv,
                          choices={"document_issued": {"email": True, "in_app": True}})
    emails = emit(django_capture_on_commit_callbacks,
                  Draft(crew.adv, "document_issued", "al:doc-2", {**SAMPLE["document_issued"], "number": "RCT-2"}))
    assert [m.to for m in emails] == [[crew.admin.email]]
    assert "Receipt RCT-2 issued" in centre(crew.admin, crew.adv)
    assert "Receipt RCT-2 issued" not in centre(crew.finance, crew.adv)


@pytest.mark.django_db
def test_a_kind_outside_the_catalogue_is_sent_to_everyone_as_before(crew, django_capture_on_commit_callbacks):
    # given every member turned every alert off on both channels
    for user in (crew.admin, crew.admin2, crew.finance, crew.analyst, crew.bc_finance):
        alert_preferences_set(user=user, advertiser=crew.adv,
                              choices={name: {"email": False, "in_app": False} for name in ALERTS})
    # when the account's credit is frozen (not an alert: always sent)
    emails = emit(django_capture_on_commit_callbacks,
                  Draft(crew.adv, "credit_frozen", "al:frozen", {"reason": "unusual activity"}))
    # then it goes to the payments people and is listed for everyone who sees the centre
    assert [m.to for m in emails] == [sorted([crew.admin.email, crew.admin2.email, crew.finance.email,
                                              crew.bc_finance.email])]
    assert "Your ad credit has been frozen" in centre(crew.analyst, crew.adv)


@pytest.mark.django_db
def test_a_members_own_alert_reaches_only_them(crew, django_capture_on_commit_callbacks):
    # when the finance member's own low-balance alert is written
    emails = emit(django_capture_on_commit_callbacks,
                  Draft(crew.adv, "low_balance", "al:own", SAMPLE["low_balance"], user=crew.finance))
    # then only they are emailed, and only their centre and bell show it
    assert [m.to for m in emails] == [[crew.finance.email]]
    subject = "Your balance is below USD 50.00"
    assert subject in centre(crew.finance, crew.adv)
    for user in (crew.admin, crew.admin2, crew.analyst, crew.bc_finance):
        assert subject not in centre(user, crew.adv), user.username
    unread = {u.username: with_unread_count(u).get(pk=crew.adv.pk).unread_notifications
              for u in (crew.finance, crew.admin)}
    assert unread == {"al-finance": 1, "al-admin": 0}
    # and marking all read as another member leaves it unread for its owner
    logged_in(crew.admin).post(f"/a/{crew.adv.pk}/notifications/read/")
    assert Notification.objects.get(key="al:own").read_at is None


@pytest.mark.django_db
def test_own_alert_email_off_sends_nothing_and_in_app_off_hides_it(crew, django_capture_on_commit_callbacks):
    alert_preferences_set(user=crew.finance, advertiser=crew.adv,
                          choices={"low_balance": {"email": False, "in_app": False}})
    emails = emit(django_capture_on_commit_callbacks,
                  Draft(crew.adv, "low_balance", "al:own-off", SAMPLE["low_balance"], user=crew.finance))
    assert emails == []
    assert "Your balance is below" not in centre(crew.finance, crew.adv)


@pytest.mark.django_db
def test_the_bell_counts_what_the_member_sees(crew, django_capture_on_commit_callbacks):
    alert_preferences_set(user=crew.admin2, advertiser=crew.adv, choices={"payment_failed": {"email": True,
                                                                                             "in_app": False}})
    emit(django_capture_on_commit_callbacks,
         Draft(crew.adv, "payment_failed", "al:bell-1", SAMPLE["payment_failed"]),
         Draft(crew.adv, "appeal_decided", "al:bell-2", SAMPLE["appeal_decided"]),
         Draft(crew.adv, "low_balance", "al:bell-3", SAMPLE["low_balance"], user=crew.admin))
    html = {u.username: logged_in(u).get(f"/a/{crew.adv.pk}/").content.decode() for u in (crew.admin, crew.admin2)}
    assert 'class="bell-count">3<' in html["al-admin"]
    assert 'class="bell-count">1<' in html["al-admin2"]


# --- low balance: once per crossing ----------------------------------------------------------------

@pytest.fixture
def shop(db):
    adv = AdvertiserFactory(name="Low Shop")
    owner = member(adv, "admin", username="low-owner")
    finance = member(adv, "finance", username="low-finance")
    campaign = CampaignFactory(advertiser=adv)
    deposit_create(advertiser=adv, amount="100.00", idempotency_key="low-first")
    alert_preferences_set(user=owner, advertiser=adv, choices={}, low_balance_amount="50.00")
    return type("Shop", (), {"adv": adv, "owner": owner, "finance": finance, "campaign": campaign})()


@pytest.fixture
def sent(django_capture_on_commit_callbacks):
    def run(action):
        mail.outbox.clear()
        with django_capture_on_commit_callbacks(execute=True):
            action()
        return list(mail.outbox)

    return run


@pytest.mark.django_db
def test_low_balance_fires_once_per_crossing_and_rearms_on_recovery(shop, sent):
    # above the owner's 50.00: nothing
    assert sent(alerts_check) == [] and notices(shop.adv, "low_balance") == []
    # when a charge takes the balance to 40.00
    charge(shop.campaign, "60.00")
    emails = sent(alerts_check)
    # then one alert, the owner's own, emailed to them only
    [note] = notices(shop.adv, "low_balance")
    assert note.user_id == shop.owner.pk and note.key == f"low_balance:{shop.adv.pk}:{shop.owner.pk}:1"
    assert [(m.subject, m.to) for m in emails] == [("Your balance is below USD 50.00", [shop.owner.email])]
    assert "balance is USD 40.00 (USD 40.00 in cash and USD 0.00 of usable ad credit)" in emails[0].body
    # more charges while below, and the job again: nothing more
    charge(shop.campaign, "5.00")
    charge(shop.campaign, "5.00")
    assert sent(alerts_check) == [] and sent(alerts_check) == []
    assert len(notices(shop.adv, "low_balance")) == 1
    # funds bring it back above: re-armed, silently
    deposit_create(advertiser=shop.adv, amount="100.00", idempotency_key="low-again")
    assert [m.subject for m in sent(alerts_check)] == []
    state = AlertState.objects.get(advertiser=shop.adv, key=low_balance_key(shop.owner.pk))
    assert (state.crossed, state.crossings) == (False, 1)
    # below again: it fires again, as the second crossing
    charge(shop.campaign, "100.00")
    emails = sent(alerts_check)
    assert [m.subject for m in emails] == ["Your balance is below USD 50.00"]
    assert [n.key for n in notices(shop.adv, "low_balance")][-1].endswith(":2")
    assert AlertState.objects.get(pk=state.pk).crossings == 2


@pytest.mark.django_db
def test_each_member_has_their_own_amount(shop, sent):
    alert_preferences_set(user=shop.finance, advertiser=shop.adv, choices={}, low_balance_amount="80.00")
    charge(shop.campaign, "30.00")  # 70.00: below the finance member's 80.00, above the owner's 50.00
    emails = sent(alerts_check)
    assert [m.to for m in emails] == [[shop.finance.email]]
    charge(shop.campaign, "30.00")  # 40.00: now the owner's too; finance is still below
    emails = sent(alerts_check)
    assert [m.to for m in emails] == [[shop.owner.email]]
    assert sorted(n.user_id for n in notices(shop.adv, "low_balance")) == sorted([shop.owner.pk, shop.finance.pk])


@pytest.mark.django_db
def test_usable_credit_counts_toward_the_balance_and_frozen_credit_does_not(shop, sent):
    grant(shop.adv, "free", "30.00")
    charge(shop.campaign, "80.00")  # credit pays first (R11): 30.00 of credit gone, 50.00 of cash
    grant(shop.adv, "free", "40.00")  # cash 50.00 + credit 40.00 = 90.00
    charge(shop.campaign, "45.00")  # credit pays 40.00, cash 5.00: cash 45.00, no credit → below
    assert [m.subject for m in sent(alerts_check)] == ["Your balance is below USD 50.00"]
    # a fresh account: cash 20.00 and credit 40.00 is 60.00, above 50.00 — until the credit is frozen
    adv = AdvertiserFactory(name="Credit Shop")
    owner = member(adv, "admin", username="credit-owner")
    deposit_create(advertiser=adv, amount="20.00", idempotency_key="credit-shop")
    grant(adv, "free", "40.00")
    alert_preferences_set(user=owner, advertiser=adv, choices={}, low_balance_amount="50.00")
    assert sent(alerts_check) == []
    credit_freeze(advertiser=adv, reason="risk review", by=UserFactory(username="risk", is_staff=True))
    emails = sent(alerts_check)
    assert [(m.to, "USD 20.00 (USD 20.00 in cash and USD 0.00 of usable ad credit)" in m.body) for m in emails] == [
        ([owner.email], True)]


@pytest.mark.django_db
def test_a_changed_amount_rearms_and_no_amount_means_no_alert(shop, sent):
    charge(shop.campaign, "60.00")  # 40.00
    assert len(sent(alerts_check)) == 1
    # raising the amount while below: checked afresh, fires for the new level
    alert_preferences_set(user=shop.owner, advertiser=shop.adv, choices={}, low_balance_amount="45.00")
    assert [m.subject for m in sent(alerts_check)] == ["Your balance is below USD 45.00"]
    # no amount: no alert however low the balance goes
    alert_preferences_set(user=shop.owner, advertiser=shop.adv, choices={}, low_balance_amount="")
    charge(shop.campaign, "30.00")
    assert sent(alerts_check) == []
    assert AlertPreference.objects.get(user=shop.owner, alert="low_balance").amount is None


@pytest.mark.django_db
def test_the_job_is_registered_and_its_statements_do_not_grow_with_the_accounts(settings):
    from django.test.utils import CaptureQueriesContext

    assert JOBS["alerts_check"] == "portal.alerts.alerts_check"
    beat = settings.CELERY_BEAT_SCHEDULE["alerts-check"]
    assert beat["args"] == ["alerts_check"] and beat["schedule"] == 60.0 and beat["options"]["expires"] < 60

    def accounts(n, tag):
        for i in range(n):
            adv = AdvertiserFactory(name=f"{tag} {i}")
            owner = member(adv, "admin")
            deposit_create(advertiser=adv, amount="30.00", idempotency_key=f"{tag}-{i}")
            alert_preferences_set(user=owner, advertiser=adv, choices={}, low_balance_amount="50.00")

    def statements():
        AlertState.objects.update(crossed=False)
        with CaptureQueriesContext(connection) as captured:
            counts = job_run(name="alerts_check")
        return len(captured), counts

    accounts(2, "few")
    few, counts = statements()
    assert counts["fired"] == 2
    accounts(20, "many")
    many, counts = statements()
    assert counts["fired"] == 22
    assert many == few


# --- credit line over 80 % -------------------------------------------------------------------------

@pytest.fixture
def invoiced(db):
    adv = AdvertiserFactory(name="Line Shop", billing_method="monthly_invoice")
    owner = member(adv, "admin", username="line-owner")
    billing_settings_set(advertiser=adv, credit_line_limit="1000.00")
    return type("Line", (), {"adv": adv, "owner": owner, "campaign": CampaignFactory(advertiser=adv)})()


@pytest.mark.django_db
def test_credit_line_80_percent_fires_once_per_crossing(invoiced, sent):
    charge(invoiced.campaign, "700.00")
    assert sent(alerts_check) == []
    charge(invoiced.campaign, "100.00")  # 800.00 of 1000.00: 80 %
    emails = sent(alerts_check)
    assert [(m.subject, m.to) for m in emails] == [("Your credit line is 80 % used", [invoiced.owner.email])]
    assert "used USD 800.00 of your credit line of USD 1000.00 (80 %)" in emails[0].body
    charge(invoiced.campaign, "50.00")
    assert sent(alerts_check) == []
    # a higher limit: 850.00 of 2000.00 is 42 %, re-armed silently
    billing_settings_set(advertiser=invoiced.adv, credit_line_limit="2000.00")
    assert [m.subject for m in sent(alerts_check) if "credit line" in m.subject] == []
    assert AlertState.objects.get(advertiser=invoiced.adv, key="credit_line_80").crossed is False
    charge(invoiced.campaign, "800.00")  # 1650.00 of 2000.00: 82 %
    assert [m.subject for m in sent(alerts_check)] == ["Your credit line is 82 % used"]
    assert [n.key for n in notices(invoiced.adv, "credit_line_high")] == [
        f"credit_line_high:{invoiced.adv.pk}:1", f"credit_line_high:{invoiced.adv.pk}:2"]


@pytest.mark.django_db
def test_credit_line_alert_respects_the_members_choice(invoiced, sent):
    finance = member(invoiced.adv, "finance", username="line-finance")
    alert_preferences_set(user=invoiced.owner, advertiser=invoiced.adv,
                          choices={"credit_line_high": {"email": False, "in_app": True}})
    charge(invoiced.campaign, "900.00")
    assert [m.to for m in sent(alerts_check)] == [[finance.email]]
    assert "Your credit line is 90 % used" in centre(invoiced.owner, invoiced.adv)


# --- two runs at once, on PostgreSQL ---------------------------------------------------------------

THREADS = 4


def run_together(work, n=THREADS):
    barrier = threading.Barrier(n)
    out: list = [None] * n

    def body(i):
        try:
            barrier.wait(timeout=30)
            out[i] = work()
        except BaseException as e:  # noqa: BLE001 — reported to the test
            out[i] = e
        finally:
            connection.close()

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 90
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "a run did not finish: deadlock or endless lock wait"
    errors = [r for r in out if isinstance(r, BaseException)]
    assert errors == [], errors
    return out


@pytest.mark.django_db(transaction=True)
def test_concurrent_runs_fire_a_low_balance_and_a_credit_line_alert_once():
    # given a manual account above its owner's amount and an invoiced one at 50 %, checked once
    adv = AdvertiserFactory(name="Race Shop")
    owner = member(adv, "admin", username="race-owner")
    deposit_create(advertiser=adv, amount="100.00", idempotency_key="race")
    alert_preferences_set(user=owner, advertiser=adv, choices={}, low_balance_amount="50.00")
    line = AdvertiserFactory(name="Race Line", billing_method="monthly_invoice")
    member(line, "admin", username="race-line-owner")
    billing_settings_set(advertiser=line, credit_line_limit="100.00")
    charge(CampaignFactory(advertiser=line), "50.00")
    assert alerts_check()["fired"] == 0 and AlertState.objects.count() == 2
    # and then both cross: 30.00 left, 90 % used
    charge(CampaignFactory(advertiser=adv), "70.00")
    charge(CampaignFactory(advertiser=line), "40.00")
    mail.outbox.clear()
    # when several runs start at the same moment
    results = run_together(alerts_check)
    # then each alert fired once in all, and was emailed once
    assert sum(r["fired"] for r in results) == 2
    assert [n.key for n in Notification.objects.filter(kind="low_balance")] == [f"low_balance:{adv.pk}:{owner.pk}:1"]
    assert Notification.objects.filter(kind="credit_line_high").count() == 1
    assert sorted(m.subject for m in mail.outbox) == ["Your balance is below USD 50.00",
                                                      "Your credit line is 90 % used"]
    assert AlertState.objects.get(advertiser=adv).crossings == 1
    assert AlertState.objects.get(advertiser=line).crossings == 1
    # and a run after them changes nothing
    assert alerts_check()["fired"] == 0
