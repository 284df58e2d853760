"""Parties' access tokens: RFC 9068 JWTs from the idp, presented as RFC 6750 Bearer tokens.

Checked: the JOSE header (``typ at+jwt``, ES256/RS256, a ``kid`` of the idp's JWKS — refetched on
an unknown ``kid`` at most every ``refresh_min_interval_s``), the signature, ``iss`` (exactly the
idp's issuer), ``aud`` (the broker's resource identifier, RFC 8707), ``exp``/``iat`` with clock
skew, ``client_id``. DPoP-bound tokens (``cnf.jkt``) are refused: the broker does not check DPoP
proofs yet, and accepting a bound token without its proof would unbind it (RFC 9449 §7).

A verified token is remembered (by its SHA-256) until it expires, so a party reusing its token
costs one dictionary lookup instead of one signature check per call.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, JWKRegistry, RSAKey

from tsunagu.broker.domain.errors import InvalidToken
from tsunagu.clients.jwt_signing import InvalidJwt, unverified_header

ACCESS_TOKEN_TYP = "at+jwt"  # noqa: S105 - RFC 9068 media type
ALGORITHMS = ("ES256", "RS256")
MAX_TOKEN_LENGTH = 8192
_REMEMBERED = 50_000


@dataclass(frozen=True)
class AccessToken:
    """Who is calling: the client, and the citizen when the token is a person's (``sub`` ≠ client)."""

    client_id: str
    sub: str
    scopes: frozenset[str]
    expires_at: float

    @property
    def for_person(self) -> bool:
        """A token from a person's grant (code flow) rather than the client's own."""
        return self.sub != self.client_id


class AccessTokenVerifier:
    def __init__(
        self,
        *,
        issuer: str,
        resource: str,
        http: httpx.AsyncClient,
        skew_s: int = 30,
        jwks_cache_s: float = 300.0,
        refresh_min_interval_s: float = 10.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self.resource = resource
        self.http = http
        self.skew_s = skew_s
        self.jwks_cache_s = jwks_cache_s
        self.refresh_min_interval_s = refresh_min_interval_s
        self.clock = clock
        self.monotonic = monotonic
        self._keys: dict[str, tuple[str, ECKey | RSAKey]] = {}
        self._loaded_at: float | None = None
        self._lock = asyncio.Lock()
        self._verified: OrderedDict[bytes, AccessToken] = OrderedDict()

    async def verify(self, authorization: str | None) -> AccessToken:
        """The caller of an ``Authorization: Bearer …`` header, or :class:`InvalidToken`."""
        if not authorization or not authorization.startswith("Bearer "):
            raise InvalidToken("an access token is required (Authorization: Bearer)")
        token = authorization[len("Bearer ") :].strip()
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("the access token is malformed")
        digest = hashlib.sha256(token.encode()).digest()
        known = self._verified.get(digest)
        now = self.clock()
        if known is not None:
            if known.expires_at + self.skew_s > now:
                return known
            self._verified.pop(digest, None)
        verified = await self._verify(token, now)
        self._verified[digest] = verified
        if len(self._verified) > _REMEMBERED:
            self._verified.popitem(last=False)
        return verified

    async def _verify(self, token: str, now: float) -> AccessToken:
        try:
            header = unverified_header(token)
        except InvalidJwt as error:
            raise InvalidToken(str(error)) from error
        alg, kid = header.get("alg"), header.get("kid")
        if header.get("typ") != ACCESS_TOKEN_TYP:
            raise InvalidToken("not an RFC 9068 access token (typ at+jwt)")
        if alg not in ALGORITHMS or not isinstance(kid, str):
            raise InvalidToken("unsupported algorithm or no key id")
        key = await self._key(kid)
        if key is None or key[0] != alg:
            raise InvalidToken("the token is not signed by a key of the idp")
        try:
            claims = json.loads(jws.deserialize_compact(token, key[1], algorithms=[alg]).payload)
        except (JoseError, ValueError) as error:
            raise InvalidToken("the signature does not verify") from error
        if not isinstance(claims, dict):
            raise InvalidToken("the payload is not a JSON object")
        return self._checked(claims, now)

    def _checked(self, claims: dict[str, Any], now: float) -> AccessToken:
        if claims.get("iss") != self.issuer:
            raise InvalidToken("the token is from another issuer")
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if self.resource not in audiences:
            raise InvalidToken("the token is not for this resource (aud)")
        exp, iat = claims.get("exp"), claims.get("iat")
        if not isinstance(exp, int | float) or exp + self.skew_s <= now:
            raise InvalidToken("the token has expired")
        if isinstance(iat, int | float) and iat - self.skew_s > now:
            raise InvalidToken("the token is issued in the future")
        if "cnf" in claims:
            raise InvalidToken("DPoP-bound access tokens are not accepted here; use a Bearer token")
        client_id, sub = claims.get("client_id"), claims.get("sub")
        if not isinstance(client_id, str) or not client_id or not isinstance(sub, str) or not sub:
            raise InvalidToken("the token names no client or subject")
        scope = claims.get("scope")
        scopes = frozenset(scope.split()) if isinstance(scope, str) else frozenset()
        return AccessToken(client_id=client_id, sub=sub, scopes=scopes, expires_at=float(exp))

    async def _key(self, kid: str) -> tuple[str, ECKey | RSAKey] | None:
        await self._load(self.jwks_cache_s)
        if kid not in self._keys:
            await self._load(self.refresh_min_interval_s)  # a key published since
        return self._keys.get(kid)

    async def _load(self, max_age: float) -> None:
        if self._loaded_at is not None and self.monotonic() - self._loaded_at < max_age:
            return
        async with self._lock:
            if self._loaded_at is not None and self.monotonic() - self._loaded_at < max_age:
                return
            try:
                response = await self.http.get(f"{self.issuer}/jwks")
                response.raise_for_status()
                document = response.json()
            except (httpx.HTTPError, ValueError) as error:
                if not self._keys:
                    raise InvalidToken("the idp's keys cannot be read now") from error
                self._loaded_at = self.monotonic()  # keep the known keys; retry after max_age
                return
            keys: dict[str, tuple[str, ECKey | RSAKey]] = {}
            for jwk in document.get("keys", []) if isinstance(document, dict) else []:
                imported = JWKRegistry.import_key(dict(jwk))
                alg = jwk.get("alg") or ("ES256" if isinstance(imported, ECKey) else "RS256")
                if isinstance(imported, ECKey | RSAKey) and isinstance(jwk.get("kid"), str):
                    keys[jwk["kid"]] = (alg, imported)
            self._keys = keys
            self._loaded_at = self.monotonic()
