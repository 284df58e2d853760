"""Each person's decision items in memory, so an effective-consent check is a lookup, not a query.

What is cached is the person's decision items as ``store.people_item_rows`` reads them
(recipient, purpose, item, value, in force from/until, and when a later decision superseded it);
:func:`in_force` applies the rule of ``queries.py`` to them for any time ``t`` — whether the rows
came from memory or were just loaded, there is one implementation of the rule. A cached person is
dropped on a change: each committed decision bumps the version of the person's bucket — in the recording
process at once, in every process through PostgreSQL ``NOTIFY`` (``store/changes.py``). A read
keeps what it loaded only if the bucket's version did not move while it loaded.

The cache answers only while it is **live**: the listener is connected (or the database is SQLite,
one process). When the listener loses its connection, everything is dropped and every check goes
to the database until it listens again — a change it could have missed is never served from
memory.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from tsunagu.consent.store.changes import BUCKETS, bucket


@dataclass(frozen=True)
class ItemRow:
    recipient: str
    purpose: str
    item: str
    value: str  # allow | deny
    effective_from: datetime
    valid_until: datetime
    superseded_at: datetime | None  # recorded time of the first decision that superseded it


def in_force(
    rows: Iterable[ItemRow], recipient: str, purpose: str, items: Sequence[str], at: datetime
) -> list[tuple[str, str]]:
    """(item, allow|deny) of the rows in force at ``at`` for these keys (``combine`` decides)."""
    wanted = set(items)
    return [
        (row.item, row.value)
        for row in rows
        if row.recipient == recipient
        and row.purpose == purpose
        and row.item in wanted
        and row.effective_from <= at < row.valid_until
        and (row.superseded_at is None or row.superseded_at > at)
    ]


@dataclass(frozen=True)
class Token:
    bucket: int
    version: int
    epoch: int


@dataclass
class _Entry:
    version: int
    epoch: int
    rows: list[ItemRow]


class EffectiveCache:
    def __init__(self, max_people: int = 100_000) -> None:
        self.max_people = max_people
        self.live = False
        self._epoch = 0  # moves whenever liveness changes: nothing from before is trusted after
        self._versions = [0] * BUCKETS
        self._people: OrderedDict[str, _Entry] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def set_live(self, live: bool) -> None:
        self.live = live
        self._epoch += 1
        self._people.clear()

    def changed(self, user_number: str) -> None:
        self.changed_bucket(bucket(user_number))

    def changed_bucket(self, number: int) -> None:
        self._versions[number % BUCKETS] += 1

    def lookup(self, user_number: str) -> tuple[list[ItemRow] | None, Token]:
        """The person's cached rows if still valid, and the token to :meth:`keep` a fresh load
        with (taken *before* loading: a change during the load makes the keep a no-op)."""
        number = bucket(user_number)
        token = Token(number, self._versions[number], self._epoch)
        entry = self._people.get(user_number) if self.live and self.max_people > 0 else None
        if entry is not None and entry.version == token.version and entry.epoch == token.epoch:
            self._people.move_to_end(user_number)
            self.hits += 1
            return entry.rows, token
        self.misses += 1
        return None, token

    def keep(self, user_number: str, token: Token, rows: list[ItemRow]) -> None:
        if (
            not self.live
            or self.max_people <= 0
            or self._versions[token.bucket] != token.version
            or self._epoch != token.epoch
        ):
            return
        self._people[user_number] = _Entry(token.version, token.epoch, rows)
        self._people.move_to_end(user_number)
        while len(self._people) > self.max_people:
            self._people.popitem(last=False)

    async def rows(self, user_number: str, load: Callable[[], Awaitable[list[ItemRow]]]) -> list[ItemRow]:
        """The person's rows: from memory when live and unchanged, else loaded (and kept if
        nothing changed meanwhile)."""
        cached, token = self.lookup(user_number)
        if cached is not None:
            return cached
        rows = await load()
        self.keep(user_number, token, rows)
        return rows
