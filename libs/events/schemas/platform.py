"""Platform-level events that any service may publish (diagnostics for smoke tests and demos)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import Field

from tsunagu.events.registry import EventSchema
from tsunagu.events.schemas import registry


@registry.register
class DiagnosticPingV1(EventSchema):
    """A service was asked to prove its event path works end to end (outbox → Kafka → consumers)."""

    event_type: ClassVar[str] = "tsunagu.platform.diagnostic.ping"
    version: ClassVar[int] = 1
    topic: ClassVar[str] = "tsunagu.platform.diagnostic"

    ping_id: str = Field(min_length=1, max_length=64)
    origin: str = Field(min_length=1, max_length=64)
    sent_at: datetime
    note: str = Field(default="", max_length=200)

    def partition_key(self) -> str | None:
        return self.ping_id

    def subject(self) -> str | None:
        return self.ping_id
