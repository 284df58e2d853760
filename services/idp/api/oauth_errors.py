"""OAuth errors as the standards render them (RFC 6749 §5.2, RFC 6750 §3, RFC 9207)."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from tsunagu.idp.api.pages import error_page
from tsunagu.idp.domain.errors import AuthorizationError, OAuthError

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


async def oauth_error_handler(request: Request, error: OAuthError) -> Response:
    if isinstance(error, AuthorizationError):
        return authorization_error_response(request, error)
    return JSONResponse(error.body(), status_code=error.status, headers={**NO_STORE, **error.headers})


def authorization_error_response(request: Request, error: AuthorizationError) -> Response:
    """Back to the client when its redirect URI is verified; otherwise an error page (never an
    open redirect to an unverified URI)."""
    if error.redirect_uri is None:
        return error_page(request, error.error, error.description, status=400)
    services = getattr(request.app.state.runtime, "resources", None)
    issuer = services.settings.issuer if services is not None else ""
    parameters = {"error": error.error, "error_description": error.description, "iss": issuer}
    if error.state is not None:
        parameters["state"] = error.state
    separator = "&" if "?" in error.redirect_uri else "?"
    if error.response_mode == "fragment":
        separator = "#"
    return RedirectResponse(f"{error.redirect_uri}{separator}{urlencode(parameters)}", status_code=303)
