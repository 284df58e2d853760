"""HTTP routers of consent: parse, authorise, call the domain, shape the response."""

from fastapi import APIRouter

from tsunagu.consent.api.dashboard import router as dashboard_router
from tsunagu.consent.api.internal import router as internal_router
from tsunagu.consent.api.wallet import router as wallet_router

routers: list[APIRouter] = [internal_router, wallet_router, dashboard_router]
