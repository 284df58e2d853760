"""Group commit: events of concurrent requests share transactions, each request returns only
once its own event is committed, keeps its own request id, and a failed commit fails every
request in it (nothing of theirs recorded)."""

from __future__ import annotations

import asyncio
import json

from sqlalchemy import select

from tests.events import support
from tsunagu.db import Database
from tsunagu.events import GroupCommit, Outbox
from tsunagu.obs import request_id_scope


async def test_concurrent_events_share_commits_and_keep_their_request_ids(
    db: Database, outbox: Outbox
) -> None:
    group = GroupCommit(db, outbox)

    async def one(n: int) -> None:
        with request_id_scope(f"request-{n:03d}"):
            await group.add(support.CounterBumpedV1(key=f"k{n}", seq=n))

    await one(0)  # alone: committed at once, by itself
    assert group.commits == 1
    await asyncio.gather(*(one(n) for n in range(1, 41)))
    assert 2 <= group.commits < 41  # the 40 concurrent events needed far fewer transactions
    async with db.sessions() as session:
        payloads = (
            (await session.execute(select(outbox.table.c.payload).order_by(outbox.table.c.seq)))
            .scalars()
            .all()
        )
    envelopes = [json.loads(p) for p in payloads]
    assert [e["data"]["seq"] for e in envelopes] == list(range(41))  # seq keeps the order they came in
    assert {e["data"]["seq"]: e["requestid"] for e in envelopes} == {n: f"request-{n:03d}" for n in range(41)}


async def test_a_failed_commit_fails_every_request_in_it(db: Database, outbox: Outbox) -> None:
    group = GroupCommit(db, outbox)
    await db.dispose()
    broken = Database("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    group.db = broken
    results = await asyncio.gather(
        *(group.add(support.CounterBumpedV1(key="k", seq=n)) for n in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, Exception) for r in results)
    assert group.commits == 0
    await broken.dispose()
