"""The exchange log's pages: entries that share a time (a batch of exchanges, a coarse clock) are
each shown once, on one page or the next — the cursor is the last entry's time and id — and a
cursor the broker did not make is a 400, not an outage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tsunagu.broker.domain.errors import InvalidExchange
from tsunagu.broker.domain.exchange_log import ExchangeLog
from tsunagu.broker.store.models import exchange, metadata
from tsunagu.db import Database
from tsunagu.devstack.postgres import scratch_database

USER = "U1234567890"
AT = datetime(2026, 11, 24, 9, 0, 0, 123456, tzinfo=UTC)


def _row(index: int, at: datetime, user: str = USER) -> dict[str, object]:
    return {
        "id": f"ex_{index:02d}-{user}",
        "tenant_id": "city",
        "kind": "pull",
        "outcome": "completed",
        "reason": None,
        "consumer": "clinic",
        "providers": ["records"],
        "user_number": user,
        "purpose_code": "treatment",
        "items": ["health.allergy"],
        "released": ["health.allergy"],
        "consent": {},
        "at": at,
    }


@pytest.fixture
async def log():  # type: ignore[no-untyped-def]
    async with scratch_database("tsunagu_exchange_log") as url:
        db = Database(url)
        try:
            async with db.engine.begin() as connection:
                await connection.run_sync(metadata.create_all)
            # seven entries at one time between an older and a newer one; another person's too
            rows = [_row(i, AT) for i in range(1, 8)]
            rows += [_row(0, AT - timedelta(seconds=1)), _row(9, AT + timedelta(seconds=1))]
            rows.append(_row(5, AT, user="U999"))
            async with db.transaction() as session:
                await session.execute(exchange.insert(), rows)
            yield ExchangeLog(db)
        finally:
            await db.dispose()


async def test_entries_sharing_a_time_are_each_shown_once_across_pages(log: ExchangeLog):
    for limit in (1, 2, 3, 7):
        seen: list[str] = []
        before = None
        for _ in range(20):
            page = await log.of(USER, before=before, limit=limit)
            seen += [entry["exchange_id"] for entry in page["exchanges"]]
            before = page["next_before"]
            if before is None:
                break
        expected = [f"ex_{i:02d}-{USER}" for i in (9, 7, 6, 5, 4, 3, 2, 1, 0)]
        assert seen == expected, limit


async def test_a_bare_time_pages_from_everything_older(log: ExchangeLog):
    page = await log.of(USER, before=AT.isoformat(), limit=50)
    assert [entry["exchange_id"] for entry in page["exchanges"]] == [f"ex_00-{USER}"]
    assert page["next_before"] is None


@pytest.mark.parametrize(
    "cursor",
    [
        "yesterday",
        "2026-11-24T09:00:00",
        "2026-11-24T09:00:00+00:00~ex/../x",
        "2026-11-24T09:00:00+00:00~" + "a" * 40,
    ],
)
async def test_a_cursor_the_broker_did_not_make_is_refused(log: ExchangeLog, cursor: str):
    with pytest.raises(InvalidExchange):
        await log.of(USER, before=cursor)
