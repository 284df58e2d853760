"""HTTP routers of consent: parse, authorise, call the domain, shape the response."""

from fastapi import APIRouter

routers: list[APIRouter] = []
