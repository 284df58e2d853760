"""Sending webhook deliveries: claim, re-check consent, sign, POST, settle; the dead-letter store.

A webhook is ``POST <url>`` with ``Content-Type: application/jwt``: a JWT signed with the broker's
``exchange`` key (``GET /v1/jwks``), header ``typ tsunagu-data-push+jwt``, claims ``{iss: <broker
resource>, aud: <subscriber client id>, jti: <delivery id>, iat, exp, sub: <the subscriber's own
sub for the citizen>, item, value?, purpose, sequence, change_id, subscription_id}``. Any 2xx is
success; anything else (3xx included: redirects are not followed), a timeout or a refused
connection is retried with exponential backoff up to ``max_attempts``, then the delivery is dead.

Claim before send: a worker takes due rows with one ``UPDATE … RETURNING`` (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL) that sets a lease, so two replicas never send the same delivery; a worker
that dies mid-send leaves a claim whose lease runs out, and the delivery is sent again by whoever
claims it next (at least once: receivers dedupe by ``jti``). A delivery is due only when every
earlier one of its (subscriber, citizen) is delivered, dead or cancelled — the per-citizen order.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tsunagu.broker.domain.catalog import Catalog
from tsunagu.broker.domain.consent_view import ConsentView
from tsunagu.broker.domain.errors import ConsentUnavailable, UnknownItem, UnknownParty
from tsunagu.broker.domain.parties import Parties
from tsunagu.broker.domain.providers import JLIS_SYNC
from tsunagu.broker.domain.push import resident_value, scheduled_event
from tsunagu.broker.domain.push_errors import DeliveryExpired, UnknownDelivery
from tsunagu.broker.store import push as store
from tsunagu.broker.store.repository import add_exchanges
from tsunagu.clients.internal import UpstreamError
from tsunagu.clients.jlis_sync import JlisSyncClient
from tsunagu.clients.jwt_signing import JwtSigner
from tsunagu.db import Database
from tsunagu.events import Outbox
from tsunagu.events.schemas.broker import DeliveryDeadV1, ExchangeCompletedV1, ExchangeDeniedV1
from tsunagu.service.egress import EgressConnectError

log = logging.getLogger(__name__)
PUSH_TYP = "tsunagu-data-push+jwt"
PUSH_LIFETIME_S = 300
BATCH = 50
PURGE_EVERY_S = 60.0


@dataclass(frozen=True)
class DeliveryPolicy:
    timeout_s: float
    max_attempts: int
    retry_initial_s: float
    retry_max_s: float
    lease_s: float
    poll_s: float
    dead_retention_s: float

    def backoff(self, attempts: int) -> float:
        """Seconds before attempt ``attempts + 1``: initial × 2^(attempts−1), capped, ±20 %."""
        base = min(self.retry_max_s, self.retry_initial_s * 2.0 ** max(0, attempts - 1))
        return float(base * random.uniform(0.8, 1.2))  # noqa: S311 - jitter, not a secret


class _Outcome(Exception):
    """How an attempt ended other than delivered: ``retry`` (with a reason) or ``cancel``."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def _view(row: dict[str, Any], sub: str) -> dict[str, Any]:
    return {
        "delivery_id": row["id"],
        "change_id": row["change_id"],
        "subscription_id": row["subscription_id"],
        "sub": sub,
        "item": row["item"],
        "purpose": row["purpose_code"],
        "sequence": row["seq"],
        "state": row["state"],
        "attempts": row["attempts"],
        "last_error": row["last_error"],
        "created_at": row["created_at"].isoformat(),
        "finished_at": row["finished_at"].isoformat() if row["finished_at"] else None,
    }


class Deliveries:
    def __init__(
        self,
        *,
        db: Database,
        outbox: Outbox,
        parties: Parties,
        catalog: Catalog,
        consent: ConsentView,
        signer: JwtSigner,
        jlis: JlisSyncClient,
        http: httpx.AsyncClient,
        issuer: str,
        policy: DeliveryPolicy,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.parties = parties
        self.catalog = catalog
        self.consent = consent
        self.signer = signer
        self.jlis = jlis
        self.http = http
        self.issuer = issuer
        self.policy = policy
        self.clock = clock
        self.wakeup = asyncio.Event()
        self._purged_at = 0.0

    def wake(self) -> None:
        """Deliveries were committed: look at the queue now rather than at the next poll."""
        self.wakeup.set()

    # -- the subscriber's API -----------------------------------------------------------------

    async def of(self, subscriber: str, *, state: str | None, limit: int) -> list[dict[str, Any]]:
        """The subscriber's deliveries (newest first), each naming the citizen by its own sub."""
        async with self.db.sessions() as session:
            rows = await store.deliveries_of(session, subscriber, state=state, limit=limit)
        party = await self.parties.party(subscriber)
        return [_view(row, await self.parties.sub_for(party, row["user_number"])) for row in rows]

    async def redeliver(self, subscriber: str, delivery_id: str) -> dict[str, Any]:
        """Queue the subscriber's dead delivery again (attempts start from zero)."""
        now = self.clock()
        async with self.db.transaction() as session:
            row = await store.delivery(session, delivery_id)
            if row is None or row["subscriber"] != subscriber or row["state"] != "dead":
                raise UnknownDelivery("no dead delivery with this id for this client")
            if row["value_source"] == "inline" and row["value"] is None:
                raise DeliveryExpired("the value was cleared after the dead-letter retention")
            await store.redeliver(session, delivery_id, subscriber, now)
            await self.outbox.add(session, scheduled_event(row, now))
        self.wake()
        party = await self.parties.party(subscriber)
        row.update(state="pending", attempts=0, last_error=None, finished_at=None)
        return _view(row, await self.parties.sub_for(party, row["user_number"]))

    # -- the worker ---------------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        """Send due deliveries until ``stopping`` is set (one per replica; claims keep them apart)."""
        while not stopping.is_set():
            try:
                sent = await self.run_once()
            except Exception:
                log.exception("push delivery round failed")
                sent = 0
            if sent == 0:
                self.wakeup.clear()
                waiters = [asyncio.ensure_future(self.wakeup.wait()), asyncio.ensure_future(stopping.wait())]
                await asyncio.wait(waiters, timeout=self.policy.poll_s, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waiters:
                    waiter.cancel()

    async def run_once(self) -> int:
        """Claim one batch of due deliveries and attempt them concurrently; returns how many."""
        now = self.clock()
        await self._purge(now)
        async with self.db.transaction() as session:
            claimed = await store.claim(
                session, now=now, lease_until=now + timedelta(seconds=self.policy.lease_s), limit=BATCH
            )
        outcomes = await asyncio.gather(*(self.attempt(row) for row in claimed), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):  # not settled: its lease runs out, it is retried
                log.error("push delivery could not be settled", exc_info=outcome)
        return len(claimed)

    async def _purge(self, now: datetime) -> None:
        if time.monotonic() - self._purged_at < PURGE_EVERY_S:
            return
        self._purged_at = time.monotonic()
        async with self.db.transaction() as session:
            await store.purge_dead_values(session, now - timedelta(seconds=self.policy.dead_retention_s))

    async def attempt(self, row: dict[str, Any]) -> None:
        """One attempt of a claimed delivery, settled in one transaction with its log entries."""
        started = time.monotonic()
        try:
            consent_id = await self._send(row)
        except _Outcome as outcome:
            if outcome.kind == "cancel":
                await self._cancel(row, outcome.reason, started)
            else:
                await self._failed(row, outcome.reason, started)
            return
        except Exception:
            log.exception("push delivery attempt failed", extra={"delivery_id": row["id"]})
            await self._failed(row, "internal", started)
            return
        await self._delivered(row, consent_id, started)

    async def _send(self, row: dict[str, Any]) -> str | None:
        now = self.clock()
        try:
            party = await self.parties.party(row["subscriber"])
            item = (await self.catalog.items([row["item"]]))[row["item"]]
        except (UnknownParty, UnknownItem) as error:
            raise _Outcome("cancel", error.code) from error
        try:  # consent again, now: a withdrawal since the change was accepted stops it
            verdict = await self.consent.check(
                row["user_number"], row["subscriber"], row["purpose_code"], [item.id], now
            )
        except ConsentUnavailable as error:
            raise _Outcome("retry", "consent-unavailable") from error
        if item.id not in verdict.allowed:
            raise _Outcome("cancel", "consent-required")
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": row["subscriber"],
            "jti": row["id"],
            "iat": int(now.timestamp()),
            "exp": int(now.timestamp()) + PUSH_LIFETIME_S,
            "sub": await self.parties.sub_for(party, row["user_number"]),
            "item": item.id,
            "purpose": row["purpose_code"],
            "sequence": row["seq"],
            "change_id": row["change_id"],
            "subscription_id": row["subscription_id"],
        }
        value = await self._value(row)
        if value is not None:
            claims["value"] = item.clean(value)
        body = await self.signer.sign_jwt(claims, typ=PUSH_TYP)
        await self._post(row["url"], body)
        return verdict.allowed.get(item.id)

    async def _value(self, row: dict[str, Any]) -> Any:
        if row["value_source"] != JLIS_SYNC:
            return row["value"]
        try:  # read now, never stored: the value the citizen's record holds at send time
            record = await self.jlis.resident(row["user_number"])
        except (UpstreamError, httpx.HTTPError) as error:
            raise _Outcome("retry", "jlis-sync-unavailable") from error
        value = resident_value(row["item"], record)
        if value is None:
            raise _Outcome("retry", "jlis-sync-no-value")
        return value

    async def _post(self, url: str, body: str) -> None:
        headers = {"Content-Type": "application/jwt"}
        try:
            async with self.http.stream(
                "POST", url, content=body, headers=headers, timeout=self.policy.timeout_s
            ) as response:
                status = response.status_code  # the body is never read: nothing to bound
        except httpx.TimeoutException as error:
            raise _Outcome("retry", "timeout") from error
        except EgressConnectError as error:  # the URL now resolves to a forbidden address
            raise _Outcome("retry", "egress-refused") from error
        except httpx.HTTPError as error:
            raise _Outcome("retry", "connection") from error
        if not 200 <= status < 300:
            raise _Outcome("retry", f"status {status}")

    # -- settling -----------------------------------------------------------------------------

    def _exchange_row(
        self, row: dict[str, Any], outcome: str, reason: str | None, consent: dict[str, str], started: float
    ) -> dict[str, Any]:
        return {
            "id": "ex_" + secrets.token_urlsafe(15),
            "tenant_id": row["tenant_id"],
            "kind": "push",
            "outcome": outcome,
            "reason": reason,
            "consumer": row["subscriber"],
            "providers": [row["provider"]],
            "user_number": row["user_number"],
            "purpose_code": row["purpose_code"],
            "items": [row["item"]],
            "released": [row["item"]] if outcome == "completed" else [],
            "consent": consent,
            "at": self.clock(),
            "duration_ms": int((time.monotonic() - started) * 1000),
            "request_id": None,
        }

    def _common(self, exchange: dict[str, Any]) -> dict[str, Any]:
        return {
            "exchange_id": exchange["id"],
            "kind": "push",
            "user_number": exchange["user_number"],
            "tenant_id": exchange["tenant_id"],
            "consumer": exchange["consumer"],
            "providers": exchange["providers"],
            "purpose_code": exchange["purpose_code"],
            "items": exchange["items"],
            "at": exchange["at"],
        }

    async def _delivered(self, row: dict[str, Any], consent_id: str | None, started: float) -> None:
        consent = {row["item"]: consent_id} if consent_id else {}
        exchange = self._exchange_row(row, "completed", None, consent, started)
        async with self.db.transaction() as session:
            if not await store.settle(
                session, row["id"], {"state": "delivered", "value": None, "finished_at": exchange["at"]}
            ):
                return  # our lease ran out and someone else took it over
            await add_exchanges(session, [exchange])
            await self.outbox.add(
                session,
                ExchangeCompletedV1(**self._common(exchange), released=[row["item"]], consent=consent),
            )
        log.info("push delivered", extra={"delivery_id": row["id"], "attempts": row["attempts"]})

    async def _cancel(self, row: dict[str, Any], reason: str, started: float) -> None:
        exchange = self._exchange_row(row, "denied", reason, {}, started)
        async with self.db.transaction() as session:
            values = {
                "state": "cancelled",
                "value": None,
                "finished_at": exchange["at"],
                "last_error": reason,
            }
            if not await store.settle(session, row["id"], values):
                return
            await add_exchanges(session, [exchange])
            await self.outbox.add(session, ExchangeDeniedV1(**self._common(exchange), reason=reason))
        log.info("push cancelled", extra={"delivery_id": row["id"], "reason": reason})

    async def _failed(self, row: dict[str, Any], reason: str, started: float) -> None:
        now = self.clock()
        if row["attempts"] < self.policy.max_attempts:
            retry_at = now + timedelta(seconds=self.policy.backoff(row["attempts"]))
            async with self.db.transaction() as session:
                await store.settle(
                    session,
                    row["id"],
                    {"state": "pending", "next_attempt_at": retry_at, "last_error": reason},
                )
            log.warning(
                "push attempt failed; retrying",
                extra={"delivery_id": row["id"], "attempts": row["attempts"], "error": reason},
            )
            return
        exchange = self._exchange_row(row, "failed", "delivery-dead", {}, started)
        async with self.db.transaction() as session:
            if not await store.settle(
                session, row["id"], {"state": "dead", "finished_at": now, "last_error": reason}
            ):
                return
            await add_exchanges(session, [exchange])
            await self.outbox.add(session, ExchangeDeniedV1(**self._common(exchange), reason="delivery-dead"))
            dead = scheduled_event(row, now).model_dump()
            await self.outbox.add(
                session, DeliveryDeadV1(**dead, attempts=row["attempts"], last_error=reason)
            )
        log.error(
            "push delivery dead",
            extra={"delivery_id": row["id"], "attempts": row["attempts"], "error": reason},
        )
