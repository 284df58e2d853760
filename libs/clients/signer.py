"""Client of services/signer, for every service that needs a platform signature.

    signer = SignerClient("http://signer:8101", issuer)          # issuer: this service's token issuer
    signature = await signer.sign(b"...", purpose="id-token")   # raw r||s for ES256 (JWS)
    der = await signer.sign(tbs, key_id=kid, signature_format="der")   # for X.509 / CRL / OCSP
    many = await signer.sign_batch([b"a", b"b"], purpose="log")
    jwks = await signer.jwks(purpose="id-token")
    batching = BatchingSigner(signer)                            # concurrent calls → one batch call
    signature = await batching.sign(b"...", key_id=kid)

Errors come back as :class:`tsunagu.clients.UpstreamError` carrying the signer's problem document
(``unknown-key``, ``key-not-active``, ``key-not-allowed``, ``token-unavailable`` with 503…).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tsunagu.auth import ServiceTokenIssuer
from tsunagu.clients.internal import InternalClient, UpstreamError


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
        result: dict[str, Any] = await self.request("POST", "/v1/keys", json=body, timeout_s=120.0)
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


_Selector = tuple[str | None, str | None, str | None, str]


@dataclass
class _Pending:
    items: list[tuple[bytes, asyncio.Future[bytes]]] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class BatchingSigner:
    """Concurrent ``sign`` calls for the same key coalesced into one ``/v1/sign/batch`` call.

    A call made while no batch of its key is in flight goes out on the next turn of the event loop
    (calls made in the same turn — an ID token and its access token — travel together); while one
    is in flight, calls gather for at most ``max_delay_s`` or until ``max_batch`` are waiting. Each
    caller gets its own signature or the error. A batch refused for one of its items (too large,
    not a valid digest …) is retried item by item so only that caller sees the refusal.
    """

    def __init__(self, client: SignerClient, *, max_delay_s: float = 0.001, max_batch: int = 64) -> None:
        if max_batch < 1 or max_delay_s < 0:
            raise ValueError("max_batch ≥ 1 and max_delay_s ≥ 0")
        self.client = client
        self.max_delay_s = max_delay_s
        self.max_batch = max_batch
        self._pending: dict[_Selector, _Pending] = {}
        self._in_flight: dict[_Selector, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches_sent = 0  # how many signer calls were made (tests, metrics)

    async def sign(
        self,
        data: bytes,
        *,
        key_id: str | None = None,
        purpose: str | None = None,
        algorithm: str | None = None,
        signature_format: str = "raw",
    ) -> bytes:
        """Sign ``data`` with the key ``key_id`` (or the active key of ``purpose``)."""
        if (key_id is None) == (purpose is None):
            raise ValueError("give exactly one of key_id or purpose")
        selector: _Selector = (key_id, purpose, algorithm, signature_format)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        pending = self._pending.setdefault(selector, _Pending())
        pending.items.append((data, future))
        if len(pending.items) >= self.max_batch:
            self._flush(selector)
        elif pending.timer is None:
            delay = self.max_delay_s if self._in_flight.get(selector, 0) else 0.0
            pending.timer = asyncio.get_running_loop().call_later(delay, self._flush, selector)
        return await future

    def _flush(self, selector: _Selector) -> None:
        pending = self._pending.pop(selector, None)
        if pending is None:
            return
        if pending.timer is not None:
            pending.timer.cancel()
        items = [(data, future) for data, future in pending.items if not future.done()]
        if not items:
            return
        self._in_flight[selector] = self._in_flight.get(selector, 0) + 1
        task = asyncio.get_running_loop().create_task(self._send(selector, items))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, selector: _Selector, items: list[tuple[bytes, asyncio.Future[bytes]]]) -> None:
        key_id, purpose, algorithm, signature_format = selector
        try:
            self.batches_sent += 1
            try:
                signatures = await self.client.sign_batch(
                    [data for data, _ in items],
                    key_id=key_id,
                    purpose=purpose,
                    algorithm=algorithm,
                    signature_format=signature_format,
                )
            except UpstreamError as error:
                if len(items) > 1 and error.status in (413, 422):
                    await asyncio.gather(*(self._one(selector, data, future) for data, future in items))
                    return
                _fail(items, error)
                return
            except Exception as error:
                _fail(items, error)
                return
            for (_, future), signature in zip(items, signatures, strict=True):
                if not future.done():
                    future.set_result(signature)
        finally:
            left = self._in_flight.get(selector, 1) - 1
            if left:
                self._in_flight[selector] = left
            else:
                self._in_flight.pop(selector, None)

    async def _one(self, selector: _Selector, data: bytes, future: asyncio.Future[bytes]) -> None:
        key_id, purpose, algorithm, signature_format = selector
        try:
            self.batches_sent += 1
            signature = await self.client.sign(
                data, key_id=key_id, purpose=purpose, algorithm=algorithm, signature_format=signature_format
            )
        except Exception as error:
            _fail([(data, future)], error)
        else:
            if not future.done():
                future.set_result(signature)

    async def aclose(self) -> None:
        """Send what is waiting and wait for the batches in flight."""
        for selector in list(self._pending):
            self._flush(selector)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _fail(items: list[tuple[bytes, asyncio.Future[bytes]]], error: BaseException) -> None:
    for _, future in items:
        if not future.done():
            future.set_exception(error)
