"""Client values, parsed and bounded once (issue 9, decision 0018).

Every value a client sends — through the portal API, the TikTok surface, a dashboard form or the
admin — is read by one of these functions before it reaches a service's write, so nothing the
database cannot hold (or the code cannot compute with) gets that far:

- `timestamp` — ISO 8601 with a UTC offset, inside `TIMESTAMP_MIN` ≤ t < `TIMESTAMP_MAX`;
- `text` — a string with no NUL and no lone surrogate, at most the column's length;
- `key` — an idempotency key or request id: required, printable, at most the column's length;
- `object_id` — a positive id that fits a bigint (digits, or a JSON integer);
- `count` — a whole number inside the range the rule allows;
- `json_body` — a request body: at most `DATA_UPLOAD_MAX_MEMORY_SIZE` bytes and `JSON_MAX_DEPTH`
  levels deep, its text storable;
- amounts are `billing.money.parse_amount` (R4), the one amount parser, re-exported here as
  `amount`, with `AmountField` its form field.

A refusal is a `BadInput` (HTTP 400 in the portal API, 40001 on the TikTok surface, a message
under the field on a page) whose code names the problem.
"""

import json
import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from django import forms
from django.conf import settings

from billing.money import AMOUNT_SYNTAX, parse_amount
from portal.errors import BadInput

amount = parse_amount

# Spend, validity and report times a client may send. Anything outside is a client's bug (a
# zeroed or overflowed clock), never a charge: refused rather than booked (decision 0018).
TIMESTAMP_MIN = datetime(2000, 1, 1, tzinfo=UTC)
TIMESTAMP_MAX = datetime(2100, 1, 1, tzinfo=UTC)

# A day count of a program (window, reward validity): ten years is longer than any promotion
# runs, and keeps every window end and expiry a date PostgreSQL and Python both hold.
PROGRAM_DAYS_MAX = 3650

BIGINT_MAX = 2**63 - 1
INT_MAX = 2**31 - 1
JSON_MAX_DEPTH = 32

# C0 controls other than tab, newline and carriage return, and DEL: no key or id holds them.
_KEY_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class BodyTooLarge(BadInput):
    """The request body is larger than the portal reads (HTTP 413)."""

    status = 413

    def __init__(self):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        super().__init__("body_too_large", f"The request body is larger than {limit:,} bytes.")


def storable(value) -> bool:
    """True when a string holds neither a NUL character nor a lone UTF-16 surrogate (valid JSON
    escapes that no PostgreSQL text column can store)."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _unstorable_in(data) -> bool:
    if isinstance(data, str):
        return not storable(data)
    if isinstance(data, dict):
        return any(_unstorable_in(k) or _unstorable_in(v) for k, v in data.items())
    if isinstance(data, list):
        return any(_unstorable_in(v) for v in data)
    return False


def _depth(data, limit: int) -> int:
    """How deep `data` nests, counting no further than `limit + 1`."""
    stack, deepest = [(data, 1)], 0
    while stack:
        node, level = stack.pop()
        if not isinstance(node, (dict, list)):
            continue
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        stack.extend((v, level + 1) for v in (node.values() if isinstance(node, dict) else node))
    return deepest


def json_body(raw: bytes):
    """Parse a JSON request body, or refuse it: too large (413 `body_too_large`), not JSON
    (`malformed_json`), nested deeper than `JSON_MAX_DEPTH` (`body_too_deep`), or holding text no
    column can store (`invalid_text`)."""
    if len(raw) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
        raise BodyTooLarge()
    try:
        data = json.loads(raw or b"null")
    except RecursionError:
        raise BadInput("body_too_deep", f"The request body nests deeper than {JSON_MAX_DEPTH} levels.") from None
    except ValueError:
        raise BadInput("malformed_json", "The request body is not valid JSON.") from None
    if _depth(data, JSON_MAX_DEPTH) > JSON_MAX_DEPTH:
        raise BadInput("body_too_deep", f"The request body nests deeper than {JSON_MAX_DEPTH} levels.")
    if _unstorable_in(data):
        raise BadInput("invalid_text", "The request body holds text that cannot be stored "
                                       "(a NUL character or a lone surrogate escape).")
    return data


def timestamp(value, *, field: str, code: str = "invalid_timestamp") -> datetime:
    """An ISO 8601 timestamp with a UTC offset, inside the accepted range."""
    if not isinstance(value, str) or not storable(value):
        raise BadInput(code, f"{field} must be an ISO 8601 timestamp with offset, such as \"2026-01-31T09:00:00+00:00\".")
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise BadInput(code, f"{field} {value!r} is not an ISO 8601 timestamp.") from None
    if t.tzinfo is None:
        raise BadInput(code, f"{field} {value!r} has no UTC offset.")
    return in_range(t, field=field, shown=value, code=code)


def in_range(t: datetime, *, field: str, shown=None, code: str = "invalid_timestamp") -> datetime:
    """Refuse an aware datetime outside `TIMESTAMP_MIN` ≤ t < `TIMESTAMP_MAX`. A local time
    before year 1 in UTC (year 1 at +14:00) is refused too, without overflowing."""
    try:
        utc = t.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not TIMESTAMP_MIN <= utc < TIMESTAMP_MAX:
        raise BadInput(
            code,
            f"{field} {shown if shown is not None else t.isoformat()} is outside the accepted range "
            f"({TIMESTAMP_MIN:%Y-%m-%d} to {TIMESTAMP_MAX:%Y-%m-%d} UTC).",
        )
    return t


def text(value, *, field: str, max_length: int, required: bool = True, code: str | None = None,
         strip: bool = True) -> str:
    """A string a column can store: no NUL, no lone surrogate, at most `max_length` characters
    (after stripping). `required` refuses a blank one; otherwise blank is ""."""
    code = code or f"invalid_{field}"
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise BadInput(code, f"{field} must be a string.")
    if not storable(value):
        raise BadInput("invalid_text", f"{field} holds a character that cannot be stored (NUL or a lone surrogate).")
    out = value.strip() if strip else value
    if required and not out.strip():
        raise BadInput(code, f"{field} is required.")
    if len(out) > max_length:
        raise BadInput(code, f"{field} is longer than {max_length} characters.")
    return out


def key(value, *, field: str = "idempotency_key", max_length: int = 100,
        code: str = "invalid_idempotency_key") -> str:
    """An idempotency key or request id: a non-empty string of printable characters, at most
    `max_length` long. Kept exactly as sent (keys are compared, never trimmed)."""
    if not isinstance(value, str) or not value.strip() or len(value) > max_length:
        raise BadInput(code, f"{field} must be a non-empty string of at most {max_length} characters.")
    if not storable(value) or _KEY_FORBIDDEN.search(value):
        raise BadInput(code, f"{field} holds a control character or a lone surrogate.")
    return value


def object_id(value, *, field: str, code: str) -> int:
    """A positive id that fits a bigint: a string of digits, or a JSON integer."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BadInput(code, f"{field} must be an id (a string of digits).")
    text_ = str(value).strip()
    if not text_.isascii() or not text_.isdigit() or len(text_) > 19 or not 0 < int(text_) <= BIGINT_MAX:
        raise BadInput(code, f"{field} must be an id (a string of digits), got {str(value)[:40]!r}.")
    return int(text_)


def count(value, *, field: str, low: int, high: int, code: str) -> int:
    """A whole number with low ≤ n ≤ high: a JSON integer or a string of digits."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BadInput(code, f"{field} must be a whole number between {low:,} and {high:,}.")
    text_ = str(value).strip()
    if not re.fullmatch(r"-?[0-9]{1,19}", text_) or not low <= int(text_) <= high:
        raise BadInput(code, f"{field} must be a whole number between {low:,} and {high:,}.")
    return int(text_)


def max_length(model, name: str) -> int:
    """The length of a model's text column: the bound `text` and `key` check."""
    return model._meta.get_field(name).max_length


class AmountField(forms.CharField):
    """A form field for an amount: the same syntax as every other door (`^[0-9]+(\\.[0-9]+)?$`);
    places and range are checked by `parse_amount` with the account's currency. Cleans to the
    string typed (stripped), or None when blank."""

    def __init__(self, **kwargs):
        for name in ("max_digits", "decimal_places", "localize"):  # given by a model's DecimalField
            kwargs.pop(name, None)
        kwargs.setdefault("max_length", 32)
        super().__init__(**kwargs)
        self.widget.attrs.setdefault("inputmode", "decimal")

    def prepare_value(self, value):
        if value is not None and not isinstance(value, str):
            value = format(value.normalize(), "f") if hasattr(value, "normalize") else str(value)
        return value

    def has_changed(self, initial, data):
        """"0.0000" stored and "0" typed are the same amount."""
        try:
            before = None if initial in self.empty_values else Decimal(str(initial))
            after = None if data in self.empty_values else Decimal(str(data).strip())
        except InvalidOperation:
            return True
        return before != after

    def to_python(self, value):
        value = super().to_python(value)
        if value in self.empty_values:
            return None
        if not AMOUNT_SYNTAX.fullmatch(value):
            raise forms.ValidationError("Enter an amount such as 100 or 12.50 (digits, an optional decimal point).",
                                        code="invalid_amount")
        return value
