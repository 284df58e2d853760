"""Push notifications to subscribers: a JWS per life event, delivered with bounded retries.

Deliveries are records in the store (an outbox), so a restart does not lose them. Each pass of
:func:`deliver_pending` / :func:`adeliver_pending` tries every delivery that is due once; a failed
attempt is rescheduled with exponential backoff until ``max_attempts``, then marked failed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from tsunagu.sandbox.jlis.jws import sign_compact
from tsunagu.sandbox.jlis.pki import KeyPair
from tsunagu.sandbox.jlis.store import DeliveryRecord, State, SubscriberRecord

CONTENT_TYPE = "application/jose"  # RFC 7515 §9.2.1, the compact serialisation
TIMEOUT_S = 5.0


@dataclass(frozen=True)
class RetryPolicy:
    """1 s, 2 s, 4 s … capped at 5 minutes; ten attempts span about 13 minutes."""

    max_attempts: int = 10
    first_delay: timedelta = timedelta(seconds=1)
    max_delay: timedelta = timedelta(minutes=5)

    def delay_after(self, attempts: int) -> timedelta:
        return min(self.first_delay * (1 << (attempts - 1)), self.max_delay)


def notification_payload(
    notification_id: str,
    event_type: str,
    *,
    issued_at: datetime,
    old_serial: str,
    new_serial: str | None,
    issuer: str,
) -> dict[str, Any]:
    """The payload the README fixes: ``id`` is the subscriber's idempotency key."""
    return {
        "id": notification_id,
        "type": event_type,
        "issued_at": issued_at.isoformat().replace("+00:00", "Z"),
        "old_serial": old_serial,
        "new_serial": new_serial,
        "issuer": issuer,
    }


def subscribe(state: State, url: str, new_id: Callable[[], str], now: datetime) -> SubscriberRecord:
    """The subscriber for ``url``, registered now unless it already was."""
    for existing in state.subscribers:
        if existing.url == url:
            return existing
    record = SubscriberRecord(subscription_id=new_id(), url=url, created_at=now)
    state.subscribers.append(record)
    return record


def enqueue(
    state: State, push: KeyPair, payload: dict[str, Any], now: datetime, new_id: Callable[[], str]
) -> None:
    """Sign ``payload`` once and queue it for every subscriber."""
    token = sign_compact(payload, push.certificate, lambda data: _sign(push, data))
    for subscriber in state.subscribers:
        state.deliveries.append(
            DeliveryRecord(
                delivery_id=new_id(),
                notification_id=payload["id"],
                url=subscriber.url,
                jws=token,
                created_at=now,
                next_attempt_at=now,
            )
        )


def _sign(push: KeyPair, data: bytes) -> bytes:
    return push.key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def due(state: State, now: datetime) -> list[DeliveryRecord]:
    """Pending deliveries whose next attempt is not in the future, oldest first."""
    return [d for d in state.deliveries if d.status == "pending" and d.next_attempt_at <= now]


def record_outcome(delivery: DeliveryRecord, error: str | None, now: datetime, policy: RetryPolicy) -> None:
    """Mark ``delivery`` delivered (``error is None``) or schedule its next attempt."""
    delivery.attempts += 1
    if error is None:
        delivery.status, delivery.last_error = "delivered", None
        return
    delivery.last_error = error
    if delivery.attempts >= policy.max_attempts:
        delivery.status = "failed"
    else:
        delivery.next_attempt_at = now + policy.delay_after(delivery.attempts)


def _error_of(response: httpx.Response) -> str | None:
    return None if response.is_success else f"HTTP {response.status_code}"


def deliver_pending(
    state: State, now: datetime, policy: RetryPolicy, transport: httpx.BaseTransport | None = None
) -> int:
    """One synchronous pass over the due deliveries; returns how many were delivered."""
    delivered = 0
    with httpx.Client(transport=transport, timeout=TIMEOUT_S) as client:
        for delivery in due(state, now):
            try:
                error = _error_of(
                    client.post(delivery.url, content=delivery.jws, headers={"Content-Type": CONTENT_TYPE})
                )
            except httpx.HTTPError as exc:
                error = type(exc).__name__
            record_outcome(delivery, error, now, policy)
            delivered += error is None
    return delivered


async def adeliver_pending(
    state: State, now: datetime, policy: RetryPolicy, transport: httpx.AsyncBaseTransport | None = None
) -> int:
    """:func:`deliver_pending` for the event loop (the app's background task)."""
    delivered = 0
    async with httpx.AsyncClient(transport=transport, timeout=TIMEOUT_S) as client:
        for delivery in due(state, now):
            try:
                response = await client.post(
                    delivery.url, content=delivery.jws, headers={"Content-Type": CONTENT_TYPE}
                )
                error = _error_of(response)
            except httpx.HTTPError as exc:
                error = type(exc).__name__
            record_outcome(delivery, error, now, policy)
            delivered += error is None
    return delivered
