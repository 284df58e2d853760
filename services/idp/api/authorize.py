"""The authorization endpoint (browser) and the pushed authorization request endpoint (client)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from tsunagu.idp.api.deps import IdpServices, services
from tsunagu.idp.api.oauth_errors import NO_STORE
from tsunagu.idp.domain.errors import AuthorizationError, OAuthError

router = APIRouter(tags=["oauth"])
TX_COOKIE = "tsunagu_tx"


async def form_values(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as strings (repeated parameters refused).
    Parsed here rather than by a multipart library: OAuth endpoints take no other body."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        raise OAuthError("invalid_request", "the body must be application/x-www-form-urlencoded")
    try:
        pairs = parse_qsl(
            (await request.body()).decode("utf-8"), keep_blank_values=True, strict_parsing=False
        )
    except UnicodeDecodeError:
        raise OAuthError("invalid_request", "the body is not UTF-8") from None
    values: dict[str, str] = {}
    for key, value in pairs:
        if key in values:
            raise OAuthError("invalid_request", f"parameter {key[:40]} is repeated")
        values[key] = value
    return values


def secure_cookies(issuer: str) -> bool:
    return issuer.startswith("https://")


@router.get("/authorize", operation_id="authorize_get")
@router.post("/authorize", operation_id="authorize_post")
async def authorize(request: Request, idp: IdpServices = Depends(services)) -> Response:
    """OIDC Core §3.1.2: validate, then reuse the IdP session or start a wallet login."""
    if request.method == "POST":
        parameters = await form_values(request)
    else:
        parameters = {}
        for key, value in request.query_params.multi_items():
            if key in parameters:
                raise AuthorizationError("invalid_request", f"parameter {key[:40]} is repeated")
            parameters[key] = value
    now = datetime.now(UTC)
    parsed = await idp.authorization.parse(parameters, now)
    client = await idp.clients.get(parsed.client_id)
    assert client is not None
    current = await idp.sessions.current(request.cookies.get(idp.sessions.cookie_name))
    fresh_enough = current is not None and (
        parsed.max_age is None or current.auth_time + timedelta(seconds=parsed.max_age) >= now
    )
    reuse = fresh_enough and not {"login", "consent"} & set(parsed.prompt)
    # Data access (authorization_details) needs the wallet's signed decision every time.
    if current is not None and reuse and parsed.authorization_details is None:
        location = await idp.logins.with_session(parsed, client, current)
        return RedirectResponse(location, status_code=303)
    if "none" in parsed.prompt:
        raise parsed.error("login_required", "the citizen must approve this login in the wallet")
    tx, binding = await idp.logins.start(parsed, client)
    response = RedirectResponse(f"/login/{tx}", status_code=303)
    response.set_cookie(
        TX_COOKIE,
        binding,
        max_age=idp.settings.login_transaction_ttl_s,
        path=f"/login/{tx}",
        httponly=True,
        samesite="lax",
        secure=secure_cookies(idp.settings.issuer),
    )
    return response


@router.post("/par", status_code=201)
async def pushed_authorization_request(request: Request, idp: IdpServices = Depends(services)) -> Any:
    """RFC 9126 §2: authenticated client pushes its request; answered with a one-time reference."""
    form = await form_values(request)
    client = await idp.client_auth.authenticate(
        form, request.headers.get("authorization"), endpoint_url=idp.settings.issuer + "/par"
    )
    request_uri, expires_in = await idp.authorization.push(client, form, datetime.now(UTC))
    return JSONResponse(
        {"request_uri": request_uri, "expires_in": expires_in}, status_code=201, headers=NO_STORE
    )
