"""JWTs signed by a signer key purpose — the idp's ``id-token`` keys, the broker's ``exchange``
keys (the private keys never leave the HSM).

:class:`TokenSigner` builds the compact JWS itself — header ``{"alg", "kid", "typ"}``, payload —
and asks the signer to sign the signing input with the active key of the algorithm (ES256 by
default, RS256 for clients that registered it). Concurrent calls travel in one batch
(:class:`tsunagu.clients.signer.BatchingSigner`).

The key registry (``GET /v1/keys?purpose=id-token``) is read at most every ``cache_s`` seconds; it
gives both the active key of each algorithm (``kid`` goes in the header before signing) and the
published keys (``next`` + ``active`` + ``retired``) for ``/jwks``. A rotation publishes the next
key before it signs; when the operator activates it, the signer refuses the old key (409) and the
signer re-reads the registry and signs again with the new one. A token whose ``kid`` is unknown
makes the cache refresh too (at most every ``refresh_min_interval_s``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections.abc import Callable
from typing import Any, Protocol

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, JWKRegistry, RSAKey

from tsunagu.clients.internal import UpstreamError
from tsunagu.clients.signer import BatchingSigner, SignerClient

SIGNING_ALGORITHMS = ("ES256", "RS256")
PUBLISHED = ("next", "active", "retired")


class JwtSigner(Protocol):
    """What signs our JWTs and publishes their keys: :class:`TokenSigner` (each JWT signed in the
    HSM), or a signer with a key the HSM delegated (the broker's)."""

    async def sign_jwt(self, claims: dict[str, Any], *, typ: str, alg: str = "ES256") -> str: ...

    async def jwks(self) -> dict[str, Any]: ...


class NoSigningKey(Exception):
    """The signer has no active key of the wanted algorithm (the operator must create one)."""


class InvalidJwt(Exception):
    """Not one of our JWTs, or its signature does not verify."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    if len(text) % 4 == 1:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def compact_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def unverified_header(token: str) -> dict[str, Any]:
    """The protected header of a compact JWS (before its signature is checked)."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        raise InvalidJwt("not a compact JWS")
    try:
        header = json.loads(b64url_decode(parts[0]))
    except (ValueError, binascii.Error, UnicodeDecodeError) as error:
        raise InvalidJwt("the JWS header is not base64url JSON") from error
    if not isinstance(header, dict):
        raise InvalidJwt("the JWS header is not a JSON object")
    return header


class TokenSigner:
    def __init__(
        self,
        signer: SignerClient,
        batching: BatchingSigner | None = None,
        *,
        purpose: str = "id-token",
        cache_s: float = 60.0,
        refresh_min_interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.signer = signer
        self.batching = batching or BatchingSigner(signer)
        self.purpose = purpose
        self.cache_s = cache_s
        self.refresh_min_interval_s = refresh_min_interval_s
        self.clock = clock
        self._keys: list[dict[str, Any]] = []
        self._active: dict[str, str] = {}  # algorithm → kid
        self._verifiers: dict[str, tuple[str, ECKey | RSAKey]] = {}  # kid → (alg, key)
        self._jwks: dict[str, Any] = {"keys": []}
        self._loaded_at: float | None = None
        self._lock = asyncio.Lock()

    # -- the registry ---------------------------------------------------------------------------

    def _fresh(self, max_age: float) -> bool:
        return self._loaded_at is not None and self.clock() - self._loaded_at < max_age

    async def _load(self, *, max_age: float | None = None) -> None:
        """Re-read the key registry unless it was read less than ``max_age`` seconds ago."""
        age = self.cache_s if max_age is None else max_age
        if self._fresh(age):
            return
        async with self._lock:
            if self._fresh(age):
                return  # another caller refreshed it meanwhile
            keys: list[dict[str, Any]] = await self.signer.keys(purpose=self.purpose)
            published = [
                k for k in keys if k.get("state") in PUBLISHED and k.get("algorithm") in SIGNING_ALGORITHMS
            ]
            active: dict[str, str] = {}
            # The most recently activated key of each algorithm signs (there is one per algorithm).
            for key in sorted(
                (k for k in published if k["state"] == "active"), key=lambda k: str(k.get("activated_at"))
            ):
                active[key["algorithm"]] = key["kid"]
            verifiers: dict[str, tuple[str, ECKey | RSAKey]] = {}
            for key in published:
                existing = self._verifiers.get(key["kid"])
                if existing is not None:
                    verifiers[key["kid"]] = existing
                    continue
                imported = JWKRegistry.import_key(dict(key["jwk"]))
                if isinstance(imported, ECKey | RSAKey):
                    verifiers[key["kid"]] = (key["algorithm"], imported)
            self._keys = published
            self._active = active
            self._verifiers = verifiers
            self._jwks = {"keys": [dict(k["jwk"]) for k in published]}
            self._loaded_at = self.clock()

    async def jwks(self) -> dict[str, Any]:
        """The JWK Set of this purpose's keys (next, active, retired)."""
        await self._load()
        return self._jwks

    async def _active_kid(self, alg: str, *, refresh: bool = False) -> str:
        await self._load(max_age=0.0 if refresh else None)
        kid = self._active.get(alg)
        if kid is None and not refresh:
            await self._load(max_age=self.refresh_min_interval_s)
            kid = self._active.get(alg)
        if kid is None:
            raise NoSigningKey(f"the signer has no active {self.purpose} key for {alg}")
        return kid

    # -- signing --------------------------------------------------------------------------------

    async def sign_jwt(self, claims: dict[str, Any], *, typ: str, alg: str = "ES256") -> str:
        """A compact JWS of ``claims`` with header ``{"alg", "kid", "typ"}``."""
        if alg not in SIGNING_ALGORITHMS:
            raise ValueError(f"unsupported JWS algorithm {alg}")
        payload = b64url(compact_json(claims))
        kid = await self._active_kid(alg)
        for attempt in (1, 2):
            signing_input = f"{b64url(compact_json({'alg': alg, 'kid': kid, 'typ': typ}))}.{payload}"
            try:
                signature = await self.batching.sign(signing_input.encode(), key_id=kid, algorithm=alg)
            except UpstreamError as error:
                # 404 unknown / 409 no longer active: a rotation happened; read the registry again.
                if attempt == 1 and error.status in (404, 409):
                    kid = await self._active_kid(alg, refresh=True)
                    continue
                raise
            return f"{signing_input}.{b64url(signature)}"
        raise AssertionError("unreachable")

    # -- verifying our own tokens (userinfo, introspection, logout hints) -----------------------

    async def verify_jwt(self, token: str, *, typ: str | None = None) -> dict[str, Any]:
        """The claims of one of our JWTs whose signature verifies (times are the caller's checks)."""
        header = unverified_header(token)
        kid, alg = header.get("kid"), header.get("alg")
        if not isinstance(kid, str) or alg not in SIGNING_ALGORITHMS:
            raise InvalidJwt("unknown key or algorithm")
        if typ is not None and header.get("typ") != typ:
            raise InvalidJwt(f"not a {typ}")
        await self._load()
        known = self._verifiers.get(kid)
        if known is None:
            await self._load(max_age=self.refresh_min_interval_s)  # a key published since
            known = self._verifiers.get(kid)
        if known is None or known[0] != alg:
            raise InvalidJwt("unknown key")
        try:
            payload = jws.deserialize_compact(token, known[1], algorithms=[alg]).payload
            claims = json.loads(payload)
        except (JoseError, ValueError) as error:
            raise InvalidJwt("the signature does not verify") from error
        if not isinstance(claims, dict):
            raise InvalidJwt("the payload is not a JSON object")
        return claims
