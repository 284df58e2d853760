"""The key registry in the signer's database. Rows travel as :class:`KeyRecord` (plain values);
the domain turns them into its own types."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tsunagu.db import as_utc
from tsunagu.signer.store.models import signing_key

_table = signing_key


@dataclass(frozen=True)
class KeyRecord:
    kid: str
    purpose: str
    algorithm: str
    key_size: int | None
    state: str
    hsm_label: str
    public_key_der: bytes
    allowed_callers: tuple[str, ...]
    created_at: datetime
    activated_at: datetime | None = None
    retired_at: datetime | None = None
    destroyed_at: datetime | None = None


def _to_record(row: Any) -> KeyRecord:
    return KeyRecord(
        kid=row.kid,
        purpose=row.purpose,
        algorithm=row.algorithm,
        key_size=row.key_size,
        state=row.state,
        hsm_label=row.hsm_label,
        public_key_der=row.public_key_der,
        allowed_callers=tuple(row.allowed_callers),
        created_at=as_utc(row.created_at) or row.created_at,
        activated_at=as_utc(row.activated_at),
        retired_at=as_utc(row.retired_at),
        destroyed_at=as_utc(row.destroyed_at),
    )


class KeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, kid: str, *, for_update: bool = False) -> KeyRecord | None:
        statement = select(_table).where(_table.c.kid == kid)
        if for_update:
            statement = statement.with_for_update()
        row = (await self.session.execute(statement)).first()
        return _to_record(row) if row else None

    async def active_for(
        self, purpose: str, *, algorithm: str | None = None, for_update: bool = False
    ) -> list[KeyRecord]:
        """The active keys of ``purpose`` (of ``algorithm`` when given): one per algorithm."""
        statement = select(_table).where(_table.c.purpose == purpose, _table.c.state == "active")
        if algorithm is not None:
            statement = statement.where(_table.c.algorithm == algorithm)
        if for_update:
            statement = statement.with_for_update()
        return [_to_record(row) for row in (await self.session.execute(statement)).all()]

    async def list(self, *, purpose: str | None = None, states: tuple[str, ...] = ()) -> list[KeyRecord]:
        statement = select(_table).order_by(_table.c.created_at, _table.c.kid)
        if purpose is not None:
            statement = statement.where(_table.c.purpose == purpose)
        if states:
            statement = statement.where(_table.c.state.in_(states))
        return [_to_record(row) for row in (await self.session.execute(statement)).all()]

    async def add(self, record: KeyRecord) -> None:
        values = asdict(record)
        values["allowed_callers"] = list(record.allowed_callers)
        await self.session.execute(insert(_table).values(**values))

    async def save_state(self, record: KeyRecord) -> None:
        await self.session.execute(
            update(_table)
            .where(_table.c.kid == record.kid)
            .values(
                state=record.state,
                activated_at=record.activated_at,
                retired_at=record.retired_at,
                destroyed_at=record.destroyed_at,
            )
        )
