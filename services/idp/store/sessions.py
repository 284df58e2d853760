"""IdP sessions, the clients that took part in them, back-channel logout deliveries and the last
update time of each resident's claims.

Rows travel as plain values (:class:`SessionRecord`, :class:`DeliveryRecord`); the domain decides.
Ending a session is a conditional ``UPDATE … WHERE ended_at IS NULL``, so two concurrent logouts
(or a logout and a revocation) end it once and fan out once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from tsunagu.db import as_utc
from tsunagu.idp.store.models import idp_session, logout_delivery, resident_update, session_client

# A delivery given up on stays in the table (undelivered, with its last error) and is never due.
GIVEN_UP = datetime(9999, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class SessionRecord:
    id: str
    user_number: str
    certificate_serial: str
    auth_time: datetime
    acr: str
    amr: list[str]
    created_at: datetime
    expires_at: datetime
    ended_at: datetime | None
    end_reason: str | None


@dataclass(frozen=True)
class DeliveryRecord:
    id: int
    session_id: str
    client_id: str
    subject: str
    attempts: int


def _session(row: Any) -> SessionRecord:
    return SessionRecord(
        id=row.id,
        user_number=row.user_number,
        certificate_serial=row.certificate_serial,
        auth_time=as_utc(row.auth_time),
        acr=row.acr,
        amr=list(row.amr),
        created_at=as_utc(row.created_at),
        expires_at=as_utc(row.expires_at),
        ended_at=as_utc(row.ended_at),
        end_reason=row.end_reason,
    )


class SessionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._sqlite = session.get_bind().dialect.name == "sqlite"

    def _insert(self, table: Any) -> Any:
        return (sqlite_insert if self._sqlite else pg_insert)(table)

    # sessions
    async def add(self, record: SessionRecord, cookie_hash: str) -> None:
        await self.session.execute(
            insert(idp_session).values(
                id=record.id,
                cookie_hash=cookie_hash,
                user_number=record.user_number,
                certificate_serial=record.certificate_serial,
                auth_time=record.auth_time,
                acr=record.acr,
                amr=record.amr,
                created_at=record.created_at,
                expires_at=record.expires_at,
            )
        )

    async def by_cookie(self, cookie_hash: str) -> SessionRecord | None:
        row = (
            await self.session.execute(select(idp_session).where(idp_session.c.cookie_hash == cookie_hash))
        ).first()
        return _session(row) if row else None

    async def get(self, sid: str) -> SessionRecord | None:
        row = (await self.session.execute(select(idp_session).where(idp_session.c.id == sid))).first()
        return _session(row) if row else None

    async def end(self, sid: str, reason: str, now: datetime) -> SessionRecord | None:
        """Mark the session ended; the session as it was, or None when it had ended already (or
        never existed) — so only one caller fans out."""
        result = await self.session.execute(
            update(idp_session)
            .where(idp_session.c.id == sid, idp_session.c.ended_at.is_(None))
            .values(ended_at=now, end_reason=reason)
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            return None
        return await self.get(sid)

    async def open_ids_of_certificate(self, serial: str) -> list[str]:
        """Sessions of this certificate not ended yet (expired ones included: they end properly)."""
        rows = await self.session.execute(
            select(idp_session.c.id).where(
                idp_session.c.certificate_serial == serial, idp_session.c.ended_at.is_(None)
            )
        )
        return list(rows.scalars())

    async def expired_open_ids(self, now: datetime, limit: int) -> list[str]:
        rows = await self.session.execute(
            select(idp_session.c.id)
            .where(idp_session.c.ended_at.is_(None), idp_session.c.expires_at < now)
            .order_by(idp_session.c.expires_at)
            .limit(limit)
        )
        return list(rows.scalars())

    # clients of a session
    async def add_client(self, sid: str, client_id: str, now: datetime) -> None:
        await self.session.execute(
            self._insert(session_client)
            .values(session_id=sid, client_id=client_id, first_at=now)
            .on_conflict_do_nothing()
        )

    async def client_ids(self, sid: str) -> list[str]:
        rows = await self.session.execute(
            select(session_client.c.client_id)
            .where(session_client.c.session_id == sid)
            .order_by(session_client.c.first_at, session_client.c.client_id)
        )
        return list(rows.scalars())

    # back-channel logout deliveries
    async def queue_delivery(self, sid: str, client_id: str, subject: str, now: datetime) -> None:
        await self.session.execute(
            insert(logout_delivery).values(
                session_id=sid,
                client_id=client_id,
                subject=subject,
                attempts=0,
                delivered=False,
                next_attempt_at=now,
                created_at=now,
            )
        )

    async def claim_due(self, now: datetime, lease_until: datetime, limit: int) -> list[DeliveryRecord]:
        """Due deliveries, leased to this caller until ``lease_until`` (another replica skips them:
        ``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite has one writer anyway)."""
        statement = (
            select(
                logout_delivery.c.id,
                logout_delivery.c.session_id,
                logout_delivery.c.client_id,
                logout_delivery.c.subject,
                logout_delivery.c.attempts,
            )
            .where(logout_delivery.c.delivered.is_(False), logout_delivery.c.next_attempt_at <= now)
            .order_by(logout_delivery.c.next_attempt_at, logout_delivery.c.id)
            .limit(limit)
        )
        if not self._sqlite:
            statement = statement.with_for_update(skip_locked=True)
        rows = (await self.session.execute(statement)).all()
        if rows:
            await self.session.execute(
                update(logout_delivery)
                .where(logout_delivery.c.id.in_([row.id for row in rows]))
                .values(next_attempt_at=lease_until)
            )
        return [DeliveryRecord(r.id, r.session_id, r.client_id, r.subject, r.attempts) for r in rows]

    async def delivered(self, delivery_id: int, attempts: int) -> None:
        await self.session.execute(
            update(logout_delivery)
            .where(logout_delivery.c.id == delivery_id)
            .values(delivered=True, attempts=attempts, last_error=None)
        )

    async def failed(
        self, delivery_id: int, attempts: int, next_attempt_at: datetime | None, error: str
    ) -> None:
        """Record a failed attempt; ``next_attempt_at`` None: given up (stays undelivered, never
        due again)."""
        await self.session.execute(
            update(logout_delivery)
            .where(logout_delivery.c.id == delivery_id)
            .values(attempts=attempts, last_error=error[:200], next_attempt_at=next_attempt_at or GIVEN_UP)
        )

    # resident updates
    async def record_resident_update(self, user_number: str, at: datetime) -> None:
        """Keep the latest time (a redelivered or late older event changes nothing)."""
        statement = self._insert(resident_update).values(user_number=user_number, updated_at=at)
        excluded = statement.excluded.updated_at
        await self.session.execute(
            statement.on_conflict_do_update(
                index_elements=["user_number"],
                set_={"updated_at": func.max(resident_update.c.updated_at, excluded)}
                if self._sqlite
                else {"updated_at": func.greatest(resident_update.c.updated_at, excluded)},
            )
        )

    async def resident_updated_at(self, user_number: str) -> datetime | None:
        value = (
            await self.session.execute(
                select(resident_update.c.updated_at).where(resident_update.c.user_number == user_number)
            )
        ).scalar()
        return as_utc(value)
