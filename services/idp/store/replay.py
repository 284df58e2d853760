"""Single-use identifiers (``jti`` of client assertions, DPoP proofs, wallet approvals)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from tsunagu.db import Database
from tsunagu.idp.store.models import authorization_code, pushed_request, seen_jti

_FIRST_USE = (
    "INSERT INTO seen_jti (scope, issuer, jti, expires_at) VALUES ($1, $2, $3, $4) "
    "ON CONFLICT (scope, issuer, jti) DO NOTHING"
)


async def first_use(session: AsyncSession, scope: str, issuer: str, jti: str, expires_at: datetime) -> bool:
    """Record ``jti`` for (scope, issuer); False when it was seen before. One statement
    (``INSERT … ON CONFLICT DO NOTHING``): no savepoint, no failed transaction on a replay, so it
    can share the caller's transaction; it counts once the caller commits. Concurrent first uses
    serialise on the primary key: exactly one inserts."""
    dialect = session.bind.dialect.name if session.bind is not None else "postgresql"
    insert = sqlite_insert if dialect == "sqlite" else postgresql_insert
    statement = (
        insert(seen_jti)
        .values(scope=scope, issuer=issuer[:128], jti=jti[:128], expires_at=expires_at)
        .on_conflict_do_nothing(index_elements=["scope", "issuer", "jti"])
    )
    result = await session.execute(statement)
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def first_use_now(db: Database, scope: str, issuer: str, jti: str, expires_at: datetime) -> bool:
    """:func:`first_use` in a transaction of its own, committed when this returns. On PostgreSQL
    one autocommitted statement (a client assertion's jti is checked on every token request:
    SQLAlchemy's BEGIN … COMMIT cost two more round trips and most of the CPU)."""
    if db.is_sqlite:
        async with db.transaction() as session:
            return await first_use(session, scope, issuer, jti, expires_at)
    status = await db.execute_one(_FIRST_USE, scope, issuer[:128], jti[:128], expires_at)
    return status == "INSERT 0 1"


async def forget_expired(session: AsyncSession, now: datetime) -> int:
    result = await session.execute(delete(seen_jti).where(seen_jti.c.expires_at < now))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def purge_spent(session: AsyncSession, now: datetime, keep: timedelta) -> int:
    """Housekeeping: single-use records that can no longer matter — expired jti, pushed requests
    and authorization codes (kept ``keep`` past their expiry, for support). Login transactions
    stay: with the wallet's signed approval they are the evidence of a login."""
    removed = await forget_expired(session, now)
    for table in (pushed_request, authorization_code):
        result = await session.execute(delete(table).where(table.c.expires_at < now - keep))
        removed += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return removed
