"""HTTP routers of broker: parse, authorise, call the domain, shape the response."""

from fastapi import APIRouter

from tsunagu.broker.api.catalog import router as catalog_router
from tsunagu.broker.api.exchanges import router as exchanges_router
from tsunagu.broker.api.ngsild import router as ngsild_router
from tsunagu.broker.api.subscriptions import router as subscriptions_router
from tsunagu.broker.api.usage import router as usage_router

routers: list[APIRouter] = [
    catalog_router,
    exchanges_router,
    subscriptions_router,
    usage_router,
    ngsild_router,
]
