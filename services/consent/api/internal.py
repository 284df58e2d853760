"""Service-facing routes: recipients, consent requests, effective consent, exports."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response, status

from tsunagu.auth import ServicePrincipal, require_permission
from tsunagu.consent.api.deps import (
    DECISIONS_EXPORT,
    EFFECTIVE_READ,
    RECIPIENTS_WRITE,
    REQUESTS_CREATE,
    ConsentServices,
    services,
)
from tsunagu.consent.api.schemas import (
    BatchAnswer,
    BatchBody,
    CheckAnswer,
    CheckBody,
    CreateRequestBody,
    EffectiveAnswer,
    EffectiveBody,
    RecipientBody,
    RecipientView,
)
from tsunagu.consent.domain.errors import ConsentRequestNotFound
from tsunagu.consent.domain.requests import NewRequest, RequestedItem

router = APIRouter(prefix="/internal/v1", tags=["internal"])


@router.put("/recipients/{recipient_id}", response_model=RecipientView)
async def put_recipient(
    recipient_id: str,
    body: RecipientBody,
    response: Response,
    caller: ServicePrincipal = Depends(require_permission(RECIPIENTS_WRITE)),
    consent: ConsentServices = Depends(services),
) -> RecipientView:
    created = await consent.requests.register_recipient(recipient_id, body.name_ja, body.name_en, caller.name)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return RecipientView(id=recipient_id, name_ja=body.name_ja, name_en=body.name_en, created=created)


@router.post("/requests", status_code=status.HTTP_201_CREATED)
async def create_request(
    body: CreateRequestBody,
    caller: ServicePrincipal = Depends(require_permission(REQUESTS_CREATE)),
    consent: ConsentServices = Depends(services),
) -> dict[str, Any]:
    """Ask a person (by user identification number) for consent; the wallet shows it."""
    return await consent.requests.create(
        NewRequest(
            user_number=body.user_number,
            recipient=body.recipient,
            items=[RequestedItem(entry.item, entry.required) for entry in body.items],
            purpose=body.purpose,
            valid_from=body.validity.valid_from,
            valid_until=body.validity.until,
            notice_version=body.notice_version,
            limits=body.limits,
            purpose_dpv=body.purpose_dpv,
            answer_within_s=body.answer_within_s,
        ),
        created_by=caller.name,
    )


@router.get("/requests/{request_id}")
async def get_request(
    request_id: str,
    _caller: ServicePrincipal = Depends(require_permission(REQUESTS_CREATE)),
    consent: ConsentServices = Depends(services),
) -> dict[str, Any]:
    found = await consent.requests.get(request_id[:64])
    if found is None:
        raise ConsentRequestNotFound()
    return found


@router.post("/effective", response_model=EffectiveAnswer)
async def effective(
    body: EffectiveBody,
    _caller: ServicePrincipal = Depends(require_permission(EFFECTIVE_READ)),
    consent: ConsentServices = Depends(services),
) -> EffectiveAnswer:
    """Batch: for each item, allow or deny (deny wins; no decision → deny)."""
    decisions = await consent.queries.effective(
        body.user_number, body.recipient, body.purpose, body.items, body.at
    )
    return EffectiveAnswer(decisions=decisions)


@router.post("/effective/check", response_model=CheckAnswer)
async def check(
    body: CheckBody,
    _caller: ServicePrincipal = Depends(require_permission(EFFECTIVE_READ)),
    consent: ConsentServices = Depends(services),
) -> CheckAnswer:
    decisions = await consent.queries.effective(
        body.user_number, body.recipient, body.purpose, [body.item], body.at
    )
    return CheckAnswer(decision=decisions[body.item])


@router.post("/effective/batch", response_model=BatchAnswer)
async def batch(
    body: BatchBody,
    _caller: ServicePrincipal = Depends(require_permission(EFFECTIVE_READ)),
    consent: ConsentServices = Depends(services),
) -> BatchAnswer:
    """Many checks (any person, recipient, purpose, item) at one time, answered in order."""
    decisions = await consent.queries.effective_many(
        [(c.user_number, c.recipient, c.purpose, c.item) for c in body.checks], body.at
    )
    return BatchAnswer(decisions=decisions)


@router.get("/decisions/{decision_id}/export")
async def export(
    decision_id: str,
    _caller: ServicePrincipal = Depends(require_permission(DECISIONS_EXPORT)),
    consent: ConsentServices = Depends(services),
) -> dict[str, Any]:
    return await consent.queries.export(decision_id[:64])
