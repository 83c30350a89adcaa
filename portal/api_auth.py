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

import functools
import time
from datetime import datetime
from datetime import timezone as dt_timezone

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from ninja.security import APIKeyHeader, HttpBearer

from portal.dbtypes import prepared_cursor
from portal.errors import Forbidden
from portal.models import ApiToken, hash_token
from portal.ratelimit import token_hit

LAST_USED_TTL = 90 * 86400  # seconds the cache remembers a token's last use


def user_for_token(raw):
    """The token's user (with `api_token_id`, and `api_token_advertiser_id`: None, or the one
    advertiser it acts for), or None when the token is unknown, revoked or unusable. One query."""
    if not isinstance(raw, str) or not raw.strip():
        return None
    found = _token_user(hash_token(raw.strip()))
    if found is None:
        return None
    token_id, advertiser_id, user = found
    if not user.is_active or (advertiser_id is not None and user.is_staff):
        return None
    user.api_token_id, user.api_token_advertiser_id = token_id, advertiser_id
    return user


def _token_user(key_hash: str):
    """(token id, its advertiser id, its user) of a live token, or None. Every API request runs
    it: on PostgreSQL a prepared statement rather than an ORM query compiled each time."""
    if connection.vendor != "postgresql":
        token = ApiToken.objects.select_related("user").filter(key_hash=key_hash, revoked_at__isnull=True).first()
        return None if token is None else (token.pk, token.advertiser_id, token.user)
    User = get_user_model()
    with prepared_cursor() as cursor:
        cursor.execute(_token_sql(), [key_hash])
        row = cursor.fetchone()
    if row is None:
        return None
    fields = [f.attname for f in User._meta.concrete_fields]
    return row[0], row[1], User.from_db(connection.alias, fields, row[2:])


@functools.cache
def _token_sql() -> str:
    User = get_user_model()
    qn = connection.ops.quote_name
    token, user = qn(ApiToken._meta.db_table), qn(User._meta.db_table)
    columns = ", ".join(f"u.{qn(f.column)}" for f in User._meta.concrete_fields)
    return (f"SELECT t.id, t.advertiser_id, {columns} FROM {token} t JOIN {user} u ON u.id = t.user_id"
            f" WHERE t.key_hash = %s AND t.revoked_at IS NULL LIMIT 1")


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
