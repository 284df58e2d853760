"""BatchingSigner (libs/clients/signer.py) against the signer app on a real SoftHSM2 token:
concurrent calls for one key travel as one /v1/sign/batch call; each caller gets its own
signature or its own error."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from tests.signer.conftest import Signer
from tests.signer.test_signing import verify
from tsunagu.clients.internal import HttpxTransport, UpstreamError
from tsunagu.clients.signer import BatchingSigner, SignerClient


def _client(signer: Signer, caller: str = "idp") -> SignerClient:
    """A SignerClient whose HTTP goes to the in-process signer app."""
    client = SignerClient("http://signer.test", issuer=None)  # type: ignore[arg-type]
    client.transport = HttpxTransport(
        httpx.AsyncClient(transport=httpx.ASGITransport(app=signer.app), auth=signer.auth(caller))
    )
    return client


async def _audited_calls(signer: Signer) -> list[dict[str, Any]]:
    events = [json.loads(p) for p in await signer.outbox_payloads()]
    return [e for e in events if e["type"] == "tsunagu.signer.signature.created"]


async def test_concurrent_calls_share_batches_and_each_signature_verifies(signer: Signer):
    key = await signer.new_key("id-token", "ES256")
    client = _client(signer)
    batching = BatchingSigner(client, max_delay_s=0.002, max_batch=16)
    try:
        payloads = [f"token {n}".encode() for n in range(40)]
        signatures = await asyncio.gather(*(batching.sign(p, key_id=key["kid"]) for p in payloads))
    finally:
        await batching.aclose()
        await client.aclose()
    for payload, signature in zip(payloads, signatures, strict=True):
        verify(signer.public_key(key), "ES256", signature, payload)
    # 40 callers, at most 16 per batch: 3 calls when they all arrive in one turn of the loop.
    assert 3 <= batching.batches_sent <= 5
    audited = await _audited_calls(signer)
    assert len(audited) == batching.batches_sent
    assert sum(len(e["data"]["payload_sha256"]) for e in audited) == 40


async def test_calls_for_different_keys_or_algorithms_are_batched_apart(signer: Signer):
    es = await signer.new_key("id-token", "ES256")
    rs = await signer.new_key("id-token", "RS256")
    client = _client(signer)
    batching = BatchingSigner(client)
    try:
        results = await asyncio.gather(
            *(batching.sign(b"es", key_id=es["kid"]) for _ in range(5)),
            *(batching.sign(b"rs", purpose="id-token", algorithm="RS256") for _ in range(5)),
        )
    finally:
        await batching.aclose()
        await client.aclose()
    for signature in results[:5]:
        verify(signer.public_key(es), "ES256", signature, b"es")
    for signature in results[5:]:
        verify(signer.public_key(rs), "RS256", signature, b"rs")
    assert batching.batches_sent == 2


async def test_one_refused_item_fails_only_its_caller(make_signer):  # type: ignore[no-untyped-def]
    async with make_signer(max_payload_bytes=64) as signer:
        key = await signer.new_key("log", "ES256")
        client = _client(signer, "ca")
        batching = BatchingSigner(client)
        try:
            results = await asyncio.gather(
                batching.sign(b"fine 1", key_id=key["kid"]),
                batching.sign(b"x" * 65, key_id=key["kid"]),
                batching.sign(b"fine 2", key_id=key["kid"]),
                return_exceptions=True,
            )
        finally:
            await batching.aclose()
            await client.aclose()
        assert isinstance(results[1], UpstreamError) and results[1].status == 413
        verify(signer.public_key(key), "ES256", results[0], b"fine 1")
        verify(signer.public_key(key), "ES256", results[2], b"fine 2")


async def test_a_refused_batch_fails_every_caller_with_the_error(signer: Signer):
    client = _client(signer)
    batching = BatchingSigner(client)
    try:
        results = await asyncio.gather(
            *(batching.sign(b"x", key_id="no-such-key") for _ in range(3)), return_exceptions=True
        )
    finally:
        await batching.aclose()
        await client.aclose()
    assert all(isinstance(r, UpstreamError) and r.status == 404 for r in results)
    assert batching.batches_sent == 1


async def test_a_lone_call_is_sent_at_once_and_arguments_are_checked(signer: Signer):
    key = await signer.new_key("id-token", "ES256")
    client = _client(signer)
    batching = BatchingSigner(client, max_delay_s=5.0)  # a lone call never waits for the window
    try:
        signature = await asyncio.wait_for(batching.sign(b"alone", key_id=key["kid"]), 3)
        verify(signer.public_key(key), "ES256", signature, b"alone")
        with pytest.raises(ValueError, match="exactly one"):
            await batching.sign(b"x")
    finally:
        await batching.aclose()
        await client.aclose()
