"""Events of services/broker: the exchange log (every exchange and every denial) and webhook
deliveries given up.

Keyed by user identification number, so a citizen's exchanges keep their order. Parties appear by
client id; pairwise subjects and item values never travel here — only which items, for what
purpose, on which consent.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field

from tsunagu.events.registry import EventSchema
from tsunagu.events.schemas import registry


class _KeyedByCitizen(EventSchema):
    """Keyed by user identification number: one citizen's events keep their order."""

    user_number: str

    def partition_key(self) -> str | None:
        return self.user_number

    def subject(self) -> str | None:
        return self.user_number


class _ExchangeEvent(_KeyedByCitizen):
    topic: ClassVar[str] = "tsunagu.broker.exchange"
    version: ClassVar[int] = 1

    exchange_id: str
    kind: Literal["pull", "push"]
    tenant_id: str  # the consumer's tenant
    consumer: str  # client id of the party that asked (pull) or received (push)
    providers: list[str]  # client ids the data came (or would have come) from
    purpose_code: str
    items: list[str]  # what was asked
    at: datetime


@registry.register
class ExchangeCompletedV1(_ExchangeEvent):
    """Data went to the consumer: ``released`` items, each on the consent decision named."""

    event_type: ClassVar[str] = "tsunagu.broker.exchange.completed"

    released: list[str]
    consent: dict[str, str]  # item → consent decision id
    denied: list[str] = Field(default_factory=list)  # asked but not allowed (not fetched)


@registry.register
class ExchangeDeniedV1(_ExchangeEvent):
    """Nothing went to the consumer: no consent (``consent-required``) or the provider failed."""

    event_type: ClassVar[str] = "tsunagu.broker.exchange.denied"

    reason: str  # the problem code the consumer received


class _DeliveryEvent(_KeyedByCitizen):
    """A push (webhook) delivery to a subscriber: ids, item, purpose, the per-(subscriber,
    citizen) sequence — never the value or any party's ``sub``."""

    topic: ClassVar[str] = "tsunagu.broker.delivery"
    version: ClassVar[int] = 1

    delivery_id: str
    change_id: str
    subscription_id: str
    subscriber: str  # client id
    tenant_id: str  # the subscriber's tenant
    provider: str  # client id of the party that published the change (or ``jlis-sync``)
    item: str
    purpose_code: str
    sequence: int  # per (subscriber, citizen), from 1
    at: datetime


@registry.register
class DeliveryScheduledV1(_DeliveryEvent):
    """A change was accepted and this subscriber held consent: a webhook will be sent."""

    event_type: ClassVar[str] = "tsunagu.broker.delivery.scheduled"


@registry.register
class DeliveryDeadV1(_DeliveryEvent):
    """Every attempt failed (bounded retries with backoff): the delivery is in the dead-letter
    store, where the subscriber can redeliver it."""

    event_type: ClassVar[str] = "tsunagu.broker.delivery.dead"

    attempts: int
    last_error: str  # "status 503", "timeout", "connection" — never a response body
