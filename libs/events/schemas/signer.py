"""Events of services/signer: every signature and every key lifecycle step."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import Field

from tsunagu.events.registry import EventSchema
from tsunagu.events.schemas import registry


@registry.register
class SignaturesCreatedV1(EventSchema):
    """One sign call (single or batch): who signed what with which key. Committed before the
    signatures are returned, so every signature made with a key is accounted for."""

    event_type: ClassVar[str] = "tsunagu.signer.signature.created"
    version: ClassVar[int] = 1
    topic: ClassVar[str] = "tsunagu.signer.signature"

    key_id: str
    purpose: str
    algorithm: str
    caller: str
    signed_at: datetime
    # SHA-256 (hex) of each signed payload, in request order; for a digest request, the digest.
    payload_sha256: list[str] = Field(min_length=1)

    def partition_key(self) -> str | None:
        return self.key_id

    def subject(self) -> str | None:
        return self.key_id


class _KeyLifecycle(EventSchema):
    topic: ClassVar[str] = "tsunagu.signer.key"
    version: ClassVar[int] = 1

    key_id: str
    purpose: str
    algorithm: str
    state: str
    actor: str
    at: datetime

    def partition_key(self) -> str | None:
        return self.key_id

    def subject(self) -> str | None:
        return self.key_id


@registry.register
class KeyCreatedV1(_KeyLifecycle):
    event_type: ClassVar[str] = "tsunagu.signer.key.created"

    key_size: int | None = None
    public_key_pem: str
    allowed_callers: list[str]


@registry.register
class KeyActivatedV1(_KeyLifecycle):
    event_type: ClassVar[str] = "tsunagu.signer.key.activated"


@registry.register
class KeyRetiredV1(_KeyLifecycle):
    event_type: ClassVar[str] = "tsunagu.signer.key.retired"


@registry.register
class KeyDestroyedV1(_KeyLifecycle):
    event_type: ClassVar[str] = "tsunagu.signer.key.destroyed"
