"""Risk freeze of an advertiser's credit (SPEC R12, R30).

Frozen credit can neither be used nor issued: live credits get status `frozen` (expiry keeps
running), a ladder reward earned meanwhile is withheld and staff grants are refused. Unfreezing
makes them `active` again and issues the withheld rewards. An automatic rule freezes credit after
repeated failed payments (docs/decisions/0007-risk-freeze-and-appeals.md).
"""

from django.db import transaction
from django.utils import timezone

from billing.ledger import lock_advertisers
from portal.audit import audit_record
from portal import inputs
from portal.errors import BadInput, BusinessError
from portal.notifications import Draft, notify_many
from promotions.models import Credit, CreditStatus, Enrollment, EnrollmentStatus, FreezeEvent
from promotions.programs import enrollment_award

AUTO_FREEZE_AFTER_FAILED_PAYMENTS = 3


def _reason(reason) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise BadInput("invalid_reason", "A reason is required.")
    return inputs.text(reason, field="reason", max_length=inputs.max_length(FreezeEvent, "reason"))


def credit_freeze(*, advertiser, reason: str, by=None, rule: str = ""):
    reason = _reason(reason)
    with transaction.atomic():
        adv = lock_advertisers([advertiser.pk])[advertiser.pk]
        if adv.credit_frozen:
            raise BusinessError("already_frozen", "This advertiser's credit is already frozen.")
        adv.credit_frozen = True
        adv.save(update_fields=["credit_frozen"])
        n = Credit.objects.filter(advertiser=adv, status=CreditStatus.ACTIVE).update(status=CreditStatus.FROZEN)
        FreezeEvent.objects.create(advertiser=adv, frozen=True, reason=reason, rule=rule,
                                   by=by if by is not None and by.is_authenticated else None)
        audit_record(actor=by, action="credit_freeze", advertiser=adv, target=f"advertiser {adv.pk}", reason=reason,
                     before={"credit_frozen": False}, after={"credit_frozen": True, "credits_frozen": n})
        notify_many([Draft(adv, "credit_frozen", f"credit_frozen:{adv.pk}:{timezone.now().timestamp()}",
                           {"reason": reason})])
        advertiser.credit_frozen = True
    return advertiser


def credit_unfreeze(*, advertiser, reason: str, by=None, notify: bool = True):
    """Lift a freeze: credits are usable again and withheld ladder rewards are issued (R30). The
    advertiser is told (R36) — unless the caller tells it in its own notice (an approved appeal)."""
    reason = _reason(reason)
    with transaction.atomic():
        adv = lock_advertisers([advertiser.pk])[advertiser.pk]
        if not adv.credit_frozen:
            raise BusinessError("not_frozen", "This advertiser's credit is not frozen.")
        adv.credit_frozen = False
        adv.save(update_fields=["credit_frozen"])
        n = Credit.objects.filter(advertiser=adv, status=CreditStatus.FROZEN).update(status=CreditStatus.ACTIVE)
        event = FreezeEvent.objects.create(advertiser=adv, frozen=False, reason=reason,
                                           by=by if by is not None and by.is_authenticated else None)
        issued = 0
        for e in Enrollment.objects.filter(advertiser=adv, status=EnrollmentStatus.WITHHELD).select_related(
            "program", "reached_tier"
        ):
            e.advertiser = adv
            enrollment_award(enrollment=e, tier=e.reached_tier, at=timezone.now())
            issued += 1
        audit_record(actor=by, action="credit_unfreeze", advertiser=adv, target=f"advertiser {adv.pk}", reason=reason,
                     before={"credit_frozen": True}, after={"credit_frozen": False, "credits_unfrozen": n,
                                                            "withheld_rewards_issued": issued})
        if notify:
            notify_many([Draft(adv, "credit_unfrozen", f"credit_unfrozen:{event.pk}",
                               {"reason": reason, "credits": n, "rewards": issued})])
        advertiser.credit_frozen = False
    return advertiser
