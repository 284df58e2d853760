"""Events idp publishes and the handlers for the events it consumes.

Publishes (``libs/events/schemas/idp.py``): ``tsunagu.idp.login.succeeded`` / ``.failed`` and
``tsunagu.idp.session.ended`` keyed by user number; ``tsunagu.idp.client.*`` keyed by client id.
Consumes: ``tsunagu.ca.certificate.revoked`` (the certificate's sessions end) and
``tsunagu.jlis_sync.resident.updated`` (released claims changed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tsunagu.events import EventTables
from tsunagu.events.consumer import ReceivedEvent
from tsunagu.events.schemas.ca import CertificateRevokedV1
from tsunagu.events.schemas.jlis_sync import ResidentUpdatedV1
from tsunagu.service import ConsumerSpec


@dataclass
class Late:
    """The domain services, known only once the app's resources are up."""

    services: Any = None


def consumers(tables: EventTables, late: Late) -> list[ConsumerSpec]:
    """The consumer groups of this service (diagnostics is added by the chassis).

    Both handlers run in the inbox's transaction (a redelivery is skipped) and are safe to run
    again anyway: ending an ended session does nothing, the update time only moves forward.
    """

    def ready() -> Any:
        if late.services is None:
            raise RuntimeError("the idp is not configured yet; the event will be retried")
        return late.services

    async def on_certificate_revoked(session: AsyncSession, event: ReceivedEvent) -> None:
        data = event.data
        assert isinstance(data, CertificateRevokedV1)
        await ready().sessions.end_for_certificate(session, data.serial)

    async def on_resident_updated(session: AsyncSession, event: ReceivedEvent) -> None:
        data = event.data
        assert isinstance(data, ResidentUpdatedV1)
        await ready().resident_updates.record(session, data.user_number, data.effective_at)

    return [
        ConsumerSpec(
            name="ca",
            topics=[CertificateRevokedV1.topic],
            handlers={CertificateRevokedV1.event_type: on_certificate_revoked},
            tables=tables,
        ),
        ConsumerSpec(
            name="jlis",
            topics=[ResidentUpdatedV1.topic],
            handlers={ResidentUpdatedV1.event_type: on_resident_updated},
            tables=tables,
        ),
    ]
