"""The internal client over real loopback HTTP: the service token and request id travel, JSON
and query parameters are encoded, an error answer is an UpstreamError with the problem document,
and a service that is down or too slow is an httpx-family transport error the callers catch."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import ec

from tsunagu.auth import ServiceTokenIssuer
from tsunagu.clients.internal import InternalClient, UpstreamError, UpstreamTimeout, UpstreamUnreachable
from tsunagu.obs import request_id_scope

seen: list[dict[str, Any]] = []


async def _echo(request: web.Request) -> web.Response:
    seen.append(
        {
            "auth": request.headers.get("Authorization", ""),
            "request_id": request.headers.get("x-request-id"),
            "query": dict(request.query),
            "body": await request.json() if request.can_read_body else None,
        }
    )
    return web.json_response({"ok": True, "n": len(seen)})


async def _problem(_request: web.Request) -> web.Response:
    problem = {"type": "urn:tsunagu:problem:unknown-key", "title": "no such key", "status": 404}
    return web.json_response(problem, status=404, content_type="application/problem+json")


async def _broken(_request: web.Request) -> web.Response:
    return web.Response(status=502, text="<html>bad gateway</html>")


async def _slow(_request: web.Request) -> web.Response:
    await asyncio.sleep(5)
    return web.json_response({})


async def _empty(_request: web.Request) -> web.Response:
    return web.Response(status=204)


@pytest.fixture
async def server() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/echo", _echo)
    app.router.add_get("/problem", _problem)
    app.router.add_get("/broken", _broken)
    app.router.add_get("/slow", _slow)
    app.router.add_delete("/empty", _empty)
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    seen.clear()
    try:
        yield str(test_server.make_url("")).rstrip("/")
    finally:
        await test_server.close()


def _issuer() -> ServiceTokenIssuer:
    return ServiceTokenIssuer("idp", ec.generate_private_key(ec.SECP256R1()))


async def test_token_request_id_json_and_parameters_travel(server: str):
    async with InternalClient("signer", server, _issuer()) as client:
        with request_id_scope(None) as request_id:
            answer = await client.request(
                "POST", "/echo", json={"名前": "値", "n": 1}, params={"a": "x y", "b": None}
            )
        again = await client.request("GET", "/echo")
        assert await client.request("DELETE", "/empty") is None
    assert answer == {"ok": True, "n": 1} and again["n"] == 2
    first, second = seen
    assert first["auth"].startswith("Bearer ey") and first["auth"] == second["auth"]  # reused while valid
    assert first["request_id"] == request_id and second["request_id"] is None
    assert first["query"] == {"a": "x y"} and first["body"] == {"名前": "値", "n": 1}


async def test_an_error_answer_carries_the_problem_document(server: str):
    async with InternalClient("signer", server, _issuer()) as client:
        with pytest.raises(UpstreamError) as problem:
            await client.request("GET", "/problem")
        with pytest.raises(UpstreamError) as broken:
            await client.request("GET", "/broken")
    assert (problem.value.status, problem.value.problem["type"]) == (404, "urn:tsunagu:problem:unknown-key")
    assert (broken.value.status, broken.value.problem) == (502, {"title": "Bad Gateway"})


async def test_a_service_down_or_too_slow_is_a_transport_error(server: str):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    async with InternalClient("ca", closed, _issuer()) as client:
        with pytest.raises(UpstreamUnreachable) as down:
            await client.request("GET", "/echo")
    assert isinstance(down.value, httpx.TransportError)
    async with InternalClient("ca", server, _issuer(), timeout_s=0.3) as client:
        with pytest.raises(UpstreamTimeout) as slow:
            await client.request("GET", "/slow")
        assert await client.request("GET", "/echo", timeout_s=5)  # a per-call timeout, same pool
    assert isinstance(slow.value, httpx.TimeoutException)
