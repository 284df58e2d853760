"""The citizen's exchange log ("やりとり履歴"): every exchange and denial about them, newest
first — who asked, from whom, which items, for what purpose, on which consent, with what outcome.
Item values are never logged, so there are none to show."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tsunagu.broker.store import repository as store
from tsunagu.db import Database
from tsunagu.db.engine import as_utc

MAX_PAGE = 200


def _view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "exchange_id": row["id"],
        "kind": row["kind"],
        "outcome": row["outcome"],
        "reason": row["reason"],
        "consumer": row["consumer"],
        "providers": row["providers"],
        "purpose": row["purpose_code"],
        "items": row["items"],
        "released": row["released"],
        "consent": row["consent"],
        "at": as_utc(row["at"]).isoformat(),
    }


class ExchangeLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def of(
        self, user_number: str, *, before: datetime | None = None, limit: int = 50
    ) -> dict[str, Any]:
        """One page of the person's exchanges; ``next_before`` continues it. Times are UTC with
        their offset on every database (SQLite stores them naive), so a cursor comes back as it
        was given and compares with what is stored."""
        limit = max(1, min(limit, MAX_PAGE))
        if before is not None:
            before = before.astimezone(UTC)
        async with self.db.sessions() as session:
            rows = await store.exchanges_of(session, user_number, before=before, limit=limit)
        entries = [_view(row) for row in rows]
        return {
            "exchanges": entries,
            "next_before": entries[-1]["at"] if len(rows) == limit else None,
        }
