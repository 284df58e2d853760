"""Single statements on PostgreSQL straight through asyncpg, for hot paths.

Through SQLAlchemy a one-statement read or write costs ``BEGIN``, the statement and ``ROLLBACK``
or ``COMMIT`` plus the engine's per-statement work; here it is one round trip: an autocommitted
statement on a pooled connection, prepared once per connection (asyncpg's statement cache). Only
for statements that need no transaction of their own: one statement is atomic anyway.

The pool keeps its connections (up to ``max_size``; callers queue beyond that), where SQLAlchemy's
pool closes each overflow connection it gets back: under load, hot paths on that pool opened and
closed a connection every few requests (connect, TLS probe, authentication, statements prepared
again), measured at a tenth of the idp's CPU per token.

The connections are given no session state and hold a transaction only inside
:meth:`DirectPool.transaction` (hot multi-statement writes), so giving one back to the pool needs no
reset query. A connection the server dropped is noticed by asyncpg when the socket
closes; one lost mid-read is retried once on a fresh connection (a read is safe to repeat). A write
is never repeated: it may have committed before the connection was lost.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

# What a connection the server ended (restart, failover, an operator's pg_terminate_backend) raises
# on its next use, before the closed socket is noticed: the server's FATAL message, the socket's
# error, or the protocol finding that message where it expected an answer.
LOST = (
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
    asyncpg.InternalClientError,
    OSError,
)


async def _reset(connection: asyncpg.Connection) -> None:
    """Nothing to undo — these connections hold no listener or setting, and a transaction only
    inside :meth:`DirectPool.transaction` — except a transaction an interrupted block left open."""
    if connection.is_in_transaction():
        await connection.execute("ROLLBACK")


async def _json_codecs(connection: asyncpg.Connection) -> None:
    # The same decoding SQLAlchemy applies: JSON and JSONB columns come back as Python values.
    for kind in ("json", "jsonb"):
        await connection.set_type_codec(kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class DirectPool:
    """A small asyncpg pool for single statements, opened on first use."""

    def __init__(self, url: str, *, max_size: int) -> None:
        self.dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def _opened(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self.dsn,
                        min_size=0,
                        max_size=self.max_size,
                        init=_json_codecs,
                        reset=_reset,
                    )
        return self._pool

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        """The first row ``query`` returns (``$1``… bound to ``args``), or None."""
        pool = await self._opened()
        try:
            return await pool.fetchrow(query, *args)
        except LOST:
            return await pool.fetchrow(query, *args)  # once more, on another connection

    async def execute(self, statement: str, *args: Any) -> str:
        """Run one statement (``$1``… bound to ``args``) in its own implicit transaction: committed
        when this returns. Its status (``INSERT 0 1``…)."""
        pool = await self._opened()
        return str(await pool.execute(statement, *args))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection inside one transaction: committed when the block ends, rolled back if it
        raises. Never retried (a write may have committed before a connection was lost)."""
        pool = await self._opened()
        async with pool.acquire() as connection, connection.transaction():
            yield connection

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
