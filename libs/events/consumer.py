"""Idempotent event consumption: handler + dedupe record in one transaction, offsets after it.

For each record, in partition order: decode the envelope → in one DB transaction, claim the event id
in ``event_inbox`` (a duplicate claim means it was applied before: skip) and run the handler → commit
→ only then commit the Kafka offset. A crash anywhere redelivers the record, and the inbox makes the
second delivery a no-op. A handler that keeps failing is retried with exponential backoff, then the
record goes to ``<topic>.dlq`` and the consumer moves on; a record that cannot be decoded (malformed,
unknown type or version) goes there at once, because retrying cannot fix it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from tsunagu.db import Database
from tsunagu.events.envelope import CloudEvent, utc_now
from tsunagu.events.errors import EventRejected
from tsunagu.events.kafka import dead_letter_topic
from tsunagu.events.registry import EventRegistry, EventSchema
from tsunagu.events.tables import EventTables
from tsunagu.obs import Metrics, failpoint, request_id_scope

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReceivedEvent:
    envelope: CloudEvent
    data: EventSchema
    topic: str
    partition: int
    offset: int


# (event id, topic, partition, offset): where an event was seen, as recorded in the inbox
InboxEntry = tuple[str, str, int, int]
Handler = Callable[[AsyncSession, ReceivedEvent], Awaitable[None]]


class EventConsumer:
    """Consumes ``topics`` in consumer group ``name`` and applies ``handlers`` (event type → handler)."""

    def __init__(
        self,
        *,
        name: str,
        consumer: Any,
        producer: Any,
        db: Database,
        tables: EventTables,
        registry: EventRegistry,
        handlers: Mapping[str, Handler],
        max_attempts: int = 5,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 5.0,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.name = name
        self.consumer = consumer
        self.producer = producer
        self.db = db
        self.inbox = tables.inbox
        self.registry = registry
        self.handlers = dict(handlers)
        self.max_attempts = max_attempts
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.metrics = metrics
        self.clock = clock
        self._stopping = asyncio.Event()
        # (topic, partition) → monotonic time at which everything the broker had in that partition
        # was known applied (taken before the fetch, so it errs on the old side). A read model fed
        # by this consumer is exactly as fresh as this says (``caught_up_at``).
        self._caught_up: dict[tuple[str, int], float] = {}

    def caught_up_at(self, topic: str, partition: int) -> float | None:
        """When this consumer last had applied all of ``topic``/``partition`` (monotonic), or
        None if it does not own that partition or has not caught up since it got it."""
        return self._caught_up.get((topic, partition))

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Consume until :meth:`stop`."""
        while not self._stopping.is_set():
            fetched_after = time.monotonic()
            batches: dict[TopicPartition, list[ConsumerRecord]] = await self.consumer.getmany(
                timeout_ms=200, max_records=500
            )
            offsets = {}
            for tp, records in batches.items():
                processed = await self._process_partition(records)
                if processed is not None:
                    offsets[tp] = processed.offset + 1
            if offsets:  # one round trip for every partition of the fetch
                await self.consumer.commit(offsets)
            await self._track_progress(fetched_after)

    async def _track_progress(self, fetched_after: float) -> None:
        """Consumer lag (metrics) and which partitions are caught up (``caught_up_at``)."""
        assigned = self.consumer.assignment()
        caught_up: dict[tuple[str, int], float] = {}
        for tp in assigned:
            highwater = self.consumer.highwater(tp)
            if highwater is None:
                continue
            lag = max(0, highwater - await self.consumer.position(tp))
            if lag == 0:
                caught_up[tp.topic, tp.partition] = fetched_after
            elif (tp.topic, tp.partition) in self._caught_up:
                caught_up[tp.topic, tp.partition] = self._caught_up[tp.topic, tp.partition]
            if self.metrics:
                self.metrics.consumer_lag.labels(
                    consumer=self.name, topic=tp.topic, partition=str(tp.partition)
                ).set(lag)
        self._caught_up = caught_up

    async def _process_partition(self, records: Sequence[ConsumerRecord]) -> ConsumerRecord | None:
        """Apply a partition's fetched records in order; returns the last one fully handled.

        Consecutive decodable records are applied in one transaction (one round of inbox claims,
        one commit); if any handler fails, that transaction rolls back and the run is replayed one
        event at a time with retries, so a poison event costs only itself.
        """
        last = None
        run: list[tuple[ConsumerRecord, ReceivedEvent]] = []
        for record in records:
            if self._stopping.is_set():
                break
            decoded = self._decode(record)
            if isinstance(decoded, ReceivedEvent):
                run.append((record, decoded))
            else:
                if run:  # keep order: what came before this record is applied first
                    await self._apply_run(run)
                    run = []
                await self._refuse(record, decoded)
            last = record
        if run:
            await self._apply_run(run)
        return last

    async def process(self, record: ConsumerRecord) -> None:
        """Apply one record exactly once (in effect), or dead-letter it."""
        decoded = self._decode(record)
        if isinstance(decoded, ReceivedEvent):
            await self._apply_run([(record, decoded)])
        else:
            await self._refuse(record, decoded)

    def _decode(self, record: ConsumerRecord) -> ReceivedEvent | EventRejected | None:
        """The typed event; the reason it is refused; or None if it is not for this consumer."""
        try:
            envelope = CloudEvent.from_bytes(record.value)
            data = self.registry.decode(envelope) if envelope.type in self.handlers else None
        except EventRejected as exc:
            return exc
        if data is None:
            return None
        return ReceivedEvent(envelope, data, record.topic, record.partition, record.offset)

    async def _refuse(self, record: ConsumerRecord, reason: EventRejected | None) -> None:
        if reason is None:
            self._count("ignored")
            return
        log.error(
            "rejected event", extra={"consumer": self.name, "topic": record.topic, "reason": str(reason)}
        )
        await self._dead_letter(record, None, type(reason).__name__, attempts=0)

    async def _apply_run(self, run: Sequence[tuple[ConsumerRecord, ReceivedEvent]]) -> None:
        try:
            applied = await self._apply_together([event for _, event in run])
        except Exception:
            for record, event in run:
                with request_id_scope(event.envelope.requestid):
                    await self._apply_with_retries(record, event)
            return
        self._count("applied", applied)
        self._count("duplicate", len(run) - applied)

    async def _apply_together(self, events: Sequence[ReceivedEvent]) -> int:
        async with self.db.transaction() as session:
            fresh = await self._claim(
                session, [(e.envelope.id, e.topic, e.partition, e.offset) for e in events], "applied"
            )
            applied = 0
            for event in events:
                if event.envelope.id in fresh:
                    fresh.discard(event.envelope.id)  # the same event twice in one fetch: apply once
                    with request_id_scope(event.envelope.requestid):
                        await self.handlers[event.envelope.type](session, event)
                    applied += 1
            failpoint("consumer.before_db_commit")
        failpoint("consumer.after_db_commit")
        return applied

    async def _apply_with_retries(self, record: ConsumerRecord, event: ReceivedEvent) -> None:
        delay = self.backoff_initial_s
        for attempt in range(1, self.max_attempts + 1):
            try:
                applied = await self._apply(event)
                self._count("applied" if applied else "duplicate")
                return
            except Exception as exc:
                log.warning(
                    "event handler failed",
                    extra={
                        "consumer": self.name,
                        "event_id": event.envelope.id,
                        "attempt": attempt,
                        "error": type(exc).__name__,
                    },
                )
                if attempt == self.max_attempts:
                    await self._dead_letter(record, event.envelope.id, type(exc).__name__, attempts=attempt)
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max_s)

    async def _apply(self, event: ReceivedEvent) -> bool:
        return await self._apply_together([event]) == 1

    async def _claim(self, session: AsyncSession, entries: Sequence[InboxEntry], status: str) -> set[str]:
        """Record event ids in the inbox; returns the ids that were not there before."""
        insert = sqlite_insert if self.db.is_sqlite else pg_insert
        rows = [
            {
                "consumer": self.name,
                "event_id": event_id,
                "topic": topic,
                "partition": partition,
                "offset": offset,
                "status": status,
                "processed_at": self.clock(),
            }
            for event_id, topic, partition, offset in entries
        ]
        # One statement object, the rows as parameters: SQLAlchemy compiles it once and sends the
        # rows as multi-row INSERTs itself ("insertmanyvalues"). A statement built with
        # ``.values(rows)`` has no cache key and was compiled again for every batch.
        statement = (
            insert(self.inbox)
            .on_conflict_do_nothing(index_elements=["consumer", "event_id"])
            .returning(self.inbox.c.event_id)
        )
        return set((await session.execute(statement, rows)).scalars().all())

    async def _dead_letter(
        self, record: ConsumerRecord, event_id: str | None, reason: str, attempts: int
    ) -> None:
        if event_id is not None:
            async with self.db.transaction() as session:
                entry = (event_id, record.topic, record.partition, record.offset)
                if not await self._claim(session, [entry], "dead-lettered"):
                    return  # already applied or dead-lettered by an earlier delivery
                await self._send_dead_letter(record, reason, attempts)
        else:
            await self._send_dead_letter(record, reason, attempts)
        self._count("dead-lettered")

    async def _send_dead_letter(self, record: ConsumerRecord, reason: str, attempts: int) -> None:
        # The reason is an exception class name only: messages can carry personal data.
        headers = [
            *list(record.headers or []),
            ("tsunagu-dlq-consumer", self.name.encode()),
            ("tsunagu-dlq-reason", reason.encode()),
            ("tsunagu-dlq-attempts", str(attempts).encode()),
            ("tsunagu-dlq-origin", f"{record.topic}/{record.partition}/{record.offset}".encode()),
        ]
        await self.producer.send_and_wait(
            dead_letter_topic(record.topic), value=record.value, key=record.key, headers=headers
        )

    def _count(self, outcome: str, amount: int = 1) -> None:
        if self.metrics and amount:
            self.metrics.consumer_events.labels(consumer=self.name, outcome=outcome).inc(amount)
