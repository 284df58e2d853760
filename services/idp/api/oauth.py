"""The token endpoint, userinfo, introspection and revocation (RFC 6749, OIDC Core, RFC 7662,
RFC 7009, RFC 6750, RFC 9449). Answers are never cached (``Cache-Control: no-store``)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from tsunagu.idp.api.authorize import form_values
from tsunagu.idp.api.deps import IdpServices, services
from tsunagu.idp.api.oauth_errors import NO_STORE
from tsunagu.idp.domain.dpop import DPOP_ALGORITHMS
from tsunagu.idp.domain.errors import OAuthError, invalid_request
from tsunagu.idp.domain.tokens import (
    GRANT_CIBA,
    GRANT_CLIENT_CREDENTIALS,
    GRANT_CODE,
    GRANT_REFRESH,
    DpopInput,
    bearer_error,
)

router = APIRouter(tags=["oauth"])
_CHALLENGE = f'Bearer realm="tsunagu", DPoP algs="{" ".join(DPOP_ALGORITHMS)}"'


def one_header(request: Request, name: str, error: OAuthError) -> str | None:
    values = request.headers.getlist(name)
    if len(values) > 1:
        raise error
    return values[0] if values else None


def _dpop(request: Request) -> DpopInput:
    proof = one_header(request, "dpop", OAuthError("invalid_dpop_proof", "send one DPoP header"))
    return DpopInput(proof, request.method)


@router.post("/token")
async def token(request: Request, idp: IdpServices = Depends(services)) -> Response:
    """RFC 6749 §3.2: authenticate the client, then the grant."""
    form = await form_values(request)
    grant_type = form.get("grant_type")
    if not grant_type:
        raise invalid_request("grant_type is required")
    dpop = _dpop(request)
    client = await idp.client_auth.authenticate(
        form, request.headers.get("authorization"), endpoint_url=idp.settings.issuer + "/token"
    )
    tokens = idp.tokens
    resource = form.get("resource")
    if grant_type == GRANT_CLIENT_CREDENTIALS:
        body = await tokens.client_credentials(client, scope=form.get("scope"), dpop=dpop, resource=resource)
    elif grant_type == GRANT_CODE:
        body = await tokens.exchange_code(
            client,
            code=form.get("code"),
            redirect_uri=form.get("redirect_uri"),
            code_verifier=form.get("code_verifier"),
            dpop=dpop,
            resource=resource,
        )
    elif grant_type == GRANT_REFRESH:
        body = await tokens.refresh(
            client,
            refresh_token=form.get("refresh_token"),
            scope=form.get("scope"),
            dpop=dpop,
            resource=resource,
        )
    elif grant_type == GRANT_CIBA and (poller := getattr(idp, "ciba", None)) is not None:
        body = await tokens.ciba(client, auth_req_id=form.get("auth_req_id"), poller=poller, dpop=dpop)
    else:
        raise OAuthError("unsupported_grant_type", "the grant type is not supported")
    return JSONResponse(body, headers=NO_STORE)


def access_token_of(request: Request, form: dict[str, str] | None) -> tuple[str, str]:
    """(scheme, token) from ``Authorization`` (Bearer or DPoP) or a form ``access_token``."""
    authorization = one_header(
        request, "authorization", bearer_error("invalid_request", "send one Authorization header", status=400)
    )
    from_form = form.get("access_token") if form else None
    if authorization:
        if from_form:
            raise bearer_error("invalid_request", "send the access token once", status=400)
        scheme, _, value = authorization.partition(" ")
        scheme = {"bearer": "Bearer", "dpop": "DPoP"}.get(scheme.lower(), "")
        if scheme and value.strip():
            return scheme, value.strip()
        raise bearer_error("invalid_request", "use the Bearer or DPoP scheme", status=400)
    if from_form:
        return "Bearer", from_form
    # RFC 6750 §3.1: no authentication attempted → the challenge without an error code.
    raise OAuthError(
        "invalid_token", "an access token is required", status=401, headers={"WWW-Authenticate": _CHALLENGE}
    )


@router.get("/userinfo", operation_id="userinfo_get")
@router.post("/userinfo", operation_id="userinfo_post")
async def userinfo(request: Request, idp: IdpServices = Depends(services)) -> Response:
    """OIDC Core §5.3: ``sub`` and the claims released for userinfo."""
    form = None
    if request.method == "POST" and request.headers.get("content-type", "").startswith(
        "application/x-www-form-urlencoded"
    ):
        form = await form_values(request)
    scheme, access_token = access_token_of(request, form)
    proof = one_header(
        request, "dpop", bearer_error("invalid_dpop_proof", "send one DPoP header", scheme="DPoP")
    )
    view = await idp.tokens.userinfo_token(
        access_token,
        scheme=scheme,
        dpop_proof=proof,
        method=request.method,
        url=idp.settings.issuer + "/userinfo",
    )
    return JSONResponse(await idp.tokens.userinfo(view), headers=NO_STORE)


@router.post("/introspect")
async def introspect(request: Request, idp: IdpServices = Depends(services)) -> Response:
    """RFC 7662: a client sees only its own tokens; the rest are ``{"active": false}``."""
    form = await form_values(request)
    client = await idp.client_auth.authenticate(
        form, request.headers.get("authorization"), endpoint_url=idp.settings.issuer + "/introspect"
    )
    answer = await idp.tokens.introspect(client, form.get("token"), form.get("token_type_hint"))
    return JSONResponse(answer, headers=NO_STORE)


@router.post("/revoke")
async def revoke(request: Request, idp: IdpServices = Depends(services)) -> Response:
    """RFC 7009: 200 whether or not the token was known (nothing is revealed)."""
    form = await form_values(request)
    client = await idp.client_auth.authenticate(
        form, request.headers.get("authorization"), endpoint_url=idp.settings.issuer + "/revoke"
    )
    await idp.tokens.revoke(client, form.get("token"), form.get("token_type_hint"))
    return Response(status_code=200, headers=NO_STORE)
