"""The code flow with a wallet login, in-process idp on the real stack (signer, CA, jlis-sync as
processes): authorize → login page → wallet approval signed with the authentication certificate →
complete → code → tokens; and every way a request or a login can go wrong."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.idp.conftest import ISSUER, IdpHarness
from tests.idp.rp import (
    Pkce,
    RelyingParty,
    authorization_parameters,
    browser_login,
    complete,
    exchange,
    query_of,
    register_rp,
    start_login,
    wallet_decides,
)
from tsunagu.wallet import Enrolled, WalletError


@pytest.fixture
async def browser(idp: IdpHarness) -> AsyncIterator[httpx.AsyncClient]:
    async with idp.new_client() as client:
        yield client


@pytest.fixture
async def wallet(idp: IdpHarness) -> AsyncIterator[httpx.AsyncClient]:
    async with idp.new_client() as client:
        yield client


@pytest.fixture
async def rp(idp: IdpHarness) -> RelyingParty:
    return await register_rp(idp.client, idp.auth())


async def verify(idp: IdpHarness, token: str) -> dict[str, Any]:
    keys = KeySet.import_key_set((await idp.client.get("/jwks")).json())
    return dict(jwt.decode(token, keys).claims)


async def test_a_wallet_approved_login_ends_with_tokens_for_a_pairwise_subject(
    idp: IdpHarness,
    browser: httpx.AsyncClient,
    wallet: httpx.AsyncClient,
    rp: RelyingParty,
    citizen: Enrolled,
) -> None:
    pkce = Pkce()
    parameters = authorization_parameters(rp, pkce, scope="openid profile")
    tx = await start_login(browser, parameters)
    page = await browser.get(f"/login/{tx}")
    assert page.status_code == 200
    assert "スマートフォンでログイン" in page.text and "江別市 健康アプリ" in page.text
    assert "<svg" in page.text and "tsunagu://login?tx=" in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert (await browser.get(f"/login/{tx}/status")).json() == {"state": "pending"}
    # Not yet decided: completing sends the browser back to the page.
    assert (await complete(browser, tx)).headers["location"] == f"/login/{tx}"

    seen = (await wallet.get(f"/v1/login-transactions/{tx}")).json()
    assert seen["client"]["name_ja"] == "江別市 健康アプリ"
    assert seen["claims"] == ["name", "birthdate", "gender"]
    assert seen["audience"] == ISSUER
    assert await wallet_decides(wallet, tx, citizen.authentication) == "approved"
    assert (await browser.get(f"/login/{tx}/status")).json() == {"state": "approved"}

    done = await complete(browser, tx)
    assert done.status_code == 303
    answer = query_of(done.headers["location"])
    assert answer["state"] == parameters["state"] and answer["iss"] == ISSUER
    tokens = await exchange(idp.client, ISSUER, rp, answer["code"], pkce)
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    claims = await verify(idp, body["id_token"])
    assert claims["iss"] == ISSUER and claims["aud"] == rp.client_id
    assert claims["nonce"] == parameters["nonce"]
    assert claims["sub"] != citizen.user_number and citizen.user_number not in json.dumps(claims)
    assert claims["acr"] == "urn:tsunagu:acr:jpki-proofed"
    assert claims["amr"] == ["hwk", "user", "x509"]
    assert "auth_time" in claims and "sid" in claims
    # No consent service: nothing beyond sub leaves, although profile was asked for.
    userinfo = await idp.client.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert userinfo.status_code == 200, userinfo.text
    assert userinfo.json() == {"sub": claims["sub"]}

    # The same transaction cannot be completed twice (the binding cookie is gone too); the code
    # cannot be used twice.
    assert (await complete(browser, tx)).status_code in (404, 409)
    again = await exchange(idp.client, ISSUER, rp, answer["code"], pkce)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"

    events = [e["type"] for e in await idp.events()]
    assert "tsunagu.idp.login.succeeded" in events
    succeeded = next(e for e in await idp.events() if e["type"] == "tsunagu.idp.login.succeeded")
    assert succeeded["data"]["user_number"] == citizen.user_number
    assert succeeded["data"]["certificate_serial"] == citizen.authentication.serial


async def test_the_session_logs_the_citizen_in_again_without_the_wallet(
    idp: IdpHarness,
    browser: httpx.AsyncClient,
    wallet: httpx.AsyncClient,
    rp: RelyingParty,
    citizen: Enrolled,
) -> None:
    first = await browser_login(browser, wallet, citizen, authorization_parameters(rp, Pkce()))
    assert "code" in first
    second = await browser.get("/authorize?" + urlencode(authorization_parameters(rp, Pkce())))
    assert second.status_code == 303 and "code=" in second.headers["location"]
    # prompt=login and max_age=0 insist on the wallet.
    for extra in ({"prompt": "login"}, {"max_age": "0"}):
        again = await browser.get("/authorize?" + urlencode(authorization_parameters(rp, Pkce(), **extra)))
        assert again.headers["location"].startswith("/login/")
    # prompt=none without a session: login_required back to the RP.
    async with idp.new_client() as stranger:
        silent = await stranger.get(
            "/authorize?" + urlencode(authorization_parameters(rp, Pkce(), prompt="none"))
        )
        answer = query_of(silent.headers["location"])
        assert answer["error"] == "login_required" and answer["iss"] == ISSUER


async def test_a_declined_login_returns_access_denied(
    idp: IdpHarness,
    browser: httpx.AsyncClient,
    wallet: httpx.AsyncClient,
    rp: RelyingParty,
    citizen: Enrolled,
) -> None:
    parameters = authorization_parameters(rp, Pkce())
    answer = await browser_login(browser, wallet, citizen, parameters, approve=False)
    assert answer["error"] == "access_denied" and answer["state"] == parameters["state"]
    failed = [e for e in await idp.events() if e["type"] == "tsunagu.idp.login.failed"]
    assert failed[-1]["data"]["reason"] == "denied"


async def test_a_decided_transaction_cannot_be_decided_again_nor_completed_by_another_browser(
    idp: IdpHarness,
    browser: httpx.AsyncClient,
    wallet: httpx.AsyncClient,
    rp: RelyingParty,
    citizen: Enrolled,
) -> None:
    tx = await start_login(browser, authorization_parameters(rp, Pkce()))
    transaction = (await wallet.get(f"/v1/login-transactions/{tx}")).json()
    assert await wallet_decides(wallet, tx, citizen.authentication) == "approved"
    with pytest.raises(WalletError) as closed:
        await wallet_decides(wallet, tx, citizen.authentication, approve=False)
    assert closed.value.status == 409
    # A browser without the binding cookie (a phished link) gets nothing.
    async with idp.new_client() as other:
        assert (await other.get(f"/login/{tx}/complete")).status_code == 404
        assert (await other.get(f"/login/{tx}")).status_code == 404
    assert transaction["tx"] == tx


async def test_an_approval_replayed_on_a_new_transaction_is_refused(
    idp: IdpHarness,
    browser: httpx.AsyncClient,
    wallet: httpx.AsyncClient,
    rp: RelyingParty,
    citizen: Enrolled,
) -> None:
    from tsunagu.wallet import signed_decision

    tx = await start_login(browser, authorization_parameters(rp, Pkce()))
    seen = (await wallet.get(f"/v1/login-transactions/{tx}")).json()
    approval = signed_decision(citizen.authentication, audience=ISSUER, tx=tx, challenge=seen["challenge"])
    first = await wallet.post(f"/v1/login-transactions/{tx}/decision", json={"approval": approval})
    assert first.status_code == 200
    other_tx = await start_login(browser, authorization_parameters(rp, Pkce()))
    replay = await wallet.post(f"/v1/login-transactions/{other_tx}/decision", json={"approval": approval})
    assert replay.status_code == 400 and replay.json()["type"].endswith("invalid-approval")
    assert (await wallet.get(f"/v1/login-transactions/{other_tx}")).status_code == 200  # still pending


async def test_requests_with_an_untrusted_redirect_get_an_error_page_not_a_redirect(
    idp: IdpHarness, browser: httpx.AsyncClient, rp: RelyingParty
) -> None:
    pkce = Pkce()
    bad = [
        authorization_parameters(rp, pkce, redirect_uri="https://evil.example/cb"),
        authorization_parameters(rp, pkce, redirect_uri=rp.redirect_uri + "/"),
        authorization_parameters(rp, pkce, redirect_uri=None),
        authorization_parameters(rp, pkce, client_id="no-such-client"),
        authorization_parameters(rp, pkce, request_uri="urn:ietf:params:oauth:request_uri:nope"),
    ]
    before = await idp.rows("login_transaction")
    for parameters in bad:
        response = await browser.get("/authorize?" + urlencode(parameters))
        assert response.status_code == 400, (parameters, response.status_code)
        assert "location" not in response.headers
        assert response.headers["content-type"].startswith("text/html")
    assert await idp.rows("login_transaction") == before


async def test_protocol_errors_go_back_to_the_client_with_state_and_iss(
    idp: IdpHarness, browser: httpx.AsyncClient, rp: RelyingParty
) -> None:
    pkce = Pkce()
    cases = {
        "invalid_request": [
            {"code_challenge": None},
            {"code_challenge_method": "plain"},
            {"code_challenge_method": None},
            {"code_challenge": "too-short"},
            {"prompt": "none login"},
            {"max_age": "soon"},
            {"claims": "{not json"},
            {"claims": json.dumps({"elsewhere": {}})},
            {"response_mode": "fragment"},
        ],
        "unsupported_response_type": [{"response_type": "token"}, {"response_type": "code id_token"}],
        "invalid_scope": [{"scope": "profile"}, {"scope": "openid admin"}, {"scope": "openid user_number"}],
        "invalid_authorization_details": [
            {
                "authorization_details": json.dumps(
                    [{"type": "tsunagu_data_access", "items": ["health.allergy"], "purpose": "care"}]
                )
            }
        ],
    }
    before = await idp.rows("login_transaction")
    for error, variants in cases.items():
        for variant in variants:
            parameters = authorization_parameters(rp, pkce, **variant)
            response = await browser.get("/authorize?" + urlencode(parameters))
            assert response.status_code == 303, (variant, response.text)
            answer = query_of(response.headers["location"])
            assert response.headers["location"].startswith(rp.redirect_uri)
            assert answer["error"] == error, (variant, answer)
            assert answer["state"] == parameters["state"] and answer["iss"] == ISSUER
    assert await idp.rows("login_transaction") == before


async def test_pushed_and_signed_requests(
    idp: IdpHarness, browser: httpx.AsyncClient, wallet: httpx.AsyncClient, citizen: Enrolled
) -> None:
    rp = await register_rp(idp.client, idp.auth(), require_pushed_authorization_requests=True)
    pkce = Pkce()
    parameters = authorization_parameters(rp, pkce)
    # This client must push: a plain request gets the error page.
    assert (await browser.get("/authorize?" + urlencode(parameters))).status_code == 400
    pushed = await idp.client.post("/par", data={**parameters, **rp.auth_form(ISSUER)})
    assert pushed.status_code == 201, pushed.text
    request_uri = pushed.json()["request_uri"]
    assert request_uri.startswith("urn:ietf:params:oauth:request_uri:") and pushed.json()["expires_in"] > 0
    login = {
        "client_id": rp.client_id,
        "request_uri": request_uri,
        "redirect_uri": parameters["redirect_uri"],
    }
    answer = await browser_login(browser, wallet, citizen, login)
    assert answer["state"] == parameters["state"]
    assert (await exchange(idp.client, ISSUER, rp, answer["code"], pkce)).status_code == 200
    # The reference is single use.
    assert (await browser.get("/authorize?" + urlencode(login))).status_code == 400
    # PAR needs client authentication, and a pushed request is validated like any other.
    unauthenticated = await idp.client.post("/par", data=parameters)
    assert unauthenticated.status_code == 401 and unauthenticated.json()["error"] == "invalid_client"
    unsafe = await idp.client.post(
        "/par", data={**parameters, "code_challenge_method": "plain", **rp.auth_form(ISSUER)}
    )
    assert unsafe.status_code == 400 and unsafe.json()["error"] == "invalid_request"

    # JAR: the parameters inside the signed request object count, not those beside it.
    plain_rp = await register_rp(idp.client, idp.auth())
    pkce = Pkce()
    inner = authorization_parameters(plain_rp, pkce)
    signed = {
        "client_id": plain_rp.client_id,
        "request": plain_rp.request_object(ISSUER, inner),
        "scope": "openid",
        "response_type": "code",
        "redirect_uri": "https://evil.example/cb",
    }
    async with idp.new_client() as fresh:  # no IdP session yet: the wallet is asked
        answer = await browser_login(
            fresh, wallet, citizen, {**signed, "redirect_uri": plain_rp.redirect_uri}
        )
    assert answer["state"] == inner["state"]
    forged = {**signed, "request": rp.request_object(ISSUER, inner)}  # signed by another client's key
    assert (await browser.get("/authorize?" + urlencode(forged))).status_code == 400
    expired = {**signed, "request": plain_rp.request_object(ISSUER, inner, exp=1)}
    assert (await browser.get("/authorize?" + urlencode(expired))).status_code == 400
    oversized = {**signed, "request": "x" * 20_000}
    assert (await browser.get("/authorize?" + urlencode(oversized))).status_code in (400, 413, 414)
