"""One exception type for every refusal a door must show (STYLE: stable `code`, per-door shape).

`status` is the HTTP status the portal API uses; pages show `message`; tests assert on `code`.
"""


class BusinessError(Exception):
    """A business rule refused the request (HTTP 422 in the portal API)."""

    status = 422

    def __init__(self, code: str, message: str, **details):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class BadInput(BusinessError):
    """The request itself is malformed: wrong type, too many places, unknown field value (400)."""

    status = 400


class Conflict(BusinessError):
    """An idempotency key reused with other content, or a state that does not allow it (409)."""

    status = 409


class NotFound(BusinessError):
    """Unknown, or not the caller's — never tells which (404)."""

    status = 404

    def __init__(self, what: str = "object"):
        super().__init__("not_found", f"No such {what}.")


class Forbidden(BusinessError):
    """The caller is a member but their role does not allow this (403)."""

    status = 403

    def __init__(self, message: str = "Your role does not allow this action."):
        super().__init__("forbidden", message)
