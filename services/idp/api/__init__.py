"""HTTP routers of idp: parse, authorise, call the domain, shape the response."""

from fastapi import APIRouter

from tsunagu.idp.api.admin import router as admin_router
from tsunagu.idp.api.discovery import router as discovery_router
from tsunagu.idp.api.logout import router as logout_router
from tsunagu.idp.api.oauth import router as oauth_router
from tsunagu.idp.api.registration import router as registration_router

routers: list[APIRouter] = [discovery_router, oauth_router, admin_router, registration_router, logout_router]
