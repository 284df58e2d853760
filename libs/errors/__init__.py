"""Typed domain errors and their RFC 9457 problem+json rendering.

Every service raises subclasses of :class:`DomainError`; one handler per service (installed by
:func:`tsunagu.errors.fastapi.install_problem_handlers`) turns them into ``application/problem+json``
with a stable ``type`` URI. OAuth/OIDC endpoints keep their RFC 6749 error format and do not use
this module.
"""

from tsunagu.errors.problems import (
    PROBLEM_TYPE_BASE,
    BadRequest,
    Conflict,
    DomainError,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    Problem,
    ServiceUnavailable,
    TooManyRequests,
    Unauthenticated,
    problem_type,
)

__all__ = [
    "PROBLEM_TYPE_BASE",
    "BadRequest",
    "Conflict",
    "DomainError",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "Problem",
    "ServiceUnavailable",
    "TooManyRequests",
    "Unauthenticated",
    "problem_type",
]
