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
    ) -> None:
        self.db = db
        self.consent = consent
        self.max_age_s = max_age_s
        self.freshness = freshness
        self.partitions = partitions
        self.monotonic = monotonic
        self.answered = answered  # counts answers by source (metrics)

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
        async with self.db.sessions() as session:
            rows = await store.decisions(session, user_number, recipient)
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
