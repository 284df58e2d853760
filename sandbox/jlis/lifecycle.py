"""Life events and what they do to certificates: the revocation registry and old → new links."""

from __future__ import annotations

from datetime import datetime

from cryptography import x509

from tsunagu.errors import Conflict, NotFound
from tsunagu.sandbox.jlis.store import CertificateRecord, EventType, State

# which revocation reason each event gives the certificates it ends
REVOCATION_REASONS: dict[EventType, x509.ReasonFlags] = {
    "move": x509.ReasonFlags.affiliation_changed,
    "rename": x509.ReasonFlags.affiliation_changed,
    "renew": x509.ReasonFlags.superseded,
    "lose": x509.ReasonFlags.key_compromise,
    "die": x509.ReasonFlags.cessation_of_operation,
}


class PersonNotFound(NotFound):
    code = "jlis-person-not-found"
    title = "No such person"


class CardNotFound(NotFound):
    code = "jlis-card-not-found"
    title = "No such card"


class PersonDeceased(Conflict):
    code = "jlis-person-deceased"
    title = "The person is recorded as deceased"


class CardNotActive(Conflict):
    code = "jlis-card-not-active"
    title = "The card has no valid certificates; renew it first"


def revoke(record: CertificateRecord, reason: x509.ReasonFlags, at: datetime) -> None:
    """Revoke ``record`` unless it already is (the first reason and time stand)."""
    if record.revoked_at is None:
        record.revoked_at = at
        record.reason = reason.value


def link(old: CertificateRecord, new: CertificateRecord, at: datetime) -> None:
    """Record that ``new`` replaces ``old`` (followed by the basic 4 service)."""
    old.replaced_by = new.serial
    old.replaced_at = at


def chain(state: State, serial: str) -> list[CertificateRecord]:
    """``serial``'s certificate followed by every certificate that replaced it, oldest first."""
    records = [state.certificates[serial]]
    while records[-1].replaced_by is not None and len(records) <= len(state.certificates):
        records.append(state.certificates[records[-1].replaced_by])
    return records


def revoked(state: State, kind: str) -> list[CertificateRecord]:
    """The revoked certificates of one issuer (``signing`` or ``user-auth``), oldest first."""
    found = [r for r in state.certificates.values() if r.kind == kind and r.revoked_at is not None]
    return sorted(found, key=lambda r: (r.revoked_at, r.serial))
