"""RFC 7591 dynamic registration (with a tenant's initial access token) and RFC 7592 management
(with the client's registration access token). Errors are OAuth JSON: ``invalid_client_metadata``
/ ``invalid_redirect_uri`` (400), ``invalid_token`` (401) for a missing or wrong token."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from tsunagu.idp.api.deps import IdpServices, services
from tsunagu.idp.domain.clients import Actor, Client, MetadataRejected
from tsunagu.idp.domain.errors import OAuthError, invalid_token

router = APIRouter(tags=["registration"])
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# Members only the server sets (RFC 7592 §2.2) and the operator-only legal basis.
_SERVER_MEMBERS = (
    "registration_access_token",
    "registration_client_uri",
    "client_secret_expires_at",
    "client_id_issued_at",
)
LEGAL_BASIS = "user_number_legal_basis"


def _bad_metadata(description: str) -> OAuthError:
    return OAuthError("invalid_client_metadata", description)


def _bearer(request: Request) -> str:
    headers = request.headers.getlist("authorization")
    scheme, _, token = (headers[0] if len(headers) == 1 else "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise invalid_token("a bearer token is required")
    return token.strip()


async def _metadata(request: Request, limit: int) -> dict[str, Any]:
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise _bad_metadata("the metadata is sent as application/json")
    body = await request.body()
    if len(body) > limit:
        raise _bad_metadata("the metadata is too large")
    try:
        data = json.loads(body)
    except ValueError:
        raise _bad_metadata("the metadata is not JSON") from None
    if not isinstance(data, dict):
        raise _bad_metadata("the metadata is a JSON object")
    if LEGAL_BASIS in data:
        raise _bad_metadata("user_number_legal_basis is set by an operator only")
    return data


def _view(client: Client, registration_access_token: str, issuer: str, secret: str | None) -> dict[str, Any]:
    view: dict[str, Any] = {
        **client.metadata.registered(),
        "client_id": client.client_id,
        "registration_access_token": registration_access_token,
        "registration_client_uri": f"{issuer}/register/{client.client_id}",
    }
    if client.created_at is not None:
        view["client_id_issued_at"] = int(client.created_at.timestamp())
    if secret is not None:
        view["client_secret"] = secret
        view["client_secret_expires_at"] = 0
    return view


async def _managed(request: Request, client_id: str, idp: IdpServices) -> tuple[Client, str]:
    token = _bearer(request)
    client = await idp.clients.client_for_registration_token(client_id, token)
    if client is None:
        raise invalid_token("the registration access token is not valid for this client")
    return client, token


@router.post("/register", status_code=201)
async def register(request: Request, idp: IdpServices = Depends(services)) -> JSONResponse:
    tenant = await idp.clients.tenant_for_initial_access_token(_bearer(request))
    if tenant is None:
        raise invalid_token("the initial access token is not valid")
    data = await _metadata(request, idp.settings.max_body_bytes)
    try:
        issued = await idp.clients.register(
            tenant.id, data, Actor("tenant", tenant.id), registration_token=True
        )
    except MetadataRejected as error:
        raise OAuthError(error.oauth_error, error.detail or error.title) from None
    assert issued.registration_access_token is not None
    view = _view(issued.client, issued.registration_access_token, idp.settings.issuer, issued.client_secret)
    return JSONResponse(view, status_code=201, headers=NO_STORE)


@router.get("/register/{client_id}")
async def read(client_id: str, request: Request, idp: IdpServices = Depends(services)) -> JSONResponse:
    """RFC 7592 §2.1 (the secret, kept only as a hash, is not repeated)."""
    client, token = await _managed(request, client_id, idp)
    return JSONResponse(_view(client, token, idp.settings.issuer, None), headers=NO_STORE)


@router.put("/register/{client_id}")
async def replace(client_id: str, request: Request, idp: IdpServices = Depends(services)) -> JSONResponse:
    """RFC 7592 §2.2: the metadata is replaced (omitted members take their defaults)."""
    client, token = await _managed(request, client_id, idp)
    data = await _metadata(request, idp.settings.max_body_bytes)
    if data.get("client_id") != client_id:
        raise _bad_metadata("client_id must be included and be this client's")
    if any(name in data for name in _SERVER_MEMBERS):
        raise _bad_metadata(f"{', '.join(_SERVER_MEMBERS)} are set by the server")
    secret = data.get("client_secret")
    if secret is not None and not (
        isinstance(secret, str) and await idp.clients.verify_secret(client, secret)
    ):
        raise _bad_metadata("client_secret does not match the current secret")
    try:
        issued = await idp.clients.update(client_id, data, Actor("client", client_id))
    except MetadataRejected as error:
        raise OAuthError(error.oauth_error, error.detail or error.title) from None
    view = _view(issued.client, token, idp.settings.issuer, issued.client_secret)
    return JSONResponse(view, headers=NO_STORE)


@router.delete("/register/{client_id}", status_code=204)
async def deregister(client_id: str, request: Request, idp: IdpServices = Depends(services)) -> Response:
    """RFC 7592 §2.3: the client is disabled (kept for audit); its credentials stop working."""
    await _managed(request, client_id, idp)
    await idp.clients.disable(client_id, Actor("client", client_id))
    return Response(status_code=204, headers=NO_STORE)
