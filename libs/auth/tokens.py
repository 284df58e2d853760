"""Short-lived ES256 service tokens: minted by the caller, verified by the callee.

Tokens are bearer tokens reused for their lifetime (no ``jti`` replay cache): they only prove
which service calls, and their short lifetime plus the audience bound limit what a leak allows.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from tsunagu.auth.errors import InvalidServiceToken
from tsunagu.auth.keys import ALGORITHM, _check_p256_private, key_id
from tsunagu.auth.trust import TrustStore

TOKEN_TYPE = "tsunagu-service+jwt"  # noqa: S105 - a media type, not a secret
MAX_TOKEN_BYTES = 8 * 1024
# Reuse a cached token only while it has this long left: covers clock skew and slow requests.
REFRESH_MARGIN_S = 30
_SEGMENT_RE = re.compile(r"[A-Za-z0-9_-]+")
Clock = Callable[[], float]


@dataclass(frozen=True)
class ServicePrincipal:
    """The authenticated calling service."""

    name: str


class ServiceTokenIssuer:
    """Mints this service's tokens, one cached token per audience."""

    def __init__(
        self,
        name: str,
        private_key: ec.EllipticCurvePrivateKey,
        lifetime_s: int = 120,
        *,
        clock: Clock = time.time,
    ) -> None:
        if lifetime_s <= 0:
            raise ValueError("lifetime_s must be positive")
        self.name = name
        self._key = ECKey.import_key(_check_p256_private(private_key))
        self._kid = key_id(private_key.public_key())
        self._lifetime_s = lifetime_s
        self._clock = clock
        self._cache: dict[str, tuple[str, int]] = {}
        self._lock = threading.Lock()  # httpx sync clients may share an issuer across threads

    def token_for(self, audience: str) -> str:
        """A token for calls to ``audience``; reused until 30 s before it expires."""
        now = self._clock()
        with self._lock:
            cached = self._cache.get(audience)
            if cached is not None and now < cached[1] - REFRESH_MARGIN_S:
                return cached[0]
            iat = int(now)
            exp = iat + self._lifetime_s
            claims = {
                "iss": self.name,
                "sub": self.name,
                "aud": audience,
                "iat": iat,
                "nbf": iat,
                "exp": exp,
                "jti": secrets.token_urlsafe(16),
            }
            header = {"alg": ALGORITHM, "typ": TOKEN_TYPE, "kid": self._kid}
            payload = json.dumps(claims, separators=(",", ":")).encode()
            token = jws.serialize_compact(header, payload, self._key, algorithms=[ALGORITHM])
            self._cache[audience] = (token, exp)
            return token


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name}")


def _b64_json(segment: str) -> dict[str, Any]:
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    # NaN compares false with everything and would slip through every time check.
    value = json.loads(raw, parse_constant=_reject_constant)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _number(claims: dict[str, Any], name: str) -> float:
    value = claims.get(name)
    # bool is an int subclass: {"exp": true} must not pass as 1970-01-01T00:00:01.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidServiceToken(f"claim {name} missing or not a number")
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float: not a time
        raise InvalidServiceToken(f"claim {name} out of range") from None
    if not math.isfinite(number):
        raise InvalidServiceToken(f"claim {name} out of range")
    return number


class ServiceTokenVerifier:
    """Verifies tokens addressed to ``audience`` (this service) against the trust store."""

    def __init__(
        self,
        audience: str,
        trust: TrustStore,
        leeway_s: float = 5,
        max_lifetime_s: float = 300,
        *,
        clock: Clock = time.time,
    ) -> None:
        self.audience = audience
        self._trust = trust
        self._leeway_s = leeway_s
        self._max_lifetime_s = max_lifetime_s
        self._clock = clock
        # Callers reuse a token for its lifetime, so a verified one is remembered until it expires
        # (keyed by the whole token: a different byte is a different, unverified token).
        self._verified: dict[str, tuple[ServicePrincipal, float]] = {}

    def verify(self, token: str) -> ServicePrincipal:
        """Return the calling service, or raise :class:`InvalidServiceToken` (never anything else)."""
        now = self._clock()
        cached = self._verified.get(token)
        if cached is not None:
            principal, expires = cached
            if now < expires + self._leeway_s:
                return principal
            del self._verified[token]
        try:
            principal = self._verify(token)
        except InvalidServiceToken:
            raise
        except Exception:
            # Contract: hostile input must end as a 401, never as a 500 from some parser corner.
            raise InvalidServiceToken("malformed token") from None
        if len(self._verified) >= 4096:
            self._verified.clear()  # bounded: a flood of distinct valid tokens only costs re-verification
        self._verified[token] = (principal, self._expiry_of(token))
        return principal

    @staticmethod
    def _expiry_of(token: str) -> float:
        return _number(_b64_json(token.split(".")[1]), "exp")

    def _verify(self, token: str) -> ServicePrincipal:
        claims, owner = self._verify_signature(token)
        name = claims.get("iss")
        if not isinstance(name, str) or claims.get("sub") != name:
            raise InvalidServiceToken("iss and sub must name the calling service")
        if name != owner:
            # Signed with one service's key while claiming to be another service.
            raise InvalidServiceToken("issuer does not own the signing key")
        if claims.get("aud") != self.audience:
            raise InvalidServiceToken("token is not addressed to this service")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise InvalidServiceToken("claim jti missing")
        self._check_times(claims)
        return ServicePrincipal(name=name)

    def _verify_signature(self, token: str) -> tuple[dict[str, Any], str]:
        """The claims of a well-formed token signed by a trusted key, and that key's owner."""
        # Cheap structural checks first: bound the work an unauthenticated caller can cause.
        if not isinstance(token, str) or len(token) > MAX_TOKEN_BYTES:
            raise InvalidServiceToken("malformed token")
        segments = token.split(".")
        if len(segments) != 3 or not all(_SEGMENT_RE.fullmatch(s) for s in segments):
            raise InvalidServiceToken("malformed token")
        try:
            header = _b64_json(segments[0])
        except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
            raise InvalidServiceToken("malformed token header") from None
        # Pin the algorithm ourselves rather than trusting "alg": no none, no HS*, no RSA confusion.
        if header.get("alg") != ALGORITHM:
            raise InvalidServiceToken("unsupported algorithm")
        if header.get("typ") != TOKEN_TYPE:
            raise InvalidServiceToken("wrong token type")
        if "crit" in header:
            raise InvalidServiceToken("critical header parameters are not supported")
        kid = header.get("kid")
        trusted = self._trust.key_for(kid) if isinstance(kid, str) else None
        if trusted is None:
            raise InvalidServiceToken("unknown signing key")
        try:
            jws.deserialize_compact(token, trusted.key, algorithms=[ALGORITHM])
            claims = _b64_json(segments[1])
        except (JoseError, ValueError, TypeError, binascii.Error, UnicodeDecodeError, RecursionError):
            raise InvalidServiceToken("bad signature or payload") from None
        return claims, trusted.service

    def _check_times(self, claims: dict[str, Any]) -> None:
        now = self._clock()
        iat, nbf, exp = _number(claims, "iat"), _number(claims, "nbf"), _number(claims, "exp")
        if now >= exp + self._leeway_s:
            raise InvalidServiceToken("token expired")
        if now + self._leeway_s < nbf:
            raise InvalidServiceToken("token not yet valid")
        if now + self._leeway_s < iat:
            raise InvalidServiceToken("token issued in the future")
        if exp - iat > self._max_lifetime_s or exp <= iat:
            raise InvalidServiceToken("token lifetime out of bounds")
