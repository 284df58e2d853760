"""A route's endpoint served before FastAPI's routing (libs/service/fast.py) answers as the route
does: the same dependencies in the same order, the same body validation, the same errors."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from tsunagu.errors.fastapi import install_problem_handlers
from tsunagu.errors.problems import DomainError
from tsunagu.service.app import FastRoutes
from tsunagu.service.fast import NotFastRoutable, fast_route


class Refused(DomainError):
    code = "refused"
    title = "Refused"
    status = 403


class Missing(DomainError):
    code = "missing"
    title = "No such thing"
    status = 404


async def tenant_open(request: Request) -> None:
    if request.headers.get("x-closed") == "yes":
        raise Refused("the tenant is closed")


async def caller(request: Request) -> str:
    name = request.headers.get("x-caller")
    if name is None:
        raise Refused("who are you?")
    return name


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item: str = Field(max_length=8)
    count: int = Field(ge=1)


class Answer(BaseModel):
    caller: str
    item: str
    total: int


router = APIRouter(prefix="/v1", dependencies=[Depends(tenant_open)])


@router.post("/things", response_model=Answer, status_code=201)
async def add_thing(body: Body, who: str = Depends(caller)) -> Answer:
    if body.item == "ghost":
        raise Missing("no ghost here")
    return Answer(caller=who, item=body.item, total=body.count * 2)


class Teapot(Exception):
    """Not a domain error: the service answers it with a handler of its own (like OAuth's)."""


async def teapot_handler(_request: Request, _error: Exception) -> Response:
    return Response('{"error":"teapot"}', status_code=418, media_type="application/json")


@router.post("/teapot")
async def brew(who: str = Depends(caller)) -> Response:
    raise Teapot(who)


@router.get("/things/{thing_id}")
async def get_thing(thing_id: str, request: Request, who: str = Depends(caller)) -> Response:
    return Response(f"{who}:{thing_id}:{request.query_params.get('v', '')}", media_type="text/plain")


def _apps() -> tuple[FastAPI, Any]:
    app = FastAPI()
    install_problem_handlers(app)
    app.add_exception_handler(Teapot, teapot_handler)
    app.include_router(router)
    fast = FastRoutes(
        _unrouted,
        {
            **fast_route(router, "POST", "/v1/things"),
            **fast_route(router, "GET", "/v1/things/{thing_id}"),
            **fast_route(router, "POST", "/v1/teapot"),
        },
        exception_handlers={Teapot: teapot_handler},
    )
    return app, fast


async def _unrouted(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError(f"{scope['path']} reached the fallback app")


CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/v1/things", {"json": {"item": "tea", "count": 2}, "headers": {"x-caller": "idp"}}),
    ("POST", "/v1/things", {"json": {"item": "tea", "count": 2}}),  # no caller
    (
        "POST",
        "/v1/things",
        {"json": {"item": "tea", "count": 2}, "headers": {"x-caller": "a", "x-closed": "yes"}},
    ),
    (
        "POST",
        "/v1/things",
        {"json": {"item": "a-very-long-item", "count": 0}, "headers": {"x-caller": "idp"}},
    ),
    (
        "POST",
        "/v1/things",
        {"json": {"item": "tea", "count": 1, "secret": "x"}, "headers": {"x-caller": "idp"}},
    ),
    ("POST", "/v1/things", {"json": {"item": "tea", "count": 2}, "headers": {"x-closed": "yes"}}),
    ("POST", "/v1/things", {"json": {"item": "ghost", "count": 1}, "headers": {"x-caller": "idp"}}),
    ("POST", "/v1/things", {"json": {"count": 1}}),  # no caller and a bad body: the caller first
    ("GET", "/v1/things/urn:x:1?v=3", {"headers": {"x-caller": "broker"}}),
    ("GET", "/v1/things/urn:x:1", {}),
    ("POST", "/v1/teapot", {"headers": {"x-caller": "idp"}}),  # the service's own handler
    ("POST", "/v1/teapot", {}),
]


@pytest.mark.parametrize(("method", "path", "options"), CASES)
async def test_the_fast_endpoint_answers_as_its_fastapi_route(
    method: str, path: str, options: dict[str, Any]
):
    app, fast = _apps()
    answers = []
    for target in (app, fast):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=target), base_url="http://t"
        ) as client:
            response = await client.request(method, path, **options)
        answers.append((response.status_code, response.headers["content-type"], response.content))
    routed, served = answers
    assert served[0] == routed[0]
    assert served[1] == routed[1]
    if "json" in routed[1]:
        assert json.loads(served[2]) == json.loads(routed[2])
    else:
        assert served[2] == routed[2]


async def test_a_body_that_is_not_json_is_422_and_the_input_is_not_echoed():
    _app, fast = _apps()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fast), base_url="http://t") as client:
        response = await client.post("/v1/things", content=b"{not json SECRET", headers={"x-caller": "idp"})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("validation-failed")
    assert b"SECRET" not in response.content


def test_a_route_of_another_shape_is_refused_when_built():
    odd = APIRouter()

    @odd.get("/search")
    async def search(q: str) -> Response:  # a query parameter: not reproduced
        return Response(q)

    def sync_dependency(request: Request) -> None:
        return None

    @odd.get("/sync")
    async def with_sync(_: None = Depends(sync_dependency)) -> Response:
        return Response()

    @odd.get("/mapping")
    async def mapping() -> dict[str, str]:  # not a model: FastAPI's encoder would be needed
        return {}

    with pytest.raises(NotFastRoutable):
        fast_route(odd, "GET", "/search")
    with pytest.raises(NotFastRoutable):
        fast_route(odd, "GET", "/sync")
    with pytest.raises(NotFastRoutable):
        fast_route(odd, "GET", "/mapping")
    with pytest.raises(LookupError):
        fast_route(odd, "POST", "/search")
