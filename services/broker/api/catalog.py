"""The data catalog: public reads, tenant-scoped administration (operator service token)."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from tsunagu.auth import ServicePrincipal, require_permission
from tsunagu.broker.api.deps import CATALOG_WRITE, services
from tsunagu.broker.domain.context import BrokerServices
from tsunagu.broker.domain.errors import InvalidCatalogEntry

router = APIRouter(tags=["catalog"])
TENANT = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class Provider(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(min_length=1, max_length=64)
    endpoint: str = Field(min_length=1, max_length=2048)


class ItemDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label_ja: str = Field(min_length=1, max_length=200)
    label_en: str = Field(min_length=1, max_length=200)
    sensitivity: str = Field(pattern=r"^(normal|special-care)$")
    schema_: dict[str, Any] = Field(alias="schema")
    providers: list[Provider] = Field(min_length=1, max_length=10)


@router.get("/v1/catalog")
async def catalog(broker: BrokerServices = Depends(services)) -> JSONResponse:
    items = [item.view() for item in await broker.catalog.all_items()]
    return JSONResponse({"items": items}, headers={"Cache-Control": "public, max-age=60"})


@router.put("/internal/v1/tenants/{tenant_id}/items/{item_id}")
async def put_item(
    tenant_id: str,
    item_id: str,
    definition: ItemDefinition,
    _operator: ServicePrincipal = Depends(require_permission(CATALOG_WRITE)),
    broker: BrokerServices = Depends(services),
) -> dict[str, Any]:
    """Define or replace an item of this tenant (another tenant's item: 409)."""
    if not TENANT.match(tenant_id):
        raise InvalidCatalogEntry("tenant id: a slug")
    entry = definition.model_dump(by_alias=True)
    item = await broker.catalog.put_item(tenant_id, item_id, entry)
    return item.view()


@router.get("/v1/jwks")
async def jwks(broker: BrokerServices = Depends(services)) -> JSONResponse:
    """The broker's ``exchange`` keys: providers verify requests, subscribers their webhooks."""
    return JSONResponse(await broker.exchange_keys.jwks(), headers={"Cache-Control": "public, max-age=300"})
