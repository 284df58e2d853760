"""Engine and session factory with the settings each backend needs to be safe under concurrency."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, overload

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session

from tsunagu.db.reads import ReadPool


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


def create_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> AsyncEngine:
    """Create an async engine for ``url`` (``postgresql+asyncpg://`` or ``sqlite+aiosqlite://``)."""
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, echo=echo)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        url, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
    )


class Database:
    """One service's database: the engine and a session factory bound to it, and on PostgreSQL
    a pool for single-statement reads on hot paths (``reads``, opened on first use)."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.is_sqlite = is_sqlite(url)  # asked per request by some routes: parse the URL once
        self.engine = create_engine(url, pool_size=pool_size)
        self.sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(
            self.engine, expire_on_commit=False, sync_session_class=TrackedSession
        )
        self.reads = None if self.is_sqlite else ReadPool(url, max_size=pool_size)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in one transaction: committed on success, rolled back on any exception."""
        async with self.sessions() as session, session.begin():
            yield session

    async def ping(self) -> None:
        """Round-trip to the database (used by ``/readyz``)."""
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        if self.reads is not None:
            await self.reads.close()
        await self.engine.dispose()


@overload
def as_utc(value: datetime) -> datetime: ...


@overload
def as_utc(value: None) -> None: ...


def as_utc(value: datetime | None) -> datetime | None:
    """A stored time as an aware UTC datetime: SQLite hands back naive ones (every time we store
    is UTC); PostgreSQL's are aware already."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value
