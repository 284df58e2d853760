"""Builders for tests of :mod:`tsunagu.x509`: an in-process stand-in for the remote signer, keys
per algorithm and certificate builders for a small PKI (root CA, end entity, OCSP responder)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ALGORITHMS = ("ES256", "RS256", "PS256", "EdDSA")
NOW = datetime.datetime(2026, 4, 1, 9, 0, tzinfo=datetime.UTC)
PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)


def new_key(algorithm: str) -> CertificateIssuerPrivateKeyTypes:
    """A fresh private key of the type ``algorithm`` signs with."""
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm in ("RS256", "PS256"):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(algorithm)


def raw_sign(algorithm: str, key: CertificateIssuerPrivateKeyTypes, payload: bytes) -> bytes:
    """Sign like the signer service does: it hashes the payload itself; ECDSA comes back as DER."""
    if algorithm == "ES256" and isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(payload, ec.ECDSA(hashes.SHA256()))
    if algorithm == "RS256" and isinstance(key, rsa.RSAPrivateKey):
        return key.sign(payload, padding.PKCS1v15(), hashes.SHA256())
    if algorithm == "PS256" and isinstance(key, rsa.RSAPrivateKey):
        return key.sign(payload, PSS, hashes.SHA256())
    if algorithm == "EdDSA" and isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(payload)
    raise ValueError(f"{algorithm} cannot sign with {type(key).__name__}")


def independent_verify(
    algorithm: str, public_key: CertificatePublicKeyTypes, signature: bytes, data: bytes
) -> None:
    """Verify without tsunagu.x509's own mapping, so a shared mistake cannot hide."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    elif isinstance(public_key, rsa.RSAPublicKey):
        pad = PSS if algorithm == "PS256" else padding.PKCS1v15()
        public_key.verify(signature, data, pad, hashes.SHA256())
    elif isinstance(public_key, ed25519.Ed25519PublicKey):
        public_key.verify(signature, data)
    else:
        raise AssertionError(type(public_key))


@dataclass
class FakeRemoteSigner:
    """Implements ``tsunagu.x509.RemoteSigner`` the way the signer service does, in process.

    ``signs_as`` makes it sign with another algorithm than it announces, and ``ecdsa_format="raw"``
    return ECDSA as ``r||s``: both are misconfigurations the library must catch.
    """

    algorithm: str
    key: CertificateIssuerPrivateKeyTypes
    signs_as: str | None = None
    ecdsa_format: str = "der"
    calls: list[bytes] = field(default_factory=list)

    async def sign(self, payload: bytes) -> bytes:
        self.calls.append(payload)
        signature = raw_sign(self.signs_as or self.algorithm, self.key, payload)
        if self.ecdsa_format == "raw" and isinstance(self.key, ec.EllipticCurvePrivateKey):
            r, s = decode_dss_signature(signature)
            signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return signature


def name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tsunagu Test"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _base(
    subject: x509.Name, issuer: x509.Name, public_key: CertificatePublicKeyTypes, serial: int, days: int
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def root_builder(
    public_key: CertificatePublicKeyTypes, common_name: str = "Tsunagu Test Root"
) -> x509.CertificateBuilder:
    """A self-signed root CA certificate."""
    return (
        _base(name(common_name), name(common_name), public_key, 0x1000, 3650)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True, digital_signature=True), critical=True)
    )


def _issued(
    issuer: x509.Certificate, subject: x509.Name, public_key: CertificatePublicKeyTypes, serial: int
) -> x509.CertificateBuilder:
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        _base(subject, issuer.subject, public_key, serial, 365)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )


def end_entity_builder(
    issuer: x509.Certificate,
    public_key: CertificatePublicKeyTypes,
    serial: int = 0x2001,
    *,
    with_aki: bool = True,
) -> x509.CertificateBuilder:
    """An end-entity (client authentication) certificate issued by ``issuer``."""
    builder = _issued(issuer, name(f"End Entity {serial}"), public_key, serial)
    if not with_aki:  # a deliberately broken certificate, for showing the linter can fail
        builder = _base(name(f"End Entity {serial}"), issuer.subject, public_key, serial, 365).add_extension(
            x509.BasicConstraints(ca=False, path_length=None), critical=True
        )
    return builder.add_extension(_key_usage(digital_signature=True), critical=True).add_extension(
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
    )


def ocsp_responder_builder(
    issuer: x509.Certificate, public_key: CertificatePublicKeyTypes
) -> x509.CertificateBuilder:
    """A delegated OCSP responder certificate (RFC 6960 §4.2.2.2) issued by ``issuer``."""
    return (
        _issued(issuer, name("Tsunagu Test OCSP Responder"), public_key, 0x3001)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
        .add_extension(x509.OCSPNoCheck(), critical=False)
    )


def _key_usage(
    *, digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )
