"""Engine and session factory with the settings each backend needs to be safe under concurrency."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, overload

from sqlalchemy import event, exc, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session

from tsunagu.db.direct import DirectPool


class TrackedSession(Session):
    """The sync session behind every AsyncSession we make: it runs the callbacks queued in
    ``session.info["after_commit"]`` once the transaction has committed (and drops them on
    rollback). One class-level listener instead of one per session on the hot path."""


@event.listens_for(TrackedSession, "after_commit")
def _run_after_commit(session: Session) -> None:
    for callback in session.info.pop("after_commit", ()):
        callback()


@event.listens_for(TrackedSession, "after_rollback")
def _drop_after_commit(session: Session) -> None:
    session.info.pop("after_commit", None)


class ReadSession(Session):
    """The sync session behind :meth:`Database.sessions`: reads only. On PostgreSQL its
    statements run without a transaction (autocommit): no BEGIN and ROLLBACK round trips around
    every read. At READ COMMITTED each statement sees its own snapshot anyway, so reads see what
    they saw before. A write in one is refused (it would commit on its own, outside any
    transaction): writes go through :meth:`Database.transaction`."""


class WriteInReadSession(RuntimeError):
    """A write statement in a read session (a programming error)."""


@event.listens_for(ReadSession, "do_orm_execute")
def _refuse_writes(state: Any) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        raise WriteInReadSession("writes go through Database.transaction(), not Database.sessions()")


def call_after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Run ``callback`` when ``session``'s current transaction commits (never if it rolls back)."""
    session.info.setdefault("after_commit", set()).add(callback)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the outbox relay read while the API writes; foreign keys are off by default in SQLite;
    # busy_timeout turns "database is locked" into a short wait.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_engine(url: str, *, pool_size: int = 20, echo: bool = False) -> AsyncEngine:
    """Create an async engine for ``url`` (``postgresql+asyncpg://`` or ``sqlite+aiosqlite://``)."""
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, echo=echo)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # No overflow: a connection opened for a burst and closed after it costs a PostgreSQL backend
    # start and every statement prepared again; waiting for a pooled one costs far less.
    engine = create_async_engine(url, echo=echo, pool_size=pool_size, max_overflow=0)
    event.listen(engine.sync_engine.pool, "checkout", _refuse_closed_connection)
    return engine


def _refuse_closed_connection(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Hand out no connection the server has closed (a restart, an idle timeout, a terminated
    backend): the pool then discards it and checks out another, so the request never sees it.

    This replaces ``pool_pre_ping``, whose asyncpg form costs three round trips per checkout
    (BEGIN, an empty query, ROLLBACK) on every request. asyncpg learns that the server closed
    the socket as soon as the event loop reads the EOF, so looking at the connection's state is
    enough; a connection that dies silently (no FIN, e.g. a network partition) fails its first
    statement instead, and SQLAlchemy then invalidates the whole pool, so only that one
    request fails."""
    if dbapi_connection.driver_connection.is_closed():
        raise exc.DisconnectionError("the server closed this connection")


class Database:
    """One service's database: the engine and a session factory bound to it, and on PostgreSQL
    a pool for single statements on hot paths (``direct``, opened on first use)."""

    def __init__(self, url: str, *, pool_size: int = 20) -> None:
        self.url = url
        self.is_sqlite = is_sqlite(url)  # asked per request by some routes: parse the URL once
        self.engine = create_engine(url, pool_size=pool_size)
        # Same pool; read sessions run without a transaction on PostgreSQL (see ReadSession).
        autocommit = (
            self.engine if self.is_sqlite else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        self.sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(
            autocommit, expire_on_commit=False, sync_session_class=ReadSession
        )
        self._writes: async_sessionmaker[AsyncSession] = async_sessionmaker(
            self.engine, expire_on_commit=False, sync_session_class=TrackedSession
        )
        self.direct = None if self.is_sqlite else DirectPool(url, max_size=pool_size)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in one transaction: committed on success, rolled back on any exception."""
        async with self._writes() as session, session.begin():
            yield session

    async def execute_one(self, sql: str, *args: Any) -> str:
        """One statement on ``direct`` (asyncpg), in its own implicit transaction: a single round
        trip, atomic, committed when this returns. For hot paths whose write is one statement
        (PostgreSQL only; SQLAlchemy's BEGIN … COMMIT costs two more round trips and far more
        CPU)."""
        if self.direct is None:
            raise RuntimeError("execute_one is for PostgreSQL; on SQLite use transaction()")
        return await self.direct.execute(sql, *args)

    @asynccontextmanager
    async def driver_transaction(self) -> AsyncIterator[Any]:
        """An asyncpg connection of ``direct`` inside one transaction (committed on success,
        rolled back on any exception), for hot paths that SQLAlchemy would slow down
        (PostgreSQL only). JSON columns take and give Python values, as through SQLAlchemy."""
        if self.direct is None:
            raise RuntimeError("driver_transaction is for PostgreSQL; on SQLite use transaction()")
        async with self.direct.transaction() as connection:
            yield connection

    async def ping(self) -> None:
        """Round-trip to the database (used by ``/readyz``)."""
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        if self.direct is not None:
            await self.direct.close()
        await self.engine.dispose()


@overload
def as_utc(value: datetime) -> datetime: ...


@overload
def as_utc(value: None) -> None: ...


def as_utc(value: datetime | None) -> datetime | None:
    """A stored time as an aware UTC datetime: SQLite hands back naive ones (every time we store
    is UTC); PostgreSQL's are aware already."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value
