"""Serve a FastAPI route's own endpoint before FastAPI's routing (``ServiceSpec.fast_routes``).

FastAPI's routing, dependency solving and response validation cost ≈ 0.3 ms a request on these
machines: more than a consent check or a signature answered from memory. :func:`fast_route` takes
an ``APIRoute`` (which keeps documenting the route in the OpenAPI) and builds a plain ASGI app that
calls the same endpoint the same way, for the shapes hot routes have:

- dependencies (the router's, then the parameters' ``Depends``) that take only the ``Request``,
  called in FastAPI's order — authentication first;
- at most one body parameter, a pydantic model, validated from the JSON body;
- path parameters as strings, and the ``Request`` itself;
- a return value that is a pydantic model (sent as JSON with the route's status code) or a
  ``Response``.

Anything else is refused when the route is built, so a route that would behave differently from
its FastAPI twin cannot be served fast by accident. Errors answer as the app's handlers do (raised
ones through ``FastRoutes``: a domain error as its problem+json), and a body that does not validate
as 422 ``validation-failed`` naming the fields but never echoing the input.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from fastapi.params import Depends
from fastapi.routing import APIRoute, APIRouter
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from tsunagu.errors.fastapi import validation_error_response

Dependency = Callable[[Request], Awaitable[Any]]


class NotFastRoutable(TypeError):
    """The route has a shape :func:`fast_route` does not reproduce exactly."""


@dataclass(frozen=True)
class _Argument:
    name: str
    kind: str  # "request", "path", "body", "depends"
    source: Any = None  # the body's model or the dependency


def _request_only(dependency: Any, route: str) -> Dependency:
    parameters = list(inspect.signature(dependency).parameters.values())
    hints = typing.get_type_hints(dependency)
    if (
        not inspect.iscoroutinefunction(dependency)
        or len(parameters) != 1
        or hints.get(parameters[0].name) is not Request
    ):
        raise NotFastRoutable(f"{route}: dependency {dependency!r} must be `async def (request: Request)`")
    return typing.cast(Dependency, dependency)


def _arguments(route: APIRoute) -> list[_Argument]:
    hints = typing.get_type_hints(route.endpoint)
    path_names = set(route.param_convertors)
    arguments: list[_Argument] = []
    for parameter in inspect.signature(route.endpoint).parameters.values():
        hint = hints.get(parameter.name)
        if isinstance(parameter.default, Depends):
            arguments.append(
                _Argument(parameter.name, "depends", _request_only(parameter.default.dependency, route.path))
            )
        elif hint is Request:
            arguments.append(_Argument(parameter.name, "request"))
        elif parameter.name in path_names and hint is str:
            arguments.append(_Argument(parameter.name, "path"))
        elif (
            inspect.isclass(hint)
            and issubclass(hint, BaseModel)
            and parameter.default is inspect.Parameter.empty
        ):
            arguments.append(_Argument(parameter.name, "body", hint))
        else:
            raise NotFastRoutable(
                f"{route.path}: parameter {parameter.name!r} is neither body, path, Request nor Depends"
            )
    if sum(argument.kind == "body" for argument in arguments) > 1:
        raise NotFastRoutable(f"{route.path}: more than one body parameter")
    return arguments


class EndpointApp:
    """The ASGI app :func:`fast_route` returns (see the module's docstring)."""

    def __init__(self, route: APIRoute) -> None:
        if route.response_model is not None and not (
            inspect.isclass(route.response_model) and issubclass(route.response_model, BaseModel)
        ):
            raise NotFastRoutable(f"{route.path}: the response model must be a pydantic model")
        self.path = route.path
        self.endpoint = route.endpoint
        self.status_code = route.status_code or 200
        self.response_model: type[BaseModel] | None = route.response_model
        self.router_dependencies = [_request_only(d.dependency, route.path) for d in route.dependencies]
        self.arguments = _arguments(route)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # What it raises (a domain error, a service's own error) is answered by ``FastRoutes``
        # with the app's handlers.
        response = await self._respond(Request(scope, receive))
        await response(scope, receive, send)

    async def _respond(self, request: Request) -> Response:
        for dependency in self.router_dependencies:
            await dependency(request)
        # As FastAPI: every dependency (authentication) before the parameters and the body.
        values: dict[str, Any] = {}
        for argument in self.arguments:
            if argument.kind == "depends":
                values[argument.name] = await argument.source(request)
        for argument in self.arguments:
            if argument.kind == "request":
                values[argument.name] = request
            elif argument.kind == "path":
                values[argument.name] = request.path_params[argument.name]
            elif argument.kind == "body":
                try:
                    values[argument.name] = argument.source.model_validate_json(await request.body())
                except ValidationError as error:
                    return validation_error_response(error.errors(), request.url.path, prefix=("body",))
        result = await self.endpoint(**values)
        if isinstance(result, Response):
            return result
        if self.response_model is not None and not isinstance(result, self.response_model):
            result = self.response_model.model_validate(result)
        if not isinstance(result, BaseModel):
            raise NotFastRoutable(f"{self.path}: the endpoint returned neither a model nor a Response")
        return Response(result.model_dump_json(), status_code=self.status_code, media_type="application/json")


def fast_route(router: APIRouter, method: str, path: str) -> dict[tuple[str, str], ASGIApp]:
    """``{(method, path): app}`` for the router's route at ``path`` (the full path, with the
    router's prefix), ready for ``ServiceSpec.fast_routes``."""
    for route in router.routes:
        if isinstance(route, APIRoute) and route.path == path and method in (route.methods or ()):
            return {(method, path): EndpointApp(route)}
    raise LookupError(f"no {method} {path} route in the router")
