"""API rate limits per token (decision 0013): a fixed-window counter in Django's cache.

`API_RATE_LIMIT` ("600/minute"; units second, minute, hour, day) is how many requests one token
may make per window. Windows are aligned to the clock (a minute window starts at :00), so a
counter is one cache key per token and window. On Redis a request is one round trip (issue 10):
a Lua script increments the counter, gives a new one its expiry and writes the window's `mark`
(the token's last use), atomically, through the cache's kept connection pool; other caches (the
embedded default) use `cache.add` and `cache.incr`. Only authenticated requests count; the key
holds the token's SHA-256 hash, never the token. The token itself is checked in the database on
every request, so a revoked token is refused at once. Both API surfaces call `token_hit`: the portal API answers 429 `rate_limited`
with `Retry-After`, the TikTok surface its envelope with code 42900.
"""

import logging
import math
import threading
import time

from django.conf import settings
from django.core.cache import cache

from portal.models import hash_token

log = logging.getLogger("portal.ratelimit")

UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


class RateLimited(Exception):
    def __init__(self, *, limit: int, window: int, retry_after: int):
        self.limit, self.window, self.retry_after = limit, window, retry_after
        super().__init__(
            f"Too many requests: this token may make {limit} requests per {window} seconds. "
            f"Retry after {retry_after} seconds."
        )


def parse_rate(rate: str) -> tuple[int, int]:
    """`"600/minute"` → (600, 60); `"5/10second"` is not supported, keep it simple."""
    count, _, unit = str(rate).partition("/")
    unit = unit.strip().lower().removesuffix("s")
    if unit not in UNITS or not count.strip().isdigit() or int(count) < 1:
        raise ValueError(f"API_RATE_LIMIT must look like '600/minute', got {rate!r}.")
    return int(count), UNITS[unit]


# KEYS: the counter, the mark. ARGV: the window's seconds (+5), the mark's value and its seconds.
_HIT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  if KEYS[2] then redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3]) end
end
return n
"""


def _redis_hit(key: str, mark, ttl: int) -> int | None:
    """The counter after this request, in one round trip; None when the cache is not Redis."""
    client = getattr(cache, "_cache", None)
    if not hasattr(client, "get_client"):
        return None
    keys = [cache.make_and_validate_key(key)]
    args = [ttl]
    if mark is not None:
        mark_key, value, mark_ttl = mark
        keys.append(cache.make_and_validate_key(mark_key))
        args += [int(value), int(mark_ttl)]  # an int: Django's Redis serializer reads it back as one
    script = getattr(client, "portal_hit_script", None)
    if script is None:  # once per cache client: EVALSHA afterwards, on the client's kept pool
        script = client.portal_hit_script = client.get_client(write=True).register_script(_HIT)
    return int(script(keys=keys, args=args))


def token_hit(raw_token: str, *, mark: tuple | None = None, now: float | None = None) -> None:
    """Count one request of this (valid) token; raise RateLimited once it is over the limit.
    `mark` — `(key, int value, ttl)` — is written to the cache with the window's first request.

    A cache that does not answer never stops a request (issue 11, decision 0021): the count
    falls back to this process's own counter for the window, which still holds every token to
    its limit per process, and the outage is logged once a window at ERROR."""
    limit, window = parse_rate(settings.API_RATE_LIMIT)
    now = time.time() if now is None else now
    start = int(now // window) * window
    key = f"api-rate:{hash_token(raw_token.strip())}:{window}:{start}"
    try:
        count = _cache_hit(key, mark, window)
    except Exception as exc:  # noqa: BLE001 — any cache failure: redis errors, timeouts, refused connections
        count = _local_hit(key, start, exc)
    if count > limit:
        raise RateLimited(limit=limit, window=window, retry_after=max(1, math.ceil(start + window - now)))


def _cache_hit(key: str, mark, window: int) -> int:
    count = _redis_hit(key, mark, window + 5)
    if count is None:
        first = cache.add(key, 0, timeout=window + 5)
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=window + 5)
            count = 1
        if first and mark is not None:
            cache.set(mark[0], int(mark[1]), timeout=mark[2])
    return count


_local: dict[str, int] = {}
_local_lock = threading.Lock()
_local_window = [0]


def _local_hit(key: str, start: int, exc: Exception) -> int:
    """This process's count for the window while the cache is away."""
    with _local_lock:
        if _local_window[0] != start:  # a new window: forget the last one's counts
            _local.clear()
            _local_window[0] = start
            log.error("rate limits counted per process: the cache does not answer (%s: %s)",
                      type(exc).__name__, exc)
        _local[key] = _local.get(key, 0) + 1
        return _local[key]
