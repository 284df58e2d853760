"""HTTP routers of consent: parse, authorise, call the domain, shape the response."""

from fastapi import APIRouter
from starlette.types import ASGIApp

from tsunagu.consent.api.dashboard import router as dashboard_router
from tsunagu.consent.api.internal import router as internal_router
from tsunagu.consent.api.wallet import router as wallet_router
from tsunagu.service.fast import fast_route

routers: list[APIRouter] = [internal_router, wallet_router, dashboard_router]

# The effective-consent checks every exchange makes and the wallet's signed decisions, served
# before the routing by their own endpoints (FastAPI's dependency solving cost more than a check
# answered from memory).
fast_routes: dict[tuple[str, str], ASGIApp] = {
    **fast_route(wallet_router, "POST", "/v1/decisions"),
    **fast_route(internal_router, "POST", "/internal/v1/effective"),
    **fast_route(internal_router, "POST", "/internal/v1/effective/check"),
    **fast_route(internal_router, "POST", "/internal/v1/effective/batch"),
}
