"""Internal API: ca links cards and checks their status; consumers read current basic 4 values."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Depends

from tsunagu.auth import ServicePrincipal, require_permission
from tsunagu.jlis_sync.api.deps import ADMIN, LINK, READ_RESIDENT, STATUS, jlis_service
from tsunagu.jlis_sync.api.schemas import (
    CrlSync,
    Linked,
    LinkOwner,
    LinkRequest,
    ProposedLink,
    Resident,
    Status,
    StatusRequest,
)
from tsunagu.jlis_sync.domain.service import JlisSyncService

router = APIRouter(prefix="/internal/v1", tags=["internal"])


@router.put("/links/{user_number}", response_model=Linked)
async def link(
    user_number: str,
    body: LinkRequest,
    _caller: ServicePrincipal = Depends(require_permission(LINK)),
    service: JlisSyncService = Depends(jlis_service),
) -> Linked:
    serial, _ = await service.link(user_number, body.certificate_pem, body.basic4_consent)
    return Linked(user_number=user_number, jpki_serial=serial)


@router.post("/links", response_model=Linked)
async def link_or_owner(
    body: ProposedLink,
    _caller: ServicePrincipal = Depends(require_permission(LINK)),
    service: JlisSyncService = Depends(jlis_service),
) -> Linked:
    """Link the card to the proposed number — unless it (or a card J-LIS linked to it after a move
    or renewal) already belongs to someone: then that person's number is answered, unchanged."""
    serial, owner = await service.link(
        body.user_number, body.certificate_pem, body.basic4_consent, adopt_existing=True
    )
    return Linked(user_number=owner, jpki_serial=serial)


@router.get("/links/by-serial/{serial}", response_model=LinkOwner)
async def link_owner(
    serial: str,
    _caller: ServicePrincipal = Depends(require_permission(LINK)),
    service: JlisSyncService = Depends(jlis_service),
) -> LinkOwner:
    """Who a JPKI signing certificate (serial, hex) belongs to — also after a move or renewal
    J-LIS told us about: the new certificate is linked to the same person."""
    user_number, state = await service.link_owner(serial)
    return LinkOwner(jpki_serial=serial.lower(), user_number=user_number, state=state)


@router.post("/jpki/status", response_model=Status)
async def status(
    body: StatusRequest,
    _caller: ServicePrincipal = Depends(require_permission(STATUS)),
    service: JlisSyncService = Depends(jlis_service),
) -> Status:
    return Status(**asdict(await service.card_status(body.certificate_pem)))


@router.get("/residents/{user_number}", response_model=Resident)
async def resident(
    user_number: str,
    _caller: ServicePrincipal = Depends(require_permission(READ_RESIDENT)),
    service: JlisSyncService = Depends(jlis_service),
) -> Resident:
    record = await service.resident(user_number)
    return Resident(
        user_number=record.user_number,
        name=record.name,
        address=record.address,
        birth_date=record.birth_date,
        sex=record.sex,
        deceased_at=record.deceased_at,
    )


@router.post("/crl/sync", response_model=CrlSync)
async def sync_now(
    _caller: ServicePrincipal = Depends(require_permission(ADMIN)),
    service: JlisSyncService = Depends(jlis_service),
) -> CrlSync:
    """Run a CRL sync cycle now (otherwise it runs every ``CRL_INTERVAL_S``)."""
    return CrlSync(**asdict(await service.sync_crl()))
