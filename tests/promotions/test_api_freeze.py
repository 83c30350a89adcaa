"""Risk freeze and appeals through the portal API (SPEC R12, R30, R31): staff freeze and unfreeze,
a frozen advertiser's spend is paid by cash, an appeal carries checked attachments (multipart), and
staff approve (credit usable again) or reject (optionally withdrawing the credit)."""

import struct
import zlib
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from portal.models import Advertiser, AuditLog
from promotions.appeals import appeal_file
from promotions.freeze import credit_freeze
from promotions.models import Appeal, AppealAttachment, Credit, CreditStatus
from tests.api_helpers import BASE, api, error_of, role_token, staff, world  # noqa: F401
from tests.api_matrix import Endpoint, database_state, matrix
from tests.factories import AdvertiserFactory, CampaignFactory, UserFactory, deposit, grant

pytestmark = pytest.mark.django_db


def png_image(width: int = 2, height: int = 2) -> bytes:
    """A real, decodable PNG: signature, IHDR, zlib-compressed RGB rows, IEND, each chunk CRC'd."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xfe\x2c\x55" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


PNG = png_image()
PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
PHP = b"<?php system($_GET['cmd']); ?>\n"


def png(name="proof.png"):
    return SimpleUploadedFile(name, PNG, content_type="image/png")


@pytest.fixture(autouse=True)
def private_media(settings, tmp_path):
    settings.PRIVATE_MEDIA_ROOT = str(tmp_path)
    return tmp_path / "appeals"


def stored_files(folder) -> list:
    return sorted(folder.iterdir()) if folder.exists() else []


def file_appeal(api, adv, token, message="We are a real business.", files=(), field="attachments[]"):
    data = {"message": message}
    if files:
        data[field] = list(files)
    return api.client.post(f"{BASE}/advertisers/{adv.pk}/appeals", data=data, headers={"Access-Token": token})


def _frozen(w):
    credit_freeze(advertiser=w.adv, reason="risk review", by=UserFactory(is_staff=True))


def _appealed(w):
    _frozen(w)
    w.appeal = appeal_file(advertiser=w.adv, user=UserFactory(), message="please", files=[png()])


def _adv(w):
    return f"/advertisers/{w.adv.pk}"


ENDPOINTS = [
    Endpoint("freeze", "post", lambda w: _adv(w) + "/freeze", lambda w: {"reason": "chargebacks"},
             allowed=("staff",), forbidden=("admin", "finance", "bc_admin"),
             check=lambda w, j: (j["credit_frozen"] is True and Advertiser.objects.get(pk=w.adv.pk).credit_frozen)
             or pytest.fail(j)),
    Endpoint("unfreeze", "post", lambda w: _adv(w) + "/unfreeze", lambda w: {"reason": "cleared"}, prepare=_frozen,
             allowed=("staff",), forbidden=("admin", "finance", "bc_admin"),
             check=lambda w, j: (j["credit_frozen"] is False and not Advertiser.objects.get(pk=w.adv.pk).credit_frozen)
             or pytest.fail(j)),
    Endpoint("file appeal", "post", lambda w: _adv(w) + "/appeals",
             lambda w: {"message": "We are a real business.", "attachments[]": [png()]}, prepare=_frozen,
             multipart=True, ok_status=201,
             allowed=("staff", "admin", "finance", "bc_admin", "bc_finance"), forbidden=("operator", "analyst"),
             check=lambda w, j: (j["status"] == "open" and len(j["attachments"]) == 1
                                 and Appeal.objects.get(pk=int(j["id"])).advertiser_id == w.adv.pk) or pytest.fail(j)),
    Endpoint("list appeals", "get", lambda w: _adv(w) + "/appeals", prepare=_appealed,
             allowed=("staff", "admin", "finance", "analyst", "bc_admin", "bc_finance"), forbidden=("operator",),
             check=lambda w, j: [a["id"] for a in j] == [str(w.appeal.pk)] or pytest.fail(j)),
    Endpoint("decide appeal", "post", lambda w: f"/appeals/{w.appeal.pk}/decision",
             lambda w: {"decision": "approve", "note": "documents check out"}, prepare=_appealed,
             allowed=("staff",), forbidden=("admin", "finance", "bc_admin"),
             check=lambda w, j: (j["status"] == "approved" and Appeal.objects.get(pk=w.appeal.pk).status == "approved")
             or pytest.fail(j)),
]

(test_no_token_is_401, test_right_role_passes, test_wrong_role_is_403_and_changes_nothing,
 test_other_advertisers_user_gets_404) = matrix(ENDPOINTS)


# --- the whole story -----------------------------------------------------------------------------

def _spend(api, staff, camp, amount, event_id):
    response = api.post("/spend", {"events": [{
        "event_id": event_id, "advertiser_id": str(camp.advertiser_id), "campaign_id": str(camp.pk),
        "amount": amount, "currency": "USD", "occurred_at": timezone.now().isoformat()}]}, token=staff)
    assert response.status_code == 201, response.content
    return response.json()["results"][0]["allocation"]


@pytest.fixture
def account(db):
    """An advertiser with 100.00 cash and a 50.00 free credit, and tokens for its people."""
    adv = AdvertiserFactory()
    camp = CampaignFactory(advertiser=adv)
    deposit(adv, "100.00")
    credit = grant(adv, "free", "50.00")
    return adv, camp, credit, role_token(adv, "admin"), role_token(adv, "analyst")


def test_freeze_spend_on_cash_appeal_with_a_png_approve_and_credit_is_usable_again(api, staff, account,
                                                                                  private_media):
    adv, camp, credit, admin, analyst = account
    # given staff freeze the advertiser's credit
    response = api.post(f"/advertisers/{adv.pk}/freeze", {"reason": "unusual activity"}, token=staff)
    assert response.status_code == 200 and response.json()["credit_frozen"] is True
    [listed] = api.get(f"/advertisers/{adv.pk}/credits", token=analyst).json()
    assert listed["status"] == "frozen"
    balances = api.get(f"/advertisers/{adv.pk}/balances", token=analyst).json()
    assert (balances["credit_balance"], balances["frozen_credit_balance"]) == ("0.00", "50.00")
    # when it spends 30, cash pays it all and the credit is untouched (R30)
    allocation = _spend(api, staff, camp, "30.00", "frozen-1")
    assert (allocation["cash"], allocation["credits"]) == ("30.00", [])
    # when its admin appeals with a real PNG screenshot
    response = file_appeal(api, adv, admin, "Our payments were legitimate.", [png("bank statement.png")])
    # then the appeal is open and the file was kept under a server-made name, byte for byte
    assert response.status_code == 201, response.content
    appeal = response.json()
    attachment = AppealAttachment.objects.get()
    assert appeal == {
        "id": appeal["id"], "advertiser_id": str(adv.pk), "status": "open",
        "message": "Our payments were legitimate.", "created_at": appeal["created_at"], "decided_at": None,
        "decision_note": "", "credits_withdrawn": False,
        "attachments": [{"id": str(attachment.pk), "name": "bank statement.png", "content_type": "image/png",
                         "size": len(PNG)}],
    }
    [kept] = stored_files(private_media)
    assert kept.read_bytes() == PNG and kept.name == attachment.stored_name and kept.suffix == ".png"
    # and the analyst sees it in the list
    assert api.get(f"/advertisers/{adv.pk}/appeals", token=analyst).json() == [appeal]
    # when staff approve it
    response = api.post(f"/appeals/{appeal['id']}/decision", {"decision": "approve", "note": "Verified."},
                        token=staff)
    # then the appeal is approved, the freeze is lifted and it is audited
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["decision_note"]) == ("approved", "Verified.")
    assert response.json()["decided_at"] is not None
    assert api.get(f"/advertisers/{adv.pk}", token=admin).json()["credit_frozen"] is False
    assert AuditLog.objects.filter(action="appeal_approve", advertiser=adv).get().actor.is_staff
    # and the credit pays the next charge again
    allocation = _spend(api, staff, camp, "20.00", "thawed-1")
    assert allocation["credits"] == [{"credit_id": str(credit.pk), "amount": "20.00"}]
    assert allocation["cash"] == "0.00"
    [listed] = api.get(f"/advertisers/{adv.pk}/credits", token=analyst).json()
    assert (listed["status"], listed["remaining"]) == ("active", "30.00")


def test_reject_with_withdraw_credits_withdraws_the_frozen_credit(api, staff, account):
    adv, camp, credit, admin, analyst = account
    api.post(f"/advertisers/{adv.pk}/freeze", {"reason": "policy violation"}, token=staff)
    appeal = file_appeal(api, adv, admin, "Please reconsider.", [png()]).json()
    # when staff reject it and withdraw the credit
    response = api.post(f"/appeals/{appeal['id']}/decision",
                        {"decision": "reject", "note": "Fake documents.", "withdraw_credits": True}, token=staff)
    # then the appeal is rejected, the credit withdrawn on the ledger, and the account stays frozen
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["credits_withdrawn"]) == ("rejected", True)
    [listed] = api.get(f"/advertisers/{adv.pk}/credits", token=analyst).json()
    assert (listed["id"], listed["status"], listed["remaining"]) == (str(credit.pk), "withdrawn", "0.00")
    balances = api.get(f"/advertisers/{adv.pk}/balances", token=analyst).json()
    assert (balances["credit_balance"], balances["frozen_credit_balance"]) == ("0.00", "0.00")
    assert api.get(f"/advertisers/{adv.pk}", token=admin).json()["credit_frozen"] is True


def test_reject_without_withdrawal_keeps_the_credit_frozen(api, staff, account):
    adv, camp, credit, admin, analyst = account
    api.post(f"/advertisers/{adv.pk}/freeze", {"reason": "risk"}, token=staff)
    appeal = file_appeal(api, adv, admin, "Please.", []).json()
    response = api.post(f"/appeals/{appeal['id']}/decision", {"decision": "reject", "note": "Not enough."},
                        token=staff)
    assert response.json()["status"] == "rejected" and appeal["attachments"] == []
    credit = Credit.objects.select_related("ledger_account").get(pk=credit.pk)
    assert (credit.status, credit.remaining) == (CreditStatus.FROZEN, Decimal("50.00"))


# --- attachments are checked by content (R31) ----------------------------------------------------

def _nothing_filed(folder):
    assert not Appeal.objects.exists() and not AppealAttachment.objects.exists()
    assert stored_files(folder) == []


def test_a_php_file_renamed_png_is_refused(api, account, private_media):
    adv, camp, credit, admin, _ = account
    credit_freeze(advertiser=adv, reason="risk")
    shell = SimpleUploadedFile("screenshot.png", PHP, content_type="image/png")
    response = file_appeal(api, adv, admin, files=[png("ok.png"), shell])
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "attachment_type_not_allowed" and "screenshot.png" in error["message"]
    _nothing_filed(private_media)


def test_a_fourth_file_is_refused(api, account, private_media):
    adv, camp, credit, admin, _ = account
    credit_freeze(advertiser=adv, reason="risk")

    def files():
        return [png("1.png"), SimpleUploadedFile("2.pdf", PDF, content_type="application/pdf"), png("3.png"),
                png("4.png")]

    response = file_appeal(api, adv, admin, files=files())
    assert response.status_code == 400
    assert error_of(response)["code"] == "too_many_attachments"
    _nothing_filed(private_media)
    # three are fine
    response = file_appeal(api, adv, admin, files=files()[:3])
    assert response.status_code == 201
    assert [(a["name"], a["content_type"]) for a in response.json()["attachments"]] == [
        ("1.png", "image/png"), ("2.pdf", "application/pdf"), ("3.png", "image/png")]
    assert len(stored_files(private_media)) == 3


def test_a_file_over_5_mb_is_refused(api, account, private_media):
    adv, camp, credit, admin, _ = account
    credit_freeze(advertiser=adv, reason="risk")
    big = SimpleUploadedFile("big.png", PNG + b"\x00" * (5 * 1024 * 1024), content_type="image/png")
    response = file_appeal(api, adv, admin, files=[big])
    assert response.status_code == 400 and error_of(response)["code"] == "attachment_too_large"
    _nothing_filed(private_media)


def test_attachments_may_be_sent_without_brackets(api, account, private_media):
    adv, camp, credit, admin, _ = account
    credit_freeze(advertiser=adv, reason="risk")
    response = file_appeal(api, adv, admin, files=[png("a.png")], field="attachments")
    assert response.status_code == 201
    assert [a["name"] for a in response.json()["attachments"]] == ["a.png"]


@pytest.mark.parametrize("message,code", [(None, "missing_field"), ("   ", "invalid_message"),
                                          ("x" * 5001, "invalid_message")])
def test_an_appeal_needs_a_message(api, account, private_media, message, code):
    adv, camp, credit, admin, _ = account
    credit_freeze(advertiser=adv, reason="risk")
    data = {"attachments[]": [png()]} if message is None else {"message": message, "attachments[]": [png()]}
    response = api.client.post(f"{BASE}/advertisers/{adv.pk}/appeals", data=data, headers={"Access-Token": admin})
    assert response.status_code == 400
    assert error_of(response)["code"] == code
    _nothing_filed(private_media)


def test_an_appeal_sent_as_json_is_400(api, account, private_media):
    adv, camp, credit, admin, _ = account
    credit_freeze(advertiser=adv, reason="risk")
    response = api.post(f"/advertisers/{adv.pk}/appeals", {"message": "hello"}, token=admin)
    assert response.status_code == 400 and error_of(response)["code"] == "missing_field"
    _nothing_filed(private_media)


def test_appeal_when_not_frozen_is_422_and_a_second_open_one_is_409(api, account, private_media):
    adv, camp, credit, admin, _ = account
    response = file_appeal(api, adv, admin, files=[png()])
    assert response.status_code == 422 and error_of(response)["code"] == "not_frozen"
    _nothing_filed(private_media)
    credit_freeze(advertiser=adv, reason="risk")
    assert file_appeal(api, adv, admin).status_code == 201
    response = file_appeal(api, adv, admin, files=[png()])
    assert response.status_code == 409 and error_of(response)["code"] == "appeal_already_open"
    assert Appeal.objects.count() == 1 and stored_files(private_media) == []


# --- decisions ----------------------------------------------------------------------------------

@pytest.mark.parametrize("body,code", [
    ({"decision": "maybe", "note": "x"}, "invalid_decision"),
    ({"decision": "approve", "note": "  "}, "invalid_note"),
    ({"decision": "approve"}, "missing_field"),
    ({"note": "x"}, "missing_field"),
    ({"decision": "approve", "note": "x", "withdraw_credits": True}, "invalid_decision"),
    ({"decision": "reject", "note": "x", "withdraw_credits": "yes"}, "invalid_field"),
])
def test_bad_decision_is_400_and_changes_nothing(api, staff, world, body, code):
    _appealed(world)
    before = database_state()
    response = api.post(f"/appeals/{world.appeal.pk}/decision", body, token=staff)
    assert response.status_code == 400, response.content
    assert error_of(response)["code"] == code
    assert database_state() == before


def test_an_appeal_is_decided_once(api, staff, world):
    _appealed(world)
    path = f"/appeals/{world.appeal.pk}/decision"
    assert api.post(path, {"decision": "reject", "note": "no"}, token=staff).status_code == 200
    response = api.post(path, {"decision": "approve", "note": "yes"}, token=staff)
    assert response.status_code == 409 and error_of(response)["code"] == "appeal_already_decided"
    assert Appeal.objects.get(pk=world.appeal.pk).status == "rejected"


def test_unknown_appeal_is_404(api, world):
    _appealed(world)
    for path in ("/appeals/999999/decision", "/appeals/abc/decision"):
        r = api.post(path, {"decision": "approve", "note": "x"}, token=world.tokens["staff"])
        assert r.status_code == 404 and error_of(r) == {"code": "not_found", "message": "No such appeal."}
    r = api.post(f"/appeals/{world.appeal.pk}/decision", {"decision": "approve", "note": "x"},
                 token=world.tokens["other"])
    assert r.status_code == 404 and error_of(r) == {"code": "not_found", "message": "No such appeal."}


def test_appeals_are_listed_newest_first(api, staff, world):
    _appealed(world)
    first = world.appeal
    from promotions.appeals import appeal_decide

    appeal_decide(appeal=first, decision="reject", note="no", by=UserFactory(is_staff=True))
    second = appeal_file(advertiser=world.adv, user=UserFactory(), message="again")
    rows = api.get(f"/advertisers/{world.adv.pk}/appeals", token=world.tokens["finance"]).json()
    assert [(r["id"], r["status"]) for r in rows] == [(str(second.pk), "open"), (str(first.pk), "rejected")]


# --- freeze and unfreeze refusals ----------------------------------------------------------------

def test_freeze_twice_and_unfreeze_when_not_frozen_are_422(api, staff, account):
    adv = account[0]
    assert api.post(f"/advertisers/{adv.pk}/unfreeze", {"reason": "x"}, token=staff).json()["error"]["code"] == \
        "not_frozen"
    assert api.post(f"/advertisers/{adv.pk}/freeze", {"reason": "x"}, token=staff).status_code == 200
    response = api.post(f"/advertisers/{adv.pk}/freeze", {"reason": "again"}, token=staff)
    assert response.status_code == 422 and error_of(response)["code"] == "already_frozen"
    assert AuditLog.objects.filter(action="credit_freeze", advertiser=adv).count() == 1
    log = AuditLog.objects.get(action="credit_freeze", advertiser=adv)
    assert log.actor.is_staff and log.reason == "x"


@pytest.mark.parametrize("body,code", [({}, "missing_field"), ({"reason": "  "}, "invalid_reason"),
                                       ({"reason": 5}, "invalid_reason")])
@pytest.mark.parametrize("action", ["freeze", "unfreeze"])
def test_freeze_needs_a_reason(api, staff, account, body, code, action):
    adv = account[0]
    if action == "unfreeze":
        credit_freeze(advertiser=adv, reason="risk")
    before = database_state()
    response = api.post(f"/advertisers/{adv.pk}/{action}", body, token=staff)
    assert response.status_code == 400 and error_of(response)["code"] == code
    assert database_state() == before
