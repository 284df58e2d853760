"""Personal data exchange (pull) and the citizen's exchange log."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from tsunagu.auth import ServicePrincipal, require_permission
from tsunagu.broker.api.deps import LOG_READ, SCOPE_EXCHANGE, SCOPE_LOG, party_token, services
from tsunagu.broker.domain.access_tokens_rfc9068 import AccessToken
from tsunagu.broker.domain.context import BrokerServices
from tsunagu.broker.domain.errors import InsufficientScope, UnknownParty
from tsunagu.broker.domain.exchange_log import MAX_CURSOR
from tsunagu.broker.domain.exchanges import MAX_ITEMS, PullRequest

router = APIRouter(tags=["exchange"])
USER_NUMBER = r"^[A-Za-z0-9]{1,16}$"
CURSOR = "the previous page's next_before (or a time with its offset: everything older)"


class PullBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sub: str = Field(min_length=1, max_length=64, description="the citizen, as this client knows them")
    items: list[str] = Field(min_length=1, max_length=MAX_ITEMS)
    purpose: str = Field(min_length=1, max_length=64, description="a purpose code the citizen consented to")


@router.post("/v1/exchanges")
async def pull(
    body: PullBody,
    caller: AccessToken = Depends(party_token(SCOPE_EXCHANGE)),
    broker: BrokerServices = Depends(services),
) -> dict[str, Any]:
    """The consented items of the citizen, fetched from their providers now (nothing kept)."""
    return await broker.exchanges.pull(
        caller, PullRequest(sub=body.sub, items=body.items, purpose=body.purpose)
    )


@router.get("/v1/exchanges")
async def my_exchanges(
    before: str | None = Query(default=None, max_length=MAX_CURSOR, description=CURSOR),
    limit: int = Query(default=50, ge=1, le=200),
    caller: AccessToken = Depends(party_token(SCOPE_LOG)),
    broker: BrokerServices = Depends(services),
) -> dict[str, Any]:
    """The citizen's own exchange log, with a token from a login (``scope broker:log``)."""
    if not caller.for_person:
        raise InsufficientScope(SCOPE_LOG + " (a citizen's token, not a client's own)")
    if caller.client_id not in broker.log_clients:
        raise UnknownParty("only the platform's own apps read a citizen's exchange log")
    party = await broker.parties.party(caller.client_id)
    user_number = await broker.parties.user_number(party, caller.sub)
    return await broker.exchange_log.of(user_number, before=before, limit=limit)


@router.get("/internal/v1/exchanges")
async def exchanges_of(
    user_number: str = Query(pattern=USER_NUMBER),
    before: str | None = Query(default=None, max_length=MAX_CURSOR, description=CURSOR),
    limit: int = Query(default=50, ge=1, le=200),
    _caller: ServicePrincipal = Depends(require_permission(LOG_READ)),
    broker: BrokerServices = Depends(services),
) -> dict[str, Any]:
    """A citizen's exchange log for the consent dashboard (it knows the person from its login)."""
    return await broker.exchange_log.of(user_number, before=before, limit=limit)
