"""HTTP routers of jlis-sync: parse, authorise, call the domain, shape the response."""

from fastapi import APIRouter

from tsunagu.jlis_sync.api.internal import router as internal_router
from tsunagu.jlis_sync.api.push import router as push_router

routers: list[APIRouter] = [internal_router, push_router]
