"""Device keys inside a PKCS#11 token — the phone's secure element (SoftHSM2 stands in for it).

Keys are generated on the token (``CKA_TOKEN``, ``CKA_PRIVATE``, ``CKA_SENSITIVE``, not
``CKA_EXTRACTABLE``) and found again after a restart by their ``CKA_ID``; only their public halves,
ids and labels ever leave the token. Signing goes through :class:`tsunagu.pkcs11.Pkcs11Token`, whose
one worker thread owns the session (SoftHSM2 crashes when sessions are used from several threads).

    token = DeviceToken.open(module_path, "phone-1", pin)
    key = token.generate("authentication", "ES256")       # new key pair on the token
    csr = key.csr_pem()                                    # PKCS#10 signed on the token
    again = token.key(key.reference)                       # after a restart
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID
from pkcs11 import Attribute, ObjectClass
from pydantic import SecretStr

from tsunagu.pkcs11 import (
    Pkcs11Settings,
    Pkcs11Token,
    ecdsa_raw_to_der,
    find_private_key,
    find_public_key,
    generate_ec_p256_keypair,
    generate_rsa_keypair,
    sign_ecdsa_p256_sha256,
    sign_rsa_pkcs1v15_sha256,
    to_cryptography_public_key,
)
from tsunagu.wallet.keys import JwsSigningKey, PublicKey
from tsunagu.x509 import der
from tsunagu.x509.algorithms import algorithm_identifier

ALGORITHMS = ("ES256", "RS256")
LABEL_PREFIX = "tsunagu-wallet"
# RSA generation is ≈ 0.2-0.4 s on SoftHSM2; leave room on a loaded machine.
GENERATE_TIMEOUT_S = 30.0
PROTECTIONS = {
    "sensitive": Attribute.SENSITIVE,
    "extractable": Attribute.EXTRACTABLE,
    "always_sensitive": Attribute.ALWAYS_SENSITIVE,
    "never_extractable": Attribute.NEVER_EXTRACTABLE,
    "local": Attribute.LOCAL,
    "token": Attribute.TOKEN,
    "private": Attribute.PRIVATE,
}


@dataclass(frozen=True)
class KeyReference:
    """How a key is found on its token again: ``CKA_ID`` (hex), ``CKA_LABEL``, JWS algorithm."""

    key_id: str
    label: str
    algorithm: str


def build_csr_der(public_key: PublicKey, algorithm: str, sign: Any) -> bytes:
    """A PKCS#10 request (RFC 2986 §4) for ``public_key``, signed by ``sign(info) -> JWS signature``.

    ``cryptography`` cannot sign with a key it does not hold, so the CertificationRequestInfo is
    encoded here; the CA ignores the subject (it writes its own) but a request needs one.
    """
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tsunagu-wallet")])
    info = der.encode(
        der.SEQUENCE,
        der.integer(0)
        + subject.public_bytes()
        + public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        + der.encode(der.CONTEXT_0, b""),  # attributes: none
    )
    signature = sign(info)
    if algorithm == "ES256":
        signature = ecdsa_raw_to_der(signature)  # X.509 carries ECDSA as DER Ecdsa-Sig-Value
    request = der.encode(der.SEQUENCE, info + algorithm_identifier(algorithm) + der.bit_string(signature))
    if not x509.load_der_x509_csr(request).is_signature_valid:
        raise ValueError("the token's signature over the certificate request does not verify")
    return request


class Pkcs11DeviceKey(JwsSigningKey):
    """A key pair on a PKCS#11 token, used through the token's single worker thread.

    :meth:`sign` blocks for the token's answer (a few milliseconds); async callers on an event loop
    accept that pause, as the wallet's CLI does.
    """

    def __init__(self, token: Pkcs11Token, reference: KeyReference, public_key: PublicKey) -> None:
        self.token = token
        self.reference = reference
        self.algorithm = reference.algorithm
        self._public_key = public_key

    @property
    def key_id(self) -> bytes:
        return bytes.fromhex(self.reference.key_id)

    def public_key(self) -> PublicKey:
        return self._public_key

    def sign(self, data: bytes) -> bytes:
        key_id = self.key_id
        if self.algorithm == "ES256":
            return self.token.run_sync(
                lambda s: sign_ecdsa_p256_sha256(find_private_key(s, key_id=key_id), data)
            )
        return self.token.run_sync(
            lambda s: sign_rsa_pkcs1v15_sha256(find_private_key(s, key_id=key_id), data)
        )

    def csr_pem(self) -> str:
        request = build_csr_der(self._public_key, self.algorithm, self.sign)
        return x509.load_der_x509_csr(request).public_bytes(Encoding.PEM).decode()

    def protections(self) -> dict[str, bool]:
        """The private key's protection attributes as the token reports them."""
        key_id = self.key_id

        def read(session: Any) -> dict[str, bool]:
            private = find_private_key(session, key_id=key_id)
            return {name: bool(private[attribute]) for name, attribute in PROTECTIONS.items()}

        return self.token.run_sync(read)


class DeviceToken:
    """One wallet device: a PKCS#11 token (by label) with one logged-in session."""

    def __init__(self, token: Pkcs11Token) -> None:
        self.token = token

    @classmethod
    def open(cls, module_path: str, label: str, pin: str) -> DeviceToken:
        """Find the token and log in; raises the :mod:`tsunagu.pkcs11` errors (``TokenNotFound``,
        ``PinIncorrect``, ``Pkcs11ModuleNotFound``)."""
        settings = Pkcs11Settings(module_path=module_path, token_label=label, user_pin=SecretStr(pin))
        token = Pkcs11Token(settings)
        token.open_sync()
        return cls(token)

    @property
    def label(self) -> str:
        return self.token.settings.token_label

    def close(self) -> None:
        self.token.close_sync()

    def generate(self, purpose: str, algorithm: str = "ES256") -> Pkcs11DeviceKey:
        """A new non-extractable key pair on the token for ``purpose`` (signing, authentication, app)."""
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unsupported key algorithm {algorithm!r} (use {' or '.join(ALGORITHMS)})")
        key_id = secrets.token_bytes(16)
        reference = KeyReference(key_id.hex(), f"{LABEL_PREFIX}:{purpose}:{key_id.hex()[:8]}", algorithm)

        def generate(session: Any) -> PublicKey:
            if algorithm == "ES256":
                public, _ = generate_ec_p256_keypair(session, label=reference.label, key_id=key_id)
            else:
                public, _ = generate_rsa_keypair(session, label=reference.label, key_id=key_id)
            return _supported(to_cryptography_public_key(public))

        public_key = self.token.run_sync(generate, timeout_s=GENERATE_TIMEOUT_S)
        return Pkcs11DeviceKey(self.token, reference, public_key)

    def key(self, reference: KeyReference) -> Pkcs11DeviceKey:
        """A key generated earlier (``KeyNotFound`` when the token no longer holds it)."""
        key_id = bytes.fromhex(reference.key_id)

        def load(session: Any) -> PublicKey:
            find_private_key(session, key_id=key_id)
            return _supported(to_cryptography_public_key(find_public_key(session, key_id=key_id)))

        return Pkcs11DeviceKey(self.token, reference, self.token.run_sync(load))

    def destroy(self, reference: KeyReference) -> None:
        """Delete both halves of a key pair (a failed enrollment leaves nothing behind)."""
        key_id = bytes.fromhex(reference.key_id)

        def destroy(session: Any) -> None:
            for object_class in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
                for found in list(session.get_objects({Attribute.CLASS: object_class, Attribute.ID: key_id})):
                    found.destroy()

        self.token.run_sync(destroy)

    def wallet_key_ids(self) -> list[str]:
        """The ids (hex) of the wallet's private keys on this token."""

        def list_ids(session: Any) -> list[str]:
            found = list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY}))
            return sorted(
                bytes(o[Attribute.ID]).hex()
                for o in found
                if str(o[Attribute.LABEL]).startswith(LABEL_PREFIX)
            )

        return self.token.run_sync(list_ids)


def _supported(public_key: Any) -> PublicKey:
    if isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        return public_key
    raise ValueError(f"unsupported key type {type(public_key).__name__}")
