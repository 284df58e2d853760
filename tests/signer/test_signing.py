"""Signing through the API on a real SoftHSM2 token: every algorithm verifies with `cryptography`."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tests.signer.conftest import Signer


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify(public_key, algorithm: str, signature: bytes, data: bytes, der: bool = False) -> None:  # type: ignore[no-untyped-def]
    if algorithm == "ES256":
        if not der:
            assert len(signature) == 64
            signature = encode_dss_signature(
                int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            )
        public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    elif algorithm == "RS256":
        public_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    elif algorithm == "PS256":
        public_key.verify(
            signature, data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256()
        )
    else:
        public_key.verify(signature, data)


CASES = [("ES256", None), ("RS256", 2048), ("RS256", 3072), ("PS256", 2048), ("EdDSA", None)]


@pytest.mark.parametrize(("algorithm", "size"), CASES)
async def test_each_algorithm_signs_data_and_digests_that_verify(
    signer: Signer, algorithm: str, size: int | None
):
    key = await signer.new_key("log", algorithm, **({"key_size": size} if size else {}))
    public_key = signer.public_key(key)
    data = "つなぐ — signed by the HSM".encode()
    response = await signer.call("POST", "/v1/sign", json={"key_id": key["kid"], "data": b64(data)})
    assert response.status_code == 200, response.text
    assert response.json()["algorithm"] == algorithm and response.json()["key_id"] == key["kid"]
    verify(public_key, algorithm, unb64(response.json()["signature"]), data)
    if algorithm != "EdDSA":
        by_digest = await signer.call(
            "POST", "/v1/sign", json={"key_id": key["kid"], "digest": b64(hashlib.sha256(data).digest())}
        )
        assert by_digest.status_code == 200, by_digest.text
        verify(public_key, algorithm, unb64(by_digest.json()["signature"]), data)
    with pytest.raises(InvalidSignature):
        verify(public_key, algorithm, unb64(response.json()["signature"]), data + b"!")


async def test_es256_der_format_for_x509_users(signer: Signer):
    key = await signer.new_key("log", "ES256")
    response = await signer.call(
        "POST", "/v1/sign", json={"purpose": "log", "data": b64(b"tbs"), "format": "der"}
    )
    signature = unb64(response.json()["signature"])
    assert signature[0] == 0x30  # DER SEQUENCE { r, s }
    verify(signer.public_key(key), "ES256", signature, b"tbs", der=True)


async def test_batch_signs_in_order_and_is_audited_as_one_event(signer: Signer):
    key = await signer.new_key("log", "ES256")
    items = [f"record {n}".encode() for n in range(200)]
    response = await signer.call(
        "POST", "/v1/sign/batch", json={"purpose": "log", "items": [{"data": b64(item)} for item in items]}
    )
    assert response.status_code == 200, response.text
    signatures = [unb64(s) for s in response.json()["signatures"]]
    for item, signature in zip(items, signatures, strict=True):
        verify(signer.public_key(key), "ES256", signature, item)
    audit = [json.loads(p) for p in await signer.outbox_payloads()]
    signed = [e for e in audit if e["type"] == "tsunagu.signer.signature.created"]
    assert len(signed) == 1
    assert signed[0]["data"]["payload_sha256"] == [hashlib.sha256(item).hexdigest() for item in items]
    assert signed[0]["data"]["caller"] == "ca" and signed[0]["partitionkey"] == key["kid"]


async def test_many_concurrent_callers_all_get_valid_signatures(signer: Signer):
    key = await signer.new_key("log", "ES256")

    async def one(n: int) -> None:
        data = f"concurrent {n}".encode()
        response = await signer.call(
            "POST",
            "/v1/sign",
            caller=["ca", "idp", "consent"][n % 3],
            json={"key_id": key["kid"], "data": b64(data)},
        )
        assert response.status_code == 200, response.text
        verify(signer.public_key(key), "ES256", unb64(response.json()["signature"]), data)

    await asyncio.gather(*(one(n) for n in range(150)))
    audit = [json.loads(p) for p in await signer.outbox_payloads()]
    assert sum(e["type"] == "tsunagu.signer.signature.created" for e in audit) == 150


async def test_sign_by_purpose_uses_the_active_key(signer: Signer):
    key = await signer.new_key("id-token", "ES256")
    response = await signer.call(
        "POST", "/v1/sign", caller="idp", json={"purpose": "id-token", "data": b64(b"jwt")}
    )
    assert response.json()["key_id"] == key["kid"]


async def test_an_es256_and_an_rs256_id_token_key_sign_side_by_side(signer: Signer):
    es = await signer.new_key("id-token", "ES256")
    rs = await signer.new_key("id-token", "RS256")
    for algorithm, key in (("ES256", es), ("RS256", rs)):
        response = await signer.call(
            "POST",
            "/v1/sign/batch",
            caller="idp",
            json={"purpose": "id-token", "algorithm": algorithm, "items": [{"data": b64(b"jwt")}]},
        )
        assert response.status_code == 200, response.text
        assert response.json()["key_id"] == key["kid"]
        verify(signer.public_key(key), algorithm, unb64(response.json()["signatures"][0]), b"jwt")
    states = {k["kid"]: k["state"] for k in (await signer.call("GET", "/v1/keys", "idp")).json()}
    assert states[es["kid"]] == states[rs["kid"]] == "active"
