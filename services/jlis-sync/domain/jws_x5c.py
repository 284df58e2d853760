"""Compact JWS signed with the key of the certificate it carries (``x5c``, RS256), as J-LIS and
the My Number Card sign: verified here against that certificate; who may have issued the
certificate is the caller's rule."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

MAX_TOKEN_BYTES = 32_768


class X5cJwsInvalid(ValueError):
    pass


@dataclass(frozen=True)
class VerifiedJws:
    certificate: x509.Certificate
    claims: dict[str, Any]


def _registry() -> jws.JWSRegistry:
    registry = jws.JWSRegistry(algorithms=["RS256"])
    registry.max_header_length = 16_384  # x5c carries a whole certificate
    return registry


def verify_x5c_jws(token: str) -> VerifiedJws:
    """Check the RS256 signature with x5c[0]'s key; return that certificate and the JSON claims."""
    if len(token) > MAX_TOKEN_BYTES or token.count(".") != 2:
        raise X5cJwsInvalid("not a compact JWS")
    try:
        segment = token.split(".", maxsplit=1)[0]
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
        chain = header.get("x5c")
        if (
            header.get("alg") != "RS256"
            or not isinstance(chain, list)
            or not chain
            or not isinstance(chain[0], str)
        ):
            raise X5cJwsInvalid("RS256 with an x5c certificate is required")
        certificate = x509.load_der_x509_certificate(base64.b64decode(chain[0]))
        key = RSAKey.import_key(
            certificate.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        claims = json.loads(
            jws.deserialize_compact(token, key, algorithms=["RS256"], registry=_registry()).payload
        )
    except X5cJwsInvalid:
        raise
    except (JoseError, ValueError, TypeError, json.JSONDecodeError) as exc:
        raise X5cJwsInvalid(f"the JWS does not verify ({type(exc).__name__})") from None
    if not isinstance(claims, dict):
        raise X5cJwsInvalid("the JWS payload is not a JSON object")
    return VerifiedJws(certificate, claims)
