"""API access: an advertiser's admins create and revoke API tokens for it (issue 6, decision 0017).

A token made here belongs to the admin who made it and to the advertiser (`ApiToken.advertiser`):
`portal/api_auth.py` and `portal/permissions.py` make it act for that advertiser only, with its
user's rights there at the time of each request — an admin who becomes an analyst leaves tokens
that can only read, one who leaves the account leaves tokens that reach nothing. The raw value is
returned once by `api_token_create`; only its SHA-256 is stored.
"""

from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from portal.api_auth import tokens_last_used
from portal.audit import audit_record
from portal.errors import BadInput, Conflict, NotFound
from portal.models import Advertiser, ApiToken, BCMembership, Membership, Role

LABEL_MAX_LENGTH = 100
KEY_MAX_LENGTH = 64


def _label(value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadInput("invalid_label", "Give the token a label, e.g. the tool that will use it.")
    label = value.strip()
    if len(label) > LABEL_MAX_LENGTH:
        raise BadInput("invalid_label", f"The label is longer than {LABEL_MAX_LENGTH} characters.")
    if "\x00" in label:
        raise BadInput("invalid_label", "The label holds a character that cannot be stored.")
    return label


def api_token_create(*, advertiser: Advertiser, user, label: str, idempotency_key: str) -> tuple[ApiToken, str | None]:
    """Issue a token acting for `advertiser` with `user`'s rights. Returns the token and its raw
    value, shown once. The same `idempotency_key` again returns the first token and None (its value
    is never shown twice); with another label it is a conflict."""
    label = _label(label)
    if not isinstance(idempotency_key, str) or not 8 <= len(idempotency_key) <= KEY_MAX_LENGTH:
        raise BadInput("invalid_idempotency_key", "The form has expired; load the page again.")
    existing = ApiToken.objects.filter(advertiser=advertiser, idempotency_key=idempotency_key).first()
    if existing is None:
        try:
            with transaction.atomic():
                token, raw = ApiToken.issue(user=user, label=label, advertiser=advertiser,
                                            idempotency_key=idempotency_key)
                audit_record(actor=user, action="api_token_create", advertiser=advertiser,
                             target=f"API token {token.prefix}…", reason=label,
                             after={"label": label, "prefix": token.prefix, "user": user.get_username()})
            return token, raw
        except IntegrityError:  # the same form, submitted twice at once
            existing = ApiToken.objects.get(advertiser=advertiser, idempotency_key=idempotency_key)
    if existing.label != label:
        raise Conflict("idempotency_key_reused", "This form was already used to create another token; "
                                                 "load the page again.")
    return existing, None


def api_token_revoke(*, token: ApiToken, by) -> tuple[ApiToken, bool]:
    """Revoke the token at once (both API surfaces answer 401 from the next request). Returns the
    token and whether this call revoked it: revoking a revoked token changes nothing."""
    at = timezone.now()
    with transaction.atomic():
        revoked = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=at) == 1
        if revoked:
            token.revoked_at = at
            audit_record(actor=by, action="api_token_revoke", advertiser=token.advertiser,
                         target=f"API token {token.prefix}…", reason=token.label or "revoked",
                         before={"status": "active"}, after={"status": "revoked"})
        else:
            token.refresh_from_db(fields=["revoked_at"])
    return token, revoked


# --- reads ------------------------------------------------------------------------------------------

class TokenStatus:
    ACTIVE = "active"  # its creator is still an admin of the advertiser
    LIMITED = "limited"  # its creator now has a lesser role: the token has that role's rights
    NO_ACCESS = "no_access"  # its creator is no longer a member, inactive or staff: nothing works
    REVOKED = "revoked"


@dataclass
class TokenRow:
    token: ApiToken
    status: str
    creator_role: str | None  # the creator's role on the advertiser now
    last_used: datetime | None = None  # as far as the cache remembers (api_auth.LAST_USED_TTL)

    @property
    def pk(self) -> int:
        return self.token.pk


def _status(token: ApiToken, role: str | None) -> str:
    if token.revoked_at is not None:
        return TokenStatus.REVOKED
    if role is None or not token.user.is_active or token.user.is_staff:
        return TokenStatus.NO_ACCESS
    return TokenStatus.ACTIVE if role == Role.ADMIN else TokenStatus.LIMITED


def api_tokens_of(*, advertiser: Advertiser) -> list[TokenRow]:
    """The advertiser's tokens, newest first, with their creators, their roles now and when each
    was last used: one query and one cache call however many tokens there are."""
    member_role = Membership.objects.filter(user=OuterRef("user"), advertiser=advertiser).values("role")[:1]
    tokens = ApiToken.objects.filter(advertiser=advertiser).select_related("user").annotate(member_role=Subquery(member_role))
    if advertiser.business_center_id:
        bc_role = BCMembership.objects.filter(
            user=OuterRef("user"), business_center_id=advertiser.business_center_id
        ).values("role")[:1]
        tokens = tokens.annotate(bc_role=Subquery(bc_role))
    rows = []
    for token in tokens.order_by("-created_at", "-pk"):
        token.advertiser = advertiser
        role = token.member_role or getattr(token, "bc_role", None)  # as portal.permissions.role_of
        rows.append(TokenRow(token, _status(token, role), role))
    used = tokens_last_used(row.pk for row in rows)
    for row in rows:
        row.last_used = used.get(row.pk)
    return rows


def api_token_of(*, advertiser: Advertiser, token_id) -> ApiToken:
    """One of the advertiser's tokens, or NotFound — another advertiser's token reads as unknown."""
    try:
        token = ApiToken.objects.select_related("user").get(pk=int(str(token_id)), advertiser=advertiser)
    except (ApiToken.DoesNotExist, ValueError, TypeError):
        raise NotFound("API token") from None
    token.advertiser = advertiser
    return token
