"""ASGI middleware: request id, access log, metrics and the request body limit, in one pass."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tsunagu.obs.context import request_id_scope
from tsunagu.obs.metrics import Metrics

log = logging.getLogger("tsunagu.access")
REQUEST_ID_HEADER = b"x-request-id"
_TOO_LARGE = json.dumps(
    {"type": "urn:tsunagu:problem:payload-too-large", "title": "The request body is too large", "status": 413}
).encode()


def internal_error_body(request_id: str) -> bytes:
    return json.dumps(
        {
            "type": "urn:tsunagu:problem:internal-error",
            "title": "Internal error",
            "status": 500,
            "detail": "The server failed; quote the request id when reporting it.",
            "request_id": request_id,
        }
    ).encode()


class BodyTooLarge(HTTPException):
    """Raised from ``receive``: FastAPI re-raises HTTP exceptions from body parsing (others become 400)."""

    def __init__(self) -> None:
        super().__init__(413, "The request body exceeds the limit")


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(REQUEST_ID_HEADER, b"").decode("latin-1") or None
        with request_id_scope(incoming) as request_id:
            await self._handle(scope, receive, send, request_id)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        started = time.perf_counter()
        status: dict[str, int] = {"code": 500}
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            await self._reject_too_large(send, request_id)
            status["code"] = 413
            self._observe(scope, status["code"], started)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge
            return message

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["started"] = 1
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER, request_id.encode())]
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_id)
        except BodyTooLarge:
            status["code"] = 413
            await self._reject_too_large(send, request_id)
        except Exception as exc:
            # Rendered here, inside the request-id scope, rather than by Starlette's outermost
            # ServerErrorMiddleware, so the log line and the answer carry the request id.
            log.error("unhandled error", exc_info=exc)
            if status.get("started"):
                raise
            status["code"] = 500
            await self._send_json(send, 500, internal_error_body(request_id), request_id)
        finally:
            self._observe(scope, status["code"], started)

    async def _reject_too_large(self, send: Send, request_id: str) -> None:
        await self._send_json(send, 413, _TOO_LARGE, request_id)

    async def _send_json(self, send: Send, status: int, body: bytes, request_id: str) -> None:
        headers = [
            (b"content-type", b"application/problem+json"),
            (REQUEST_ID_HEADER, request_id.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _observe(self, scope: Scope, status: int, started: float) -> None:
        elapsed = time.perf_counter() - started
        route: Any = scope.get("route")
        # Label by route template, never the raw path (ids would explode the series count).
        template = getattr(route, "path", "unmatched")
        method = scope.get("method", "")
        self.metrics.observe_request(method, template, status, elapsed)
        if template not in ("/metrics", "/healthz", "/readyz"):
            log.info(
                "request",
                extra={
                    "method": method,
                    "route": template,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )
