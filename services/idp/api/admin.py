"""Operator routes (service token with ``idp:admin``): tenants and their clients."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from tsunagu.auth import ServicePrincipal, require_permission
from tsunagu.idp.api.deps import ADMIN, IdpServices, services
from tsunagu.idp.domain.clients import TENANT_ID, Actor, Client, IssuedClient, Tenant

router = APIRouter(prefix="/admin/v1", tags=["admin"])
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
LEGAL_BASIS = "user_number_legal_basis"


class TenantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=TENANT_ID.pattern, description="slug: lower-case letters, digits, '-'")
    name_ja: str = Field(min_length=1, max_length=200)
    name_en: str = Field(min_length=1, max_length=200)


def tenant_view(tenant: Tenant) -> dict[str, Any]:
    return {
        "id": tenant.id,
        "name_ja": tenant.name_ja,
        "name_en": tenant.name_en,
        "state": tenant.state,
        "created_at": tenant.created_at.isoformat(),
    }


def client_view(client: Client) -> dict[str, Any]:
    """The registered metadata with the client's id and what the operator manages."""
    return {
        **client.metadata.registered(),
        "client_id": client.client_id,
        "tenant_id": client.tenant_id,
        "state": client.state,
        "sector_identifier": client.sector_identifier,
        LEGAL_BASIS: client.user_number_legal_basis,
        "client_id_issued_at": int(client.created_at.timestamp()) if client.created_at else None,
    }


def issued_view(issued: IssuedClient) -> dict[str, Any]:
    view = client_view(issued.client)
    if issued.client_secret is not None:
        view["client_secret"] = issued.client_secret
        view["client_secret_expires_at"] = 0
    return view


def _operator(principal: ServicePrincipal) -> Actor:
    return Actor("operator", principal.name)


@router.post("/tenants", status_code=201)
async def create_tenant(
    body: TenantCreate,
    _operator: ServicePrincipal = Depends(require_permission(ADMIN)),
    idp: IdpServices = Depends(services),
) -> JSONResponse:
    """A new tenant; the answer carries its initial access token (shown once)."""
    tenant, token = await idp.clients.create_tenant(body.id, body.name_ja, body.name_en)
    return JSONResponse(
        {**tenant_view(tenant), "initial_access_token": token}, status_code=201, headers=NO_STORE
    )


@router.get("/tenants/{tenant_id}")
async def get_tenant(
    tenant_id: str,
    _operator: ServicePrincipal = Depends(require_permission(ADMIN)),
    idp: IdpServices = Depends(services),
) -> dict[str, Any]:
    return tenant_view(await idp.clients.tenant(tenant_id))


@router.post("/tenants/{tenant_id}/initial-access-token")
async def rotate_initial_access_token(
    tenant_id: str,
    _operator: ServicePrincipal = Depends(require_permission(ADMIN)),
    idp: IdpServices = Depends(services),
) -> JSONResponse:
    """A new initial access token (shown once); the previous one stops working."""
    token = await idp.clients.rotate_initial_access_token(tenant_id)
    return JSONResponse({"tenant_id": tenant_id, "initial_access_token": token}, headers=NO_STORE)


@router.post("/tenants/{tenant_id}/clients", status_code=201)
async def create_client(
    tenant_id: str,
    body: dict[str, Any],
    operator: ServicePrincipal = Depends(require_permission(ADMIN)),
    idp: IdpServices = Depends(services),
) -> JSONResponse:
    """RFC 7591 metadata plus ``user_number_legal_basis``; a secret (shown once) for
    secret-based authentication methods."""
    metadata = {name: value for name, value in body.items() if name != LEGAL_BASIS}
    legal_basis = body.get(LEGAL_BASIS)
    await idp.clients.tenant(tenant_id)  # 404 before metadata errors for an unknown tenant
    issued = await idp.clients.register(
        tenant_id, metadata, _operator(operator), user_number_legal_basis=legal_basis
    )
    return JSONResponse(issued_view(issued), status_code=201, headers=NO_STORE)


@router.get("/clients/{client_id}")
async def get_client(
    client_id: str,
    _operator: ServicePrincipal = Depends(require_permission(ADMIN)),
    idp: IdpServices = Depends(services),
) -> dict[str, Any]:
    return client_view(await idp.clients.load(client_id))


@router.patch("/clients/{client_id}")
async def patch_client(
    client_id: str,
    body: dict[str, Any],
    operator: ServicePrincipal = Depends(require_permission(ADMIN)),
    idp: IdpServices = Depends(services),
) -> JSONResponse:
    """A JSON merge patch of the metadata (null removes a member); ``user_number_legal_basis``
    may be set or cleared. A client moving to a secret-based method gets a secret (shown once)."""
    issued = await idp.clients.patch(client_id, body, _operator(operator))
    return JSONResponse(issued_view(issued), headers=NO_STORE)


@router.delete("/clients/{client_id}", status_code=204)
async def delete_client(
    client_id: str,
    operator: ServicePrincipal = Depends(require_permission(ADMIN)),
    idp: IdpServices = Depends(services),
) -> Response:
    """The client is disabled (kept for audit): it can no longer authenticate or log anyone in."""
    await idp.clients.disable(client_id, _operator(operator))
    return Response(status_code=204)


@router.post("/clients/{client_id}/secret")
async def rotate_secret(
    client_id: str,
    operator: ServicePrincipal = Depends(require_permission(ADMIN)),
    idp: IdpServices = Depends(services),
) -> JSONResponse:
    """A new client secret (shown once); the previous one stops working at once."""
    issued = await idp.clients.rotate_secret(client_id, _operator(operator))
    return JSONResponse(
        {"client_id": client_id, "client_secret": issued.client_secret, "client_secret_expires_at": 0},
        headers=NO_STORE,
    )
