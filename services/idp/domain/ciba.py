"""Client-Initiated Backchannel Authentication (OpenID Connect CIBA Core 1.0), poll and ping.

A counter or kiosk (the client) names the person — ``login_hint`` is the client's own pairwise
``sub`` of them, or an ``id_token_hint`` it received earlier — and the request appears in that
person's wallet, which lists its pending requests with a signed call and decides each as it
decides a browser login. The client polls the token endpoint (``authorization_pending``,
``slow_down``) or, in ping mode, is called back at its notification endpoint.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tsunagu.db import as_utc
from tsunagu.idp.domain import wallet_approval
from tsunagu.idp.domain.errors import ApprovalReplayed, OAuthError, invalid_request
from tsunagu.idp.domain.opaque import new_secret
from tsunagu.idp.domain.tokens import ApprovedLogin
from tsunagu.idp.store import logins as store
from tsunagu.idp.store.replay import first_use
from tsunagu.service.egress import egress_policy

log = logging.getLogger(__name__)
MAX_BINDING_MESSAGE = 64
NOTIFY_TIMEOUT_S = 5.0


class Ciba:
    def __init__(self, services: Any) -> None:
        self.services = services
        self.settings = services.settings
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def db(self) -> Any:
        return self.services.runtime.db

    # -- the client's request --------------------------------------------------------------

    async def request(self, client: Any, form: Mapping[str, str], now: datetime) -> dict[str, Any]:
        """``/bc-authorize``: answers ``auth_req_id``, ``expires_in``, ``interval``."""
        if "urn:openid:params:grant-type:ciba" not in client.grant_types or client.ciba_mode is None:
            raise OAuthError("unauthorized_client", "the client is not registered for CIBA")
        scopes = (form.get("scope") or "").split()
        if "openid" not in scopes:
            raise OAuthError("invalid_scope", "scope must include openid")
        hints = [name for name in ("login_hint", "id_token_hint", "login_hint_token") if form.get(name)]
        if len(hints) != 1:
            raise invalid_request("exactly one of login_hint or id_token_hint is required")
        if hints[0] == "login_hint_token":
            raise invalid_request("login_hint_token is not supported; use login_hint or id_token_hint")
        if form.get("user_code"):
            raise OAuthError("invalid_user_code", "user codes are not supported")
        binding = form.get("binding_message")
        if binding is not None and (len(binding) > MAX_BINDING_MESSAGE or not binding.strip()):
            raise OAuthError(
                "invalid_binding_message", f"binding_message: 1–{MAX_BINDING_MESSAGE} characters"
            )
        notification_token = form.get("client_notification_token")
        if client.ciba_mode == "ping" and not notification_token:
            raise invalid_request("client_notification_token is required in ping mode")
        if notification_token is not None and len(notification_token) > 1024:
            raise invalid_request("client_notification_token is too long")
        expiry = self.settings.ciba_ttl_s
        if form.get("requested_expiry"):
            try:
                expiry = max(30, min(expiry, int(form["requested_expiry"])))
            except ValueError:
                raise invalid_request("requested_expiry must be an integer") from None
        user_number = await self._person(client, hints[0], form[hints[0]])
        tx = new_secret()
        parameters = {
            "client_id": client.client_id,
            "scope": " ".join(dict.fromkeys(scopes)),
            "binding_message": binding,
            "acr_values": (form.get("acr_values") or "").split(),
            "client_notification_token": notification_token,
            "redirect_uri": "",
            "code_challenge": "",
        }
        async with self.db.transaction() as session:
            await store.add_transaction(
                session,
                id=tx,
                kind="ciba",
                client_id=client.client_id,
                parameters=parameters,
                challenge=new_secret(),
                display_code=f"{secrets.randbelow(100):02d}",
                hinted_user_number=user_number,
                state="pending",
                created_at=now,
                expires_at=now + timedelta(seconds=expiry),
            )
        return {"auth_req_id": tx, "expires_in": expiry, "interval": self.settings.ciba_interval_s}

    async def _person(self, client: Any, hint: str, value: str) -> str:
        if hint == "login_hint":
            user_number = await self.services.tokens.user_for_subject(client.sector_identifier, value[:128])
        else:
            try:
                claims = await self.services.token_signer.verify_jwt(value)
            except Exception:
                raise OAuthError(
                    "invalid_request", "id_token_hint is not an ID token of this issuer"
                ) from None
            audience = claims.get("aud")
            if client.client_id not in (audience if isinstance(audience, list) else [audience]):
                raise OAuthError("invalid_request", "id_token_hint was issued to another client")
            user_number = await self.services.tokens.user_for_subject(
                client.sector_identifier, str(claims.get("sub"))
            )
        if user_number is None:
            raise OAuthError("unknown_user_id", "the hint names nobody this client knows")
        return str(user_number)

    # -- the token endpoint (poll) -----------------------------------------------------------

    async def poll(self, client: Any, auth_req_id: str) -> ApprovedLogin:
        now = datetime.now(UTC)
        # The outcome is decided (and the poll time recorded) in one transaction that commits;
        # the OAuth error, if any, is raised after it.
        async with self.db.transaction() as session:
            row = await store.transaction(session, auth_req_id[:64], for_update=True)
            outcome = await self._poll_outcome(session, client, row, now)
        if outcome is not None:
            raise outcome
        assert row is not None
        parameters = row["parameters"]
        return ApprovedLogin(
            user_number=row["user_number"],
            certificate_serial=row["certificate_serial"],
            scope=parameters["scope"],
            claims=None,
            authorization_details=None,
            acr=row["acr"],
            amr=list(row["amr"]),
            auth_time=as_utc(row["decided_at"]),
            session_id=None,
        )

    async def _poll_outcome(
        self, session: Any, client: Any, row: dict[str, Any] | None, now: datetime
    ) -> OAuthError | None:
        """None when the request was approved and is now taken; else the error to answer."""
        if row is None or row["kind"] != "ciba" or row["client_id"] != client.client_id:
            return OAuthError("invalid_grant", "auth_req_id is unknown")
        state = row["state"]
        if state == "pending" and as_utc(row["expires_at"]) <= now:
            await store.move(session, row["id"], "pending", state="expired", error="expired")
            state = "expired"
        if state == "expired":
            return OAuthError("expired_token", "the request expired before the citizen decided")
        if state == "pending":
            last = row["last_polled_at"]
            await store.move(session, row["id"], "pending", last_polled_at=now)
            if last is not None and (now - as_utc(last)).total_seconds() < self.settings.ciba_interval_s:
                return OAuthError("slow_down", f"poll at most every {self.settings.ciba_interval_s} s")
            return OAuthError("authorization_pending", "the citizen has not decided yet")
        if state == "denied":
            await store.move(session, row["id"], "denied", state="completed", error="denied")
            return OAuthError("access_denied", "the citizen declined")
        if state != "approved" or not await store.move(session, row["id"], "approved", state="completed"):
            return OAuthError("invalid_grant", "auth_req_id was already used")
        return None

    # -- the wallet -------------------------------------------------------------------------

    async def pending_for_wallet(self, signed_request: str) -> list[dict[str, Any]]:
        """The wallet's signed call (``tx`` ``*``): pending CIBA requests for the signer."""
        now = datetime.now(UTC)
        verified = await wallet_approval.verify(
            signed_request,
            ca=self.services.ca,
            issuer=self.settings.issuer,
            tx=None,
            challenge=None,
            app_id=None,
            now=now,
            max_age_s=self.settings.assertion_max_age_s,
        )
        expires = now + timedelta(seconds=self.settings.assertion_max_age_s + 60)
        async with self.db.transaction() as session:
            if not await first_use(session, "wallet", verified.certificate_serial, verified.jti, expires):
                raise ApprovalReplayed("this signed request was already used")
            return await store.pending_ciba_for(session, verified.user_number, now)

    def decided(self, row: dict[str, Any]) -> None:
        """After a CIBA decision commits: ping the client (ping mode)."""
        client_id = row["client_id"]

        async def ping() -> None:
            client = await self.services.clients.get(client_id)
            token = row["parameters"].get("client_notification_token")
            endpoint = client.ciba_notification_endpoint if client is not None else None
            if client is None or client.ciba_mode != "ping" or not token or not endpoint:
                return
            async with httpx.AsyncClient(  # the client's notification endpoint: the SSRF guard
                timeout=NOTIFY_TIMEOUT_S,
                follow_redirects=False,
                trust_env=False,
                transport=egress_policy(self.services.settings).httpx_transport(),
            ) as http:
                for attempt in range(3):
                    try:
                        response = await http.post(
                            endpoint,
                            json={"auth_req_id": row["id"]},
                            headers={"Authorization": f"Bearer {token}"},
                        )
                    except httpx.HTTPError:
                        response = None
                    if response is not None and response.is_success:
                        async with self.db.transaction() as session:
                            await store.mark_notified(session, row["id"], datetime.now(UTC))
                        return
                    await asyncio.sleep(2**attempt)
            log.warning("CIBA ping not delivered", extra={"client_id": client_id})

        task = asyncio.get_running_loop().create_task(ping())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
