"""Push: subscriptions, changes in, and the subscriber's deliveries (the dead-letter store)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from tsunagu.broker.api.deps import SCOPE_PROVIDE, SCOPE_SUBSCRIBE, party_token, services
from tsunagu.broker.domain.access_tokens_rfc9068 import AccessToken
from tsunagu.broker.domain.context import BrokerServices
from tsunagu.broker.domain.exchanges import MAX_ITEMS
from tsunagu.broker.domain.push import MAX_URL

router = APIRouter(tags=["push"])
STATES = r"^(pending|sending|delivered|dead|cancelled)$"


class SubscriptionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[str] = Field(min_length=1, max_length=MAX_ITEMS)
    purpose: str = Field(min_length=1, max_length=64)
    url: str = Field(min_length=1, max_length=MAX_URL, description="https (http only on loopback)")


class ChangeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sub: str = Field(min_length=1, max_length=64, description="the citizen, as this provider knows them")
    item: str = Field(min_length=1, max_length=64)
    value: Any = Field(default=None, description="the new value (validated against the item's schema)")


@router.post("/v1/subscriptions", status_code=201)
async def subscribe(
    body: SubscriptionBody,
    caller: AccessToken = Depends(party_token(SCOPE_SUBSCRIBE)),
    broker: BrokerServices = Depends(services),
) -> dict[str, Any]:
    return await broker.push.subscribe(caller, body.items, body.purpose, body.url)


@router.get("/v1/subscriptions")
async def subscriptions(
    caller: AccessToken = Depends(party_token(SCOPE_SUBSCRIBE)),
    broker: BrokerServices = Depends(services),
) -> dict[str, Any]:
    return {"subscriptions": await broker.push.subscriptions(caller)}


@router.delete("/v1/subscriptions/{subscription_id}", status_code=204)
async def unsubscribe(
    subscription_id: str,
    caller: AccessToken = Depends(party_token(SCOPE_SUBSCRIBE)),
    broker: BrokerServices = Depends(services),
) -> Response:
    await broker.push.unsubscribe(caller, subscription_id)
    return Response(status_code=204)


@router.post("/v1/changes", status_code=202)
async def publish(
    body: ChangeBody,
    caller: AccessToken = Depends(party_token(SCOPE_PROVIDE)),
    broker: BrokerServices = Depends(services),
) -> JSONResponse:
    """A provider's change: accepted once its deliveries are committed (sent afterwards)."""
    accepted = await broker.push.publish(caller, body.sub, body.item, body.value)
    return JSONResponse(accepted, status_code=202)


@router.get("/v1/deliveries")
async def deliveries(
    state: str | None = Query(default=None, pattern=STATES),
    limit: int = Query(default=50, ge=1, le=200),
    caller: AccessToken = Depends(party_token(SCOPE_SUBSCRIBE)),
    broker: BrokerServices = Depends(services),
) -> dict[str, Any]:
    """The caller's own deliveries (``state=dead``: the dead-letter store), newest first."""
    return {"deliveries": await broker.deliveries.of(caller.client_id, state=state, limit=limit)}


@router.post("/v1/deliveries/{delivery_id}/redeliver", status_code=202)
async def redeliver(
    delivery_id: str,
    caller: AccessToken = Depends(party_token(SCOPE_SUBSCRIBE)),
    broker: BrokerServices = Depends(services),
) -> JSONResponse:
    return JSONResponse(await broker.deliveries.redeliver(caller.client_id, delivery_id), status_code=202)
