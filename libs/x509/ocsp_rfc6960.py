"""The to-be-signed part of an RFC 6960 OCSP response, encoded here rather than by ``cryptography``.

``ocsp.OCSPResponseBuilder.sign`` insists on the responder's private key (it checks it against the
responder certificate), allows one SingleResponse per response, stamps ``producedAt`` with the
wall clock and has no RSA-PSS padding. With the key in the HSM none of that fits, so
:func:`response_data` encodes ``ResponseData`` (§4.2.1) from plain values and
:func:`ocsp_response` wraps a signed ``BasicOCSPResponse``; the result is loaded back with
``cryptography`` by :mod:`tsunagu.x509.remote`.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509 import ocsp

from tsunagu.x509 import der

ID_PKIX_OCSP_BASIC: Final = "1.3.6.1.5.5.7.48.1.1"
# CertID hash algorithms (RFC 6960 §4.1.1 CertID.hashAlgorithm); SHA-1 is what clients send.
_HASH_OIDS: Final = {
    "sha1": "1.3.14.3.2.26",
    "sha256": "2.16.840.1.101.3.4.2.1",
    "sha384": "2.16.840.1.101.3.4.2.2",
    "sha512": "2.16.840.1.101.3.4.2.3",
}
_SUCCESSFUL: Final = der.encode(der.ENUMERATED, b"\x00")


@dataclass(frozen=True)
class OcspCertId:
    """RFC 6960 §4.1.1 ``CertID``: which certificate a SingleResponse is about."""

    hash_algorithm: hashes.HashAlgorithm
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    serial_number: int

    @classmethod
    def for_certificate(
        cls,
        certificate: x509.Certificate,
        issuer: x509.Certificate,
        hash_algorithm: hashes.HashAlgorithm | None = None,
    ) -> OcspCertId:
        """The CertID of ``certificate`` (SHA-1 unless told otherwise, as clients send it)."""
        algorithm = hash_algorithm or hashes.SHA1()  # noqa: S303 - an identifier, not a signature
        return cls(
            algorithm,
            _digest(algorithm, issuer.subject.public_bytes()),
            _digest(algorithm, subject_public_key_bits(issuer)),
            certificate.serial_number,
        )

    @classmethod
    def from_request(cls, request: ocsp.OCSPRequest) -> OcspCertId:
        """The CertID a client asked about, to answer with exactly the same one."""
        return cls(
            request.hash_algorithm,
            request.issuer_name_hash,
            request.issuer_key_hash,
            request.serial_number,
        )

    def to_der(self) -> bytes:
        """The DER ``CertID``."""
        oid = _HASH_OIDS.get(self.hash_algorithm.name)
        if oid is None:
            raise ValueError(f"no CertID hash algorithm {self.hash_algorithm.name!r}")
        algorithm = der.encode(der.SEQUENCE, der.object_identifier(oid) + der.encode(der.NULL, b""))
        return der.encode(
            der.SEQUENCE,
            algorithm
            + der.encode(der.OCTET_STRING, self.issuer_name_hash)
            + der.encode(der.OCTET_STRING, self.issuer_key_hash)
            + der.integer(self.serial_number),
        )


@dataclass(frozen=True)
class OcspSingleResponse:
    """RFC 6960 §4.2.1 ``SingleResponse``: the status of one certificate."""

    cert_id: OcspCertId
    status: ocsp.OCSPCertStatus
    this_update: datetime.datetime
    next_update: datetime.datetime | None = None
    revocation_time: datetime.datetime | None = None
    revocation_reason: x509.ReasonFlags | None = None

    def __post_init__(self) -> None:
        revoked = self.status is ocsp.OCSPCertStatus.REVOKED
        if revoked != (self.revocation_time is not None):
            raise ValueError("revocation_time is required for REVOKED and only for REVOKED")
        if self.revocation_reason is not None and not revoked:
            raise ValueError("revocation_reason only applies to REVOKED")

    def to_der(self) -> bytes:
        """The DER ``SingleResponse``."""
        body = self.cert_id.to_der() + self._status_der() + der.generalized_time(self.this_update)
        if self.next_update is not None:
            body += der.encode(der.CONTEXT_0, der.generalized_time(self.next_update))
        return der.encode(der.SEQUENCE, body)

    def _status_der(self) -> bytes:
        # the module is EXPLICIT TAGS, but CertStatus' alternatives are marked IMPLICIT (Appendix B.1)
        if self.status is ocsp.OCSPCertStatus.GOOD:
            return der.encode(0x80, b"")
        if self.status is ocsp.OCSPCertStatus.UNKNOWN:
            return der.encode(0x82, b"")
        assert self.revocation_time is not None  # checked in __post_init__
        info = der.generalized_time(self.revocation_time)
        if self.revocation_reason is not None:
            reason = x509.CRLReason(self.revocation_reason).public_bytes()  # ENUMERATED CRLReason
            info += der.encode(der.CONTEXT_0, reason)
        return der.encode(der.CONTEXT_1, info)


def subject_public_key_bits(certificate: x509.Certificate) -> bytes:
    """The subjectPublicKey BIT STRING's bits, which CertID and ResponderID byKey hash."""
    spki = certificate.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return der.content_of(der.sequence_items(spki)[1], der.BIT_STRING)[1:]


def _digest(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    digest = hashes.Hash(algorithm)
    digest.update(data)
    return digest.finalize()


def _extensions_der(extensions: Sequence[x509.Extension[x509.ExtensionType]]) -> bytes:
    encoded = b""
    for extension in extensions:
        critical = der.encode(der.BOOLEAN, b"\xff") if extension.critical else b""  # DEFAULT FALSE
        encoded += der.encode(
            der.SEQUENCE,
            der.object_identifier(extension.oid.dotted_string)
            + critical
            + der.encode(der.OCTET_STRING, extension.value.public_bytes()),
        )
    return der.encode(der.SEQUENCE, encoded)


def response_data(
    responses: Sequence[OcspSingleResponse],
    *,
    responder_certificate: x509.Certificate,
    responder_id: ocsp.OCSPResponderEncoding,
    produced_at: datetime.datetime,
    extensions: Sequence[x509.Extension[x509.ExtensionType]] = (),
) -> bytes:
    """The DER ``ResponseData`` (tbsResponseData) to be signed by the responder."""
    if not responses:
        raise ValueError("an OCSP response needs at least one SingleResponse")
    if responder_id is ocsp.OCSPResponderEncoding.HASH:
        key_hash = hashlib.sha1(subject_public_key_bits(responder_certificate)).digest()  # noqa: S324 - RFC 6960 mandates SHA-1
        responder = der.encode(der.CONTEXT_2, der.encode(der.OCTET_STRING, key_hash))
    else:
        responder = der.encode(der.CONTEXT_1, responder_certificate.subject.public_bytes())
    body = (
        responder
        + der.generalized_time(produced_at)
        + der.encode(der.SEQUENCE, b"".join(response.to_der() for response in responses))
    )
    if extensions:
        body += der.encode(der.CONTEXT_1, _extensions_der(extensions))
    return der.encode(der.SEQUENCE, body)


def ocsp_response(
    tbs_response_data: bytes,
    algorithm_identifier: bytes,
    signature: bytes,
    certificates: Sequence[x509.Certificate] = (),
) -> bytes:
    """The DER ``OCSPResponse`` (status successful) around a signed ``BasicOCSPResponse``."""
    basic = tbs_response_data + algorithm_identifier + der.bit_string(signature)
    if certificates:
        chain = b"".join(cert.public_bytes(Encoding.DER) for cert in certificates)
        basic += der.encode(der.CONTEXT_0, der.encode(der.SEQUENCE, chain))
    response_bytes = der.encode(
        der.SEQUENCE,
        der.object_identifier(ID_PKIX_OCSP_BASIC)
        + der.encode(der.OCTET_STRING, der.encode(der.SEQUENCE, basic)),
    )
    return der.encode(der.SEQUENCE, _SUCCESSFUL + der.encode(der.CONTEXT_0, response_bytes))


__all__ = [
    "OcspCertId",
    "OcspSingleResponse",
    "ocsp_response",
    "response_data",
    "subject_public_key_bits",
]
