"""Client authentication at the token, PAR, CIBA, introspection and revocation endpoints.

Methods (exactly one per request, and it must be the client's registered one):
- ``client_secret_basic`` — RFC 6749 §2.3.1: ``Authorization: Basic`` of the form-urlencoded
  client id and secret;
- ``client_secret_post`` — ``client_id`` and ``client_secret`` in the form;
- ``private_key_jwt`` — RFC 7523 §2.2 / OIDC Core §9: a JWT signed with one of the client's keys,
  ``iss`` = ``sub`` = client id, ``aud`` the issuer or the endpoint's URL, ``exp`` at most
  ``ASSERTION_MAX_AGE_S`` ahead, ``jti`` single use;
- ``none`` — public clients: only ``client_id`` in the form.

Anything wrong is ``invalid_client`` (401; a ``WWW-Authenticate: Basic`` challenge when Basic was
used). Secrets and assertions are never logged.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import unquote_plus

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey, RSAKey

from tsunagu.db import Database
from tsunagu.idp.domain.clients import Client, ClientRegistry, JwksUnavailable
from tsunagu.idp.domain.errors import OAuthError, invalid_client
from tsunagu.idp.settings import IdpSettings
from tsunagu.idp.store.replay import first_use_now

log = logging.getLogger(__name__)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = ("ES256", "RS256", "PS256", "EdDSA")
_REGISTRY = jws.JWSRegistry(algorithms=list(ASSERTION_ALGORITHMS))
MAX_ASSERTION_CHARS = 8192
SKEW_S = 30
_KEY_TYPES: dict[str, tuple[str, str | None]] = {  # alg → (kty, crv)
    "ES256": ("EC", "P-256"),
    "RS256": ("RSA", None),
    "PS256": ("RSA", None),
    "EdDSA": ("OKP", "Ed25519"),
}


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _segment(text: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


@lru_cache(maxsize=1024)
def _imported(canonical_jwk: str) -> ECKey | RSAKey | OKPKey:
    """A client's key, imported once per distinct JWK (the same key signs every assertion of a
    client; importing it cost as much as verifying the signature). Keyed on the whole JWK, so a
    rotated or changed key is a new entry; the objects are only read by verification."""
    return _import(json.loads(canonical_jwk))


def _import(jwk: dict[str, Any]) -> ECKey | RSAKey | OKPKey:
    kty = jwk.get("kty")
    if kty == "EC":
        return ECKey.import_key(jwk)
    if kty == "RSA":
        return RSAKey.import_key(jwk)
    return OKPKey.import_key(jwk)


class ClientAuthenticator:
    def __init__(
        self,
        clients: ClientRegistry,
        db: Database,
        settings: IdpSettings,
        *,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.clients = clients
        self.db = db
        self.issuer = settings.issuer
        self.max_age_s = settings.assertion_max_age_s
        self.clock = clock

    async def authenticate(
        self, form: Mapping[str, str], authorization: str | None, *, endpoint_url: str
    ) -> Client:
        """The authenticated, active client of this request, or ``invalid_client``.

        ``form`` is the request's form (single values), ``authorization`` its Authorization
        header, ``endpoint_url`` the URL of the endpoint called (a client assertion's ``aud`` may
        name it or the issuer)."""
        basic = bool(authorization) and str(authorization)[:6].lower() == "basic "
        if authorization and not basic:
            raise self._refuse(None, "only HTTP Basic is accepted in Authorization for client authentication")
        presented = [
            method
            for method, present in (
                ("client_secret_basic", basic),
                ("client_secret_post", "client_secret" in form),
                ("private_key_jwt", "client_assertion" in form or "client_assertion_type" in form),
            )
            if present
        ]
        if len(presented) > 1:
            raise self._refuse(None, "use exactly one client authentication method", basic=basic)
        form_client_id = form.get("client_id")
        if basic:
            return await self._secret_basic(str(authorization), form_client_id)
        if presented == ["client_secret_post"]:
            return await self._secret(
                form_client_id or "", form.get("client_secret", ""), "client_secret_post"
            )
        if presented == ["private_key_jwt"]:
            return await self._private_key_jwt(form, form_client_id, endpoint_url)
        if not form_client_id:
            raise self._refuse(None, "client authentication is required")
        client = await self._client(form_client_id, "none")
        return client

    # -- helpers --------------------------------------------------------------------------------

    def _refuse(self, client_id: str | None, reason: str, *, basic: bool = False) -> OAuthError:
        log.info(
            "client authentication refused", extra={"client_id": (client_id or "")[:64], "reason": reason}
        )
        return invalid_client(reason, basic=basic)

    async def _client(self, client_id: str, method: str, *, basic: bool = False) -> Client:
        client = await self.clients.get(client_id)
        if client is None:
            raise self._refuse(client_id, "unknown or disabled client", basic=basic)
        if client.token_endpoint_auth_method != method:
            raise self._refuse(
                client_id,
                f"the client must authenticate with {client.token_endpoint_auth_method}, not {method}",
                basic=basic,
            )
        return client

    # -- secrets --------------------------------------------------------------------------------

    async def _secret_basic(self, authorization: str, form_client_id: str | None) -> Client:
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise self._refuse(None, "malformed Basic credentials", basic=True) from None
        user, colon, password = decoded.partition(":")
        if not colon:
            raise self._refuse(None, "malformed Basic credentials", basic=True)
        # RFC 6749 §2.3.1: both parts are application/x-www-form-urlencoded before Basic encoding.
        client_id, secret = unquote_plus(user), unquote_plus(password)
        if form_client_id is not None and form_client_id != client_id:
            raise self._refuse(
                client_id, "client_id in the form differs from the Basic credentials", basic=True
            )
        return await self._secret(client_id, secret, "client_secret_basic", basic=True)

    async def _secret(self, client_id: str, secret: str, method: str, *, basic: bool = False) -> Client:
        if not client_id or not secret:
            raise self._refuse(client_id, "client_id and client_secret are required", basic=basic)
        client = await self._client(client_id, method, basic=basic)
        if not await self.clients.verify_secret(client, secret):
            raise self._refuse(client_id, "the client secret is not valid", basic=basic)
        return client

    # -- private_key_jwt ------------------------------------------------------------------------

    async def _private_key_jwt(
        self, form: Mapping[str, str], form_client_id: str | None, endpoint_url: str
    ) -> Client:
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise self._refuse(form_client_id, f"client_assertion_type must be {ASSERTION_TYPE}")
        assertion = form.get("client_assertion") or ""
        if not 0 < len(assertion) <= MAX_ASSERTION_CHARS or assertion.count(".") != 2:
            raise self._refuse(form_client_id, "client_assertion is not a compact JWS")
        try:
            header, unverified = _segment(assertion.split(".")[0]), _segment(assertion.split(".")[1])
        except (ValueError, UnicodeDecodeError, binascii.Error):
            raise self._refuse(form_client_id, "client_assertion does not decode") from None
        if not isinstance(header, dict) or not isinstance(unverified, dict):
            raise self._refuse(form_client_id, "client_assertion does not decode")
        algorithm = header.get("alg")
        if algorithm not in ASSERTION_ALGORITHMS:
            raise self._refuse(
                form_client_id, f"client_assertion alg must be one of {', '.join(ASSERTION_ALGORITHMS)}"
            )
        if "crit" in header:
            raise self._refuse(form_client_id, "client_assertion must not carry crit header parameters")
        issuer, subject = unverified.get("iss"), unverified.get("sub")
        if not isinstance(subject, str) or issuer != subject:
            raise self._refuse(form_client_id, "client_assertion iss and sub must both be the client_id")
        if form_client_id is not None and form_client_id != subject:
            raise self._refuse(form_client_id, "client_id in the form differs from the assertion's sub")
        client = await self._client(subject, "private_key_jwt")
        wanted = client.metadata.token_endpoint_auth_signing_alg
        if wanted is not None and algorithm != wanted:
            raise self._refuse(subject, f"the client's assertions are signed with {wanted}")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise self._refuse(subject, "client_assertion kid must be a string")
        claims = await self._verified_claims(client, assertion, str(algorithm), kid)
        expires = self._check_claims(client, claims, endpoint_url)
        fresh = await first_use_now(self.db, "client", client.client_id, str(claims["jti"]), expires)
        if not fresh:
            raise self._refuse(client.client_id, "the client assertion was already used (jti)")
        return client

    async def _verified_claims(
        self, client: Client, assertion: str, algorithm: str, kid: str | None
    ) -> dict[str, Any]:
        try:
            document = await self.clients.jwks(client)
            payload = self._verify(document, assertion, algorithm, kid)
            if payload is None and client.metadata.jwks_uri is not None:
                # an unknown kid (or no key of that type): the client may have rotated its keys
                payload = self._verify(
                    await self.clients.jwks(client, refresh=True), assertion, algorithm, kid
                )
        except JwksUnavailable as error:
            log.warning("client keys unavailable", extra={"client_id": client.client_id, "error": str(error)})
            raise invalid_client("the client's jwks_uri could not be fetched") from None
        if payload is None:
            raise self._refuse(client.client_id, "no key of the client matches the assertion's kid and alg")
        if not isinstance(payload, bytes):
            raise self._refuse(client.client_id, "the client assertion's signature does not verify")
        try:
            claims = json.loads(payload)
        except ValueError:
            claims = None
        if not isinstance(claims, dict):
            raise self._refuse(client.client_id, "the client assertion's payload is not a JSON object")
        return claims

    @staticmethod
    def _verify(
        document: dict[str, Any], assertion: str, algorithm: str, kid: str | None
    ) -> bytes | bool | None:
        """The verified payload; False when candidate keys exist but none verifies; None when
        the set holds no candidate key (unknown kid, or no key fit for ``algorithm``)."""
        kty, crv = _KEY_TYPES[algorithm]
        candidates = [
            jwk
            for jwk in document.get("keys", [])
            if isinstance(jwk, dict)
            and (kid is None or jwk.get("kid") == kid)
            and jwk.get("kty") == kty
            and (crv is None or jwk.get("crv") == crv)
            and jwk.get("alg", algorithm) == algorithm
            and jwk.get("use", "sig") == "sig"
        ]
        if not candidates:
            return None
        for jwk in candidates:
            try:
                key = _imported(json.dumps(jwk, sort_keys=True, separators=(",", ":")))
                verified = jws.deserialize_compact(assertion, key, algorithms=[algorithm], registry=_REGISTRY)
                return verified.payload
            except (JoseError, ValueError, TypeError):
                continue
        return False

    def _check_claims(self, client: Client, claims: dict[str, Any], endpoint_url: str) -> datetime:
        """RFC 7523 §3 on the verified claims; returns until when the jti must be remembered."""
        client_id = client.client_id
        if claims.get("iss") != client_id or claims.get("sub") != client_id:
            raise self._refuse(client_id, "client_assertion iss and sub must both be the client_id")
        audience = claims.get("aud")
        audiences = [audience] if isinstance(audience, str) else audience
        if not isinstance(audiences, list) or not (
            {self.issuer, endpoint_url} & {a for a in audiences if isinstance(a, str)}
        ):
            raise self._refuse(client_id, "client_assertion aud must be the issuer or the endpoint URL")
        now = self.clock().timestamp()
        exp = _number(claims.get("exp"))
        if exp is None:
            raise self._refuse(client_id, "client_assertion exp is required")
        if exp <= now - SKEW_S:
            raise self._refuse(client_id, "the client assertion has expired")
        if exp > now + self.max_age_s + SKEW_S:
            raise self._refuse(client_id, f"client_assertion exp is more than {self.max_age_s} s ahead")
        for name in ("iat", "nbf"):
            if name in claims:
                value = _number(claims[name])
                if value is None or value > now + SKEW_S:
                    raise self._refuse(client_id, f"client_assertion {name} is not valid or in the future")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 0 < len(jti) <= 128:
            raise self._refuse(client_id, "client_assertion jti (at most 128 characters) is required")
        return datetime.fromtimestamp(exp + SKEW_S, UTC)
