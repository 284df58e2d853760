"""CIBA (poll and ping): a counter names the citizen by the sub it knows; the request appears in
that citizen's wallet (signed inbox call), the wallet decides, the counter gets its tokens."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.idp.conftest import ISSUER, IdpHarness, enroll_citizen
from tests.idp.rp import Pkce, RelyingParty, authorization_parameters, browser_login, exchange, register_rp
from tsunagu.devstack.ports import free_port
from tsunagu.wallet import Enrolled, decide_login, signed_decision

CIBA = "urn:openid:params:grant-type:ciba"
SECTOR = "https://rp.example/sector.json"


@pytest.fixture
async def browser(idp: IdpHarness) -> AsyncIterator[httpx.AsyncClient]:
    async with idp.new_client() as client:
        yield client


async def known_sub(idp: IdpHarness, browser: httpx.AsyncClient, citizen: Enrolled) -> str:
    """The sub the sector already knows: one browser login of an RP of the same sector."""
    web_rp = await register_rp(idp.client, idp.auth(), sector_identifier_uri=SECTOR)
    pkce = Pkce()
    async with idp.new_client() as wallet:
        answer = await browser_login(browser, wallet, citizen, authorization_parameters(web_rp, pkce))
    tokens = (await exchange(idp.client, ISSUER, web_rp, answer["code"], pkce)).json()
    keys = KeySet.import_key_set((await idp.client.get("/jwks")).json())
    return str(jwt.decode(tokens["id_token"], keys).claims["sub"])


async def counter(idp: IdpHarness, **metadata: Any) -> RelyingParty:
    return await register_rp(
        idp.client,
        idp.auth(),
        grant_types=[CIBA],
        redirect_uri="https://rp.example/unused",
        redirect_uris=[],
        sector_identifier_uri=SECTOR,
        backchannel_token_delivery_mode=metadata.pop("mode", "poll"),
        **metadata,
    )


async def inbox(idp: IdpHarness, citizen: Enrolled) -> list[dict[str, Any]]:
    request = signed_decision(citizen.authentication, audience=ISSUER, tx="*", challenge=None)
    response = await idp.client.post("/v1/wallet/requests", json={"request": request})
    assert response.status_code == 200, response.text
    return list(response.json())


async def poll(idp: IdpHarness, rp: RelyingParty, auth_req_id: str) -> httpx.Response:
    form = {"grant_type": CIBA, "auth_req_id": auth_req_id, **rp.auth_form(ISSUER + "/token")}
    return await idp.client.post("/token", data=form)


async def test_poll_mode_from_request_to_tokens(
    idp: IdpHarness, browser: httpx.AsyncClient, citizen: Enrolled
) -> None:
    sub = await known_sub(idp, browser, citizen)
    rp = await counter(idp)
    form = {"scope": "openid", "login_hint": sub, "binding_message": "窓口 3番", **rp.auth_form(ISSUER)}
    started = await idp.client.post("/bc-authorize", data=form)
    assert started.status_code == 200, started.text
    body = started.json()
    assert body["expires_in"] > 0 and body["interval"] > 0
    auth_req_id = body["auth_req_id"]
    pending = await poll(idp, rp, auth_req_id)
    assert pending.status_code == 400 and pending.json()["error"] == "authorization_pending"
    too_soon = await poll(idp, rp, auth_req_id)
    assert too_soon.json()["error"] == "slow_down"

    listed = await inbox(idp, citizen)
    request = next(r for r in listed if r["tx"] == auth_req_id)
    assert request["binding_message"] == "窓口 3番" and request["kind"] == "ciba"
    # Somebody else's wallet cannot approve it.
    other = await enroll_citizen(idp.stack, name="別人 次郎")
    assert all(r["tx"] != auth_req_id for r in await inbox(idp, other))
    refused = await idp.client.post(
        f"/v1/login-transactions/{auth_req_id}/decision",
        json={
            "approval": signed_decision(
                other.authentication, audience=ISSUER, tx=auth_req_id, challenge=request["challenge"]
            )
        },
    )
    assert refused.status_code == 400
    assert await decide_login(idp.client, request, citizen.authentication) == "approved"

    tokens = await poll(idp, rp, auth_req_id)
    assert tokens.status_code == 200, tokens.text
    keys = KeySet.import_key_set((await idp.client.get("/jwks")).json())
    claims = jwt.decode(tokens.json()["id_token"], keys).claims
    assert claims["sub"] == sub and claims["aud"] == rp.client_id
    assert (await poll(idp, rp, auth_req_id)).json()["error"] == "invalid_grant"
    events = [e for e in await idp.events() if e["type"] == "tsunagu.idp.login.succeeded"]
    assert events[-1]["data"]["kind"] == "ciba"


async def test_denied_unknown_and_bad_requests(
    idp: IdpHarness, browser: httpx.AsyncClient, citizen: Enrolled
) -> None:
    sub = await known_sub(idp, browser, citizen)
    rp = await counter(idp)
    auth = rp.auth_form

    async def start(**form: str) -> httpx.Response:
        return await idp.client.post("/bc-authorize", data={"scope": "openid", **form, **auth(ISSUER)})

    assert (await start(login_hint="nobody-we-know")).json()["error"] == "unknown_user_id"
    assert (await start()).json()["error"] == "invalid_request"
    assert (await start(login_hint=sub, id_token_hint="x.y.z")).json()["error"] == "invalid_request"
    assert (await start(login_hint=sub, binding_message="x" * 100)).json()[
        "error"
    ] == "invalid_binding_message"
    no_openid = await idp.client.post(
        "/bc-authorize", data={"scope": "profile", "login_hint": sub, **auth(ISSUER)}
    )
    assert no_openid.json()["error"] == "invalid_scope"
    unauthenticated = await idp.client.post("/bc-authorize", data={"scope": "openid", "login_hint": sub})
    assert unauthenticated.status_code == 401
    web_rp = await register_rp(idp.client, idp.auth(), sector_identifier_uri=SECTOR)
    not_ciba = await idp.client.post(
        "/bc-authorize", data={"scope": "openid", "login_hint": sub, **web_rp.auth_form(ISSUER)}
    )
    assert not_ciba.json()["error"] == "unauthorized_client"

    auth_req_id = (await start(login_hint=sub)).json()["auth_req_id"]
    request = next(r for r in await inbox(idp, citizen) if r["tx"] == auth_req_id)
    assert await decide_login(idp.client, request, citizen.authentication, approve=False) == "denied"
    assert (await poll(idp, rp, auth_req_id)).json()["error"] == "access_denied"
    # Another client cannot redeem this auth_req_id.
    other = await counter(idp)
    assert (await poll(idp, other, auth_req_id)).json()["error"] == "invalid_grant"


async def test_ping_mode_calls_the_client_back(
    idp: IdpHarness, browser: httpx.AsyncClient, citizen: Enrolled
) -> None:
    sub = await known_sub(idp, browser, citizen)
    received: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()

    async def notified(request: web.Request) -> web.Response:
        await received.put((request.headers.get("Authorization", ""), json.loads(await request.text())))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/ciba", notified)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        rp = await counter(
            idp, mode="ping", backchannel_client_notification_endpoint=f"http://127.0.0.1:{port}/ciba"
        )
        missing_token = await idp.client.post(
            "/bc-authorize", data={"scope": "openid", "login_hint": sub, **rp.auth_form(ISSUER)}
        )
        assert missing_token.json()["error"] == "invalid_request"
        started = await idp.client.post(
            "/bc-authorize",
            data={
                "scope": "openid",
                "login_hint": sub,
                "client_notification_token": "rp-bearer-123",
                **rp.auth_form(ISSUER),
            },
        )
        auth_req_id = started.json()["auth_req_id"]
        request = next(r for r in await inbox(idp, citizen) if r["tx"] == auth_req_id)
        await decide_login(idp.client, request, citizen.authentication)
        authorization, body = await asyncio.wait_for(received.get(), 15)
        assert authorization == "Bearer rp-bearer-123" and body == {"auth_req_id": auth_req_id}
        assert (await poll(idp, rp, auth_req_id)).status_code == 200
    finally:
        await runner.cleanup()
