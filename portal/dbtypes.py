"""Reading what PostgreSQL holds even where Python's `datetime` cannot (issue 9, decision 0018).

PostgreSQL keeps timestamps from 4713 BC to 294276 AD; Python's `datetime` from year 1 to 9999.
A row written before the doors bounded timestamps (a spend event dated `0001-01-01T00:00+14:00`,
which is year 0 in UTC) made every page and API answer that read it fail. Such a value is read
as the nearest instant Python holds — a day inside year 1 or year 9999, so it still converts to
any time zone — and `reconcile_ledger` lists the row (`billing/reconcile.py`) for staff to
correct. Values Python can hold are read by psycopg's own (C) loader, unchanged.

`prepared_cursor` is the other way the portal reads and writes PostgreSQL: for the money engine's
fixed statements, which PostgreSQL prepares (issue 10, decision 0020).
"""

from datetime import UTC, datetime

import psycopg
from django.db import connection
from psycopg.adapt import Loader
from psycopg.pq import Format

EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, tzinfo=UTC)


_CLAMPING: dict[type, type] = {}


def _clamping(loader: type[Loader]) -> type[Loader]:
    """A subclass of the connection's timestamptz loader (Django's, which keeps its `timezone`)
    whose values outside Python's range read as `EARLIEST` or `LATEST`."""
    if loader not in _CLAMPING:
        class ClampingTimestamptzLoader(loader):
            def load(self, data):
                try:
                    return super().load(data)
                except psycopg.DataError as exc:
                    return EARLIEST if "small" in str(exc) else LATEST

        _CLAMPING[loader] = ClampingTimestamptzLoader
    return _CLAMPING[loader]


def register(sender, connection, **kwargs) -> None:
    """Django's `connection_created`: install the clamping loaders on a PostgreSQL connection."""
    if connection.vendor != "postgresql":
        return
    adapters = connection.connection.adapters
    oid = psycopg.adapters.types["timestamptz"].oid
    current = adapters.get_loader(oid, Format.TEXT)  # Django reads results as text
    if current not in _CLAMPING.values():
        adapters.register_loader("timestamptz", _clamping(current))


def prepared_cursor():
    """A cursor whose statements PostgreSQL prepares (psycopg's server-side binding: after
    `prepare_threshold` runs of the same text on a connection, it is parsed and planned once).
    Django's own cursors bind on the client; the money engine's fixed statements are worth
    preparing. Wrapped like Django's cursors, so errors, debug logging and query capture are
    the same."""
    from django.db.backends.postgresql.base import ServerBindingCursor

    connection.ensure_connection()
    return connection._prepare_cursor(ServerBindingCursor(connection.connection))


def id_chunks(queryset, size: int, field: str = "pk"):
    """The distinct values of `field` (an id) of `queryset`, ascending, `size` at a time: a keyset,
    each chunk read after the last id of the one before, so a job's chunks never overlap and rows
    a chunk changed (no longer due) do not shift the next one. The periodic jobs' one loop."""
    after = 0
    while True:
        ids = list(queryset.filter(**{f"{field}__gt": after}).order_by(field)
                   .values_list(field, flat=True).distinct()[:size])
        if not ids:
            return
        after = ids[-1]
        yield ids

