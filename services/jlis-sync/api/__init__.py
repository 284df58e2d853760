"""HTTP routers of jlis-sync: parse, authorise, call the domain, shape the response."""

from fastapi import APIRouter

routers: list[APIRouter] = []
