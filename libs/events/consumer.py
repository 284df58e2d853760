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

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Consume until :meth:`stop`."""
        while not self._stopping.is_set():
            batches: dict[TopicPartition, list[ConsumerRecord]] = await self.consumer.getmany(
                timeout_ms=200, max_records=500
            )
            for tp, records in batches.items():
                processed = await self._process_partition(records)
                if processed is not None:
                    await self.consumer.commit({tp: processed.offset + 1})
            await self._export_lag()

    async def _process_partition(self, records: Sequence[ConsumerRecord]) -> ConsumerRecord | None:
        last = None
        for record in records:
            if self._stopping.is_set():
                break
            await self.process(record)
            last = record
        return last

    async def process(self, record: ConsumerRecord) -> None:
        """Apply one record exactly once (in effect), or dead-letter it."""
        try:
            envelope = CloudEvent.from_bytes(record.value)
            data = self.registry.decode(envelope) if envelope.type in self.handlers else None
        except EventRejected as exc:
            log.error(
                "rejected event", extra={"consumer": self.name, "topic": record.topic, "reason": str(exc)}
            )
            await self._dead_letter(record, None, type(exc).__name__, attempts=0)
            return
        if data is None:
            self._count("ignored")
            return
        event = ReceivedEvent(envelope, data, record.topic, record.partition, record.offset)
        with request_id_scope(envelope.requestid):
            await self._apply_with_retries(record, event)

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
        async with self.db.transaction() as session:
            if not await self._claim(session, event.envelope.id, event, "applied"):
                return False
            await self.handlers[event.envelope.type](session, event)
            failpoint("consumer.before_db_commit")
        failpoint("consumer.after_db_commit")
        return True

    async def _claim(
        self, session: AsyncSession, event_id: str, where: ReceivedEvent | ConsumerRecord, status: str
    ) -> bool:
        insert = sqlite_insert if self.db.is_sqlite else pg_insert
        statement = (
            insert(self.inbox)
            .values(
                consumer=self.name,
                event_id=event_id,
                topic=where.topic,
                partition=where.partition,
                offset=where.offset,
                status=status,
                processed_at=self.clock(),
            )
            .on_conflict_do_nothing(index_elements=["consumer", "event_id"])
        )
        result = await session.execute(statement)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def _dead_letter(
        self, record: ConsumerRecord, event_id: str | None, reason: str, attempts: int
    ) -> None:
        if event_id is not None:
            async with self.db.transaction() as session:
                if not await self._claim(session, event_id, record, "dead-lettered"):
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

    def _count(self, outcome: str) -> None:
        if self.metrics:
            self.metrics.consumer_events.labels(consumer=self.name, outcome=outcome).inc()

    async def _export_lag(self) -> None:
        if not self.metrics:
            return
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            if highwater is None:
                continue
            position = await self.consumer.position(tp)
            self.metrics.consumer_lag.labels(
                consumer=self.name, topic=tp.topic, partition=str(tp.partition)
            ).set(max(0, highwater - position))
