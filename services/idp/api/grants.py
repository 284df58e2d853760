"""Grant management for relying parties (OpenID Grant Management 1.0 shape): the ``grant_id`` of a
data-access login is the citizen's consent decision id. ``GET`` answers the decisions in force now,
``DELETE`` revokes the OAuth grant's tokens here — the consent record stays the citizen's."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from tsunagu.idp.api.deps import IdpServices, services
from tsunagu.idp.api.oauth import access_token_of, one_header
from tsunagu.idp.api.oauth_errors import NO_STORE
from tsunagu.idp.domain.errors import invalid_request
from tsunagu.idp.domain.tokens import bearer_error
from tsunagu.idp.store.tokens import GrantRecord

router = APIRouter(tags=["oauth"])


async def _grants(request: Request, idp: IdpServices, grant_id: str, action: str) -> list[GrantRecord]:
    scheme, token = access_token_of(request, None)
    proof = one_header(
        request, "dpop", bearer_error("invalid_dpop_proof", "send one DPoP header", scheme="DPoP")
    )
    return await idp.tokens.managed_grants(
        grant_id,
        token,
        action=action,
        scheme=scheme,
        dpop_proof=proof,
        method=request.method,
        url=f"{idp.settings.issuer}/grants/{grant_id}",
    )


@router.api_route("/grants", methods=["GET", "DELETE"], include_in_schema=False)
async def grants_root(request: Request) -> Response:
    """The grant management endpoint itself: a grant is named in the path (``/grants/{grant_id}``)."""
    access_token_of(request, None)  # 401 with the challenge when no token is presented
    raise invalid_request("name the grant: /grants/{grant_id}")


@router.get("/grants/{grant_id}")
async def query_grant(grant_id: str, request: Request, idp: IdpServices = Depends(services)) -> Response:
    """The grant's scopes and data access, with the citizen's decisions in force now."""
    grants = await _grants(request, idp, grant_id, "query")
    latest = grants[-1]
    details: list[dict[str, Any]] = []
    if latest.user_number is not None and latest.authorization_details:
        details = await idp.data_access.effective(
            user_number=latest.user_number,
            client_id=latest.client_id,
            details=list(latest.authorization_details),
            now=datetime.now(UTC),
        )
    body = {
        "grant_id": grant_id,
        "status": "active" if any(g.revoked_at is None for g in grants) else "revoked",
        "scopes": [{"scope": scope} for scope in dict.fromkeys(g.scope for g in grants)],
        "authorization_details": details,
    }
    return JSONResponse(body, headers=NO_STORE)


@router.delete("/grants/{grant_id}")
async def revoke_grant(grant_id: str, request: Request, idp: IdpServices = Depends(services)) -> Response:
    """Revoke the OAuth grant(s) of this consent decision here (refresh and access tokens). The
    citizen withdraws consent only by a signed decision in the wallet."""
    grants = await _grants(request, idp, grant_id, "revoke")
    await idp.tokens.revoke_managed(grants)
    return Response(status_code=204, headers=NO_STORE)
