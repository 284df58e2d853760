"""OCSP (RFC 6960 Appendix A): POST with the DER request, GET with it base64 in the path."""

from __future__ import annotations

import base64
import binascii
from email.utils import format_datetime
from urllib.parse import unquote

from cryptography.x509 import ocsp
from fastapi import APIRouter, Depends, Request, Response

from tsunagu.ca.api.deps import CaServices, services
from tsunagu.ca.domain.ocsp_responder import MALFORMED, MAX_REQUEST_BYTES

router = APIRouter(tags=["ocsp"])
MEDIA = "application/ocsp-response"


def _response(der: bytes, cacheable: bool) -> Response:
    headers = {}
    if cacheable:
        try:
            single = ocsp.load_der_ocsp_response(der)
            if single.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL and single.next_update_utc:
                headers["Expires"] = format_datetime(single.next_update_utc, usegmt=True)
                headers["Last-Modified"] = format_datetime(single.this_update_utc, usegmt=True)
                headers["Cache-Control"] = "public, max-age=300, no-transform"
        except ValueError:
            pass
    return Response(der, media_type=MEDIA, headers=headers)


@router.post("/ocsp", responses={200: {"content": {MEDIA: {}}}})
async def ocsp_post(request: Request, ca: CaServices = Depends(services)) -> Response:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/ocsp-request":
        return Response(MALFORMED, media_type=MEDIA)
    body = await request.body()
    return Response(await ca.ocsp.respond(body), media_type=MEDIA)


@router.get("/ocsp/{encoded:path}", responses={200: {"content": {MEDIA: {}}}})
async def ocsp_get(encoded: str, ca: CaServices = Depends(services)) -> Response:
    """GET form: cacheable by HTTP caches (RFC 5019 §5)."""
    if len(encoded) > MAX_REQUEST_BYTES * 2:
        return Response(MALFORMED, media_type=MEDIA)
    try:
        body = base64.b64decode(unquote(encoded), validate=True)
    except (binascii.Error, ValueError):
        return Response(MALFORMED, media_type=MEDIA)
    der = await ca.ocsp.respond(body)
    return _response(der, cacheable=True)
