"""HTTP routers of signer: parse, authorise, call the domain, shape the response."""

from fastapi import APIRouter
from starlette.types import ASGIApp

from tsunagu.service.fast import fast_route
from tsunagu.signer.api.keys import router as keys_router
from tsunagu.signer.api.sign import router as sign_router

routers: list[APIRouter] = [sign_router, keys_router]

# Signing is served before the routing by the routes' own endpoints: FastAPI's dependency solving
# cost ≈ 0.3 ms a call, a third of what a single signature costs the signer.
fast_routes: dict[tuple[str, str], ASGIApp] = {
    **fast_route(sign_router, "POST", "/v1/sign"),
    **fast_route(sign_router, "POST", "/v1/sign/batch"),
}
