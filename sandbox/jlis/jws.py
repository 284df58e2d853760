"""Compact JWS (RFC 7515) with RS256 only: push notifications and basic 4 consents.

Written out rather than taken from joserfc so the card's signing function (which only ever sees
bytes, like the real card) can make a consent, and so verification accepts exactly one algorithm.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa


class JwsInvalid(ValueError):
    """The token is not a well-formed RS256 compact JWS or its signature does not verify."""


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    if not text.isascii() or "=" in text:
        raise ValueError("not unpadded base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def x5c(certificate: x509.Certificate) -> str:
    """An ``x5c`` entry: standard (not URL-safe) base64 of the DER (RFC 7515 §4.1.6)."""
    return base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode("ascii")


def sign_compact(
    payload: dict[str, Any], certificate: x509.Certificate, sign: Callable[[bytes], bytes]
) -> str:
    """``header.payload.signature`` with ``alg`` RS256 and ``x5c`` = [certificate]."""
    header = {"alg": "RS256", "x5c": [x5c(certificate)]}
    signing_input = ".".join(
        b64url_encode(json.dumps(part, ensure_ascii=False, separators=(",", ":")).encode())
        for part in (header, payload)
    )
    return f"{signing_input}.{b64url_encode(sign(signing_input.encode('ascii')))}"


@dataclass(frozen=True)
class CompactJws:
    header: dict[str, Any]
    payload: dict[str, Any]
    signing_input: bytes
    signature: bytes

    def verify(self, public_key: rsa.RSAPublicKey) -> None:
        """Raise :class:`JwsInvalid` unless the signature verifies under ``public_key``."""
        try:
            public_key.verify(self.signature, self.signing_input, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise JwsInvalid("signature does not verify") from None


def parse_compact(token: str) -> CompactJws:
    """Split and decode a compact RS256 JWS with a JSON object payload (nothing verified yet)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise JwsInvalid("not a compact JWS")
    try:
        header = json.loads(b64url_decode(parts[0]))
        payload = json.loads(b64url_decode(parts[1]))
        signature = b64url_decode(parts[2])
    except (ValueError, UnicodeDecodeError):
        raise JwsInvalid("not a compact JWS") from None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise JwsInvalid("header and payload must be JSON objects")
    # RFC 7515 §4.1.11: an unknown critical extension must make us refuse
    if header.get("alg") != "RS256" or "crit" in header:
        raise JwsInvalid("only RS256 without crit is accepted")
    return CompactJws(header, payload, f"{parts[0]}.{parts[1]}".encode("ascii"), signature)
