"""Reads off a replica (issue 11, decision 0022).

With `DATABASE_REPLICA_URL` set, the dashboard's pages and exports (GET requests under `/a/`)
read the money tables — ledger, bills, credits, spend — from the replica through
`ReplicaRouter`; everything else reads the primary:

- anything inside a transaction on the primary (every service that decides money locks and
  reads there), every write, the API doors, the admin, sessions, users, memberships;
- a browser that has just changed something (any POST), for `REPLICA_STICKY_SECONDS`, so the page
  it is sent to shows its own change whatever the replica's lag (`ReplicaReadsMiddleware` sets a
  cookie);
- everyone, while the replica does not answer: checked at most every `REPLICA_RETRY_SECONDS`, a
  replica that is down sends its reads back to the primary instead of failing the page.
"""

import contextvars
import logging
import time

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.utils import DatabaseError

log = logging.getLogger("portal.replica")

REPLICA = "replica"
REPLICA_APPS = {"billing", "promotions"}  # the tables that grow; a page's heavy reads
STICKY_COOKIE = "read_primary"
_reading = contextvars.ContextVar("replica_reads", default=False)
_down_until = [0.0]


def replica_configured() -> bool:
    return REPLICA in settings.DATABASES


def replica_up() -> bool:
    """Whether the replica answers (checked at most every REPLICA_RETRY_SECONDS while it is down)."""
    if time.monotonic() < _down_until[0]:
        return False
    try:
        connections[REPLICA].ensure_connection()
    except DatabaseError as exc:
        _down_until[0] = time.monotonic() + settings.REPLICA_RETRY_SECONDS
        log.error("replica not answering, reading the primary (%s: %s)", type(exc).__name__, exc)
        return False
    return True


class ReplicaRouter:
    def db_for_read(self, model, **hints):
        if (not _reading.get() or model._meta.app_label not in REPLICA_APPS
                or connections[DEFAULT_DB_ALIAS].in_atomic_block):
            return DEFAULT_DB_ALIAS
        return REPLICA if replica_up() else DEFAULT_DB_ALIAS

    def db_for_write(self, model, **hints):
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1, obj2, **hints):
        return True  # one database, two copies of it

    def allow_migrate(self, db, app_label, **hints):
        return db == DEFAULT_DB_ALIAS  # the replica follows the primary's WAL


class ReplicaReadsMiddleware:
    """Marks the dashboard's GET requests as replica reads, and keeps a browser on the primary for
    a while after it changed something."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        use = (replica_configured() and request.method in ("GET", "HEAD") and request.path.startswith("/a/")
               and STICKY_COOKIE not in request.COOKIES)
        token = _reading.set(use)
        try:
            response = self.get_response(request)
        finally:
            _reading.reset(token)
        if replica_configured() and request.method not in ("GET", "HEAD", "OPTIONS"):
            response.set_cookie(STICKY_COOKIE, "1", max_age=settings.REPLICA_STICKY_SECONDS, httponly=True,
                                samesite="Lax", secure=request.is_secure())
        return response
