"""Reads and writes of the dashboard's tables (browser sessions, proposed changes)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tsunagu.consent.store.models import dashboard_change, dashboard_session
from tsunagu.db import as_utc


def _session_row(mapping: Any) -> dict[str, Any]:
    row = dict(mapping)
    for key in ("created_at", "expires_at"):
        row[key] = as_utc(row[key])
    return row


async def add_session(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(insert(dashboard_session).values(**values))


async def session_row(session: AsyncSession, id_sha256: str, now: datetime) -> dict[str, Any] | None:
    """The session with this id hash, unless it has expired."""
    found = (
        await session.execute(
            select(dashboard_session).where(
                dashboard_session.c.id_sha256 == id_sha256, dashboard_session.c.expires_at > now
            )
        )
    ).first()
    return _session_row(found._mapping) if found else None


async def take_login(
    session: AsyncSession, id_sha256: str, state: str, now: datetime
) -> dict[str, Any] | None:
    """Remove and return the login in progress with this id and state (single use): None when
    there is none, it has expired, it is already a session, or the state differs — then nothing
    is removed."""
    found = await session_row(session, id_sha256, now)
    if found is None or found["user_number"] is not None or found["oidc_state"] != state:
        return None
    result = await session.execute(
        delete(dashboard_session).where(
            dashboard_session.c.id_sha256 == id_sha256, dashboard_session.c.user_number.is_(None)
        )
    )
    return found if result.rowcount else None  # type: ignore[attr-defined]


async def set_locale(session: AsyncSession, id_sha256: str, locale: str) -> None:
    await session.execute(
        update(dashboard_session).where(dashboard_session.c.id_sha256 == id_sha256).values(locale=locale)
    )


async def delete_session(session: AsyncSession, id_sha256: str) -> None:
    await session.execute(delete(dashboard_session).where(dashboard_session.c.id_sha256 == id_sha256))


async def forget_expired_sessions(session: AsyncSession, now: datetime) -> int:
    result = await session.execute(delete(dashboard_session).where(dashboard_session.c.expires_at <= now))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def add_change(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(insert(dashboard_change).values(**values))


async def change_proposal(session: AsyncSession, request_id: str) -> dict[str, str] | None:
    found = await session.execute(
        select(dashboard_change.c.proposal).where(dashboard_change.c.request_id == request_id)
    )
    proposal = found.scalar_one_or_none()
    return dict(proposal) if proposal is not None else None
