"""Base of every internal client: one pooled connection set, a service token, the request id."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx

from tsunagu.auth import ServiceTokenAuth, ServiceTokenIssuer
from tsunagu.obs.context import current_request_id


class UpstreamError(Exception):
    """Another service answered with an error (its problem document is kept, minus nothing)."""

    def __init__(self, service: str, status: int, problem: dict[str, Any]) -> None:
        super().__init__(f"{service} answered {status} {problem.get('type', '')}")
        self.service = service
        self.status = status
        self.problem = problem


async def _propagate_request_id(request: httpx.Request) -> None:
    request_id = current_request_id()
    if request_id and "x-request-id" not in request.headers:
        request.headers["x-request-id"] = request_id


# An idle pooled connection is dropped well before the serving side would close it
# (libs/service/app.py SERVER_KEEP_ALIVE_S): reusing a connection the server is closing at that
# moment fails the request ("server disconnected without sending a response").
CLIENT_KEEP_ALIVE_S = 4.0


class InternalClient:
    """An async client for ``service`` at ``base_url``, calling as ``issuer``'s service."""

    def __init__(
        self, service: str, base_url: str, issuer: ServiceTokenIssuer, *, timeout_s: float = 10.0
    ) -> None:
        self.service = service
        self.http = httpx.AsyncClient(
            base_url=base_url,
            auth=ServiceTokenAuth(issuer, service),
            timeout=timeout_s,
            limits=httpx.Limits(keepalive_expiry=CLIENT_KEEP_ALIVE_S),
            event_hooks={"request": [_propagate_request_id]},
        )

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request; return the decoded JSON body or raise :class:`UpstreamError`."""
        response = await self.http.request(method, path, **kwargs)
        if response.is_error:
            try:
                problem = response.json()
            except ValueError:
                problem = {"title": response.reason_phrase}
            raise UpstreamError(self.service, response.status_code, problem)
        return response.json() if response.content else None

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> InternalClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
