"""Database helpers: after-commit callbacks run on commit only; the read pool's single-statement
reads on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from tsunagu.db import Database, call_after_commit
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


async def test_the_read_pool_reads_json_and_survives_a_dropped_connection():
    async with scratch_database("tsunagu_reads") as url:
        db = Database(url, pool_size=2)
        try:
            async with db.transaction() as session:
                await session.execute(text("CREATE TABLE doc (id text PRIMARY KEY, body jsonb, meta json)"))
                await session.execute(
                    text("""INSERT INTO doc VALUES ('a', '{"x": [1, "二"]}', '"public"')""")
                )
            assert db.reads is not None
            query = "SELECT body, meta FROM doc WHERE id = $1"
            row = await db.reads.fetchrow(query, "a")
            assert row is not None and (row["body"], row["meta"]) == ({"x": [1, "二"]}, "public")
            assert await db.reads.fetchrow(query, "b") is None
            # the server ends every connection of the pool: the next read still answers
            async with db.transaction() as session:
                await session.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                        " AND backend_type = 'client backend'"
                    )
                )
            row = await db.reads.fetchrow(query, "a")
            assert row is not None and row["meta"] == "public"
            # a read leaves no transaction open behind it
            row = await db.reads.fetchrow(
                "SELECT count(*) AS open FROM pg_stat_activity WHERE datname = current_database()"
                " AND state LIKE 'idle in transaction%'"
            )
            assert row is not None and row["open"] == 0
        finally:
            await db.dispose()


def test_an_embedded_database_has_no_read_pool(tmp_path: Path):
    assert Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}").reads is None
