"""Single-use identifiers (``jti`` of client assertions, DPoP proofs, wallet approvals)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tsunagu.idp.store.models import seen_jti


async def first_use(session: AsyncSession, scope: str, issuer: str, jti: str, expires_at: datetime) -> bool:
    """Record ``jti`` for (scope, issuer); False when it was seen before. Runs in a savepoint so a
    replay does not spoil the caller's transaction; commit with the caller's work."""
    try:
        async with session.begin_nested():
            await session.execute(
                insert(seen_jti).values(
                    scope=scope, issuer=issuer[:128], jti=jti[:128], expires_at=expires_at
                )
            )
    except IntegrityError:
        return False
    return True


async def forget_expired(session: AsyncSession, now: datetime) -> int:
    result = await session.execute(delete(seen_jti).where(seen_jti.c.expires_at < now))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
