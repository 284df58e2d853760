"""The error vocabulary shared by all services (RFC 9457 "Problem Details for HTTP APIs")."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

PROBLEM_TYPE_BASE = "urn:tsunagu:problem:"
PROBLEM_CONTENT_TYPE = "application/problem+json"


def problem_type(code: str) -> str:
    """The stable ``type`` URI of a problem code (e.g. ``challenge-reused``)."""
    return f"{PROBLEM_TYPE_BASE}{code}"


class Problem(BaseModel):
    """An RFC 9457 problem details object (extension members allowed)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None


class DomainError(Exception):
    """Base of every error a service raises on purpose.

    Subclasses set ``code`` (the last segment of the problem ``type``), ``title`` (constant per
    code, human readable) and ``status``. ``detail`` is per occurrence and must never contain a
    secret or personal data. ``extensions`` become extra members of the problem object and
    ``headers`` extra response headers (``Retry-After``, ``WWW-Authenticate``...).
    """

    code: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal error"
    status: ClassVar[int] = 500

    def __init__(
        self,
        detail: str | None = None,
        *,
        extensions: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.extensions = extensions or {}
        self.headers = headers or {}

    def to_problem(self, instance: str | None = None) -> Problem:
        """Render this error as a problem object."""
        return Problem(
            type=problem_type(self.code),
            title=self.title,
            status=self.status,
            detail=self.detail,
            instance=instance,
            **self.extensions,
        )


class BadRequest(DomainError):
    code = "bad-request"
    title = "The request is malformed"
    status = 400


class Unauthenticated(DomainError):
    code = "unauthenticated"
    title = "Authentication is required"
    status = 401


class Forbidden(DomainError):
    code = "forbidden"
    title = "The caller may not do this"
    status = 403


class NotFound(DomainError):
    code = "not-found"
    title = "No such resource"
    status = 404


class Conflict(DomainError):
    code = "conflict"
    title = "The request conflicts with the current state"
    status = 409


class PayloadTooLarge(DomainError):
    code = "payload-too-large"
    title = "The request body is too large"
    status = 413


class TooManyRequests(DomainError):
    code = "too-many-requests"
    title = "Too many requests"
    status = 429


class ServiceUnavailable(DomainError):
    code = "service-unavailable"
    title = "A dependency is unavailable; retry later"
    status = 503

    def __init__(self, detail: str | None = None, *, retry_after_s: int = 5, **kwargs: Any) -> None:
        headers = {"Retry-After": str(retry_after_s), **kwargs.pop("headers", {})}
        super().__init__(detail, headers=headers, **kwargs)
