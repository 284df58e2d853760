"""OCSP over HTTP (RFC 6960 Appendix A, RFC 5019): POST with the DER request, GET with it base64 in
the path.

``POST /ocsp`` is what clients send and what must be cheap, so it is a plain ASGI endpoint rather
than a FastAPI route: an answer costs the app's middleware (per-client rate limit, body limit,
request id, metrics, access log) and the routing, not FastAPI's dependency solving and its request
and response objects. ``GET /ocsp/{request}`` is the form HTTP caches keep (RFC 5019 §5): an
ordinary route that adds the caching headers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import datetime
from email.utils import format_datetime
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Request, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tsunagu.ca.api.deps import CaServices, services
from tsunagu.ca.domain.ocsp_responder import MALFORMED, MAX_REQUEST_BYTES, TRY_LATER, OcspAnswer
from tsunagu.service import get_runtime

router = APIRouter(tags=["ocsp"])
REQUEST_MEDIA = b"application/ocsp-request"
MEDIA = "application/ocsp-response"
MAX_AGE_S = 300  # HTTP caches re-ask at least this often, so a revocation shows within it


def cache_headers(answer: OcspAnswer, now: datetime) -> dict[str, str]:
    """RFC 5019 §6.2 headers for a cacheable answer; ``no-store`` for the others (errors, answers
    echoing a nonce, "unknown")."""
    if not answer.cacheable or answer.this_update is None or answer.next_update is None:
        return {"Cache-Control": "no-store"}
    max_age = max(0, min(MAX_AGE_S, int((answer.next_update - now).total_seconds())))
    return {
        "Last-Modified": format_datetime(answer.this_update, usegmt=True),
        "Expires": format_datetime(answer.next_update, usegmt=True),
        "ETag": f'"{hashlib.sha256(answer.der).hexdigest()}"',
        "Cache-Control": f"max-age={max_age}, public, no-transform, must-revalidate",
    }


class _Disconnected(Exception):
    pass


async def _body(receive: Receive) -> bytes | None:
    """The request body, or None as soon as it exceeds MAX_REQUEST_BYTES (the rest is not read)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class OcspPost:
    """``POST /ocsp`` (application/ocsp-request → application/ocsp-response) as a plain ASGI app.

    Mounted below as a route; it needs nothing from FastAPI (not even its exception handlers), so
    it can also be dispatched before the routing, inside the rate-limit and body-limit middleware.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = POST_ROUTE  # FastAPI sets it only for its own routes; metrics label by it
        ca = get_runtime(Request(scope)).resources
        if not isinstance(ca, CaServices):  # not configured: an OCSP client reads the body
            await _send(send, TRY_LATER, status=503)
            return
        content_type = declared = b""
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                declared = value
        der = MALFORMED
        too_long = declared and (not declared.isdigit() or int(declared) > MAX_REQUEST_BYTES)
        if content_type.split(b";")[0].strip().lower() == REQUEST_MEDIA and not too_long:
            try:
                body = await _body(receive)
            except _Disconnected:
                return
            if body is not None:
                der = (await ca.ocsp.answer(body)).der
        await _send(send, der)


async def _send(send: Send, der: bytes, status: int = 200) -> None:
    headers = [(b"content-type", MEDIA.encode()), (b"content-length", str(len(der)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": der})


POST_ROUTE = Route("/ocsp", OcspPost(), methods=["POST"], name="ocsp_post")
router.routes.append(POST_ROUTE)


@router.get("/ocsp/{encoded:path}", responses={200: {"content": {MEDIA: {}}}})
async def ocsp_get(encoded: str, ca: CaServices = Depends(services)) -> Response:
    """GET form: cacheable by HTTP caches (RFC 5019 §5)."""
    if len(encoded) > MAX_REQUEST_BYTES * 2:
        return Response(MALFORMED, media_type=MEDIA, headers={"Cache-Control": "no-store"})
    try:
        body = base64.b64decode(unquote(encoded), validate=True)
    except (binascii.Error, ValueError):
        return Response(MALFORMED, media_type=MEDIA, headers={"Cache-Control": "no-store"})
    answer = await ca.ocsp.answer(body)
    return Response(answer.der, media_type=MEDIA, headers=cache_headers(answer, ca.ca.clock()))
