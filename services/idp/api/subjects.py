"""The broker's lookups (service token with ``idp:subjects:read``): a client's pairwise ``sub``
to the person and back, and which tenant and sector a client belongs to."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from tsunagu.auth import ServicePrincipal, require_permission
from tsunagu.idp.api.deps import SUBJECTS, IdpServices, services
from tsunagu.idp.domain.clients import Client
from tsunagu.idp.domain.errors import ClientNotFound, SubjectNotFound

router = APIRouter(prefix="/internal/v1", tags=["internal"])
USER_NUMBER = r"^[A-Za-z0-9]{1,16}$"


class SubjectQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(min_length=1, max_length=64)
    sub: str = Field(min_length=1, max_length=64)


class PairwiseQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(min_length=1, max_length=64)
    user_number: str = Field(pattern=USER_NUMBER)


async def _active(idp: IdpServices, client_id: str) -> Client:
    client = await idp.clients.get(client_id)
    if client is None:
        raise ClientNotFound("no active client with this id")
    return client


@router.get("/clients/{client_id}")
async def client_party(
    client_id: str,
    _caller: ServicePrincipal = Depends(require_permission(SUBJECTS)),
    idp: IdpServices = Depends(services),
) -> dict[str, Any]:
    """What the broker needs of a party: tenant, sector and names (no keys, no secrets)."""
    client = await idp.clients.load(client_id)
    return {
        "client_id": client.client_id,
        "tenant_id": client.tenant_id,
        "state": client.state,
        "sector_identifier": client.sector_identifier,
        "client_name": client.metadata.client_name,
    }


@router.post("/subjects/resolve")
async def resolve_subject(
    query: SubjectQuery,
    _caller: ServicePrincipal = Depends(require_permission(SUBJECTS)),
    idp: IdpServices = Depends(services),
) -> dict[str, str]:
    """The person behind a ``sub`` this client received (only subjects actually issued)."""
    client = await _active(idp, query.client_id)
    user_number = await idp.tokens.user_for_subject(client.sector_identifier, query.sub)
    if user_number is None:
        raise SubjectNotFound("this client was never given this subject")
    return {"user_number": user_number, "sector_identifier": client.sector_identifier}


@router.post("/subjects/pairwise")
async def pairwise_subject(
    query: PairwiseQuery,
    _caller: ServicePrincipal = Depends(require_permission(SUBJECTS)),
    idp: IdpServices = Depends(services),
) -> dict[str, str]:
    """The person's ``sub`` for this client's sector (remembered as issued)."""
    client = await _active(idp, query.client_id)
    sub = await idp.tokens.pairwise_subject(client.sector_identifier, query.user_number)
    return {"sub": sub, "sector_identifier": client.sector_identifier}
