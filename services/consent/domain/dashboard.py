"""The citizen dashboard: browser sessions opened by a login at the idp, and changes the citizen
asks for, which become ordinary consent requests (``created_by`` ``dashboard``) the wallet signs.

A session belongs to exactly one user identification number (the idp's ID token says which) and
every read and change is scoped to it: the session is the authentication, so the reads are the
unsigned variants of the wallet's queries (``ConsentQueries.grants_of`` …). A request of another
person is reported as absent, never as forbidden.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from tsunagu.consent.domain.context import ConsentContext
from tsunagu.consent.domain.errors import ConsentRequestNotFound, ExchangeLogUnavailable
from tsunagu.consent.domain.exchange_log import ExchangeLog
from tsunagu.consent.domain.oidc_rp import LoginStart, OidcRelyingParty, new_login
from tsunagu.consent.domain.queries import ConsentQueries
from tsunagu.consent.domain.requests import ConsentRequests, NewRequest, RequestedItem
from tsunagu.consent.domain.requests import view as request_view
from tsunagu.consent.domain.statement import Purpose
from tsunagu.consent.store import dashboard as store
from tsunagu.consent.store import repository as requests_store
from tsunagu.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthenticated

CREATED_BY = "dashboard"
Choice = Literal["allow", "deny"]


class NoSession(Unauthenticated):
    code = "dashboard-session-required"
    title = "Log in to the dashboard first"


class CsrfRejected(Forbidden):
    code = "csrf-token-invalid"
    title = "The form's CSRF token is missing or not this session's"


class LoginStateMismatch(BadRequest):
    code = "login-state-mismatch"
    title = "This login answer does not belong to a login started in this browser"


class GrantNotFound(NotFound):
    code = "grant-not-found"
    title = "No consent in force for this recipient and purpose"


class InvalidChange(BadRequest):
    code = "invalid-change"
    title = "The change names items that are not part of the consent"


class NothingToChange(Conflict):
    code = "nothing-to-change"
    title = "The change asks for what is already in force"


@dataclass(frozen=True)
class DashboardSession:
    id_sha256: str
    user_number: str
    csrf_token: str
    locale: str


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Dashboard:
    def __init__(
        self,
        context: ConsentContext,
        rp: OidcRelyingParty,
        requests: ConsentRequests,
        queries: ConsentQueries,
        *,
        session_ttl_s: int,
        login_ttl_s: int,
        change_ttl_s: int,
        exchange_log: ExchangeLog,
    ) -> None:
        self.context = context
        self.exchange_log = exchange_log
        self.rp = rp
        self.requests = requests
        self.queries = queries
        self.session_ttl = timedelta(seconds=session_ttl_s)
        self.login_ttl = timedelta(seconds=login_ttl_s)
        self.change_ttl_s = change_ttl_s

    # -- login ---------------------------------------------------------------------------------
    async def start_login(self, locale: str) -> tuple[str, str]:
        """A login in progress bound to a new browser secret: (secret for the cookie, the idp's
        authorization URL)."""
        login = new_login()
        url = await self.rp.authorization_url(login, locale)
        secret = secrets.token_urlsafe(32)
        now = self.context.clock()
        async with self.context.db.transaction() as session:
            await store.add_session(
                session,
                {
                    "id_sha256": _hash(secret),
                    "user_number": None,
                    "oidc_state": login.state,
                    "oidc_nonce": login.nonce,
                    "code_verifier": login.code_verifier,
                    "csrf_token": None,
                    "locale": locale,
                    "created_at": now,
                    "expires_at": now + self.login_ttl,
                },
            )
        return secret, url

    async def finish_login(self, secret: str | None, state: str, code: str) -> tuple[str, DashboardSession]:
        """The idp's answer at the redirect URI: the state must be the one this browser's login
        sent (else nothing changes); the login is used up, the code redeemed, and a session of the
        person the ID token names opens under a new secret (no session fixation)."""
        if not secret:
            raise LoginStateMismatch("no login in progress in this browser")
        now = self.context.clock()
        async with self.context.db.transaction() as session:
            login = await store.take_login(session, _hash(secret), state, now)
        if login is None:
            raise LoginStateMismatch()
        claims = await self.rp.exchange(
            code, LoginStart(login["oidc_state"], login["oidc_nonce"], login["code_verifier"])
        )
        fresh = secrets.token_urlsafe(32)
        opened = DashboardSession(
            _hash(fresh), claims["user_number"], secrets.token_urlsafe(32), login["locale"]
        )
        async with self.context.db.transaction() as session:
            await store.add_session(
                session,
                {
                    "id_sha256": opened.id_sha256,
                    "user_number": opened.user_number,
                    "oidc_state": None,
                    "oidc_nonce": None,
                    "code_verifier": None,
                    "csrf_token": opened.csrf_token,
                    "locale": opened.locale,
                    "created_at": now,
                    "expires_at": now + self.session_ttl,
                },
            )
        return fresh, opened

    async def session(self, secret: str | None) -> DashboardSession:
        """The logged-in session of this browser secret, or :class:`NoSession`."""
        if not secret:
            raise NoSession()
        async with self.context.db.sessions() as session:
            row = await store.session_row(session, _hash(secret), self.context.clock())
        if row is None or row["user_number"] is None:
            raise NoSession()
        return DashboardSession(row["id_sha256"], row["user_number"], row["csrf_token"], row["locale"])

    @staticmethod
    def check_csrf(current: DashboardSession, token: str | None) -> None:
        if not token or not secrets.compare_digest(token, current.csrf_token):
            raise CsrfRejected()

    async def set_locale(self, current: DashboardSession, locale: str) -> None:
        if locale != current.locale:
            async with self.context.db.transaction() as session:
                await store.set_locale(session, current.id_sha256, locale)

    async def logout(self, current: DashboardSession) -> None:
        async with self.context.db.transaction() as session:
            await store.delete_session(session, current.id_sha256)

    # -- reads ---------------------------------------------------------------------------------
    async def overview(self, current: DashboardSession) -> dict[str, Any]:
        """Grants by recipient (with names) and the pending requests of this session's person."""
        grants = await self.queries.grants_of(current.user_number)
        pending = await self.queries.pending_of(current.user_number)
        return {"grants": grants, "pending": pending}

    async def history(self, current: DashboardSession) -> dict[str, Any]:
        """Every decision of this session's person, with the recipients' names."""
        history = await self.queries.history_of(current.user_number)
        async with self.context.db.sessions() as session:
            names = await requests_store.recipients(session, [d["recipient"] for d in history["decisions"]])
        return {**history, "names": names}

    async def exchanges(self, current: DashboardSession) -> dict[str, Any]:
        """The exchange log of this session's person (who received which items, when, on which
        consent; refusals too), with the parties' names as consent knows them as recipients;
        ``available`` is False when the broker cannot be asked."""
        try:
            page = await self.exchange_log.page_of(current.user_number)
        except ExchangeLogUnavailable:
            return {"available": False, "exchanges": [], "names": {}}
        return {"available": True, "exchanges": page["exchanges"], "names": page["names"]}

    def request_state(self, request: dict[str, Any]) -> str:
        """pending, answered, or expired (pending past its answer-by time)."""
        if (
            request["state"] == "pending"
            and datetime.fromisoformat(request["answer_by"]) <= self.context.clock()
        ):
            return "expired"
        return str(request["state"])

    async def own_request(self, current: DashboardSession, request_id: str) -> dict[str, Any]:
        """A request of this session's person with the dashboard's proposal (if it made it)."""
        async with self.context.db.sessions() as session:
            row = await requests_store.request_row(session, request_id[:64])
            proposal = await store.change_proposal(session, request_id[:64]) if row else None
        if row is None or row["user_number"] != current.user_number:
            raise ConsentRequestNotFound()
        return {**request_view(row), "proposal": proposal}

    # -- changes -------------------------------------------------------------------------------
    async def request_change(
        self, current: DashboardSession, recipient: str, purpose_code: str, choices: dict[str, Choice]
    ) -> dict[str, Any]:
        """Ask the wallet to sign a new answer for the consent in force for ``recipient`` and
        ``purpose_code``: a request for the same items, purpose and validity (the wallet's
        decision then supersedes the one in force), with the citizen's proposal per item."""
        grants = await self.queries.grants_of(current.user_number)
        decisions = [
            decision
            for entry in grants["recipients"]
            if entry["recipient"] == recipient
            for decision in entry["decisions"]
            if decision["purpose"] == purpose_code
        ]
        if not decisions:
            raise GrantNotFound()
        current_items = grants_items(grants, recipient, purpose_code)
        if not choices or set(choices) - set(current_items):
            raise InvalidChange()
        proposal = {item: choices.get(item, value) for item, value in current_items.items()}
        if proposal == current_items:
            raise NothingToChange()
        latest = decisions[-1]
        until = max(datetime.fromisoformat(d["valid_until"]) for d in decisions)
        created = await self.requests.create(
            NewRequest(
                user_number=current.user_number,
                recipient=recipient,
                items=[RequestedItem(item, False) for item in sorted(proposal)],
                purpose=Purpose(code=purpose_code, ja=latest["purpose_ja"], en=latest["purpose_en"]),
                valid_until=until,
                answer_within_s=self.change_ttl_s,
            ),
            created_by=CREATED_BY,
        )
        async with self.context.db.transaction() as session:
            await store.add_change(
                session,
                {
                    "request_id": created["request_id"],
                    "user_number": current.user_number,
                    "proposal": proposal,
                    "created_at": self.context.clock(),
                },
            )
        return {**created, "proposal": proposal}


def grants_items(grants: dict[str, Any], recipient: str, purpose_code: str) -> dict[str, Choice]:
    """What ``recipient`` may receive for ``purpose_code`` now (deny wins), item → allow/deny."""
    for entry in grants["recipients"]:
        if entry["recipient"] == recipient:
            return dict(entry["purposes"].get(purpose_code, {}))
    return {}
