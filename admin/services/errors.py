"""Service-layer errors: one class per kind of refusal, each with a stable `code`.

The CLI turns them into exit status 2, the JSON API into 4xx responses with `code` in the
body, the web console into form errors. Every service function raises them BEFORE writing
anything (and its transaction rolls back in any case).
"""

from __future__ import annotations


class ServiceError(Exception):
    """A request the registry refuses; `code` is stable, `message` is for people."""

    code = "invalid_input"
    http_status = 400

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def as_dict(self) -> dict:
        return {"code": self.code, "message": self.message}


class InvalidInput(ServiceError):
    """Malformed input: codes invalid_domain, invalid_address, invalid_name, invalid_password..."""

    code = "invalid_input"
    http_status = 422


class NotFound(ServiceError):
    code = "not_found"
    http_status = 404


class Duplicate(ServiceError):
    code = "duplicate"
    http_status = 409


class Conflict(ServiceError):
    """The request is well-formed but the current state forbids it: in_use, limit_reached..."""

    code = "conflict"
    http_status = 409
