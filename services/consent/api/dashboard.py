"""The citizen dashboard (``/dashboard``): log in at the idp, see what each service may receive,
the history and the pending requests, ask for a change and sign it in the wallet.

Deny by default: every route but ``login`` and ``callback`` needs the session cookie (pages
redirect to the login, the status answer is 401); every POST needs the session's CSRF token
(403); a request of another person is 404. The cookie carries only a random id (HttpOnly,
SameSite=Lax, path ``/dashboard``, Secure on https); the session row keeps its SHA-256.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from tsunagu.consent.api.deps import services
from tsunagu.consent.domain.catalog import CATALOG
from tsunagu.consent.domain.dashboard import Dashboard, DashboardSession, NoSession
from tsunagu.consent.pages import choose_locale, qr_svg, render
from tsunagu.errors import DomainError, NotFound

router = APIRouter(prefix="/dashboard", tags=["dashboard"], include_in_schema=False)
COOKIE = "tsunagu_dashboard"
MAX_FORM_BYTES = 16_384
CATALOG_VIEW = {
    item.id: {"name_ja": item.name_ja, "name_en": item.name_en, "special_care": item.special_care}
    for item in CATALOG.values()
}


class DashboardOff(NotFound):
    code = "dashboard-not-configured"
    title = "The citizen dashboard is not configured on this service"


async def dashboard(request: Request) -> Dashboard:
    found = getattr(await services(request), "dashboard", None)
    if not isinstance(found, Dashboard):
        raise DashboardOff()
    return found


def _locale(request: Request, fallback: str = "ja") -> str:
    return choose_locale(
        request.query_params.get("ui_locales"), request.headers.get("accept-language"), fallback
    )


def _set_cookie(response: Response, board: Dashboard, secret: str, max_age: int) -> None:
    response.set_cookie(
        COOKIE,
        secret,
        max_age=max_age,
        path="/dashboard",
        httponly=True,
        samesite="lax",
        secure=board.rp.redirect_uri.startswith("https:"),
    )


def _error_page(request: Request, error: DomainError, locale: str | None = None) -> Response:
    return render(
        "error.html", locale or _locale(request), status=error.status, code=error.code, title=error.title
    )


class LoginFirst(Exception):
    """A page asked for without a session: answered by a redirect to the login."""


async def to_login(request: Request, _error: Exception) -> Response:
    ui_locales = request.query_params.get("ui_locales")
    query = "?" + urlencode({"ui_locales": ui_locales}) if ui_locales else ""
    return RedirectResponse("/dashboard/login" + query, status_code=303)


async def page_session(request: Request, board: Dashboard = Depends(dashboard)) -> DashboardSession:
    """The session for a page (locale switched by ``ui_locales``); without one, to the login."""
    try:
        current = await board.session(request.cookies.get(COOKIE))
    except NoSession:
        raise LoginFirst() from None
    if request.query_params.get("ui_locales"):
        locale = _locale(request, current.locale)
        await board.set_locale(current, locale)
        current = DashboardSession(current.id_sha256, current.user_number, current.csrf_token, locale)
    return current


def _page(current: DashboardSession, template: str, **context: Any) -> Response:
    return render(template, current.locale, csrf_token=current.csrf_token, catalog=CATALOG_VIEW, **context)


async def _form(request: Request, board: Dashboard) -> tuple[DashboardSession, dict[str, str]]:
    """A POSTed form of a logged-in session with its CSRF token checked (401, then 403)."""
    current = await board.session(request.cookies.get(COOKIE))
    body = (await request.body())[:MAX_FORM_BYTES].decode("utf-8", "replace")
    form = {key: values[0] for key, values in parse_qs(body, keep_blank_values=True).items()}
    board.check_csrf(current, form.get("csrf"))
    return current, form


@router.get("/login")
async def login(request: Request, board: Dashboard = Depends(dashboard)) -> Response:
    """Start a login at the idp (code flow, PKCE, state, nonce) bound to this browser."""
    secret, url = await board.start_login(_locale(request))
    response = RedirectResponse(url, status_code=303)
    _set_cookie(response, board, secret, int(board.login_ttl.total_seconds()))
    return response


@router.get("/callback")
async def callback(request: Request, board: Dashboard = Depends(dashboard)) -> Response:
    """The idp's answer: a wrong or replayed ``state`` changes nothing (400)."""
    query = request.query_params
    try:
        if query.get("error") or not query.get("code"):
            raise _Declined(query.get("error") or "missing code")
        if "iss" in query and query["iss"] != board.rp.issuer:  # RFC 9207: another issuer's answer
            raise _Declined("the answer names another issuer")
        secret, _opened = await board.finish_login(
            request.cookies.get(COOKIE), query.get("state") or "", query["code"]
        )
    except DomainError as error:
        return _error_page(request, error)
    response = RedirectResponse("/dashboard", status_code=303)
    _set_cookie(response, board, secret, int(board.session_ttl.total_seconds()))
    return response


class _Declined(DomainError):
    status = 400
    code = "login-declined"
    title = "The login was declined or did not complete"


@router.get("")
async def overview(
    board: Dashboard = Depends(dashboard), current: DashboardSession = Depends(page_session)
) -> Response:
    found = await board.overview(current)
    return _page(current, "overview.html", grants=found["grants"], pending=found["pending"])


@router.get("/history")
async def history(
    board: Dashboard = Depends(dashboard), current: DashboardSession = Depends(page_session)
) -> Response:
    found = await board.history(current)
    return _page(current, "history.html", decisions=found["decisions"], names=found["names"])


@router.get("/exchanges")
async def exchanges(
    board: Dashboard = Depends(dashboard), current: DashboardSession = Depends(page_session)
) -> Response:
    """The exchange log: which party received which items of this person, or was refused."""
    found = await board.exchanges(current)
    return _page(current, "exchanges.html", **found)


@router.post("/changes")
async def request_change(request: Request, board: Dashboard = Depends(dashboard)) -> Response:
    """Form: recipient, purpose, ``item:<id>`` = allow|deny → a request the wallet signs."""
    current, form = await _form(request, board)
    choices: dict[str, Any] = {
        key.removeprefix("item:"): value
        for key, value in form.items()
        if key.startswith("item:") and value in ("allow", "deny")
    }
    try:
        created = await board.request_change(
            current, form.get("recipient", ""), form.get("purpose", ""), choices
        )
    except DomainError as error:
        return _error_page(request, error, current.locale)
    return RedirectResponse(f"/dashboard/requests/{created['request_id']}", status_code=303)


@router.get("/requests/{request_id}")
async def signing_page(
    request_id: str,
    request: Request,
    board: Dashboard = Depends(dashboard),
    current: DashboardSession = Depends(page_session),
) -> Response:
    """The wallet signing request of one of this person's requests: QR code and app link."""
    try:
        found = await board.own_request(current, request_id)
    except DomainError as error:
        return _error_page(request, error, current.locale)
    found["state"] = board.request_state(found)
    origin = urlsplit(board.rp.redirect_uri)
    link = "tsunagu://consent?" + urlencode(
        {"request": found["request_id"], "issuer": f"{origin.scheme}://{origin.netloc}"}
    )
    return _page(current, "sign.html", request=found, wallet_link=link, qr_svg=qr_svg(link))


@router.get("/requests/{request_id}/status")
async def request_status(
    request_id: str, request: Request, board: Dashboard = Depends(dashboard)
) -> Response:
    """``{"state": pending|answered|expired, "decision_id"}`` for the page's polling."""
    current = await board.session(request.cookies.get(COOKIE))
    found = await board.own_request(current, request_id)
    return JSONResponse(
        {"state": board.request_state(found), "decision_id": found["decision_id"]},
        headers={"Cache-Control": "no-store"},
    )


@router.post("/logout")
async def logout(request: Request, board: Dashboard = Depends(dashboard)) -> Response:
    current, _form_values = await _form(request, board)
    await board.logout(current)
    response = render("logged_out.html", current.locale)
    response.delete_cookie(COOKIE, path="/dashboard")
    return response
