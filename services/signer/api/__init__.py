"""HTTP routers of signer: parse, authorise, call the domain, shape the response."""

from fastapi import APIRouter

from tsunagu.signer.api.keys import router as keys_router
from tsunagu.signer.api.sign import router as sign_router

routers: list[APIRouter] = [sign_router, keys_router]
