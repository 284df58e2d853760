"""Login transactions: the browser waits, the wallet decides, the browser completes.

States: ``pending`` → ``approved`` | ``denied`` (the wallet) | ``expired`` (time) → ``completed``
(the browser took its code or its error). A browser login with RFC 9396 data access goes
``pending`` → ``consenting`` (approved, consent request created) → ``completed`` once the citizen's
signed consent decision answered it — or ``expired`` if none did in time. Every move is a
conditional update from the expected state, so two deciders (or two completing tabs) cannot both
win.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlencode

from tsunagu.db import as_utc, call_after_commit
from tsunagu.events.schemas.idp import LoginFailedV1, LoginSucceededV1
from tsunagu.idp.domain import wallet_approval
from tsunagu.idp.domain.authorization import ACR_PROOFED, AuthorizationRequest
from tsunagu.idp.domain.errors import (
    ApprovalReplayed,
    ApprovalSignatureInvalid,
    CertificateNotAccepted,
    InvalidApproval,
    LoginTransactionClosed,
    LoginTransactionNotFound,
)
from tsunagu.idp.domain.opaque import new_secret, token_hash
from tsunagu.idp.store import logins as store
from tsunagu.idp.store.replay import first_use

log = logging.getLogger(__name__)

FailureReason = Literal["denied", "expired", "certificate-not-accepted", "signature-invalid", "mismatch"]
AMR_AUTHENTICATION = ["hwk", "user", "x509"]  # key in the phone's secure element, citizen present
AMR_APP = ["hwk", "x509"]


def redirect_with(redirect_uri: str, parameters: dict[str, str]) -> str:
    separator = "&" if "?" in redirect_uri else "?"
    return f"{redirect_uri}{separator}{urlencode(parameters)}"


@dataclass(frozen=True)
class Decided:
    """The wallet's decision as recorded: ``approved`` / ``denied``, and the consent request the
    citizen now signs when the login asked for data access (the transaction is ``consenting``)."""

    state: str
    consent_request_id: str | None = None


@dataclass(frozen=True)
class Completed:
    """Where the browser goes next, and the session cookie to set (when a session was made)."""

    location: str
    session_cookie: str | None = None


class LoginTransactions:
    def __init__(self, services: Any, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.services = services
        self.settings = services.settings
        self.clock = clock
        # tx → (event set when the wallet decides in this process, listeners waiting on it)
        self._waiters: dict[str, tuple[asyncio.Event, int]] = {}

    @property
    def db(self) -> Any:
        return self.services.runtime.db

    # -- the browser's side -----------------------------------------------------------------

    async def start(self, request: AuthorizationRequest, client: Any) -> tuple[str, str]:
        """A pending browser transaction; returns (tx, browser binding secret for the cookie)."""
        now = self.clock()
        tx = new_secret()
        binding = new_secret()
        async with self.db.transaction() as session:
            await store.add_transaction(
                session,
                id=tx,
                kind="browser",
                client_id=client.client_id,
                parameters=request.to_json(),
                browser_binding_hash=token_hash(binding),
                challenge=new_secret(),
                display_code=f"{secrets.randbelow(100):02d}",
                state="pending",
                created_at=now,
                expires_at=now + timedelta(seconds=self.settings.login_transaction_ttl_s),
            )
        return tx, binding

    async def for_browser(self, tx: str, binding: str | None) -> dict[str, Any]:
        """The transaction, when this browser holds its binding secret."""
        async with self.db.sessions() as session:
            row = await store.transaction(session, tx[:64])
        if row is None or row["kind"] != "browser" or not self._bound(row, binding):
            raise LoginTransactionNotFound("no such login transaction in this browser")
        row["stored_state"] = row["state"]
        if row["state"] in ("pending", "consenting") and as_utc(row["expires_at"]) <= self.clock():
            row["state"] = "expired"
        return row

    async def browser_state(self, row: dict[str, Any]) -> str:
        """What the page shows: the stored state, except a login waiting for the citizen's consent
        decision, which is ``consent-pending`` until consent says the request is answered."""
        if row["state"] != "consenting":
            return str(row["state"])
        answered = await self.services.data_access.answered(row["consent_request_id"])
        return "approved" if answered else "consent-pending"

    @staticmethod
    def _bound(row: dict[str, Any], binding: str | None) -> bool:
        expected = row["browser_binding_hash"]
        return (
            bool(binding)
            and expected is not None
            and hmac.compare_digest(expected, token_hash(binding or ""))
        )

    async def wait(self, tx: str, timeout_s: float) -> None:
        """Return when the wallet decided ``tx`` in this process, or after ``timeout_s`` (the caller
        re-reads the database either way: another replica may have recorded the decision)."""
        event, listeners = self._waiters.get(tx) or (asyncio.Event(), 0)
        self._waiters[tx] = (event, listeners + 1)
        try:
            await asyncio.wait_for(event.wait(), timeout_s)
        except TimeoutError:
            pass
        finally:
            # The last listener out removes the entry, decided here or not (abandoned, expired,
            # decided on another replica): entries must not pile up in a long-running process.
            _, listeners = self._waiters.get(tx, (event, 1))
            if listeners <= 1:
                self._waiters.pop(tx, None)
            else:
                self._waiters[tx] = (event, listeners - 1)

    def _wake(self, tx: str) -> None:
        waiting = self._waiters.get(tx)
        if waiting is not None:
            waiting[0].set()

    async def complete(self, tx: str, binding: str | None) -> Completed:
        """After the decision: a session and a code (approved), or access_denied back to the RP."""
        row = await self.for_browser(tx, binding)
        request = AuthorizationRequest.from_json(row["parameters"])
        issuer = self.settings.issuer
        if row["state"] == "pending":
            return Completed(f"/login/{tx}")
        if row["state"] in ("completed",):
            raise LoginTransactionClosed("this login was already completed")
        now = self.clock()
        if row["state"] in ("denied", "expired"):
            async with self.db.transaction() as session:
                moved = await store.move(
                    session, tx, row["stored_state"], state="completed", error=row["state"]
                )
                if row["state"] == "expired" and moved:
                    await self._failed(session, row, "expired", None, now)
            if not moved:
                raise LoginTransactionClosed("this login was already completed")
            description = (
                "the citizen declined the login" if row["state"] == "denied" else "the login timed out"
            )
            parameters = {"error": "access_denied", "error_description": description, "iss": issuer}
            if request.state is not None:
                parameters["state"] = request.state
            return Completed(redirect_with(request.redirect_uri, parameters))
        consent_id: str | None = None
        if row["state"] == "consenting":
            # Data access: the citizen's signed consent decision must have answered the request.
            outcome = await self.services.data_access.outcome(
                row["consent_request_id"],
                details=request.authorization_details or [],
                user_number=row["user_number"],
                client_id=row["client_id"],
                now=now,
            )
            if outcome.state != "answered":
                return Completed(f"/login/{tx}")
            consent_id = outcome.consent_id
            request = replace(request, authorization_details=outcome.details)
        client = await self.services.clients.get(row["client_id"])
        if client is None or client.state != "active":
            raise LoginTransactionClosed("the client is no longer registered")
        async with self.db.transaction() as session:
            if not await store.move(session, tx, row["stored_state"], state="completed"):
                raise LoginTransactionClosed("this login was already completed")
            auth_time = as_utc(row["decided_at"])
            sid, cookie = await self.services.sessions.create(
                session,
                user_number=row["user_number"],
                certificate_serial=row["certificate_serial"],
                auth_time=auth_time,
                acr=row["acr"],
                amr=row["amr"],
            )
            location = await self._issue(
                session,
                client,
                request,
                sid=sid,
                row=row,
                auth_time=auth_time,
                now=now,
                consent_id=consent_id,
            )
            outbox = self.services.runtime.outbox
            await outbox.add(
                session,
                LoginSucceededV1(
                    user_number=row["user_number"],
                    transaction_id=tx,
                    kind="browser",
                    client_id=client.client_id,
                    tenant_id=client.tenant_id,
                    certificate_serial=row["certificate_serial"],
                    certificate_kind=row["certificate_kind"],
                    acr=row["acr"],
                    amr=list(row["amr"]),
                    session_id=sid,
                    consent_id=consent_id,
                    at=now,
                ),
            )
        return Completed(location, cookie)

    async def with_session(self, request: AuthorizationRequest, client: Any, current: Any) -> str:
        """An existing IdP session satisfies the request: a code without asking the wallet."""
        now = self.clock()
        async with self.db.transaction() as session:
            row = {
                "user_number": current.user_number,
                "certificate_serial": current.certificate_serial,
                "acr": current.acr,
                "amr": current.amr,
            }
            return await self._issue(
                session, client, request, sid=current.sid, row=row, auth_time=current.auth_time, now=now
            )

    async def _issue(
        self,
        session: Any,
        client: Any,
        request: AuthorizationRequest,
        *,
        sid: str,
        row: dict[str, Any],
        auth_time: datetime,
        now: datetime,
        consent_id: str | None = None,
    ) -> str:
        await self.services.sessions.add_client(session, sid, client.client_id)
        code = await self.services.tokens.issue_code(
            session,
            client=client,
            user_number=row["user_number"],
            session_id=sid,
            certificate_serial=row["certificate_serial"],
            scope=request.scope,
            claims=request.claims,
            authorization_details=request.authorization_details,
            auth_time=auth_time,
            acr=row["acr"],
            amr=list(row["amr"]),
            redirect_uri=request.redirect_uri,
            code_challenge=request.code_challenge,
            nonce=request.nonce,
            dpop_jkt=request.dpop_jkt,
            consent_id=consent_id,
        )
        parameters = {"code": code, "iss": self.settings.issuer}
        if request.state is not None:
            parameters["state"] = request.state
        return redirect_with(request.redirect_uri, parameters)

    # -- the wallet's side ------------------------------------------------------------------

    async def for_wallet(self, tx: str) -> tuple[dict[str, Any], Any]:
        """The pending transaction and its client, as the wallet shows them."""
        async with self.db.sessions() as session:
            row = await store.transaction(session, tx[:64])
        if row is None:
            raise LoginTransactionNotFound("no such login transaction")
        if row["state"] != "pending" or as_utc(row["expires_at"]) <= self.clock():
            raise LoginTransactionClosed("the login transaction was already decided or has expired")
        client = await self.services.clients.get(row["client_id"])
        if client is None:
            raise LoginTransactionNotFound("no such login transaction")
        return row, client

    async def decide(self, tx: str, approval: str) -> Decided:
        """Record the wallet's signed decision (approved | denied). An approved browser login that
        asks for data access first creates the citizen's consent request and then waits in
        ``consenting`` for the signed consent decision."""
        row, client = await self.for_wallet(tx)
        now = self.clock()
        try:
            verified = await wallet_approval.verify(
                approval,
                ca=self.services.ca,
                issuer=self.settings.issuer,
                tx=tx,
                challenge=row["challenge"],
                app_id=client.app_id,
                now=now,
                max_age_s=self.settings.assertion_max_age_s,
            )
        except (CertificateNotAccepted, ApprovalSignatureInvalid) as refused:
            reason = (
                "certificate-not-accepted"
                if isinstance(refused, CertificateNotAccepted)
                else "signature-invalid"
            )
            log.info("wallet approval refused", extra={"reason": reason, "client_id": client.client_id})
            raise
        if row["kind"] == "ciba" and verified.user_number != row["hinted_user_number"]:
            raise InvalidApproval("this request is for another person")
        state = "approved" if verified.decision == "approve" else "denied"
        amr = AMR_APP if verified.certificate_kind == "app" else AMR_AUTHENTICATION
        details = AuthorizationRequest.from_json(row["parameters"]).authorization_details
        consent_request_id: str | None = None
        if state == "approved" and row["kind"] == "browser" and details:
            # Before anything is recorded: if consent cannot take the request, the wallet may retry.
            consent_request_id = await self.services.data_access.ask(
                client=client,
                user_number=verified.user_number,
                details=details,
                now=now,
                answer_by=as_utc(row["expires_at"]),
            )
        async with self.db.transaction() as session:
            expires = now + timedelta(seconds=self.settings.assertion_max_age_s + 60)
            if not await first_use(session, "wallet", verified.certificate_serial, verified.jti, expires):
                raise ApprovalReplayed("this approval was already used")
            moved = await store.move(
                session,
                tx,
                "pending",
                state="consenting" if consent_request_id else state,
                consent_request_id=consent_request_id,
                user_number=verified.user_number,
                certificate_serial=verified.certificate_serial,
                certificate_kind=verified.certificate_kind,
                amr=amr,
                acr=ACR_PROOFED,
                decided_at=now,
                approval_jws=approval,
            )
            if not moved:
                raise LoginTransactionClosed("the login transaction was already decided")
            if state == "denied":
                await self._failed(session, row, "denied", verified.user_number, now)
            elif row["kind"] == "ciba":
                # No browser comes back for a CIBA login: it happened when the citizen approved.
                await self._succeeded(session, row=row, client=client, verified=verified, amr=amr, now=now)
            call_after_commit(session, lambda: self._wake(tx))
            if row["kind"] == "ciba":
                call_after_commit(session, lambda: self.services.ciba.decided(row))
        return Decided(state, consent_request_id)

    async def _succeeded(
        self,
        session: Any,
        *,
        row: dict[str, Any],
        client: Any,
        verified: wallet_approval.VerifiedApproval,
        amr: list[str],
        now: datetime,
    ) -> None:
        await self.services.runtime.outbox.add(
            session,
            LoginSucceededV1(
                user_number=verified.user_number,
                transaction_id=row["id"],
                kind="ciba",
                client_id=client.client_id,
                tenant_id=client.tenant_id,
                certificate_serial=verified.certificate_serial,
                certificate_kind=verified.certificate_kind,
                acr=ACR_PROOFED,
                amr=amr,
                at=now,
            ),
        )

    async def _failed(
        self, session: Any, row: dict[str, Any], reason: FailureReason, user_number: str | None, now: datetime
    ) -> None:
        await self.services.runtime.outbox.add(
            session,
            LoginFailedV1(
                transaction_id=row["id"],
                kind=row["kind"],
                client_id=row["client_id"],
                reason=reason,
                user_number=user_number,
                at=now,
            ),
        )
