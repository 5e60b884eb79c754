"""Domain errors; views map them to HTTP statuses and Chinese messages."""

from __future__ import annotations


class DomainError(Exception):
    """Base of errors an operation raises on purpose; carries a code and a Chinese message."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, **extra: object) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.extra = extra


class InvalidInput(DomainError):
    """The request is malformed or a field is invalid."""

    status = 400
    code = "invalid_input"


class Forbidden(DomainError):
    """The actor's role or relation to the object does not allow the action."""

    status = 403
    code = "forbidden"


class NotFound(DomainError):
    """The object does not exist or is not visible to the actor."""

    status = 404
    code = "not_found"


class Conflict(DomainError):
    """The action is not allowed in the object's current state."""

    status = 409
    code = "conflict"


class IllegalTransition(Conflict):
    """A lifecycle transition that the transition table does not allow."""

    code = "illegal_transition"


class TooLarge(DomainError):
    """The request body exceeds a configured limit."""

    status = 413
    code = "too_large"


class Unauthorized(DomainError):
    """No valid credentials were presented."""

    status = 401
    code = "unauthorized"


class TooManyAttempts(DomainError):
    """Too many wrong passwords in the window; ``retry_after`` seconds to wait."""

    status = 429
    code = "too_many_attempts"
