"""Versioned event schemas and the registry that decodes envelopes into them.

A schema is a pydantic model subclassing :class:`EventSchema` with class variables ``event_type``
(``tsunagu.<service>.<entity>.<action>``), ``version`` and ``topic`` (``tsunagu.<service>.<entity>``).
Decoding an envelope whose type or version is not registered raises loudly; a consumer never guesses.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from tsunagu.events.envelope import Clock, CloudEvent, IdProvider, new_event_id, utc_now
from tsunagu.events.errors import InvalidEventData, UnknownEventType, UnknownEventVersion


class EventSchema(BaseModel):
    """Base of every event payload (the envelope's ``data``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_type: ClassVar[str]
    version: ClassVar[int]
    topic: ClassVar[str]

    def partition_key(self) -> str | None:
        """The Kafka key: events with the same key keep their order. Override per schema."""
        return None

    def subject(self) -> str | None:
        return None

    def to_envelope(
        self,
        *,
        source: str,
        request_id: str | None = None,
        ids: IdProvider = new_event_id,
        clock: Clock = utc_now,
        time: datetime | None = None,
    ) -> CloudEvent:
        return CloudEvent(
            id=ids(),
            source=source,
            type=self.event_type,
            subject=self.subject(),
            time=time or clock(),
            dataversion=self.version,
            partitionkey=self.partition_key(),
            requestid=request_id,
            data=self.model_dump(mode="json"),
        )


S = TypeVar("S", bound=type[EventSchema])


class EventRegistry:
    """All known (type, version) pairs and the topics they travel on."""

    def __init__(self) -> None:
        self._schemas: dict[tuple[str, int], type[EventSchema]] = {}

    def register(self, schema: S) -> S:
        key = (schema.event_type, schema.version)
        if key in self._schemas and self._schemas[key] is not schema:
            raise ValueError(f"event schema {key} registered twice")
        if not schema.event_type.startswith(schema.topic + "."):
            raise ValueError(f"{schema.event_type} must be an action on its topic {schema.topic}")
        self._schemas[key] = schema
        return schema

    def schema_for(self, event_type: str, version: int) -> type[EventSchema]:
        if not any(t == event_type for t, _ in self._schemas):
            raise UnknownEventType(f"unknown event type {event_type!r}")
        try:
            return self._schemas[(event_type, version)]
        except KeyError:
            raise UnknownEventVersion(f"unknown version {version} of {event_type!r}") from None

    def decode(self, envelope: CloudEvent) -> EventSchema:
        """The typed payload of ``envelope``; raises if its type/version/data is not known-good."""
        schema = self.schema_for(envelope.type, envelope.dataversion)
        try:
            return schema.model_validate(envelope.data)
        except ValidationError:
            raise InvalidEventData(f"data of {envelope.type} v{envelope.dataversion} is invalid") from None

    def topics(self, prefix: str = "") -> set[str]:
        return {s.topic for s in self._schemas.values() if s.topic.startswith(prefix)}

    def schemas(self) -> Iterable[type[EventSchema]]:
        return self._schemas.values()

    def describe(self) -> list[dict[str, Any]]:
        """The catalogue of event contracts (type, version, topic, JSON Schema) for docs."""
        return [
            {"type": t, "version": v, "topic": s.topic, "schema": s.model_json_schema()}
            for (t, v), s in sorted(self._schemas.items())
        ]
