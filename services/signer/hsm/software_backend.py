"""KeyBackend in process memory, for domain unit tests only — never wired into the service."""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

from tsunagu.signer.domain.algorithms import Algorithm, sha256
from tsunagu.signer.domain.backend import Payload
from tsunagu.signer.domain.keys import PublicKey

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


class SoftwareBackend:
    def __init__(self) -> None:
        self.keys: dict[str, PrivateKey] = {}
        self.available = True

    async def generate(self, label: str, algorithm: Algorithm, key_size: int | None) -> PublicKey:
        key: PrivateKey
        if algorithm is Algorithm.ES256:
            key = ec.generate_private_key(ec.SECP256R1())
        elif algorithm is Algorithm.EDDSA:
            key = ed25519.Ed25519PrivateKey.generate()
        else:
            key = rsa.generate_private_key(65537, key_size or 2048)
        self.keys[label] = key
        return key.public_key()

    async def sign(self, label: str, algorithm: Algorithm, payloads: Sequence[Payload]) -> list[bytes]:
        key = self.keys[label]
        return [self._sign(key, algorithm, payload) for payload in payloads]

    def _sign(self, key: PrivateKey, algorithm: Algorithm, payload: Payload) -> bytes:
        digest = payload.value if payload.prehashed else sha256(payload.value)
        prehashed = utils.Prehashed(hashes.SHA256())
        if isinstance(key, ec.EllipticCurvePrivateKey):
            r, s = utils.decode_dss_signature(key.sign(digest, ec.ECDSA(prehashed)))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        if isinstance(key, rsa.RSAPrivateKey):
            scheme: padding.AsymmetricPadding = (
                padding.PKCS1v15()
                if algorithm is Algorithm.RS256
                else padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
            )
            return key.sign(digest, scheme, prehashed)
        return key.sign(payload.value)

    async def destroy(self, label: str) -> None:
        self.keys.pop(label, None)

    async def healthy(self) -> bool:
        return self.available
