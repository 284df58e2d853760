"""Citizen-facing routes, called by the wallet. No service token: the citizen's signature (signing
certificate for decisions, authentication certificate for reads) is the authentication."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, status

from tsunagu.consent.api.deps import ConsentServices, services
from tsunagu.consent.api.schemas import Catalog, DecisionBody, DecisionRecorded, SignedQuery
from tsunagu.consent.domain.catalog import CATALOG

router = APIRouter(prefix="/v1", tags=["wallet"])


@router.get("/catalog", response_model=Catalog)
async def catalog() -> Catalog:
    return Catalog(
        items=[
            {
                "item": item.id,
                "name_ja": item.name_ja,
                "name_en": item.name_en,
                "special_care": item.special_care,
                "dpv": item.dpv_category,
            }
            for item in CATALOG.values()
        ]
    )


@router.post("/decisions", response_model=DecisionRecorded, status_code=status.HTTP_201_CREATED)
async def record_decision(
    body: DecisionBody, consent: ConsentServices = Depends(services)
) -> DecisionRecorded:
    """A signed decision (grant, refusal, change or withdrawal); answers the platform's receipt."""
    return DecisionRecorded(**await consent.decisions.record(body.decision))


@router.post("/wallet/requests")
async def pending_requests(body: SignedQuery, consent: ConsentServices = Depends(services)) -> dict[str, Any]:
    return {"requests": await consent.queries.pending_for_wallet(body.request)}


@router.post("/wallet/grants")
async def grants(body: SignedQuery, consent: ConsentServices = Depends(services)) -> dict[str, Any]:
    return await consent.queries.grants(body.request)


@router.post("/wallet/history")
async def history(body: SignedQuery, consent: ConsentServices = Depends(services)) -> dict[str, Any]:
    return await consent.queries.history(body.request)


@router.post("/wallet/export")
async def export(body: SignedQuery, consent: ConsentServices = Depends(services)) -> dict[str, Any]:
    return await consent.queries.export_for_wallet(body.request)


@router.post("/wallet/exchanges")
async def exchanges(body: SignedQuery, consent: ConsentServices = Depends(services)) -> dict[str, Any]:
    """One page of the signer's exchange log, read from the broker (503 when it cannot be asked)."""
    return await consent.exchange_log.for_wallet(body.request)
