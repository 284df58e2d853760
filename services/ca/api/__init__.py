"""HTTP routers of ca: parse, authorise, call the domain, shape the response."""

from fastapi import APIRouter
from starlette.types import ASGIApp

from tsunagu.ca.api.admin import router as admin_router
from tsunagu.ca.api.enrollment import router as enrollment_router
from tsunagu.ca.api.internal import router as internal_router
from tsunagu.ca.api.ocsp import router as ocsp_router
from tsunagu.ca.api.public import router as public_router
from tsunagu.service.fast import fast_route

routers: list[APIRouter] = [enrollment_router, admin_router, internal_router, public_router, ocsp_router]

# Certificate checks every signed decision, wallet query and login makes, served before the
# routing by their own endpoints (FastAPI's dependency solving cost ≈ 0.3 ms a call).
fast_routes: dict[tuple[str, str], ASGIApp] = {
    **fast_route(internal_router, "POST", "/internal/v1/certificates/validate"),
    **fast_route(internal_router, "GET", "/internal/v1/certificates/{serial}"),
}
