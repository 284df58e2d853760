"""What anyone may fetch: the CA certificates and the CRLs (HTTP caching per RFC 9111)."""

from __future__ import annotations

from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime

from fastapi import APIRouter, Depends, Request, Response

from tsunagu.ca.api.deps import CaServices, services
from tsunagu.ca.domain.errors import CertificateNotFound

router = APIRouter(tags=["public"])
MAX_AGE_S = 300


@router.get("/ca/{authority_id}.crt", responses={200: {"content": {"application/pkix-cert": {}}}})
async def ca_certificate(authority_id: str, ca: CaServices = Depends(services)) -> Response:
    """A CA certificate (DER), as named by the caIssuers URL of the certificates it issued."""
    authority = ca.ca.hierarchy.get(authority_id)
    if authority is None or authority.kind == "ocsp":
        raise CertificateNotFound("no such CA")
    return Response(
        authority.der, media_type="application/pkix-cert", headers={"Cache-Control": "public, max-age=86400"}
    )


@router.get("/ca/chain.pem", responses={200: {"content": {"application/pem-certificate-chain": {}}}})
async def chain(ca: CaServices = Depends(services)) -> Response:
    """The current issuing CA and the root, PEM (what a wallet or relying party installs)."""
    issuing = ca.ca.hierarchy.current_issuing()
    body = "".join(a.pem for a in ca.ca.hierarchy.chain(issuing.id))
    return Response(body, media_type="application/pem-certificate-chain")


@router.get("/crl/{authority_id}.crl", responses={200: {"content": {"application/pkix-crl": {}}}, 304: {}})
async def crl(authority_id: str, request: Request, ca: CaServices = Depends(services)) -> Response:
    """The newest CRL of a CA (DER). Conditional GET: If-None-Match (the ETag), else
    If-Modified-Since (thisUpdate) answers 304. Caches may keep it up to 5 minutes, never past
    nextUpdate (Expires)."""
    published = await ca.crls.current(authority_id)
    remaining = int((published.next_update - ca.ca.clock()).total_seconds())
    headers = {
        "ETag": published.etag,
        "Last-Modified": format_datetime(published.this_update, usegmt=True),
        "Expires": format_datetime(published.next_update, usegmt=True),
        "Cache-Control": f"public, max-age={max(0, min(MAX_AGE_S, remaining))}, no-transform",
    }
    if _not_modified(request, published.etag, published.this_update):
        return Response(status_code=304, headers=headers)
    return Response(published.der, media_type="application/pkix-crl", headers=headers)


def _not_modified(request: Request, etag: str, last_modified: datetime) -> bool:
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        # RFC 9110 §13.1.2: "*" or a list of entity tags, compared weakly
        tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
        return "*" in tags or etag in tags
    if_modified_since = request.headers.get("if-modified-since")
    if if_modified_since is None:
        return False
    try:  # RFC 9110 §13.1.3: an invalid date is ignored
        since = parsedate_to_datetime(if_modified_since)
    except (TypeError, ValueError):
        return False
    if since.tzinfo is None:
        return False
    return last_modified.replace(microsecond=0) <= since
