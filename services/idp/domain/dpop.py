"""RFC 9449 DPoP proofs: the client proves possession of a key for each request.

A proof is a JWS with header ``typ`` ``dpop+jwt``, an asymmetric ``alg`` and the public ``jwk``
(never a private one), payload ``htm`` (the request's method), ``htu`` (its URL, without query or
fragment), ``iat`` (fresh), ``jti`` (single use per key, remembered in ``seen_jti``) and — when it
accompanies an access token at a resource — ``ath`` (base64url SHA-256 of the token). The answer
is the RFC 7638 thumbprint (``jkt``) the tokens are bound to (``cnf.jkt``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import JWKRegistry
from sqlalchemy.ext.asyncio import AsyncSession

from tsunagu.clients.jwt_signing import b64url, b64url_decode
from tsunagu.idp.domain.errors import OAuthError
from tsunagu.idp.store.replay import first_use

# Asymmetric algorithms only (RFC 9449 §4.2: not "none", not a MAC).
DPOP_ALGORITHMS = ("ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS256", "EdDSA")
_KTY = {"ES": "EC", "PS": "RSA", "RS": "RSA", "Ed": "OKP"}
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}
MAX_PROOF_BYTES = 8192


class _ProofRegistry(jws.JWSRegistry):
    # The header carries the public key: an RSA-3072 jwk is over joserfc's default 512 bytes.
    max_header_length = 4096


_REGISTRIES = {alg: _ProofRegistry(algorithms=[alg]) for alg in DPOP_ALGORITHMS}


def invalid_dpop_proof(description: str) -> OAuthError:
    """At the token endpoint (RFC 9449 §5); resources answer 401 ``invalid_dpop_proof`` too."""
    return OAuthError("invalid_dpop_proof", description)


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url) of a public key."""
    members = _THUMBPRINT_MEMBERS.get(str(jwk.get("kty")))
    if members is None or not all(isinstance(jwk.get(m), str) for m in members):
        raise ValueError("unsupported or incomplete JWK")
    canonical = json.dumps({m: jwk[m] for m in members}, sort_keys=True, separators=(",", ":"))
    return b64url(hashlib.sha256(canonical.encode()).digest())


def access_token_hash(access_token: str) -> str:
    return b64url(hashlib.sha256(access_token.encode("ascii", "replace")).digest())


def normalised_htu(url: str) -> str:
    """Scheme and host lower-case, default port dropped, no query, no fragment (RFC 9449 §4.3)."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    port = parts.port  # ValueError when it is not a port
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None or (scheme, port) in (("https", 443), ("http", 80)) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", "", ""))


def _now() -> datetime:
    return datetime.now(UTC)


def _verified(proof: str, error: Callable[[str], OAuthError]) -> tuple[str, dict[str, Any]]:
    """The key thumbprint and payload of a well-formed proof signed by its own public jwk."""
    if not proof or len(proof) > MAX_PROOF_BYTES or proof.count(".") != 2:
        raise error("the DPoP proof is not a compact JWS")
    try:
        header = json.loads(b64url_decode(proof.split(".", 1)[0]))
    except ValueError:
        raise error("the DPoP proof header is not base64url JSON") from None
    if not isinstance(header, dict):
        raise error("the DPoP proof header is not a JSON object")
    if header.get("typ") != "dpop+jwt":
        raise error("the DPoP proof must have typ dpop+jwt")
    alg = header.get("alg")
    if alg not in DPOP_ALGORITHMS:
        raise error("the DPoP proof must be signed with an asymmetric algorithm")
    jwk = header.get("jwk")
    if not isinstance(jwk, dict) or _PRIVATE_MEMBERS & set(jwk):
        raise error("the DPoP proof must carry a public jwk")
    if jwk.get("kty") != _KTY[alg[:2]]:
        raise error("the jwk does not fit the algorithm")
    try:
        key = JWKRegistry.import_key(jwk)
        jkt = thumbprint(jwk)
        payload = json.loads(jws.deserialize_compact(proof, key, registry=_REGISTRIES[alg]).payload)
    except (JoseError, ValueError, TypeError, KeyError):
        raise error("the DPoP proof signature does not verify with its jwk") from None
    if not isinstance(payload, dict):
        raise error("the DPoP proof payload is not a JSON object")
    return jkt, payload


@dataclass(frozen=True)
class DpopProof:
    jkt: str
    jti: str
    iat: int


class DpopVerifier:
    """Checks proofs; ``max_age_s`` how old ``iat`` may be, ``skew_s`` how far in the future."""

    def __init__(
        self, *, max_age_s: int = 300, skew_s: int = 60, clock: Callable[[], datetime] = _now
    ) -> None:
        self.max_age_s = max_age_s
        self.skew_s = skew_s
        self.clock = clock

    async def verify(
        self,
        session: AsyncSession,
        proof: str,
        *,
        method: str,
        url: str,
        access_token: str | None = None,
        error: Callable[[str], OAuthError] = invalid_dpop_proof,
    ) -> DpopProof:
        """Check ``proof`` for a ``method`` request to ``url``; record its ``jti`` in ``session``
        (the caller commits). ``access_token``: the token presented with it (``ath`` required)."""
        checked = self.check(proof, method=method, url=url, access_token=access_token, error=error)
        if not await self.record(session, checked):
            raise error("the DPoP proof was used before")
        return checked

    async def record(self, session: AsyncSession, proof: DpopProof) -> bool:
        """Remember the proof's ``jti`` (per key) as long as it could be fresh; False: seen before."""
        expires = datetime.fromtimestamp(proof.iat, UTC) + timedelta(seconds=self.max_age_s + self.skew_s)
        return await first_use(session, "dpop", proof.jkt, proof.jti, expires)

    def check(
        self,
        proof: str,
        *,
        method: str,
        url: str,
        access_token: str | None = None,
        error: Callable[[str], OAuthError] = invalid_dpop_proof,
    ) -> DpopProof:
        """Everything but single use (which needs the database)."""
        jkt, payload = _verified(proof, error)
        if payload.get("htm") != method:
            raise error("htm does not match the request method")
        htu = payload.get("htu")
        try:
            same_url = isinstance(htu, str) and normalised_htu(htu) == normalised_htu(url)
        except ValueError:
            same_url = False
        if not same_url:
            raise error("htu does not match the request URL")
        iat = payload.get("iat")
        if not isinstance(iat, int | float) or isinstance(iat, bool):
            raise error("the DPoP proof needs a numeric iat")
        now = self.clock().timestamp()
        if iat < now - self.max_age_s or iat > now + self.skew_s:
            raise error("the DPoP proof is not fresh (iat)")
        jti = payload.get("jti")
        if not isinstance(jti, str) or not 8 <= len(jti) <= 128:
            raise error("the DPoP proof needs a jti")
        if access_token is not None:
            ath = payload.get("ath")
            if not isinstance(ath, str) or not hmac.compare_digest(ath, access_token_hash(access_token)):
                raise error("ath does not match the access token")
        return DpopProof(jkt=jkt, jti=jti, iat=int(iat))
