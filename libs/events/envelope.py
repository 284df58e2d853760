"""The CloudEvents 1.0 JSON envelope every Tsunagu event travels in.

Extension attributes (lowercase alphanumerics, CloudEvents §3.1.1): ``dataversion`` (the schema
version of ``data``), ``partitionkey`` (CloudEvents Partitioning extension; the Kafka record key,
the user identification number where there is one) and ``requestid`` (propagated from the HTTP
request that caused the event, for log correlation).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tsunagu.events.errors import MalformedEnvelope

MAX_ENVELOPE_BYTES = 1_000_000


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 event in structured JSON mode."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1, max_length=64)
    source: str = Field(min_length=1, max_length=255)
    type: str = Field(min_length=1, max_length=255, pattern=r"^[a-z0-9_.\-]+$")
    subject: str | None = Field(default=None, max_length=255)
    time: datetime
    datacontenttype: Literal["application/json"] = "application/json"
    dataversion: int = Field(ge=1)
    partitionkey: str | None = Field(default=None, max_length=255)
    requestid: str | None = Field(default=None, max_length=128)
    data: dict[str, Any]

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode("utf-8")

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> CloudEvent:
        """Parse an envelope; anything that is not a valid one raises :class:`MalformedEnvelope`."""
        if raw is None or len(raw) > MAX_ENVELOPE_BYTES:
            raise MalformedEnvelope("empty or oversize record")
        try:
            return cls.model_validate(json.loads(raw))
        except (ValueError, ValidationError) as exc:
            # ValidationError text would echo field values (possibly personal data): keep only locations.
            locations = ",".join(
                ".".join(str(p) for p in err["loc"]) for err in getattr(exc, "errors", lambda: [])()
            )
            raise MalformedEnvelope(
                f"not a CloudEvents 1.0 JSON envelope ({locations or 'invalid JSON'})"
            ) from None


def new_event_id() -> str:
    return str(uuid.uuid4())


def utc_now() -> datetime:
    return datetime.now(UTC)


IdProvider = Callable[[], str]
Clock = Callable[[], datetime]
