"""Fast routes: plain ASGI apps dispatched before FastAPI's routing, by exact path or by a path
ending in one parameter."""

from __future__ import annotations

from typing import Any

import pytest

from tsunagu.service.app import FastRoutes


class Recorder:
    """An ASGI app that keeps the scopes it was called with."""

    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, _receive: Any, _send: Any) -> None:
        self.scopes.append(dict(scope))


async def _dispatch(routes: FastRoutes, method: str, path: str) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_message: Any) -> None:
        pass

    await routes({"type": "http", "method": method, "path": path, "headers": []}, receive, send)


@pytest.fixture
def apps() -> tuple[Recorder, Recorder, Recorder, FastRoutes]:
    exact, templated, fallback = Recorder(), Recorder(), Recorder()
    routes = FastRoutes(fallback, {("POST", "/ocsp"): exact, ("GET", "/v1/entities/{entity_id}"): templated})
    return exact, templated, fallback, routes


async def test_an_exact_path_and_a_last_segment_parameter_are_dispatched_with_their_template(apps):
    exact, templated, fallback, routes = apps
    await _dispatch(routes, "POST", "/ocsp")
    await _dispatch(routes, "GET", "/v1/entities/urn:ngsi-ld:Kiosk:1")
    assert len(exact.scopes) == 1 and exact.scopes[0]["path_params"] == {}
    assert exact.scopes[0]["route"].path == "/ocsp"
    (scope,) = templated.scopes
    assert scope["path_params"] == {"entity_id": "urn:ngsi-ld:Kiosk:1"}
    assert scope["route"].path == "/v1/entities/{entity_id}"  # the metrics' route label
    assert fallback.scopes == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/ocsp"),  # another method
        ("POST", "/v1/entities/urn:x:1"),
        ("GET", "/v1/entities/"),  # an empty parameter
        ("GET", "/v1/entities"),
        ("GET", "/v1/entities/urn:x:1/attrs"),  # more segments
        ("GET", "/v2/entities/urn:x:1"),
    ],
)
async def test_anything_else_goes_to_the_app_untouched(apps, method: str, path: str):
    exact, templated, fallback, routes = apps
    await _dispatch(routes, method, path)
    assert exact.scopes == [] and templated.scopes == []
    (scope,) = fallback.scopes
    assert "route" not in scope and "path_params" not in scope
