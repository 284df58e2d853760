"""Domain errors raised by :mod:`tsunagu.x509`.

They subclass :class:`tsunagu.errors.DomainError`, so a service's problem handler renders them as
RFC 9457 problems without further mapping. Messages name algorithms and key types, never key
material or the payload that was signed.
"""

from __future__ import annotations

from tsunagu.errors import DomainError


class X509SigningError(DomainError):
    """Base of the errors raised while having an X.509 object signed remotely."""

    code = "x509-signing-failed"
    title = "The X.509 object could not be signed"
    status = 500


class UnsupportedSignatureAlgorithm(X509SigningError):
    """The signer announced an algorithm this module does not map to an X.509 signature."""

    code = "x509-unsupported-signature-algorithm"
    title = "The signer's algorithm is not supported for X.509 signatures"
    status = 500


class SignerAlgorithmMismatch(X509SigningError):
    """The signer's algorithm cannot produce signatures for the issuer's key type.

    Raised before the signer is called: a P-256 issuer behind an ``RS256`` signer is a
    configuration error, not something to discover from a failed verification.
    """

    code = "x509-signer-algorithm-mismatch"
    title = "The signer's algorithm does not match the issuer's key"
    status = 500


class RemoteSignatureInvalid(X509SigningError):
    """The signer returned a signature that does not verify with the issuer's public key.

    Usually the signer holds another key than the issuer certificate names, or signs with another
    algorithm (or encoding, e.g. raw ``r||s`` instead of DER for ECDSA) than it announces. Nothing
    is returned, so a badly signed certificate, CRL or OCSP response never leaves this module.
    """

    code = "x509-remote-signature-invalid"
    title = "The remote signer returned a signature that does not verify"
    status = 502


__all__ = [
    "RemoteSignatureInvalid",
    "SignerAlgorithmMismatch",
    "UnsupportedSignatureAlgorithm",
    "X509SigningError",
]
