"""Operator routes: the CA ceremony, issuing-CA rollover, revocation with a reason."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from tsunagu.auth import ServicePrincipal, require_permission
from tsunagu.ca.api.deps import ADMIN, CaServices, services
from tsunagu.ca.api.schemas import (
    AuthorityView,
    HierarchyRequest,
    OperatorRevocation,
    Revoked,
    RolloverRequest,
)
from tsunagu.ca.domain.authorities import Hierarchy

router = APIRouter(prefix="/admin/v1", tags=["admin"])


def _view(hierarchy: Hierarchy) -> list[AuthorityView]:
    return [
        AuthorityView(
            id=a.id,
            kind=a.kind,
            parent_id=a.parent_id,
            key_id=a.key_id,
            algorithm=a.algorithm,
            state=a.state,
            certificate=a.pem,
        )
        for a in hierarchy.authorities.values()
    ]


@router.post("/hierarchy", status_code=201, response_model=list[AuthorityView])
async def create_hierarchy(
    body: HierarchyRequest,
    _operator: ServicePrincipal = Depends(require_permission(ADMIN)),
    ca: CaServices = Depends(services),
) -> list[AuthorityView]:
    """Create the root, the first issuing CA and its OCSP responder from active signer keys."""
    hierarchy = await ca.ca.create_hierarchy(body.root_key_id, body.issuing_key_id, body.ocsp_key_id)
    await ca.crls.publish_due()
    return _view(hierarchy)


@router.post("/issuing-cas", status_code=201, response_model=list[AuthorityView])
async def roll_over(
    body: RolloverRequest,
    _operator: ServicePrincipal = Depends(require_permission(ADMIN)),
    ca: CaServices = Depends(services),
) -> list[AuthorityView]:
    """A new issuing CA (signed by the root) takes over issuing; the old one stays for its CRL/OCSP."""
    hierarchy = await ca.ca.roll_over_issuing(body.issuing_key_id, body.ocsp_key_id)
    await ca.crls.publish_due()
    return _view(hierarchy)


@router.get("/authorities", response_model=list[AuthorityView])
async def authorities(
    _operator: ServicePrincipal = Depends(require_permission(ADMIN)),
    ca: CaServices = Depends(services),
) -> list[AuthorityView]:
    return _view(await ca.ca.load())


@router.post("/certificates/{serial}/revocation", response_model=Revoked)
async def revoke(
    serial: str,
    body: OperatorRevocation,
    operator: ServicePrincipal = Depends(require_permission(ADMIN)),
    ca: CaServices = Depends(services),
) -> Revoked:
    record = await ca.revocations.by_operator(serial, body.reason, body.comment, operator.name)
    ca.published_revocations([record.serial])
    return Revoked(revoked=[record.serial])
