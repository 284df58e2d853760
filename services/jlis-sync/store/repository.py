"""jlis-sync's records: linked JPKI serials, residents, revocations acted on, CRL checkpoints."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from tsunagu.jlis_sync.store.models import crl_checkpoint, jpki_link, push_receipt, resident, revocation_seen


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


@dataclass(frozen=True)
class ResidentRecord:
    user_number: str
    name: str
    address: str
    birth_date: date
    sex: str
    basic4_consent: str | None
    deceased_at: datetime | None


@dataclass(frozen=True)
class Checkpoint:
    crl_number: int
    etag: str | None
    last_modified: str | None


class JlisRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._insert = sqlite_insert if session.get_bind().dialect.name == "sqlite" else pg_insert

    async def _insert_ignore(self, table: Any, **values: Any) -> bool:
        """Insert unless the key exists; True if this call inserted it."""
        statement = self._insert(table).values(**values).on_conflict_do_nothing()
        return bool((await self.session.execute(statement)).rowcount)  # type: ignore[attr-defined]

    # links
    async def link_owner(self, serial: str) -> tuple[str, str] | None:
        row = (
            await self.session.execute(
                select(jpki_link.c.user_number, jpki_link.c.state).where(jpki_link.c.serial == serial)
            )
        ).first()
        return (row.user_number, row.state) if row else None

    async def add_link(self, serial: str, user_number: str, now: datetime) -> bool:
        return await self._insert_ignore(
            jpki_link, serial=serial, user_number=user_number, state="current", linked_at=now
        )

    async def end_link(self, serial: str, state: str, superseded_by: str | None) -> None:
        await self.session.execute(
            update(jpki_link)
            .where(jpki_link.c.serial == serial)
            .values(state=state, superseded_by=superseded_by)
        )

    async def current_serials(self) -> set[int]:
        result = await self.session.stream_scalars(
            select(jpki_link.c.serial).where(jpki_link.c.state == "current")
        )
        return {int(serial, 16) async for serial in result}

    # residents
    async def resident(self, user_number: str) -> ResidentRecord | None:
        row = (
            await self.session.execute(select(resident).where(resident.c.user_number == user_number))
        ).first()
        if row is None:
            return None
        return ResidentRecord(
            row.user_number,
            row.name,
            row.address,
            row.birth_date,
            row.sex,
            row.basic4_consent,
            _utc(row.deceased_at),
        )

    async def save_resident(self, record: ResidentRecord, now: datetime) -> None:
        values = {
            "name": record.name,
            "address": record.address,
            "birth_date": record.birth_date,
            "sex": record.sex,
            "basic4_consent": record.basic4_consent,
            "deceased_at": record.deceased_at,
            "updated_at": now,
        }
        statement = self._insert(resident).values(user_number=record.user_number, **values)
        await self.session.execute(
            statement.on_conflict_do_update(index_elements=["user_number"], set_=values)
        )

    # dedupe
    async def mark_revocation(
        self, serial: str, reason: str, source: str, revoked_at: datetime, now: datetime
    ) -> bool:
        return await self._insert_ignore(
            revocation_seen,
            serial=serial,
            reason=reason,
            source=source,
            revoked_at=revoked_at,
            processed_at=now,
        )

    async def revocation_known(self, serial: str) -> bool:
        return (
            await self.session.execute(
                select(revocation_seen.c.serial).where(revocation_seen.c.serial == serial)
            )
        ).first() is not None

    async def mark_push(self, notification_id: str, now: datetime) -> bool:
        return await self._insert_ignore(push_receipt, notification_id=notification_id, received_at=now)

    async def push_known(self, notification_id: str) -> bool:
        return (
            await self.session.execute(
                select(push_receipt.c.notification_id).where(
                    push_receipt.c.notification_id == notification_id
                )
            )
        ).first() is not None

    # CRL checkpoint
    async def checkpoint(self, source: str) -> Checkpoint | None:
        row = (
            await self.session.execute(select(crl_checkpoint).where(crl_checkpoint.c.source == source))
        ).first()
        return Checkpoint(row.crl_number, row.etag, row.last_modified) if row else None

    async def save_checkpoint(
        self,
        source: str,
        *,
        number: int,
        this_update: datetime,
        etag: str | None,
        last_modified: str | None,
        now: datetime,
    ) -> None:
        values = {
            "crl_number": number,
            "this_update": this_update,
            "etag": etag,
            "last_modified": last_modified,
            "applied_at": now,
        }
        statement = self._insert(crl_checkpoint).values(source=source, **values)
        await self.session.execute(statement.on_conflict_do_update(index_elements=["source"], set_=values))
