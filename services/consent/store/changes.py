"""Telling every consent process that a person's decisions changed: PostgreSQL ``NOTIFY`` in the
transaction that records the decision (delivered to every listener when — and only if — it
commits), ``LISTEN`` on a connection of its own in each process.

The payload is a bucket of the user number (a stable hash, so no personal datum travels); a
listener that loses its connection says so (``on_live(False)``) until it has listened again, so
the caches it feeds stop answering for the time changes could have been missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

CHANNEL = "tsunagu_consent_changes"
BUCKETS = 65_536
RECONNECT_S = 1.0

log = logging.getLogger(__name__)


def bucket(user_number: str) -> int:
    """The same bucket in every process (Python's ``hash`` of a str is salted per process)."""
    return int.from_bytes(hashlib.sha256(user_number.encode("utf-8")).digest()[:4], "big") % BUCKETS


async def announce(session: AsyncSession, user_number: str) -> None:
    """In the recording transaction: every listener hears of the person's bucket on commit."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(
            text("SELECT pg_notify(:channel, :payload)"),
            {"channel": CHANNEL, "payload": str(bucket(user_number))},
        )


async def announce_direct(connection: asyncpg.Connection, user_number: str) -> None:
    """:func:`announce` in a transaction of an asyncpg connection (``Database.driver_transaction``)."""
    await connection.execute("SELECT pg_notify($1, $2)", CHANNEL, str(bucket(user_number)))


class ChangeListener:
    """``LISTEN`` on the database of ``url`` until ``stopping``; reconnects after a loss."""

    def __init__(self, url: str, on_change: Callable[[int], None], on_live: Callable[[bool], None]) -> None:
        self.dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.on_change = on_change
        self.on_live = on_live

    def _received(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        with contextlib.suppress(ValueError):
            self.on_change(int(payload) % BUCKETS)

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            lost = asyncio.Event()
            try:
                connection = await asyncpg.connect(self.dsn, timeout=10)
            except (OSError, asyncpg.PostgresError, TimeoutError) as error:
                log.warning("consent change listener cannot connect (%s); retrying", type(error).__name__)
                await _wait(stopping, RECONNECT_S)
                continue
            try:
                connection.add_termination_listener(lambda _connection, lost=lost: lost.set())
                await connection.add_listener(CHANNEL, self._received)
                self.on_live(True)
                while not stopping.is_set() and not lost.is_set() and not connection.is_closed():
                    await _wait_any(stopping, lost, 1.0)
            except (OSError, asyncpg.PostgresError) as error:
                log.warning("consent change listener lost its connection (%s)", type(error).__name__)
            finally:
                self.on_live(False)
                with contextlib.suppress(Exception):
                    await connection.close(timeout=2)
            if not stopping.is_set():
                await _wait(stopping, RECONNECT_S)


async def _wait(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


async def _wait_any(first: asyncio.Event, second: asyncio.Event, seconds: float) -> None:
    waiters = [asyncio.create_task(first.wait()), asyncio.create_task(second.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
