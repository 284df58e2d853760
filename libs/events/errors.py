"""Why an event was refused. Refused events are dead-lettered, never silently dropped."""

from __future__ import annotations


class EventRejected(Exception):
    """An event this process cannot accept (deterministic: retrying will not help)."""


class MalformedEnvelope(EventRejected):
    pass


class UnknownEventType(EventRejected):
    pass


class UnknownEventVersion(EventRejected):
    pass


class InvalidEventData(EventRejected):
    pass
