"""Token authentication for the portal API (API.md common rules).

A request carries its token in the `Access-Token` header or as `Authorization: Bearer <token>`.
Tokens are stored as SHA-256 hashes (`ApiToken.key_hash`); a revoked token, or one of an inactive
user, authenticates nobody. `request.auth` is the token's user. Each authenticated request counts
against the token's rate limit (`API_RATE_LIMIT`, decision 0013).

A token made on an advertiser's API access page (`ApiToken.advertiser`, decision 0017) acts only
for that advertiser: its user comes back with `api_token_advertiser_id` set, and
`portal.permissions` then answers every other advertiser and every Business Center as unknown
(404 here, 40002 on the TikTok surface). Within its advertiser it has its user's current rights.
Such a token of a staff user authenticates nobody: it must never carry staff rights.
"""

import time
from datetime import datetime
from datetime import timezone as dt_timezone

from django.core.cache import cache
from ninja.security import APIKeyHeader, HttpBearer

from portal.errors import Forbidden
from portal.models import ApiToken, hash_token
from portal.ratelimit import token_hit

LAST_USED_TTL = 90 * 86400  # seconds the cache remembers a token's last use


def user_for_token(raw):
    """The token's user (with `api_token_id`, and `api_token_advertiser_id`: None, or the one
    advertiser it acts for), or None when the token is unknown, revoked or unusable. One query."""
    if not isinstance(raw, str) or not raw.strip():
        return None
    token = (
        ApiToken.objects.select_related("user")
        .filter(key_hash=hash_token(raw.strip()), revoked_at__isnull=True)
        .first()
    )
    if token is None or not token.user.is_active:
        return None
    if token.advertiser_id is not None and token.user.is_staff:
        return None
    user = token.user
    user.api_token_id, user.api_token_advertiser_id = token.pk, token.advertiser_id
    return user


def _last_used_key(token_id: int) -> str:
    return f"api-token-used:{token_id}"


def tokens_last_used(token_ids) -> dict[int, datetime]:
    """When each token last authenticated a request, as far as the cache remembers (LAST_USED_TTL);
    one cache call however many tokens."""
    ids = list(token_ids)
    found = cache.get_many([_last_used_key(i) for i in ids])
    return {i: datetime.fromtimestamp(found[_last_used_key(i)], dt_timezone.utc)
            for i in ids if _last_used_key(i) in found}


class AccessTokenAuth(APIKeyHeader):
    """`Access-Token: <token>` — the header TikTok Business API clients send."""

    param_name = "Access-Token"

    def authenticate(self, request, key):
        return counted(user_for_token(key), key)


class BearerTokenAuth(HttpBearer):
    """`Authorization: Bearer <token>`."""

    def authenticate(self, request, token):
        return counted(user_for_token(token), token)


def counted(user, raw):
    """A valid token's request counts against its rate limit (portal/ratelimit.py); over the
    limit `RateLimited` is raised and the API answers 429. The first request of each rate window
    notes the token's use in the cache (not the database: a refused request changes no row), so
    "last used" is written once a window, in the same round trip as the count."""
    if user is not None:
        token_hit(raw, mark=(_last_used_key(user.api_token_id), time.time(), LAST_USED_TTL))
    return user


token_auth = [AccessTokenAuth(), BearerTokenAuth()]


def require_staff(user, action: str = "do this") -> None:
    """Support/service users only (API.md "who: staff")."""
    if not user.is_staff:
        raise Forbidden(f"Only support staff may {action}.")
