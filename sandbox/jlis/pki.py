"""The sandbox's own PKI: root CA, the two JPKI issuing CAs, OCSP responders and the push key.

Created once (RSA-2048, SHA-256) and kept as PEM files in ``<state dir>/pki`` so that a restart
keeps the trust anchors the platform has already pinned; loaded from there afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Clock = Callable[[], datetime]

CA_VALIDITY = timedelta(days=365 * 20)
# the JPKI CAs and their delegates live long so a dev state directory does not expire under you
DELEGATE_VALIDITY = timedelta(days=365 * 10)
# one responder key, one certificate per CA: RFC 6960 §4.2.2.2 wants a delegate issued by the CA
# whose certificates it answers for
NAMES = ("root", "signing", "user-auth", "ocsp", "ocsp-user-auth", "push")


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key."""

    certificate: x509.Certificate
    key: rsa.RSAPrivateKey

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class Hierarchy:
    """Every key the sandbox signs with."""

    root: KeyPair
    signing: KeyPair
    user_auth: KeyPair
    ocsp: KeyPair
    ocsp_user_auth: KeyPair
    push: KeyPair

    def by_name(self, name: str) -> KeyPair:
        """``root``, ``signing``, ``user-auth``, ``ocsp``, ``ocsp-user-auth`` or ``push``."""
        return {
            "root": self.root,
            "signing": self.signing,
            "user-auth": self.user_auth,
            "ocsp": self.ocsp,
            "ocsp-user-auth": self.ocsp_user_auth,
            "push": self.push,
        }[name]


def new_rsa_key() -> rsa.RSAPrivateKey:
    """An RSA-2048 key, as everything in JPKI uses."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "JPKI Sandbox"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(
    subject: x509.Name, key: rsa.RSAPrivateKey, issuer: KeyPair | None, now: datetime, days: timedelta
) -> x509.CertificateBuilder:
    public = key.public_key()
    issuer_public = issuer.key.public_key() if issuer else public
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer else subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + days)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public), critical=False)
    )


def _ca(common_name: str, issuer: KeyPair | None, now: datetime, path_length: int) -> KeyPair:
    key = new_rsa_key()
    builder = (
        _builder(_name(common_name), key, issuer, now, CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    )
    return KeyPair(builder.sign(issuer.key if issuer else key, hashes.SHA256()), key)


def _delegate(
    common_name: str, key: rsa.RSAPrivateKey, issuer: KeyPair, now: datetime, ocsp: bool
) -> KeyPair:
    builder = (
        _builder(_name(common_name), key, issuer, now, DELEGATE_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
    )
    if ocsp:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False
        ).add_extension(x509.OCSPNoCheck(), critical=False)  # RFC 6960 §4.2.2.2.1
    return KeyPair(builder.sign(issuer.key, hashes.SHA256()), key)


def create_hierarchy(now: datetime) -> Hierarchy:
    """A fresh hierarchy (six certificates, five RSA keys)."""
    root = _ca("JPKI Sandbox Root CA", None, now, path_length=1)
    signing = _ca("JPKI Sandbox CA for Digital Signature", root, now, path_length=0)
    user_auth = _ca("JPKI Sandbox CA for User Authentication", root, now, path_length=0)
    responder_key = new_rsa_key()
    return Hierarchy(
        root=root,
        signing=signing,
        user_auth=user_auth,
        ocsp=_delegate("JPKI Sandbox OCSP Responder (Digital Signature)", responder_key, signing, now, True),
        ocsp_user_auth=_delegate(
            "JPKI Sandbox OCSP Responder (User Authentication)", responder_key, user_auth, now, True
        ),
        push=_delegate("J-LIS Sandbox Notification", new_rsa_key(), root, now, False),
    )


def write_private_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    """Write a PEM private key readable by the owner only (unencrypted: this is a sandbox)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    tmp.replace(path)


def read_private_key(path: Path) -> rsa.RSAPrivateKey:
    """Load a PEM RSA private key written by :func:`write_private_key`."""
    # the sandbox wrote these keys itself; the full RSA consistency check costs ≈ 35 ms per key
    key = serialization.load_pem_private_key(
        path.read_bytes(), password=None, unsafe_skip_rsa_key_validation=True
    )
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path} does not hold an RSA key")
    return key


def save_hierarchy(hierarchy: Hierarchy, directory: Path) -> None:
    """Write ``<name>.pem`` and ``<name>.key`` for every member of ``hierarchy``."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in NAMES:
        pair = hierarchy.by_name(name)
        write_private_key(directory / f"{name}.key", pair.key)
        (directory / f"{name}.pem").write_bytes(pair.pem)


def load_hierarchy(directory: Path) -> Hierarchy:
    """Read a hierarchy written by :func:`save_hierarchy`."""

    def pair(name: str) -> KeyPair:
        certificate = x509.load_pem_x509_certificate((directory / f"{name}.pem").read_bytes())
        return KeyPair(certificate, read_private_key(directory / f"{name}.key"))

    return Hierarchy(
        root=pair("root"),
        signing=pair("signing"),
        user_auth=pair("user-auth"),
        ocsp=pair("ocsp"),
        ocsp_user_auth=pair("ocsp-user-auth"),
        push=pair("push"),
    )


def load_or_create_hierarchy(directory: Path | None, now: datetime) -> Hierarchy:
    """The hierarchy in ``directory``, created there on first use (in memory when ``None``)."""
    if directory is not None and (directory / "push.key").is_file():
        return load_hierarchy(directory)
    hierarchy = create_hierarchy(now)
    if directory is not None:
        save_hierarchy(hierarchy, directory)
    return hierarchy
