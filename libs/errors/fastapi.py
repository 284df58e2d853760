"""One place that maps every error to RFC 9457 problem+json for a FastAPI app."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tsunagu.errors.problems import PROBLEM_CONTENT_TYPE, DomainError, Problem, problem_type

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad-request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    409: "conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
    429: "too-many-requests",
    503: "service-unavailable",
}


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        problem.model_dump(exclude_none=True),
        status_code=problem.status,
        media_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


def _instance(request: Request) -> str:
    return request.url.path


def domain_error_response(exc: DomainError, instance: str) -> JSONResponse:
    """The problem+json answer to a domain error: what the app's handler sends, for plain ASGI
    routes that run outside FastAPI's exception handling (``ServiceSpec.fast_routes``)."""
    if exc.status >= 500:
        log.error("request failed", extra={"problem": exc.code, "status": exc.status})
    return problem_response(exc.to_problem(instance), exc.headers)


async def domain_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """The app's handler of domain errors (also used by ``FastRoutes`` for fast routes)."""
    assert isinstance(exc, DomainError)
    return domain_error_response(exc, _instance(request))


def validation_error_response(
    errors: Sequence[Any], instance: str, prefix: tuple[str, ...] = ()
) -> JSONResponse:
    """422 ``validation-failed`` for pydantic's ``errors()``: where and what kind of error, never the
    input (it may hold secrets or personal data). ``prefix`` goes before each location (FastAPI's
    ``body``)."""
    located = [
        {
            "location": ".".join(str(part) for part in (*prefix, *err.get("loc", ()))),
            "type": err.get("type", "invalid"),
        }
        for err in errors
    ]
    problem = Problem(
        type=problem_type("validation-failed"),
        title="The request did not validate",
        status=422,
        detail=f"{len(located)} field(s) are invalid",
        instance=instance,
        errors=located,
    )
    return problem_response(problem)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return validation_error_response(exc.errors(), _instance(request))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http-error")
    problem = Problem(
        type=problem_type(code),
        title=code.replace("-", " ").capitalize(),
        status=exc.status_code,
        detail=exc.detail if isinstance(exc.detail, str) else None,
        instance=_instance(request),
    )
    return problem_response(problem, dict(exc.headers or {}))


def install_problem_handlers(app: FastAPI) -> None:
    """Map DomainError, validation errors and HTTP errors to problem+json.

    Unexpected exceptions become a 500 problem in :class:`tsunagu.obs.middleware.ObservabilityMiddleware`,
    which knows the request id.
    """
    app.add_exception_handler(DomainError, domain_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
