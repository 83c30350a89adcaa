"""Appeals against a credit freeze (SPEC R31).

A frozen advertiser's admin or finance member files a message with up to 3 attachments (PDF,
PNG or JPEG, 5 MB each). The type is judged by the file's first bytes, never by its name or the
browser's claim; files are stored under random names in a private folder outside the static
root and served only to the advertiser's members and staff. One open appeal at a time, and at
most `APPEALS_PER_DAY` filings a day. Staff approve (unfreeze, withheld rewards issued) or
reject (credit stays frozen; optionally withdrawn). Every step is audited and notified.
"""

import secrets
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.ledger import lock_advertisers
from portal import inputs
from portal.audit import audit_record
from portal.errors import BadInput, BusinessError, Conflict
from portal.notifications import Draft, notify_many
from promotions.credits import credit_withdraw
from promotions.freeze import credit_unfreeze
from promotions.models import Appeal, AppealAttachment, AppealStatus, Credit, CreditStatus

MAX_FILES = 3
MAX_BYTES = 5 * 1024 * 1024
APPEALS_PER_DAY = 3
APPEAL_MESSAGE_MAX = 5000
SIGNATURES = [
    (b"%PDF-", "application/pdf", "pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png", "png"),
    (b"\xff\xd8\xff", "image/jpeg", "jpg"),
]


def attachments_dir() -> Path:
    path = Path(settings.PRIVATE_MEDIA_ROOT) / "appeals"
    path.mkdir(parents=True, exist_ok=True)
    return path


def sniff(head: bytes) -> tuple[str, str] | None:
    for magic, content_type, ext in SIGNATURES:
        if head.startswith(magic):
            return content_type, ext
    return None


def _check_files(files) -> list[tuple[object, str, str]]:
    files = list(files or [])
    if len(files) > MAX_FILES:
        raise BadInput("too_many_attachments", f"Attach at most {MAX_FILES} files; you sent {len(files)}.")
    checked = []
    for f in files:
        name = getattr(f, "name", "file")
        if f.size > MAX_BYTES:
            raise BadInput("attachment_too_large", f"{name} is {f.size / 1048576:.1f} MB; each file may be at most 5 MB.")
        f.seek(0)
        kind = sniff(f.read(16))
        f.seek(0)
        if kind is None:
            raise BadInput(
                "attachment_type_not_allowed",
                f"{name} is not a PDF, PNG or JPEG file (its content was checked, not its name).",
            )
        checked.append((f, *kind))
    return checked


def appeal_file(*, advertiser, user, message: str, files=()) -> Appeal:
    if not isinstance(message, str) or not message.strip():
        raise BadInput("invalid_message", "Tell us why the freeze should be lifted.")
    message = inputs.text(message, field="message", max_length=APPEAL_MESSAGE_MAX)
    checked = _check_files(files)
    with transaction.atomic():
        adv = lock_advertisers([advertiser.pk])[advertiser.pk]
        if not adv.credit_frozen:
            raise BusinessError("not_frozen", "Your credit is not frozen, so there is nothing to appeal.")
        if Appeal.objects.filter(advertiser=adv, status=AppealStatus.OPEN).exists():
            raise Conflict("appeal_already_open", "You already have an appeal under review; we will answer it first.")
        since = timezone.now() - timedelta(days=1)
        if Appeal.objects.filter(advertiser=adv, created_at__gte=since).count() >= APPEALS_PER_DAY:
            raise BusinessError("appeal_rate_limited", f"At most {APPEALS_PER_DAY} appeals can be filed in 24 hours.")
        try:
            with transaction.atomic():
                appeal = Appeal.objects.create(advertiser=adv, message=message, filed_by=user)
        except IntegrityError:
            raise Conflict("appeal_already_open", "You already have an appeal under review.") from None
        audit_record(actor=user, action="appeal_file", advertiser=adv, target=f"appeal {appeal.pk}", reason=message,
                     after={"status": appeal.status,
                            "attachments": [Path(getattr(f, "name", "file")).name[:200] for f, _, _ in checked]})
        folder = attachments_dir()
        written = []
        try:
            for f, content_type, ext in checked:
                stored = f"{secrets.token_hex(16)}.{ext}"
                with open(folder / stored, "wb") as out:
                    for chunk in f.chunks():
                        out.write(chunk)
                written.append(folder / stored)
                AppealAttachment.objects.create(
                    appeal=appeal, stored_name=stored, original_name=Path(getattr(f, "name", "file")).name[:200],
                    content_type=content_type, size=f.size,
                )
        except Exception:
            for path in written:
                path.unlink(missing_ok=True)
            raise
        notify_many([Draft(adv, "appeal_received", f"appeal_received:{appeal.pk}", {"appeal_id": appeal.pk})])
    return appeal


def appeal_decide(*, appeal: Appeal, decision: str, note: str, by, withdraw_credits: bool = False) -> Appeal:
    """Staff decide (R31): approve unfreezes; reject keeps the freeze and may withdraw the credit."""
    if decision not in ("approve", "reject"):
        raise BadInput("invalid_decision", "decision must be approve or reject.")
    if not isinstance(note, str) or not note.strip():
        raise BadInput("invalid_note", "A decision note is required; the advertiser reads it.")
    if decision == "approve" and withdraw_credits:
        raise BadInput("invalid_decision", "Credit can only be withdrawn when an appeal is rejected.")
    with transaction.atomic():
        adv = lock_advertisers([appeal.advertiser_id])[appeal.advertiser_id]
        appeal = Appeal.objects.select_for_update().get(pk=appeal.pk)
        if appeal.status != AppealStatus.OPEN:
            raise Conflict("appeal_already_decided", f"This appeal was already {appeal.status}.")
        appeal.status = AppealStatus.APPROVED if decision == "approve" else AppealStatus.REJECTED
        appeal.decided_by, appeal.decided_at, appeal.decision_note = by, timezone.now(), note.strip()
        appeal.credits_withdrawn = withdraw_credits
        appeal.save(update_fields=["status", "decided_by", "decided_at", "decision_note", "credits_withdrawn"])
        audit_record(actor=by, action=f"appeal_{decision}", advertiser=adv, target=f"appeal {appeal.pk}",
                     reason=note.strip(), before={"status": "open"},
                     after={"status": appeal.status, "withdraw_credits": withdraw_credits})
        if decision == "approve" and adv.credit_frozen:
            credit_unfreeze(advertiser=adv, reason=f"appeal {appeal.pk} approved: {note.strip()}", by=by,
                            notify=False)  # appeal_decided says the credit is usable again
        if withdraw_credits:
            live = Credit.objects.filter(
                advertiser=adv, status__in=[CreditStatus.FROZEN, CreditStatus.ACTIVE, CreditStatus.PENDING]
            )
            for credit in live:
                credit_withdraw(credit=credit, reason=f"appeal {appeal.pk} rejected: {note.strip()}", by=by)
        notify_many([Draft(adv, "appeal_decided", f"appeal_decided:{appeal.pk}", {
            "appeal_id": appeal.pk, "decision": appeal.get_status_display().lower(), "note": appeal.decision_note,
            "withdrawn": withdraw_credits,
        })])
    return appeal
