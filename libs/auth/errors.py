"""The authentication and authorisation errors of internal calls.

Details are fixed strings chosen by this package: never the token, never a claim value taken from
an unverified token (it is attacker-controlled and would end up in logs and responses).
"""

from __future__ import annotations

from typing import Any

from tsunagu.errors import Forbidden, Unauthenticated


class MissingServiceToken(Unauthenticated):
    """No ``Authorization: Bearer`` service token on an internal call."""

    code = "service-token-missing"
    title = "A service token is required"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        headers = {"WWW-Authenticate": "Bearer", **kwargs.pop("headers", {})}
        super().__init__(detail, headers=headers, **kwargs)


class InvalidServiceToken(Unauthenticated):
    """The service token is malformed, forged, expired or meant for another service."""

    code = "service-token-invalid"
    title = "The service token is invalid"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        headers = {"WWW-Authenticate": 'Bearer error="invalid_token"', **kwargs.pop("headers", {})}
        super().__init__(detail, headers=headers, **kwargs)


class CallerNotAllowed(Forbidden):
    """An authenticated service called an operation its policy does not grant it."""

    code = "caller-not-allowed"
    title = "The calling service may not do this"
