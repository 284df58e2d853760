"""Reads and writes of metering: counters per tenant and month, the month's active citizens."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, union
from sqlalchemy.ext.asyncio import AsyncSession

from tsunagu.broker.store.models import exchange, usage_citizen, usage_counter
from tsunagu.broker.store.repository import _insert


async def add_counts(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Add ``count`` to each (tenant_id, month, metric, client_id) counter (one statement each)."""
    insert = _insert(session)
    for row in rows:
        statement = insert(usage_counter).values(**row)
        statement = statement.on_conflict_do_update(
            index_elements=[
                usage_counter.c.tenant_id,
                usage_counter.c.month,
                usage_counter.c.metric,
                usage_counter.c.client_id,
            ],
            set_={"count": usage_counter.c.count + statement.excluded["count"]},
        )
        await session.execute(statement)


async def add_citizen(session: AsyncSession, tenant_id: str, month: str, user_number: str) -> None:
    values = {"tenant_id": tenant_id, "month": month, "user_number": user_number}
    await session.execute(_insert(session)(usage_citizen).values(**values).on_conflict_do_nothing())


async def counters(session: AsyncSession, tenant_id: str, month: str) -> list[dict[str, Any]]:
    statement = select(usage_counter.c.metric, usage_counter.c.client_id, usage_counter.c.count).where(
        usage_counter.c.tenant_id == tenant_id, usage_counter.c.month == month
    )
    return [dict(row._mapping) for row in await session.execute(statement)]


async def exchange_counts(
    session: AsyncSession, tenant_id: str, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    statement = (
        select(exchange.c.kind, exchange.c.outcome, func.count().label("count"))
        .where(exchange.c.tenant_id == tenant_id, exchange.c.at >= start, exchange.c.at < end)
        .group_by(exchange.c.kind, exchange.c.outcome)
    )
    return [dict(row._mapping) for row in await session.execute(statement)]


async def active_citizens(
    session: AsyncSession, tenant_id: str, month: str, start: datetime, end: datetime
) -> int:
    """Distinct citizens with a login (to this tenant's clients) or an exchange that month."""
    logins = select(usage_citizen.c.user_number.label("u")).where(
        usage_citizen.c.tenant_id == tenant_id, usage_citizen.c.month == month
    )
    exchanged = select(exchange.c.user_number.label("u")).where(
        exchange.c.tenant_id == tenant_id, exchange.c.at >= start, exchange.c.at < end
    )
    both = union(logins, exchanged).subquery()
    statement = select(func.count()).select_from(both)
    return int((await session.execute(statement)).scalar_one())
