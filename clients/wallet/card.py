"""The My Number Card as the wallet uses it: its JPKI signing certificate and signatures made by
the card (in dev, the J-LIS sandbox's card API stands in for NFC and the card's chip)."""

from __future__ import annotations

import base64
import json
import time
from typing import Protocol

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tsunagu.wallet.keys import b64url


class Card(Protocol):
    async def signing_certificate_pem(self) -> str: ...

    async def sign(self, data: bytes) -> bytes: ...


class SandboxCard:
    """A card of the J-LIS sandbox (``POST /cards`` made it); signs with its signing key."""

    def __init__(self, http: httpx.AsyncClient, card_id: str) -> None:
        self.http = http
        self.card_id = card_id

    async def signing_certificate_pem(self) -> str:
        response = await self.http.get(f"/cards/{self.card_id}")
        response.raise_for_status()
        return str(response.json()["signing_certificate"])

    async def sign(self, data: bytes) -> bytes:
        response = await self.http.post(f"/cards/{self.card_id}/sign", json={"data": b64url(data)})
        response.raise_for_status()
        signature = response.json()["signature"]
        return base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))


async def basic4_consent(card: Card, operator: str) -> str:
    """The citizen's consent (signed by the card) to the latest-basic-4 service for ``operator``."""
    pem = await card.signing_certificate_pem()
    certificate = x509.load_pem_x509_certificate(pem.encode())
    header = {"alg": "RS256", "x5c": [base64.b64encode(certificate.public_bytes(Encoding.DER)).decode()]}
    payload = {
        "purpose": "jlis-basic4",
        "serial": format(certificate.serial_number, "x"),
        "operator": operator,
        "iat": int(time.time()),
    }
    signing_input = ".".join(
        b64url(json.dumps(part, separators=(",", ":"), ensure_ascii=False).encode())
        for part in (header, payload)
    )
    return f"{signing_input}.{b64url(await card.sign(signing_input.encode('ascii')))}"
