"""Events ca publishes and the handlers for the events it consumes.

Publishes (``libs/events/schemas/ca.py``): ``tsunagu.ca.person.enrolled`` on ``tsunagu.ca.person``;
``tsunagu.ca.certificate.issued`` and ``.revoked`` on ``tsunagu.ca.certificate``; all keyed by
user identification number.
Consumes: ``tsunagu.jlis_sync.resident.deceased`` — the person's certificates are revoked
(reason cessationOfOperation, actor ``jlis``) and the person is marked deceased, in the same
transaction as the inbox record, so a redelivery changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tsunagu.db import call_after_commit
from tsunagu.events import EventTables
from tsunagu.events.consumer import ReceivedEvent
from tsunagu.events.schemas.jlis_sync import ResidentDeceasedV1
from tsunagu.service import ConsumerSpec


@dataclass
class Late:
    """The domain services, known only once the app's resources are up."""

    services: Any = None


def consumers(tables: EventTables, late: Late) -> list[ConsumerSpec]:
    """The consumer groups of this service (diagnostics is added by the chassis)."""

    async def on_death(session: AsyncSession, event: ReceivedEvent) -> None:
        if late.services is None:
            raise RuntimeError("the CA is not configured yet; the event will be retried")
        data = event.data
        assert isinstance(data, ResidentDeceasedV1)
        revoked = await late.services.revocations.on_death(session, data.user_number, data.effective_at)
        if revoked:
            services = late.services
            call_after_commit(session, lambda: services.published_revocations(revoked))

    return [
        ConsumerSpec(
            name="jlis",
            topics=[ResidentDeceasedV1.topic],
            handlers={ResidentDeceasedV1.event_type: on_death},
            tables=tables,
        )
    ]
