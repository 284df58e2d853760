"""HTTP routers of broker: parse, authorise, call the domain, shape the response."""

from fastapi import APIRouter
from starlette.types import ASGIApp

from tsunagu.broker.api.catalog import router as catalog_router
from tsunagu.broker.api.exchanges import router as exchanges_router
from tsunagu.broker.api.ngsild import ENTITY
from tsunagu.broker.api.ngsild import router as ngsild_router
from tsunagu.broker.api.subscriptions import router as subscriptions_router
from tsunagu.broker.api.usage import router as usage_router
from tsunagu.service.fast import fast_route

routers: list[APIRouter] = [
    catalog_router,
    exchanges_router,
    subscriptions_router,
    usage_router,
    ngsild_router,
]

# Served before the routing (the same answers as their routes above, which document them).
fast_routes: dict[tuple[str, str], ASGIApp] = fast_route(ngsild_router, "GET", ENTITY)
