"""HTTP routers of ca: parse, authorise, call the domain, shape the response."""

from fastapi import APIRouter

from tsunagu.ca.api.admin import router as admin_router
from tsunagu.ca.api.enrollment import router as enrollment_router
from tsunagu.ca.api.internal import router as internal_router
from tsunagu.ca.api.ocsp import router as ocsp_router
from tsunagu.ca.api.public import router as public_router

routers: list[APIRouter] = [enrollment_router, admin_router, internal_router, public_router, ocsp_router]
