"""HTTP routers of idp: parse, authorise, call the domain, shape the response."""

from fastapi import APIRouter
from starlette.types import ASGIApp

from tsunagu.idp.api.admin import router as admin_router
from tsunagu.idp.api.authorize import router as authorize_router
from tsunagu.idp.api.ciba import router as ciba_router
from tsunagu.idp.api.discovery import router as discovery_router
from tsunagu.idp.api.grants import router as grants_router
from tsunagu.idp.api.login import router as login_router
from tsunagu.idp.api.logout import router as logout_router
from tsunagu.idp.api.oauth import router as oauth_router
from tsunagu.idp.api.registration import router as registration_router
from tsunagu.idp.api.subjects import router as subjects_router
from tsunagu.service.fast import fast_route

routers: list[APIRouter] = [
    discovery_router,
    oauth_router,
    grants_router,
    admin_router,
    registration_router,
    authorize_router,
    login_router,
    ciba_router,
    logout_router,
    subjects_router,
]

# The token endpoint, served before the routing by its own endpoint (FastAPI's routing and
# dependency solving cost ≈ 0.3 ms of each token); its OAuth errors are answered by the app's
# handler (ServiceSpec.exception_handlers), as on the routed path.
fast_routes: dict[tuple[str, str], ASGIApp] = fast_route(oauth_router, "POST", "/token")
