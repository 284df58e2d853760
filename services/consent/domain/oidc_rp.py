"""The dashboard as an OpenID Connect relying party of the idp (OIDC Core 1.0, code flow).

Authorization request with ``state``, ``nonce`` and PKCE S256 (RFC 7636); the code is exchanged at
the token endpoint with ``private_key_jwt`` (OIDC Core §9, RFC 7523) or ``client_secret_basic``;
the ID token is validated as OIDC Core §3.1.3.7 says: signature by a key of the idp's JWKS (the
set is refetched once when a ``kid`` is unknown), ``iss``, ``aud`` (and ``azp`` with several
audiences), ``exp``/``iat``, ``nonce``. The dashboard asks for the ``user_number`` claim in the
ID token (``claims`` parameter, OIDC Core §5.5); the idp releases it only to clients registered
with a legal basis, and without it there is no dashboard.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet

from tsunagu.errors import BadRequest, Forbidden, ServiceUnavailable

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ID_TOKEN_ALGORITHMS = ["ES256", "RS256"]
CLOCK_SKEW_S = 60
JWKS_REFETCH_S = 60  # refetch for an unknown kid at most this often


class LoginFailed(BadRequest):
    code = "dashboard-login-failed"
    title = "The login at the identity provider did not complete"


class IdTokenInvalid(Forbidden):
    code = "id-token-invalid"
    title = "The identity provider's ID token did not validate"


class NoUserNumber(Forbidden):
    code = "no-user-number"
    title = "The identity provider did not release the user identification number to the dashboard"


class IdpUnavailable(ServiceUnavailable):
    code = "idp-unavailable"
    title = "The identity provider is unavailable; retry later"


@dataclass(frozen=True)
class ClientCredentials:
    client_id: str
    key: ECKey | None = None  # private_key_jwt
    secret: str | None = None  # client_secret_basic


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 §4.2, S256."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


@dataclass(frozen=True)
class LoginStart:
    state: str
    nonce: str
    code_verifier: str


def new_login() -> LoginStart:
    return LoginStart(secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48))


class OidcRelyingParty:
    def __init__(
        self, http: httpx.AsyncClient, issuer: str, credentials: ClientCredentials, redirect_uri: str
    ) -> None:
        self.http = http
        self.issuer = issuer.rstrip("/")
        self.credentials = credentials
        self.redirect_uri = redirect_uri
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None
        self._keys_fetched = 0.0

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = await self.http.get(url)
        except httpx.HTTPError:
            raise IdpUnavailable("the identity provider did not answer") from None
        if response.status_code != 200:
            raise IdpUnavailable(f"the identity provider answered {response.status_code}")
        body = response.json()
        if not isinstance(body, dict):
            raise IdpUnavailable("the identity provider's answer is not a JSON object")
        return body

    async def metadata(self) -> dict[str, Any]:
        """The idp's discovery document (OIDC Discovery §4), fetched once; its ``issuer`` must be
        the configured one exactly (§4.3)."""
        if self._metadata is None:
            found = await self._get_json(self.issuer + "/.well-known/openid-configuration")
            if found.get("issuer") != self.issuer:
                raise IdpUnavailable("the discovery document names another issuer")
            self._metadata = found
        return self._metadata

    async def authorization_url(self, login: LoginStart, locale: str) -> str:
        metadata = await self.metadata()
        parameters = {
            "response_type": "code",
            "client_id": self.credentials.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": "openid",
            "state": login.state,
            "nonce": login.nonce,
            "code_challenge": pkce_challenge(login.code_verifier),
            "code_challenge_method": "S256",
            "ui_locales": locale,
            "claims": json.dumps({"id_token": {"user_number": {"essential": True}}}, separators=(",", ":")),
        }
        return f"{metadata['authorization_endpoint']}?{urlencode(parameters)}"

    def _client_auth(self, token_endpoint: str) -> tuple[dict[str, str], httpx.BasicAuth | None]:
        credentials = self.credentials
        if credentials.key is not None:
            now = int(time.time())
            claims = {
                "iss": credentials.client_id,
                "sub": credentials.client_id,
                "aud": token_endpoint,
                "iat": now,
                "exp": now + 60,
                "jti": secrets.token_urlsafe(18),
            }
            assertion = jwt.encode({"alg": "ES256", "kid": credentials.key.kid}, claims, credentials.key)
            return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}, None
        return {}, httpx.BasicAuth(credentials.client_id, credentials.secret or "")

    async def exchange(self, code: str, login: LoginStart) -> dict[str, Any]:
        """Redeem the code; the validated ID token's claims."""
        token_endpoint = str((await self.metadata())["token_endpoint"])
        form, basic = self._client_auth(token_endpoint)
        form |= {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": login.code_verifier,
        }
        try:
            response = await self.http.post(token_endpoint, data=form, auth=basic or httpx.USE_CLIENT_DEFAULT)
        except httpx.HTTPError:
            raise IdpUnavailable("the identity provider's token endpoint did not answer") from None
        if response.status_code != 200:
            error = (
                response.json().get("error")
                if response.headers.get("content-type", "").startswith("application/json")
                else None
            )
            raise LoginFailed(f"the token endpoint refused the code ({error or response.status_code})")
        id_token = response.json().get("id_token")
        if not isinstance(id_token, str):
            raise IdTokenInvalid("no ID token in the token response")
        return await self.validate_id_token(id_token, login.nonce)

    async def _key_set(self, kid: str | None) -> KeySet:
        stale = time.monotonic() - self._keys_fetched > JWKS_REFETCH_S
        unknown = self._keys is not None and kid is not None and all(k.kid != kid for k in self._keys.keys)
        if self._keys is None or (unknown and stale):
            self._keys = KeySet.import_key_set(await self._get_json(str((await self.metadata())["jwks_uri"])))  # type: ignore[arg-type]
            self._keys_fetched = time.monotonic()
        return self._keys

    async def validate_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        """OIDC Core §3.1.3.7 for this client and login (the nonce it sent)."""
        try:
            header = json.loads(base64.urlsafe_b64decode(id_token.split(".", maxsplit=1)[0] + "=="))
            token = jwt.decode(
                id_token, await self._key_set(header.get("kid")), algorithms=ID_TOKEN_ALGORITHMS
            )
        except (JoseError, ValueError, IndexError):
            raise IdTokenInvalid("the ID token's signature or form is wrong") from None
        claims = dict(token.claims)
        client_id = self.credentials.client_id
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        now = int(time.time())
        if claims.get("iss") != self.issuer:
            raise IdTokenInvalid("iss is not the identity provider")
        if client_id not in audiences or (len(audiences) > 1 and claims.get("azp") != client_id):
            raise IdTokenInvalid("the ID token is not for the dashboard")
        expires, issued = claims.get("exp"), claims.get("iat")
        if not isinstance(expires, int) or expires + CLOCK_SKEW_S <= now:
            raise IdTokenInvalid("the ID token has expired")
        if not isinstance(issued, int) or issued > now + CLOCK_SKEW_S:
            raise IdTokenInvalid("the ID token is issued in the future")
        if not isinstance(claims.get("nonce"), str) or not secrets.compare_digest(claims["nonce"], nonce):
            raise IdTokenInvalid("the ID token's nonce is not this login's")
        if not isinstance(claims.get("user_number"), str):
            raise NoUserNumber("register the dashboard client with user_number_legal_basis")
        return claims
