"""A relying party for the idp tests: registered through the admin API, holding its own ES256
key for private_key_jwt and request objects, doing PKCE, and a "browser" that follows the login."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey

from tsunagu.wallet import Enrolled, decide_login, fetch_login
from tsunagu.wallet.enroll import Credential

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class RelyingParty:
    client_id: str
    key: ECKey
    redirect_uri: str
    metadata: dict[str, Any]
    secret: str | None = None

    def assertion(self, audience: str, **extra: Any) -> str:
        now = int(time.time())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": audience,
            "iat": now,
            "exp": now + 60,
            "jti": secrets.token_urlsafe(16),
            **extra,
        }
        return jwt.encode({"alg": "ES256", "kid": self.key.kid}, claims, self.key)

    def auth_form(self, audience: str) -> dict[str, str]:
        return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": self.assertion(audience)}

    def request_object(self, issuer: str, parameters: dict[str, Any], **extra: Any) -> str:
        now = int(time.time())
        claims = {"iss": self.client_id, "aud": issuer, "iat": now, "exp": now + 300, **parameters, **extra}
        return jwt.encode({"alg": "ES256", "kid": self.key.kid}, claims, self.key)


@dataclass
class Pkce:
    verifier: str = field(default_factory=lambda: secrets.token_urlsafe(48))

    @property
    def challenge(self) -> str:
        digest = hashlib.sha256(self.verifier.encode()).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def ensure_tenant(admin: httpx.AsyncClient, auth: httpx.Auth, tenant: str = "ebetsu") -> None:
    response = await admin.post(
        "/admin/v1/tenants", json={"id": tenant, "name_ja": "江別市", "name_en": "Ebetsu City"}, auth=auth
    )
    assert response.status_code in (201, 409), response.text


async def register_rp(
    admin: httpx.AsyncClient,
    auth: httpx.Auth,
    *,
    tenant: str = "ebetsu",
    redirect_uri: str = "https://rp.example/cb",
    **metadata: Any,
) -> RelyingParty:
    await ensure_tenant(admin, auth, tenant)
    key = ECKey.generate_key("P-256", parameters={"use": "sig", "alg": "ES256"}, private=True)
    key.ensure_kid()
    body: dict[str, Any] = {
        "redirect_uris": [redirect_uri],
        "client_name": "Ebetsu health app",
        "client_name#ja": "江別市 健康アプリ",
        "client_name#en": "Ebetsu health app",
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": {"keys": [key.as_dict(private=False)]},
        **metadata,
    }
    response = await admin.post(f"/admin/v1/tenants/{tenant}/clients", json=body, auth=auth)
    assert response.status_code == 201, response.text
    registered = response.json()
    return RelyingParty(
        registered["client_id"], key, redirect_uri, registered, registered.get("client_secret")
    )


def authorization_parameters(rp: RelyingParty, pkce: Pkce, **overrides: Any) -> dict[str, str]:
    parameters = {
        "response_type": "code",
        "client_id": rp.client_id,
        "redirect_uri": rp.redirect_uri,
        "scope": "openid",
        "state": secrets.token_urlsafe(8),
        "nonce": secrets.token_urlsafe(8),
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
        **overrides,
    }
    return {k: v for k, v in parameters.items() if v is not None}


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def start_login(browser: httpx.AsyncClient, parameters: dict[str, str]) -> str:
    """The browser's authorization request; returns the login transaction id."""
    response = await browser.get("/authorize?" + urlencode(parameters))
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith("/login/"), location
    return location.removeprefix("/login/")


async def wallet_decides(
    wallet: httpx.AsyncClient, tx: str, credential: Credential, *, approve: bool = True
) -> str:
    transaction = await fetch_login(wallet, tx)
    return await decide_login(wallet, transaction, credential, approve=approve)


async def complete(browser: httpx.AsyncClient, tx: str) -> httpx.Response:
    return await browser.get(f"/login/{tx}/complete")


async def browser_login(
    browser: httpx.AsyncClient,
    wallet: httpx.AsyncClient,
    citizen: Enrolled,
    parameters: dict[str, str],
    *,
    approve: bool = True,
    credential: Credential | None = None,
) -> dict[str, str]:
    """authorize → wallet decides → complete; the query the RP receives at its redirect URI."""
    tx = await start_login(browser, parameters)
    await wallet_decides(wallet, tx, credential or citizen.authentication, approve=approve)
    response = await complete(browser, tx)
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith(parameters["redirect_uri"]), location
    return query_of(location)


async def exchange(
    client: httpx.AsyncClient, issuer: str, rp: RelyingParty, code: str, pkce: Pkce, **extra: str
) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": rp.redirect_uri,
        "code_verifier": pkce.verifier,
        **rp.auth_form(issuer + "/token"),
        **extra,
    }
    return await client.post("/token", data=form)
