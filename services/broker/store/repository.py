"""The broker's reads and writes (catalog, who is who, consent view, exchange log)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from tsunagu.broker.store.models import (
    catalog_item,
    consent_decision,
    exchange,
    party,
    signing_delegation,
    subject,
)


def _insert(session: AsyncSession) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


# -- catalog ------------------------------------------------------------------------------------


async def item(session: AsyncSession, item_id: str) -> dict[str, Any] | None:
    row = (await session.execute(select(catalog_item).where(catalog_item.c.id == item_id))).first()
    return dict(row._mapping) if row is not None else None


async def items(session: AsyncSession, ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
    statement = select(catalog_item).order_by(catalog_item.c.id)
    if ids is not None:
        statement = statement.where(catalog_item.c.id.in_(list(ids)))
    return [dict(row._mapping) for row in await session.execute(statement)]


async def put_item(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Create or replace the item; False (nothing written) when another tenant owns it."""
    insert = _insert(session)
    statement = insert(catalog_item).values(**values)
    changed = {k: statement.excluded[k] for k in values if k not in ("id", "tenant_id")}
    statement = statement.on_conflict_do_update(
        index_elements=[catalog_item.c.id],
        set_=changed,
        where=catalog_item.c.tenant_id == values["tenant_id"],
    ).returning(catalog_item.c.id)
    return (await session.execute(statement)).scalar_one_or_none() is not None


# -- who is who ---------------------------------------------------------------------------------


async def put_party(session: AsyncSession, values: dict[str, Any]) -> None:
    insert = _insert(session)
    statement = insert(party).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=[party.c.client_id],
        set_={k: statement.excluded[k] for k in values if k != "client_id"},
    )
    await session.execute(statement)


async def disable_party(session: AsyncSession, client_id: str, at: datetime) -> None:
    await session.execute(
        update(party).where(party.c.client_id == client_id).values(state="disabled", updated_at=at)
    )


async def get_party(session: AsyncSession, client_id: str) -> dict[str, Any] | None:
    row = (await session.execute(select(party).where(party.c.client_id == client_id))).first()
    return dict(row._mapping) if row is not None else None


async def add_subject(session: AsyncSession, sector_identifier: str, sub: str, user_number: str) -> None:
    values = {"sector_identifier": sector_identifier, "sub": sub, "user_number": user_number}
    await session.execute(_insert(session)(subject).values(**values).on_conflict_do_nothing())


async def user_for_subject(session: AsyncSession, sector_identifier: str, sub: str) -> str | None:
    statement = select(subject.c.user_number).where(
        and_(subject.c.sector_identifier == sector_identifier, subject.c.sub == sub)
    )
    value = (await session.execute(statement)).scalar_one_or_none()
    return str(value) if value is not None else None


async def subject_for_user(session: AsyncSession, sector_identifier: str, user_number: str) -> str | None:
    statement = select(subject.c.sub).where(
        and_(subject.c.sector_identifier == sector_identifier, subject.c.user_number == user_number)
    )
    value = (await session.execute(statement.limit(1))).scalar_one_or_none()
    return str(value) if value is not None else None


# -- consent view -------------------------------------------------------------------------------


async def add_decision(session: AsyncSession, values: dict[str, Any]) -> None:
    """Record a decision (once) and mark the one it supersedes."""
    # The row as parameters of a fixed statement (compiled once, not per decision).
    await session.execute(_insert(session)(consent_decision).on_conflict_do_nothing(), values)
    if values.get("supersedes"):
        await session.execute(
            update(consent_decision)
            .where(
                consent_decision.c.decision_id == values["supersedes"],
                consent_decision.c.superseded_at.is_(None),
            )
            .values(superseded_at=values["recorded_at"])
        )


async def decisions(session: AsyncSession, user_number: str, recipient: str) -> list[dict[str, Any]]:
    statement = select(consent_decision).where(
        consent_decision.c.user_number == user_number, consent_decision.c.recipient == recipient
    )
    return [dict(row._mapping) for row in await session.execute(statement)]


# -- exchange log -------------------------------------------------------------------------------


async def add_exchanges(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await session.execute(exchange.insert(), list(rows))


async def exchanges_of(
    session: AsyncSession, user_number: str, *, before: tuple[datetime, str | None] | None, limit: int
) -> list[dict[str, Any]]:
    """Newest first; ``before`` = (time, id) of the last entry already shown (entries after it in
    that order), or (time, None) for every entry strictly older than the time."""
    statement = select(exchange).where(exchange.c.user_number == user_number)
    if before is not None:
        at, last_id = before
        older = exchange.c.at < at
        statement = statement.where(
            older if last_id is None else or_(older, and_(exchange.c.at == at, exchange.c.id < last_id))
        )
    statement = statement.order_by(exchange.c.at.desc(), exchange.c.id.desc()).limit(limit)
    return [dict(row._mapping) for row in await session.execute(statement)]


# -- delegated signing keys ---------------------------------------------------------------------


async def add_delegation(session: AsyncSession, values: dict[str, Any]) -> None:
    """Publish a delegated key; forget those expired for a day (nothing verifies with them)."""
    await session.execute(
        delete(signing_delegation).where(
            signing_delegation.c.not_after < values["not_after"] - timedelta(days=1, hours=1)
        )
    )
    await session.execute(signing_delegation.insert().values(**values))


async def delegations(session: AsyncSession, now: datetime) -> list[dict[str, Any]]:
    statement = select(signing_delegation).where(signing_delegation.c.not_after > now)
    return [dict(row._mapping) for row in await session.execute(statement.order_by(signing_delegation.c.kid))]
