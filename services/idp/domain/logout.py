"""Logout: RP-initiated (OpenID Connect RP-Initiated Logout 1.0) and back-channel (OpenID
Connect Back-Channel Logout 1.0).

RP-initiated: ``id_token_hint`` must be one of our ID tokens (signature by an ``id-token`` key we
publish, ``iss`` ours; an expired one is fine — logging out late is still logging out) and names
the client (its ``aud``); ``client_id``, when given too, must agree. ``post_logout_redirect_uri``
is honoured only when it is exactly one the client registered; otherwise the browser stays on our
page (never an open redirect).

Back-channel: :meth:`Sessions.end` wrote one ``logout_delivery`` row per client with a
``backchannel_logout_uri`` in the logout's transaction; :class:`BackchannelLogout` sends them
after commit — a fresh logout token (``typ`` ``logout+jwt``; ``iss``, ``aud`` = client id, ``iat``,
``exp`` two minutes on, ``jti``, the client's pairwise ``sub``, ``sid``, the back-channel logout
event; never a ``nonce``) POSTed form-encoded as ``logout_token``, 5 s timeout, redirects not
followed, any 2xx is delivered. Failures are retried with exponential back-off until
``BACKCHANNEL_LOGOUT_MAX_ATTEMPTS``; the row keeps the last error. Replicas share the work: a due
row is leased (its next attempt moved past the send's timeout) before it is sent.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx

from tsunagu.db import Database
from tsunagu.idp.domain.sessions import ClientView, SessionInfo, Sessions
from tsunagu.idp.store.sessions import DeliveryRecord, SessionRepository
from tsunagu.service.egress import egress_policy
from tsunagu.service.runtime import pause

if TYPE_CHECKING:
    from tsunagu.idp.domain.context import IdpServices

log = logging.getLogger(__name__)

BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_TTL = timedelta(minutes=2)
EXPIRY_SWEEP_S = 60.0


def _jws_typ(token: str) -> object:
    """The ``typ`` of a compact JWS's protected header, unverified (None if absent/unreadable)."""
    encoded = token.split(".", maxsplit=1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    return header.get("typ") if isinstance(header, dict) else None


def _now() -> datetime:
    return datetime.now(UTC)


class InvalidLogoutRequest(Exception):
    """The logout request cannot be trusted (bad hint, unknown or mismatched client)."""


@dataclass(frozen=True)
class LogoutRequest:
    client_id: str | None
    # The registered post-logout redirect URI asked for; None → stay on our page.
    redirect_uri: str | None
    state: str | None
    # The verified claims of ``id_token_hint`` (None without one).
    hint: dict[str, Any] | None

    def identifies(self, session: SessionInfo, subject_for_client: str | None) -> bool:
        """The hint names this session (its ``sid``), or — for a token without ``sid`` — its
        person (the client's pairwise ``sub``)."""
        if self.hint is None:
            return False
        sid = self.hint.get("sid")
        if sid is not None:
            return bool(sid == session.sid)
        return subject_for_client is not None and self.hint.get("sub") == subject_for_client


class RpLogout:
    """Checks RP-initiated logout requests."""

    def __init__(self, services: IdpServices) -> None:
        self.services = services
        self.settings = services.settings
        self.sessions: Sessions = services.sessions

    async def verify_hint(self, token: str) -> dict[str, Any]:
        signer = getattr(self.services, "token_signer", None)
        if signer is None:
            raise InvalidLogoutRequest("ID tokens cannot be verified (no token signer)")
        if len(token) > 16_384:
            raise InvalidLogoutRequest("id_token_hint is too large")
        try:
            # Access tokens (RFC 9068) and logout tokens are signed by the same keys: only an ID
            # token (typ JWT or none) is a hint.
            if _jws_typ(token) not in (None, "JWT", "jwt"):
                raise InvalidLogoutRequest("id_token_hint is not an ID token")
            claims: dict[str, Any] = await signer.verify_jwt(token)
        except InvalidLogoutRequest:
            raise
        except Exception as error:  # InvalidJwt, or the key registry unreachable
            raise InvalidLogoutRequest("id_token_hint is not an ID token of this issuer") from error
        if claims.get("iss") != self.settings.issuer:
            raise InvalidLogoutRequest("id_token_hint was issued by someone else")
        return claims

    async def check(
        self,
        *,
        id_token_hint: str | None,
        client_id: str | None,
        post_logout_redirect_uri: str | None,
        state: str | None,
    ) -> LogoutRequest:
        hint = await self.verify_hint(id_token_hint) if id_token_hint else None
        if hint is not None:
            audience = hint.get("aud")
            audiences = [audience] if isinstance(audience, str) else list(audience or [])
            named = hint.get("azp") if isinstance(hint.get("azp"), str) else None
            named = named or (audiences[0] if len(audiences) == 1 else None)
            if client_id is not None and client_id not in audiences:
                raise InvalidLogoutRequest("client_id is not the audience of id_token_hint")
            client_id = client_id or named
        client: ClientView | None = None
        if client_id is not None:
            client = await self.sessions.client(client_id)
            if client is None:
                raise InvalidLogoutRequest("unknown client_id")
        redirect_uri = None
        if client is not None and post_logout_redirect_uri in list(client.post_logout_redirect_uris or ()):
            redirect_uri = post_logout_redirect_uri
        return LogoutRequest(client_id=client_id, redirect_uri=redirect_uri, state=state, hint=hint)

    async def subject_for(self, client_id: str | None, user_number: str) -> str | None:
        if client_id is None:
            return None
        client = await self.sessions.client(client_id)
        return (
            None if client is None else self.sessions.subjects.subject(client.sector_identifier, user_number)
        )


class BackchannelLogout:
    """Sends the queued back-channel logout deliveries (a background loop per replica)."""

    def __init__(self, services: IdpServices, *, http: httpx.AsyncClient | None = None) -> None:
        self.services = services
        self.db: Database = services.runtime.db
        self.settings = services.settings
        self.sessions: Sessions = services.sessions
        self.timeout_s = services.settings.backchannel_logout_timeout_s
        self.http = http or httpx.AsyncClient(  # RPs' back-channel URIs: the SSRF guard
            timeout=httpx.Timeout(self.timeout_s),
            follow_redirects=False,
            trust_env=False,
            transport=egress_policy(services.settings).httpx_transport(),
        )
        self.batch = 32

    async def aclose(self) -> None:
        await self.http.aclose()

    def retry_delay(self, attempts: int) -> timedelta:
        """The wait after the ``attempts``-th failure: initial × 2^(attempts-1), capped."""
        initial = self.settings.backchannel_logout_retry_initial_s
        seconds = min(initial * 2 ** min(attempts - 1, 32), self.settings.backchannel_logout_retry_max_s)
        return timedelta(seconds=seconds)

    async def deliver_due(self, now: datetime | None = None) -> int:
        """Send what is due at ``now``; returns how many were delivered."""
        now = now or _now()
        lease = now + timedelta(seconds=self.timeout_s * 2 + 10)
        async with self.db.transaction() as db_session:
            due = await SessionRepository(db_session).claim_due(now, lease, self.batch)
        if not due:
            return 0
        outcomes = await asyncio.gather(*(self._send(delivery) for delivery in due))
        delivered = 0
        async with self.db.transaction() as db_session:
            store = SessionRepository(db_session)
            for delivery, (error, final) in zip(due, outcomes, strict=True):
                attempts = delivery.attempts + 1
                if error is None:
                    await store.delivered(delivery.id, attempts)
                    delivered += 1
                    continue
                give_up = final or attempts >= self.settings.backchannel_logout_max_attempts
                retry_at = None if give_up else _now() + self.retry_delay(attempts)
                await store.failed(delivery.id, attempts, retry_at, error)
                log.warning(
                    "back-channel logout not delivered",
                    extra={
                        "client_id": delivery.client_id,
                        "attempts": attempts,
                        "error": error,
                        "given_up": give_up,
                    },
                )
        return delivered

    async def logout_token(self, delivery: DeliveryRecord, client: ClientView) -> str:
        signer = getattr(self.services, "token_signer", None)
        if signer is None:
            raise RuntimeError("no token signer")
        now = int(_now().timestamp())
        claims = {
            "iss": self.settings.issuer,
            "sub": delivery.subject,
            "aud": delivery.client_id,
            "iat": now,
            "exp": now + int(LOGOUT_TOKEN_TTL.total_seconds()),
            "jti": secrets.token_urlsafe(16),
            "sid": delivery.session_id,
            "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
        }
        alg = getattr(client, "id_token_alg", None) or "ES256"
        token: str = await signer.sign_jwt(claims, typ="logout+jwt", alg=alg)
        return token

    async def _send(self, delivery: DeliveryRecord) -> tuple[str | None, bool]:
        """(error or None, whether retrying is pointless)."""
        try:
            client = await self.sessions.client(delivery.client_id)
        except Exception as error:
            return f"client lookup failed: {type(error).__name__}", False
        uri = getattr(client, "backchannel_logout_uri", None) if client is not None else None
        if client is None or not uri:
            return "the client is gone or no longer has a backchannel_logout_uri", True
        try:
            token = await self.logout_token(delivery, client)
        except Exception as error:
            return f"signing failed: {type(error).__name__}", False
        try:
            response = await self.http.post(
                uri,
                data={"logout_token": token},
                headers={"Cache-Control": "no-store"},
                timeout=self.timeout_s,
            )
        except httpx.TimeoutException:
            return "timeout", False
        except httpx.HTTPError as error:
            return f"{type(error).__name__}: {error}"[:200], False
        if response.is_success:
            return None, False
        return f"HTTP {response.status_code}", False

    async def run(self, stopping: asyncio.Event) -> None:
        """Until ``stopping``: deliver what is due, end expired sessions now and then; woken early
        when a logout queued deliveries."""
        wake = self.sessions.deliveries_queued
        poll_s = min(self.settings.backchannel_logout_retry_initial_s, 5.0)
        next_sweep = 0.0
        loop = asyncio.get_running_loop()
        while not stopping.is_set():
            wake.clear()
            try:
                if loop.time() >= next_sweep:
                    next_sweep = loop.time() + EXPIRY_SWEEP_S
                    await self.sessions.end_expired()
                while await self.deliver_due() and not stopping.is_set():
                    pass
            except Exception:
                log.exception("back-channel logout round failed")
            await pause(stopping, poll_s, wake=wake)
