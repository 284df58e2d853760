"""RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): ``GET``/``POST /logout``, and the
confirmation form it shows when the request does not identify the browser's session."""

from __future__ import annotations

import hmac
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import RedirectResponse

from tsunagu.idp.api.deps import IdpServices, services
from tsunagu.idp.api.pages import choose_locale, error_page, render
from tsunagu.idp.domain.logout import InvalidLogoutRequest, LogoutRequest

router = APIRouter(tags=["logout"])
PARAMETERS = ("id_token_hint", "client_id", "post_logout_redirect_uri", "state", "ui_locales", "logout_hint")
MAX_FORM_BYTES = 32_768


async def _parameters(request: Request) -> dict[str, str] | None:
    """Query (GET) or form body (POST) parameters; None when malformed (repeated, wrong type)."""
    if request.method == "POST":
        if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return None
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return None
        try:
            items = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False)
        except (UnicodeDecodeError, ValueError):
            return None
    else:
        items = list(request.query_params.multi_items())
    values: dict[str, str] = {}
    for key, value in items:
        if key in values:
            return None
        values[key] = value
    return values


def _redirect(logout: LogoutRequest) -> Response | None:
    if logout.redirect_uri is None:
        return None
    location = logout.redirect_uri
    if logout.state is not None:
        separator = "&" if "?" in location else "?"
        location = f"{location}{separator}{urlencode({'state': logout.state})}"
    return RedirectResponse(location, status_code=303, headers={"Cache-Control": "no-store"})


def _done(request: Request, idp: IdpServices, logout: LogoutRequest, locale: str, *, ended: bool) -> Response:
    response = _redirect(logout) or render(request, "logout_done.html", locale, ended=ended)
    if ended:
        idp.sessions.clear_cookie(response)
    return response


@router.get("/logout", operation_id="logout_get")
@router.post("/logout", operation_id="logout_post")
async def logout(request: Request, idp: IdpServices = Depends(services)) -> Response:
    """End the browser's IdP session: at once when ``id_token_hint`` identifies it, else after the
    citizen confirms; then back to the client's registered ``post_logout_redirect_uri`` (with
    ``state``) or our page."""
    parameters = await _parameters(request)
    if parameters is None:
        return error_page(
            request, "invalid_request", "malformed logout request (repeated or unreadable parameters)"
        )
    locale = choose_locale(request, parameters.get("ui_locales"))
    try:
        checked = await idp.logout.check(
            id_token_hint=parameters.get("id_token_hint") or None,
            client_id=parameters.get("client_id") or None,
            post_logout_redirect_uri=parameters.get("post_logout_redirect_uri") or None,
            state=parameters.get("state"),
        )
    except InvalidLogoutRequest as error:
        return error_page(request, "invalid_request", str(error))
    cookie = idp.sessions.cookie_from(request)
    current = await idp.sessions.current(cookie)
    if current is None:  # nothing to end here (already logged out, or another browser)
        return _done(request, idp, checked, locale, ended=False)
    subject = await idp.logout.subject_for(checked.client_id, current.user_number)
    if checked.identifies(current, subject):
        async with idp.runtime.db.transaction() as session:
            await idp.sessions.end(session, current.sid, "logout")
        return _done(request, idp, checked, locale, ended=True)
    assert cookie is not None
    client = await idp.sessions.client(checked.client_id) if checked.client_id else None
    return render(
        request,
        "logout_confirm.html",
        locale,
        csrf=idp.sessions.logout_csrf(cookie),
        client_name=client.display_name(locale) if client is not None else None,
        client_id=checked.client_id or "",
        post_logout_redirect_uri=checked.redirect_uri or "",
        state=checked.state or "",
        ui_locales=parameters.get("ui_locales", ""),
    )


@router.post("/logout/confirm")
async def confirm(request: Request, idp: IdpServices = Depends(services)) -> Response:
    """The confirmation form: ``csrf`` must be the token derived from this browser's session."""
    parameters = await _parameters(request)
    if parameters is None:
        return error_page(request, "invalid_request", "malformed form")
    locale = choose_locale(request, parameters.get("ui_locales"))
    try:
        checked = await idp.logout.check(
            id_token_hint=None,
            client_id=parameters.get("client_id") or None,
            post_logout_redirect_uri=parameters.get("post_logout_redirect_uri") or None,
            state=parameters.get("state") or None,
        )
    except InvalidLogoutRequest as error:
        return error_page(request, "invalid_request", str(error))
    cookie = idp.sessions.cookie_from(request)
    current = await idp.sessions.current(cookie)
    if current is None or cookie is None:
        return _done(request, idp, checked, locale, ended=False)
    if not hmac.compare_digest(parameters.get("csrf", ""), idp.sessions.logout_csrf(cookie)):
        return error_page(
            request, "invalid_request", "the confirmation form has expired; try again", status=403
        )
    if parameters.get("action") != "logout":
        return render(request, "logout_done.html", locale, ended=False, cancelled=True)
    async with idp.runtime.db.transaction() as session:
        await idp.sessions.end(session, current.sid, "logout")
    return _done(request, idp, checked, locale, ended=True)
