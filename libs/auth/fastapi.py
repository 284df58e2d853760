"""FastAPI glue: ``Depends(require_permission("signer:sign"))`` on every internal route."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request

from tsunagu.auth.errors import MissingServiceToken
from tsunagu.auth.policy import AccessPolicy
from tsunagu.auth.tokens import ServicePrincipal, ServiceTokenVerifier
from tsunagu.errors import Unauthenticated


@dataclass(frozen=True)
class InternalAuth:
    """What the app factory stores at ``app.state.internal_auth``."""

    verifier: ServiceTokenVerifier
    policy: AccessPolicy

    def authenticate(self, authorization: str | None, permission: str) -> ServicePrincipal:
        """Verify an ``Authorization`` header value and check ``permission`` for its caller."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise MissingServiceToken("send 'Authorization: Bearer <service token>'")
        principal = self.verifier.verify(token)
        self.policy.check(principal, permission)
        return principal


def require_permission(permission: str) -> Callable[[Request], Awaitable[ServicePrincipal]]:
    """A dependency that authenticates the calling service and requires ``permission``."""

    async def dependency(request: Request) -> ServicePrincipal:
        auth = getattr(request.app.state, "internal_auth", None)
        if not isinstance(auth, InternalAuth):
            # Fail closed: a service wired without auth must not serve internal routes openly.
            raise Unauthenticated("internal authentication is not configured")
        headers = request.headers.getlist("authorization")
        if len(headers) > 1:
            # Two credentials: which one a proxy or the app would pick is ambiguous; refuse both.
            raise MissingServiceToken("send exactly one Authorization header")
        principal = auth.authenticate(headers[0] if headers else None, permission)
        request.state.principal = principal
        return principal

    return dependency
