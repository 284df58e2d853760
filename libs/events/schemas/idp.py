"""Events of services/idp: logins, sessions and client registrations.

Login and session events are keyed by user identification number; client events by client id.
No personal data: numbers, client ids, certificate serials, reason codes and times only.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from tsunagu.events.registry import EventSchema
from tsunagu.events.schemas import registry


class _PersonKeyed(EventSchema):
    version: ClassVar[int] = 1

    user_number: str

    def partition_key(self) -> str | None:
        return self.user_number

    def subject(self) -> str | None:
        return self.user_number


@registry.register
class LoginSucceededV1(_PersonKeyed):
    """A person logged in to a client (browser code flow or CIBA)."""

    topic: ClassVar[str] = "tsunagu.idp.login"
    event_type: ClassVar[str] = "tsunagu.idp.login.succeeded"

    transaction_id: str
    kind: Literal["browser", "ciba"]
    client_id: str
    tenant_id: str
    certificate_serial: str
    certificate_kind: Literal["authentication", "app"]
    acr: str
    amr: list[str]
    session_id: str | None = None
    # RFC 9396 / consent: the consent grant the login's authorization_details produced, if any.
    consent_id: str | None = None
    at: datetime


@registry.register
class LoginFailedV1(EventSchema):
    """A login transaction ended without a login: the citizen denied it, it expired, or the
    wallet's approval was refused. Keyed by the person when known, else by the client."""

    topic: ClassVar[str] = "tsunagu.idp.login"
    event_type: ClassVar[str] = "tsunagu.idp.login.failed"
    version: ClassVar[int] = 1

    transaction_id: str
    kind: Literal["browser", "ciba"]
    client_id: str
    reason: Literal["denied", "expired", "certificate-not-accepted", "signature-invalid", "mismatch"]
    user_number: str | None = None
    at: datetime

    def partition_key(self) -> str | None:
        return self.user_number or self.client_id

    def subject(self) -> str | None:
        return self.user_number


@registry.register
class SessionEndedV1(_PersonKeyed):
    topic: ClassVar[str] = "tsunagu.idp.session"
    event_type: ClassVar[str] = "tsunagu.idp.session.ended"

    session_id: str
    reason: Literal["logout", "certificate-revoked", "expired"]
    client_ids: list[str]  # the clients told by back-channel logout
    at: datetime


@registry.register
class SubjectIssuedV1(_PersonKeyed):
    """A pairwise ``sub`` was handed out in a sector for the first time (OIDC Core §8.1). The
    broker's "who is who": it maps a party's own ``sub`` to the person and back."""

    topic: ClassVar[str] = "tsunagu.idp.subject"
    event_type: ClassVar[str] = "tsunagu.idp.subject.issued"

    sector_identifier: str
    sub: str
    at: datetime


class _ClientEvent(EventSchema):
    topic: ClassVar[str] = "tsunagu.idp.client"
    version: ClassVar[int] = 1

    client_id: str
    tenant_id: str
    # The client's pairwise sector (its subs are HMAC(sector, user number)); absent on deletes.
    sector_identifier: str | None = None
    # Who: an operator (admin API), the tenant (RFC 7591 with its initial access token), or the
    # client itself (RFC 7592 with its registration access token).
    actor: Literal["operator", "tenant", "client"]
    actor_id: str | None = None
    at: datetime

    def partition_key(self) -> str | None:
        return self.client_id

    def subject(self) -> str | None:
        return self.client_id


@registry.register
class ClientRegisteredV1(_ClientEvent):
    event_type: ClassVar[str] = "tsunagu.idp.client.registered"

    metadata: dict[str, object]  # the registered RFC 7591 metadata (no secrets)


@registry.register
class ClientUpdatedV1(_ClientEvent):
    event_type: ClassVar[str] = "tsunagu.idp.client.updated"

    metadata: dict[str, object]
    secret_rotated: bool = False


@registry.register
class ClientDeletedV1(_ClientEvent):
    event_type: ClassVar[str] = "tsunagu.idp.client.deleted"
