"""Events of services/jlis-sync: what J-LIS told us happened to a platform user's card.

Personal data stays out of the log (events are kept forever and replayed by auditors): an event
says *that* and *what kind of* basic 4 information changed; consumers with a legal basis read the
current values from jlis-sync (``GET /internal/v1/residents/{user_number}``), which checks them.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from tsunagu.events.registry import EventSchema
from tsunagu.events.schemas import registry


class _ResidentEvent(EventSchema):
    topic: ClassVar[str] = "tsunagu.jlis_sync.resident"
    version: ClassVar[int] = 1

    user_number: str
    effective_at: datetime
    old_jpki_serial: str
    source: Literal["push", "crl"]

    def partition_key(self) -> str | None:
        return self.user_number

    def subject(self) -> str | None:
        return self.user_number


@registry.register
class ResidentUpdatedV1(_ResidentEvent):
    """The citizen moved or changed name: J-LIS re-issued the card's signing certificate."""

    event_type: ClassVar[str] = "tsunagu.jlis_sync.resident.updated"

    changed_fields: list[Literal["name", "address", "birth_date", "sex"]]
    # False when the citizen did not consent at enrollment to the latest-basic-4 service: we only
    # know that something changed, not what.
    basic4_available: bool
    new_jpki_serial: str | None = None


@registry.register
class ResidentDeceasedV1(_ResidentEvent):
    """J-LIS revoked the card for death: the CA revokes the person's platform certificates."""

    event_type: ClassVar[str] = "tsunagu.jlis_sync.resident.deceased"


@registry.register
class CardRevokedV1(_ResidentEvent):
    """The card's certificate was revoked for loss or renewal (the person is unchanged)."""

    event_type: ClassVar[str] = "tsunagu.jlis_sync.resident.card_revoked"

    reason: Literal["lost", "renewed", "other"]
    new_jpki_serial: str | None = None
