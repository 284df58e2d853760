"""Bad input and wrong callers get a clear 4xx and change nothing (no signature, no audit event)."""

from __future__ import annotations

import json

import pytest

from tests.signer.conftest import Signer
from tests.signer.test_signing import b64


async def _signature_events(signer: Signer) -> int:
    return sum(
        json.loads(p)["type"] == "tsunagu.signer.signature.created" for p in await signer.outbox_payloads()
    )


@pytest.fixture
async def keys(signer: Signer) -> dict[str, str]:
    return {
        "ca": (await signer.new_key("ca-issuing", "ES256"))["kid"],
        "ed": (await signer.new_key("log", "EdDSA"))["kid"],
        "next": (await signer.new_key("receipt", "ES256", activate=False))["kid"],
    }


@pytest.mark.parametrize(
    ("caller", "body", "status", "problem"),
    [
        ("idp", {"key": "ca", "data": "aGk"}, 403, "key-not-allowed"),
        ("operator", {"key": "ca", "data": "aGk"}, 403, "caller-not-allowed"),
        ("ca", {"key_id": "no-such-key", "data": "aGk"}, 404, "unknown-key"),
        ("consent", {"purpose": "id-token", "data": "aGk"}, 404, "no-active-key"),
        ("consent", {"key": "next", "data": "aGk"}, 409, "key-not-active"),
        ("ca", {"key": "ca", "algorithm": "RS256", "data": "aGk"}, 422, "algorithm-mismatch"),
        ("ca", {"key": "ed", "digest": b64(b"\0" * 32)}, 422, "digest-not-allowed"),
        ("ca", {"key": "ca", "digest": b64(b"\0" * 31)}, 422, "invalid-digest"),
        ("ca", {"key": "ca", "data": "***not base64***"}, 422, "validation-failed"),
        ("ca", {"key": "ca", "data": "aGk", "digest": b64(b"\0" * 32)}, 422, "validation-failed"),
        ("ca", {"key": "ca"}, 422, "validation-failed"),
        ("ca", {"key": "ca", "purpose": "log", "data": "aGk"}, 422, "validation-failed"),
        ("ca", {"key": "ca", "data": "aGk", "format": "pem"}, 422, "validation-failed"),
        ("ca", {"key": "ca", "data": "aGk", "extra": 1}, 422, "validation-failed"),
    ],
)
async def test_sign_refusals(signer: Signer, keys: dict[str, str], caller, body, status, problem):  # type: ignore[no-untyped-def]
    body = dict(body)
    if "key" in body:
        body["key_id"] = keys[body.pop("key")]
    response = await signer.call("POST", "/v1/sign", caller, json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == f"urn:tsunagu:problem:{problem}"
    assert await _signature_events(signer) == 0


async def test_oversize_payload_and_batch_are_413(make_signer):  # type: ignore[no-untyped-def]
    async with make_signer(max_payload_bytes=64, max_batch_items=5) as signer:
        kid = (await signer.new_key("log", "ES256"))["kid"]
        big = await signer.call("POST", "/v1/sign", json={"key_id": kid, "data": b64(b"x" * 65)})
        assert big.status_code == 413 and big.json()["type"] == "urn:tsunagu:problem:item-too-large"
        many = await signer.call(
            "POST", "/v1/sign/batch", json={"key_id": kid, "items": [{"data": "aGk"}] * 6}
        )
        assert many.status_code == 413 and many.json()["type"] == "urn:tsunagu:problem:batch-too-large"
        one_bad = await signer.call(
            "POST", "/v1/sign/batch", json={"key_id": kid, "items": [{"data": "aGk"}, {"digest": b64(b"1")}]}
        )
        assert one_bad.status_code == 422  # all or nothing: the good item is not signed either
        assert await _signature_events(signer) == 0


async def test_rotation_is_admin_only(signer: Signer, keys: dict[str, str]):
    for caller in ("ca", "idp"):
        create = await signer.call("POST", "/v1/keys", caller, json={"purpose": "log", "algorithm": "ES256"})
        assert create.status_code == 403
        activate = await signer.call("POST", f"/v1/keys/{keys['next']}/activate", caller)
        assert activate.status_code == 403
    assert (await signer.call("GET", f"/v1/keys/{keys['next']}", "ca")).json()["state"] == "next"


async def test_unauthenticated_calls_are_401(signer: Signer):
    assert (await signer.client.post("/v1/sign", json={"purpose": "log", "data": "aGk"})).status_code == 401
    assert (await signer.client.get("/v1/jwks")).status_code == 401


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"purpose": "log", "algorithm": "RS256", "key_size": 1024}, "invalid-key-spec"),
        ({"purpose": "log", "algorithm": "ES256", "key_size": 384}, "invalid-key-spec"),
        ({"purpose": "log", "algorithm": "ES256", "allowed_callers": ["evil"]}, "invalid-key-spec"),
        ({"purpose": "nonsense", "algorithm": "ES256"}, "validation-failed"),
        ({"purpose": "log", "algorithm": "HS256"}, "validation-failed"),
    ],
)
async def test_bad_key_requests_create_nothing(signer: Signer, body, problem):  # type: ignore[no-untyped-def]
    response = await signer.call("POST", "/v1/keys", "operator", json=body)
    assert response.json()["type"] == f"urn:tsunagu:problem:{problem}"
    assert (await signer.call("GET", "/v1/keys", "operator")).json() == []


async def test_without_hsm_configuration_the_signer_refuses_and_is_not_ready(make_signer):  # type: ignore[no-untyped-def]
    async with make_signer(pkcs11=None) as signer:
        response = await signer.call("POST", "/v1/sign", json={"purpose": "log", "data": "aGk"})
        assert response.status_code == 503 and response.headers["retry-after"]
        assert response.json()["type"] == "urn:tsunagu:problem:hsm-not-configured"
        ready = await signer.client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["hsm"] == "unavailable"
