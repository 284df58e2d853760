"""Certificate status and chain for relying services (idp, consent, broker).

A presented certificate counts only if it is byte for byte one this CA issued; its status at a
given time follows from its validity and revocation time (RFC 5280 §6.3: revoked from
``revoked_at`` on). The CA's own records answer — never the presenter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tsunagu.ca.domain.authorities import Hierarchy
from tsunagu.ca.domain.errors import CertificateNotFound
from tsunagu.ca.store.repository import CertificateRecord
from tsunagu.errors import BadRequest


class InvalidCertificate(BadRequest):
    code = "invalid-certificate"
    title = "The certificate is malformed"


@dataclass(frozen=True)
class StatusAnswer:
    record: CertificateRecord
    status: str
    chain: list[x509.Certificate]


def status_at(record: CertificateRecord, at: datetime) -> str:
    if record.revoked_at is not None and record.revoked_at <= at:
        return "revoked"
    if at < record.not_before:
        return "not-yet-valid"
    if at > record.not_after:
        return "expired"
    return "good"


def answer(record: CertificateRecord | None, hierarchy: Hierarchy, at: datetime) -> StatusAnswer:
    if record is None:
        raise CertificateNotFound("not a certificate of this CA")
    return StatusAnswer(
        record, status_at(record, at), [a.certificate for a in hierarchy.chain(record.issuer_id)]
    )


def presented_serial(pem: str) -> tuple[str, bytes]:
    """(serial hex, DER) of a presented PEM certificate."""
    try:
        certificate = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise InvalidCertificate("the certificate does not parse") from None
    return format(certificate.serial_number, "x"), certificate.public_bytes(Encoding.DER)
