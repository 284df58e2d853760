"""Grants, authorization codes, refresh tokens, access-token records and issued subjects.

Rows travel as plain values (:class:`GrantRecord`, :class:`CodeRecord`, :class:`RefreshRecord`);
the domain decides. Single use is decided by the database: a code or refresh token is spent by a
conditional ``UPDATE … WHERE used_at IS NULL`` (after a ``SELECT … FOR UPDATE`` on PostgreSQL), so
two concurrent presentations cannot both succeed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from tsunagu.db import Database, as_utc
from tsunagu.idp.store.models import (
    access_token,
    authorization_code,
    client,
    grant,
    refresh_token,
    subject,
)


@dataclass(frozen=True)
class GrantRecord:
    id: str
    client_id: str
    user_number: str | None
    session_id: str | None
    certificate_serial: str | None
    scope: str
    claims: dict[str, Any] | None
    authorization_details: list[Any] | None
    auth_time: datetime | None
    acr: str | None
    amr: list[str] | None
    dpop_jkt: str | None
    created_at: datetime
    revoked_at: datetime | None = None
    revoked_reason: str | None = None
    consent_id: str | None = None  # the consent decision behind authorization_details (grant_id)


@dataclass(frozen=True)
class CodeRecord:
    code_hash: str
    grant_id: str
    client_id: str
    redirect_uri: str
    code_challenge: str
    nonce: str | None
    dpop_jkt: str | None
    expires_at: datetime
    used_at: datetime | None


@dataclass(frozen=True)
class RefreshRecord:
    token_hash: str
    grant_id: str
    generation: int
    expires_at: datetime
    used_at: datetime | None
    created_at: datetime


def _grant(row: Any) -> GrantRecord:
    return GrantRecord(
        id=row.id,
        client_id=row.client_id,
        user_number=row.user_number,
        session_id=row.session_id,
        certificate_serial=row.certificate_serial,
        scope=row.scope,
        claims=row.claims,
        authorization_details=row.authorization_details,
        auth_time=as_utc(row.auth_time),
        acr=row.acr,
        amr=list(row.amr) if row.amr is not None else None,
        dpop_jkt=row.dpop_jkt,
        created_at=as_utc(row.created_at),
        revoked_at=as_utc(row.revoked_at),
        revoked_reason=row.revoked_reason,
        consent_id=row.consent_id,
    )


_CODE_COLUMNS = [c.label(f"code_{c.name}") for c in authorization_code.c]
_REFRESH_COLUMNS = [c.label(f"refresh_{c.name}") for c in refresh_token.c]


def _code(row: Any) -> CodeRecord:
    return CodeRecord(
        code_hash=row.code_code_hash,
        grant_id=row.code_grant_id,
        client_id=row.code_client_id,
        redirect_uri=row.code_redirect_uri,
        code_challenge=row.code_code_challenge,
        nonce=row.code_nonce,
        dpop_jkt=row.code_dpop_jkt,
        expires_at=as_utc(row.code_expires_at),
        used_at=as_utc(row.code_used_at),
    )


def _refresh(row: Any) -> RefreshRecord:
    return RefreshRecord(
        token_hash=row.refresh_token_hash,
        grant_id=row.refresh_grant_id,
        generation=row.refresh_generation,
        expires_at=as_utc(row.refresh_expires_at),
        used_at=as_utc(row.refresh_used_at),
        created_at=as_utc(row.refresh_created_at),
    )


async def add_access_token_now(db: Database, jti: str, grant_id: str, expires_at: datetime) -> None:
    """Record an access token of an existing grant in a transaction of its own: on PostgreSQL one
    autocommitted statement (the client_credentials hot path)."""
    if db.is_sqlite:
        async with db.transaction() as session:
            await TokenRepository(session).add_access_token(jti, grant_id, expires_at)
        return
    await db.execute_one(
        "INSERT INTO access_token (jti, grant_id, expires_at, revoked_at) VALUES ($1, $2, $3, NULL)",
        jti,
        grant_id,
        expires_at,
    )


class TokenRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @property
    def _postgres(self) -> bool:
        return self.session.get_bind().dialect.name == "postgresql"

    # -- grants -------------------------------------------------------------------------------

    async def add_grant(self, record: GrantRecord) -> None:
        values = {
            "id": record.id,
            "client_id": record.client_id,
            "user_number": record.user_number,
            "session_id": record.session_id,
            "certificate_serial": record.certificate_serial,
            "scope": record.scope,
            "claims": record.claims,
            "authorization_details": record.authorization_details,
            "auth_time": record.auth_time,
            "acr": record.acr,
            "amr": record.amr,
            "dpop_jkt": record.dpop_jkt,
            "consent_id": record.consent_id,
            "created_at": record.created_at,
        }
        await self.session.execute(insert(grant).values(**values))

    async def get_grant(self, grant_id: str) -> GrantRecord | None:
        row = (await self.session.execute(select(grant).where(grant.c.id == grant_id))).first()
        return _grant(row) if row else None

    async def grants_for_consent(self, consent_id: str, client_id: str) -> list[GrantRecord]:
        """The client's grants made from this consent decision (Grant Management ``grant_id``)."""
        rows = await self.session.execute(
            select(grant)
            .where(grant.c.consent_id == consent_id, grant.c.client_id == client_id)
            .order_by(grant.c.created_at)
        )
        return [_grant(row) for row in rows]

    async def bind_grant(self, grant_id: str, jkt: str) -> None:
        """Bind the grant's refresh tokens to a DPoP key (public clients)."""
        await self.session.execute(update(grant).where(grant.c.id == grant_id).values(dpop_jkt=jkt))

    async def revoke_grants(self, grant_ids: list[str], now: datetime, reason: str) -> None:
        """Revoke the grants (those not revoked already) and every token hanging off them."""
        if not grant_ids:
            return
        await self.session.execute(
            update(grant)
            .where(grant.c.id.in_(grant_ids), grant.c.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason[:32])
        )
        await self.session.execute(
            update(access_token)
            .where(access_token.c.grant_id.in_(grant_ids), access_token.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        # Unused refresh tokens are spent: presenting one again is then reuse of a revoked grant.
        await self.session.execute(
            update(refresh_token)
            .where(refresh_token.c.grant_id.in_(grant_ids), refresh_token.c.used_at.is_(None))
            .values(used_at=now)
        )

    async def active_grant_ids(
        self, *, session_ids: list[str] | None, certificate_serial: str | None
    ) -> list[str]:
        conditions: list[ColumnElement[bool]] = []
        if session_ids:
            conditions.append(grant.c.session_id.in_(session_ids))
        if certificate_serial:
            conditions.append(grant.c.certificate_serial == certificate_serial)
        if not conditions:
            return []
        statement = select(grant.c.id).where(or_(*conditions), grant.c.revoked_at.is_(None))
        return list((await self.session.execute(statement)).scalars())

    # -- authorization codes --------------------------------------------------------------------

    async def add_code(self, record: CodeRecord) -> None:
        await self.session.execute(
            insert(authorization_code).values(
                code_hash=record.code_hash,
                grant_id=record.grant_id,
                client_id=record.client_id,
                redirect_uri=record.redirect_uri,
                code_challenge=record.code_challenge,
                nonce=record.nonce,
                dpop_jkt=record.dpop_jkt,
                expires_at=record.expires_at,
                used_at=None,
            )
        )

    async def code_with_grant(self, code_hash: str) -> tuple[CodeRecord, GrantRecord] | None:
        """The code and its grant; on PostgreSQL the code row stays locked until commit."""
        statement = (
            select(*_CODE_COLUMNS, grant)
            .join(grant, grant.c.id == authorization_code.c.grant_id)
            .where(authorization_code.c.code_hash == code_hash)
        )
        if self._postgres:
            statement = statement.with_for_update(of=authorization_code)
        row = (await self.session.execute(statement)).first()
        return (_code(row), _grant(row)) if row else None

    async def spend_code(self, code_hash: str, now: datetime) -> bool:
        """Mark the code used; False when another request spent it first."""
        result = await self.session.execute(
            update(authorization_code)
            .where(authorization_code.c.code_hash == code_hash, authorization_code.c.used_at.is_(None))
            .values(used_at=now)
        )
        return int(result.rowcount or 0) == 1  # type: ignore[attr-defined]

    # -- refresh tokens -------------------------------------------------------------------------

    async def add_refresh(self, record: RefreshRecord) -> None:
        await self.session.execute(
            insert(refresh_token).values(
                token_hash=record.token_hash,
                grant_id=record.grant_id,
                generation=record.generation,
                expires_at=record.expires_at,
                used_at=None,
                created_at=record.created_at,
            )
        )

    async def refresh_with_grant(
        self, token_hash: str, *, lock: bool
    ) -> tuple[RefreshRecord, GrantRecord] | None:
        """The refresh token and its grant; ``lock``: keep the token row locked (PostgreSQL)."""
        statement = (
            select(*_REFRESH_COLUMNS, grant)
            .join(grant, grant.c.id == refresh_token.c.grant_id)
            .where(refresh_token.c.token_hash == token_hash)
        )
        if lock and self._postgres:
            statement = statement.with_for_update(of=refresh_token)
        row = (await self.session.execute(statement)).first()
        return (_refresh(row), _grant(row)) if row else None

    async def spend_refresh(self, token_hash: str, now: datetime) -> bool:
        result = await self.session.execute(
            update(refresh_token)
            .where(refresh_token.c.token_hash == token_hash, refresh_token.c.used_at.is_(None))
            .values(used_at=now)
        )
        return int(result.rowcount or 0) == 1  # type: ignore[attr-defined]

    # -- access tokens --------------------------------------------------------------------------

    async def add_access_token(self, jti: str, grant_id: str, expires_at: datetime) -> None:
        await self.session.execute(
            insert(access_token).values(jti=jti, grant_id=grant_id, expires_at=expires_at, revoked_at=None)
        )

    async def access_token_view(self, jti: str) -> tuple[GrantRecord, bool, str | None] | None:
        """(grant, token revoked, the client's user-number legal basis) of a recorded token."""
        statement = (
            select(
                grant,
                access_token.c.revoked_at.label("token_revoked_at"),
                client.c.user_number_legal_basis.label("client_legal_basis"),
            )
            .join(grant, grant.c.id == access_token.c.grant_id)
            .join(client, client.c.client_id == grant.c.client_id)
            .where(access_token.c.jti == jti)
        )
        row = (await self.session.execute(statement)).first()
        if row is None:
            return None
        return _grant(row), row.token_revoked_at is not None, row.client_legal_basis

    async def revoke_access_token(self, jti: str, now: datetime) -> None:
        await self.session.execute(
            update(access_token)
            .where(access_token.c.jti == jti, access_token.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )

    # -- subjects -------------------------------------------------------------------------------

    async def remember_subject(
        self, sector_identifier: str, sub: str, user_number: str, now: datetime
    ) -> bool:
        """Record an issued subject; True when it was not recorded before."""
        values = {
            "sector_identifier": sector_identifier,
            "sub": sub,
            "user_number": user_number,
            "first_at": now,
        }
        insert = pg_insert if self._postgres else sqlite_insert
        statement = insert(subject).values(**values).on_conflict_do_nothing().returning(subject.c.sub)
        return (await self.session.execute(statement)).scalar_one_or_none() is not None

    async def user_for_subject(self, sector_identifier: str, sub: str) -> str | None:
        statement = select(subject.c.user_number).where(
            and_(subject.c.sector_identifier == sector_identifier, subject.c.sub == sub)
        )
        value = (await self.session.execute(statement)).scalar_one_or_none()
        return str(value) if value is not None else None
