"""Events of services/ca: persons enrolled, certificates issued and revoked.

Keyed by user identification number, so one person's events keep their order. No personal data:
the number, serials, kinds and times only — never the JPKI certificate or the basic 4 information.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from tsunagu.events.registry import EventSchema
from tsunagu.events.schemas import registry

CertificateKind = Literal["signing", "authentication", "app"]
RevocationReason = Literal[
    "unspecified",
    "keyCompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "certificateHold",
    "privilegeWithdrawn",
]


class _PersonKeyed(EventSchema):
    version: ClassVar[int] = 1

    user_number: str

    def partition_key(self) -> str | None:
        return self.user_number

    def subject(self) -> str | None:
        return self.user_number


@registry.register
class PersonEnrolledV1(_PersonKeyed):
    """A phone proved the person with the My Number Card (one per enrollment)."""

    topic: ClassVar[str] = "tsunagu.ca.person"
    event_type: ClassVar[str] = "tsunagu.ca.person.enrolled"

    enrollment_id: str
    device_id: str
    new_person: bool  # False: the card (or one J-LIS linked to it) was proven before
    jpki_serial: str  # the card's signing-certificate serial, as J-LIS names it
    proofed_at: datetime


@registry.register
class CertificateIssuedV1(_PersonKeyed):
    topic: ClassVar[str] = "tsunagu.ca.certificate"
    event_type: ClassVar[str] = "tsunagu.ca.certificate.issued"

    serial: str  # lower-case hex
    issuer_id: str
    kind: CertificateKind
    device_id: str
    app_id: str | None = None
    identifier_name: str
    spki_sha256: str
    not_before: datetime
    not_after: datetime


@registry.register
class CertificateRevokedV1(_PersonKeyed):
    topic: ClassVar[str] = "tsunagu.ca.certificate"
    event_type: ClassVar[str] = "tsunagu.ca.certificate.revoked"

    serial: str
    issuer_id: str
    kind: CertificateKind
    device_id: str
    reason: RevocationReason
    revoked_at: datetime
    # Who: the citizen (their authentication key), an operator (service id), or J-LIS (death).
    actor: Literal["citizen", "operator", "jlis"]
    actor_id: str | None = None
