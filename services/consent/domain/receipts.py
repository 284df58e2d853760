"""The platform's receipt: the signer's ``receipt`` key countersigns a recorded decision.

A compact JWS, header ``{"alg", "kid", "typ": "tsunagu-consent-receipt+jwt"}``, payload the RFC 8785
form of ``{"iss", "decision_id", "decision_sha256", "sequence", "recorded_at", "recipient",
"action", "user_number"}``: the citizen (and anyone they show it to) can prove the platform recorded
exactly that decision as the citizen's ``sequence``-th, at that time. The key never leaves the HSM.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import httpx

from tsunagu.clients.internal import UpstreamError
from tsunagu.consent.domain.errors import ReceiptUnavailable
from tsunagu.consent.domain.jcs_rfc8785 import canonical
from tsunagu.consent.domain.jws_rfc7515 import b64url_encode

RECEIPT_TYP = "tsunagu-consent-receipt+jwt"
ISSUER = "tsunagu-consent"


class KeySource(Protocol):
    async def keys(self, purpose: str | None = None) -> list[dict[str, Any]]: ...

    async def key(self, kid: str) -> dict[str, Any]: ...


class Signs(Protocol):
    async def sign(
        self,
        data: bytes,
        *,
        key_id: str | None = None,
        purpose: str | None = None,
        algorithm: str | None = None,
        signature_format: str = "raw",
    ) -> bytes: ...


class Receipts:
    """Countersigns through the signer (concurrent receipts travel in one batch call)."""

    def __init__(self, keys: KeySource, signer: Signs) -> None:
        self.keys = keys
        self.signer = signer
        self._active: dict[str, Any] | None = None
        self._lock = asyncio.Lock()

    async def active_key(self, *, refresh: bool = False) -> dict[str, Any]:
        async with self._lock:
            if self._active is None or refresh:
                try:
                    found = [k for k in await self.keys.keys(purpose="receipt") if k["state"] == "active"]
                except (UpstreamError, httpx.HTTPError) as error:
                    raise ReceiptUnavailable(f"the signer did not list receipt keys ({error})") from None
                if not found:
                    raise ReceiptUnavailable("the signer has no active receipt key")
                self._active = found[0]
            return self._active

    async def countersign(self, claims: dict[str, Any]) -> tuple[str, str]:
        """(compact JWS, kid) over ``claims``; one retry on a rotated key."""
        for attempt in (0, 1):
            key = await self.active_key(refresh=attempt == 1)
            header = {"alg": key["algorithm"], "kid": key["kid"], "typ": RECEIPT_TYP}
            signing_input = (
                b64url_encode(canonical(header)) + "." + b64url_encode(canonical({"iss": ISSUER, **claims}))
            )
            try:
                signature = await self.signer.sign(signing_input.encode("ascii"), key_id=key["kid"])
            except UpstreamError as error:
                if attempt == 0 and error.status in (403, 404, 409, 422):
                    continue  # the key was retired or replaced: look again once
                raise ReceiptUnavailable(f"the signer refused ({error.status})") from None
            except httpx.HTTPError as error:
                raise ReceiptUnavailable(f"the signer did not answer ({error})") from None
            return f"{signing_input}.{b64url_encode(signature)}", str(key["kid"])
        raise ReceiptUnavailable("the signer refused")  # pragma: no cover - loop always returns

    async def public_key(self, kid: str) -> dict[str, Any]:
        """The receipt key's public forms (``jwk``, ``public_key_pem``) for exports."""
        view = await self.keys.key(kid)
        return {"kid": kid, "algorithm": view["algorithm"], "jwk": view["jwk"], "pem": view["public_key_pem"]}
