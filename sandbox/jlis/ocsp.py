"""An RFC 6960 OCSP responder for both JPKI issuers, signed by their delegated responders."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from tsunagu.sandbox.jlis.pki import Hierarchy, KeyPair
from tsunagu.sandbox.jlis.store import CertificateRecord, serial_hex
from tsunagu.x509 import OcspCertId

RESPONSE_VALIDITY = timedelta(days=1)


@dataclass(frozen=True)
class Authority:
    """An issuing CA, its delegated responder and the certificates it issued (``kind``)."""

    kind: str
    ca: KeyPair
    responder: KeyPair


def authorities(hierarchy: Hierarchy) -> list[Authority]:
    """The two JPKI issuers, each with its own delegated responder."""
    return [
        Authority("signing", hierarchy.signing, hierarchy.ocsp),
        Authority("user-auth", hierarchy.user_auth, hierarchy.ocsp_user_auth),
    ]


def _unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(serialization.Encoding.DER)


def _authority_for(request: ocsp.OCSPRequest, authorities: list[Authority]) -> Authority | None:
    # match the CertID the client computed, with the hash algorithm it chose (usually SHA-1)
    for authority in authorities:
        expected = OcspCertId.for_certificate(
            authority.ca.certificate, authority.ca.certificate, request.hash_algorithm
        )
        if (request.issuer_name_hash, request.issuer_key_hash) == (
            expected.issuer_name_hash,
            expected.issuer_key_hash,
        ):
            return authority
    return None


def respond(
    request_der: bytes,
    authorities: list[Authority],
    certificates: Mapping[str, CertificateRecord],
    now: datetime,
) -> bytes:
    """The DER OCSPResponse to ``request_der``.

    ``certificates`` are all issued certificates by hex serial. A request that does not parse, or asks
    about more than one certificate, gets ``malformedRequest``; an issuer we do not run gets
    ``unauthorized`` (RFC 6960 §2.3: no responder here may speak for it, so a signed "unknown"
    would fail validation anyway); a serial the issuer never issued gets ``unknown`` (§2.2).
    """
    try:
        request = ocsp.load_der_ocsp_request(request_der)
    except (ValueError, NotImplementedError):
        return _unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
    authority = _authority_for(request, authorities)
    if authority is None:
        return _unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
    record = certificates.get(serial_hex(request.serial_number))
    if record is not None and record.kind != authority.kind:
        record = None  # the other CA's serial: this one never issued it
    status, revoked_at, reason = ocsp.OCSPCertStatus.UNKNOWN, None, None
    if record is not None and record.revoked_at is not None and record.reason is not None:
        status, revoked_at = ocsp.OCSPCertStatus.REVOKED, record.revoked_at
        reason = x509.ReasonFlags(record.reason)
    elif record is not None:
        status = ocsp.OCSPCertStatus.GOOD
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response_by_hash(
            request.issuer_name_hash,
            request.issuer_key_hash,
            request.serial_number,
            request.hash_algorithm,
            status,
            now,
            now + RESPONSE_VALIDITY,
            revoked_at,
            reason,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, authority.responder.certificate)
        .certificates([authority.responder.certificate])
    )
    try:
        nonce = request.extensions.get_extension_for_class(x509.OCSPNonce).value
        builder = builder.add_extension(nonce, critical=False)
    except x509.ExtensionNotFound:
        pass
    # producedAt is the wall clock: cryptography stamps it and offers no way to set it
    response = builder.sign(authority.responder.key, hashes.SHA256())
    return response.public_bytes(serialization.Encoding.DER)
