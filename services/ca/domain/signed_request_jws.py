"""Requests the wallet signs with a key the CA certified (compact JWS, RFC 7515).

Header: ``alg`` (ES256, ES384, RS256, PS256) and ``kid`` = the serial (lower-case hex) of the
certificate whose key signed. Payload: a JSON object with ``aud`` = ``tsunagu-ca``, ``iat``
(seconds), ``jti`` (unique, ≤ 64 characters) and the operation's own members. The CA looks the
certificate up in its own records — the caller never tells it whose key it is — so the person
is the certificate's, never the body's.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey

from tsunagu.ca.domain.errors import InvalidSignedRequest, SignedRequestStale

AUDIENCE = "tsunagu-ca"
MAX_REQUEST_BYTES = 32_768
ALGORITHMS: dict[str, type[ec.EllipticCurvePublicKey] | type[rsa.RSAPublicKey]] = {
    "ES256": ec.EllipticCurvePublicKey,
    "ES384": ec.EllipticCurvePublicKey,
    "RS256": rsa.RSAPublicKey,
    "PS256": rsa.RSAPublicKey,
}
_REGISTRY = jws.JWSRegistry(algorithms=list(ALGORITHMS))


@dataclass(frozen=True)
class UnverifiedRequest:
    kid: str
    algorithm: str
    token: str


def _segment(text: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def read_header(token: str) -> UnverifiedRequest:
    """Which certificate the request names (nothing is trusted until :func:`verify_request`)."""
    if len(token) > MAX_REQUEST_BYTES or token.count(".") != 2:
        raise InvalidSignedRequest("not a compact JWS")
    try:
        header = _segment(token.split(".", 1)[0])
    except (ValueError, UnicodeDecodeError):
        raise InvalidSignedRequest("the JWS header does not decode") from None
    if not isinstance(header, dict):
        raise InvalidSignedRequest("the JWS header is not an object")
    kid, algorithm = header.get("kid"), header.get("alg")
    if not isinstance(kid, str) or not 0 < len(kid) <= 40 or algorithm not in ALGORITHMS:
        raise InvalidSignedRequest("kid (certificate serial) and alg (ES256, ES384, RS256, PS256) required")
    return UnverifiedRequest(kid.lower(), str(algorithm), token)


def _jwk(key: CertificatePublicKeyTypes) -> ECKey | RSAKey:
    pem = key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    return ECKey.import_key(pem) if isinstance(key, ec.EllipticCurvePublicKey) else RSAKey.import_key(pem)


def verify_request(
    request: UnverifiedRequest,
    public_key: CertificatePublicKeyTypes,
    *,
    now: datetime,
    max_age: timedelta,
) -> dict[str, Any]:
    """Check the signature with the certificate's key, audience and freshness; return the claims."""
    if not isinstance(public_key, ALGORITHMS[request.algorithm]):
        raise InvalidSignedRequest("alg does not match the certificate's key")
    try:
        payload = jws.deserialize_compact(
            request.token, _jwk(public_key), algorithms=[request.algorithm], registry=_REGISTRY
        ).payload
        claims = json.loads(payload)
    except (JoseError, ValueError, TypeError):
        raise InvalidSignedRequest("the signature does not verify") from None
    if not isinstance(claims, dict):
        raise InvalidSignedRequest("the payload is not a JSON object")
    if claims.get("aud") != AUDIENCE:
        raise InvalidSignedRequest(f"aud must be {AUDIENCE}")
    jti, iat = claims.get("jti"), claims.get("iat")
    if not isinstance(jti, str) or not 0 < len(jti) <= 64:
        raise InvalidSignedRequest("jti (≤ 64 characters) required")
    if not isinstance(iat, int) or isinstance(iat, bool):
        raise InvalidSignedRequest("iat (seconds) required")
    age = now.timestamp() - iat
    if age > max_age.total_seconds() or age < -60:
        raise SignedRequestStale("iat is too old or in the future")
    return claims
