"""IdP sessions: the browser's login at the idp, which clients took part, and how it ends.

A session is created when a wallet-approved login completes in the browser. The browser holds a
random cookie value (32 bytes, base64url); the row keeps only its SHA-256, plus the OIDC ``sid``
(another random value, never the cookie). A session ends by RP-initiated logout, by the revocation
of the certificate it was approved with, or by expiry; ending it — in the caller's transaction —
queues a back-channel logout for every client of the session that registered a
``backchannel_logout_uri``, revokes the grants issued in it and publishes
``tsunagu.idp.session.ended``. The deliveries are sent after commit (:mod:`.logout`).

Cookies: ``__Host-tsunagu_session`` (``Secure; HttpOnly; SameSite=Lax; Path=/``) when the issuer
is https. Over plain http (dev, tests on ``http://127.0.0.1``) browsers drop ``Secure`` cookies, and
``__Host-`` requires ``Secure``, so the cookie is then ``tsunagu_session`` without ``Secure``
(setting ``SECURE_COOKIES`` forces either way). :func:`cookie_name` applies the same rule to the
other browser cookies (the login binding).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from fastapi import Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from tsunagu.db import Database, call_after_commit
from tsunagu.events import Outbox
from tsunagu.events.schemas.idp import SessionEndedV1
from tsunagu.idp.domain.errors import ClientNotFound
from tsunagu.idp.domain.opaque import new_secret, token_hash
from tsunagu.idp.settings import IdpSettings
from tsunagu.idp.store.sessions import SessionRecord, SessionRepository

if TYPE_CHECKING:
    from tsunagu.idp.domain.context import IdpServices

log = logging.getLogger(__name__)

SESSION_COOKIE = "tsunagu_session"
END_REASONS = ("logout", "certificate-revoked", "expired")


def secure_cookies(settings: IdpSettings) -> bool:
    if settings.secure_cookies is not None:
        return settings.secure_cookies
    return settings.issuer.startswith("https://")


def cookie_name(settings: IdpSettings, base: str) -> str:
    """``__Host-<base>`` when cookies are Secure, else ``<base>`` (see the module docstring)."""
    return f"__Host-{base}" if secure_cookies(settings) else base


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SessionInfo:
    sid: str
    user_number: str
    certificate_serial: str
    auth_time: datetime
    acr: str
    amr: list[str]
    expires_at: datetime


class ClientView(Protocol):
    """What logout needs of a client (``ClientRegistry.get``'s answer)."""

    client_id: str
    sector_identifier: str
    backchannel_logout_uri: str | None
    post_logout_redirect_uris: Sequence[str]

    def display_name(self, locale: str) -> str: ...


class Sessions:
    """Create, find, join and end IdP sessions. ``services`` gives the other idp components
    (``clients``, ``tokens``), which are built alongside this one."""

    def __init__(self, services: IdpServices) -> None:
        self.services = services
        self.db: Database = services.runtime.db
        self.outbox: Outbox = services.runtime.outbox
        self.settings = services.settings
        self.subjects = services.subjects
        self.ttl = timedelta(seconds=services.settings.session_ttl_s)
        # Set after a commit that queued back-channel logouts: wakes the delivery loop.
        self.deliveries_queued = asyncio.Event()

    # cookies
    @property
    def cookie_name(self) -> str:
        return cookie_name(self.settings, SESSION_COOKIE)

    def cookie_from(self, request: Request) -> str | None:
        return request.cookies.get(self.cookie_name)

    def set_cookie(self, response: Response, value: str) -> None:
        response.set_cookie(
            self.cookie_name,
            value,
            max_age=int(self.ttl.total_seconds()),
            path="/",
            secure=secure_cookies(self.settings),
            httponly=True,
            samesite="lax",
        )

    def clear_cookie(self, response: Response) -> None:
        response.delete_cookie(
            self.cookie_name, path="/", secure=secure_cookies(self.settings), httponly=True, samesite="lax"
        )

    # lifecycle
    async def create(
        self,
        db_session: AsyncSession,
        *,
        user_number: str,
        certificate_serial: str,
        auth_time: datetime,
        acr: str,
        amr: Sequence[str],
    ) -> tuple[str, str]:
        """A new session in the caller's transaction (the caller commits): ``(sid, cookie value)``."""
        now = _now()
        sid = new_secret()
        cookie = new_secret()
        record = SessionRecord(
            id=sid,
            user_number=user_number,
            certificate_serial=certificate_serial,
            auth_time=auth_time,
            acr=acr,
            amr=list(amr),
            created_at=now,
            expires_at=now + self.ttl,
            ended_at=None,
            end_reason=None,
        )
        await SessionRepository(db_session).add(record, token_hash(cookie))
        return sid, cookie

    async def current(self, cookie_value: str | None) -> SessionInfo | None:
        """The live session of this cookie; None if unknown, ended or expired."""
        if not cookie_value or len(cookie_value) > 128:
            return None
        async with self.db.sessions() as db_session:
            record = await SessionRepository(db_session).by_cookie(token_hash(cookie_value))
        if record is None or record.ended_at is not None or record.expires_at <= _now():
            return None
        return SessionInfo(
            sid=record.id,
            user_number=record.user_number,
            certificate_serial=record.certificate_serial,
            auth_time=record.auth_time,
            acr=record.acr,
            amr=record.amr,
            expires_at=record.expires_at,
        )

    async def add_client(self, db_session: AsyncSession, sid: str, client_id: str) -> None:
        """Record that ``client_id`` took part in the session (idempotent)."""
        await SessionRepository(db_session).add_client(sid, client_id, _now())

    async def end(self, db_session: AsyncSession, sid: str, reason: str) -> list[str]:
        """End the session in the caller's transaction: queue back-channel logouts, revoke its
        grants, publish ``session.ended``. Returns the clients that will be told; [] when the
        session had ended already (nothing happens twice)."""
        if reason not in END_REASONS:
            raise ValueError(f"unknown end reason {reason!r}")
        now = _now()
        store = SessionRepository(db_session)
        record = await store.end(sid, reason, now)
        if record is None:
            return []
        told: list[str] = []
        for client_id in await store.client_ids(sid):
            client = await self.client(client_id)
            if client is None or not getattr(client, "backchannel_logout_uri", None):
                continue
            subject = self.subjects.subject(client.sector_identifier, record.user_number)
            await store.queue_delivery(sid, client_id, subject, now)
            told.append(client_id)
        tokens = getattr(self.services, "tokens", None)
        if tokens is not None:
            await tokens.revoke_grants(db_session, session_ids=[sid], reason=reason)
        await self.outbox.add(
            db_session,
            SessionEndedV1(
                user_number=record.user_number, session_id=sid, reason=reason, client_ids=told, at=now
            ),
        )
        if told:
            call_after_commit(db_session, self.deliveries_queued.set)
        return told

    async def end_for_certificate(self, db_session: AsyncSession, serial: str) -> list[str]:
        """The certificate was revoked: end its sessions and revoke every grant issued with it
        (sessions or not, e.g. CIBA). Returns the sessions ended; safe to run again."""
        ended = []
        for sid in await SessionRepository(db_session).open_ids_of_certificate(serial):
            await self.end(db_session, sid, "certificate-revoked")
            ended.append(sid)
        tokens = getattr(self.services, "tokens", None)
        if tokens is not None:
            await tokens.revoke_grants(db_session, certificate_serial=serial, reason="certificate-revoked")
        return ended

    async def end_expired(self, limit: int = 100) -> int:
        """End sessions past their expiry (reason ``expired``), ``limit`` at a time."""
        async with self.db.transaction() as db_session:
            ids = await SessionRepository(db_session).expired_open_ids(_now(), limit)
            for sid in ids:
                await self.end(db_session, sid, "expired")
        return len(ids)

    async def client(self, client_id: str) -> ClientView | None:
        """The client as the registry has it; None when unknown or deleted."""
        clients = getattr(self.services, "clients", None)
        if clients is None:
            return None
        try:
            client: ClientView | None = await clients.get(client_id)
        except ClientNotFound:
            return None
        return client

    def logout_csrf(self, cookie_value: str) -> str:
        """The confirmation form's anti-CSRF token: derived from the session's secret cookie, so
        only a page shown to this browser can carry it (and it needs no state of its own)."""
        mac = hmac.new(cookie_value.encode(), b"tsunagu-logout-confirmation", hashlib.sha256)
        return mac.hexdigest()


class ResidentUpdates:
    """When each resident's basic 4 information last changed (OIDC ``updated_at``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(self, db_session: AsyncSession, user_number: str, at: datetime) -> None:
        await SessionRepository(db_session).record_resident_update(user_number, at)

    async def updated_at(self, user_number: str) -> datetime | None:
        async with self.db.sessions() as db_session:
            return await SessionRepository(db_session).resident_updated_at(user_number)
