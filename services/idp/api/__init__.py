"""HTTP routers of idp: parse, authorise, call the domain, shape the response."""

from fastapi import APIRouter

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
