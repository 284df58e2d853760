"""My Number Card keys and the two certificates JPKI puts on a card.

Card keys are RSA-2048 PEM files in ``<state dir>/cards`` (or a dict without a state directory),
or — chosen per card with ``key_storage="pkcs11"`` — keys generated inside a PKCS#11 token
(non-extractable), as on a real card's chip, when the sandbox is given a token.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from tsunagu.errors import BadRequest
from tsunagu.jpki import JPKI_SIGNING_POLICY, Basic4, basic4_other_names, encode_birth_date
from tsunagu.pkcs11 import Pkcs11Token
from tsunagu.pkcs11.keys import (
    find_private_key,
    generate_rsa_keypair,
    read_public_key,
    sign_rsa_pkcs1v15_sha256,
    to_cryptography_public_key,
)
from tsunagu.sandbox.jlis.pki import KeyPair, new_rsa_key, read_private_key, write_private_key
from tsunagu.sandbox.jlis.profile import JPKI_USER_AUTH_POLICY, valid_until_fifth_birthday
from tsunagu.sandbox.jlis.store import serial_hex

KeyFactory = Callable[[], rsa.RSAPrivateKey]


class InvalidCardRequest(BadRequest):
    code = "jlis-invalid-card-request"
    title = "The card cannot be issued as asked"


def check_card_request(
    name: str,
    address: str,
    birth_date: date,
    sex: str,
    *,
    key_storage: str,
    today: date,
    storages: Collection[str] = ("file",),
) -> None:
    """Raise :class:`InvalidCardRequest` for what J-LIS would not issue a card for."""
    if key_storage not in storages:
        raise InvalidCardRequest(
            f"key_storage {key_storage!r} is not available here (have: {', '.join(storages)})"
        )
    if sex not in {"1", "2", "3"} or not name.strip() or not address.strip():
        raise InvalidCardRequest("name and address must not be blank; sex is 1, 2 or 3")
    try:
        encode_birth_date(birth_date)
    except ValueError:
        raise InvalidCardRequest("the date of birth is before the Meiji era") from None
    if birth_date > today:
        raise InvalidCardRequest("the date of birth is in the future")


class FileCardKeys:
    """Card private keys by key id; in files when given a directory."""

    def __init__(self, directory: Path | None, new_key: KeyFactory = new_rsa_key) -> None:
        self._directory = directory
        self._new_key = new_key
        self._memory: dict[str, rsa.RSAPrivateKey] = {}

    def create(self, key_id: str) -> rsa.RSAPublicKey:
        """Generate the key ``key_id`` and return its public half."""
        key = self._new_key()
        if self._directory is not None:
            write_private_key(self._directory / f"{key_id}.key", key)
        self._memory[key_id] = key
        return key.public_key()

    def private_key(self, key_id: str) -> rsa.RSAPrivateKey:
        if key_id not in self._memory:
            if self._directory is None:
                raise KeyError(key_id)
            self._memory[key_id] = read_private_key(self._directory / f"{key_id}.key")
        return self._memory[key_id]

    def public_key(self, key_id: str) -> rsa.RSAPublicKey:
        return self.private_key(key_id).public_key()

    def sign(self, key_id: str, data: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 with SHA-256, what the card's JPKI applet does."""
        return self.private_key(key_id).sign(data, padding.PKCS1v15(), hashes.SHA256())


class Pkcs11CardKeys:
    """Card keys inside a PKCS#11 token (label = key id); they never leave it."""

    def __init__(self, token: Pkcs11Token) -> None:
        self._token = token

    def create(self, key_id: str) -> rsa.RSAPublicKey:
        def generate(session: Any) -> rsa.RSAPublicKey:
            public, _ = generate_rsa_keypair(session, label=key_id, key_id=key_id.encode(), bits=2048)
            key = to_cryptography_public_key(public)
            assert isinstance(key, rsa.RSAPublicKey)
            return key

        return self._token.run_sync(generate, timeout_s=60)

    def public_key(self, key_id: str) -> rsa.RSAPublicKey:
        key = self._token.run_sync(lambda session: read_public_key(session, label=key_id))
        assert isinstance(key, rsa.RSAPublicKey)
        return key

    def sign(self, key_id: str, data: bytes) -> bytes:
        return self._token.run_sync(
            lambda session: sign_rsa_pkcs1v15_sha256(find_private_key(session, label=key_id), data)
        )


class CardKeys(Protocol):
    def create(self, key_id: str) -> rsa.RSAPublicKey: ...

    def public_key(self, key_id: str) -> rsa.RSAPublicKey: ...

    def sign(self, key_id: str, data: bytes) -> bytes: ...


def _card_builder(
    ca: KeyPair,
    public_key: rsa.RSAPublicKey,
    *,
    serial: int,
    issued_at: datetime,
    not_after: datetime,
    base_url: str,
    crl_name: str,
) -> x509.CertificateBuilder:
    # the subject carries no personal information: the serial is the only handle on the holder
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
            x509.NameAttribute(NameOID.COMMON_NAME, serial_hex(serial)),
        ]
    )
    crl_url = f"{base_url}/crl/{crl_name}"
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.certificate.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(issued_at - timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
        .add_extension(
            x509.CRLDistributionPoints(
                [x509.DistributionPoint([x509.UniformResourceIdentifier(crl_url)], None, None, None)]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.OCSP,
                        x509.UniformResourceIdentifier(f"{base_url}/ocsp"),
                    )
                ]
            ),
            critical=False,
        )
    )


def issue_signing_certificate(
    ca: KeyPair,
    public_key: rsa.RSAPublicKey,
    info: Basic4,
    *,
    serial: int,
    issued_at: datetime,
    base_url: str,
) -> x509.Certificate:
    """署名用電子証明書: the basic 4 information in subjectAltName otherNames (UTF8String)."""
    not_after = valid_until_fifth_birthday(info.birth_date, issued_at)
    builder = (
        _card_builder(
            ca,
            public_key,
            serial=serial,
            issued_at=issued_at,
            not_after=not_after,
            base_url=base_url,
            crl_name="signing.crl",
        )
        .add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True
        )
        .add_extension(
            x509.CertificatePolicies([x509.PolicyInformation(JPKI_SIGNING_POLICY, None)]), critical=False
        )
        .add_extension(x509.SubjectAlternativeName(basic4_other_names(info)), critical=False)
    )
    return builder.sign(ca.key, hashes.SHA256())


def issue_auth_certificate(
    ca: KeyPair,
    public_key: rsa.RSAPublicKey,
    *,
    serial: int,
    valid_until: datetime,
    issued_at: datetime,
    base_url: str,
) -> x509.Certificate:
    """利用者証明用電子証明書: a serial and a key, no personal information at all."""
    builder = (
        _card_builder(
            ca,
            public_key,
            serial=serial,
            issued_at=issued_at,
            not_after=valid_until,
            base_url=base_url,
            crl_name="user-auth.crl",
        )
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
        .add_extension(
            x509.CertificatePolicies([x509.PolicyInformation(JPKI_USER_AUTH_POLICY, None)]),
            critical=False,
        )
    )
    return builder.sign(ca.key, hashes.SHA256())
