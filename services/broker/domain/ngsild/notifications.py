"""Sends the queued NGSI-LD notifications (a background loop per replica).

Each row was written with the change that caused it, so only committed changes notify and a
crash between commit and send loses nothing: the row stays pending and is sent after restart
(at least once — receivers dedupe by the notification ``id``). A due row is leased before it is
sent, so replicas share the work. Any 2xx is delivered; anything else is retried with
exponential back-off (``retry_initial_s`` × 2ⁿ, capped) until ``max_attempts``, then the row is
``dead`` with its last error. Redirects are not followed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tsunagu.broker.store import ngsild as store
from tsunagu.db import Database
from tsunagu.service.runtime import pause

log = logging.getLogger(__name__)
CORE_CONTEXT = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
CONTEXT_LINK = f'<{CORE_CONTEXT}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class NotificationSender:
    def __init__(
        self,
        db: Database,
        http: httpx.AsyncClient,
        *,
        timeout_s: float = 5.0,
        max_attempts: int = 8,
        retry_initial_s: float = 1.0,
        retry_max_s: float = 300.0,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.db = db
        self.http = http
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.clock = clock
        self.batch = 32
        self.queued = asyncio.Event()  # set after a commit that queued notifications

    def retry_delay(self, attempts: int) -> timedelta:
        """The wait after the ``attempts``-th failure."""
        seconds = min(self.retry_initial_s * 2 ** min(attempts - 1, 32), self.retry_max_s)
        return timedelta(seconds=seconds)

    async def send_due(self) -> int:
        """Send what is due now; returns how many were delivered."""
        now = self.clock()
        lease = now + timedelta(seconds=self.timeout_s * 2 + 10)
        async with self.db.transaction() as session:
            due = await store.claim_due_notifications(session, now, lease, self.batch)
        if not due:
            return 0
        errors = await asyncio.gather(*(self._post(row) for row in due))
        delivered = 0
        async with self.db.transaction() as session:
            for row, error in zip(due, errors, strict=True):
                attempts = row["attempts"] + 1
                if error is None:
                    delivered += 1
                    state, retry_at = "delivered", self.clock()
                else:
                    dead = attempts >= self.max_attempts
                    state, retry_at = (
                        ("dead" if dead else "pending"),
                        self.clock() + self.retry_delay(attempts),
                    )
                    log.warning(
                        "NGSI-LD notification not delivered",
                        extra={"subscription": row["subscription_id"], "attempts": attempts, "error": error},
                    )
                await store.notification_sent(
                    session, row["id"], state=state, attempts=attempts, next_attempt_at=retry_at, error=error
                )
        return delivered

    async def _post(self, row: dict[str, Any]) -> str | None:
        payload = dict(row["payload"])
        accept = payload.pop("accept", "application/json")
        payload["notifiedAt"] = _iso(self.clock())
        headers = {"Content-Type": "application/json"}
        if accept == "application/ld+json":
            headers["Content-Type"] = accept
            payload["@context"] = CORE_CONTEXT
        else:
            headers["Link"] = CONTEXT_LINK
        try:
            response = await self.http.post(
                row["endpoint"], json=payload, headers=headers, timeout=self.timeout_s
            )
        except httpx.TimeoutException:
            return "timeout"
        except httpx.HTTPError as error:
            return type(error).__name__
        return None if response.is_success else f"HTTP {response.status_code}"

    async def run(self, stopping: asyncio.Event, poll_s: float = 1.0) -> None:
        """Until ``stopping``: send what is due; woken early when a change queued notifications."""
        while not stopping.is_set():
            self.queued.clear()
            try:
                while await self.send_due() and not stopping.is_set():
                    pass
            except Exception:
                log.exception("NGSI-LD notification round failed")
            await pause(stopping, poll_s, wake=self.queued)
