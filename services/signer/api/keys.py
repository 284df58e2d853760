"""Key registry, public keys (PEM, JWKS) and rotation."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, status

from tsunagu.auth import ServicePrincipal, require_permission
from tsunagu.signer.api.deps import ADMIN, READ_KEYS, signer_service
from tsunagu.signer.api.schemas import CreateKey, JwkSet, KeyView
from tsunagu.signer.domain.keys import PUBLISHED_STATES, Purpose
from tsunagu.signer.domain.service import SignerService

router = APIRouter(prefix="/v1", tags=["keys"])


@router.get("/keys", response_model=list[KeyView])
async def list_keys(
    purpose: Purpose | None = None,
    _caller: ServicePrincipal = Depends(require_permission(READ_KEYS)),
    service: SignerService = Depends(signer_service),
) -> list[KeyView]:
    return [KeyView.of(key) for key in await service.keys(purpose=purpose)]


@router.get("/keys/{kid}", response_model=KeyView)
async def get_key(
    kid: str,
    _caller: ServicePrincipal = Depends(require_permission(READ_KEYS)),
    service: SignerService = Depends(signer_service),
) -> KeyView:
    return KeyView.of(await service.key(kid))


@router.get("/jwks", response_model=JwkSet)
async def jwks(
    purpose: Purpose | None = None,
    _caller: ServicePrincipal = Depends(require_permission(READ_KEYS)),
    service: SignerService = Depends(signer_service),
) -> JwkSet:
    """Next keys are published before they sign (verifiers learn them in time); retired keys
    stay until destroyed (signatures made before a rotation keep verifying)."""
    return JwkSet(keys=[key.jwk() for key in await service.keys(purpose=purpose, states=PUBLISHED_STATES)])


@router.post("/keys", response_model=KeyView, status_code=status.HTTP_201_CREATED)
async def create_key(
    body: CreateKey,
    actor: ServicePrincipal = Depends(require_permission(ADMIN)),
    service: SignerService = Depends(signer_service),
) -> KeyView:
    key = await service.create_key(
        actor.name, body.purpose, body.algorithm, body.key_size, body.allowed_callers
    )
    return KeyView.of(key)


@router.post("/keys/{kid}/{action}", response_model=KeyView)
async def transition_key(
    kid: str,
    action: Literal["activate", "retire", "destroy"],
    actor: ServicePrincipal = Depends(require_permission(ADMIN)),
    service: SignerService = Depends(signer_service),
) -> KeyView:
    """``activate`` (next → active, retiring the purpose's active key), ``retire`` (active →
    retired) or ``destroy`` (retired → destroyed, after the grace period)."""
    steps = {"activate": service.activate, "retire": service.retire, "destroy": service.destroy}
    return KeyView.of(await steps[action](actor.name, kid))
