"""Status and chain lookups for the platform's services (idp, consent, broker)."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import APIRouter, Depends

from tsunagu.auth import ServicePrincipal, require_permission
from tsunagu.ca.api.deps import READ, CaServices, services
from tsunagu.ca.api.schemas import CertificateStatus, ValidateRequest
from tsunagu.ca.domain.errors import CertificateNotFound
from tsunagu.ca.domain.status import StatusAnswer, answer, presented_serial
from tsunagu.ca.store.repository import certificate_by_serial

router = APIRouter(prefix="/internal/v1", tags=["internal"])


def _view(found: StatusAnswer) -> CertificateStatus:
    record = found.record
    return CertificateStatus(
        serial=record.serial,
        issuer_id=record.issuer_id,
        user_number=record.user_number,
        device_id=record.device_id,
        kind=record.kind,
        app_id=record.app_id,
        status=found.status,
        not_before=record.not_before,
        not_after=record.not_after,
        revoked_at=record.revoked_at,
        revocation_reason=record.revocation_reason,
        certificate=x509.load_der_x509_certificate(record.certificate_der)
        .public_bytes(Encoding.PEM)
        .decode(),
        chain=[c.public_bytes(Encoding.PEM).decode() for c in found.chain],
    )


@router.get("/certificates/{serial}", response_model=CertificateStatus)
async def certificate_status(
    serial: str,
    _caller: ServicePrincipal = Depends(require_permission(READ)),
    ca: CaServices = Depends(services),
) -> CertificateStatus:
    record = await certificate_by_serial(ca.ca.db, serial.lower()[:40])
    return _view(answer(record, ca.ca.hierarchy, ca.ca.clock()))


@router.post("/certificates/validate", response_model=CertificateStatus)
async def validate(
    body: ValidateRequest,
    _caller: ServicePrincipal = Depends(require_permission(READ)),
    ca: CaServices = Depends(services),
) -> CertificateStatus:
    """Is this presented certificate one we issued, and its status at ``at`` (default now)?"""
    serial, der = presented_serial(body.certificate)
    record = await certificate_by_serial(ca.ca.db, serial)
    if record is None or record.certificate_der != der:
        raise CertificateNotFound("not a certificate of this CA")
    return _view(answer(record, ca.ca.hierarchy, body.at or ca.ca.clock()))
