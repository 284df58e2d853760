"""Base of every internal client: one pooled connection set, a service token, the request id.

The HTTP goes through aiohttp: a call costs the caller about a quarter of the CPU httpx takes
(≈ 0.19 against 0.78 ms per small JSON call, measured on the 2-core machine against a bare ASGI
app), and services make such calls on hot paths (ID tokens and receipts through the signer,
certificate checks through the CA, consent checks). Failures to reach the other service are raised
as subclasses of httpx's transport errors, so callers catch one family whatever the client library
underneath (``httpx.HTTPError`` covers both).
"""

from __future__ import annotations

import asyncio
import json
from types import TracebackType
from typing import Any, Protocol

import aiohttp
import httpx

from tsunagu.auth import ServiceTokenIssuer
from tsunagu.obs.context import current_request_id


class UpstreamError(Exception):
    """Another service answered with an error (its problem document is kept, minus nothing)."""

    def __init__(self, service: str, status: int, problem: dict[str, Any]) -> None:
        super().__init__(f"{service} answered {status} {problem.get('type', '')}")
        self.service = service
        self.status = status
        self.problem = problem


class UpstreamUnreachable(httpx.TransportError):
    """The other service could not be reached or dropped the connection (no answer)."""


class UpstreamTimeout(httpx.TimeoutException):
    """The other service did not answer within the client's timeout."""


# An idle pooled connection is dropped well before the serving side would close it
# (libs/service/app.py SERVER_KEEP_ALIVE_S): reusing a connection the server is closing at that
# moment fails the request ("server disconnected without sending a response").
CLIENT_KEEP_ALIVE_S = 4.0
MAX_CONNECTIONS = 100  # per client (one client per called service in each process)


class Transport(Protocol):
    """How a request travels: aiohttp in production; tests may hand requests to an app in
    process (:class:`HttpxTransport` over ``httpx.ASGITransport``)."""

    async def send(
        self, method: str, url: str, *, headers: dict[str, str], body: bytes | None, timeout_s: float
    ) -> tuple[int, str, bytes]: ...

    async def aclose(self) -> None: ...


class AiohttpTransport:
    """One aiohttp session (its connection pool), made on first use in the running loop."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            # a client kept across event loops (tests) starts a fresh pool in the new one
            connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS, keepalive_timeout=CLIENT_KEEP_ALIVE_S)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
            self._loop = loop
        return self._session

    async def send(
        self, method: str, url: str, *, headers: dict[str, str], body: bytes | None, timeout_s: float
    ) -> tuple[int, str, bytes]:
        try:
            async with self.session().request(
                method, url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_s)
            ) as response:
                return response.status, response.reason or "", await response.read()
        except TimeoutError as error:  # aiohttp's ServerTimeoutError is one too
            raise UpstreamTimeout(f"no answer within {timeout_s:g} s") from error
        except aiohttp.ClientError as error:
            raise UpstreamUnreachable(type(error).__name__) from error

    async def aclose(self) -> None:
        if (
            self._session is not None
            and not self._session.closed
            and self._loop is asyncio.get_running_loop()
        ):
            await self._session.close()
        self._session = None


class HttpxTransport:
    """Requests through an ``httpx.AsyncClient`` (e.g. one with ``ASGITransport``, in tests)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def send(
        self, method: str, url: str, *, headers: dict[str, str], body: bytes | None, timeout_s: float
    ) -> tuple[int, str, bytes]:
        response = await self.client.request(method, url, headers=headers, content=body, timeout=timeout_s)
        return response.status_code, response.reason_phrase, response.content

    async def aclose(self) -> None:
        await self.client.aclose()


class InternalClient:
    """An async client for ``service`` at ``base_url``, calling as ``issuer``'s service (a
    short-lived service token per audience, reused while valid) and passing the request id on."""

    def __init__(
        self,
        service: str,
        base_url: str,
        issuer: ServiceTokenIssuer | None,
        *,
        timeout_s: float = 10.0,
        transport: Transport | None = None,
    ) -> None:
        self.service = service
        self.base_url = base_url.rstrip("/")
        self.issuer = issuer  # None: the transport authenticates (tests)
        self.timeout_s = timeout_s
        self.transport: Transport = transport or AiohttpTransport()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        """Send a request; return the decoded JSON body or raise :class:`UpstreamError` (an
        answer with an error status), :class:`UpstreamTimeout` or :class:`UpstreamUnreachable`."""
        headers = {"Accept": "application/json"}
        if self.issuer is not None:
            headers["Authorization"] = f"Bearer {self.issuer.token_for(self.service)}"
        request_id = current_request_id()
        if request_id:
            headers["x-request-id"] = request_id
        body = None
        if json is not None:
            body = _dumps(json)
            headers["Content-Type"] = "application/json"
        url = self.base_url + path
        if params:
            url = str(httpx.URL(url, params={k: v for k, v in params.items() if v is not None}))
        status, reason, content = await self.transport.send(
            method, url, headers=headers, body=body, timeout_s=timeout_s or self.timeout_s
        )
        if status >= 400:
            try:
                problem = _loads(content)
            except ValueError:
                problem = None
            raise UpstreamError(
                self.service, status, problem if isinstance(problem, dict) else {"title": reason}
            )
        return _loads(content) if content else None

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def __aenter__(self) -> InternalClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _loads(content: bytes) -> Any:
    return json.loads(content)
