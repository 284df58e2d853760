"""HTTP routers of idp: parse, authorise, call the domain, shape the response."""

from fastapi import APIRouter

from tsunagu.idp.api.logout import router as logout_router

routers: list[APIRouter] = [logout_router]
