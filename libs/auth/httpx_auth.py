"""httpx client side: attach this service's token for the called service to every request."""

from __future__ import annotations

from collections.abc import Generator

import httpx

from tsunagu.auth.tokens import ServiceTokenIssuer


class ServiceTokenAuth(httpx.Auth):
    """``httpx.Client(auth=ServiceTokenAuth(issuer, "signer"))``; works for sync and async clients."""

    def __init__(self, issuer: ServiceTokenIssuer, audience: str) -> None:
        self._issuer = issuer
        self._audience = audience

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Set the bearer header (minting or reusing a token; no I/O, so sync and async alike)."""
        request.headers["Authorization"] = f"Bearer {self._issuer.token_for(self._audience)}"
        yield request
