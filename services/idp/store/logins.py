"""Pushed requests and login transactions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tsunagu.idp.store.models import login_transaction, pushed_request


async def add_pushed_request(
    session: AsyncSession,
    *,
    request_uri_hash: str,
    client_id: str,
    parameters: dict[str, Any],
    expires_at: datetime,
) -> None:
    await session.execute(
        insert(pushed_request).values(
            request_uri_hash=request_uri_hash,
            client_id=client_id,
            parameters=parameters,
            expires_at=expires_at,
        )
    )


async def take_pushed_request(
    session: AsyncSession, request_uri_hash: str, now: datetime
) -> dict[str, Any] | None:
    """The pushed request, marked used (one use only: a second browser load gets nothing)."""
    result = await session.execute(
        update(pushed_request)
        .where(
            and_(
                pushed_request.c.request_uri_hash == request_uri_hash,
                pushed_request.c.used_at.is_(None),
                pushed_request.c.expires_at > now,
            )
        )
        .values(used_at=now)
        .returning(pushed_request.c.client_id, pushed_request.c.parameters)
    )
    row = result.first()
    return dict(row._mapping) if row is not None else None


async def add_transaction(session: AsyncSession, **values: Any) -> None:
    await session.execute(insert(login_transaction).values(**values))


async def transaction(session: AsyncSession, tx: str, *, for_update: bool = False) -> dict[str, Any] | None:
    query = select(login_transaction).where(login_transaction.c.id == tx)
    if for_update:
        query = query.with_for_update()
    row = (await session.execute(query)).first()
    return dict(row._mapping) if row is not None else None


async def move(session: AsyncSession, tx: str, from_state: str, **values: Any) -> bool:
    """Change the transaction if it is still in ``from_state`` (so concurrent deciders cannot
    both win); True when this call moved it."""
    result = await session.execute(
        update(login_transaction)
        .where(and_(login_transaction.c.id == tx, login_transaction.c.state == from_state))
        .values(**values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def mark_notified(session: AsyncSession, tx: str, at: datetime) -> None:
    """A CIBA client was pinged (whatever the citizen decided)."""
    statement = update(login_transaction).where(login_transaction.c.id == tx).values(notified_at=at)
    await session.execute(statement)


async def pending_ciba_for(session: AsyncSession, user_number: str, now: datetime) -> list[dict[str, Any]]:
    rows = await session.execute(
        select(login_transaction)
        .where(
            and_(
                login_transaction.c.kind == "ciba",
                login_transaction.c.hinted_user_number == user_number,
                login_transaction.c.state == "pending",
                login_transaction.c.expires_at > now,
            )
        )
        .order_by(login_transaction.c.created_at)
        .limit(20)
    )
    return [dict(row._mapping) for row in rows]
