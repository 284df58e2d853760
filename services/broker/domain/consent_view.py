"""The broker's view of consent, fed by ``tsunagu.consent.decision.recorded``.

The rule is consent's own (``services/consent/domain/queries.py``): for (person, recipient,
purpose, item, time) the answer is **allow** only when a ``decide`` in force allows the item and
none in force refuses it (deny wins); in force = ``effective_from ≤ t < valid_until`` and not
superseded by a decision recorded at or before ``t``. No decision means deny.

The view answers only while it is known to be fresh: the consumer that feeds it has applied all of
the person's partition within ``max_age_s`` (decisions are keyed by user number, so one partition
holds all of a person's decisions). Otherwise — another replica owns that partition, the consumer
is behind or down — the broker asks consent synchronously. So a withdrawal is refused for every
request starting more than (event delivery + ``max_age_s``) after it was recorded.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from aiokafka.partitioner import murmur2

from tsunagu.broker.domain.errors import ConsentUnavailable
from tsunagu.broker.store import repository as store
from tsunagu.clients.consent import ConsentApi
from tsunagu.clients.internal import UpstreamError
from tsunagu.db import Database
from tsunagu.db.engine import as_utc

DECISION_TOPIC = "tsunagu.consent.decision"
# Where the feeding consumer stands: (topic, partition) → monotonic time it was caught up, if it
# owns that partition; and the number of partitions of the topic (None until known).
Freshness = Callable[[str, int], float | None]
PartitionCount = Callable[[str], int | None]


class ViewChanges:
    """Which people's decisions this process's consent-view consumer has applied: a version per
    person (striped into buckets, so memory stays bounded; a shared bucket only costs a re-read),
    bumped after each applied decision commits. Cached rows carry the version they were read at."""

    BUCKETS = 65_536

    def __init__(self) -> None:
        self._versions = [0] * self.BUCKETS

    def _bucket(self, user_number: str) -> int:
        return hash(user_number) % self.BUCKETS

    def version(self, user_number: str) -> int:
        return self._versions[self._bucket(user_number)]

    def changed(self, user_number: str) -> None:
        self._versions[self._bucket(user_number)] += 1


@dataclass(frozen=True)
class Verdict:
    """Per item: allowed or not, and the decision that allows it (None for a refusal)."""

    allowed: dict[str, str | None]  # item → allowing decision id (allowed items only)
    denied: list[str]
    source: str  # "view" | "consent"


def partition_of(key: str, partitions: int) -> int:
    """Kafka's default partitioner (murmur2 of the key bytes), as the outbox relay publishes."""
    return int(murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % partitions


def evaluate(
    rows: Iterable[Mapping[str, Any]], purpose: str, items: list[str], at: datetime
) -> dict[str, str | None]:
    """Item → allowing decision id, for the items allowed at ``at`` (deny wins)."""
    allowed: dict[str, str] = {}
    denied: set[str] = set()
    for row in rows:
        if row["action"] != "decide" or row["purpose_code"] != purpose:
            continue
        if not (as_utc(row["effective_from"]) <= at < as_utc(row["valid_until"])):
            continue
        if row["superseded_at"] is not None and as_utc(row["superseded_at"]) <= at:
            continue
        for item, value in row["items"].items():
            if value == "allow":
                allowed.setdefault(item, row["decision_id"])
            else:
                denied.add(item)
    return {item: allowed[item] for item in items if item in allowed and item not in denied}


class ConsentView:
    def __init__(
        self,
        db: Database,
        consent: ConsentApi,
        *,
        max_age_s: float,
        freshness: Freshness,
        partitions: PartitionCount,
        monotonic: Callable[[], float] = time.monotonic,
        answered: Callable[[str], None] = lambda _source: None,
        changes: ViewChanges | None = None,
        cache_size: int = 100_000,
    ) -> None:
        self.db = db
        self.consent = consent
        self.max_age_s = max_age_s
        self.freshness = freshness
        self.partitions = partitions
        self.monotonic = monotonic
        self.answered = answered  # counts answers by source (metrics)
        # (person, recipient) → (version, decision rows): while this process's consumer owns the
        # person's partition (the only case the view answers), every decision of that person goes
        # through this process, which bumps the version — so a cached entry is never stale then.
        self.changes = changes
        self.cache_size = cache_size
        self._rows: OrderedDict[tuple[str, str], tuple[int, list[dict[str, Any]]]] = OrderedDict()

    async def _decisions(self, user_number: str, recipient: str) -> list[dict[str, Any]]:
        if self.changes is None:
            async with self.db.sessions() as session:
                return await store.decisions(session, user_number, recipient)
        key = (user_number, recipient)
        version = self.changes.version(user_number)
        cached = self._rows.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        async with self.db.sessions() as session:
            rows = await store.decisions(session, user_number, recipient)
        if self.changes.version(user_number) == version:  # no decision applied while reading
            self._rows[key] = (version, rows)
            self._rows.move_to_end(key)
            if len(self._rows) > self.cache_size:
                self._rows.popitem(last=False)
        return rows

    def fresh_for(self, user_number: str) -> bool:
        """Whether the view holds every decision of this person recorded up to ``max_age_s`` ago."""
        count = self.partitions(DECISION_TOPIC)
        if not count:
            return False
        caught_up = self.freshness(DECISION_TOPIC, partition_of(user_number, count))
        return caught_up is not None and self.monotonic() - caught_up <= self.max_age_s

    async def check(
        self, user_number: str, recipient: str, purpose: str, items: list[str], at: datetime
    ) -> Verdict:
        """Which of ``items`` this recipient may receive now for this purpose."""
        rows = await self._decisions(user_number, recipient)
        from_view = evaluate(rows, purpose, items, at)
        if self.fresh_for(user_number):
            self.answered("view")
            return Verdict(from_view, [i for i in items if i not in from_view], "view")
        try:
            answer = await self.consent.effective(user_number, recipient, items, purpose, at)
        except (UpstreamError, httpx.HTTPError) as error:
            raise ConsentUnavailable("consent cannot be asked now") from error
        self.answered("consent")
        allowed = {item: from_view.get(item) for item in items if answer.get(item) == "allow"}
        return Verdict(allowed, [i for i in items if i not in allowed], "consent")
