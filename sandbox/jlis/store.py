"""The sandbox's state: persons, cards, certificates (with revocations and old → new links),
life events, push subscribers and deliveries, CRL numbers.

One JSON document, rewritten atomically after each change (``state.json`` in the state
directory) and read back on start; kept in memory only when there is no state directory. The
sandbox holds at most thousands of records, so a document beats a database here.
"""

from __future__ import annotations

import os
from datetime import date, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

CertificateKind = Literal["signing", "user-auth"]
EventType = Literal["move", "rename", "renew", "lose", "die"]


class PersonRecord(BaseModel):
    """A card holder and their current basic 4 information."""

    person_id: str
    name: str
    address: str
    birth_date: date
    sex: str
    card_id: str
    deceased_at: datetime | None = None


class CardRecord(BaseModel):
    """A My Number Card: two key pairs and the certificates currently on it."""

    card_id: str
    person_id: str
    status: Literal["active", "lost", "deceased"] = "active"
    key_storage: Literal["file", "pkcs11"] = "file"
    signing_key_id: str
    auth_key_id: str
    signing_serial: str
    auth_serial: str
    issued_at: datetime


class CertificateRecord(BaseModel):
    """An issued certificate, its revocation and the certificate that replaced it (if any)."""

    serial: str
    kind: CertificateKind
    card_id: str
    person_id: str
    pem: str
    issued_at: datetime
    revoked_at: datetime | None = None
    reason: str | None = None  # an x509.ReasonFlags value
    replaced_by: str | None = None
    replaced_at: datetime | None = None


class EventRecord(BaseModel):
    """A life event as the API reports it."""

    event_id: str
    type: EventType
    person_id: str
    card_id: str
    at: datetime
    old_serial: str
    new_serial: str | None = None
    old_auth_serial: str | None = None
    new_auth_serial: str | None = None


class SubscriberRecord(BaseModel):
    subscription_id: str
    url: str
    created_at: datetime


class DeliveryRecord(BaseModel):
    """One notification for one subscriber, retried until delivered or given up."""

    delivery_id: str
    notification_id: str
    url: str
    jws: str
    created_at: datetime
    next_attempt_at: datetime
    attempts: int = 0
    status: Literal["pending", "delivered", "failed"] = "pending"
    last_error: str | None = None


class CrlRecord(BaseModel):
    """The last CRL built for one issuer; ``stale`` once a revocation happened after it."""

    number: int = 0
    this_update: datetime | None = None
    stale: bool = True


class State(BaseModel):
    persons: dict[str, PersonRecord] = Field(default_factory=dict)
    cards: dict[str, CardRecord] = Field(default_factory=dict)
    certificates: dict[str, CertificateRecord] = Field(default_factory=dict)
    events: list[EventRecord] = Field(default_factory=list)
    subscribers: list[SubscriberRecord] = Field(default_factory=list)
    deliveries: list[DeliveryRecord] = Field(default_factory=list)
    crls: dict[str, CrlRecord] = Field(
        default_factory=lambda: {"signing": CrlRecord(), "user-auth": CrlRecord()}
    )


class Store:
    """Holds :class:`State`; :meth:`save` persists it (a no-op without a state directory)."""

    def __init__(self, directory: Path | None) -> None:
        self.path = directory / "state.json" if directory is not None else None
        if self.path is not None and self.path.is_file():
            self.state = State.model_validate_json(self.path.read_bytes())
        else:
            self.state = State()

    def save(self) -> None:
        """Write the state atomically: a crash leaves the old or the new file, never half of one."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        with tmp.open("wb") as handle:
            handle.write(self.state.model_dump_json(indent=1).encode())
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(self.path)

    def certificate(self, serial: str) -> CertificateRecord | None:
        """The certificate with hex serial ``serial`` (any case, leading zeros ignored)."""
        try:
            return self.state.certificates.get(serial_hex(int(serial, 16)))
        except ValueError:
            return None


def serial_hex(serial: int) -> str:
    """The API's spelling of a serial number: lower-case hex without leading zeros."""
    return format(serial, "x")
