"""API rate limits per token (decision 0013): a fixed-window counter in Django's cache.

`API_RATE_LIMIT` ("600/minute"; units second, minute, hour, day) is how many requests one token
may make per window. Windows are aligned to the clock (a minute window starts at :00), so a
counter is one cache key per token and window: `cache.add` creates it, `cache.incr` counts
(atomic in Redis). Only authenticated requests count; the key holds the token's SHA-256 hash,
never the token. Both API surfaces call `token_hit`: the portal API answers 429 `rate_limited`
with `Retry-After`, the TikTok surface its envelope with code 42900.
"""

import math
import time

from django.conf import settings
from django.core.cache import cache

from portal.models import hash_token

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


def token_hit(raw_token: str, *, now: float | None = None) -> bool:
    """Count one request of this (valid) token; raise RateLimited once it is over the limit.
    True for the first request of the token's window (the counter was just created)."""
    limit, window = parse_rate(settings.API_RATE_LIMIT)
    now = time.time() if now is None else now
    start = int(now // window) * window
    key = f"api-rate:{hash_token(raw_token.strip())}:{window}:{start}"
    first = cache.add(key, 0, timeout=window + 5)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=window + 5)
        count = 1
    if count > limit:
        raise RateLimited(limit=limit, window=window, retry_after=max(1, math.ceil(start + window - now)))
    return first
