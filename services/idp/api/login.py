"""The login page a browser waits on, and the wallet's view of and decision on a transaction."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from urllib.parse import quote

import segno
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from tsunagu.db import as_utc
from tsunagu.idp.api.authorize import TX_COOKIE
from tsunagu.idp.api.deps import IdpServices, services
from tsunagu.idp.api.pages import choose_locale, error_page, render
from tsunagu.idp.domain.authorization import AuthorizationRequest
from tsunagu.idp.domain.claims import CLAIM_ITEMS, SCOPE_CLAIMS
from tsunagu.idp.domain.errors import LoginTransactionClosed, LoginTransactionNotFound

router = APIRouter(tags=["login"])
SSE_LIMIT_S = 300.0


def wallet_link(issuer: str, tx: str) -> str:
    return f"tsunagu://login?tx={quote(tx)}&issuer={quote(issuer, safe='')}"


def asked_claims(request: AuthorizationRequest) -> list[str]:
    """The claim names the relying party asked for (for the citizen to see)."""
    names: list[str] = []
    for scope in request.scope.split():
        names.extend(SCOPE_CLAIMS.get(scope, ()))
    for section in (request.claims or {}).values():
        names.extend(str(name) for name in section)
    if "user_number" in request.scope.split():
        names.append("user_number")
    return [n for n in dict.fromkeys(names) if n in CLAIM_ITEMS or n in ("verified_claims", "user_number")]


def _shown(entry: dict[str, Any], locale: str, names: dict[str, str]) -> dict[str, str]:
    """A data-access entry as the page lists it: item names and the purpose in the page's language."""
    purpose = entry.get("purpose")
    text = purpose.get(locale, purpose.get("ja", "")) if isinstance(purpose, dict) else str(purpose)
    return {
        "names": "、".join(names.get(i, i) for i in entry.get("items", []))
        if locale == "ja"
        else ", ".join(names.get(i, i) for i in entry.get("items", [])),
        "purpose": str(text),
    }


def browser_error(request: Request, error: LoginTransactionNotFound | LoginTransactionClosed) -> HTMLResponse:
    """The page and completion routes are where the citizen's browser goes (a Back button after the
    login, a link opened in another browser): a refusal there is a page, not problem+json."""
    return error_page(request, error.code, error.detail or error.title, status=error.status)


@router.get("/login/{tx}", include_in_schema=False)
async def login_page(tx: str, request: Request, idp: IdpServices = Depends(services)) -> Response:
    try:
        row = await idp.logins.for_browser(tx, request.cookies.get(TX_COOKIE))
    except LoginTransactionNotFound as error:
        return browser_error(request, error)
    parsed = AuthorizationRequest.from_json(row["parameters"])
    locale = choose_locale(request, parsed.ui_locales)
    client = await idp.clients.get(row["client_id"])
    link = wallet_link(idp.settings.issuer, tx)
    catalog_names = idp.data_access.item_names(locale) if parsed.authorization_details else {}
    qr = segno.make(link, error="m").svg_inline(scale=4, omitsize=True, title="QR")
    return render(
        request,
        "login.html",
        locale,
        tx=tx,
        client_name=client.display_name(locale) if client else row["client_id"],
        claims=asked_claims(parsed),
        details=[_shown(entry, locale, catalog_names) for entry in parsed.authorization_details or []],
        display_code=row["display_code"],
        qr_svg=qr,
        wallet_link=link,
        state=await idp.logins.browser_state(row),
        expires_at=as_utc(row["expires_at"]).isoformat(),
    )


WAITING = ("pending", "consent-pending")


@router.get("/login/{tx}/status", include_in_schema=False)
async def login_status(tx: str, request: Request, idp: IdpServices = Depends(services)) -> Response:
    row = await idp.logins.for_browser(tx, request.cookies.get(TX_COOKIE))
    status = {"state": await idp.logins.browser_state(row)}
    return Response(json.dumps(status), media_type="application/json", headers={"Cache-Control": "no-store"})


@router.get("/login/{tx}/events", include_in_schema=False)
async def login_events(tx: str, request: Request, idp: IdpServices = Depends(services)) -> Response:
    """Server-sent events: one ``state`` event whenever the state changes; ends once decided."""
    binding = request.cookies.get(TX_COOKIE)
    row = await idp.logins.for_browser(tx, binding)

    async def stream() -> AsyncIterator[bytes]:
        state = await idp.logins.browser_state(row)
        started = asyncio.get_running_loop().time()
        yield f"retry: 2000\nevent: state\ndata: {json.dumps({'state': state})}\n\n".encode()
        while state in WAITING and asyncio.get_running_loop().time() - started < SSE_LIMIT_S:
            if await request.is_disconnected():
                return
            await idp.logins.wait(tx, 1.0)
            now = await idp.logins.browser_state(await idp.logins.for_browser(tx, binding))
            if now != state:
                state = now
                yield f"event: state\ndata: {json.dumps({'state': state})}\n\n".encode()
            else:
                yield b": keep-alive\n\n"

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/login/{tx}/complete", include_in_schema=False)
async def login_complete(tx: str, request: Request, idp: IdpServices = Depends(services)) -> Response:
    try:
        completed = await idp.logins.complete(tx, request.cookies.get(TX_COOKIE))
    except (LoginTransactionNotFound, LoginTransactionClosed) as error:
        return browser_error(request, error)
    response = RedirectResponse(completed.location, status_code=303)
    if completed.location != f"/login/{tx}":
        response.delete_cookie(TX_COOKIE, path=f"/login/{tx}")
    if completed.session_cookie is not None:
        idp.sessions.set_cookie(response, completed.session_cookie)
    return response


# -- the wallet -----------------------------------------------------------------------------


class WalletClient(BaseModel):
    client_id: str
    name_ja: str
    name_en: str
    tenant_id: str


class WalletTransaction(BaseModel):
    tx: str
    kind: str
    audience: str = Field(description="the issuer: the approval's aud")
    challenge: str
    display_code: str
    client: WalletClient
    scope: str
    claims: list[str]
    authorization_details: list[dict[str, Any]]
    binding_message: str | None = None
    expires_at: datetime


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    approval: str = Field(min_length=10, max_length=16_384, description="compact JWS (typ tsunagu-login+jwt)")


class DecisionResult(BaseModel):
    tx: str
    state: str
    consent_request_id: str | None = Field(
        default=None,
        description="data access: the consent request the citizen now decides and signs (consent service)",
    )


def wallet_view(idp: IdpServices, row: dict[str, Any], client: Any) -> WalletTransaction:
    parsed = AuthorizationRequest.from_json(row["parameters"])
    return WalletTransaction(
        tx=row["id"],
        kind=row["kind"],
        audience=idp.settings.issuer,
        challenge=row["challenge"],
        display_code=row["display_code"],
        client=WalletClient(
            client_id=client.client_id,
            name_ja=client.display_name("ja"),
            name_en=client.display_name("en"),
            tenant_id=client.tenant_id,
        ),
        scope=parsed.scope,
        claims=asked_claims(parsed),
        authorization_details=parsed.authorization_details or [],
        binding_message=row["parameters"].get("binding_message"),
        expires_at=as_utc(row["expires_at"]),
    )


@router.get("/v1/login-transactions/{tx}", response_model=WalletTransaction, tags=["wallet"])
async def wallet_transaction(tx: str, idp: IdpServices = Depends(services)) -> WalletTransaction:
    """What the wallet shows the citizen: who asks, for what, the code on the other screen."""
    row, client = await idp.logins.for_wallet(tx)
    return wallet_view(idp, row, client)


@router.post(
    "/v1/login-transactions/{tx}/decision",
    response_model=DecisionResult,
    response_model_exclude_none=True,
    tags=["wallet"],
)
async def wallet_decision(tx: str, body: Decision, idp: IdpServices = Depends(services)) -> DecisionResult:
    decided = await idp.logins.decide(tx, body.approval)
    return DecisionResult(tx=tx, state=decided.state, consent_request_id=decided.consent_request_id)
