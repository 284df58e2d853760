"""Interop: a relying party we did not write — Authlib's OAuth 2.0 / OpenID Connect client — logs a
citizen in at the idp process of the dev stack over real HTTP, and checks what it gets by Authlib's
own rules.

discovery → a confidential ``private_key_jwt`` client registered through the admin API (ES256 key
held here) → Authlib's authorization URL (PKCE S256, nonce, state) → a "browser" (httpx keeping
cookies) follows it to the login page → the wallet SDK approves with the citizen's authentication
certificate → the browser completes and lands on the redirect URI with ``code``, ``state`` and
``iss`` (RFC 9207) → Authlib's ``fetch_token`` with ``private_key_jwt`` → the ID token verified with
the keys of ``jwks_uri`` and validated by ``authlib.oidc.core.CodeIDToken`` → userinfo with
Authlib → refresh with rotation (and reuse detection) → a relying party of another sector gets
another ``sub`` for the same citizen.

The ID token is checked as Authlib's own OpenID client does it (``AsyncOpenIDMixin.parse_id_token``:
``joserfc`` decodes with the JWK set and the discovered algorithms, then ``CodeIDToken`` validates);
``authlib.jose`` is deprecated in Authlib 1.9 in favour of ``joserfc``. The two-minute
``private_key_jwt`` assertion is the sample apps' (``examples/kit/oidc.py``): Authlib's default
lives an hour, which the idp refuses.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from authlib.oidc.core import CodeIDToken, UserInfo
from joserfc import jwt
from joserfc.errors import InvalidClaimError
from joserfc.jwk import ECKey, KeySet
from joserfc.jws import JWSRegistry

from examples.kit.oidc import ShortLivedPrivateKeyJWT
from tests.idp.conftest import service_auth
from tsunagu.devstack.stack import RunningStack
from tsunagu.wallet import Enrolled, decide_login, fetch_login

MAX_AGE_S = 600
LEEWAY_S = 120  # Authlib's parse_id_token default


@dataclass
class Rp:
    client_id: str
    key: ECKey
    redirect_uri: str
    registered: dict[str, Any]


@pytest.fixture
async def idp_url(idp_platform: RunningStack) -> str:
    return idp_platform.urls["idp"]


@pytest.fixture
async def http(idp_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


@pytest.fixture
async def discovery(http: httpx.AsyncClient, idp_url: str) -> dict[str, Any]:
    response = await http.get(f"{idp_url}/.well-known/openid-configuration")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return dict(response.json())


@pytest.fixture
async def register(idp_platform: RunningStack, idp_url: str):  # type: ignore[no-untyped-def]
    """Registers clients through the admin API (operator service token) in a tenant of this test."""
    tenant = f"interop-{secrets.token_hex(4)}"
    async with httpx.AsyncClient(
        base_url=idp_url, auth=service_auth(idp_platform, "operator", "idp"), timeout=30
    ) as admin:
        created = await admin.post(
            "/admin/v1/tenants", json={"id": tenant, "name_ja": "江別市", "name_en": "Ebetsu City"}
        )
        assert created.status_code == 201, created.text
        assert created.json()["id"] == tenant

        async def register_client(redirect_uri: str, name: str) -> Rp:
            key = ECKey.generate_key("P-256", parameters={"use": "sig", "alg": "ES256"}, private=True)
            key.ensure_kid()
            response = await admin.post(
                f"/admin/v1/tenants/{tenant}/clients",
                json={
                    "redirect_uris": [redirect_uri],
                    "client_name": name,
                    "grant_types": ["authorization_code", "refresh_token"],
                    "token_endpoint_auth_method": "private_key_jwt",
                    "token_endpoint_auth_signing_alg": "ES256",
                    "jwks": {"keys": [key.as_dict(private=False)]},
                },
            )
            assert response.status_code == 201, response.text
            registered = response.json()
            assert registered["token_endpoint_auth_method"] == "private_key_jwt"
            assert "client_secret" not in registered
            assert registered["sector_identifier"] == urlsplit(redirect_uri).hostname
            return Rp(registered["client_id"], key, redirect_uri, registered)

        yield register_client


def authlib_client(discovery: dict[str, Any], rp: Rp, auth: PrivateKeyJWT | None = None) -> AsyncOAuth2Client:
    """Authlib's client for ``rp``, authenticating with ``private_key_jwt`` (ES256)."""
    client = AsyncOAuth2Client(
        client_id=rp.client_id,
        client_secret=rp.key,  # private_key_jwt: Authlib takes the private key here
        token_endpoint_auth_method="private_key_jwt",
        scope="openid",
        redirect_uri=rp.redirect_uri,
        code_challenge_method="S256",
        token_endpoint=discovery["token_endpoint"],
        timeout=30,
    )
    client.register_client_auth_method(
        auth or ShortLivedPrivateKeyJWT(discovery["token_endpoint"], alg="ES256")
    )
    return client


async def wallet_approved_login(idp_url: str, authorization_url: str, citizen: Enrolled) -> str:
    """A browser (httpx with its cookie jar) follows the authorization URL to the login page, the
    wallet approves over HTTP, the browser completes: the redirect it is sent to."""
    async with (
        httpx.AsyncClient(timeout=30) as browser,
        httpx.AsyncClient(base_url=idp_url, timeout=30) as wallet,
    ):
        started = await browser.get(authorization_url)
        assert started.status_code == 303, started.text
        login_path = started.headers["location"]
        assert login_path.startswith("/login/"), login_path
        tx = login_path.removeprefix("/login/")
        page = await browser.get(urljoin(idp_url, login_path))
        assert page.status_code == 200, page.text
        assert "<svg" in page.text and "tsunagu://login?tx=" in page.text

        transaction = await fetch_login(wallet, tx)
        assert transaction["audience"] == idp_url
        assert await decide_login(wallet, transaction, citizen.authentication) == "approved"

        status = await browser.get(f"{idp_url}/login/{tx}/status")
        assert status.json() == {"state": "approved"}
        completed = await browser.get(f"{idp_url}/login/{tx}/complete")
        assert completed.status_code == 303, completed.text
        return completed.headers["location"]


def single(query: str) -> dict[str, str]:
    values = parse_qs(query, keep_blank_values=True)
    assert all(len(v) == 1 for v in values.values()), values
    return {k: v[0] for k, v in values.items()}


async def id_token_claims(
    http: httpx.AsyncClient,
    discovery: dict[str, Any],
    rp: Rp,
    token: dict[str, Any],
    *,
    nonce: str | None,
    max_age: int | None = None,
) -> CodeIDToken:
    """Verify and validate as Authlib's OpenID client does (``AsyncOpenIDMixin.parse_id_token``),
    with ``aud`` checked too: signature by a key of ``jwks_uri`` with a discovered algorithm, then
    ``CodeIDToken``: iss, aud, exp, iat, nonce, auth_time (required with max_age), azp, at_hash."""
    jwks = await http.get(discovery["jwks_uri"])
    assert jwks.status_code == 200, jwks.text
    keys = KeySet.import_key_set(jwks.json())
    decoded = jwt.decode(
        token["id_token"],
        keys,
        registry=JWSRegistry(
            algorithms=discovery["id_token_signing_alg_values_supported"], strict_check_header=False
        ),
    )
    params: dict[str, Any] = {"client_id": rp.client_id, "access_token": token["access_token"]}
    if nonce is not None:
        params["nonce"] = nonce
    if max_age is not None:
        params["max_age"] = max_age
    claims = CodeIDToken(
        decoded.claims,
        decoded.header,
        {
            "iss": {"essential": True, "value": discovery["issuer"]},
            "aud": {"essential": True, "value": rp.client_id},
            "sub": {"essential": True},
        },
        params,
    )
    claims.validate(leeway=LEEWAY_S)
    return claims


async def test_authlib_logs_a_citizen_in_through_the_wallet(
    http: httpx.AsyncClient,
    idp_url: str,
    discovery: dict[str, Any],
    register: Any,
    citizen: Enrolled,
) -> None:
    # -- discovery: what an OIDC client needs, all under the issuer ------------------------------
    issuer = discovery["issuer"]
    assert issuer == idp_url
    for endpoint in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri"):
        assert discovery[endpoint].startswith(issuer + "/"), (endpoint, discovery[endpoint])
    assert discovery["response_types_supported"] == ["code"]
    assert "S256" in discovery["code_challenge_methods_supported"]
    assert "private_key_jwt" in discovery["token_endpoint_auth_methods_supported"]
    assert "ES256" in discovery["token_endpoint_auth_signing_alg_values_supported"]
    assert "ES256" in discovery["id_token_signing_alg_values_supported"]
    assert discovery["subject_types_supported"] == ["pairwise"]
    assert discovery["authorization_response_iss_parameter_supported"] is True
    assert {"authorization_code", "refresh_token"} <= set(discovery["grant_types_supported"])

    rp = await register("https://rp-one.example/cb", "Interop RP one")

    # -- the authorization request, as Authlib makes it ------------------------------------------
    client = authlib_client(discovery, rp)
    code_verifier = generate_token(64)
    nonce = generate_token(24)
    authorization_url, state = client.create_authorization_url(
        discovery["authorization_endpoint"], code_verifier=code_verifier, nonce=nonce, max_age=MAX_AGE_S
    )
    sent = single(urlsplit(authorization_url).query)
    assert sent["code_challenge_method"] == "S256" and sent["nonce"] == nonce and sent["state"] == state

    # -- the browser and the wallet -----------------------------------------------------------------
    started_at = int(time.time())
    location = await wallet_approved_login(idp_url, authorization_url, citizen)
    assert location.startswith(rp.redirect_uri + "?"), location
    answer = single(urlsplit(location).query)
    assert set(answer) == {"code", "state", "iss"}, answer
    assert answer["state"] == state
    assert answer["iss"] == issuer  # RFC 9207: the response names its issuer, byte for byte

    # -- the token request ---------------------------------------------------------------------------
    # Authlib's stock private_key_jwt (assertions valid for an hour) is refused: the idp takes
    # assertions at most 5 minutes ahead. The refusal is client authentication's; the code stays.
    async with authlib_client(
        discovery, rp, PrivateKeyJWT(discovery["token_endpoint"], alg="ES256")
    ) as stock:
        with pytest.raises(OAuthError) as refused:
            await stock.fetch_token(
                discovery["token_endpoint"],
                authorization_response=location,
                code_verifier=code_verifier,
                state=state,
            )
        assert refused.value.error == "invalid_client"

    async with client:
        token = await client.fetch_token(
            discovery["token_endpoint"],
            authorization_response=location,
            code_verifier=code_verifier,
            state=state,
        )
        assert token["token_type"] == "Bearer"
        assert {"access_token", "id_token", "refresh_token", "expires_in"} <= set(token)

        # -- the ID token by Authlib's rules --------------------------------------------------------
        claims = await id_token_claims(http, discovery, rp, token, nonce=nonce, max_age=MAX_AGE_S)
        assert claims.header["alg"] == "ES256" and "kid" in claims.header
        assert claims["nonce"] == nonce
        assert claims["aud"] == rp.client_id
        assert started_at - 5 <= claims["auth_time"] <= claims["iat"] <= int(time.time()) + 5
        assert claims["exp"] > time.time()
        assert claims["acr"] == "urn:tsunagu:acr:jpki-proofed"
        assert claims["amr"] == ["hwk", "user", "x509"]
        sub = claims["sub"]
        assert sub != citizen.user_number and citizen.user_number not in str(dict(claims))
        # the validation is not vacuous: another nonce, another audience are refused
        for wrong in ({"nonce": "another"}, {"client_id": "another"}):
            with pytest.raises(InvalidClaimError):
                CodeIDToken(claims, claims.header, None, {**claims.params, **wrong}).validate(leeway=LEEWAY_S)

        # -- userinfo, with the access token Authlib holds -------------------------------------------
        response = await client.get(discovery["userinfo_endpoint"])
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/json")
        userinfo = UserInfo(response.json())
        assert userinfo["sub"] == sub
        assert citizen.user_number not in response.text

        # -- refresh: rotated; the spent token used again revokes the whole grant -------------------
        first_refresh = token["refresh_token"]
        refreshed = await client.refresh_token(discovery["token_endpoint"], refresh_token=first_refresh)
        assert refreshed["refresh_token"] != first_refresh
        assert refreshed["access_token"] != token["access_token"]
        if "id_token" in refreshed:  # OIDC Core §12.2: same iss, sub, aud, auth_time
            again = await id_token_claims(http, discovery, rp, dict(refreshed), nonce=None)
            assert again["sub"] == sub and again["auth_time"] == claims["auth_time"]
        response = await client.get(discovery["userinfo_endpoint"])
        assert response.status_code == 200, response.text
        assert response.json()["sub"] == sub

        with pytest.raises(OAuthError) as reused:
            await client.refresh_token(discovery["token_endpoint"], refresh_token=first_refresh)
        assert reused.value.error == "invalid_grant"
        with pytest.raises(OAuthError) as family:
            await client.refresh_token(discovery["token_endpoint"], refresh_token=refreshed["refresh_token"])
        assert family.value.error == "invalid_grant"
        revoked = await http.get(
            discovery["userinfo_endpoint"], headers={"Authorization": f"Bearer {refreshed['access_token']}"}
        )
        assert revoked.status_code == 401
        assert revoked.headers["www-authenticate"].startswith("Bearer")

    # -- another relying party, another sector: another sub for the same citizen -----------------
    other = await register("https://rp-two.example/cb", "Interop RP two")
    async with authlib_client(discovery, other) as second:
        verifier2, nonce2 = generate_token(64), generate_token(24)
        url2, state2 = second.create_authorization_url(
            discovery["authorization_endpoint"], code_verifier=verifier2, nonce=nonce2
        )
        location2 = await wallet_approved_login(idp_url, url2, citizen)
        assert location2.startswith(other.redirect_uri + "?"), location2
        assert single(urlsplit(location2).query)["iss"] == issuer
        token2 = await second.fetch_token(
            discovery["token_endpoint"],
            authorization_response=location2,
            code_verifier=verifier2,
            state=state2,
        )
        claims2 = await id_token_claims(http, discovery, other, token2, nonce=nonce2)
        userinfo2 = (await second.get(discovery["userinfo_endpoint"])).json()
    assert claims2["sub"] == userinfo2["sub"]
    assert claims2["sub"] != sub
    assert claims2["sub"] != citizen.user_number
