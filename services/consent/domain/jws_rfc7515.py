"""Compact JWS (RFC 7515) signed by a citizen's phone key, certificate chain in ``x5c`` (§4.1.6).

Only what the wallet produces is accepted: ``alg`` ES256 or RS256 (RFC 7518 §3.3/§3.4), the
``typ`` the caller expects, no ``crit``, no unencoded payload (RFC 7797), at most four
certificates. The signature is checked with the first certificate's key; whose key that is, and
whether it counts, is for the CA to say (``certificates.py``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from tsunagu.consent.domain.errors import MalformedJws, SignatureInvalid

ALGORITHMS = ("ES256", "RS256")
MAX_JWS_BYTES = 32_768
MAX_CHAIN = 4


def b64url_decode(text: str) -> bytes:
    if _B64URL.fullmatch(text) is None:
        raise MalformedJws("a JWS segment is not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise MalformedJws("a JWS segment is not base64url") from None


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# The alphabet only, no padding (RFC 7515 §2); matched against the whole segment.
_B64URL = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class ParsedJws:
    header: dict[str, Any]
    payload: bytes
    chain: list[x509.Certificate]  # x5c: the signer's certificate first
    signing_input: bytes
    signature: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return self.chain[0]


def parse(token: str, typ: str) -> ParsedJws:
    """Split and decode ``token``; raise :class:`MalformedJws` on anything unexpected."""
    if not isinstance(token, str) or len(token) > MAX_JWS_BYTES:
        raise MalformedJws("the JWS is missing or too large")
    parts = token.split(".")
    if len(parts) != 3:
        raise MalformedJws("not a compact JWS (three segments)")
    try:
        header = json.loads(b64url_decode(parts[0]))
    except ValueError:
        raise MalformedJws("the JWS header is not JSON") from None
    if not isinstance(header, dict):
        raise MalformedJws("the JWS header is not a JSON object")
    if header.get("typ") != typ:
        raise MalformedJws(f"typ must be {typ}")
    if header.get("alg") not in ALGORITHMS:
        raise MalformedJws("alg must be ES256 or RS256")
    if "crit" in header or header.get("b64") is False:
        raise MalformedJws("no critical header parameters and no unencoded payloads")
    chain = header.get("x5c")
    if not isinstance(chain, list) or not 1 <= len(chain) <= MAX_CHAIN:
        raise MalformedJws("x5c with the certificate chain is required")
    certificates = []
    for entry in chain:
        if not isinstance(entry, str):
            raise MalformedJws("x5c entries are base64 DER certificates")
        try:  # x5c is standard base64, not base64url (RFC 7515 §4.1.6)
            certificates.append(x509.load_der_x509_certificate(base64.b64decode(entry, validate=True)))
        except (binascii.Error, ValueError):
            raise MalformedJws("an x5c certificate does not parse") from None
    return ParsedJws(
        header=header,
        payload=b64url_decode(parts[1]),
        chain=certificates,
        signing_input=f"{parts[0]}.{parts[1]}".encode("ascii"),
        signature=b64url_decode(parts[2]),
    )


def verify_signature(parsed: ParsedJws) -> None:
    """Raise :class:`SignatureInvalid` unless the signature verifies with x5c[0]'s key."""
    verify_with_key(
        parsed.certificate.public_key(), parsed.header["alg"], parsed.signing_input, parsed.signature
    )


def verify_with_key(key: Any, algorithm: str, signing_input: bytes, signature: bytes) -> None:
    try:
        if algorithm == "ES256" and isinstance(key, ec.EllipticCurvePublicKey):
            if key.curve.name != "secp256r1" or len(signature) != 64:
                raise SignatureInvalid("ES256 needs a P-256 key and a 64-byte signature")
            der = utils.encode_dss_signature(
                int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            )
            key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
        elif algorithm == "RS256" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
        else:
            raise SignatureInvalid("alg does not match the certificate's key")
    except InvalidSignature:
        raise SignatureInvalid("the signature does not verify") from None
