"""Database helpers: after-commit callbacks run on commit only; the pool hands out live
connections without a round trip per checkout; read sessions and the read pool's
single-statement reads on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy
from sqlalchemy import text

from tests.fixtures.infra import PG_ADMIN_DSN
from tsunagu.db import Database, call_after_commit
from tsunagu.db.engine import WriteInReadSession
from tsunagu.devstack.postgres import scratch_database


async def test_after_commit_callbacks_run_on_commit_and_never_on_rollback(tmp_path: Path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    calls: list[str] = []
    try:
        async with db.transaction() as session:
            await session.execute(text("SELECT 1"))
            call_after_commit(session, lambda: calls.append("committed"))
            call_after_commit(session, lambda: calls.append("second"))
            assert calls == []
        assert sorted(calls) == ["committed", "second"]
        with pytest.raises(RuntimeError):
            async with db.transaction() as session:
                call_after_commit(session, lambda: calls.append("rolled back"))
                raise RuntimeError("abort")
        async with db.transaction() as session:
            await session.execute(text("SELECT 1"))
        assert "rolled back" not in calls and len(calls) == 2
    finally:
        await db.dispose()


async def _backends(admin: asyncpg.Connection, database: str) -> list[int]:
    rows = await admin.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", database
    )
    return [row["pid"] for row in rows]


async def test_a_connection_the_server_closed_is_never_handed_to_a_request(postgres_url: str):
    """Every pooled connection's backend is terminated (as a PostgreSQL restart would): the next
    transactions get fresh connections and succeed, none of them sees the dead ones."""
    db = Database(postgres_url, pool_size=3)
    database = postgres_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        # three connections in the pool at once
        sessions = [db.sessions() for _ in range(3)]
        for session in sessions:
            await session.execute(text("SELECT 1"))
        for session in sessions:
            await session.close()
        before = await _backends(admin, database)
        assert len(before) >= 3
        await admin.fetch("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", before)
        await asyncio.sleep(0.2)  # the EOFs reach the event loop
        for _ in range(6):
            async with db.transaction() as session:
                assert (await session.execute(text("SELECT 41 + 1"))).scalar_one() == 42
        after = await _backends(admin, database)
        assert after and not set(after) & set(before)
    finally:
        await admin.close()
        await db.dispose()


async def test_a_checkout_costs_no_round_trip(postgres_url: str):
    """A transaction is BEGIN, its statements and COMMIT: no liveness query per checkout (the
    asyncpg form of pool_pre_ping was BEGIN; ;ROLLBACK — three round trips per request)."""
    db = Database(postgres_url, pool_size=1)
    statements: list[str] = []
    try:
        async with db.transaction() as session:
            await session.execute(text("SELECT 1"))  # the pool's one connection now exists
        connection = await db.engine.connect()
        raw = (await connection.get_raw_connection()).driver_connection
        await connection.close()
        raw.add_query_logger(lambda record: statements.append(record.query))
        async with db.transaction() as session:
            await session.execute(text("SELECT 2"))
        # the driver logs its own transaction statements (prepared ones are not logged): with a
        # liveness ping there would be a BEGIN; … ROLLBACK; pair before these
        assert statements == ["BEGIN;", "COMMIT;"]
    finally:
        await db.dispose()


async def test_reads_cost_one_round_trip_see_commits_and_refuse_writes(postgres_url: str):
    """A read session runs its statements without BEGIN/ROLLBACK (autocommit on PostgreSQL),
    sees what transactions committed, and refuses a write (it would commit on its own)."""
    db = Database(postgres_url, pool_size=1)
    statements: list[str] = []
    try:
        async with db.transaction() as session:
            await session.execute(text("CREATE TABLE IF NOT EXISTS read_probe (n int)"))
            await session.execute(text("INSERT INTO read_probe VALUES (7)"))
        connection = await db.engine.connect()
        raw = (await connection.get_raw_connection()).driver_connection
        await connection.close()
        raw.add_query_logger(lambda record: statements.append(record.query))
        async with db.sessions() as session:
            assert (await session.execute(text("SELECT sum(n) FROM read_probe"))).scalar_one() == 7
        assert statements == [], statements  # no BEGIN, no ROLLBACK (the SELECT is prepared, not logged)
        table = sqlalchemy.table("read_probe", sqlalchemy.column("n"))
        with pytest.raises(WriteInReadSession):
            async with db.sessions() as session:
                await session.execute(table.insert().values(n=1))
        async with db.transaction() as session:  # the pool's connection is transactional again
            await session.execute(table.insert().values(n=1))
            await session.execute(text("SELECT 1"))
            assert (await session.execute(text("SELECT sum(n) FROM read_probe"))).scalar_one() == 8
        assert [s.split()[0] for s in statements] == ["BEGIN", "COMMIT;"], statements
    finally:
        await db.dispose()


@asynccontextmanager
async def scratch_db(name: str, *statements: str, pool_size: int = 2) -> AsyncIterator[Database]:
    """A two-connection ``Database`` on a scratch PostgreSQL database, ``statements`` applied."""
    async with scratch_database(name) as url:
        db = Database(url, pool_size=pool_size)
        try:
            async with db.transaction() as session:
                for statement in statements:
                    await session.execute(text(statement))
            yield db
        finally:
            await db.dispose()


async def test_the_direct_pool_reads_json_and_survives_a_dropped_connection():
    async with scratch_db(
        "tsunagu_reads",
        "CREATE TABLE doc (id text PRIMARY KEY, body jsonb, meta json)",
        """INSERT INTO doc VALUES ('a', '{"x": [1, "二"]}', '"public"')""",
    ) as db:
        assert db.direct is not None
        query = "SELECT body, meta FROM doc WHERE id = $1"
        row = await db.direct.fetchrow(query, "a")
        assert row is not None and (row["body"], row["meta"]) == ({"x": [1, "二"]}, "public")
        assert await db.direct.fetchrow(query, "b") is None
        # the server ends every connection of the pool: the next read still answers
        async with db.transaction() as session:
            await session.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    " AND backend_type = 'client backend'"
                )
            )
        row = await db.direct.fetchrow(query, "a")
        assert row is not None and row["meta"] == "public"
        # a read leaves no transaction open behind it
        row = await db.direct.fetchrow(
            "SELECT count(*) AS open FROM pg_stat_activity WHERE datname = current_database()"
            " AND state LIKE 'idle in transaction%'"
        )
        assert row is not None and row["open"] == 0


async def test_execute_one_commits_one_statement_on_connections_the_pool_keeps():
    async with scratch_db("tsunagu_direct", "CREATE TABLE once (k text PRIMARY KEY)") as db:
        insert = "INSERT INTO once (k) VALUES ($1) ON CONFLICT DO NOTHING"

        async def backends() -> set[int]:
            assert db.direct is not None
            rows = await asyncio.gather(
                *(db.direct.fetchrow("SELECT pg_backend_pid() AS pid") for _ in range(4))
            )
            return {row["pid"] for row in rows if row is not None}

        statuses = await asyncio.gather(*(db.execute_one(insert, f"k{n % 5}") for n in range(40)))
        assert statuses.count("INSERT 0 1") == 5 and statuses.count("INSERT 0 0") == 35
        first = await backends()
        await asyncio.gather(*(db.execute_one(insert, f"k{n}") for n in range(40)))
        # Committed at once (another connection sees every row), on the same few connections:
        # a burst opens none beyond the pool's size and closes none.
        async with db.sessions() as session:
            assert (await session.execute(text("SELECT count(*) FROM once"))).scalar_one() == 40
        assert len(first) <= 2 and await backends() == first


def test_an_embedded_database_has_no_direct_pool(tmp_path: Path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    assert db.direct is None
    with pytest.raises(RuntimeError):
        asyncio.run(db.execute_one("SELECT 1"))


async def test_a_driver_transaction_commits_or_leaves_nothing_even_when_cancelled():
    async with scratch_db("tsunagu_driver_tx", "CREATE TABLE tx (k text PRIMARY KEY)", pool_size=1) as db:
        assert db.direct is not None
        async with db.driver_transaction() as connection:
            await connection.execute("INSERT INTO tx VALUES ('kept')")
        with pytest.raises(asyncpg.UniqueViolationError):
            async with db.driver_transaction() as connection:
                await connection.execute("INSERT INTO tx VALUES ('gone')")
                await connection.execute("INSERT INTO tx VALUES ('kept')")
        started = asyncio.Event()

        async def interrupted() -> None:
            async with db.driver_transaction() as connection:
                await connection.execute("INSERT INTO tx VALUES ('cancelled')")
                started.set()
                await asyncio.sleep(30)

        task = asyncio.create_task(interrupted())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The pool's one connection comes back usable, outside any transaction, and only the
        # committed row is there.
        row = await db.direct.fetchrow("SELECT array_agg(k ORDER BY k) AS keys FROM tx")
        assert row is not None and row["keys"] == ["kept"]
        row = await db.direct.fetchrow(
            "SELECT count(*) AS open FROM pg_stat_activity WHERE datname = current_database()"
            " AND state LIKE 'idle in transaction%'"
        )
        assert row is not None and row["open"] == 0
