"""Diagnostics every service offers: prove the event path (outbox → Kafka → other services) works.

``POST /internal/v1/diagnostics/pings`` records a ping and its event in one transaction; every
service's ``diagnostics`` consumer records a receipt, readable with
``GET /internal/v1/diagnostics/receipts/{ping_id}``. The demo story and the smoke test use it.
Both routes are internal: a service token with the ``diagnostics:*`` permission is required.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Request, status
from pydantic import BaseModel, Field
from sqlalchemy import Column, DateTime, MetaData, String, Table, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from tsunagu.auth import ServicePrincipal, require_permission
from tsunagu.errors import NotFound
from tsunagu.events import EventTables, Handler, ReceivedEvent, define_event_tables
from tsunagu.events.schemas.platform import DiagnosticPingV1
from tsunagu.service.runtime import get_runtime

TOPIC = DiagnosticPingV1.topic
# A ping's receipts are not urgent (the demo and the smoke test wait seconds for them): every
# service's diagnostics consumer polls the broker ten times less often than the urgent ones.
FETCH_MAX_WAIT_MS = 500
PING_PERMISSION = "diagnostics:ping"
READ_PERMISSION = "diagnostics:read"


def define_platform_tables(metadata: MetaData) -> EventTables:
    """The tables every service has: outbox, inbox and the diagnostics ping/receipt tables."""
    Table(
        "diagnostic_ping",
        metadata,
        Column("ping_id", String(64), primary_key=True),
        Column("requested_by", String(64), nullable=False),
        Column("sent_at", DateTime(timezone=True), nullable=False),
    )
    Table(
        "diagnostic_receipt",
        metadata,
        Column("ping_id", String(64), primary_key=True),
        Column("origin", String(64), nullable=False),
        Column("event_id", String(64), nullable=False),
        Column("received_at", DateTime(timezone=True), nullable=False),
    )
    return define_event_tables(metadata)


class PingRequest(BaseModel):
    note: str = Field(default="", max_length=200)


class PingSent(BaseModel):
    ping_id: str
    origin: str
    event_id: str
    sent_at: datetime


class PingReceipt(BaseModel):
    ping_id: str
    origin: str
    event_id: str
    received_at: datetime


def router(metadata: MetaData) -> APIRouter:
    pings = metadata.tables["diagnostic_ping"]
    receipts = metadata.tables["diagnostic_receipt"]
    api = APIRouter(prefix="/internal/v1/diagnostics", tags=["diagnostics"])

    @api.post("/pings", status_code=status.HTTP_201_CREATED, response_model=PingSent)
    async def send_ping(
        body: PingRequest,
        request: Request,
        caller: ServicePrincipal = Depends(require_permission(PING_PERMISSION)),
    ) -> PingSent:
        runtime = get_runtime(request)
        now = datetime.now(UTC)
        ping = DiagnosticPingV1(
            ping_id=uuid.uuid4().hex, origin=runtime.settings.service_name, sent_at=now, note=body.note
        )
        async with runtime.db.transaction() as session:
            await session.execute(
                insert(pings).values(ping_id=ping.ping_id, requested_by=caller.name, sent_at=now)
            )
            envelope = await runtime.outbox.add(session, ping)
        return PingSent(ping_id=ping.ping_id, origin=ping.origin, event_id=envelope.id, sent_at=now)

    @api.get("/receipts/{ping_id}", response_model=PingReceipt)
    async def get_receipt(
        ping_id: str,
        request: Request,
        _caller: ServicePrincipal = Depends(require_permission(READ_PERMISSION)),
    ) -> PingReceipt:
        runtime = get_runtime(request)
        async with runtime.db.sessions() as session:
            row = (await session.execute(select(receipts).where(receipts.c.ping_id == ping_id))).first()
        if row is None:
            raise NotFound("this service has not received that ping (yet)")
        return PingReceipt(
            ping_id=row.ping_id, origin=row.origin, event_id=row.event_id, received_at=row.received_at
        )

    return api


def handlers(metadata: MetaData) -> dict[str, Handler]:
    receipts = metadata.tables["diagnostic_receipt"]

    async def record_receipt(session: AsyncSession, event: ReceivedEvent) -> None:
        assert isinstance(event.data, DiagnosticPingV1)
        await session.execute(
            insert(receipts).values(
                ping_id=event.data.ping_id,
                origin=event.data.origin,
                event_id=event.envelope.id,
                received_at=datetime.now(UTC),
            )
        )

    return {DiagnosticPingV1.event_type: record_receipt}


DEFAULT_GRANTS: dict[str, list[str]] = {
    PING_PERMISSION: ["operator"],
    READ_PERMISSION: ["operator"],
}
