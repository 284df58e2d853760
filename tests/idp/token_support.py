"""Helpers of the token, DPoP and discovery tests: codes issued in-process (as the login part
does), token requests, DPoP proofs, and independent verification of our JWTs against /jwks."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from tests.idp.conftest import ISSUER, IdpHarness
from tests.idp.rp import Pkce, RelyingParty, register_rp

USER_NUMBER = "1234567890123456"
AMR = ["hwk", "user", "x509"]
ACR = "urn:tsunagu:acr:jpki-proofed"


async def new_rp(idp: IdpHarness, **metadata: Any) -> RelyingParty:
    return await register_rp(idp.client, idp.auth("operator"), **metadata)


async def issue_code(
    idp: IdpHarness,
    rp: RelyingParty,
    pkce: Pkce,
    *,
    scope: str = "openid",
    nonce: str | None = "nonce-1",
    dpop_jkt: str | None = None,
    session_id: str | None = None,
    certificate_serial: str = "0a1b2c",
    user_number: str = USER_NUMBER,
    claims: dict[str, Any] | None = None,
    auth_time: datetime | None = None,
) -> str:
    """A code as the login part issues it (TokenService.issue_code in the caller's transaction)."""
    client = await idp.services.clients.get(rp.client_id)
    assert client is not None
    async with idp.app.state.runtime.db.transaction() as session:
        return str(
            await idp.services.tokens.issue_code(
                session,
                client=client,
                user_number=user_number,
                session_id=session_id,
                certificate_serial=certificate_serial,
                scope=scope,
                claims=claims,
                authorization_details=None,
                auth_time=auth_time or datetime.now(UTC).replace(microsecond=0),
                acr=ACR,
                amr=AMR,
                redirect_uri=rp.redirect_uri,
                code_challenge=pkce.challenge,
                nonce=nonce,
                dpop_jkt=dpop_jkt,
            )
        )


def token_form(rp: RelyingParty, grant_type: str, **parameters: str | None) -> dict[str, str]:
    form = {"grant_type": grant_type, **{k: v for k, v in parameters.items() if v is not None}}
    if rp.metadata.get("token_endpoint_auth_method") == "none":
        form["client_id"] = rp.client_id
    else:
        form.update(rp.auth_form(ISSUER + "/token"))
    return form


async def exchange(
    idp: IdpHarness,
    rp: RelyingParty,
    code: str,
    pkce: Pkce,
    *,
    dpop: str | None = None,
    **extra: str | None,
) -> httpx.Response:
    parameters: dict[str, str | None] = {
        "code": code,
        "redirect_uri": rp.redirect_uri,
        "code_verifier": pkce.verifier,
        **extra,
    }
    headers = {"DPoP": dpop} if dpop else {}
    return await idp.client.post(
        "/token", data=token_form(rp, "authorization_code", **parameters), headers=headers
    )


async def refresh(
    idp: IdpHarness, rp: RelyingParty, refresh_token: str, *, dpop: str | None = None, **extra: str | None
) -> httpx.Response:
    headers = {"DPoP": dpop} if dpop else {}
    return await idp.client.post(
        "/token",
        data=token_form(rp, "refresh_token", refresh_token=refresh_token, **extra),
        headers=headers,
    )


async def introspect(idp: IdpHarness, rp: RelyingParty, token: str) -> dict[str, Any]:
    form = {"token": token, **rp.auth_form(ISSUER + "/introspect")}
    response = await idp.client.post("/introspect", data=form)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    answer: dict[str, Any] = response.json()
    return answer


async def revoke(idp: IdpHarness, rp: RelyingParty, token: str) -> httpx.Response:
    return await idp.client.post("/revoke", data={"token": token, **rp.auth_form(ISSUER + "/revoke")})


async def key_set(idp: IdpHarness) -> KeySet:
    response = await idp.client.get("/jwks")
    assert response.status_code == 200, response.text
    return KeySet.import_key_set(response.json())


async def verified(idp: IdpHarness, token: str, *, typ: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of one of our JWTs, checked with joserfc against /jwks only."""
    decoded = jwt.decode(token, await key_set(idp), algorithms=["ES256", "RS256"])
    assert decoded.header["typ"] == typ
    return dict(decoded.header), dict(decoded.claims)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def dpop_key() -> ECKey:
    return ECKey.generate_key("P-256", private=True)


def dpop_proof(
    key: Any,
    method: str,
    url: str,
    *,
    access_token: str | None = None,
    iat: float | None = None,
    jti: str | None = None,
    typ: str = "dpop+jwt",
    alg: str = "ES256",
    jwk: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    payload: dict[str, Any] = {
        "htm": method,
        "htu": url,
        "iat": int(iat if iat is not None else time.time()),
        "jti": jti or secrets.token_urlsafe(16),
        **claims,
    }
    if access_token is not None:
        payload["ath"] = b64url(hashlib.sha256(access_token.encode()).digest())
    header = {"typ": typ, "alg": alg, "jwk": jwk or key.as_dict(private=False)}
    return jwt.encode(header, payload, key, algorithms=[alg])
