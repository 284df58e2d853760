"""KeyBackend over PKCS#11 (SoftHSM2 in dev/CI; any module in production, by configuration).

Every call runs on the token's single worker thread (see ``tsunagu.pkcs11.token``); a batch is one
call, so signing a thousand payloads costs one thread hand-off; a short call runs on the event
loop's thread instead when the token's settings allow it (``inline_calls``, SoftHSM2). Private-key
handles are cached per session: a reopened session (after the token came back) starts a fresh
cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pkcs11 import MGF, Attribute, Mechanism, ObjectClass

from tsunagu.pkcs11 import KeyNotFound, Pkcs11Token, TokenUnavailable
from tsunagu.pkcs11.keys import (
    find_private_key,
    generate_ec_p256_keypair,
    generate_ed25519_keypair,
    generate_rsa_keypair,
    to_cryptography_public_key,
)
from tsunagu.signer.domain.algorithms import Algorithm, sha256
from tsunagu.signer.domain.backend import Payload
from tsunagu.signer.domain.keys import PublicKey

# DER prefix of DigestInfo{sha256} (RFC 8017 §9.2 note 1): CKM_RSA_PKCS signs DigestInfo ‖ digest.
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
PSS_PARAMS = (Mechanism.SHA256, MGF.SHA256, 32)


def _sign_one(private_key: Any, algorithm: Algorithm, payload: Payload) -> bytes:
    value, prehashed = payload
    if algorithm is Algorithm.ES256:
        return bytes(private_key.sign(value if prehashed else sha256(value), mechanism=Mechanism.ECDSA))
    if algorithm is Algorithm.RS256:
        if prehashed:
            return bytes(private_key.sign(SHA256_DIGEST_INFO + value, mechanism=Mechanism.RSA_PKCS))
        return bytes(private_key.sign(value, mechanism=Mechanism.SHA256_RSA_PKCS))
    if algorithm is Algorithm.PS256:
        mechanism = Mechanism.RSA_PKCS_PSS if prehashed else Mechanism.SHA256_RSA_PKCS_PSS
        return bytes(private_key.sign(value, mechanism=mechanism, mechanism_param=PSS_PARAMS))
    return bytes(private_key.sign(value, mechanism=Mechanism.EDDSA))


# What may run on the event loop's thread when the token allows inline calls (≈ 0.1 ms per EC
# signature, ≈ 0.8 ms per RSA-2048 one on SoftHSM2): a call or two's worth, never a batch.
INLINE_EC_ITEMS = 8


def _short(algorithm: Algorithm, items: int) -> bool:
    if algorithm in (Algorithm.ES256, Algorithm.EDDSA):
        return items <= INLINE_EC_ITEMS
    return items == 1


class Pkcs11Backend:
    def __init__(self, token: Pkcs11Token) -> None:
        self.token = token
        self._handles: dict[str, Any] = {}
        self._session: Any = None

    def _private_key(self, session: Any, label: str) -> Any:
        if session is not self._session:  # reopened after an outage: old handles are void
            self._handles = {}
            self._session = session
        key = self._handles.get(label)
        if key is None:
            try:
                key = find_private_key(session, label=label)
            except KeyNotFound:
                # The registry says the key exists, so a missing object means the token is not
                # the one we know (removed, replaced): an outage, not a client error.
                raise TokenUnavailable("the signing key is not on the token") from None
            self._handles[label] = key
        return key

    async def generate(self, label: str, algorithm: Algorithm, key_size: int | None) -> PublicKey:
        key_id = label.encode()

        def generate(session: Any) -> PublicKey:
            if algorithm is Algorithm.ES256:
                public, _ = generate_ec_p256_keypair(session, label=label, key_id=key_id)
            elif algorithm is Algorithm.EDDSA:
                public, _ = generate_ed25519_keypair(session, label=label, key_id=key_id)
            else:
                public, _ = generate_rsa_keypair(session, label=label, key_id=key_id, bits=key_size or 2048)  # type: ignore[arg-type]
            return to_cryptography_public_key(public)

        # RSA-3072 generation can take seconds on a software token.
        return await self.token.run(generate, timeout_s=max(self.token.settings.call_timeout_s, 90.0))

    async def sign(self, label: str, algorithm: Algorithm, payloads: Sequence[Payload]) -> list[bytes]:
        def sign_all(session: Any) -> list[bytes]:
            private_key = self._private_key(session, label)
            return [_sign_one(private_key, algorithm, payload) for payload in payloads]

        return await self.token.run(sign_all, inline=_short(algorithm, len(payloads)))

    async def destroy(self, label: str) -> None:
        def destroy(session: Any) -> None:
            for object_class in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
                for item in session.get_objects({Attribute.CLASS: object_class, Attribute.LABEL: label}):
                    item.destroy()
            self._handles.pop(label, None)

        await self.token.run(destroy)

    async def healthy(self) -> bool:
        try:
            await self.token.run(lambda session: session.generate_random(64), timeout_s=2.0)
        except Exception:
            return False
        return True
