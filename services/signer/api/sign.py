"""POST /v1/sign and /v1/sign/batch."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from tsunagu.auth import ServicePrincipal, require_permission
from tsunagu.signer.api.deps import SIGN, signer_service
from tsunagu.signer.api.schemas import (
    BatchSignatures,
    BatchSignRequest,
    Signature,
    SignItem,
    SignRequest,
    b64url,
)
from tsunagu.signer.domain.backend import Payload
from tsunagu.signer.domain.service import SignerService

router = APIRouter(prefix="/v1", tags=["signing"])


def _payload(item: SignItem) -> Payload:
    if item.digest is not None:
        return Payload(item.digest, prehashed=True)
    assert item.data is not None
    return Payload(item.data, prehashed=False)


@router.post("/sign", response_model=Signature)
async def sign(
    body: SignRequest,
    caller: ServicePrincipal = Depends(require_permission(SIGN)),
    service: SignerService = Depends(signer_service),
) -> Signature:
    key, signatures = await service.sign(
        caller.name,
        [_payload(body)],
        key_id=body.key_id,
        purpose=body.purpose,
        algorithm=body.algorithm,
        signature_format=body.format,
    )
    return Signature(key_id=key.kid, algorithm=key.algorithm, signature=b64url(signatures[0]))


@router.post("/sign/batch", response_model=BatchSignatures)
async def sign_batch(
    body: BatchSignRequest,
    caller: ServicePrincipal = Depends(require_permission(SIGN)),
    service: SignerService = Depends(signer_service),
) -> BatchSignatures:
    key, signatures = await service.sign(
        caller.name,
        [_payload(item) for item in body.items],
        key_id=body.key_id,
        purpose=body.purpose,
        algorithm=body.algorithm,
        signature_format=body.format,
    )
    return BatchSignatures(
        key_id=key.kid, algorithm=key.algorithm, signatures=[b64url(s) for s in signatures]
    )
