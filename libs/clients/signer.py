"""Client of services/signer, for every service that needs a platform signature.

    signer = SignerClient("http://signer:8101", issuer)          # issuer: this service's token issuer
    signature = await signer.sign(b"...", purpose="id-token")   # raw r||s for ES256 (JWS)
    der = await signer.sign(tbs, key_id=kid, signature_format="der")   # for X.509 / CRL / OCSP
    many = await signer.sign_batch([b"a", b"b"], purpose="log")
    jwks = await signer.jwks(purpose="id-token")

Errors come back as :class:`tsunagu.clients.UpstreamError` carrying the signer's problem document
(``unknown-key``, ``key-not-active``, ``key-not-allowed``, ``token-unavailable`` with 503…).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tsunagu.auth import ServiceTokenIssuer
from tsunagu.clients.internal import InternalClient


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SignerClient(InternalClient):
    def __init__(self, base_url: str, issuer: ServiceTokenIssuer, *, timeout_s: float = 10.0) -> None:
        super().__init__("signer", base_url, issuer, timeout_s=timeout_s)

    @staticmethod
    def _selector(
        key_id: str | None, purpose: str | None, algorithm: str | None, signature_format: str
    ) -> dict[str, Any]:
        if (key_id is None) == (purpose is None):
            raise ValueError("give exactly one of key_id or purpose")
        body: dict[str, Any] = {"format": signature_format}
        body.update(
            {k: v for k, v in (("key_id", key_id), ("purpose", purpose), ("algorithm", algorithm)) if v}
        )
        return body

    async def sign(
        self,
        data: bytes | None = None,
        *,
        digest: bytes | None = None,
        key_id: str | None = None,
        purpose: str | None = None,
        algorithm: str | None = None,
        signature_format: str = "raw",
    ) -> bytes:
        """Sign ``data`` (or a SHA-256 ``digest``) and return the signature bytes."""
        body = self._selector(key_id, purpose, algorithm, signature_format)
        body.update(
            {"data": _b64(data)} if digest is None and data is not None else {"digest": _b64(digest or b"")}
        )
        result = await self.request("POST", "/v1/sign", json=body)
        return _unb64(result["signature"])

    async def sign_batch(
        self,
        items: Sequence[bytes],
        *,
        prehashed: bool = False,
        key_id: str | None = None,
        purpose: str | None = None,
        algorithm: str | None = None,
        signature_format: str = "raw",
    ) -> list[bytes]:
        """Sign many payloads (or digests) with one key in one call, all or nothing, in order."""
        body = self._selector(key_id, purpose, algorithm, signature_format)
        field = "digest" if prehashed else "data"
        body["items"] = [{field: _b64(item)} for item in items]
        result = await self.request("POST", "/v1/sign/batch", json=body)
        return [_unb64(signature) for signature in result["signatures"]]

    async def jwks(self, purpose: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "GET", "/v1/jwks", params={"purpose": purpose} if purpose else None
        )
        return result

    async def key(self, kid: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", f"/v1/keys/{kid}")
        return result

    async def keys(self, purpose: str | None = None) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.request(
            "GET", "/v1/keys", params={"purpose": purpose} if purpose else None
        )
        return result

    # Rotation (the operator's identity only).
    async def create_key(
        self,
        purpose: str,
        algorithm: str,
        key_size: int | None = None,
        allowed_callers: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"purpose": purpose, "algorithm": algorithm}
        if key_size is not None:
            body["key_size"] = key_size
        if allowed_callers is not None:
            body["allowed_callers"] = list(allowed_callers)
        # RSA-3072 generation inside a software token can take many seconds on a busy machine.
        result: dict[str, Any] = await self.request("POST", "/v1/keys", json=body, timeout=120.0)
        return result

    async def transition(self, kid: str, action: str) -> dict[str, Any]:
        """``action``: ``activate``, ``retire`` or ``destroy``."""
        result: dict[str, Any] = await self.request("POST", f"/v1/keys/{kid}/{action}")
        return result

    def remote_signer(self, *, key_id: str, algorithm: str) -> RemoteKey:
        """This key as an X.509 remote signer (DER signatures), for ``tsunagu.x509``."""
        return RemoteKey(self, key_id, algorithm)


@dataclass(frozen=True)
class RemoteKey:
    """One signer key seen as ``tsunagu.x509.RemoteSigner``: X.509 wants DER ECDSA signatures."""

    client: SignerClient
    key_id: str
    algorithm: str

    async def sign(self, payload: bytes) -> bytes:
        return await self.client.sign(
            payload, key_id=self.key_id, algorithm=self.algorithm, signature_format="der"
        )
