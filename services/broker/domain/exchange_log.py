"""The citizen's exchange log ("やりとり履歴"): every exchange and denial about them, newest
first — who asked, from whom, which items, for what purpose, on which consent, with what outcome.
Item values are never logged, so there are none to show."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from tsunagu.broker.domain.errors import InvalidExchange
from tsunagu.broker.store import repository as store
from tsunagu.db import Database
from tsunagu.db.engine import as_utc

MAX_PAGE = 200
MAX_CURSOR = 128
EXCHANGE_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")


def cursor_of(row: dict[str, Any]) -> str:
    """Where the next page starts: the time and id of the last entry shown. Entries share a time
    (a batch of exchanges, a coarse clock), so the id breaks the tie and none is skipped."""
    return f"{as_utc(row['at']).isoformat()}~{row['id']}"


def parse_cursor(text: str) -> tuple[datetime, str | None]:
    """A ``next_before`` of an earlier page, or a bare time with its offset (everything older);
    :class:`InvalidExchange` otherwise."""
    moment, _, last_id = text.partition("~")
    try:
        at = datetime.fromisoformat(moment) if len(text) <= MAX_CURSOR else None
    except ValueError:
        at = None
    if at is None or at.tzinfo is None or (last_id and not EXCHANGE_ID.fullmatch(last_id)):
        raise InvalidExchange("before: a previous page's next_before, or a time with its offset")
    return at.astimezone(UTC), last_id or None


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

    async def of(self, user_number: str, *, before: str | None = None, limit: int = 50) -> dict[str, Any]:
        """One page of the person's exchanges, newest first; its ``next_before`` (a cursor: pass
        it back as ``before``) continues it. Times are UTC with their offset on every database
        (SQLite stores them naive), so a cursor compares with what is stored."""
        limit = max(1, min(limit, MAX_PAGE))
        after = parse_cursor(before) if before is not None else None
        async with self.db.sessions() as session:
            rows = await store.exchanges_of(session, user_number, before=after, limit=limit)
        return {
            "exchanges": [_view(row) for row in rows],
            "next_before": cursor_of(rows[-1]) if len(rows) == limit else None,
        }
