"""Tenants and clients: the rows behind :mod:`tsunagu.idp.domain.clients`.

Secrets (client secrets, registration and initial access tokens) arrive here as SHA-256 hashes
only; the domain compares them in constant time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tsunagu.db import as_utc
from tsunagu.idp.store.models import client, tenant


@dataclass(frozen=True)
class TenantRecord:
    id: str
    name_ja: str
    name_en: str
    state: str
    created_at: datetime
    initial_access_token_hash: str | None


@dataclass(frozen=True)
class ClientRecord:
    client_id: str
    tenant_id: str
    tenant_name_ja: str
    tenant_name_en: str
    tenant_state: str
    token_endpoint_auth_method: str
    client_secret_hash: str | None
    client_secret_expires_at: datetime | None
    registration_access_token_hash: str | None
    sector_identifier: str
    user_number_legal_basis: str | None
    metadata: dict[str, Any]
    state: str
    created_at: datetime
    updated_at: datetime


def _tenant(row: Any) -> TenantRecord:
    return TenantRecord(
        id=row.id,
        name_ja=row.name_ja,
        name_en=row.name_en,
        state=row.state,
        created_at=as_utc(row.created_at),
        initial_access_token_hash=row.initial_access_token_hash,
    )


_CLIENT_COLUMNS = (
    client,
    tenant.c.name_ja.label("tenant_name_ja"),
    tenant.c.name_en.label("tenant_name_en"),
    tenant.c.state.label("tenant_state"),
)


class ClientStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- tenants ----------------------------------------------------------------------------

    async def add_tenant(
        self, *, id: str, name_ja: str, name_en: str, token_hash: str, created_at: datetime
    ) -> None:
        await self.session.execute(
            insert(tenant).values(
                id=id,
                name_ja=name_ja,
                name_en=name_en,
                initial_access_token_hash=token_hash,
                state="active",
                created_at=created_at,
            )
        )

    async def tenant(self, tenant_id: str) -> TenantRecord | None:
        row = (await self.session.execute(select(tenant).where(tenant.c.id == tenant_id))).first()
        return _tenant(row) if row is not None else None

    async def tenant_by_token_hash(self, token_hash: str) -> TenantRecord | None:
        row = (
            await self.session.execute(select(tenant).where(tenant.c.initial_access_token_hash == token_hash))
        ).first()
        return _tenant(row) if row is not None else None

    async def set_tenant_token_hash(self, tenant_id: str, token_hash: str) -> bool:
        result = await self.session.execute(
            update(tenant).where(tenant.c.id == tenant_id).values(initial_access_token_hash=token_hash)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    # -- clients ----------------------------------------------------------------------------

    async def add_client(self, **values: Any) -> None:
        await self.session.execute(insert(client).values(**values))

    async def client(self, client_id: str, *, for_update: bool = False) -> ClientRecord | None:
        query = (
            select(*_CLIENT_COLUMNS)
            .join(tenant, tenant.c.id == client.c.tenant_id)
            .where(client.c.client_id == client_id)
        )
        if for_update:
            query = query.with_for_update(of=client)
        row = (await self.session.execute(query)).first()
        if row is None:
            return None
        return ClientRecord(
            client_id=row.client_id,
            tenant_id=row.tenant_id,
            tenant_name_ja=row.tenant_name_ja,
            tenant_name_en=row.tenant_name_en,
            tenant_state=row.tenant_state,
            token_endpoint_auth_method=row.token_endpoint_auth_method,
            client_secret_hash=row.client_secret_hash,
            client_secret_expires_at=as_utc(row.client_secret_expires_at),
            registration_access_token_hash=row.registration_access_token_hash,
            sector_identifier=row.sector_identifier,
            user_number_legal_basis=row.user_number_legal_basis,
            metadata=dict(row.metadata_json),
            state=row.state,
            created_at=as_utc(row.created_at),
            updated_at=as_utc(row.updated_at),
        )

    async def update_client(self, client_id: str, **values: Any) -> None:
        await self.session.execute(update(client).where(client.c.client_id == client_id).values(**values))
