"""Request ids for the portal API (`/api/`): every answer carries `X-Request-Id`, and every
request is logged once with it (logger `portal.api`: `request_id=… method=… path=… status=…
user=… duration_ms=…`).

A caller's own `X-Request-Id` is reused when it is sane (1–64 characters of letters, digits,
`-`, `_`, `.`, `:`), so a client can follow its request through our logs; anything else gets a
fresh id in the TikTok surface's shape (UTC time to the second, then 20 hex digits). The id is
also `request.request_id`, which the API's error bodies quote (`error.request_id`).
"""

import logging
import re
import secrets
import time

from django.utils import timezone

log = logging.getLogger("portal.api")

API_PREFIX = "/api/"
_VALID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def new_request_id() -> str:
    return timezone.now().strftime("%Y%m%d%H%M%S") + secrets.token_hex(10).upper()


def request_id_for(request) -> str:
    incoming = request.headers.get("X-Request-Id", "")
    return incoming if _VALID.fullmatch(incoming) else new_request_id()


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path.startswith(API_PREFIX):
            return self.get_response(request)
        started = time.monotonic()
        request.request_id = request_id_for(request)
        response = self.get_response(request)
        response["X-Request-Id"] = request.request_id
        user = getattr(request, "auth", None)
        log.info(
            "api request_id=%s method=%s path=%s status=%s user=%s duration_ms=%d",
            request.request_id, request.method, request.path, response.status_code,
            getattr(user, "pk", None) or "-", (time.monotonic() - started) * 1000,
        )
        return response
