"""Device keys: make a CSR and sign compact JWS requests with a key that never leaves the device."""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, utils
from cryptography.x509.oid import NameOID


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


class DeviceKey(Protocol):
    algorithm: str  # JWS alg

    def public_key(self) -> PublicKey: ...

    def jwk(self) -> dict[str, str]: ...

    def sign(self, data: bytes) -> bytes: ...

    def csr_pem(self) -> str: ...

    def sign_jws(self, claims: dict[str, Any], kid: str) -> str: ...

    def sign_compact(self, header: dict[str, Any], claims: dict[str, Any]) -> str: ...


def public_jwk(public_key: PublicKey) -> dict[str, str]:
    """The public JWK (RFC 7517/7518) of a P-256 or RSA key."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        numbers = public_key.public_numbers()
        size = (public_key.curve.key_size + 7) // 8
        return {
            "kty": "EC",
            "crv": "P-256",
            "x": b64url(numbers.x.to_bytes(size, "big")),
            "y": b64url(numbers.y.to_bytes(size, "big")),
        }
    rsa_numbers = public_key.public_numbers()
    return {
        "kty": "RSA",
        "n": b64url(rsa_numbers.n.to_bytes((rsa_numbers.n.bit_length() + 7) // 8, "big")),
        "e": b64url(rsa_numbers.e.to_bytes((rsa_numbers.e.bit_length() + 7) // 8, "big")),
    }


class JwsSigningKey:
    """What every device key shares: compact JWS over JSON claims with :meth:`sign` (raw JWS
    signature bytes: ``r || s`` for ES256, PKCS#1 v1.5 for RS256)."""

    algorithm = "ES256"

    def public_key(self) -> PublicKey:
        raise NotImplementedError

    def sign(self, data: bytes) -> bytes:
        raise NotImplementedError

    def jwk(self) -> dict[str, str]:
        return {**public_jwk(self.public_key()), "alg": self.algorithm, "use": "sig"}

    def sign_jws(self, claims: dict[str, Any], kid: str) -> str:
        return self.sign_compact({"alg": self.algorithm, "kid": kid, "typ": "JWT"}, claims)

    def sign_compact(self, header: dict[str, Any], claims: dict[str, Any]) -> str:
        """A compact JWS with this header (``alg`` is this key's) over these claims."""
        header = {**header, "alg": self.algorithm}
        signing_input = ".".join(
            b64url(json.dumps(part, separators=(",", ":"), ensure_ascii=False).encode())
            for part in (header, claims)
        )
        return f"{signing_input}.{b64url(self.sign(signing_input.encode('ascii')))}"


class SoftwareKey(JwsSigningKey):
    """An ECDSA P-256 key in memory (ES256): for tests and load generators, not for citizens."""

    algorithm = "ES256"

    def __init__(self, private_key: ec.EllipticCurvePrivateKey | None = None) -> None:
        self.private_key = private_key or ec.generate_private_key(ec.SECP256R1())

    def public_key(self) -> PublicKey:
        return self.private_key.public_key()

    def csr_pem(self) -> str:
        # The CA ignores the subject (it writes its own); a CSR still needs one.
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tsunagu-wallet")])
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(subject)
            .sign(self.private_key, hashes.SHA256())
        )
        return csr.public_bytes(serialization.Encoding.PEM).decode()

    def sign(self, data: bytes) -> bytes:
        r, s = utils.decode_dss_signature(self.private_key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def request_claims(**claims: Any) -> dict[str, Any]:
    """The members every signed CA request carries, plus the operation's own."""
    return {"aud": "tsunagu-ca", "iat": int(time.time()), "jti": secrets.token_urlsafe(16), **claims}
