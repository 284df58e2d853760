"""The signature algorithms the signer offers, named as JOSE names them (RFC 7518, RFC 8037)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum


class Algorithm(StrEnum):
    ES256 = "ES256"  # ECDSA P-256 over SHA-256
    RS256 = "RS256"  # RSASSA-PKCS1-v1_5 with SHA-256
    PS256 = "PS256"  # RSASSA-PSS with SHA-256, MGF1-SHA-256, salt length 32
    EDDSA = "EdDSA"  # Ed25519 (pure: the signer never pre-hashes)


class SignatureFormat(StrEnum):
    RAW = "raw"  # ECDSA r||s, as JWS wants it
    DER = "der"  # ECDSA Ecdsa-Sig-Value, as X.509, CRLs and OCSP want it


@dataclass(frozen=True)
class AlgorithmSpec:
    key_type: str  # JWK kty
    key_sizes: tuple[int, ...]  # allowed RSA modulus sizes; () when the curve fixes the size
    accepts_digest: bool  # may the caller send a SHA-256 digest instead of the data?


SPECS: dict[Algorithm, AlgorithmSpec] = {
    Algorithm.ES256: AlgorithmSpec("EC", (), accepts_digest=True),
    Algorithm.RS256: AlgorithmSpec("RSA", (2048, 3072), accepts_digest=True),
    Algorithm.PS256: AlgorithmSpec("RSA", (2048, 3072), accepts_digest=True),
    Algorithm.EDDSA: AlgorithmSpec("OKP", (), accepts_digest=False),
}
DIGEST_SIZE = 32


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
