"""Certificate profiles (RFC 5280) of the CA hierarchy and of the citizen's certificates.

A citizen's certificate names no person: its subject is the organisation, a per-certificate
identifier name (CN) and the user identification number (serialNumber attribute). The usages
follow the two certificates of seed 003 — the signing certificate (my電子証明書, like the JPKI
signing certificate: digitalSignature + nonRepudiation) and the authentication certificate
(my認証: digitalSignature, clientAuth) — plus per-app certificates shaped like the latter.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

CertificateKind = Literal["signing", "authentication", "app"]
# Clock skew allowance: a certificate is valid from a little before it is issued.
BACKDATE = timedelta(minutes=5)


@dataclass(frozen=True)
class Urls:
    """Where relying parties fetch the issuer's CRL, its certificate and OCSP answers."""

    base: str

    def crl(self, authority_id: str) -> str:
        return f"{self.base}/crl/{authority_id}.crl"

    def certificate(self, authority_id: str) -> str:
        return f"{self.base}/ca/{authority_id}.crt"

    @property
    def ocsp(self) -> str:
        return f"{self.base}/ocsp"


def new_serial() -> int:
    """A positive, unpredictable serial of at most 20 octets (RFC 5280 §4.1.2.2)."""
    return x509.random_serial_number()


def new_identifier_name() -> str:
    """A per-certificate name that says nothing about the person."""
    return f"tsunagu-{secrets.token_hex(10)}"


def _name(organization: str, common_name: str, serial_number: str | None = None) -> x509.Name:
    attributes = [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ]
    if serial_number is not None:
        attributes.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, serial_number))
    return x509.Name(attributes)


def ca_name(organization: str, kind: str, number: int) -> x509.Name:
    label = {"root": "Root CA", "issuing": "Issuing CA", "ocsp": "OCSP Responder"}[kind]
    return _name(organization, f"{organization} {label} {number}")


def _key_usage(
    *, digital_signature: bool = False, non_repudiation: bool = False, ca: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=non_repudiation,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _validity(
    builder: x509.CertificateBuilder, now: datetime, days: int, issuer_not_after: datetime | None
) -> x509.CertificateBuilder:
    not_after = now + timedelta(days=days)
    if issuer_not_after is not None:
        not_after = min(not_after, issuer_not_after)  # never outlive the issuer (RFC 5280 §6)
    return builder.not_valid_before(now - BACKDATE).not_valid_after(not_after)


def root_builder(
    organization: str, number: int, public_key: CertificatePublicKeyTypes, now: datetime, days: int
) -> x509.CertificateBuilder:
    name = ca_name(organization, "root", number)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(new_serial())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        # Optional for a self-signed root (RFC 5280 §4.2.1.1) but expected by pkilint's profile.
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False)  # type: ignore[arg-type]
    )
    return _validity(builder, now, days, None)


@dataclass(frozen=True)
class Issuer:
    """The issuing side of a profile: the CA's id (for URLs), certificate and public key."""

    authority_id: str
    certificate: x509.Certificate

    @property
    def name(self) -> x509.Name:
        return self.certificate.subject

    def authority_key_identifier(self) -> x509.AuthorityKeyIdentifier:
        ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _issued(
    issuer: Issuer,
    subject: x509.Name,
    *,
    public_key: CertificatePublicKeyTypes,
    now: datetime,
    days: int,
    serial: int,
) -> x509.CertificateBuilder:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.name)
        .public_key(public_key)
        .serial_number(serial)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(issuer.authority_key_identifier(), critical=False)
    )
    return _validity(builder, now, days, issuer.certificate.not_valid_after_utc)


def _distribution(issuer: Issuer, urls: Urls) -> list[x509.Extension[x509.ExtensionType]]:
    crl = x509.CRLDistributionPoints(
        [
            x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(urls.crl(issuer.authority_id))],
                relative_name=None,
                reasons=None,
                crl_issuer=None,
            )
        ]
    )
    return [x509.Extension(crl.oid, False, crl)]


def _with(
    builder: x509.CertificateBuilder, extensions: list[x509.Extension[x509.ExtensionType]]
) -> x509.CertificateBuilder:
    for extension in extensions:
        builder = builder.add_extension(extension.value, critical=extension.critical)
    return builder


def issuing_builder(
    root: Issuer,
    *,
    organization: str,
    number: int,
    public_key: CertificatePublicKeyTypes,
    urls: Urls,
    now: datetime,
    days: int,
) -> x509.CertificateBuilder:
    builder = (
        _issued(
            root,
            ca_name(organization, "issuing", number),
            public_key=public_key,
            now=now,
            days=days,
            serial=new_serial(),
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.CA_ISSUERS,
                        x509.UniformResourceIdentifier(urls.certificate(root.authority_id)),
                    )
                ]
            ),
            critical=False,
        )
    )
    return _with(builder, _distribution(root, urls))


def ocsp_responder_builder(
    issuing: Issuer,
    *,
    organization: str,
    number: int,
    public_key: CertificatePublicKeyTypes,
    now: datetime,
    days: int,
) -> x509.CertificateBuilder:
    """A delegated responder (RFC 6960 §4.2.2.2): id-kp-OCSPSigning, and id-pkix-ocsp-nocheck
    because nobody could check the responder's own status without a loop (§4.2.2.2.1)."""
    return (
        _issued(
            issuing,
            ca_name(organization, "ocsp", number),
            public_key=public_key,
            now=now,
            days=days,
            serial=new_serial(),
        )
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
        .add_extension(x509.OCSPNoCheck(), critical=False)
    )


@dataclass(frozen=True)
class EndEntityRequest:
    kind: CertificateKind
    user_number: str
    identifier_name: str
    public_key: CertificatePublicKeyTypes
    serial: int
    policy_oid: str


def end_entity_builder(
    issuer: Issuer,
    *,
    organization: str,
    request: EndEntityRequest,
    urls: Urls,
    now: datetime,
    days: int,
) -> x509.CertificateBuilder:
    subject = _name(organization, request.identifier_name, request.user_number)
    signing = request.kind == "signing"
    builder = (
        _issued(issuer, subject, public_key=request.public_key, now=now, days=days, serial=request.serial)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(digital_signature=True, non_repudiation=signing),
            critical=True,
        )
        .add_extension(
            x509.CertificatePolicies(
                [x509.PolicyInformation(x509.ObjectIdentifier(request.policy_oid), None)]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(urls.ocsp)
                    ),
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.CA_ISSUERS,
                        x509.UniformResourceIdentifier(urls.certificate(issuer.authority_id)),
                    ),
                ]
            ),
            critical=False,
        )
    )
    if not signing:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return _with(builder, _distribution(issuer, urls))
