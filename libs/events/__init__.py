"""The event backbone: CloudEvents envelope, schema registry, transactional outbox, consumer, replay."""

from tsunagu.events.consumer import EventConsumer, Handler, ReceivedEvent
from tsunagu.events.envelope import CloudEvent
from tsunagu.events.errors import (
    EventRejected,
    InvalidEventData,
    MalformedEnvelope,
    UnknownEventType,
    UnknownEventVersion,
)
from tsunagu.events.kafka import dead_letter_topic, ensure_topics, make_consumer, make_producer
from tsunagu.events.outbox import GroupCommit, Outbox, OutboxRelay
from tsunagu.events.registry import EventRegistry, EventSchema
from tsunagu.events.replay import ReplayedRecord, replay_topic
from tsunagu.events.tables import EventTables, define_event_tables

__all__ = [
    "CloudEvent",
    "EventConsumer",
    "EventRegistry",
    "EventRejected",
    "EventSchema",
    "EventTables",
    "GroupCommit",
    "Handler",
    "InvalidEventData",
    "MalformedEnvelope",
    "Outbox",
    "OutboxRelay",
    "ReceivedEvent",
    "ReplayedRecord",
    "UnknownEventType",
    "UnknownEventVersion",
    "dead_letter_topic",
    "define_event_tables",
    "ensure_topics",
    "make_consumer",
    "make_producer",
    "replay_topic",
]
