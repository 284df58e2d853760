"""CIBA: the client's backchannel authentication request and the wallet's list of requests."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from tsunagu.idp.api.authorize import form_values
from tsunagu.idp.api.deps import IdpServices, services
from tsunagu.idp.api.login import WalletTransaction, wallet_view
from tsunagu.idp.api.oauth_errors import NO_STORE

router = APIRouter(tags=["ciba"])


@router.post("/bc-authorize")
async def backchannel_authentication(request: Request, idp: IdpServices = Depends(services)) -> JSONResponse:
    """CIBA Core §7: authenticated client, the person named by a hint; answers auth_req_id."""
    form = await form_values(request)
    client = await idp.client_auth.authenticate(
        form, request.headers.get("authorization"), endpoint_url=idp.settings.issuer + "/bc-authorize"
    )
    answer = await idp.ciba.request(client, form, datetime.now(UTC))
    return JSONResponse(answer, headers=NO_STORE)


class WalletInboxRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request: str = Field(min_length=10, max_length=16_384, description='compact JWS, tx "*"')


@router.post("/v1/wallet/requests", response_model=list[WalletTransaction], tags=["wallet"])
async def wallet_requests(
    body: WalletInboxRequest, idp: IdpServices = Depends(services)
) -> list[WalletTransaction]:
    """Pending CIBA requests for the person whose authentication key signed this call."""
    rows = await idp.ciba.pending_for_wallet(body.request)
    views = []
    for row in rows:
        client = await idp.clients.get(row["client_id"])
        if client is not None:
            views.append(wallet_view(idp, row, client))
    return views
