"""Events the broker publishes and the handlers for the events it consumes.

Publishes (outbox, ``libs/events/schemas/broker.py``): ``tsunagu.broker.exchange.completed`` /
``.denied`` — every exchange and denial, in the same transaction as its exchange-log row.
Consumes:
- ``tsunagu.idp.subject.issued`` and ``tsunagu.idp.client.*`` (group ``broker.parties``): the
  who-is-who view (subjects, parties and their sectors);
- ``tsunagu.consent.decision.recorded`` (group ``broker.consent-view``): the consent view;
- ``tsunagu.jlis_sync.resident.updated`` (group ``broker.push``): push of ``resident.address``;
- ``tsunagu.idp.login.succeeded`` (group ``broker.usage``): metering (logins, active citizens).
Also publishes ``tsunagu.broker.delivery.scheduled`` / ``.dead`` (push, ``domain/push.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from tsunagu.broker.domain.consent_view import ViewChanges
from tsunagu.broker.domain.push import Push
from tsunagu.broker.domain.usage import month_of
from tsunagu.broker.store import repository as store
from tsunagu.broker.store import usage as usage_store
from tsunagu.db import call_after_commit
from tsunagu.events import EventTables, ReceivedEvent
from tsunagu.events.schemas.consent import ConsentDecisionRecordedV1
from tsunagu.events.schemas.idp import (
    ClientDeletedV1,
    ClientRegisteredV1,
    ClientUpdatedV1,
    LoginSucceededV1,
    SubjectIssuedV1,
)
from tsunagu.events.schemas.jlis_sync import ResidentUpdatedV1
from tsunagu.service import ConsumerSpec

CONSENT_VIEW_GROUP = "consent-view"


async def on_subject_issued(session: AsyncSession, event: ReceivedEvent) -> None:
    data = event.data
    assert isinstance(data, SubjectIssuedV1)
    await store.add_subject(session, data.sector_identifier, data.sub, data.user_number)


async def on_client_changed(session: AsyncSession, event: ReceivedEvent) -> None:
    data = event.data
    assert isinstance(data, ClientRegisteredV1 | ClientUpdatedV1)
    name = data.metadata.get("client_name")
    await store.put_party(
        session,
        {
            "client_id": data.client_id,
            "tenant_id": data.tenant_id,
            "sector_identifier": data.sector_identifier,
            "state": "active",
            "client_name": name if isinstance(name, str) else None,
            "updated_at": data.at,
        },
    )


async def on_client_deleted(session: AsyncSession, event: ReceivedEvent) -> None:
    data = event.data
    assert isinstance(data, ClientDeletedV1)
    await store.disable_party(session, data.client_id, data.at)


async def on_decision_recorded(session: AsyncSession, event: ReceivedEvent, changes: ViewChanges) -> None:
    data = event.data
    assert isinstance(data, ConsentDecisionRecordedV1)
    user_number = data.user_number
    call_after_commit(session, lambda: changes.changed(user_number))
    await store.add_decision(
        session,
        {
            "decision_id": data.decision_id,
            "user_number": data.user_number,
            "recipient": data.recipient,
            "purpose_code": data.purpose_code,
            "action": data.action,
            "items": dict(data.items),
            "effective_from": data.effective_from,
            "valid_until": data.valid_until,
            "recorded_at": data.recorded_at,
            "supersedes": data.supersedes,
        },
    )


@dataclass
class EventHooks:
    """What the handlers need of the service's resources (built after the handlers): the push
    domain, set once it exists; the consent view's change versions, shared from the start."""

    push: Push | None = None
    view_changes: ViewChanges = field(default_factory=ViewChanges)

    async def on_decision_recorded(self, session: AsyncSession, event: ReceivedEvent) -> None:
        await on_decision_recorded(session, event, self.view_changes)

    async def on_resident_updated(self, session: AsyncSession, event: ReceivedEvent) -> None:
        data = event.data
        assert isinstance(data, ResidentUpdatedV1)
        if self.push is None:
            raise RuntimeError("push is not configured yet")  # retried by the consumer
        await self.push.on_resident_updated(session, data)


async def on_login_succeeded(session: AsyncSession, event: ReceivedEvent) -> None:
    data = event.data
    assert isinstance(data, LoginSucceededV1)
    month = month_of(data.at)
    row = {"tenant_id": data.tenant_id, "month": month, "metric": "logins", "client_id": "", "count": 1}
    await usage_store.add_counts(session, [row])
    await usage_store.add_citizen(session, data.tenant_id, month, data.user_number)


def consumers(tables: EventTables, hooks: EventHooks | None = None) -> list[ConsumerSpec]:
    """The consumer groups of this service (diagnostics is added by the chassis)."""
    handle = hooks or EventHooks()
    return [
        ConsumerSpec(
            "parties",
            [SubjectIssuedV1.topic, ClientRegisteredV1.topic],
            {
                SubjectIssuedV1.event_type: on_subject_issued,
                ClientRegisteredV1.event_type: on_client_changed,
                ClientUpdatedV1.event_type: on_client_changed,
                ClientDeletedV1.event_type: on_client_deleted,
            },
            tables,
        ),
        ConsumerSpec(
            CONSENT_VIEW_GROUP,
            [ConsentDecisionRecordedV1.topic],
            {ConsentDecisionRecordedV1.event_type: handle.on_decision_recorded},
            tables,
        ),
        ConsumerSpec(
            "usage", [LoginSucceededV1.topic], {LoginSucceededV1.event_type: on_login_succeeded}, tables
        ),
        ConsumerSpec(
            "push",
            [ResidentUpdatedV1.topic],
            {ResidentUpdatedV1.event_type: handle.on_resident_updated},
            tables,
        ),
    ]
