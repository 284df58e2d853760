"""A tiny event-sourced "counter" world for testing the backbone on real PostgreSQL and tansu.

State change: ``counter`` rows; event: ``CounterBumpedV1`` (key, seq); consumer effect: one row in
``applied`` per application (no unique constraint on purpose: a double application would show).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import ClassVar

from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select
from sqlalchemy.dialects.postgresql import Insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from tsunagu.db import Database
from tsunagu.events import (
    EventConsumer,
    EventRegistry,
    EventSchema,
    Outbox,
    ReceivedEvent,
    define_event_tables,
    make_consumer,
    make_producer,
)
from tsunagu.settings import KafkaSettings

TOPIC = "tsunagu.test.counter"
metadata = MetaData()
tables = define_event_tables(metadata)
counter = Table("counter", metadata, Column("key", String(32), primary_key=True), Column("value", Integer))
applied = Table(
    "applied",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("consumer", String(64)),
    Column("event_id", String(64)),
    Column("key", String(32)),
    Column("seq", Integer),
)
registry = EventRegistry()


@registry.register
class CounterBumpedV1(EventSchema):
    event_type: ClassVar[str] = "tsunagu.test.counter.bumped"
    version: ClassVar[int] = 1
    topic: ClassVar[str] = TOPIC

    key: str
    seq: int
    poison: bool = False

    def partition_key(self) -> str | None:
        return self.key


async def create_schema(db: Database) -> None:
    async with db.engine.begin() as connection:
        await connection.run_sync(metadata.create_all)


async def bump(db: Database, outbox: Outbox, key: str, seq: int, *, poison: bool = False) -> None:
    """A state change and its event, in one transaction."""
    async with db.transaction() as session:
        await session.execute(_upsert(key, seq))
        await outbox.add(session, CounterBumpedV1(key=key, seq=seq, poison=poison))


def _upsert(key: str, seq: int) -> Insert:
    statement = pg_insert(counter).values(key=key, value=seq)
    return statement.on_conflict_do_update(index_elements=["key"], set_={"value": seq})


def record_application(consumer_name: str) -> Callable[[AsyncSession, ReceivedEvent], Awaitable[None]]:
    async def handle(session: AsyncSession, event: ReceivedEvent) -> None:
        assert isinstance(event.data, CounterBumpedV1)
        if event.data.poison:
            raise ValueError("this event can never be applied")
        await session.execute(
            insert(applied).values(
                consumer=consumer_name,
                event_id=event.envelope.id,
                key=event.data.key,
                seq=event.data.seq,
            )
        )

    return handle


async def start_consumer(
    db: Database, kafka: KafkaSettings, group: str, *, name: str | None = None, max_attempts: int = 3
) -> tuple[EventConsumer, asyncio.Task[None]]:
    kafka_consumer = make_consumer(kafka, f"{group}-{name or 'c'}", group, TOPIC)
    await kafka_consumer.start()
    producer = make_producer(kafka, f"{group}-dlq")
    await producer.start()
    consumer = EventConsumer(
        name=group,
        consumer=kafka_consumer,
        producer=producer,
        db=db,
        tables=tables,
        registry=registry,
        handlers={CounterBumpedV1.event_type: record_application(name or group)},
        max_attempts=max_attempts,
        backoff_initial_s=0.01,
        backoff_max_s=0.05,
    )
    return consumer, asyncio.create_task(consumer.run())


async def stop_consumer(consumer: EventConsumer, task: asyncio.Task[None]) -> None:
    consumer.stop()
    await asyncio.wait_for(task, 10)
    await consumer.consumer.stop()
    await consumer.producer.stop()


async def count(db: Database, table: Table, *where: object) -> int:
    async with db.sessions() as session:
        return int(
            (await session.execute(select(func.count()).select_from(table).where(*where))).scalar_one()
        )


async def wait_until(predicate: Callable[[], Awaitable[bool]], timeout_s: float = 20.0) -> None:
    """Poll an asynchronous condition (the system under test is asynchronous by design)."""
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)
