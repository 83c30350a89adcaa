"""The frozen banner and the appeal form on the Promotions page, and appeal attachments
(SPEC R1, R30, R31): who sees what, filing with files checked by content, the decision shown."""

import pytest
from django.test import Client

from portal.models import Notification
from promotions.appeals import appeal_decide, appeal_file, attachments_dir
from promotions.models import Appeal, AppealStatus
from tests.factories import UserFactory, grant
from tests.pages_helpers import element, fast_password_hashing, logged_in, make_team, team, text  # noqa: F401
from tests.promotions.promotions_helpers import PDF, PHP, PNG, freeze, private_media, upload  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def frozen(team, private_media):
    """Acme Shoes with 50.00 of free credit and a 30.00 discount cap, then frozen by staff."""
    grant(team.advertiser, "free", "50.00")
    grant(team.advertiser, "discount", "30.00", percent="20")
    team.staff = freeze(team.advertiser, reason="Payments from several cards failed in one day")
    return team


def page(team, role="admin"):
    return team.client(role).get(f"/a/{team.advertiser.pk}/payments/promotions/")


def appeal_url(team) -> str:
    return f"/a/{team.advertiser.pk}/payments/promotions/appeal/"


def file_appeal(team, role="admin", message="We are a real shoe shop; the cards were our own.", files=()):
    return team.client(role).post(appeal_url(team), {"message": message, "files": list(files)})


# --- the banner --------------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["admin", "finance", "analyst"])
def test_frozen_banner_explains_the_freeze_with_reason_and_amounts(frozen, role):
    banner = text(element(page(frozen, role).content.decode(), "freeze"))
    assert "Your ad credit is frozen" in banner
    assert "Frozen credit is not applied to ad spend and no new credit is issued while the freeze lasts" in banner
    assert "Reason Payments from several cards failed in one day" in banner
    assert "Frozen credit $50.00 Frozen discount cap $30.00 Frozen credits 2" in banner


def test_no_banner_when_credit_is_not_frozen(team):
    grant(team.advertiser, "free", "50.00")
    html = page(team).content.decode()
    assert 'id="freeze"' not in html and "is frozen" not in text(html)


@pytest.mark.parametrize("role", ["admin", "finance"])
def test_admin_and_finance_get_the_appeal_form(frozen, role):
    form = element(page(frozen, role).content.decode(), "appeal-form")
    assert f'action="{appeal_url(frozen)}"' in form and 'enctype="multipart/form-data"' in form
    assert 'name="message"' in form and 'type="file" name="files"' in form and "multiple" in form
    assert "Up to 3 files: PDF, PNG or JPEG, 5 MB each." in text(form)
    assert "Filing an appeal does not guarantee that the freeze is lifted" in text(form)


def test_analyst_reads_the_banner_without_a_form(frozen):
    html = page(frozen, "analyst").content.decode()
    assert 'id="appeal-form"' not in html and appeal_url(frozen) not in html
    assert "An admin or finance member of this account can appeal the freeze" in text(element(html, "freeze"))


# --- filing ------------------------------------------------------------------------------------

def test_finance_files_an_appeal_with_files_and_then_sees_it_under_review(frozen):
    # when finance files an appeal with a PNG and a PDF
    response = frozen.client("finance").post(appeal_url(frozen), {
        "message": "We are a real shoe shop; the cards were our own.",
        "files": [upload("receipt.png", PNG), upload("invoice.pdf", PDF, "application/pdf")],
    }, follow=True)
    # then it is recorded with both files, typed by content
    appeal = Appeal.objects.get(advertiser=frozen.advertiser)
    assert appeal.status == AppealStatus.OPEN and appeal.filed_by == frozen.users["finance"]
    assert sorted(appeal.attachments.values_list("original_name", "content_type")) == [
        ("invoice.pdf", "application/pdf"), ("receipt.png", "image/png")]
    # and the page says so, and shows the appeal's status instead of the form
    assert response.redirect_chain == [(f"/a/{frozen.advertiser.pk}/payments/promotions/", 302)]
    assert "Your appeal was sent." in text(response)
    html = response.content.decode()
    status = text(element(html, "appeal-status"))
    assert "Under review Your appeal is under review" in status
    assert f"Appeal #{appeal.pk}, filed" in status and frozen.users["finance"].username in status
    assert "We are a real shoe shop; the cards were our own." in status
    assert "receipt.png" in status and "invoice.pdf" in status
    assert 'id="appeal-form"' not in html
    # and every member is told it was received, with a link to this page
    note = Notification.objects.get(advertiser=frozen.advertiser, kind="appeal_received")
    assert note.link == f"/a/{frozen.advertiser.pk}/payments/promotions/"


def test_a_php_file_renamed_png_is_refused_with_a_clear_message(frozen):
    response = file_appeal(frozen, files=[upload("shell.png", PHP, "image/png")])
    assert response.status_code == 422
    html = response.content.decode()
    assert text(element(html, "id_files_error")) == (
        "shell.png is not a PDF, PNG or JPEG file (its content was checked, not its name).")
    # nothing is recorded, and what was typed is kept
    assert not Appeal.objects.exists() and not any(attachments_dir().iterdir())
    assert "We are a real shoe shop; the cards were our own.</textarea>" in element(html, "appeal-form")


def test_more_than_three_files_are_refused(frozen):
    files = [upload(f"p{i}.png", PNG) for i in range(4)]
    response = file_appeal(frozen, files=files)
    assert response.status_code == 422
    assert text(element(response.content.decode(), "id_files_error")) == "Attach at most 3 files; you sent 4."
    assert not Appeal.objects.exists()


def test_a_file_over_5_mb_is_refused(frozen):
    big = upload("scan.pdf", PDF + b"0" * (5 * 1024 * 1024), "application/pdf")
    response = file_appeal(frozen, files=[big])
    assert response.status_code == 422
    assert "scan.pdf is 5.0 MB; each file may be at most 5 MB." == text(element(response.content.decode(), "id_files_error"))


def test_an_empty_message_is_refused_under_the_field(frozen):
    response = file_appeal(frozen, message="   ")
    assert response.status_code == 422
    assert text(element(response.content.decode(), "id_message_error")) == "Tell us why the freeze should be lifted."
    assert not Appeal.objects.exists()


def test_a_second_open_appeal_is_refused(frozen):
    assert file_appeal(frozen).status_code == 302
    response = frozen.client("finance").post(appeal_url(frozen), {"message": "Again"}, follow=True)
    assert response.redirect_chain == [(f"/a/{frozen.advertiser.pk}/payments/promotions/", 302)]
    assert "You already have an appeal under review; we will answer it first." in text(response)
    assert "Your appeal is under review" in text(element(response.content.decode(), "appeal-status"))
    assert Appeal.objects.count() == 1


def test_at_most_three_appeals_a_day(frozen):
    for i in range(3):
        appeal = appeal_file(advertiser=frozen.advertiser, user=frozen.users["admin"], message=f"Try {i}")
        appeal_decide(appeal=appeal, decision="reject", note="Not yet.", by=frozen.staff)
    response = frozen.admin.post(appeal_url(frozen), {"message": "Fourth"}, follow=True)
    assert "At most 3 appeals can be filed in 24 hours." in text(response)
    assert Appeal.objects.count() == 3


def test_nothing_to_appeal_when_not_frozen(team, private_media):
    response = team.admin.post(appeal_url(team), {"message": "Unfreeze please"}, follow=True)
    assert response.redirect_chain == [(f"/a/{team.advertiser.pk}/payments/promotions/", 302)]
    assert "Your credit is not frozen, so there is nothing to appeal." in text(response)
    assert not Appeal.objects.exists()


def test_who_may_file(frozen):
    assert file_appeal(frozen, "analyst").status_code == 403
    assert file_appeal(frozen, "operator").status_code == 403
    assert logged_in(frozen.outsider).post(appeal_url(frozen), {"message": "x"}).status_code == 404
    assert Client().post(appeal_url(frozen), {"message": "x"})["Location"] == f"/login/?next={appeal_url(frozen)}"
    assert frozen.admin.get(appeal_url(frozen)).status_code == 405
    assert not Appeal.objects.exists()


# --- decisions ---------------------------------------------------------------------------------

def test_rejected_appeal_is_listed_with_its_note_and_a_new_one_can_be_filed(frozen):
    appeal = appeal_file(advertiser=frozen.advertiser, user=frozen.users["admin"], message="Please look again",
                         files=[upload("id.jpg", b"\xff\xd8\xff\xe0" + b"0" * 40, "image/jpeg")])
    appeal_decide(appeal=appeal, decision="reject", note="The cards belong to other businesses.", by=frozen.staff)
    html = page(frozen, "analyst").content.decode()
    past = text(element(html, f"appeal-{appeal.pk}"))
    assert f"Rejected Appeal #{appeal.pk} filed" in past and "decided" in past
    assert "Decision note The cards belong to other businesses." in past
    assert "id.jpg" in past
    # the credit is still frozen, so admin and finance may appeal again
    assert 'id="appeal-form"' in page(frozen, "finance").content.decode()


def test_approved_appeal_lifts_the_banner_and_stays_in_the_history(frozen):
    appeal = appeal_file(advertiser=frozen.advertiser, user=frozen.users["admin"], message="Please look again")
    appeal_decide(appeal=appeal, decision="approve", note="Verified with the bank, thank you.", by=frozen.staff)
    html = page(frozen).content.decode()
    assert 'id="freeze"' not in html
    assert "Approved Appeal" in text(element(html, f"appeal-{appeal.pk}"))
    assert "Decision note Verified with the bank, thank you." in text(element(html, "appeals"))
    assert "Available credit $50.00" in text(html)


# --- attachments -------------------------------------------------------------------------------

@pytest.fixture
def attachment(frozen):
    appeal = appeal_file(advertiser=frozen.advertiser, user=frozen.users["finance"], message="See the receipt",
                         files=[upload("receipt.png", PNG, "application/x-php")])
    att = appeal.attachments.get()
    frozen.url = f"/a/{frozen.advertiser.pk}/appeals/{appeal.pk}/attachments/{att.pk}/"
    frozen.appeal, frozen.attachment = appeal, att
    return frozen


@pytest.mark.parametrize("who", ["admin", "finance", "analyst", "staff"])
def test_payments_members_and_staff_download_an_attachment(attachment, who):
    client = logged_in(UserFactory(is_staff=True)) if who == "staff" else attachment.client(who)
    response = client.get(attachment.url)
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="receipt.png"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Type"] == "image/png"  # by content, not the browser's claim at upload
    assert b"".join(response.streaming_content) == PNG


def test_attachment_link_is_on_the_page(attachment):
    html = page(attachment, "analyst").content.decode()
    assert f'href="{attachment.url}" download' in html


def test_others_cannot_download_an_attachment(attachment):
    assert attachment.client("operator").get(attachment.url).status_code == 403
    assert logged_in(attachment.outsider).get(attachment.url).status_code == 404
    assert Client().get(attachment.url)["Location"] == f"/login/?next={attachment.url}"


def test_an_attachment_is_only_reachable_under_its_own_advertiser_and_appeal(attachment, private_media):
    # the other advertiser's admin, under their own advertiser's address, finds nothing
    other = make_team()
    mine = f"/a/{other.advertiser.pk}/appeals/{attachment.appeal.pk}/attachments/{attachment.attachment.pk}/"
    assert other.admin.get(mine).status_code == 404
    # and a wrong appeal id for the attachment is not found either
    wrong = f"/a/{attachment.advertiser.pk}/appeals/{attachment.appeal.pk + 1}/attachments/{attachment.attachment.pk}/"
    assert attachment.admin.get(wrong).status_code == 404
