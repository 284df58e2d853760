"""The card's proof at enrollment: a JPKI signing certificate and its signature over our challenge.

What the card signs is the ASCII string ``tsunagu-enrollment:<enrollment id>:<challenge>``
(RSASSA-PKCS1-v1_5 with SHA-256, as the JPKI signing key signs), so a signature answers exactly
one enrollment. Here: the certificate's form, chain to the configured J-LIS certificates, validity
and the signature. Revocation (J-LIS, via jlis-sync) and single use are the enrollment's steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tsunagu.ca.domain.errors import (
    InvalidJpkiCertificate,
    InvalidJpkiSignature,
    JpkiCertificateExpired,
    UnknownJpkiIssuer,
)
from tsunagu.jpki import JPKI_SIGNING_POLICY

MAX_CERTIFICATE_BYTES = 8_192
MAX_SIGNATURE_BYTES = 1_024


def signed_challenge(enrollment_id: str, challenge: str) -> bytes:
    """The bytes the card signs for this enrollment."""
    return f"tsunagu-enrollment:{enrollment_id}:{challenge}".encode("ascii")


@dataclass(frozen=True)
class JpkiTrustAnchors:
    root: x509.Certificate
    signing_ca: x509.Certificate


def load_jpki_certificate(pem_or_der: bytes) -> x509.Certificate:
    """Parse the card's certificate (PEM or DER); size-limited, every parse failure a 400."""
    if len(pem_or_der) > MAX_CERTIFICATE_BYTES * 2:
        raise InvalidJpkiCertificate("the certificate is too large")
    try:
        if pem_or_der.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(pem_or_der)
        return x509.load_der_x509_certificate(pem_or_der)
    except ValueError:
        raise InvalidJpkiCertificate("the certificate does not parse") from None


def _is_signing_certificate(certificate: x509.Certificate) -> bool:
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
        policies = certificate.extensions.get_extension_for_class(x509.CertificatePolicies).value
    except (x509.ExtensionNotFound, ValueError):
        return False
    return usage.content_commitment and any(
        policy.policy_identifier == JPKI_SIGNING_POLICY for policy in policies
    )


def verify_jpki_proof(
    certificate: x509.Certificate,
    data: bytes,
    signature: bytes,
    anchors: JpkiTrustAnchors,
    now: datetime,
) -> None:
    """Chain (card ← J-LIS signing CA ← J-LIS root), validity at ``now``, key, signature."""
    try:
        certificate.verify_directly_issued_by(anchors.signing_ca)
        anchors.signing_ca.verify_directly_issued_by(anchors.root)
    except (ValueError, TypeError, InvalidSignature):
        raise UnknownJpkiIssuer("not issued by the configured J-LIS signing CA") from None
    for link in (certificate, anchors.signing_ca):
        if not link.not_valid_before_utc <= now <= link.not_valid_after_utc:
            raise JpkiCertificateExpired("outside its validity period")
    if not _is_signing_certificate(certificate):
        raise InvalidJpkiCertificate("not a JPKI signing certificate (key usage or policy)")
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < 2048:
        raise InvalidJpkiCertificate("a JPKI signing key is RSA-2048")
    if not 0 < len(signature) <= MAX_SIGNATURE_BYTES:
        raise InvalidJpkiSignature("the signature is empty or too long")
    try:
        key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise InvalidJpkiSignature("the signature does not verify") from None


def jpki_serial(certificate: x509.Certificate) -> str:
    """The serial as jlis-sync and J-LIS name it: lower-case hex."""
    return format(certificate.serial_number, "x")
