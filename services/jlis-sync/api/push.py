"""The J-LIS push receiver: the one route J-LIS (outside the platform) calls.

No service token here — J-LIS is not a platform service; the notification authenticates itself
(JWS signed by a certificate J-LIS's root issued), is refused if old, and is idempotent by its id.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from tsunagu.errors import PayloadTooLarge
from tsunagu.jlis_sync.api.deps import jlis_service
from tsunagu.jlis_sync.api.schemas import PushResult
from tsunagu.jlis_sync.domain.errors import InvalidPush
from tsunagu.jlis_sync.domain.push import MAX_TOKEN_BYTES
from tsunagu.jlis_sync.domain.service import JlisSyncService

router = APIRouter(prefix="/v1/jlis", tags=["J-LIS"])


@router.post(
    "/notifications",
    response_model=PushResult,
    openapi_extra={"requestBody": {"content": {"application/jose": {"schema": {"type": "string"}}}}},
)
async def receive(request: Request, service: JlisSyncService = Depends(jlis_service)) -> PushResult:
    body = await request.body()
    if len(body) > MAX_TOKEN_BYTES:
        raise PayloadTooLarge(f"a notification is at most {MAX_TOKEN_BYTES} bytes")
    try:
        token = body.decode("ascii").strip()
    except UnicodeDecodeError:
        raise InvalidPush("not a compact JWS") from None
    return PushResult(result=await service.receive_push(token))
