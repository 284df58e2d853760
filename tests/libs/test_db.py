"""Database helpers: after-commit callbacks run on commit only."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from tsunagu.db import Database, call_after_commit


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
