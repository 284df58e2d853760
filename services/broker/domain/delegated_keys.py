"""Delegated signing keys: the HSM's ``exchange`` key certifies a short-lived key the broker holds in
memory, and that key signs provider requests and webhooks.

Why: every exchange and every webhook is signed. Asking the signer for each one costs a network
round trip and an audited HSM operation per exchange — most of an exchange's latency and a good
part of its CPU — while the broker's own exchange log already records each exchange. So, as TLS
delegated credentials do (RFC 9345), the broker makes a P-256 key in memory (never written
anywhere), has the HSM sign a delegation for it — a JWT ``typ tsunagu-key-delegation+jwt`` with
``{iss, sub: <kid>, jwk, iat, exp}`` — and signs with it for at most ``lifetime_s`` (1 h), making a
new one ``renew_before_s`` before the end. A stolen delegated key is good for at most that long.

``GET /v1/jwks`` publishes the HSM keys and every unexpired delegated key of every replica (the
``signing_delegation`` table), each with its delegation in the member ``tsunagu_delegation``: a
receiver that trusts only the HSM key verifies the delegation with it, then the message with the
delegated key. Receivers that see an unknown ``kid`` read the JWKS again (a new replica's key).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc.jwk import ECKey

from tsunagu.broker.store import repository as store
from tsunagu.clients.jwt_signing import TokenSigner, b64url, compact_json
from tsunagu.db import Database

DELEGATION_TYP = "tsunagu-key-delegation+jwt"
JWKS_CACHE_S = 5.0


def _raw_signature(der: bytes) -> bytes:
    r, s = decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


class DelegatedSigner:
    """``sign_jwt`` and ``jwks`` like :class:`TokenSigner`, signing with a delegated key."""

    def __init__(
        self,
        hsm: TokenSigner,
        db: Database,
        *,
        issuer: str,
        lifetime_s: int = 3600,
        renew_before_s: int = 600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if renew_before_s >= lifetime_s:
            raise ValueError("renew_before_s must be shorter than lifetime_s")
        self.hsm = hsm
        self.db = db
        self.issuer = issuer
        self.lifetime_s = lifetime_s
        self.renew_before_s = renew_before_s
        self.clock = clock
        self._key: ec.EllipticCurvePrivateKey | None = None
        self._kid = ""
        self._expires = 0.0
        self._lock = asyncio.Lock()
        self._jwks: dict[str, Any] | None = None
        self._jwks_at = 0.0

    async def _current(self) -> tuple[str, ec.EllipticCurvePrivateKey]:
        if self._key is None or self.clock() > self._expires - self.renew_before_s:
            async with self._lock:
                if self._key is None or self.clock() > self._expires - self.renew_before_s:
                    await self._delegate()
        assert self._key is not None
        return self._kid, self._key

    async def _delegate(self) -> None:
        """A new in-memory key, certified by the HSM key and published before it signs."""
        key = ec.generate_private_key(ec.SECP256R1())
        public = ECKey.import_key(key.public_key())
        jwk = {**public.as_dict(private=False), "alg": "ES256", "use": "sig"}
        kid = "d-" + public.thumbprint()
        jwk["kid"] = kid
        now = int(self.clock())
        expires = now + self.lifetime_s
        claims = {"iss": self.issuer, "sub": kid, "jwk": jwk, "iat": now, "exp": expires}
        delegation = await self.hsm.sign_jwt(claims, typ=DELEGATION_TYP)
        async with self.db.transaction() as session:
            await store.add_delegation(
                session,
                {
                    "kid": kid,
                    "jwk": jwk,
                    "delegation": delegation,
                    "not_after": datetime.fromtimestamp(expires, UTC),
                },
            )
        self._key, self._kid, self._expires = key, kid, float(expires)
        self._jwks = None  # publish it at once on this replica

    async def sign_jwt(self, claims: dict[str, Any], *, typ: str, alg: str = "ES256") -> str:
        """A compact JWS of ``claims`` with header ``{"alg": "ES256", "kid", "typ"}``."""
        if alg != "ES256":
            raise ValueError("delegated keys sign ES256 only")
        kid, key = await self._current()
        header = b64url(compact_json({"alg": "ES256", "kid": kid, "typ": typ}))
        signing_input = f"{header}.{b64url(compact_json(claims))}"
        signature = key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        return f"{signing_input}.{b64url(_raw_signature(signature))}"

    async def jwks(self) -> dict[str, Any]:
        """The HSM ``exchange`` keys and every replica's unexpired delegated key (this replica's is
        made now if it has none: a key is published before its first signature)."""
        await self._current()
        if self._jwks is not None and time.monotonic() - self._jwks_at < JWKS_CACHE_S:
            return self._jwks
        hsm = await self.hsm.jwks()
        async with self.db.sessions() as session:
            rows = await store.delegations(session, datetime.fromtimestamp(self.clock(), UTC))
        delegated = [{**row["jwk"], "tsunagu_delegation": row["delegation"]} for row in rows]
        self._jwks = {"keys": [*hsm["keys"], *delegated]}
        self._jwks_at = time.monotonic()
        return self._jwks
