"""PKCS#10 certificate signing requests (RFC 2986) from the phone's token.

The CSR's own signature is the proof of possession: whoever sent it holds the private key of the
public key it carries. Only the public key is used from it — the CA writes subject and extensions
itself, so nothing the phone puts in the request reaches a certificate.
"""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tsunagu.ca.domain.errors import CsrSignatureInvalid, InvalidCsr, KeyPolicyViolation

MAX_CSR_BYTES = 16_384
# Key policy: what a phone's secure element makes and what our relying parties can verify.
ALLOWED_CURVES = (ec.SECP256R1, ec.SECP384R1)
RSA_SIZES = (2048, 3072, 4096)


def load_csr(pem_or_der: bytes) -> x509.CertificateSigningRequest:
    if len(pem_or_der) > MAX_CSR_BYTES:
        raise InvalidCsr("the CSR is too large")
    try:
        if pem_or_der.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_csr(pem_or_der)
        return x509.load_der_x509_csr(pem_or_der)
    except ValueError:
        raise InvalidCsr("the CSR does not parse") from None


def check_key_policy(key: CertificatePublicKeyTypes) -> None:
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ALLOWED_CURVES):
            raise KeyPolicyViolation(f"curve {key.curve.name} is not accepted (P-256, P-384)")
        return
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size not in RSA_SIZES:
            raise KeyPolicyViolation(f"RSA-{key.key_size} is not accepted (2048, 3072, 4096)")
        if key.public_numbers().e != 65537:
            raise KeyPolicyViolation("the RSA public exponent must be 65537")
        return
    if isinstance(key, ed25519.Ed25519PublicKey):
        raise KeyPolicyViolation("Ed25519 is not accepted yet (relying parties' libraries)")
    raise KeyPolicyViolation("only ECDSA P-256/P-384 and RSA keys are accepted")


def csr_public_key(pem_or_der: bytes) -> CertificatePublicKeyTypes:
    """The CSR's public key, once its signature (proof of possession) and the key policy hold."""
    csr = load_csr(pem_or_der)
    try:
        key = csr.public_key()
        valid = csr.is_signature_valid
    except (ValueError, TypeError, x509.UnsupportedGeneralNameType):
        raise InvalidCsr("the CSR's key or signature algorithm is not supported") from None
    if not valid:
        raise CsrSignatureInvalid("the CSR was not signed with the key it carries")
    check_key_policy(key)
    return key


def spki_sha256(key: CertificatePublicKeyTypes) -> str:
    """The fingerprint by which a public key is certified once, ever."""
    der = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()
